"""Dispatch: ns per send over every send mode, receiver kind, receiver count and event loop.

Every case connects the same fresh receivers (see :mod:`._receivers`) to asignals, to the
baselines (:mod:`._baselines`) and to the peers (:mod:`.peers`), and times them together
inside one running loop (:mod:`._timing`). Each row's ratio divides by the block's
baseline from the same run (lower is better): the strict floor for sequential modes, the
raw task group (``asyncio.TaskGroup``, or a trio nursery on trio) for concurrent ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from asignals import AsyncSignal

from . import _baselines
from ._model import (
    CONCURRENT_MODES,
    KINDS,
    MODES,
    ROBUST_MODES,
    Batch,
    Case,
    DispatchRow,
    Implementation,
    Kind,
    LoopName,
    Mode,
    NotApplicable,
    Settings,
    Setup,
    Timing,
)
from ._progress import Progress
from ._receivers import make_receivers
from ._timing import describe_failure, loop_unavailable, measure, run_on_loop
from .peers import NOT_COMPARED, PEERS


class Sender:
    """The sender of every send: a class, as Django code usually sends."""


PAYLOAD = {"value": 42}
FLOOR = "strict floor"
HAND_LOOP = "hand loop, **payload"
RAW_TASK_GROUP = "raw task group"
SEND_IN_ROBUST_BLOCK = "asignals send"


class Compared(NamedTuple):
    """One line of the comparison the results lead with: the table and the plot."""

    label: str  # Markdown, for the table
    legend: str  # plain text, for the plot
    sync: str | None  # the implementation sent to sync receivers (None: it cannot)
    coroutine: str | None  # the implementation sent to coroutine receivers


# `send`, asignals against the strict floor and its peers: what a user choosing a library
# compares. Each peer's label says what it leaves out. The hand loop, a labelled reference,
# is in the table only (no legend): the plot keeps to the floor and the libraries.
COMPARED: tuple[Compared, ...] = (
    Compared("**strict floor** (the baseline)", "strict floor", FLOOR, FLOOR),
    Compared("**asignals `send`**", "asignals", "asignals", "asignals"),
    Compared(
        "aiosignal `send` (no results, no senders, strong refs)",
        "aiosignal",
        None,
        "aiosignal send",
    ),
    Compared("psygnal `emit` (sync only, returns nothing)", "psygnal", "psygnal emit", None),
    Compared("blinker `send` / `send_async`", "blinker", "blinker send", "blinker send_async"),
    Compared("Django `send` / `asend`", "Django", "django send", "django asend"),
    Compared("async-signals `send`", "async-signals", "async-signals send", "async-signals send"),
    Compared("hand loop with `**payload` (reference)", "", HAND_LOOP, HAND_LOOP),
)


def block_baseline(mode: Mode) -> str:
    """The implementation a block's ratios divide by."""
    return RAW_TASK_GROUP if mode in CONCURRENT_MODES else FLOOR


def _asignals(weak: bool, mode: Mode | None = None) -> Callable[[Setup], Batch | NotApplicable]:
    """asignals in the case's mode, or always in *mode* (a reference timed in another
    mode's block, so that the two are measured in the same interleaved rounds)."""

    def build(setup: Setup) -> Batch | NotApplicable:
        signal = AsyncSignal("bench")
        for r in setup.receivers:
            signal.connect(r, weak=weak)
        sender, payload = setup.sender, setup.payload
        # Written out per mode, as user code reads: `await signal.send(sender, **payload)`.
        mode_to_time = mode or setup.case.mode
        if mode_to_time == "send":

            async def batch(k: int) -> None:
                for _ in range(k):
                    await signal.send(sender, **payload)

        elif mode_to_time == "send_robust":

            async def batch(k: int) -> None:
                for _ in range(k):
                    await signal.send_robust(sender, **payload)

        elif mode_to_time == "gather":

            async def batch(k: int) -> None:
                for _ in range(k):
                    await signal.gather(sender, **payload)

        else:

            async def batch(k: int) -> None:
                for _ in range(k):
                    await signal.gather_robust(sender, **payload)

        return batch

    return build


def _robust_or_not(mode: Mode) -> str:
    return "robust" if mode in ROBUST_MODES else "plain"


ASIGNALS: list[Implementation] = [
    Implementation(
        "asignals",
        "asignals",
        frozenset(MODES),
        _asignals(weak=True),
        "AsyncSignal, receivers connected with the default weak=True",
    ),
    Implementation(
        "asignals weak=False",
        "asignals",
        frozenset({"send"}),
        _asignals(weak=False),
        "AsyncSignal, receivers connected with weak=False",
    ),
    Implementation(
        SEND_IN_ROBUST_BLOCK,
        "asignals",
        frozenset({"send_robust"}),
        _asignals(weak=True, mode="send"),
        "AsyncSignal.send, timed in the rounds of the send_robust blocks: what the "
        "send_robust vs send target divides by (blocks are timed minutes apart, and a "
        "machine's speed drifts more than the difference between the two)",
    ),
]

