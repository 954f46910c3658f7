"""Memory: bytes per connected receiver, and no growth under churn (tracemalloc).

* Footprint: connect N fresh receivers (created before tracing starts counting, so only
  the library's bookkeeping is measured) and divide the traced growth by N; the baseline
  is the least a dispatcher with weak references could keep, a list of ``weakref.ref``.
* Churn: many cycles of connect/disconnect, of sends to weak receivers whose objects die
  right after, and of sends from senders that die; traced memory is read (after a full
  collection) at ten checkpoints after a warm-up. Flat means it grew by less than
  ``FLAT_BYTES_PER_CYCLE`` per cycle overall: a real leak keeps at least a weak reference
  (~70 bytes) per cycle.
"""

from __future__ import annotations

import array
import asyncio
import gc
import time
import tracemalloc
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from asignals import AsyncSignal

from ._model import ChurnRow, FootprintRow, NotApplicable, Role, Settings
from ._progress import Progress
from ._receivers import make_receivers
from ._timing import describe_failure
from .peers import CONNECTORS, missing

FLAT_BYTES_PER_CYCLE = 1.0
CHECKPOINTS = 10

Connector = Callable[[list[Callable[..., Any]]], object]


def _asignals(weak: bool) -> Connector:
    def connect(receivers: list[Callable[..., Any]]) -> object:
        signal = AsyncSignal("footprint")
        for r in receivers:
            signal.connect(r, weak=weak)
        return signal

    return connect


def _weakref_list(receivers: list[Callable[..., Any]]) -> object:
    return [weakref.ref(r) for r in receivers]


def footprint_subjects(peers: bool) -> list[tuple[str, Role, str | None, Connector]]:
    """(row name, role, module to check is installed, connector)."""
    subjects: list[tuple[str, Role, str | None, Connector]] = [
        ("asignals", "asignals", None, _asignals(weak=True)),
        ("asignals weak=False", "asignals", None, _asignals(weak=False)),
        ("list of weakref.ref", "baseline", None, _weakref_list),
    ]
    if peers:
        subjects += [(name, "peer", module, fn) for name, (module, fn) in CONNECTORS.items()]
    return subjects


def work_units(settings: Settings) -> int:
    return len(footprint_subjects(settings.peers)) + 3


def run(
    settings: Settings, progress: Progress
) -> tuple[list[FootprintRow], list[ChurnRow], list[str]]:
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start(1)
    try:
        footprint = [
            _footprint(name, role, module, connect, settings.footprint_receivers, progress)
            for name, role, module, connect in footprint_subjects(settings.peers)
        ]
        base = next((row for row in footprint if row.role == "baseline"), None)
        for row in footprint:
            if base and base.bytes_per_receiver and row.bytes_per_receiver is not None:
                row.ratio = row.bytes_per_receiver / base.bytes_per_receiver
        churn = [
            _churn(name, description, body, settings.churn_cycles, progress)
            for name, description, body in CHURNS
        ]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    notes = [
        f"footprint: {settings.footprint_receivers:,} receivers per library, distinct "
        f"function objects created before counting; bytes traced by tracemalloc after a full "
        f"collection; ratio vs a list of weakref.ref; connect times are with tracing on",
        f"churn: {settings.churn_cycles:,} cycles each, traced bytes after gc.collect() at "
        f"{CHECKPOINTS} checkpoints after a warm-up; flat = growth under "
        f"{FLAT_BYTES_PER_CYCLE:g} byte per cycle",
    ]
    return footprint, churn, notes


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _footprint(
    name: str, role: Role, module: str | None, connect: Connector, n: int, progress: Progress
) -> FootprintRow:
    progress.step(f"footprint {name}")
    row = FootprintRow(name, role, n)
    unavailable: NotApplicable | None = missing(module) if module else None
    if unavailable is not None:
        row.na = unavailable.reason
        return row
    receivers = make_receivers("sync", "asyncio", n)
    try:
        connect([])  # imports the library first: its import must not count as footprint
    except Exception as exc:
        row.na = describe_failure(exc)
        return row
    before = _traced()
    started = time.perf_counter()
    try:
        keep = connect(receivers)
    except Exception as exc:
        row.na = describe_failure(exc)
        return row
    row.connect_seconds = time.perf_counter() - started
    row.bytes_per_receiver = (_traced() - before) / n
    del keep
    return row


# -- churn --------------------------------------------------------------------------------

Cycles = Callable[[int], Coroutine[Any, Any, None]]


def _connect_disconnect() -> Cycles:
    signal = AsyncSignal("churn")
    kept = make_receivers("sync", "asyncio", 1)

    async def cycles(count: int) -> None:
        for _ in range(count):
            signal.connect(kept[0])
            signal.disconnect(kept[0])

    return cycles


class _Listener:
    def on_event(self, sender: Any, **kwargs: Any) -> None:
        return None


class _Sender:
    pass


def _dying_receivers() -> Cycles:
    signal = AsyncSignal("churn")
    permanent = make_receivers("async", "asyncio", 1)
    signal.connect(permanent[0])

    async def cycles(count: int) -> None:
        for index in range(count):
            listener = _Listener()
            signal.connect(listener.on_event)  # weak: a WeakMethod
            await signal.send(_Sender, value=index)
            del listener  # dies here; its connection must go with it

    return cycles


def _dying_senders() -> Cycles:
    signal = AsyncSignal("churn")
    kept = make_receivers("sync", "asyncio", 1)

    async def cycles(count: int) -> None:
        for index in range(count):
            sender = _Sender()
            signal.connect(kept[0], sender=sender)  # a plan for this sender
            await signal.send(sender, value=index)
            del sender  # dies here; its plan must go with it

    return cycles


CHURNS: list[tuple[str, str, Callable[[], Cycles]]] = [
    (
        "connect/disconnect",
        "connect then disconnect one live receiver",
        _connect_disconnect,
    ),
    (
        "dying receivers",
        "connect a new object's bound method (weak), send, drop the object",
        _dying_receivers,
    ),
    (
        "dying senders",
        "connect a receiver for a new sender object, send from it, drop the sender",
        _dying_senders,
    ),
]


def _churn(
    name: str, description: str, make: Callable[[], Cycles], cycles: int, progress: Progress
) -> ChurnRow:
    progress.step(f"churn {name}")
    row = ChurnRow(name, description, cycles)
    step = max(1, cycles // CHECKPOINTS)

    # Readings go into preallocated arrays: appending to lists of ints would allocate, and
    # the churn would measure its own bookkeeping.
    readings = array.array("q", [0] * (CHECKPOINTS + 2))
    done = array.array("q", [0] * (CHECKPOINTS + 2))

    async def main() -> None:
        body = make()
        await body(min(1000, step))  # warm-up: first-use caches, free lists
        readings[0] = _traced()
        taken = 1
        while done[taken - 1] < cycles:
            count = min(step, cycles - done[taken - 1])
            await body(count)
            done[taken] = done[taken - 1] + count
            readings[taken] = _traced()
            taken += 1
        row.checkpoints = list(done[:taken])
        row.traced_bytes = [reading - readings[0] for reading in readings[:taken]]

    started = time.perf_counter()
    asyncio.run(main())
    row.seconds = time.perf_counter() - started
    row.growth_bytes = row.traced_bytes[-1]
    row.bytes_per_cycle = row.growth_bytes / cycles
    row.flat = row.bytes_per_cycle < FLAT_BYTES_PER_CYCLE
    return row
