"""``python -m benchmarks [dispatch] [asgi] [memory] [orm] [--quick] [--json FILE] [--plot FILE]``.

Runs the named sections (all of them by default), printing each table as it finishes, then
the performance targets. Exits 0 whatever the numbers say: it measures, it does not gate.
Sections or peers that cannot run here (wrk or a library missing) are reported as skipped
or n/a, with the reason and the command that installs what is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

from . import asgi, dispatch, memory, orm, report, targets
from ._model import LOOPS, LoopName, Results, Settings
from ._progress import Progress
from ._system import describe
from ._timing import STATISTIC, loop_unavailable

SECTIONS = ("dispatch", "asgi", "memory", "orm")


def _loops(text: str) -> list[LoopName]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in LOOPS:
            raise argparse.ArgumentTypeError(
                f"unknown loop {name!r}: choose from {', '.join(LOOPS)}"
            )
    return cast(list[LoopName], names)


def _asgi_loops(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in ("asyncio", "uvloop"):
            raise argparse.ArgumentTypeError(
                f"unknown uvicorn loop {name!r}: choose from asyncio, uvloop"
            )
    return names


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"receiver counts are comma-separated integers, e.g. 0,1,10,100; got {text!r}"
        ) from None
    if not counts or any(n < 0 for n in counts):
        raise argparse.ArgumentTypeError(f"receiver counts must be >= 0, got {text!r}")
    return sorted(set(counts))


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Benchmark asignals: dispatch cost per send against a hand-written loop, raw "
            "task groups and peer libraries; ASGI middleware overhead in process and under "
            "wrk; memory per receiver and under churn."
        ),
        epilog="Defaults take a few minutes; --quick is a smoke run of well under a minute.",
    )
    p.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help=f"sections to run, any of: {', '.join(SECTIONS)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: fewer cases, short runs")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw the dispatch plot")
    p.add_argument("--plot-loop", choices=LOOPS, default="asyncio", help="the loop the plot shows")
    p.add_argument(
        "--loops",
        type=_loops,
        metavar="LOOP,...",
        help=f"event loops for dispatch (default: {','.join(LOOPS)})",
    )
    p.add_argument(
        "--receivers",
        type=_counts,
        metavar="N,N,...",
        help="receiver counts (default: 0,1,10,100,1000; --quick: 0,1,100)",
    )
    p.add_argument(
        "--repeats", type=_positive_int, metavar="R", help="timed repeats per case (default 5)"
    )
    p.add_argument(
        "--batch-ms",
        type=_positive_float,
        metavar="MS",
        help="target time of one timed batch (default 20)",
    )
    p.add_argument(
        "--asgi-loops",
        type=_asgi_loops,
        metavar="LOOP,...",
        help="uvicorn loops (default: uvloop,asyncio; --quick: uvloop)",
    )
    p.add_argument(
        "--asgi-seconds", type=_positive_float, metavar="S", help="seconds per wrk run (default 2)"
    )
    p.add_argument("--no-peers", action="store_true", help="leave the peer libraries out")
    p.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: print (and --plot) the results a run saved with --json",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    sections = list(dict.fromkeys(args.sections)) or list(SECTIONS)
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        parser().error(
            f"unknown section(s) {', '.join(unknown)}: choose from {', '.join(SECTIONS)}"
        )
    quick: bool = args.quick
    default_asgi_loops = ["uvloop"] if quick else ["uvloop", "asyncio"]
    if loop_unavailable("uvloop") is not None:
        default_asgi_loops = ["asyncio"]
    return Settings(
        quick=quick,
        sections=sections,
        loops=args.loops or list(LOOPS),
        receiver_counts=args.receivers or ([0, 1, 100] if quick else [0, 1, 10, 100, 1000]),
        repeats=int(args.repeats or (3 if quick else 5)),
        batch_target_ms=float(args.batch_ms or (2.0 if quick else 20.0)),
        statistic=STATISTIC,
        asgi_loops=args.asgi_loops or default_asgi_loops,
        asgi_seconds=float(args.asgi_seconds or (1.0 if quick else 2.0)),
        asgi_repeats=1 if quick else 3,
        asgi_retries=0 if quick else 2,
        asgi_connections=50,
        footprint_receivers=1_000 if quick else 10_000,
        churn_cycles=10_000 if quick else 100_000,
        peers=not args.no_peers,
    )


def _work_units(settings: Settings) -> int:
    units = 0
    if "dispatch" in settings.sections:
        units += len(settings.loops) * len(dispatch.cases("asyncio", settings.receiver_counts))
    if "asgi" in settings.sections:
        units += asgi.work_units(settings)
    if "memory" in settings.sections:
        units += memory.work_units(settings)
    if "orm" in settings.sections:
        units += orm.work_units(settings)
    return units


def _emit(text: str) -> None:
    print(text, flush=True)


def _replay(args: argparse.Namespace) -> int:
    try:
        results = report.read_json(args.from_json)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"--from-json: cannot read {args.from_json}: {exc}", file=sys.stderr)
        return 2
    results.targets = targets.evaluate(results)  # judged again, by today's targets
    _emit(report.format_text(results))
    if args.plot is not None:
        problem = report.plot(results, args.plot, args.plot_loop)
        print(problem or f"plot written to {args.plot}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.from_json is not None:
        return _replay(args)
    settings = settings_from(args)
    results = Results(system=describe(), settings=settings)
    _emit(report.format_header(results))
    progress = Progress(_work_units(settings), enabled=not args.no_progress)
    try:
        if "dispatch" in settings.sections:
            progress.section("dispatch")
            results.dispatch, skipped_loops = dispatch.run(settings, progress)
            results.dispatch_notes = dispatch.notes(settings.peers) + skipped_loops
            progress.close()
            _emit(report.format_dispatch(results))
        if "asgi" in settings.sections:
            progress.section("asgi")
            try:
                results.asgi_inprocess, results.asgi, results.asgi_notes, no_wrk = asgi.run(
                    settings, progress
                )
                if no_wrk is not None:
                    results.skipped["wrk"] = no_wrk
                    print(no_wrk, file=sys.stderr)
            except asgi.SectionSkipped as skipped:
                results.skipped["asgi"] = str(skipped)
                print(skipped, file=sys.stderr)
                progress.advance(asgi.work_units(settings))
            progress.close()
            _emit(report.format_asgi(results))
        if "memory" in settings.sections:
            progress.section("memory")
            results.footprint, results.churn, results.memory_notes = memory.run(settings, progress)
            progress.close()
            _emit(report.format_memory(results))
        orm_rows: list[orm.OrmRow] = []
        if "orm" in settings.sections:
            progress.section("orm")
            missing = orm.unavailable()
            if missing is None:
                orm_rows = orm.run(settings, progress.step)
                progress.close()
                _emit(orm.format_rows(orm_rows))
            else:
                results.skipped["orm"] = missing
                print(f"orm section skipped: {missing}", file=sys.stderr)
    finally:
        progress.close()
    results.targets = targets.evaluate(results)
    _emit(report.format_targets(results))
    for line in orm.format_targets(orm_rows, settings.quick):
        _emit(line)
    if args.json is not None:
        report.write_json(results, args.json)
        print(f"JSON written to {args.json}", file=sys.stderr)
    if args.plot is not None:
        problem = report.plot(results, args.plot, args.plot_loop)
        print(problem or f"plot written to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