BASELINES: list[Implementation] = [
    Implementation(
        FLOOR,
        "baseline",
        frozenset({"send", "send_robust"}),
        _baselines.strict_floor,
        "for r in rs: out.append((r, r(signal=s, sender=S, value=v))) with every name a "
        "fast local, awaiting coroutine receivers, inline in the caller (robust: "
        "try/except): the floor for any dispatcher, and the baseline of send/send_robust",
    ),
    Implementation(
        HAND_LOOP,
        "baseline",
        frozenset(MODES),
        _baselines.hand_loop,
        "the same loop as most people write it, r(signal=s, sender=sender, **payload): a "
        "reference, not the baseline",
        _robust_or_not,
    ),
    Implementation(
        RAW_TASK_GROUP,
        "baseline",
        CONCURRENT_MODES,
        _baselines.raw_task_group,
        "async with asyncio.TaskGroup() (trio: a nursery), one task per receiver",
    ),
    Implementation(
        "asyncio.gather",
        "baseline",
        CONCURRENT_MODES,
        _baselines.raw_gather,
        "await asyncio.gather(*coroutines) (robust: return_exceptions=True)",
    ),
]


def implementations(peers: bool) -> list[Implementation]:
    return ASIGNALS + BASELINES + (PEERS if peers else [])


def notes(peers: bool) -> list[str]:
    lines = [f"{impl.name}: {impl.description}" for impl in implementations(peers)]
    if peers:
        lines += [f"not compared in {mode}: {why}" for mode, why in NOT_COMPARED.items()]
    return lines


def cases(loop: LoopName, counts: list[int]) -> list[Case]:
    return [Case(mode, kind, n, loop) for mode in MODES for kind in KINDS for n in counts]


def run(settings: Settings, progress: Progress) -> tuple[list[DispatchRow], list[str]]:
    """Measure the whole grid; return the rows and notes (loops that could not run)."""
    impls = implementations(settings.peers)
    rows: list[DispatchRow] = []
    skipped: list[str] = []
    for loop in settings.loops:
        reason = loop_unavailable(loop)
        if reason is not None:
            skipped.append(f"{loop}: n/a, {reason}")
            progress.advance(len(cases(loop, settings.receiver_counts)))
            continue

        async def main(loop: LoopName = loop) -> list[DispatchRow]:
            return await _run_loop(loop, settings, impls, progress)

        rows += run_on_loop(loop, main)
    _fill_ratios(rows)
    return rows, skipped


async def _run_loop(
    loop: LoopName, settings: Settings, impls: list[Implementation], progress: Progress
) -> list[DispatchRow]:
    rows: list[DispatchRow] = []
    done: dict[tuple[str, str, Kind, int], Timing | NotApplicable] = {}
    for case in cases(loop, settings.receiver_counts):
        progress.step(f"{loop} {case.mode} {case.kind} N={case.n}")
        setup = Setup(
            case, make_receivers(case.kind, loop, case.n), Sender, dict(PAYLOAD), object()
        )
        listed = [impl for impl in impls if case.mode in impl.modes]
        keys = {
            impl.name: (impl.name, impl.measure_key(case.mode), case.kind, case.n)
            for impl in listed
        }
        batches: dict[str, Batch] = {}
        for impl in listed:
            if keys[impl.name] in done:
                continue
            try:
                built = impl.build(setup)
            except Exception as exc:
                built = NotApplicable(describe_failure(exc))
            if isinstance(built, NotApplicable):
                done[keys[impl.name]] = built
            else:
                batches[impl.name] = built
        measured = await measure(
            batches, target_ns=settings.batch_target_ms * 1e6, repeats=settings.repeats
        )
        for name, outcome in measured.items():
            done[keys[name]] = outcome
        rows += [_row(case, impl, done[keys[impl.name]]) for impl in listed]
        del setup, batches
    return rows


def _row(case: Case, impl: Implementation, outcome: Timing | NotApplicable) -> DispatchRow:
    row = DispatchRow(
        loop=case.loop,
        mode=case.mode,
        kind=case.kind,
        n=case.n,
        impl=impl.name,
        role=impl.role,
        baseline=block_baseline(case.mode),
    )
    if isinstance(outcome, NotApplicable):
        row.na = outcome.reason
    else:
        row.ns = outcome.best_ns
        row.median_ns = outcome.median_ns
        row.batch = outcome.batch
        row.repeats = outcome.repeats
    return row


def _fill_ratios(rows: list[DispatchRow]) -> None:
    best = {(r.loop, r.mode, r.kind, r.n, r.impl): r.ns for r in rows}
    for row in rows:
        base = best.get((row.loop, row.mode, row.kind, row.n, row.baseline))
        if row.ns is not None and base:
            row.ratio = row.ns / base


def lookup(
    rows: list[DispatchRow], loop: LoopName, mode: Mode, kind: Kind, n: int, impl: str
) -> DispatchRow | None:
    for row in rows:
        if (row.loop, row.mode, row.kind, row.n, row.impl) == (loop, mode, kind, n, impl):
            return row
    return None
