"""``python -m benchmarks [dispatch] [asgi] [instructions] [memory] [redis] [orm] [outbox]
[--quick]``.

Runs the named sections (all of them by default), printing each table as it finishes, then
the performance targets. Exits 0 whatever the numbers say: it measures, it does not gate.
Sections or peers that cannot run here (wrk or a library missing) are reported as skipped
or n/a, with the reason and the command that installs what is missing. ``--quick`` is a
smoke run: it prints a one-screen summary instead of the tables. ``--also-python`` runs
the dispatch and instructions sections on other interpreters too; ``--markdown`` and
``--readme`` write the results into the Performance page and the README (see
:mod:`benchmarks.markdown`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

from . import (
    asgi,
    dispatch,
    instructions,
    markdown,
    memory,
    orm,
    outbox,
    plot,
    pythons,
    report,
    targets,
)
from ._model import LOOPS, LoopName, Results, Settings
from ._progress import Progress
from ._system import describe, load_average
from ._timing import STATISTIC, loop_unavailable

SECTIONS = ("dispatch", "asgi", "instructions", "memory", "redis", "orm", "outbox")


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
            "wrk; instructions per send and per request (callgrind, when valgrind is "
            "installed); memory per receiver and under churn."
        ),
        epilog=(
            "Defaults take a few minutes; --quick is a smoke run of well under a minute that "
            "checks the command works and prints a one-screen summary. Every figure is a "
            "time or a ratio of times: lower is better."
        ),
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
        "--repeats", type=_positive_int, metavar="R", help="timed repeats per case (default 21)"
    )
    p.add_argument(
        "--batch-ms",
        type=_positive_float,
        metavar="MS",
        help="target time of one timed batch (default 2)",
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
        "--also-python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="also run the dispatch and instructions sections with this interpreter (its "
        "environment needs asignals and the bench extra); repeatable; shown side by side",
    )
    p.add_argument(
        "--other-loops",
        type=_loops,
        metavar="LOOP,...",
        help="event loops for the --also-python runs (default: asyncio)",
    )
    p.add_argument(
        "--markdown",
        type=Path,
        metavar="FILE.md",
        help="write the results into FILE.md between its benchmark markers (docs/performance.md)",
    )
    p.add_argument(
        "--readme",
        type=Path,
        metavar="README.md",
        help="write the headline figures into README.md between its benchmark markers",
    )
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
        # Many short batches: on a shared machine the minimum then finds rounds that no
        # other process interrupted (a 20 ms batch is rarely left alone on two busy cores).
        repeats=int(args.repeats or (3 if quick else 21)),
        batch_target_ms=float(args.batch_ms or 2.0),
        statistic=STATISTIC,
        asgi_loops=args.asgi_loops or default_asgi_loops,
        asgi_seconds=float(args.asgi_seconds or (1.0 if quick else 2.0)),
        asgi_repeats=1 if quick else 3,
        asgi_retries=0 if quick else 2,
        asgi_connections=50,
        footprint_receivers=1_000 if quick else 10_000,
        churn_cycles=10_000 if quick else 100_000,
        peers=not args.no_peers,
        asgi_in_process_repeats=3 if quick else 41,
        other_pythons=list(args.also_python),
        other_loops=args.other_loops or ["asyncio"],
    )


def _work_units(settings: Settings) -> int:
    units = 0
    if "dispatch" in settings.sections:
        units += len(settings.loops) * len(dispatch.cases("asyncio", settings.receiver_counts))
    if "asgi" in settings.sections:
        units += asgi.work_units(settings)
    if "instructions" in settings.sections:
        units += instructions.work_units(settings)
    if "memory" in settings.sections:
        units += memory.work_units(settings)
    if "dispatch" in settings.sections:
        units += len(settings.other_pythons)
    if "orm" in settings.sections:
        units += orm.work_units(settings)
    if "outbox" in settings.sections:
        units += outbox.work_units(settings)
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
    return _write_outputs(args, results)


def _write_outputs(args: argparse.Namespace, results: Results) -> int:
    """The files a run was asked for: JSON, plot, the Performance page and the README."""
    if args.json is not None:
        report.write_json(results, args.json)
        print(f"JSON written to {args.json}", file=sys.stderr)
    if args.plot is not None:
        problem = plot.draw(results, args.plot, args.plot_loop)
        print(problem or f"plot written to {args.plot}", file=sys.stderr)
    status = 0
    for path, write in ((args.markdown, markdown.write_page), (args.readme, markdown.write_readme)):
        if path is None:
            continue
        try:
            write(results, path)
        except (OSError, ValueError) as exc:
            print(f"cannot write {path}: {exc}", file=sys.stderr)
            status = 2
        else:
            print(f"results written into {path}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.from_json is not None:
        return _replay(args)
    settings = settings_from(args)
    results = Results(system=describe(), settings=settings)
    _emit(report.format_header(results))
    # A smoke run prints one screen at the end instead of the tables.
    emit = (lambda text: None) if settings.quick else _emit
    progress = Progress(_work_units(settings), enabled=not args.no_progress)
    try:
        if "dispatch" in settings.sections:
            progress.section("dispatch")
            results.dispatch, skipped_loops = dispatch.run(settings, progress)
            results.dispatch_notes = dispatch.notes(settings.peers) + skipped_loops
            progress.close()
            emit(report.format_dispatch(results))
            if settings.other_pythons:
                results.other_pythons = pythons.run(settings, progress)
                progress.close()
                emit(report.format_pythons(results))
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
            emit(report.format_asgi(results))
        if "instructions" in settings.sections:
            progress.section("instructions")
            missing = instructions.unavailable()
            if missing is None:
                results.instructions = instructions.run(settings, progress)
            else:
                results.skipped["instructions"] = missing
                print(missing, file=sys.stderr)
                progress.advance(instructions.work_units(settings))
            progress.close()
            emit(instructions.format_rows(results))
        if "memory" in settings.sections:
            progress.section("memory")
            results.footprint, results.churn, results.memory_notes = memory.run(settings, progress)
            progress.close()
            emit(report.format_memory(results))
        if "redis" in settings.sections:
            from . import redis_bridge

            progress.section("redis")
            emit(redis_bridge.format_rows(*redis_bridge.run(settings.quick)))
        orm_rows: list[orm.OrmRow] = []
        if "orm" in settings.sections:
            progress.section("orm")
            missing = orm.unavailable()
            if missing is None:
                orm_rows = orm.run(settings, progress.step)
                bulk_row = orm.run_bulk(settings, progress.step)
                progress.close()
                emit(orm.format_rows(orm_rows))
                emit(orm.format_bulk(bulk_row))
            else:
                results.skipped["orm"] = missing
                print(f"orm section skipped: {missing}", file=sys.stderr)
        outbox_commits: list[outbox.CommitRow] = []
        if "outbox" in settings.sections:
            progress.section("outbox")
            missing = outbox.unavailable()
            if missing is None:
                outbox_commits, outbox_relays = outbox.run(settings, progress.step)
                progress.close()
                emit(outbox.format_rows(outbox_commits, outbox_relays))
            else:
                results.skipped["outbox"] = missing
                print(f"outbox section skipped: {missing}", file=sys.stderr)
    finally:
        progress.close()
    results.system["load_end"] = load_average()
    results.targets = targets.evaluate(results)
    _emit(report.format_summary(results) if settings.quick else report.format_targets(results))
    for line in orm.format_targets(orm_rows, settings.quick):
        emit(line)
    for line in outbox.format_targets(outbox_commits, settings.quick):
        emit(line)
    return _write_outputs(args, results)


if __name__ == "__main__":
    sys.exit(main())
