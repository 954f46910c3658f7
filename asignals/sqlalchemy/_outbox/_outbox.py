"""`Outbox`: durable signals through a table in the application's own database."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from ... import AsyncSignal, _trace, _wire
from ..._checks import check_count, check_seconds
from ..._dispatch import named
from .._delivery import record
from .._frames import Frame
from .._signals import _ModelSignal
from .._tracking import COMMIT_EVENTS, listen, tracked
from . import _durable, _table
from ._relay import Database, Relay
from ._rows import MODEL_SIGNALS, Rows, origin_name


def _gauges() -> list[_trace.Reading]:
    """The pending rows and lag of each running relay's table (asignals.outbox.*)."""
    found: list[_trace.Reading] = []
    for outbox in _durable.all_outboxes():
        counts = outbox._relay.counts
        if counts is None or not outbox.running:
            continue
        pending, _, age = counts
        attributes = {"asignals.outbox.table": outbox.table.name}
        found.append(("asignals.outbox.pending", float(pending), attributes))
        found.append(("asignals.outbox.lag", age or 0.0, attributes))
    return found


_trace.gauge(_gauges)


@dataclasses.dataclass(frozen=True)
class OutboxStatistics:
    """What `Outbox.statistics` reports.

    Attributes:
        pending: Rows waiting for delivery (or being delivered), dead ones excluded.
        dead: Rows kept after ``max_attempts`` failed attempts (`Outbox.dead_letters`).
        oldest_pending_age: Seconds since the oldest pending row was written (``None``
            when none is pending): the lag to alert on.
        delivered: Rows this process's relay delivered (all receivers returned).
        retried: Failed attempts this process's relay scheduled to be retried.
        unknown: Rows this process's relay left for another one (a signal it does not
            know, a model event without a durable receiver here).
    """

    pending: int
    dead: int
    oldest_pending_age: float | None
    delivered: int
    retried: int
    unknown: int = 0


@dataclasses.dataclass(frozen=True)
class OutboxDeadLetter:
    """A row kept after its last attempt failed, as `Outbox.dead_letters` returns it.

    Attributes:
        id: The row's id (``current_delivery().id`` in its receivers); pass it to
            `Outbox.requeue`.
        signal: The signal's name.
        sender: The sender as stored: a value, or a mapped class's dotted path.
        payload: The payload as stored (JSON values, registered types revived; a model
            event's primary key and changes).
        error: The last attempt's error.
        attempts: How many attempts were made.
        failed_at: When the last one failed (UTC).
    """

    id: str
    signal: str
    sender: Any
    payload: Any
    error: str | None
    attempts: int
    failed_at: datetime.datetime | None


