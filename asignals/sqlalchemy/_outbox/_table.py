"""The outbox table, and every statement the outbox runs on it.

Each statement is a function of a sync ``Connection``: the commit runs its INSERT through
the committing session's own connection, the relay runs the others through
``AsyncConnection.run_sync`` (or in a worker thread for a sync ``Engine``), each in a
transaction of its own.

Times are the database's clock in seconds since the epoch (`now`), so that relays on
hosts whose clocks differ agree on when a lease expires and a retry is due.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    false,
    func,
    insert,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
    update,
)

from .._compat import executemany, plain_executemany, unobserved

COLUMNS = (
    "id",
    "signal",
    "sender",
    "payload",
    "origin",
    "trace",
    "created_at",
    "attempts",
    "next_attempt_at",
    "lease_owner",
    "lease_expires_at",
    "dead",
    "error",
    "failed_at",
)


def make_table(metadata: MetaData, name: str) -> Table:
    """The outbox table *name* in *metadata* (the one already there, if it is an outbox's)."""
    existing = metadata.tables.get(name)
    if existing is not None:
        if tuple(existing.columns.keys()) != COLUMNS:
            raise ValueError(
                f"Outbox(table_name={name!r}): the metadata already has a table {name!r} that "
                f"is not an outbox table; choose another table_name"
            )
        return existing
    return Table(
        name,
        metadata,
        Column("id", String(32), primary_key=True),  # the delivery id
        Column("signal", String(255), nullable=False),
        Column("sender", Text, nullable=False),  # JSON
        Column("payload", Text, nullable=False),  # JSON
        Column("origin", String(255), nullable=False),  # host:pid:random of the writer
        Column("trace", Text, nullable=True),  # the trace context, JSON (or NULL)
        Column("created_at", Float, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("next_attempt_at", Float, nullable=False),
        Column("lease_owner", String(255), nullable=True),
        Column("lease_expires_at", Float, nullable=True),
        Column("dead", Boolean, nullable=False),
        Column("error", Text, nullable=True),
        Column("failed_at", Float, nullable=True),
        Index(f"ix_{name}_due", "dead", "next_attempt_at"),
    )


def now(dialect: str) -> ColumnElement[float]:
    """The database's clock, in seconds since the epoch (literal SQL, no parameters)."""
    if dialect == "postgresql":
        return literal_column("extract(epoch from clock_timestamp())::float8", Float)
    if dialect == "sqlite":
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)
    return literal(time.time(), Float)  # pragma: no cover - other databases: this host's clock


WRITTEN = ("id", "signal", "sender", "payload", "origin", "trace")
"""The columns a commit gives each new row (the others are set by the INSERT itself)."""

Row = tuple[Any, ...]
"""A new row's values (str, or None for no trace), in the order of `WRITTEN`: the order
of the INSERT's parameters."""


def by_column(row: Row) -> dict[str, Any]:
    """*row*'s values by column name (as the INSERT takes them with named parameters)."""
    return dict(zip(WRITTEN, row, strict=True))


def by_position(row: dict[str, Any]) -> Row:
    """A row by column name (`by_column`) as a `Row`."""
    return tuple(row[name] for name in WRITTEN)


_inserts: dict[tuple[Table, type], tuple[str, bool, bool]] = {}
"""The INSERT of each table for each dialect and driver, compiled once: its SQL, whether
its parameters are named (else in the order of `WRITTEN`), and whether the driver's
``executemany`` may run it directly (`_compat.plain_executemany`)."""


def insert_rows(connection: Connection, table: Table, rows: list[Row]) -> None:
    """Write new rows, due at once (in the caller's transaction).

    On the commit's path: the statement is compiled once, and run as the driver's own
    ``executemany``, without SQLAlchemy's per-execution work (the columns need no type
    processing: strings and NULL). When something watches the connection's statements
    (echo, ``before_cursor_execute`` listeners), it goes through ``exec_driver_sql``,
    for them to see it.
    """
    dialect = connection.dialect
    found = _inserts.get((table, type(dialect)))
    if found is None:
        found = _inserts[(table, type(dialect))] = _compile_insert(table, dialect)
    sql, named, plain = found
    parameters: list[Any] = [by_column(row) for row in rows] if named else rows
    if plain and unobserved(connection):
        executemany(connection, sql, parameters)
    else:
        connection.exec_driver_sql(sql, parameters)


def _compile_insert(table: Table, dialect: Dialect) -> tuple[str, bool, bool]:
    clock = now(dialect.name)
    statement = insert(table).values(
        created_at=clock, next_attempt_at=clock, attempts=literal_column("0"), dead=false()
    )
    compiled = statement.compile(dialect=dialect, column_keys=list(WRITTEN))
    if compiled.positional and tuple(compiled.positiontup or ()) != WRITTEN:
        raise AssertionError(  # pragma: no cover - SQLAlchemy binds them in column order
            f"the INSERT into {table.name!r} takes its parameters in the order "
            f"{compiled.positiontup}, not {WRITTEN}"
        )
    return str(compiled), not compiled.positional, plain_executemany(dialect)


Leased = Any  # a Row (typed loosely: its columns are many)
"""A leased row: id, signal, sender, payload, origin, trace, created_at, attempts."""


def lease(
    connection: Connection,
    table: Table,
    owner: str,
    seconds: float,
    limit: int,
    skip: Collection[tuple[str, str | None]],
) -> list[Leased]:
    """Lease up to *limit* due rows for *owner* for *seconds*, oldest first, counting an
    attempt for each; rows leased by another relay whose lease holds are left alone
    (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so that relays never wait for each other).

    *skip* names rows this relay cannot deliver: ``(signal, None)`` for every row of a
    signal, ``(signal, sender)`` for a signal's rows from one sender.
    """
    clock = now(connection.dialect.name)
    c = table.c
    due = [
        c.dead == false(),
        c.next_attempt_at <= clock,
        or_(c.lease_expires_at.is_(None), c.lease_expires_at < clock),
    ]
    for signal, sender in skip:
        due.append(
            c.signal != signal
            if sender is None
            else not_(and_(c.signal == signal, c.sender == sender))
        )
    chosen = (
        select(c.id)
        .where(*due)
        .order_by(c.created_at, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(table)
        .where(c.id.in_(chosen))
        .values(lease_owner=owner, lease_expires_at=clock + seconds, attempts=c.attempts + 1)
        .returning(c.id, c.signal, c.sender, c.payload, c.origin, c.trace, c.created_at, c.attempts)
    )
    rows: list[Leased] = [*connection.execute(statement)]
    rows.sort(key=lambda row: (row.created_at, row.id))
    return rows


def _mine(table: Table, owner: str, ids: Sequence[str]) -> ColumnElement[bool]:
    return and_(table.c.id.in_(ids), table.c.lease_owner == owner)


def renew(
    connection: Connection, table: Table, owner: str, ids: Sequence[str], seconds: float
) -> set[str]:
    """Extend *owner*'s leases of *ids* by *seconds* from now; the ids still held (a lease
    that expired meanwhile may be another relay's now)."""
    clock = now(connection.dialect.name)
    held = (
        update(table)
        .where(_mine(table, owner, ids), table.c.lease_expires_at > clock)
        .values(lease_expires_at=clock + seconds)
        .returning(table.c.id)
    )
    return set(connection.execute(held).scalars())


def remove(connection: Connection, table: Table, owner: str, ids: Sequence[str]) -> None:
    """Delete the delivered rows *ids* (those still leased by *owner*)."""
    connection.execute(delete(table).where(_mine(table, owner, ids)))


def release(
    connection: Connection, table: Table, owner: str, ids: Sequence[str], attempted: bool
) -> None:
    """Give *owner*'s leases of *ids* back, due at once; without *attempted*, the attempt
    counted when they were leased is taken back (their receivers never ran)."""
    values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
    if not attempted:
        values["attempts"] = table.c.attempts - 1
    connection.execute(update(table).where(_mine(table, owner, ids)).values(**values))


def retry(
    connection: Connection, table: Table, owner: str, id_: str, error: str, delay: float
) -> None:
    """A failed attempt: due again in *delay* seconds."""
    clock = now(connection.dialect.name)
    connection.execute(
        update(table)
        .where(_mine(table, owner, (id_,)))
        .values(lease_owner=None, lease_expires_at=None, next_attempt_at=clock + delay, error=error)
    )


def bury(
    connection: Connection, table: Table, owner: str, id_: str, error: str, uncount: bool = False
) -> None:
    """The last attempt failed: keep the row as dead (*uncount*: the lease that found it
    so counted no attempt of its own)."""
    clock = now(connection.dialect.name)
    values: dict[str, Any] = {
        "lease_owner": None,
        "lease_expires_at": None,
        "dead": True,
        "error": error,
        "failed_at": clock,
    }
    if uncount:
        values["attempts"] = table.c.attempts - 1
    connection.execute(update(table).where(_mine(table, owner, (id_,))).values(**values))


def requeue(connection: Connection, table: Table, ids: Sequence[str] | None) -> int:
    """Make dead rows (all, or *ids*) due again with their attempts reset; how many."""
    clock = now(connection.dialect.name)
    where = [table.c.dead == true()]
    if ids is not None:
        where.append(table.c.id.in_(ids))
    result = connection.execute(
        update(table)
        .where(*where)
        .values(dead=False, attempts=0, next_attempt_at=clock, failed_at=None)
    )
    return result.rowcount


def dead_rows(connection: Connection, table: Table, limit: int) -> list[Any]:
    """The dead rows, oldest failure first."""
    c = table.c
    statement = (
        select(c.id, c.signal, c.sender, c.payload, c.error, c.attempts, c.failed_at)
        .where(c.dead == true())
        .order_by(c.failed_at, c.id)
        .limit(limit)
    )
    rows: list[Any] = [*connection.execute(statement)]
    return rows


def counts(connection: Connection, table: Table) -> tuple[int, int, float | None]:
    """Pending rows, dead rows, and the age in seconds of the oldest pending one."""
    c = table.c
    clock = now(connection.dialect.name)
    pending, oldest, current = connection.execute(
        select(func.count(), func.min(c.created_at), clock).where(c.dead == false())
    ).one()
    dead = connection.execute(select(func.count()).where(c.dead == true())).scalar_one()
    age = None if oldest is None else max(0.0, float(current) - float(oldest))
    return int(pending), int(dead), age
