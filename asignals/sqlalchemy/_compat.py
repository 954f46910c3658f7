"""What differs between SQLAlchemy 2.0 and 2.1 for this package, and what it reads of
SQLAlchemy's private state, in one place.

SQLAlchemy 2.1 renamed the greenlet bridge's ``await_only`` to ``await_``. ``make test``
runs the SQLAlchemy tests on the newest 2.0 (the ``pytest-sqlalchemy20`` target) as well as
on the locked 2.1. The private state read here (2.0 and 2.1 alike) is guarded by tests
that fail if it changes: tests/test_sqlalchemy_pool.py and tests/durable/.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm.session import SessionTransaction
from sqlalchemy.util import concurrency
from sqlalchemy.util.concurrency import in_greenlet as in_greenlet

await_: Callable[[Awaitable[Any]], Any] = (
    getattr(concurrency, "await_", None) or concurrency.await_only
)
"""Await from sync code run by SQLAlchemy's greenlet bridge (an AsyncSession's)."""


def connections_of(transaction: SessionTransaction) -> list[tuple[Connection, bool]]:
    """The connections *transaction* holds, each with whether the transaction opened it
    itself (and closes it at its end)."""
    # {bind: (connection, transaction, should_commit, autoclose)}
    return [
        (connection, autoclose)
        for connection, _, _, autoclose in set(transaction._connections.values())
    ]


def committing(transaction: SessionTransaction | None) -> bool:
    """Whether *transaction* (the outermost one) is preparing its commit: SQLAlchemy fires
    ``before_commit`` for it, and then commits the savepoints still open inside it."""
    current = getattr(transaction, "_current_fn", None)
    return getattr(current, "__name__", None) == "_prepare_impl"
