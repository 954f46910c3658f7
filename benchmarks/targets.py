"""The project's performance targets, judged against one run's results.

Each target states its goal, the measured figure (the worst over the loops measured),
pass or miss, and the per-loop figures behind it. A target whose cases were not measured
(a section skipped, a receiver count left out) is reported as not judged, not as a pass.
"""

from __future__ import annotations

from collections.abc import Callable

from ._model import DispatchRow, Kind, LoopName, Mode, Results, TargetRow
from .dispatch import HAND_LOOP, RAW_TASK_GROUP, lookup

SEND_VS_HAND_LOOP = 1.2
GATHER_QUICK_VS_HAND_LOOP = 2.0
GATHER_SUSPENDING_VS_TASK_GROUP = 1.1
ROBUST_VS_SEND = 1.1
ASGI_NO_RECEIVERS = 0.98
ASGI_ONE_RECEIVER = 0.95


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _loops(rows: list[DispatchRow]) -> list[LoopName]:
    seen: list[LoopName] = []
    for row in rows:
        if row.loop not in seen:
            seen.append(row.loop)
    return seen


def _ratio_target(
    results: Results,
    name: str,
    goal: str,
    limit: float,
    points: list[tuple[Mode, Kind, int]],
    ratio: Callable[[LoopName, Mode, Kind, int], tuple[float, str] | None],
) -> TargetRow:
    """Judge ``ratio <= limit`` at every (loop, point); report the worst."""
    figures: list[tuple[float, str]] = []
    missing: list[str] = []
    for loop in _loops(results.dispatch):
        for mode, kind, n in points:
            found = ratio(loop, mode, kind, n)
            label = f"{loop} {kind} N={n}" if len(points) > 1 else loop
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


def evaluate(results: Results) -> list[TargetRow]:
    rows = results.dispatch
    targets: list[TargetRow] = []

    def vs(
        impl: str, mode_of_base: Mode | None = None, base_impl: str = HAND_LOOP
    ) -> Callable[[LoopName, Mode, Kind, int], tuple[float, str] | None]:
        def ratio(loop: LoopName, mode: Mode, kind: Kind, n: int) -> tuple[float, str] | None:
            subject = lookup(rows, loop, mode, kind, n, impl)
            base = lookup(rows, loop, mode_of_base or mode, kind, n, base_impl)
            if subject is None or base is None or not subject.ns or not base.ns:
                return None
            extra = ""
            strict = lookup(rows, loop, mode, kind, n, "hand loop, literal kw")
            if base_impl == HAND_LOOP and strict is not None and strict.ns:
                extra = f" (literal-kw loop {_x(subject.ns / strict.ns)})"
            return subject.ns / base.ns, extra

        return ratio

    targets.append(
        _ratio_target(
            results,
            "send, 100 sync receivers",
            f"≤ {SEND_VS_HAND_LOOP}x the hand-written loop (weak=True)",
            SEND_VS_HAND_LOOP,
            [("send", "sync", 100)],
            vs("asignals"),
        )
    )
    targets.append(
        _ratio_target(
            results,
            "send, 100 coroutine receivers",
            f"≤ {SEND_VS_HAND_LOOP}x the hand-written loop (weak=True)",
            SEND_VS_HAND_LOOP,
            [("send", "async", 100)],
            vs("asignals"),
        )
    )
    targets.append(_cheapest_with_one_receiver(results))
    targets.append(
        _ratio_target(
            results,
            "gather, 100 coroutine receivers that return at once",
            f"≤ {GATHER_QUICK_VS_HAND_LOOP}x the sequential hand-written loop",
            GATHER_QUICK_VS_HAND_LOOP,
            [("gather", "async", 100)],
            vs("asignals"),
        )
    )
    targets.append(
        _ratio_target(
            results,
            "gather, 100 receivers that suspend",
            f"≤ {GATHER_SUSPENDING_VS_TASK_GROUP}x a raw TaskGroup (trio: nursery)",
            GATHER_SUSPENDING_VS_TASK_GROUP,
            [("gather", "suspend", 100)],
            vs("asignals", base_impl=RAW_TASK_GROUP),
        )
    )
    targets.append(
        _ratio_target(
            results,
            "send_robust vs send",
            f"≤ {ROBUST_VS_SEND}x send (1 and 100 receivers, sync and coroutine)",
            ROBUST_VS_SEND,
            [("send_robust", kind, n) for kind in ("sync", "async") for n in (1, 100)],
            vs("asignals", mode_of_base="send", base_impl="asignals"),
        )
    )
    targets += _asgi_targets(results)
    targets.append(_memory_target(results))
    return targets


def _cheapest_with_one_receiver(results: Results) -> TargetRow:
    name = "send, 1 receiver"
    goal = "cheaper than every peer (ratio to the fastest peer < 1)"
    figures: list[tuple[float, str]] = []
    for loop in _loops(results.dispatch):
        for kind in ("sync", "async", "suspend"):
            ours = lookup(results.dispatch, loop, "send", kind, 1, "asignals")
            peers = [
                row
                for row in results.dispatch
                if (row.loop, row.mode, row.kind, row.n) == (loop, "send", kind, 1)
                and row.role == "peer"
                and row.ns
            ]
            if ours is None or not ours.ns or not peers:
                continue
            fastest = min(peers, key=lambda row: row.ns or 0.0)
            ratio = ours.ns / (fastest.ns or 1.0)
            figures.append((ratio, f"{loop} {kind} {_x(ratio)} ({fastest.impl})"))
    if not figures:
        return TargetRow(name, goal, "—", None, "not measured (no peers, or N=1 left out)")
    worst = max(value for value, _ in figures)
    return TargetRow(name, goal, _x(worst), worst < 1.0, "; ".join(text for _, text in figures))


def _asgi_targets(results: Results) -> list[TargetRow]:
    targets = []
    for variant, limit, name in (
        ("signals_none", ASGI_NO_RECEIVERS, "ASGI, SignalMiddleware without receivers"),
        ("signals_async", ASGI_ONE_RECEIVER, "ASGI, one coroutine receiver started+finished"),
    ):
        goal = f"≥ {limit}x the bare app's requests/s (within {round((1 - limit) * 100)}%)"
        skipped = results.skipped.get("asgi") or results.skipped.get("wrk")
        if skipped is not None:
            targets.append(TargetRow(name, goal, "—", None, skipped))
            continue
        found = [row for row in results.asgi if row.variant == variant and row.rps_ratio]
        if not found:
            targets.append(TargetRow(name, goal, "—", None, "not measured"))
            continue
        worst = min(row.rps_ratio or 0.0 for row in found)
        details = "; ".join(f"{row.loop} {_x(row.rps_ratio or 0.0)}" for row in found)
        targets.append(TargetRow(name, goal, _x(worst), worst >= limit, details))
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
