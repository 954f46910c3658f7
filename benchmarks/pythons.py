"""The dispatch section on other Pythons: one child process per interpreter.

Fast paths differ by version (eager tasks exist only on 3.12+), so ``--also-python PY``
runs ``PY -m benchmarks dispatch`` with this run's settings and reads its results back
from JSON; the report shows every Python side by side. Each interpreter needs its own
environment with asignals and the ``bench`` extra installed (``make bench`` creates
``.venv-3.12`` and ``.venv-3.13`` when those Pythons are there). A child that cannot run
is reported with the reason, not dropped.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ._model import OtherPython, Settings
from ._progress import Progress

CHILD_TIMEOUT = 3600.0
ROOT = Path(__file__).resolve().parent.parent


def command(interpreter: str, settings: Settings, json_path: Path) -> list[str]:
    """The child's command line: this run's dispatch settings, on the child's loops."""
    args = [
        interpreter,
        "-m",
        "benchmarks",
        "dispatch",
        "--no-progress",
        "--json",
        str(json_path),
        "--loops",
        ",".join(settings.other_loops),
        "--receivers",
        ",".join(str(n) for n in settings.receiver_counts),
        "--repeats",
        str(settings.repeats),
        "--batch-ms",
        f"{settings.batch_target_ms:g}",
    ]
    if settings.quick:
        args.append("--quick")
    if not settings.peers:
        args.append("--no-peers")
    return args


def run(settings: Settings, progress: Progress) -> list[OtherPython]:
    """Run the dispatch section on every ``settings.other_pythons`` interpreter, in turn."""
    from .report import read_json

    runs: list[OtherPython] = []
    for interpreter in settings.other_pythons:
        progress.step(f"dispatch on {interpreter}")
        other = OtherPython(interpreter)
        runs.append(other)
        if "/" in interpreter:  # a path, given relative to where this run started
            interpreter = str(Path(interpreter).absolute())
        with tempfile.TemporaryDirectory(prefix="asignals-bench-") as tmp:
            json_path = Path(tmp) / "dispatch.json"
            try:
                done = subprocess.run(
                    command(interpreter, settings, json_path),
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=CHILD_TIMEOUT,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                other.na = f"could not run: {exc}"
                continue
            if done.returncode != 0 or not json_path.exists():
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                other.na = f"exited with {done.returncode}: {last[:200]}"
                continue
            child = read_json(json_path)
        other.python = child.system.get("python", "")
        other.system = child.system
        other.dispatch = child.dispatch
    return runs


def version_of(python: str) -> tuple[int, int] | None:
    """``(3, 12)`` from ``"CPython 3.12.1"``, or None when it does not say."""
    try:
        major, minor = python.split()[-1].split(".")[:2]
        return int(major), int(minor)
    except (IndexError, ValueError):
        return None


def short(python: str) -> str:
    """``"3.12.1"`` from ``"CPython 3.12.1"``."""
    return python.split()[-1] if python else "?"
