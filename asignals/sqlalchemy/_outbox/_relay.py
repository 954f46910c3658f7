"""The relay: delivers an outbox's rows while ``async with outbox:`` runs.

One task, owned by the outbox's task group, repeats one round: lease the due rows (up to
a batch, oldest first), deliver each, delete those delivered, schedule a retry (or keep
as dead) those that failed; then wait for a commit of this process that wrote rows, or
``poll_interval`` (for rows of other processes, and retries coming due).

A row is leased before its receivers run and its attempt is counted then, so a relay
that dies mid-delivery has used the attempt; its rows come due again when the lease
expires. Rows this process cannot deliver (a signal it does not know, a model event
without a durable receiver here) are given back, attempt uncounted, and skipped until
that changes: logged once, counted, never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from ... import _wire
from ..._delivery import Delivery, delivering
from ..._receivers import describe
from . import _table
from ._rows import MODEL_SIGNALS, Unknown, model_payload

if TYPE_CHECKING:
    from ._outbox import Outbox

logger = logging.getLogger("asignals.outbox")


class Database:
    """Runs the outbox's statements on its engine, async or not, each in a transaction."""

    def __init__(self, engine: Engine | AsyncEngine) -> None:
        self.engine = engine

    async def run(self, statement: Callable[..., Any], *args: Any) -> Any:
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            async with engine.begin() as connection:
                return await connection.run_sync(statement, *args)
        return await anyio.to_thread.run_sync(self._run, engine, statement, args)

    @staticmethod
    def _run(engine: Engine, statement: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        connection: Connection
        with engine.begin() as connection:
            return statement(connection, *args)

    @asynccontextmanager
    async def loading(self) -> AsyncIterator[Callable[..., Any]]:
        """A session of the relay's own, open while the receivers of one row run: yields
        a function that runs a sync function with ``Session.get`` as its last argument."""
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            async with AsyncSession(engine, expire_on_commit=False) as session:

                async def load_async(function: Callable[..., Any], *args: Any) -> Any:
                    return await session.run_sync(lambda sync: function(*args, sync.get))

                yield load_async
            return
        sync_session = Session(engine, expire_on_commit=False)

        async def load(function: Callable[..., Any], *args: Any) -> Any:
            return await anyio.to_thread.run_sync(lambda: function(*args, sync_session.get))

        try:
            yield load
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sync_session.close)


class Wakeup:
    """Wakes the relay's task from any thread (a commit in a worker thread, a script's
    thread), without blocking the committing thread."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._thread: int | None = None
        self._call_soon: Callable[[Callable[[], None]], Any] | None = None

    def bind(self) -> None:
        """Called in the relay's task: where to schedule the wake-ups from now on."""
        self._event = anyio.Event()
        self._thread = threading.get_ident()
        try:
            self._call_soon = asyncio.get_running_loop().call_soon_threadsafe
        except RuntimeError:  # trio
            import trio

            self._call_soon = trio.lowlevel.current_trio_token().run_sync_soon

    def unbind(self) -> None:
        self._thread = self._call_soon = None

    def set(self) -> None:
        call_soon = self._call_soon
        if call_soon is None:
            return  # the relay is not running: a relay elsewhere delivers (or a later one)
        if threading.get_ident() == self._thread:
            self._event.set()
            return
        with contextlib.suppress(RuntimeError):  # the relay's event loop has just closed
            call_soon(self._set)

    def _set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._event.wait()
        self._event = anyio.Event()


