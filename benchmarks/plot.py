"""The Performance page's plot: asignals against the strict floor and its peers, at a glance.

Two panels, sync receivers and coroutine receivers that return at once; in each, the time
per ``send`` divided by the strict floor's, against the number of receivers, for the
implementations of the page's first table (:data:`.dispatch.COMPARED`). One line per
library, the same color in both panels, so the legend stays short. Every other figure is
in the tables.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ._model import DispatchRow, Kind, LoopName, Results
from .dispatch import COMPARED, FLOOR, lookup

PANELS: tuple[tuple[Kind, str], ...] = (
    ("sync", "sync receivers"),
    ("async", "coroutine receivers"),
)
_COLORS = {
    "asignals": "#d62728",
    "strict floor": "black",
    "aiosignal": "#9467bd",
    "psygnal": "#8c564b",
    "blinker": "#2ca02c",
    "Django": "#1f77b4",
    "async-signals": "#ff7f0e",
}
_TICKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _style(legend: str) -> dict[str, Any]:
    color = _COLORS.get(legend, "#17becf")
    if legend == "asignals":
        return {"color": color, "linewidth": 3.0, "marker": "o", "markersize": 7, "zorder": 5}
    if legend == FLOOR:
        return {"color": color, "linewidth": 1.6, "linestyle": "--", "zorder": 4}
    return {"color": color, "linewidth": 1.5, "marker": ".", "markersize": 8}


def draw(results: Results, path: Path, loop: LoopName | None = None) -> str | None:
    """Draw the plot into *path* (PNG). Returns why no plot was written, or ``None``."""
    try:
        made = figure(results, loop)
    except ImportError:
        return "--plot needs matplotlib (pip install -e '.[bench]'); no plot written"
    if made is None:
        return "--plot: no dispatch results to plot (run the dispatch section)"
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    made.savefig(buffer, format="png", dpi=100)
    plt.close(made)
    # A line plot needs few colors: a 256-color palette keeps the PNG small enough to
    # commit next to the docs. Pillow comes with matplotlib.
    from PIL import Image

    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256).save(path, format="PNG", optimize=True)
    return None


def figure(results: Results, loop: LoopName | None = None) -> Any:
    """The plot as a matplotlib figure, or ``None`` without `send` results to show.

    Shows *loop* (asyncio by default, or the first loop measured). Needs matplotlib.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in results.dispatch if row.mode == "send" and row.ratio is not None]
    if not rows:
        return None
    loops = [row.loop for row in rows]
    chosen: LoopName = loop if loop in loops else ("asyncio" if "asyncio" in loops else loops[0])
    # N=0 is left out: with no receivers the floor does nothing at all, and every ratio to
    # it measures only the cost of a call.
    counts = sorted({row.n for row in rows if row.loop == chosen and row.n > 0})
    with plt.rc_context({"font.size": 12}):
        return _figure(plt, results, rows, chosen, counts)


def _figure(
    plt: Any, results: Results, rows: list[DispatchRow], chosen: LoopName, counts: list[int]
) -> Any:
    figure, axes = plt.subplots(1, len(PANELS), figsize=(8, 4.8), sharey=True, squeeze=False)
    handles: dict[str, Any] = {}  # legend -> matplotlib Line2D
    top = 1.0
    for axis, (kind, title) in zip(axes[0], PANELS, strict=True):
        for entry in COMPARED:
            impl = entry.sync if kind == "sync" else entry.coroutine
            if impl is None or not entry.legend:
                continue
            points = [
                (x, row.ratio)
                for x, n in enumerate(counts)
                if (row := lookup(rows, chosen, "send", kind, n, impl)) is not None
                and row.ratio is not None
            ]
            if not points:
                continue
            top = max(top, *(y for _, y in points))
            (line,) = axis.plot(
                [x for x, _ in points],
                [y for _, y in points],
                label=entry.legend,
                **_style(entry.legend),
            )
            handles.setdefault(entry.legend, line)
        axis.set_title(title)
        axis.set_xticks(range(len(counts)), [str(n) for n in counts])
        axis.set_xlabel("receivers")
        axis.grid(True, which="major", alpha=0.3)
    first = axes[0][0]
    first.set_yscale("log")
    ticks = [t for t in _TICKS if t <= top * 1.2] or [1]
    first.set_yticks(ticks, [f"{t}x" for t in ticks])
    first.set_yticks([], minor=True)
    first.set_ylim(0.85, top * 1.3)
    first.set_ylabel("time per send ÷ strict floor's")
    python = results.system.get("python", "?")
    figure.suptitle(
        f"send on {chosen}, {python}: time divided by the strict floor's (lower is better)",
        fontsize=12,
    )
    order = [entry.legend for entry in COMPARED if entry.legend in handles]  # the table's
    figure.legend(
        [handles[legend] for legend in order],
        order,
        loc="lower center",
        ncol=(len(order) + 1) // 2,  # two rows: the page shows the plot ~700 px wide
        fontsize=11,
        frameon=False,
        handlelength=1.6,
        columnspacing=1.2,
    )
    figure.tight_layout(rect=(0, 0.13, 1, 1))
    return figure
