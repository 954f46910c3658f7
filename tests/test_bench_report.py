"""The benchmark suite's judging and writing: targets, the Markdown and the plot for the docs.

No timing here: the rows are made up, so that each test knows which verdict is right.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import markdown, plot, targets
from benchmarks.__main__ import parser as cli_parser
from benchmarks.__main__ import settings_from
from benchmarks._model import (
    DispatchRow,
    InProcessRow,
    Kind,
    Mode,
    OtherPython,
    Results,
    Role,
    TargetRow,
)
from benchmarks.dispatch import FLOOR, HAND_LOOP, RAW_TASK_GROUP
from benchmarks.pythons import command, version_of


def _row(mode: Mode, kind: Kind, n: int, impl: str, ns: float, base_ns: float) -> DispatchRow:
    role: Role = "asignals" if impl == "asignals" else "baseline"
    baseline = RAW_TASK_GROUP if mode == "gather" else FLOOR
    return DispatchRow(
        "asyncio", mode, kind, n, impl, role, ns=ns, baseline=baseline, ratio=ns / base_ns
    )


def _gather_rows(ratio: float) -> list[DispatchRow]:
    return [
        _row("gather", "async", 100, RAW_TASK_GROUP, 100_000.0, 100_000.0),
        _row("gather", "async", 100, "asignals", 100_000.0 * ratio, 100_000.0),
    ]


def _results(python: str = "CPython 3.11.7") -> Results:
    settings = settings_from(cli_parser().parse_args(["--quick"]))
    system = {
        "date": "2026-12-01 08:00 UTC",
        "python": python,
        "platform": "Linux",
        "cpu": "a CPU",
        "cpus": "2 logical CPU(s)",
        "loops": "asyncio",
        "asignals": "0.1.0",
        "load": "0",
        "peers": "none",
    }
    return Results(system=system, settings=settings)


def _target(results: Results, name: str) -> TargetRow:
    return next(t for t in targets.evaluate(results) if t.name == name)


EAGER = "gather, 100 coroutine receivers that return at once, 3.12+"


def test_eager_gather_target_is_not_judged_without_python_3_12() -> None:
    results = _results()
    results.dispatch = _gather_rows(0.2)
    assert _target(results, EAGER).passed is None


def test_eager_gather_target_is_judged_on_the_other_pythons_runs() -> None:
    results = _results()
    results.dispatch = _gather_rows(1.3)  # 3.11: not judged by the eager target
    results.other_pythons = [
        OtherPython("py3.12", "CPython 3.12.1", dispatch=_gather_rows(0.30)),
        OtherPython("py3.13", "CPython 3.13.0", dispatch=_gather_rows(0.40)),
    ]
    target = _target(results, EAGER)
    assert (target.passed, target.value) == (False, "0.40x")
    assert "3.12.1 asyncio 0.30x" in target.details
    assert "3.11" not in target.details


def test_send_targets_divide_by_the_strict_floor() -> None:
    results = _results()
    results.dispatch = [
        _row("send", "sync", 100, FLOOR, 10_000.0, 10_000.0),
        _row("send", "sync", 100, "asignals", 12_000.0, 10_000.0),
        _row("send", "sync", 100, "hand loop, **payload", 20_000.0, 10_000.0),
    ]
    target = _target(results, "send, 100 sync receivers")
    assert (target.passed, target.value) == (True, "1.20x")


def test_asgi_targets_use_the_overhead_against_the_floor_middleware() -> None:
    results = _results()
    results.asgi_inprocess = [
        InProcessRow("uvloop", "floor", "", overhead_ns=2_000.0, overhead_ratio=1.0),
        InProcessRow("uvloop", "signals_none", "", overhead_ns=300.0, overhead_ratio=0.15),
        InProcessRow("uvloop", "signals_async", "", overhead_ns=5_000.0, overhead_ratio=2.5),
    ]
    one = _target(results, "ASGI, one coroutine receiver on started+finished")
    none = _target(results, "ASGI, SignalMiddleware without receivers")
    assert (one.passed, one.value) == (False, "2.50x")
    assert (none.passed, none.value) == (False, "0.30 µs")


def _page(tmp_path: Path) -> Path:
    page = tmp_path / "performance.md"
    results, details = markdown.PAGE_MARKERS, markdown.DETAILS_MARKERS
    page.write_text(
        f"# Performance\n\nby hand\n\n{results[0]}\nold figures\n{results[1]}\n\n"
        f"## How it measures\n\n{details[0]}\nold tables\n{details[1]}\n\nafter\n"
    )
    return page


def _send_rows() -> list[DispatchRow]:
    return [
        _row("send", "sync", 1, FLOOR, 140.0, 140.0),
        _row("send", "sync", 1, "asignals", 420.0, 140.0),
        _row("send", "sync", 1, "blinker send", 980.0, 140.0),
    ]


def test_results_are_written_between_the_markers_only(tmp_path: Path) -> None:
    page = _page(tmp_path)
    results = _results()
    results.dispatch = _send_rows()
    markdown.write_page(results, page)
    text = page.read_text()
    assert text.startswith("# Performance\n\nby hand\n\n" + markdown.PAGE_MARKERS[0])
    assert "\n\n## How it measures\n\n" + markdown.DETAILS_MARKERS[0] in text
    assert text.endswith(markdown.DETAILS_MARKERS[1] + "\n\nafter\n")
    assert "old figures" not in text
    assert "old tables" not in text
    assert "420\u00a0ns\u00a0(3.00x)" in text
    assert "Lower is better" in text


def test_the_page_leads_with_the_comparison_and_keeps_bookkeeping_out(tmp_path: Path) -> None:
    page = _page(tmp_path)
    results = _results()
    results.dispatch = _send_rows()
    results.targets = targets.evaluate(results)
    markdown.write_page(results, page)
    text = page.read_text()
    first = text.split(markdown.PAGE_MARKERS[1])[0]
    assert first.index("| library | sync, N=1 |") < first.index("](img/bench-dispatch.png)")
    assert "## Every figure" in text.split(markdown.DETAILS_MARKERS[0])[1]
    bookkeeping = re.findall(r"\b(?:targets?|issue|pass|miss)\b", text, flags=re.IGNORECASE)
    assert not bookkeeping


def test_a_page_without_the_details_markers_fails_and_changes_nothing(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    begin, end = markdown.PAGE_MARKERS
    page.write_text(f"# Performance\n\n{begin}\nold figures\n{end}\n")
    with pytest.raises(ValueError, match="markers"):
        markdown.write_page(_results(), page)
    assert page.read_text() == f"# Performance\n\n{begin}\nold figures\n{end}\n"


def test_the_plot_has_two_panels_and_one_legend_entry_per_library() -> None:
    pytest.importorskip("matplotlib")
    results = _results()
    results.dispatch = [
        *_send_rows(),
        _row("send", "async", 1, FLOOR, 200.0, 200.0),
        _row("send", "async", 1, "asignals", 500.0, 200.0),
        _row("send", "async", 1, "blinker send_async", 1_000.0, 200.0),
        _row("send", "sync", 100, HAND_LOOP, 2_000.0, 1_000.0),  # a reference: not plotted
        _row("gather", "async", 1, RAW_TASK_GROUP, 9_000.0, 9_000.0),  # not a send
    ]
    figure = plot.figure(results)
    try:
        assert len(figure.axes) == 2
        legend = [text.get_text() for text in figure.legends[0].get_texts()]
        assert legend == ["strict floor", "asignals", "blinker"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_no_plot_is_drawn_without_send_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    problem = plot.draw(_results(), tmp_path / "plot.png")
    assert problem is not None
    assert "no dispatch results" in problem
    assert not (tmp_path / "plot.png").exists()


def test_writing_into_a_file_without_markers_fails_and_changes_nothing(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# asignals\n")
    with pytest.raises(ValueError, match="markers"):
        markdown.write_readme(_results(), readme)
    assert readme.read_text() == "# asignals\n"


def test_python_versions_are_read_from_the_description() -> None:
    assert version_of("CPython 3.12.1") == (3, 12)
    assert version_of("") is None


def test_other_pythons_run_the_dispatch_section_with_this_runs_settings(tmp_path: Path) -> None:
    settings = settings_from(cli_parser().parse_args(["--quick", "--receivers", "1,100"]))
    args = command(".venv-3.13/bin/python", settings, tmp_path / "out.json")
    assert args[:4] == [".venv-3.13/bin/python", "-m", "benchmarks", "dispatch"]
    assert args[args.index("--receivers") + 1] == "1,100"
    assert args[args.index("--loops") + 1] == "asyncio"
    assert "--quick" in args
