"""What differs between SQLAlchemy 2.0 and 2.1 for this package, in one place.

SQLAlchemy 2.1 renamed the greenlet bridge's ``await_only`` to ``await_``. ``make test``
runs the SQLAlchemy tests on the newest 2.0 (the ``pytest-sqlalchemy20`` target) as well as
on the locked 2.1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.util import concurrency
from sqlalchemy.util.concurrency import in_greenlet as in_greenlet

await_: Callable[[Awaitable[Any]], Any] = (
    getattr(concurrency, "await_", None) or concurrency.await_only
)
"""Await from sync code run by SQLAlchemy's greenlet bridge (an AsyncSession's)."""
