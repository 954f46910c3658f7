"""Durable receivers, and the rows a commit writes for them.

A durable receiver (``@receiver(post_save, sender=Order, outbox=outbox)``) is not
connected to the model signal itself, so the in-memory delivery never calls it: each
outbox keeps its durable receivers of each model signal in a signal of its own
(`DurableReceivers`), which its relay sends when it delivers a row.

At the outermost commit (`write`, from ``before_commit``, after a flush of what is
pending), every event with a durable receiver becomes one row, as does every
``outbox.send`` of the transaction, inserted through the committing session's own
connection before ``COMMIT``. After the commit (`committed`) the relays of this process
that got rows are woken; on rollback the rows are gone with the transaction.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Connection
from sqlalchemy.exc import UnboundExecutionError
from sqlalchemy.orm import Session

from ... import AsyncSignal
from ..._wire import dumps
from .. import _signals  # (imports this module: its names are read when called)
from .._compat import connections_of
from .._frames import Bulk, Frame, Saved
from . import _table
from ._rows import model_sender, stamp
from ._table import Row, by_position

if TYPE_CHECKING:
    from ._outbox import Outbox


class DurableReceivers(AsyncSignal):
    """One outbox's durable receivers of one model signal (not found by name: the relay
    reaches it through its outbox)."""

    _listed = False


_outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()
"""The outboxes that have (or had) a durable receiver: a commit asks only these."""

_all: weakref.WeakSet[Outbox] = weakref.WeakSet()
"""Every outbox of this process."""

_tables: tuple[int, list[weakref.ref[Outbox]]] = (-1, [])
"""One of `_outboxes` for each table, which writes its rows, and the `_version` it was
chosen at: kept between commits (weakly, as `_outboxes` holds them), chosen again after a
change (`_writers`)."""

_relays: dict[tuple[Any, ...], tuple[Outbox, ...]] = {}
"""The outboxes whose relay runs in this process, by table: a commit that wrote rows wakes
those of its tables (replaced, never changed in place: commits in other threads read it)."""
_relays_lock = threading.Lock()  # relays of several event loops (threads) start and stop

_receivers: dict[tuple[Any, ...], dict[str, DurableReceivers]] = {}
"""The durable receivers of each outbox table (database and table name), by signal name:
shared by the `Outbox` objects of one table in this process, since a row does not say
which of them wrote it."""

_version = 0
"""Bumped whenever a durable receiver is connected or disconnected, or an outbox that
writes a table's rows is gone (`version`)."""


def receivers_of(key: tuple[Any, ...]) -> dict[str, DurableReceivers]:
    """The durable receivers of the outbox table *key* (see `database_key`)."""
    return _receivers.setdefault(key, {})


def database_key(url: URL) -> tuple[Any, ...]:
    """The database *url* names, whatever its driver (aiosqlite and pysqlite, asyncpg and
    psycopg reach the same database)."""
    return (url.get_backend_name(), url.host, url.port, url.database, url.username)


def changed(outbox: Outbox) -> None:
    """*outbox*'s durable receivers changed (it has some now, maybe)."""
    global _version
    _outboxes.add(outbox)
    _version += 1


def _writers() -> list[Outbox]:
    """One outbox of each table that has (or had) durable receivers: `_tables`, chosen
    again after a change (or when one of them is gone)."""
    global _tables
    version, tables = _tables
    if version != _version:
        # Read the version first: a change while choosing (in another thread) makes the
        # next commit choose again.
        version = _version
        chosen = {outbox._key: outbox for outbox in list(_outboxes)}
        tables = [weakref.ref(outbox, _gone) for outbox in chosen.values()]
        _tables = (version, tables)
    return [outbox for ref in tables if (outbox := ref()) is not None]


def _gone(ref: weakref.ref[Outbox]) -> None:
    """An outbox of `_tables` is gone: another of its table (if any) writes its rows."""
    global _version
    _version += 1


def version() -> int:
    return _version


def active() -> bool:
    """Some outbox has durable receivers: a commit must look for their events."""
    return bool(_outboxes)


def wanted(signal: AsyncSignal[...], cls: type) -> bool:
    """Some outbox has a durable receiver of *signal* for *cls*."""
    return any(outbox._durable_for(signal, cls) for outbox in list(_outboxes))


def disconnect(signal: AsyncSignal[...], receiver: Any, sender: Any, dispatch_uid: Any) -> bool:
    """Disconnect a durable receiver of *signal*, whichever outbox has it."""
    found = False
    for outbox in list(_outboxes):
        if outbox._disconnect_durable(signal, receiver, sender, dispatch_uid):
            found = True
            changed(outbox)
    return found


