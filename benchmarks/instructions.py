"""Instructions: the CPU instructions an operation costs, counted by callgrind.

Times on a shared machine move by a tenth from run to run; instruction counts do not. Each
program below is one implementation of one case, built by the same code the timed sections
use (a :class:`~._model.Setup` handed to the dispatch section's implementations, or an
in-process app of :mod:`benchmarks.asgi_app`), and run by a child interpreter::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --dump-before=getppid \\
        PY -m benchmarks.instructions LOW HIGH PROGRAM [PROGRAM ...]

For each program in turn, the child builds it and runs a few warm-up operations, then
*LOW* operations and *HIGH* operations, with the garbage collector off (as the timed
sections pause it). It calls ``os.getppid()`` before, between and after the two runs,
which nothing else in the child calls: callgrind writes its count at each call, so the
child's instructions come in parts, three per program, and the difference of the two
runs' parts divided by ``HIGH - LOW`` is the instructions of one operation (start-up,
imports, building, warm-up and the cost of starting a run all cancel). One child runs
several programs because its start-up (some 800 million instructions, ten seconds under
callgrind) is most of a child's run. Each operation compares asignals with the baseline
its timed ratio divides by; the middleware's figures are each variant's instructions
above the bare app's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ._model import (
    Batch,
    Case,
    InstructionRow,
    Kind,
    NotApplicable,
    Results,
    Settings,
    Setup,
)
from ._progress import Progress
from .dispatch import lookup
from .report import fmt_ratio, heading, python_label, pythons_side_by_side, table

VALGRIND_MISSING = (
    "valgrind is not installed (apt-get install valgrind): the instruction counts are skipped"
)
CHILD_TIMEOUT = 900.0
ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 50  # operations before the counted ones, in both runs
ASGI_LOOP = "asyncio"  # the in-process row whose timed overhead ratio is shown beside


@dataclass(frozen=True)
class Operation:
    """One row of the table: asignals and its baseline doing the same thing.

    Programs are ``send/KIND/N/IMPLEMENTATION`` (an implementation of the dispatch section,
    by name) or ``asgi/VARIANT`` (a factory of :mod:`benchmarks.asgi_app` around the
    minimal app). *counts* are the two numbers of operations each program is run for.
    """

    label: str
    program: str
    baseline: str
    baseline_program: str
    counts: tuple[int, int]
    subtract: str | None = None  # a program whose instructions both sides are taken above


TRACING_OFF = "tracing-off/"
"""A program's prefix: built after importing asignals.opentelemetry, not instrumented."""
TRACING_ON = "tracing-on/"
"""A program's prefix: run instrumented (uninstrumented after its counted runs)."""

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "send, 1 sync receiver",
        "send/sync/1/asignals",
        "strict floor",
        "send/sync/1/strict floor",
        (1_000, 3_000),
    ),
    Operation(
        "send, 100 sync receivers",
        "send/sync/100/asignals",
        "strict floor",
        "send/sync/100/strict floor",
        (100, 300),
    ),
    Operation(
        "send, 1 coroutine receiver",
        "send/async/1/asignals",
        "aiosignal send",
        "send/async/1/aiosignal send",
        (1_000, 3_000),
    ),
    Operation(
        "send, 100 coroutine receivers",
        "send/async/100/asignals",
        "strict floor",
        "send/async/100/strict floor",
        (100, 300),
    ),
    Operation(
        "SignalMiddleware, 1 coroutine receiver",
        "asgi/signals_async",
        "floor middleware",
        "asgi/floor",
        (1_000, 3_000),
        subtract="asgi/bare",
    ),
    # Tracing (asignals.opentelemetry): imported and off must cost nothing, measured
    # against the same operation in a child that has not imported it yet; on, with the
    # SDK's tracer and meter providers (spans made and dropped: no processor, no reader).
    Operation(
        "send, 1 sync receiver, tracing off",
        f"{TRACING_OFF}send/sync/1/asignals",
        "no tracing module",
        "send/sync/1/asignals",
        (1_000, 3_000),
    ),
    Operation(
        "send, 1 sync receiver, tracing on",
        f"{TRACING_ON}send/sync/1/asignals",
        "no tracing module",
        "send/sync/1/asignals",
        (1_000, 3_000),
    ),
    Operation(
        "SignalMiddleware, 1 coroutine receiver, tracing off",
        f"{TRACING_OFF}asgi/signals_async",
        "no tracing module",
        "asgi/signals_async",
        (1_000, 3_000),
        subtract="asgi/bare",
    ),
    Operation(
        "SignalMiddleware, 1 coroutine receiver, tracing on",
        f"{TRACING_ON}asgi/signals_async",
        "no tracing module",
        "asgi/signals_async",
        (1_000, 3_000),
        subtract="asgi/bare",
    ),
)
# A child's run is mostly its start-up: a smoke run's one operation costs no less at the
# full counts, and reads the same as a full run's.
QUICK_OPERATIONS: tuple[Operation, ...] = OPERATIONS[:1]


