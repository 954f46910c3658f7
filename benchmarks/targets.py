"""The project's performance targets (issue 12), judged against one run's results.

Each target states its goal, the measured figure (the worst over the Pythons and loops it
applies to), pass or miss, and the figures behind it. Every ratio is lower-is-better.
A target whose cases were not measured (a section skipped, a receiver count left out, no
Python 3.12+ on the machine) is reported as not judged, not as a pass.
"""

from __future__ import annotations

from collections.abc import Callable

from ._model import DispatchRow, Kind, LoopName, Mode, Results, TargetRow
from .dispatch import FLOOR, RAW_TASK_GROUP, SEND_IN_ROBUST_BLOCK, lookup
from .pythons import version_of

SEND_SYNC_100_VS_FLOOR = 1.25
SEND_ASYNC_100_VS_FLOOR = 1.15
SEND_ASYNC_1_VS_FASTEST_PEER = 1.0
SEND_SYNC_1_VS_FLOOR = 3.0
GATHER_EAGER_QUICK_VS_TASK_GROUP = 0.35
GATHER_EAGER_SUSPENDING_VS_TASK_GROUP = 1.0
GATHER_NOT_EAGER_VS_TASK_GROUP = 1.1
ROBUST_VS_SEND = 1.1
ASGI_ONE_RECEIVER_VS_FLOOR = 2.0
ASGI_NO_RECEIVERS_US = 0.25

Applies = Callable[[tuple[int, int] | None, LoopName], bool]
"""Whether a target applies to a (Python version, loop)."""

Ratio = Callable[[list[DispatchRow], LoopName, Mode, Kind, int], tuple[float, str] | None]


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _everywhere(version: tuple[int, int] | None, loop: LoopName) -> bool:
    return True


def _eager(version: tuple[int, int] | None, loop: LoopName) -> bool:
    """Where gather can start tasks eagerly: an asyncio loop on Python 3.12+."""
    return version is not None and version >= (3, 12) and loop != "trio"


def _not_eager(version: tuple[int, int] | None, loop: LoopName) -> bool:
    return not _eager(version, loop)


def _runs(results: Results) -> list[tuple[str, tuple[int, int] | None, list[DispatchRow]]]:
    """(label, version, rows) for this run's Python and every other Python's run."""
    main = results.system.get("python", "")
    runs = [(main, version_of(main), results.dispatch)]
    runs += [
        (other.python, version_of(other.python), other.dispatch)
        for other in results.other_pythons
        if other.dispatch
    ]
    return [(label.replace("CPython ", ""), version, rows) for label, version, rows in runs]


def _loops(rows: list[DispatchRow]) -> list[LoopName]:
    return list(dict.fromkeys(row.loop for row in rows))


def _ratio_target(
    results: Results,
    name: str,
    goal: str,
    limit: float,
    points: list[tuple[Mode, Kind, int]],
    ratio: Ratio,
    applies: Applies = _everywhere,
) -> TargetRow:
    """Judge ``ratio <= limit`` at every (Python, loop, point) it applies to; the worst."""
    figures: list[tuple[float, str]] = []
    missing: list[str] = []
    for python, version, rows in _runs(results):
        for loop in _loops(rows):
            if not applies(version, loop):
                continue
            for mode, kind, n in points:
                found = ratio(rows, loop, mode, kind, n)
                label = f"{python} {loop}" + (f" {kind} N={n}" if len(points) > 1 else "")
                if found is None:
                    missing.append(label)
                else:
                    figures.append((found[0], f"{label} {_x(found[0])}{found[1]}"))
    if not figures:
        why = "not measured" + (f" ({', '.join(missing)})" if missing else "")
        return TargetRow(name, goal, "—", None, why)
    worst = max(value for value, _ in figures)
    details = "; ".join(text for _, text in figures)
    if missing:
        details += f"; not measured: {', '.join(missing)}"
    return TargetRow(name, goal, _x(worst), worst <= limit, details)


def _vs(base_impl: str) -> Ratio:
    def ratio(
        rows: list[DispatchRow], loop: LoopName, mode: Mode, kind: Kind, n: int
    ) -> tuple[float, str] | None:
        subject = lookup(rows, loop, mode, kind, n, "asignals")
        base = lookup(rows, loop, mode, kind, n, base_impl)
        if subject is None or base is None or not subject.ns or not base.ns:
            return None
        return subject.ns / base.ns, ""

    return ratio


def _vs_fastest_peer(
    rows: list[DispatchRow], loop: LoopName, mode: Mode, kind: Kind, n: int
) -> tuple[float, str] | None:
    ours = lookup(rows, loop, mode, kind, n, "asignals")
    peers = [
        row
        for row in rows
        if (row.loop, row.mode, row.kind, row.n) == (loop, mode, kind, n)
        and row.role == "peer"
        and row.ns
    ]
    if ours is None or not ours.ns or not peers:
        return None
    fastest = min(peers, key=lambda row: row.ns or 0.0)
    return ours.ns / (fastest.ns or 1.0), f" ({fastest.impl})"