class Relay:
    """Delivers the rows of one outbox (see the module's docstring)."""

    def __init__(self, outbox: Outbox, owner: str) -> None:
        self.outbox = outbox
        self.owner = owner  # this relay's name in the leases it takes
        self.wakeup = Wakeup()
        self.delivered = 0
        self.retried = 0
        self.unknown = 0
        self._skip: dict[tuple[str, str | None], str] = {}  # what cannot be delivered here
        self._failing: str | None = None  # the kind of database error logged last

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self.wakeup.bind()
        task_status.started()
        try:
            while True:
                try:
                    await self.deliver_due()
                except Exception as exc:  # the database is away: say it once, keep trying
                    kind = type(exc).__name__
                    if self._failing != kind:
                        self._failing = kind
                        logger.error(
                            "%r: the relay cannot reach its table: %s: %s", self.outbox, kind, exc
                        )
                else:
                    if self._failing is not None:
                        logger.warning("%r: the relay reaches its table again", self.outbox)
                        self._failing = None
                await self.wakeup.wait(self.outbox.poll_interval)
        finally:
            self.wakeup.unbind()

    async def deliver_due(self) -> None:
        """Deliver due rows until fewer than a batch are due."""
        outbox = self.outbox
        database = outbox._database
        while True:
            self._refresh_skip()
            rows = await database.run(
                _table.lease,
                outbox.table,
                self.owner,
                outbox.lease,
                outbox.batch_size,
                tuple(self._skip),
            )
            if not rows:
                return
            await self._deliver_batch(rows)
            if len(rows) < outbox.batch_size:
                return

    async def _deliver_batch(self, rows: list[_table.Leased]) -> None:
        outbox = self.outbox
        database = outbox._database
        table = outbox.table
        delivered: list[str] = []
        given_back: list[str] = []
        leased_at = anyio.current_time()
        started = 0
        interrupted: str | None = None  # the row whose receivers were running when stopped
        try:
            for row in rows:
                if anyio.current_time() - leased_at > outbox.lease / 2:
                    rest = [r.id for r in rows[started:]]
                    await database.run(_table.renew, table, self.owner, rest, outbox.lease)
                    leased_at = anyio.current_time()
                started += 1
                error: str | None
                if row.attempts > outbox.max_attempts:  # its last attempt was cut short
                    error = (
                        f"its last attempt (of max_attempts={outbox.max_attempts}) did not "
                        f"finish: the relay delivering it stopped"
                    )
                    await database.run(_table.bury, table, self.owner, row.id, error)
                    continue
                interrupted = row.id
                try:
                    error = await self._deliver(row)
                except Unknown as unknown:
                    interrupted = None
                    given_back.append(row.id)
                    self._unknown_row(unknown)
                    continue
                interrupted = None
                if error is None:
                    delivered.append(row.id)
                    self.delivered += 1
                elif row.attempts >= outbox.max_attempts:
                    await database.run(_table.bury, table, self.owner, row.id, error)
                    logger.error(
                        "%r: event %s (%s) failed %d times and is kept as dead "
                        "(outbox.dead_letters()): %s",
                        outbox,
                        row.id,
                        row.signal,
                        row.attempts,
                        error,
                    )
                else:
                    delay = min(outbox.backoff * 2 ** (row.attempts - 1), outbox.max_backoff)
                    await database.run(_table.retry, table, self.owner, row.id, error, delay)
                    self.retried += 1
        finally:
            with anyio.CancelScope(shield=True):
                if delivered:
                    await database.run(_table.remove, table, self.owner, delivered)
                if given_back:
                    await database.run(_table.release, table, self.owner, given_back, False)
                if interrupted is not None:  # stopped while its receivers ran: due again
                    await database.run(_table.release, table, self.owner, [interrupted], True)
                if started < len(rows):  # stopped: the rows whose receivers never ran
                    rest = [r.id for r in rows[started:]]
                    await database.run(_table.release, table, self.owner, rest, False)

    async def _deliver(self, row: _table.Leased) -> str | None:
        """Run the receivers of one row; the error to record if one failed, else None.
        Raises Unknown for a row this process cannot deliver."""
        outbox = self.outbox
        rows = outbox._rows
        name = row.signal
        signal = rows.signal_of(name, row.sender, outbox._durable_receivers)
        delivery = Delivery(
            id=row.id,
            signal=name,
            origin=row.origin,
            timestamp=row.created_at,
            mode="outbox",
            delivery_count=row.attempts,
        )
        try:
            sender = rows.sender_of(name, row.sender)
            stored = rows.payload_of(name, row.payload)
        except _wire.Dropped as dropped:
            return f"cannot be read here: {dropped.detail}"
        if name not in MODEL_SIGNALS:
            with delivering(delivery):
                responses = await signal.send_robust(sender, **stored)
            return _failure(responses)
        if not signal.has_listeners(sender):
            raise Unknown(
                (name, row.sender),
                f"no durable receiver of {name} for {describe(sender)} is connected here",
            )
        async with outbox._database.loading() as load:
            try:
                payload = await load(model_payload, name, sender, stored)
            except _wire.Dropped as dropped:
                return f"cannot be read here: {dropped.detail}"
            with delivering(delivery):
                responses = await signal.send_robust(sender, **payload)
        return _failure(responses)

    def _unknown_row(self, unknown: Unknown) -> None:
        self.unknown += 1
        if unknown.key not in self._skip:
            self._skip[unknown.key] = str(unknown)
            logger.warning(
                "%r: left an event for a relay that can deliver it (%s); such events are "
                "only counted from now on",
                self.outbox,
                unknown,
            )

    def _refresh_skip(self) -> None:
        """Forget what was skipped and can be delivered now (a module imported since,
        a durable receiver connected)."""
        if not self._skip:
            return
        rows = self.outbox._rows
        for key in list(self._skip):
            name, sender = key
            try:
                signal = rows.signal_of(name, sender or "null", self.outbox._durable_receivers)
                if sender is not None:
                    found = rows.sender_of(name, sender)
                    if name in MODEL_SIGNALS and not signal.has_listeners(found):
                        continue
            except (Unknown, _wire.Dropped):
                continue
            del self._skip[key]


def _failure(responses: list[tuple[Any, Any]]) -> str | None:
    """The error of the first receiver that raised, as stored in the row."""
    for receiver, result in responses:
        if isinstance(result, BaseException):
            return f"{describe(receiver)} raised {type(result).__name__}: {result}"
    return None