class Outbox:
    """Durable signals: events written in the committing transaction, delivered after it
    by a relay, at least once, even if the process dies right after the commit.

    Durable receivers of model signals are one keyword away (``outbox=``); any named
    signal is sent durably with `send`. A relay runs while ``async with outbox:`` does
    (in the application's lifespan): it delivers the rows of this process's commits at
    once, and polls for rows nobody delivered (a process that died). Several relays, on
    several hosts, share the rows through leases.

    Args:
        engine: An ``AsyncEngine`` or an ``Engine`` of the application's database: the
            relay's own connections (the rows are written through the committing
            session's connection).
        metadata: The application's ``MetaData``, to have the outbox table created by
            ``create_all`` and seen by Alembic; else call `create_table`.
        table_name: The table's name.
        poll_interval: Seconds between looks for rows written elsewhere or due again.
        lease: Seconds a relay holds a row it delivers before another may take it.
        max_attempts: Attempts (receiver runs, one cut short by a crash included) before
            a row is kept as dead.
        backoff: Seconds before the first retry; each next one waits twice as long.
        max_backoff: The longest wait between retries.
        batch_size: Rows leased at a time.

    Raises:
        TypeError: *engine* is not an ``Engine`` or ``AsyncEngine``, or an option has the
            wrong type.
        ValueError: An option is out of range, or *metadata* has a table of that name
            which is not an outbox table.

    Example:
        ```python
        outbox = Outbox(engine, metadata=Base.metadata)

        @receiver(post_save, sender=Order, outbox=outbox)
        async def notify_kitchen(sender, instance, created, **kwargs):
            if created:
                await kitchen.notify(instance.id)

        @asynccontextmanager
        async def lifespan(app):
            async with outbox:  # the relay
                yield
        ```
    """

    def __init__(
        self,
        engine: Engine | AsyncEngine,
        *,
        metadata: MetaData | None = None,
        table_name: str = "asignals_outbox",
        poll_interval: float = 1.0,
        lease: float = 30.0,
        max_attempts: int = 10,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        batch_size: int = 100,
    ) -> None:
        if not isinstance(engine, Engine | AsyncEngine):
            raise TypeError(
                f"Outbox() takes an Engine or an AsyncEngine (the relay's connections), got "
                f"{engine!r}"
            )
        if metadata is not None and not isinstance(metadata, MetaData):
            raise TypeError(f"Outbox(metadata=...) takes a MetaData, got {metadata!r}")
        if not isinstance(table_name, str):
            raise TypeError(f"Outbox(table_name=...) must be a str, got {table_name!r}")
        if not table_name:
            raise ValueError("Outbox(table_name=...) must not be empty")
        for what, seconds in (
            ("poll_interval", poll_interval),
            ("lease", lease),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
        ):
            check_seconds(f"Outbox({what}=...)", seconds)
        check_count("Outbox(max_attempts=...)", max_attempts)
        check_count("Outbox(batch_size=...)", batch_size)
        if backoff > max_backoff:
            raise ValueError(
                f"Outbox(backoff={backoff!r}, max_backoff={max_backoff!r}): the first retry "
                f"delay cannot be longer than the longest; raise max_backoff"
            )
        self.engine = engine
        self.table: Table = _table.make_table(
            metadata if metadata is not None else MetaData(), table_name
        )
        self.poll_interval = float(poll_interval)
        self.lease = float(lease)
        self.max_attempts = max_attempts
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.batch_size = batch_size
        self._database = Database(engine)
        self._rows = Rows(origin_name())
        sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        self._sync_engine = sync_engine
        # Which table this is: Outbox objects of one table share their durable receivers.
        self._key = (*_durable.database_key(sync_engine.url), table_name)
        self._receivers = _durable.receivers_of(self._key)
        self._relay = Relay(self, self._rows.origin)
        self._task_group: anyio.abc.TaskGroup | None = None
        _durable.register(self)

    def __repr__(self) -> str:
        return f"<Outbox {self.table.name!r}>"

    # -- the table ----------------------------------------------------------------------

    async def create_table(self) -> None:
        """Create the outbox table if it does not exist (not needed when it is in the
        application's metadata and created with it).

        Example:
            ```python
            await outbox.create_table()
            ```
        """
        await self._database.run(lambda connection: self.table.create(connection, checkfirst=True))

    # -- sending ------------------------------------------------------------------------

    def send(
        self,
        session: Session | AsyncSession,
        signal: AsyncSignal[...],
        sender: Any,
        /,
        **payload: Any,
    ) -> None:
        """Send *signal* durably: written in *session*'s transaction, delivered to the
        signal's receivers by a relay after the commit (never on rollback, nor when the
        savepoint holding it rolls back).

        Sync, and it does no I/O: the row is written at the commit. The receivers run in
        the process of the relay that delivers it, at least once.

        Args:
            session: A tracked ``Session`` or ``AsyncSession`` (`asignals.sqlalchemy.track`).
            signal: A named signal (the relay finds it by its name).
            sender: ``None``, a str, an int, a mapped class, or an object registered
                with `register_sender`.
            **payload: JSON values, or values of types registered with `register_type`.

        Raises:
            TypeError: *session* is not a session, *signal* is unnamed or a model signal,
                or the sender or a payload item cannot be stored.
            ValueError: *signal*'s name is a model signal's, or several live signals of
                this process have it: the relay could not tell which to send.
            RuntimeError: *session* is not tracked.

        Example:
            ```python
            async with session.begin():
                session.add(order)
                outbox.send(session, order_paid, "shop", order_id=order.id)
            ```
        """
        sync_session = session.sync_session if isinstance(session, AsyncSession) else session
        if not isinstance(sync_session, Session):
            raise TypeError(f"outbox.send() takes a Session or an AsyncSession, got {session!r}")
        if not isinstance(signal, AsyncSignal):
            raise TypeError(f"outbox.send() takes an AsyncSignal, got {signal!r}")
        if isinstance(signal, _ModelSignal):
            raise TypeError(
                f"outbox.send({signal!r}): model signals are written by the commit for their "
                f"durable receivers; connect those with outbox= (@receiver({signal.name}, "
                f"sender=Model, outbox=outbox))"
            )
        if signal.name is None or not signal._listed:
            raise TypeError(
                f"outbox.send({signal!r}): the relay finds a signal by its name; give it one "
                f"(AsyncSignal('order_paid'))"
            )
        if signal.name in MODEL_SIGNALS or len(named(signal.name)) > 1:
            raise ValueError(
                f"outbox.send({signal!r}): the relay finds a signal by its name, and "
                f"{signal.name!r} names "
                + ("a model signal" if signal.name in MODEL_SIGNALS else "several signals here")
                + "; give this signal a name of its own"
            )
        for reserved in ("signal", "sender"):
            if reserved in payload:
                raise TypeError(
                    f"outbox.send({signal!r}): the payload cannot have an item named "
                    f"{reserved!r} (receivers get the {reserved} under that name)"
                )
        if not tracked(sync_session):
            raise RuntimeError(
                f"outbox.send({signal!r}): the session is not tracked, so its commit would "
                f"not write the event; call asignals.sqlalchemy.track() (or "
                f"track(SessionLocal)) at startup"
            )
        row = self._rows.send_row(signal, sender, payload)
        listen(COMMIT_EVENTS)
        if sync_session.get_transaction() is None:
            sync_session.begin()
        frame = Frame()
        frame.sent.append((self, row))
        record(sync_session, frame)

    def register_sender(self, sender: Any, name: str) -> None:
        """Let *sender* (an object other than None, a str, an int or a mapped class) be
        stored under *name*; every process relaying it must register it too.

        Example:
            ```python
            outbox.register_sender(shop, "shop")
            ```
        """
        self._rows.senders.register(sender, name)

    def register_type(
        self, type_: type, name: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]
    ) -> None:
        """Let payload values of *type_* be stored, as ``encode(value)`` under *name*, and
        read back with ``decode`` (as `asignals.redis.RedisBridge.register_type` does).

        Example:
            ```python
            outbox.register_type(Money, "money", lambda m: [m.amount, m.currency],
                                 lambda v: Money(*v))
            ```
        """
        self._rows.codecs.register(type_, name, encode, decode)

    def register_dataclass(self, cls: type, name: str) -> None:
        """Let payload values of the dataclass *cls* be stored under *name*.

        Example:
            ```python
            outbox.register_dataclass(Address, "address")
            ```
        """
        self._rows.codecs.register_dataclass(cls, name)

    # -- durable receivers (see _durable) -------------------------------------------------

    def _connect_durable(
        self, signal: AsyncSignal[...], receiver: Any, sender: Any, options: dict[str, Any]
    ) -> None:
        assert signal.name is not None
        receivers = self._receivers.get(signal.name)
        if receivers is None:
            receivers = self._receivers[signal.name] = _durable.DurableReceivers(signal.name)
        receivers.connect(receiver, sender, **options)
        _durable.changed(self)

    def _disconnect_durable(
        self, signal: AsyncSignal[...], receiver: Any, sender: Any, dispatch_uid: Hashable | None
    ) -> bool:
        receivers = self._receivers.get(signal.name or "")
        return receivers is not None and receivers.disconnect(
            receiver, sender, dispatch_uid=dispatch_uid
        )

    def _durable_for(self, signal: AsyncSignal[...], cls: type) -> bool:
        receivers = self._receivers.get(signal.name or "")
        return receivers is not None and receivers.has_listeners(cls)

    def _durable_receivers(self, name: str) -> AsyncSignal[...] | None:
        return self._receivers.get(name)

    def _committed(self) -> None:
        """A commit of this process wrote rows: deliver them now if the relay runs here."""
        self._relay.wakeup.set()

    # -- the relay ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether this process's relay runs (inside ``async with outbox:``)."""
        return self._task_group is not None

    async def __aenter__(self) -> Outbox:
        if self._task_group is not None:
            raise RuntimeError(
                f"{self!r}: the relay is already running (`async with outbox:` twice)"
            )
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self._relay.run)
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return None
        self._relay.stopping = True
        task_group.cancel_scope.cancel()
        try:
            return await task_group.__aexit__(exc_type, exc, traceback)
        finally:
            self._relay.stopping = False

    # -- for operators ------------------------------------------------------------------

    async def statistics(self) -> OutboxStatistics:
        """Rows pending and dead, the oldest pending row's age, and this process's
        relay's counts.

        Example:
            ```python
            stats = await outbox.statistics()
            if stats.dead or (stats.oldest_pending_age or 0) > 60:
                alert(f"outbox: {stats.dead} dead, lagging {stats.oldest_pending_age} s")
            ```
        """
        pending, dead, age = await self._database.run(_table.counts, self.table)
        relay = self._relay
        return OutboxStatistics(pending, dead, age, relay.delivered, relay.retried, relay.unknown)

    async def dead_letters(self, limit: int = 100) -> list[OutboxDeadLetter]:
        """The rows kept after their last attempt failed, oldest failure first.

        Example:
            ```python
            for dead in await outbox.dead_letters():
                print(dead.id, dead.signal, dead.error)
            ```
        """
        check_count("outbox.dead_letters(limit=...)", limit)
        rows = await self._database.run(_table.dead_rows, self.table, limit)
        return [
            OutboxDeadLetter(
                id=row.id,
                signal=row.signal,
                sender=self._stored(row.sender),
                payload=self._stored(row.payload),
                error=row.error,
                attempts=row.attempts,
                failed_at=None
                if row.failed_at is None
                else datetime.datetime.fromtimestamp(row.failed_at, datetime.UTC),
            )
            for row in rows
        ]

    def _stored(self, text: str) -> Any:
        plain = json.loads(text)
        if type(plain) is dict and set(plain) == {"$model"}:
            return plain["$model"]
        try:
            return self._rows.codecs.revive(plain)
        except _wire.Dropped:
            return plain

    async def requeue(self, ids: Sequence[str] | None = None) -> int:
        """Make dead rows (all of them, or those of *ids*) due again, their attempts
        reset; return how many.

        Example:
            ```python
            await outbox.requeue([dead.id for dead in await outbox.dead_letters()])
            ```
        """
        if ids is not None:
            if isinstance(ids, str):
                raise TypeError("outbox.requeue() takes a list of ids, not one str")
            ids = list(ids)
        count: int = await self._database.run(_table.requeue, self.table, ids)
        if count:
            self._relay.wakeup.set()
        return count
