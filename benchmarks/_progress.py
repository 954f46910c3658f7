"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``[#####-----]  12/180  0:41  asyncio send sync N=100`` redrawn in place.

    Off a terminal (CI logs, pipes) it prints nothing, so logs stay readable; the report
    itself goes to stdout either way.
    """

    WIDTH = 28

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and self.stream.isatty()
        self.total = max(total, 1)
        self.done = 0
        self.started = time.monotonic()
        self._section = ""

    def section(self, name: str) -> None:
        self._section = name
        self._draw("")

    def step(self, detail: str) -> None:
        """Count one unit of work as started, and show what it is."""
        self._draw(detail)
        self.done += 1

    def advance(self, units: int) -> None:
        """Count *units* of work as done without showing them (skipped work)."""
        self.done += units

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _draw(self, detail: str) -> None:
        if not self.enabled:
            return
        filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
        elapsed = int(time.monotonic() - self.started)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = (
            f"[{bar}] {self.done:>4}/{self.total} {elapsed // 60}:{elapsed % 60:02d} "
            f"{self._section}: {detail}"
        )
        self.stream.write("\r\x1b[2K" + line[:160])
        self.stream.flush()
