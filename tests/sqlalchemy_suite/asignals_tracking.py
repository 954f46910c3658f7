"""A pytest plugin for SQLAlchemy's own test suite: ``track()`` every Session, with a sync
receiver on every model signal, before any test runs (``-p asignals_tracking``).

Loaded by ``run.py`` (``make test-sqlalchemy-suite``); not a test module of ours.
"""

from __future__ import annotations

from typing import Any

import pytest

_connected: list[Any] = []


def _receiver(**kwargs: Any) -> None:
    """Reads what every receiver may read: the payload, and the instance's attributes."""
    instance = kwargs.get("instance")
    if instance is not None and "changes" in kwargs:
        for name in kwargs["changes"]:
            getattr(instance, name, None)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # Imported here, after SQLAlchemy's own plugin has set up its test configuration.
    from asignals.sqlalchemy import (
        m2m_changed,
        post_bulk_delete,
        post_bulk_insert,
        post_bulk_update,
        post_delete,
        post_init,
        post_save,
        pre_delete,
        pre_init,
        pre_save,
        track,
    )

    track()
    for signal in (
        pre_save,
        post_save,
        pre_delete,
        post_delete,
        m2m_changed,
        pre_init,
        post_init,
        post_bulk_insert,
        post_bulk_update,
        post_bulk_delete,
    ):
        signal.connect(_receiver, weak=False)
        _connected.append(signal)