def operations(settings: Settings) -> tuple[Operation, ...]:
    return QUICK_OPERATIONS if settings.quick else OPERATIONS


def work_units(settings: Settings) -> int:
    return len(interpreters(settings))


def unavailable() -> str | None:
    """Why no instructions can be counted here, or None."""
    return None if shutil.which("valgrind") else VALGRIND_MISSING


# -- counting -------------------------------------------------------------------------------


def read_total(path: Path) -> int:
    """The instructions (``Ir``) a callgrind output file counted in all.

    The ``totals:`` line, or the ``summary:`` line of older versions; with several events,
    the one in the ``Ir`` column.
    """
    events: list[str] = ["Ir"]
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key == "events":
            events = value.split()
        elif key in ("totals", "summary"):
            found[key] = value
    counts = found.get("totals", found.get("summary"))
    if counts is None:
        raise ValueError(f"{path}: no totals: or summary: line (not a callgrind output file?)")
    if "Ir" not in events:
        raise ValueError(f"{path}: callgrind counted no instructions (events: {events})")
    return int(counts.split()[events.index("Ir")])


MARKER = "getppid"  # the C function whose calls split the child's count into parts


def read_parts(paths: Sequence[Path]) -> list[int]:
    """The instructions of each part the marker ended, in order, from callgrind's files.

    With ``--dump-before``, callgrind writes one file per part (``FILE.1``, ``FILE.2``, ...,
    then ``FILE`` at the program's end), each saying which part it is and what ended it.
    """
    parts: list[tuple[int, int]] = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        if f"Trigger: --dump-before={MARKER}" not in text:
            continue  # the part the program's end closed
        number = next(
            int(line.split(":", 1)[1]) for line in text.splitlines() if line.startswith("part:")
        )
        parts.append((number, read_total(path)))
    return [total for _, total in sorted(parts)]


def count(interpreter: str, args: Sequence[str]) -> tuple[list[int], str]:
    """The instructions of each part of ``interpreter *args`` (run from ROOT) that ended at
    a call of the marker, under callgrind; and what the program printed."""
    with tempfile.TemporaryDirectory(prefix="asignals-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                f"--dump-before={MARKER}",
                interpreter,
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            # valgrind's own lines start with ==pid==; the program's last line says why.
            lines = [ln for ln in done.stderr.splitlines() if ln and not ln.startswith("==")]
            raise RuntimeError(f"exited with {done.returncode}: {(lines or ['no output'])[-1]}")
        return read_parts(sorted(Path(tmp).glob("callgrind.out*"))), done.stdout


def per_operation(parts: Sequence[int], counts: tuple[int, int]) -> float:
    """Instructions of one operation, from one program's three parts of a child run.

    The child's marker ends three parts per program: its building and warm-up, its run of
    ``counts[0]`` operations, its run of ``counts[1]``.
    """
    if len(parts) != 3:
        raise ValueError(f"a program's count comes in 3 parts, got {len(parts)}")
    return (parts[2] - parts[1]) / (counts[1] - counts[0])


def per_program(
    parts: Sequence[int], programs: Sequence[str], counts: tuple[int, int], printed: str
) -> dict[str, float | str]:
    """Each program's instructions per operation, or why the child could not run it.

    A program the child could not build is a line ``n/a<TAB>PROGRAM<TAB>REASON`` of its
    output, and has no parts.
    """
    results: dict[str, float | str] = {}
    for line in printed.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0] == "n/a":
            results[fields[1]] = f"{fields[1]}: n/a, {fields[2]}"
    counted = [program for program in programs if program not in results]
    if len(parts) != 3 * len(counted):
        raise ValueError(
            f"callgrind split the run into {len(parts)} part(s) at {MARKER}(), expected "
            f"{3 * len(counted)} (3 per program; is the interpreter's call of {MARKER}() "
            "hidden from valgrind?)"
        )
    for index, program in enumerate(counted):
        results[program] = per_operation(parts[3 * index : 3 * index + 3], counts)
    return results