_WROTE = "asignals.sqlalchemy.outbox.wrote"
"""``session.info[_WROTE]``: the tables (keys) the committing transaction wrote rows to."""


def pending(frame: Frame | None) -> bool:
    """The commit of *frame* may write rows."""
    return bool(_outboxes) or (frame is not None and bool(frame.sent))


def write(session: Session, frame: Frame) -> None:
    """Insert the rows of the committing transaction (*frame*), before ``COMMIT``."""
    rows: dict[tuple[Any, ...], tuple[Outbox, list[Row]]] = {}
    for outbox, sent in frame.sent:
        rows.setdefault(outbox._key, (outbox, []))[1].append(by_position(sent))
    tables = _writers()
    mapper: Any = None
    if tables:
        # Which outboxes want each (signal, class), with the rows of their tables, and the
        # rows' sender: asked once per commit. The rows of one commit share their time
        # (`stamp`) and trace.
        wanting: dict[tuple[Any, type], tuple[str, list[tuple[Outbox, list[Row]]]]] = {}
        now = stamp()
        trace = None if frame.trace is None else dumps(frame.trace)  # its first flush's
        for signal, cls, payload in _events(frame):
            mapper = mapper or cls
            found = wanting.get((signal, cls))
            if found is None:
                found = wanting[(signal, cls)] = (
                    model_sender(cls),
                    [
                        (outbox, rows.setdefault(outbox._key, (outbox, []))[1])
                        for outbox in tables
                        if outbox._durable_for(signal, cls)
                    ],
                )
            sender, outboxes = found
            for outbox, written in outboxes:
                written.append(outbox._rows.model_row(signal, sender, payload, now, trace))
    for outbox, written in rows.values():
        connection = _connection_for(session, outbox, mapper)
        _table.insert_rows(connection, outbox.table, written)
    if rows:
        session.info[_WROTE] = list(rows)


def _connection_for(session: Session, outbox: Outbox, mapper: Any) -> Connection:
    """The committing transaction's connection to the outbox's database; raises
    ValueError if the session writes elsewhere."""
    transaction = session.get_transaction()
    held = connections_of(transaction) if transaction is not None else []
    if len(held) == 1 and _reaches(held[0][0], outbox):
        return held[0][0]  # the common case: the one database the transaction writes to
    try:
        connection = session.connection(bind_arguments={"clause": outbox.table, "mapper": mapper})
    except UnboundExecutionError:
        if len(held) != 1:
            raise ValueError(
                f"{outbox!r}: the session has no bind for the outbox table; bind it "
                f"(Session(binds={{outbox.table: engine, ...}})) to the database of its models"
            ) from None
        connection = held[0][0]
    if not _reaches(connection, outbox):
        raise ValueError(
            f"{outbox!r}: its engine is for another database ({outbox.engine.url!r}) than the "
            f"session's ({connection.engine.url!r}); the rows must be written in the "
            f"transaction of the change: give the Outbox an engine of that database"
        )
    return connection


def _reaches(connection: Connection, outbox: Outbox) -> bool:
    """*connection* is to the outbox's database."""
    engine = connection.engine
    return engine is outbox._sync_engine or database_key(engine.url) == outbox._key[:-1]


def _events(frame: Frame) -> Iterator[tuple[AsyncSignal[...], type, dict[str, Any]]]:
    for found in frame.deliverable():
        if isinstance(found, Bulk):
            continue
        cls = type(found.instance)
        if isinstance(found, Saved):
            if found.deleted:
                yield _signals.post_delete, cls, {"instance": found.instance}
            else:
                yield _signals.post_save, cls, found.payload()
        else:
            for payload in found.payloads():
                yield _signals.m2m_changed, cls, payload


def register(outbox: Outbox) -> None:
    _all.add(outbox)


def all_outboxes() -> list[Outbox]:
    return list(_all)


def relaying(outbox: Outbox, running: bool) -> None:
    """*outbox*'s relay starts (*running*) or stops in this process: commits that write
    rows to its table wake it (`committed`)."""
    global _relays
    with _relays_lock:
        relays = dict(_relays)
        others = tuple(other for other in relays.pop(outbox._key, ()) if other is not outbox)
        if running:
            others += (outbox,)
        if others:
            relays[outbox._key] = others
        _relays = relays


def committed(session: Session) -> None:
    """The transaction that wrote rows committed: wake this process's relays of them."""
    wrote = session.info.pop(_WROTE, None)
    if wrote:
        relays = _relays
        for key in wrote:
            for outbox in relays.get(key, ()):
                outbox._committed()


def discarded(session: Session) -> None:
    """The outermost transaction ended without a commit: its rows are gone with it."""
    session.info.pop(_WROTE, None)
