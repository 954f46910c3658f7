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
import json
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

from ... import AsyncSignal, _trace, _wire
from ..._delivery import Delivery, delivering
from ..._dispatch import is_hooked
from ..._receivers import describe
from . import _durable, _table
from ._rows import MODEL_SIGNALS, Unknown, model_payload

if TYPE_CHECKING:
    from ._outbox import Outbox

logger = logging.getLogger("asignals.outbox")


class Database:
    """Runs the outbox's statements on its engine, async or not, each in a transaction."""

    def __init__(self, engine: Engine | AsyncEngine) -> None:
        self.engine = engine

    async def run(self, statement: Callable[..., Any], *args: Any) -> Any:
        """Run ``statement(connection, *args)`` in a transaction of its own, to its end
        even when the relay is stopped meanwhile (shielded: no statement is left half-way,
        no result is lost)."""
        engine = self.engine
        with anyio.CancelScope(shield=True):
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
        """A session of the relay's own for the receivers of one row: yields a function
        that runs ``function(*args, Session.get)`` and then ends the session's transaction,
        so that no connection is held while the receivers run (the objects stay loaded)."""
        engine = self.engine
        if isinstance(engine, AsyncEngine):
            async with AsyncSession(engine, expire_on_commit=False) as session:

                async def load_async(function: Callable[..., Any], *args: Any) -> Any:
                    with anyio.CancelScope(shield=True):
                        try:
                            return await session.run_sync(lambda sync: function(*args, sync.get))
                        finally:
                            await session.commit()  # nothing written: gives the connection back

                yield load_async
            return
        sync_session = Session(engine, expire_on_commit=False)

        def load_sync(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
            try:
                return function(*args, sync_session.get)
            finally:
                sync_session.commit()

        async def load(function: Callable[..., Any], *args: Any) -> Any:
            with anyio.CancelScope(shield=True):  # the thread would go on: wait for it
                return await anyio.to_thread.run_sync(load_sync, function, args)

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
        self.stopping = False  # set by the outbox before it cancels the relay
        self._skip: dict[tuple[str, str | None], str] = {}  # what cannot be delivered here
        self._failing: str | None = None  # the kind of database error logged last
        self.counts: tuple[int, int, float | None] | None = None  # measured while traced

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self.wakeup.bind()
        _durable.relaying(self.outbox, True)
        task_status.started()
        try:
            while True:
                try:
                    await self.deliver_due()
                    if _trace.tracer is not None:  # metrics read it (asignals.outbox.*)
                        self.counts = await self.outbox._database.run(
                            _table.counts, self.outbox.table
                        )
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
            _durable.relaying(self.outbox, False)
            self.wakeup.unbind()

    async def deliver_due(self) -> None:
        """Deliver due rows until fewer than a batch are due."""
        outbox = self.outbox
        while True:
            self._refresh_skip()
            rows = await outbox._database.run(
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
        """Deliver leased *rows* in order, keeping their leases while it takes; whatever
        happens (even a stop), the rows end deleted, due again or dead."""
        held = {row.id for row in rows}  # leases this relay still holds
        batch = _Batch()
        try:
            async with anyio.create_task_group() as keeping:
                keeping.start_soon(self._keep_leases, held)
                for row in rows:
                    if row.id in held:  # else its lease ran out (a stall): another relay's now
                        await self._deliver_row(row, batch)
                    batch.settled.add(row.id)
                keeping.cancel_scope.cancel()
        finally:
            await self._settle(rows, batch, held)

    async def _keep_leases(self, held: set[str]) -> None:
        """Extend the leases of the batch's rows while it runs (each lease's third)."""
        outbox = self.outbox
        while True:
            await anyio.sleep(outbox.lease / 3)
            if held:
                still = await outbox._database.run(
                    _table.renew, outbox.table, self.owner, sorted(held), outbox.lease
                )
                held.intersection_update(still)

    async def _deliver_row(self, row: _table.Leased, batch: _Batch) -> None:
        outbox = self.outbox
        database = outbox._database
        error: str | None
        if row.attempts > outbox.max_attempts:  # its last attempt was cut short
            error = (
                f"its last attempt (of max_attempts={outbox.max_attempts}) did not finish: "
                f"the relay delivering it stopped"
            )
            await database.run(_table.bury, outbox.table, self.owner, row.id, error, True)
            return
        try:
            error = await self._deliver(row, batch)
        except Unknown as unknown:
            batch.given_back.append(row.id)
            self._unknown_row(unknown)
            return
        batch.running = None  # (still set if stopped meanwhile: `_settle` reads it)
        if error is None:
            batch.delivered.append(row.id)
            self.delivered += 1
        elif row.attempts >= outbox.max_attempts:
            await database.run(_table.bury, outbox.table, self.owner, row.id, error)
            logger.error(
                "%r: event %s (%s) failed %d times and is kept as dead (outbox.dead_letters()): %s",
                outbox,
                row.id,
                row.signal,
                row.attempts,
                error,
            )
        else:
            delay = min(outbox.backoff * 2 ** (row.attempts - 1), outbox.max_backoff)
            await database.run(_table.retry, outbox.table, self.owner, row.id, error, delay)
            self.retried += 1

    async def _settle(self, rows: list[_table.Leased], batch: _Batch, held: set[str]) -> None:
        """The end of a batch (or a stop inside it): delete the delivered rows, give back
        the others this relay still holds."""
        database = self.outbox._database
        table = self.outbox.table
        if batch.delivered:
            await database.run(_table.remove, table, self.owner, batch.delivered)
        if batch.given_back:
            await database.run(_table.release, table, self.owner, batch.given_back, False)
        left = [row.id for row in rows if row.id in held and row.id not in batch.settled]
        ran = [row_id for row_id in left if row_id == batch.running]
        if ran:  # stopped while its receivers ran: due again, the attempt counted
            await database.run(_table.release, table, self.owner, ran, True)
        if len(left) > len(ran):  # stopped: the rows whose receivers never ran
            rest = [row_id for row_id in left if row_id != batch.running]
            await database.run(_table.release, table, self.owner, rest, False)

    async def _deliver(self, row: _table.Leased, batch: _Batch) -> str | None:
        """Run the receivers of one row; the error to record if one failed, else None.
        Raises Unknown for a row this process cannot deliver."""
        outbox = self.outbox
        rows = outbox._rows
        name = row.signal
        signal = rows.signal_of(name, outbox._durable_receivers)
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
            stored = rows.payload_of(row.payload)
        except _wire.Dropped as dropped:
            return f"cannot be read here: {dropped.detail}"
        if not _heard(signal, sender):
            raise Unknown(
                (name, row.sender),
                f"no receiver of {name} for {describe(sender)} is connected here",
            )
        if name not in MODEL_SIGNALS:
            batch.running = row.id
            return await self._send(signal, sender, stored, delivery, _carrier(row.trace))
        async with outbox._database.loading() as load:
            try:
                payload = await load(model_payload, name, sender, stored)
            except _wire.Dropped as dropped:
                return f"cannot be read here: {dropped.detail}"
            except Exception as exc:  # e.g. a stored column the class no longer has
                return f"its payload could not be built: {type(exc).__name__}: {exc}"
            batch.running = row.id
            return await self._send(signal, sender, payload, delivery, _carrier(row.trace))

    async def _send(
        self,
        signal: AsyncSignal[...],
        sender: Any,
        payload: Any,
        delivery: Delivery,
        trace: dict[str, str] | None,
    ) -> str | None:
        try:
            # (the trace of the code that wrote the row, while traced: its child)
            with delivering(delivery), _trace.continued(trace):
                responses = await signal.send_robust(sender, **payload)
        except anyio.get_cancelled_exc_class():
            if self.stopping:
                raise
            # A receiver's own cancellation (not the relay being stopped): a failure.
            return "a receiver raised a cancellation of its own"
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
        a receiver connected)."""
        if not self._skip:
            return
        rows = self.outbox._rows
        for key in list(self._skip):
            name, sender = key
            try:
                signal = rows.signal_of(name, self.outbox._durable_receivers)
                found = rows.sender_of(name, sender) if sender is not None else None
            except (Unknown, _wire.Dropped):
                continue
            if sender is not None and not _heard(signal, found):
                continue
            del self._skip[key]


class _Batch:
    """What became of a batch's rows so far."""

    def __init__(self) -> None:
        self.settled: set[str] = set()  # rows whose turn has passed
        self.delivered: list[str] = []
        self.given_back: list[str] = []  # rows this process cannot deliver
        self.running: str | None = None  # the row whose receivers are running


def _heard(signal: AsyncSignal[...], sender: Any) -> bool:
    """A send of *signal* from *sender* here reaches someone: a receiver, or a send hook
    (a Redis bridge carrying it). Else its rows are left for a relay where it does."""
    return signal.has_listeners(sender) or is_hooked(signal)


def _carrier(trace: str | None) -> dict[str, str] | None:
    """A row's stored trace context (``None``: none, or not one we can read)."""
    if trace is None:
        return None
    try:
        carrier = json.loads(trace)
    except ValueError:
        return None
    if type(carrier) is dict and all(type(v) is str for v in carrier.values()):
        return carrier
    return None


def _failure(responses: list[tuple[Any, Any]]) -> str | None:
    """The error of the first receiver that raised, as stored in the row."""
    for receiver, result in responses:
        if isinstance(result, BaseException):
            return f"{describe(receiver)} raised {type(result).__name__}: {result}"
    return None