def _python_of(interpreter: str) -> str:
    done = subprocess.run(
        [
            interpreter,
            "-c",
            "import platform; print(platform.python_implementation(), platform.python_version())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def interpreters(settings: Settings) -> list[str]:
    """This Python and each ``--also-python`` one; a smoke run (``--quick``) this one only
    (a callgrind run is mostly the child's start-up, some ten seconds)."""
    found = [sys.executable]
    if not settings.quick:
        found += [str(Path(p).absolute()) if "/" in p else p for p in settings.other_pythons]
    return found


def run(settings: Settings, progress: Progress) -> list[InstructionRow]:
    """Count every operation on each of :func:`interpreters`.

    One callgrind run per program, two at a time (instruction counts do not depend on what
    else the machine does). An interpreter or a program that cannot run gives rows that
    say why.
    """
    rows: list[InstructionRow] = []
    for interpreter in interpreters(settings):
        progress.step(f"callgrind on {interpreter}")
        rows += _run_python(interpreter, operations(settings))
    return rows


def _run_python(interpreter: str, ops: Sequence[Operation]) -> list[InstructionRow]:
    try:
        python = _python_of(interpreter)
    except (OSError, subprocess.SubprocessError) as exc:
        return [
            InstructionRow(
                interpreter,
                op.label,
                op.baseline,
                op.program,
                op.baseline_program,
                na=f"could not run: {exc}",
            )
            for op in ops
        ]
    # One child per pair of counts, two at a time (instruction counts do not depend on
    # what else the machine does).
    jobs: dict[tuple[int, int], list[str]] = {}
    for op in ops:
        for program in (op.program, op.baseline_program, op.subtract):
            if program is not None and program not in jobs.setdefault(op.counts, []):
                jobs[op.counts].append(program)

    def measure(counts: tuple[int, int]) -> dict[str, float | str]:
        programs = jobs[counts]
        args = ["-m", "benchmarks.instructions", *(str(n) for n in counts), *programs]
        try:
            parts, printed = count(interpreter, args)
            return per_program(parts, programs, counts, printed)
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
            return dict.fromkeys(programs, str(exc))

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        measured = dict(zip(jobs, pool.map(measure, jobs), strict=True))

    def per_op(program: str | None, counts: tuple[int, int]) -> float | str:
        return 0.0 if program is None else measured[counts][program]

    rows = []
    for op in ops:
        row = InstructionRow(
            python, op.label, op.baseline, op.program, op.baseline_program, list(op.counts)
        )
        mine = per_op(op.program, op.counts)
        base = per_op(op.baseline_program, op.counts)
        under = per_op(op.subtract, op.counts)
        if isinstance(mine, str) or isinstance(base, str) or isinstance(under, str):
            row.na = next(value for value in (mine, base, under) if isinstance(value, str))
        else:
            row.instructions, row.baseline_instructions = mine - under, base - under
            row.subtracted = under if op.subtract else None
            if row.baseline_instructions > 0:
                row.ratio = row.instructions / row.baseline_instructions
        rows.append(row)
    return rows


def time_ratio(results: Results, row: InstructionRow) -> float | None:
    """The same comparison in time, from the same run: what the instructions check.

    A send's ratio divides the best times of asignals and the baseline on asyncio, from
    the run of the row's Python; the middleware's is the in-process overhead ratio (this
    Python only, asyncio when it ran).
    """
    if row.program.startswith("asgi/"):
        if row.python != results.system.get("python"):
            return None
        variant = row.program.removeprefix("asgi/")
        timed = [r for r in results.asgi_inprocess if r.variant == variant]
        timed.sort(key=lambda r: r.loop != ASGI_LOOP)
        return timed[0].overhead_ratio if timed else None
    send, base = row.program.split("/"), row.baseline_program.split("/")
    if len(send) != 4 or len(base) != 4:
        return None
    (_, kind, n, impl), base_impl = send, base[3]
    rows = dict(pythons_side_by_side(results)).get(row.python, [])
    mine = lookup(rows, "asyncio", "send", _kind(kind), int(n), impl)
    theirs = lookup(rows, "asyncio", "send", _kind(kind), int(n), base_impl)
    if mine is None or theirs is None or not mine.ns or not theirs.ns:
        return None
    return mine.ns / theirs.ns


def fmt_count(instructions: float | None) -> str:
    return "" if instructions is None else f"{instructions:,.0f}"


def table_rows(results: Results) -> list[list[str]]:
    """Operation (baseline), Python, the two instruction counts, their ratio, the times'."""
    return [
        [
            f"{row.operation} (x {row.baseline})",
            python_label(row.python),
            "n/a" if row.na else fmt_count(row.instructions),
            fmt_count(row.baseline_instructions),
            fmt_ratio(row.ratio),
            fmt_ratio(time_ratio(results, row)),
        ]
        for row in results.instructions
    ]


HEADER = ["operation (x baseline)", "Python", "asignals", "baseline", "ratio", "time ratio"]


def format_rows(results: Results) -> str:
    """The console table, printed when the section finishes."""
    out = [heading("instructions per operation (callgrind; lower is better)")]
    if "instructions" in results.skipped:
        return "\n".join([*out, results.skipped["instructions"]])
    out.append(
        "Instructions of one operation: the difference of two counted runs (their operation"
        "\ncounts in the JSON) divided by the difference of their counts, PYTHONHASHSEED=0, gc"
        "\noff. Ratio: asignals / the baseline; time ratio: the same comparison's best times"
        "\nfrom this run (asyncio), where it ran. The middleware: above the bare app."
    )
    out += ["", table(HEADER, table_rows(results), align="llrrrr")]
    out += [
        f"  n/a {row.operation} ({row.python}): {row.na}" for row in results.instructions if row.na
    ]
    return "\n".join(out)


def summary_line(results: Results) -> str:
    """The smoke run's line: the figures, or why there are none."""
    if "instructions" in results.skipped:
        return f"  instructions: skipped: {results.skipped['instructions']}"
    figures = [
        f"{row.operation} {fmt_ratio(row.ratio)} the {row.baseline} ({python_label(row.python)})"
        if row.na is None
        else f"{row.operation} n/a ({row.python}: {row.na})"
        for row in results.instructions
    ]
    return "  instructions (this Python only): " + ("; ".join(figures) or "none counted")


# -- the counted child ----------------------------------------------------------------------


def build(program: str) -> Batch | NotApplicable:
    """The batch a program name stands for, built as the timed section builds it."""
    for prefix in (TRACING_OFF, TRACING_ON):
        if program.startswith(prefix):
            from asignals.opentelemetry import AsignalsInstrumentor

            if prefix == TRACING_ON:
                from opentelemetry.sdk.metrics import MeterProvider
                from opentelemetry.sdk.trace import TracerProvider

                AsignalsInstrumentor().instrument(
                    tracer_provider=TracerProvider(), meter_provider=MeterProvider()
                )
            return build(program.removeprefix(prefix))
    parts = program.split("/")
    if parts[0] == "asgi" and len(parts) == 2 and parts[1] in ASGI_VARIANTS:
        from . import asgi, asgi_app

        return asgi.request_batch(asgi_app.FACTORIES[parts[1]](asgi_app.minimal))
    if parts[0] == "send" and len(parts) == 4 and parts[1] in ("sync", "async"):
        from . import dispatch
        from ._receivers import make_receivers

        kind, n, name = parts[1], int(parts[2]), parts[3]
        impl = next((i for i in dispatch.implementations(peers=True) if i.name == name), None)
        if impl is None:
            return NotApplicable(f"no implementation named {name!r}")
        case = Case("send", _kind(kind), n, "asyncio")
        setup = Setup(
            case,
            make_receivers(case.kind, "asyncio", n),
            dispatch.Sender,
            dict(dispatch.PAYLOAD),
            object(),
        )
        # The setup owns the receivers (weakly connected ones die with it): keep it.
        _KEPT.append(setup)
        return impl.build(setup)
    if parts[0] == "orm" and len(parts) >= 3:
        from . import orm

        if orm.unavailable() is not None:
            return NotApplicable(f"SQLAlchemy: {orm.unavailable()}")
        if parts[1] == "commit" and len(parts) == 4 and parts[3] in orm.COMMIT_VARIANTS:
            return orm.commit_program(parts[3], int(parts[2]))
        if parts[1] == "bulk" and len(parts) == 3 and parts[2] in orm.BULK_VARIANTS:
            return orm.bulk_program(parts[2])
    return NotApplicable(
        "programs are send/sync|async/N/IMPLEMENTATION, asgi/VARIANT, "
        "orm/commit/N/VARIANT or orm/bulk/VARIANT"
    )


ASGI_VARIANTS = ("bare", "floor", "signals_async", "signals_sync", "noop")
_KEPT: list[Setup] = []


def _kind(text: str) -> Kind:
    return "sync" if text == "sync" else "async"


def main(argv: Sequence[str]) -> None:
    """``python -m benchmarks.instructions LOW HIGH PROGRAM...``: what callgrind counts."""
    import asyncio
    import gc

    low, high, *programs = argv

    async def operate() -> None:
        for program in programs:
            batch = build(program)
            if isinstance(batch, NotApplicable):
                print(f"n/a\t{program}\t{batch.reason}", flush=True)
                continue
            await batch(WARM_UP)
            gc.collect()
            gc.disable()
            os.getppid()  # each call ends a part of callgrind's count: see the docstring
            await batch(int(low))
            os.getppid()
            await batch(int(high))
            os.getppid()
            if program.startswith(TRACING_ON):  # the next programs run untraced
                from asignals.opentelemetry import AsignalsInstrumentor

                AsignalsInstrumentor().uninstrument()

    asyncio.run(operate())


if __name__ == "__main__":
    main(sys.argv[1:])