def evaluate(results: Results) -> list[TargetRow]:
    targets = [
        _ratio_target(
            results,
            "send, 100 sync receivers",
            f"≤ {SEND_SYNC_100_VS_FLOOR}x the strict floor",
            SEND_SYNC_100_VS_FLOOR,
            [("send", "sync", 100)],
            _vs(FLOOR),
        ),
        _ratio_target(
            results,
            "send, 100 coroutine receivers",
            f"≤ {SEND_ASYNC_100_VS_FLOOR}x the strict floor",
            SEND_ASYNC_100_VS_FLOOR,
            [("send", "async", 100)],
            _vs(FLOOR),
        ),
        _ratio_target(
            results,
            "send, 1 coroutine receiver",
            f"≤ {SEND_ASYNC_1_VS_FASTEST_PEER}x the fastest peer (aiosignal)",
            SEND_ASYNC_1_VS_FASTEST_PEER,
            [("send", "async", 1)],
            _vs_fastest_peer,
        ),
        _ratio_target(
            results,
            "send, 1 sync receiver",
            f"≤ {SEND_SYNC_1_VS_FLOOR}x the strict floor",
            SEND_SYNC_1_VS_FLOOR,
            [("send", "sync", 1)],
            _vs(FLOOR),
        ),
        _ratio_target(
            results,
            "gather, 100 coroutine receivers that return at once, 3.12+",
            f"≤ {GATHER_EAGER_QUICK_VS_TASK_GROUP}x a raw TaskGroup (asyncio loops)",
            GATHER_EAGER_QUICK_VS_TASK_GROUP,
            [("gather", "async", 100)],
            _vs(RAW_TASK_GROUP),
            _eager,
        ),
        _ratio_target(
            results,
            "gather, 100 receivers that suspend once, 3.12+",
            f"≤ {GATHER_EAGER_SUSPENDING_VS_TASK_GROUP}x a raw TaskGroup (asyncio loops)",
            GATHER_EAGER_SUSPENDING_VS_TASK_GROUP,
            [("gather", "suspend", 100)],
            _vs(RAW_TASK_GROUP),
            _eager,
        ),
        _ratio_target(
            results,
            "gather without eager tasks (3.11, trio)",
            f"≤ {GATHER_NOT_EAGER_VS_TASK_GROUP}x a raw TaskGroup (trio: nursery), N=100",
            GATHER_NOT_EAGER_VS_TASK_GROUP,
            [("gather", "async", 100), ("gather", "suspend", 100)],
            _vs(RAW_TASK_GROUP),
            _not_eager,
        ),
        _ratio_target(
            results,
            "send_robust vs send",
            f"≤ {ROBUST_VS_SEND}x send (1 and 100 receivers, sync and coroutine)",
            ROBUST_VS_SEND,
            [("send_robust", kind, n) for kind in ("sync", "async") for n in (1, 100)],
            _vs(SEND_IN_ROBUST_BLOCK),
        ),
    ]
    targets += _asgi_targets(results)
    targets.append(_memory_target(results))
    return targets


def _asgi_targets(results: Results) -> list[TargetRow]:
    one = "ASGI, one coroutine receiver on started+finished"
    none = "ASGI, SignalMiddleware without receivers"
    one_goal = (
        f"overhead per request ≤ {ASGI_ONE_RECEIVER_VS_FLOOR}x the hand-written floor "
        "middleware's (in process)"
    )
    none_goal = f"overhead per request ≤ {ASGI_NO_RECEIVERS_US} µs (in process)"
    skipped = results.skipped.get("asgi")
    if skipped is not None:
        return [
            TargetRow(one, one_goal, "—", None, skipped),
            TargetRow(none, none_goal, "—", None, skipped),
        ]
    rows = results.asgi_inprocess
    targets = []
    with_receiver = [row for row in rows if row.variant == "signals_async" and row.overhead_ratio]
    if with_receiver:
        worst = max(row.overhead_ratio or 0.0 for row in with_receiver)
        details = "; ".join(
            f"{row.loop} {_x(row.overhead_ratio or 0.0)} ({(row.overhead_ns or 0.0) / 1000:.2f} µs)"
            for row in with_receiver
        )
        targets.append(
            TargetRow(one, one_goal, _x(worst), worst <= ASGI_ONE_RECEIVER_VS_FLOOR, details)
        )
    else:
        targets.append(TargetRow(one, one_goal, "—", None, "not measured"))
    without = [row for row in rows if row.variant == "signals_none" and row.overhead_ns is not None]
    if without:
        worst_us = max((row.overhead_ns or 0.0) / 1000 for row in without)
        details = "; ".join(
            f"{row.loop} {(row.overhead_ns or 0.0) / 1000:.2f} µs" for row in without
        )
        targets.append(
            TargetRow(
                none, none_goal, f"{worst_us:.2f} µs", worst_us <= ASGI_NO_RECEIVERS_US, details
            )
        )
    else:
        targets.append(TargetRow(none, none_goal, "—", None, "not measured"))
    return targets


def _memory_target(results: Results) -> TargetRow:
    name = "memory under churn"
    goal = "flat: no growth through connect/disconnect and dying receivers/senders"
    if not results.churn:
        return TargetRow(name, goal, "—", None, results.skipped.get("memory", "not measured"))
    worst = max(results.churn, key=lambda row: row.bytes_per_cycle)
    details = "; ".join(
        f"{row.name}: {row.growth_bytes:+,} B over {row.cycles:,} cycles" for row in results.churn
    )
    return TargetRow(
        name,
        goal,
        f"{worst.bytes_per_cycle:.2f} B/cycle",
        all(row.flat for row in results.churn),
        details,
    )
