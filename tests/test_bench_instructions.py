"""The benchmark suite's instruction counts: reading callgrind, the table, skipping cleanly.

No speed is asserted: the counts in the tables are made up; the real callgrind runs count
``python -c ...`` only to check that their files are read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import instructions, markdown, report
from benchmarks.__main__ import main, settings_from
from benchmarks.__main__ import parser as cli_parser
from benchmarks._model import DispatchRow, InProcessRow, InstructionRow, Results
from benchmarks.dispatch import FLOOR

needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="valgrind is not installed"
)


@needs_valgrind
def test_a_real_callgrind_file_gives_its_total(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            "pass",
        ],
        check=True,
        capture_output=True,
    )
    assert instructions.read_total(out) > 1_000_000  # an interpreter's start-up, at least


@needs_valgrind
def test_each_call_of_the_marker_ends_a_counted_part() -> None:
    program = (
        "import os\nos.getppid()\nfor i in range(1000): pass\n"
        "os.getppid()\nfor i in range(3000): pass\nos.getppid()\n"
    )
    parts, printed = instructions.count(sys.executable, ["-c", program])
    assert printed == ""
    assert len(parts) == 3
    assert parts[0] > parts[2] > parts[1] > 0  # start-up, then the short and the long run
    assert instructions.per_operation(parts, (1000, 3000)) > 0


def test_the_instructions_column_is_read_among_several_events(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("# callgrind format\nversion: 1\nevents: Dr Ir\nsummary: 7 900\ntotals: 5 800\n")
    assert instructions.read_total(out) == 800
    out.write_text("events: Ir\nsummary: 123\n")  # older files have no totals: line
    assert instructions.read_total(out) == 123


def test_a_file_without_counts_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("not callgrind\n")
    with pytest.raises(ValueError, match="summary"):
        instructions.read_total(out)


def test_one_operation_is_the_difference_of_the_two_runs_over_their_counts() -> None:
    assert instructions.per_operation([10**7, 9_000_000, 27_000_000], (1000, 3000)) == 9000.0


def test_each_program_of_a_child_has_three_parts_and_one_it_could_not_build_none() -> None:
    parts = [10**9, 9_000_000, 27_000_000, 10**7, 3_000_000, 9_000_000]
    printed = "n/a\tsend/async/1/aiosignal send\taiosignal is not installed\n"
    programs = ["send/sync/1/asignals", "send/async/1/aiosignal send", "send/sync/1/strict floor"]
    assert instructions.per_program(parts, programs, (1000, 3000), printed) == {
        "send/sync/1/asignals": 9000.0,
        "send/async/1/aiosignal send": (
            "send/async/1/aiosignal send: n/a, aiosignal is not installed"
        ),
        "send/sync/1/strict floor": 3000.0,
    }
    with pytest.raises(ValueError, match="expected 9"):
        instructions.per_program(parts, programs, (1000, 3000), "")


def _results() -> Results:
    settings = settings_from(cli_parser().parse_args(["--quick"]))
    system = {
        "date": "2026-12-01 08:00 UTC",
        "python": "CPython 3.11.7",
        "platform": "Linux",
        "cpu": "a CPU",
        "cpus": "2 logical CPU(s)",
        "loops": "asyncio",
        "asignals": "0.1.0",
        "load": "0",
        "peers": "none",
    }
    return Results(system=system, settings=settings)


def _counted() -> Results:
    results = _results()
    results.dispatch = [
        DispatchRow("asyncio", "send", "sync", 1, FLOOR, "baseline", ns=140.0, baseline=FLOOR),
        DispatchRow("asyncio", "send", "sync", 1, "asignals", "asignals", ns=420.0, baseline=FLOOR),
    ]
    results.asgi_inprocess = [
        InProcessRow("uvloop", "signals_async", "", overhead_ratio=2.5),
        InProcessRow("asyncio", "signals_async", "", overhead_ratio=1.9),
    ]
    sync = ("send, 1 sync receiver", FLOOR, "send/sync/1/asignals", "send/sync/1/strict floor")
    middleware = ("SignalMiddleware, 1 coroutine receiver", "floor middleware")
    results.instructions = [
        InstructionRow("CPython 3.11.7", *sync, [1000, 3000], 9162.0, 2751.0, 3.33),
        InstructionRow(
            "CPython 3.11.7",
            *middleware,
            "asgi/signals_async",
            "asgi/floor",
            [1000, 3000],
            30_200.0,
            16_400.0,
            1.84,
            subtracted=1_000.0,
        ),
        InstructionRow("CPython 3.13.0", *sync, [1000, 3000], na="exited with 1: boom"),
    ]
    return results


def _page(tmp_path: Path) -> Path:
    page = tmp_path / "performance.md"
    results, details = markdown.PAGE_MARKERS, markdown.DETAILS_MARKERS
    page.write_text(f"# Performance\n\n{results[0]}\n{results[1]}\n\n{details[0]}\n{details[1]}\n")
    return page


def test_the_page_shows_each_count_beside_the_same_comparison_in_time(tmp_path: Path) -> None:
    page = _page(tmp_path)
    markdown.write_page(_counted(), page)
    text = page.read_text()
    assert (
        "| send, 1 sync receiver (x strict floor) | 3.11.7 | 9,162 | 2,751 | 3.33x | 3.00x |"
        in text
    )
    # The middleware's time ratio is the in-process overhead ratio on asyncio.
    assert "| 30,200 | 16,400 | 1.84x | 1.90x |" in text
    assert "- send, 1 sync receiver (CPython 3.13.0): exited with 1: boom" in text
    assert "runs of 1,000 and 3,000 operations" in text
    details = text.split(markdown.DETAILS_MARKERS[0])[1]
    assert (
        details.index("### Dispatch on every Python")
        < details.index("### Instructions per operation")
        < details.index("### Dispatch on asyncio")
    )


def test_the_page_says_why_nothing_was_counted(tmp_path: Path) -> None:
    page = _page(tmp_path)
    results = _results()
    results.skipped["instructions"] = instructions.VALGRIND_MISSING
    markdown.write_page(results, page)
    assert "Not measured: valgrind is not installed" in page.read_text()


def test_the_console_table_and_the_json_keep_the_counts(tmp_path: Path) -> None:
    results = _counted()
    text = report.format_text(results)
    assert "instructions per operation" in text
    assert "9,162" in text
    assert "n/a send, 1 sync receiver (CPython 3.13.0): exited with 1: boom" in text
    report.write_json(results, tmp_path / "results.json")
    again = report.read_json(tmp_path / "results.json")
    assert again.instructions == results.instructions


def test_results_saved_before_the_instructions_section_still_read(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    report.write_json(_results(), path)
    document = json.loads(path.read_text())
    del document["instructions"]
    path.write_text(json.dumps(document))
    assert report.read_json(path).instructions == []


def test_a_smoke_run_without_valgrind_skips_the_section_and_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *args, **kwargs: None if name == "valgrind" else which(name)
    )
    out = tmp_path / "results.json"
    assert main(["instructions", "--quick", "--no-progress", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "instructions: skipped: valgrind is not installed" in captured.out
    assert "apt-get install valgrind" in captured.err
    saved = report.read_json(out)
    assert saved.instructions == []
    assert saved.skipped["instructions"] == instructions.VALGRIND_MISSING


def test_a_smoke_run_counts_on_this_python_only() -> None:
    args = ["--quick", "--also-python", "/usr/bin/python3.13"]
    quick = settings_from(cli_parser().parse_args(args))
    full = settings_from(cli_parser().parse_args(args[1:]))
    assert instructions.interpreters(quick) == [sys.executable]
    assert instructions.interpreters(full) == [sys.executable, "/usr/bin/python3.13"]
    assert len(instructions.operations(quick)) < len(instructions.operations(full))


def test_tracing_rows_compare_with_the_untraced_operation() -> None:
    traced = [op for op in instructions.OPERATIONS if "tracing" in op.label]
    assert [op.label.rsplit(", ", 1)[1] for op in traced] == [
        "tracing off",
        "tracing on",
        "tracing off",
        "tracing on",
    ]
    for op in traced:
        prefix = instructions.TRACING_OFF if op.label.endswith("off") else instructions.TRACING_ON
        assert op.program == prefix + op.baseline_program  # the same operation, untraced


def test_the_tracing_programs_run_and_leave_tracing_off() -> None:
    # In a child, as callgrind runs them: instrumented for its counted runs only.
    code = (
        "from benchmarks import instructions; from asignals import _trace\n"
        "instructions.main(['2', '4', 'tracing-on/send/sync/1/asignals',"
        " 'tracing-off/asgi/signals_async'])\n"
        "assert _trace.tracer is None\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_the_orm_programs_build_and_run_as_callgrind_runs_them() -> None:
    """``orm/commit/N/VARIANT`` and ``orm/bulk/VARIANT`` (counted by hand, not by ``make
    bench``): each runs its operations in a child of its own, as under callgrind."""
    programs = [f"orm/commit/2/{variant}" for variant in ("untracked", "tracked", "by hand")]
    programs += ["orm/commit/2/post_save", "orm/bulk/bare", "orm/bulk/post_bulk_update"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", "1", "2", *programs, "orm/nothing"],
        cwd=instructions.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "n/a\torm/nothing\tprograms are send/sync|async/N/IMPLEMENTATION, asgi/VARIANT, "
        "orm/commit/N/VARIANT or orm/bulk/VARIANT"
    ]
