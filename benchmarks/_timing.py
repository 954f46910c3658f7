"""Timing, timeit-style: batches of sends inside one running loop, repeated, best kept.

A measurement never includes starting the event loop: :func:`run_on_loop` starts it once
per loop and everything is timed inside. Each implementation's batch size is calibrated so
that one batch takes about the target time (this also warms it up), then every
implementation of a case is timed once per round, round after round (interleaved, so that
a drift in machine speed hits them alike), with the cyclic garbage collector paused as
``timeit`` does. The report uses the minimum: the run least disturbed by the rest of the
machine.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import math
import statistics
from collections.abc import Callable, Coroutine
from time import perf_counter_ns
from typing import Any, TypeVar

from ._model import Batch, LoopName, NotApplicable, Timing

T = TypeVar("T")

MAX_BATCH = 1_000_000
STATISTIC = "min"


def loop_unavailable(loop: LoopName) -> str | None:
    """Why *loop* cannot run here, or ``None`` when it can."""
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed (pip install uvloop)"
    if loop == "trio" and importlib.util.find_spec("trio") is None:
        return "trio is not installed (pip install trio)"
    return None


def run_on_loop(loop: LoopName, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh event loop of the named kind."""
    if loop == "asyncio":
        with asyncio.Runner() as runner:
            return runner.run(main())
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    import trio

    return trio.run(main)


async def calibrate(batch: Batch, target_ns: float) -> int:
    """The batch size that makes one ``await batch(k)`` take about *target_ns*.

    The first call is left out: it pays one-time costs (imports, compiled loops, caches)
    that would make the batch far too small.
    """
    await batch(1)
    k = 1
    while True:
        start = perf_counter_ns()
        await batch(k)
        elapsed = perf_counter_ns() - start
        if elapsed >= target_ns / 10 or k >= MAX_BATCH:
            return max(1, min(MAX_BATCH, math.ceil(k * target_ns / max(elapsed, 1))))
        k *= 10 if elapsed < target_ns / 100 else 2


def describe_failure(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"raised {type(exc).__name__}" + (f": {text[:120]}" if text else "")


async def measure(
    batches: dict[str, Batch], *, target_ns: float, repeats: int
) -> dict[str, Timing | NotApplicable]:
    """Time every batch: calibrate (warm-up), then *repeats* interleaved rounds.

    An implementation that raises while calibrating is reported as not applicable, with
    the exception, rather than stopping the run.
    """
    results: dict[str, Timing | NotApplicable] = {}
    sizes: dict[str, int] = {}
    for name, batch in batches.items():
        try:
            sizes[name] = await calibrate(batch, target_ns)
        except Exception as exc:
            results[name] = NotApplicable(describe_failure(exc))
    samples: dict[str, list[float]] = {name: [] for name in sizes}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, k in sizes.items():
                start = perf_counter_ns()
                await batches[name](k)
                samples[name].append((perf_counter_ns() - start) / k)
    finally:
        if gc_was_enabled:
            gc.enable()
    for name, k in sizes.items():
        results[name] = Timing(
            best_ns=min(samples[name]),
            median_ns=statistics.median(samples[name]),
            batch=k,
            repeats=repeats,
        )
    return results
