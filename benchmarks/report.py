"""Output: readable tables (stdout) and JSON for machines (the plot: :mod:`.plot`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from ._model import (
    KIND_TITLES,
    KINDS,
    MODES,
    AsgiRow,
    ChurnRow,
    DispatchRow,
    FootprintRow,
    InProcessRow,
    InstructionRow,
    Kind,
    LoopName,
    Mode,
    OtherPython,
    Results,
    Settings,
    TargetRow,
)
from ._timing import STATISTIC
from ._wrk import BUSY_CORES

JSON_SCHEMA = 2


# -- formatting helpers -------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.3g} µs"
    return f"{ns / 1_000_000:.3g} ms"


def fmt_us(us: float) -> str:
    return f"{us:.0f} µs" if us < 1_000 else f"{us / 1_000:.3g} ms"


def fmt_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    indent: str = "  ",
    align: str | None = None,
) -> str:
    """Columns padded to their widest cell.

    *align* has one letter per column, ``l`` or ``r``; by default the first column is
    left-aligned (names) and the others right-aligned (numbers).
    """
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    alignment = align or "l" + "r" * (len(header) - 1)

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if alignment[i] == "l" else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return (indent + "  ".join(padded)).rstrip()

    rule = indent + "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def heading(text: str) -> str:
    return f"\n{text}\n{'=' * len(text)}"


# -- sections -----------------------------------------------------------------------------


def format_header(results: Results) -> str:
    s = results.settings
    system = results.system
    lines = [
        f"asignals benchmarks — {system['date']}" + ("  (--quick)" if s.quick else ""),
        f"  python    {system['python']} on {system['platform']}",
        f"  cpu       {system['cpu']}; {system['cpus']}; load average at start {system['load']}",
        f"  loops     {system['loops']}",
        f"  asignals  {system['asignals']}",
        f"  peers     {system['peers']}",
        f"  timing    time.perf_counter_ns around batches of k sends inside one running loop "
        f"(after a first call, k calibrated to ~{s.batch_target_ms:g} ms per batch: the warm-up),",
        f"            {s.repeats} interleaved repeats per case, gc paused while timing; "
        f"statistic: {STATISTIC} over the repeats (the median is in the JSON)",
    ]
    return "\n".join(lines)


def format_dispatch(results: Results) -> str:
    rows = results.dispatch
    s = results.settings
    out = [heading(f"dispatch: time per send on {results.system['python']} (lower is better)")]
    out.append(
        "Each cell: the best time per send, then that time divided by the block's baseline"
        "\n(the strict floor for send/send_robust; the raw task group for gather/"
        "gather_robust,\nwhich on trio is a nursery). Lower is better. Payload: one keyword,"
        " value=42;\nsender: a class. n/a [k]: the implementation cannot run that case; "
        "reason k is\nlisted at the end."
    )
    out += ["", "Implementations:"] + [f"  {note}" for note in results.dispatch_notes]
    loops: list[LoopName] = []
    for row in rows:
        if row.loop not in loops:
            loops.append(row.loop)
    reasons: dict[str, int] = {}
    for loop in loops:
        for mode in MODES:
            for kind in KINDS:
                block = [r for r in rows if (r.loop, r.mode, r.kind) == (loop, mode, kind)]
                if block:
                    out.append(_dispatch_block(loop, mode, kind, block, s.receiver_counts, reasons))
    if reasons:
        out += ["", "n/a reasons:"] + [f"  [{k}] {reason}" for reason, k in reasons.items()]
    return "\n".join(out)


def _dispatch_block(
    loop: str,
    mode: Mode,
    kind: Kind,
    block: list[DispatchRow],
    counts: list[int],
    reasons: dict[str, int],
) -> str:
    baseline = block[0].baseline
    if loop == "trio" and baseline == "raw task group":
        baseline = "raw task group (trio nursery)"
    title = f"{mode} · {KIND_TITLES[kind]} · {loop}  [ratio vs {baseline}; lower is better]"
    names: list[str] = []
    for row in block:
        if row.impl not in names:
            names.append(row.impl)
    body: list[list[str]] = []
    for name in names:
        cells = [name]
        for n in counts:
            cell = next((r for r in block if r.impl == name and r.n == n), None)
            if cell is None:
                cells.append("")
            elif cell.na is not None:
                cells.append(f"n/a [{reasons.setdefault(cell.na, len(reasons) + 1)}]")
            elif cell.ns is not None:
                cells.append(f"{fmt_ns(cell.ns)} {fmt_ratio(cell.ratio):>6}")
        body.append(cells)
    return "\n".join(["", title, table(["", *(f"N={n}" for n in counts)], body)])


def format_asgi(results: Results) -> str:
    out = [heading("asgi: SignalMiddleware in a request's path")]
    if "asgi" in results.skipped:
        out.append(results.skipped["asgi"])
        return "\n".join(out)
    out.append(
        "In process: the app called directly with a fake server (one GET / to a minimal ASGI"
        "\napp answering 'ok', not Starlette: an overhead is a difference of two times, kept"
        "\nclear of a framework's noise); min time per request. Each variant is timed"
        "\ninterleaved with a bare app: its overhead is its time minus that bare app's, per"
        "\nrequest. Baseline: the hand-written floor middleware, which calls the same receiver"
        "\nwith the same payload on started and finished. Lower is better."
    )
    out += ["", table(_inprocess_header(), _inprocess_body(results.asgi_inprocess))]
    out += [f"  n/a {row.loop} {row.variant}: {row.na}" for row in results.asgi_inprocess if row.na]
    out.append("\nUnder load: uvicorn on 127.0.0.1, wrk as the client.")
    if "wrk" in results.skipped:
        out.append(results.skipped["wrk"])
        return "\n".join(out)
    out += [f"  {note}" for note in results.asgi_notes]
    body = []
    for row in results.asgi:
        if row.na is not None:
            body.append([f"{row.loop:7} {row.description}", "n/a", "", "", "", "", "", "", ""])
            continue
        body.append(
            [
                f"{row.loop:7} {row.description}",
                f"{row.rps:,.0f}" if row.rps else "",
                fmt_ratio(row.rps_ratio),
                fmt_us(row.p50_us) if row.p50_us else "",
                fmt_ratio(row.p50_ratio),
                fmt_us(row.p99_us) if row.p99_us else "",
                fmt_ratio(row.p99_ratio),
                str(row.errors),
                "" if row.other_cores is None else f"{row.other_cores:.2f}",
            ]
        )
    header = [
        "loop    variant",
        "req/s",
        "xbare",
        "p50",
        "xbare",
        "p99",
        "xbare",
        "errors",
        "other CPU",
    ]
    out += ["", table(header, body)]
    out += [f"  n/a {row.loop} {row.variant}: {row.na}" for row in results.asgi if row.na]
    busy = max((row.other_cores or 0.0 for row in results.asgi), default=0.0)
    out.append(
        "  other CPU: cores' worth of CPU that processes other than the server, wrk and this "
        "suite used during the kept run."
    )
    if busy > BUSY_CORES:
        out.append(
            f"  WARNING: other processes used up to {busy:.2f} cores during these runs; the "
            f"server's core was shared, so the ratios carry that noise. Rerun on a quiet machine."
        )
    return "\n".join(out)


def _inprocess_header() -> list[str]:
    return ["loop    variant", "per request", "bare app", "overhead", "x floor's overhead"]


def _inprocess_body(rows: list[InProcessRow]) -> list[list[str]]:
    return [
        [
            f"{row.loop:7} {row.description}",
            "n/a" if row.ns is None else fmt_ns(row.ns),
            "" if row.bare_ns is None else fmt_ns(row.bare_ns),
            "" if row.overhead_ns is None else f"{row.overhead_ns / 1000:+.2f} µs",
            fmt_ratio(row.overhead_ratio),
        ]
        for row in rows
    ]


def format_memory(results: Results) -> str:
    out = [heading("memory")]
    if "memory" in results.skipped:
        out.append(results.skipped["memory"])
        return "\n".join(out)
    out += [f"  {note}" for note in results.memory_notes]
    body = [
        [
            row.impl,
            "n/a" if row.bytes_per_receiver is None else f"{row.bytes_per_receiver:,.0f}",
            fmt_ratio(row.ratio),
            "" if row.connect_seconds is None else f"{row.connect_seconds:.3g} s",
        ]
        for row in results.footprint
    ]
    count = results.footprint[0].receivers if results.footprint else 0
    header = [
        f"footprint, {count:,} receivers",
        "bytes/receiver",
        "xweakref list",
        "connect time",
    ]
    out += ["", table(header, body)]
    out += [f"  n/a {row.impl}: {row.na}" for row in results.footprint if row.na]
    churn = [
        [
            f"{row.name}: {row.description}",
            f"{row.cycles:,}",
            f"{row.growth_bytes:+,}",
            f"{row.bytes_per_cycle:.3f}",
            "flat" if row.flat else "GROWS",
            " ".join(f"{b:+}" for b in row.traced_bytes),
            f"{row.seconds:.1f} s",
        ]
        for row in results.churn
    ]
    header = ["churn", "cycles", "growth B", "B/cycle", "", "bytes at checkpoints", "time"]
    out += ["", table(header, churn)]
    return "\n".join(out)


def pythons_side_by_side(results: Results) -> list[tuple[str, list[DispatchRow]]]:
    """(Python, its dispatch rows) for this run and every other Python that ran."""
    runs = [(results.system.get("python", "?"), results.dispatch)] if results.dispatch else []
    runs += [(other.python, other.dispatch) for other in results.other_pythons if other.dispatch]
    return runs


def python_cases(
    runs: list[tuple[str, list[DispatchRow]]], loop: LoopName = "asyncio"
) -> list[tuple[Mode, Kind, int]]:
    """Every (mode, kind, N) that asignals ran on *loop* in some Python, in grid order."""
    seen = {(r.mode, r.kind, r.n) for _, rows in runs for r in rows if r.loop == loop}
    counts = sorted({n for _, _, n in seen})
    return [(m, k, n) for m in MODES for k in KINDS for n in counts if (m, k, n) in seen]


def python_cell(rows: list[DispatchRow], loop: LoopName, mode: Mode, kind: Kind, n: int) -> str:
    row = next(
        (
            r
            for r in rows
            if (r.loop, r.mode, r.kind, r.n, r.impl) == (loop, mode, kind, n, "asignals")
        ),
        None,
    )
    if row is None:
        return ""
    if row.ns is None:
        return "n/a"
    return f"{fmt_ns(row.ns)} {fmt_ratio(row.ratio):>6}"


def format_pythons(results: Results, loop: LoopName = "asyncio") -> str:
    """asignals on every Python side by side: time per send and ratio to the baseline."""
    out = [heading(f"dispatch on every Python, {loop} (lower is better)")]
    runs = pythons_side_by_side(results)
    out.append(
        "asignals' best time per send, then that time divided by the block's baseline from the"
        "\nsame Python's run (strict floor for send modes, raw task group for gather modes)."
    )
    out += [
        f"  {other.interpreter}: n/a, {other.na}" for other in results.other_pythons if other.na
    ]
    if len(runs) < 2:
        out.append("  only one Python measured (make bench adds the others it finds)")
    header = ["case", *(python_label(python) for python, _ in runs)]
    body = [
        [f"{mode} {kind} N={n}", *(python_cell(rows, loop, mode, kind, n) for _, rows in runs)]
        for mode, kind, n in python_cases(runs, loop)
    ]
    out += ["", table(header, body)]
    return "\n".join(out)


def python_label(python: str) -> str:
    return python.replace("CPython ", "") or "?"


def format_summary(results: Results) -> str:
    """One screen for a smoke run: what ran, a few figures, and that it measured nothing."""
    out = [heading("smoke run summary")]
    rows = results.dispatch
    if "dispatch" in results.settings.sections:
        timed = [r for r in rows if r.ns is not None]
        loops = ", ".join(dict.fromkeys(r.loop for r in rows)) or "no loop"
        out.append(
            f"  dispatch: {len(timed)} timings, {len(rows) - len(timed)} n/a (peers that cannot "
            f"run a case), on {loops}"
        )
        for mode, kind, n in (
            ("send", "sync", 100),
            ("send", "async", 1),
            ("gather", "async", 100),
        ):
            row = next(
                (r for r in rows if (r.mode, r.kind, r.n, r.impl) == (mode, kind, n, "asignals")),
                None,
            )
            if row is not None and row.ns is not None:
                out.append(
                    f"    {mode} {kind} N={n} ({row.loop}): {fmt_ns(row.ns)}, "
                    f"{fmt_ratio(row.ratio)} the {row.baseline}"
                )
    for other in results.other_pythons:
        state = other.na or f"{len([r for r in other.dispatch if r.ns])} timings"
        out.append(f"  dispatch on {other.python or other.interpreter}: {state}")
    if "asgi" in results.settings.sections:
        if "asgi" in results.skipped:
            out.append(f"  asgi: skipped: {results.skipped['asgi']}")
        else:
            timed_in = [r for r in results.asgi_inprocess if r.ns is not None]
            under_load = [r for r in results.asgi if r.rps]
            wrk = results.skipped.get("wrk", f"{len(under_load)} variant(s) under wrk")
            out.append(f"  asgi: {len(timed_in)} variant(s) in process; {wrk}")
    if "instructions" in results.settings.sections:
        from .instructions import summary_line  # it formats with this module's helpers

        out.append(summary_line(results))
    if "memory" in results.settings.sections:
        flat = all(row.flat for row in results.churn)
        out.append(
            f"  memory: {len([r for r in results.footprint if r.bytes_per_receiver])} footprints,"
            f" {len(results.churn)} churn runs ({'flat' if flat else 'GROWTH'})"
        )
    judged = [t for t in results.targets if t.passed is not None]
    out.append(f"  targets: {len(results.targets)} defined, {len(judged)} could be evaluated")
    out.append(
        "\nThis was a smoke run (--quick): it checks that the command works, not a measurement."
        "\nMeasure with `make bench`."
    )
    return "\n".join(out)


def format_targets(results: Results) -> str:
    out = [heading("targets")]
    if results.settings.quick:
        out.append("--quick: short runs, indicative only; judge the targets on a full run.")
    body = []
    for target in results.targets:
        verdict = "not judged" if target.passed is None else ("pass" if target.passed else "MISS")
        body.append([target.name, target.goal, target.value, verdict])
    out.append(table(["target", "goal", "measured", ""], body, align="llrl"))
    out.append("")
    out += [f"  {target.name}: {target.details}" for target in results.targets if target.details]
    return "\n".join(out)


def format_text(results: Results) -> str:
    """The whole report, as printed section by section during a full run."""
    parts = [format_header(results)]
    if "dispatch" in results.settings.sections:
        parts.append(format_dispatch(results))
    if results.other_pythons:
        parts.append(format_pythons(results))
    if "asgi" in results.settings.sections:
        parts.append(format_asgi(results))
    if "instructions" in results.settings.sections:
        from .instructions import format_rows  # it formats with this module's helpers

        parts.append(format_rows(results))
    if "memory" in results.settings.sections:
        parts.append(format_memory(results))
    parts.append(format_targets(results))
    return "\n".join(parts)


# -- JSON ---------------------------------------------------------------------------------


def write_json(results: Results, path: Path) -> None:
    document = {"schema": JSON_SCHEMA, **dataclasses.asdict(results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Results:
    """The results a run saved with ``--json``, to print or plot them again."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("schema") != JSON_SCHEMA:
        raise ValueError(
            f"{path}: not a results file of this suite (schema {document.get('schema')!r}, "
            f"expected {JSON_SCHEMA})"
        )
    return Results(
        system=document["system"],
        settings=Settings(**document["settings"]),
        dispatch=[DispatchRow(**row) for row in document["dispatch"]],
        dispatch_notes=document["dispatch_notes"],
        asgi=[AsgiRow(**row) for row in document["asgi"]],
        asgi_inprocess=[InProcessRow(**row) for row in document["asgi_inprocess"]],
        asgi_notes=document["asgi_notes"],
        footprint=[FootprintRow(**row) for row in document["footprint"]],
        churn=[ChurnRow(**row) for row in document["churn"]],
        memory_notes=document["memory_notes"],
        skipped=document["skipped"],
        other_pythons=[
            OtherPython(
                interpreter=other["interpreter"],
                python=other["python"],
                system=other["system"],
                dispatch=[DispatchRow(**row) for row in other["dispatch"]],
                na=other["na"],
            )
            for other in document["other_pythons"]
        ],
        # Files written before the instructions section have none.
        instructions=[InstructionRow(**row) for row in document.get("instructions", [])],
        targets=[TargetRow(**row) for row in document["targets"]],
    )
