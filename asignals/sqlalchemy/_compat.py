"""What differs between SQLAlchemy 2.0 and 2.1 for this package, and what it reads of
SQLAlchemy's private state, in one place.

SQLAlchemy 2.1 renamed the greenlet bridge's ``await_only`` to ``await_``. ``make test``
runs the SQLAlchemy tests on the newest 2.0 (the ``pytest-sqlalchemy20`` target) as well as
on the locked 2.1. The private state read here (2.0 and 2.1 alike) is guarded by tests
that fail if it changes: tests/test_sqlalchemy_pool.py and tests/durable/ (the outbox's
INSERT: tests/durable/test_outbox_insert.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.engine.default import DefaultDialect, DefaultExecutionContext
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


def plain_executemany(dialect: Dialect) -> bool:
    """Whether *dialect* runs ``exec_driver_sql`` as no more than the driver's
    ``cursor.execute`` or ``executemany`` (pysqlite, aiosqlite and psycopg do; asyncpg
    prepares its cursor first), so that `executemany` may call them directly."""
    context = dialect.execution_ctx_cls
    return (
        type(dialect).do_executemany is DefaultDialect.do_executemany
        and type(dialect).do_execute is DefaultDialect.do_execute
        and all(
            getattr(context, name) is getattr(DefaultExecutionContext, name)
            for name in ("pre_exec", "post_exec", "create_cursor", "handle_dbapi_exception")
        )
    )


def unobserved(connection: Connection) -> bool:
    """Whether nothing would see a statement that *connection* runs: no echo, and no
    listener of the connection's, its engine's or its dialect's events (such as
    OpenTelemetry's SQLAlchemy instrumentation, on ``before_cursor_execute``)."""
    return not (
        connection._echo
        or connection._has_events
        or connection.engine._has_events
        or connection.dialect._has_events
    )


def executemany(connection: Connection, statement: str, parameters: list[Any]) -> None:
    """``connection.exec_driver_sql(statement, parameters)`` without SQLAlchemy's work per
    execution (an execution context, a result), for a dialect of `plain_executemany` on a
    connection in a transaction that is `unobserved`: an error is raised as
    ``exec_driver_sql`` raises it (the driver's wrapped, a lost connection invalidated)."""
    cursor = connection.connection.cursor()
    try:
        if len(parameters) == 1:  # as exec_driver_sql does (psycopg's executemany costs more)
            cursor.execute(statement, parameters[0])
        else:
            cursor.executemany(statement, parameters)
    except BaseException as error:
        connection._handle_dbapi_exception(error, statement, parameters, cursor, None)
    cursor.close()
