"""What the numbers were measured on: Python, CPU, loops, library versions."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from .peers import PEER_DISTRIBUTIONS

DISTRIBUTIONS = ("asignals-dispatch", "asignals")
"""asignals' distribution name, then the one it had before (an older install)."""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpus() -> str:
    total = os.cpu_count() or 0
    if hasattr(os, "sched_getaffinity"):
        usable = sorted(os.sched_getaffinity(0))
        return f"{total} logical CPU(s), {len(usable)} usable by this process ({usable})"
    return f"{total} logical CPU(s)"


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def asignals_version() -> str:
    for name in DISTRIBUTIONS:
        found = version(name)
        if found != "not installed":
            return found
    return "not installed"


def _package_dir() -> Path:
    import asignals

    return Path(asignals.__file__).resolve().parent


def source_revision() -> str | None:
    """The git commit of the asignals being measured, marked when it has local changes.

    Read-only: GIT_OPTIONAL_LOCKS=0 keeps ``git status`` from refreshing the index.
    """
    package = _package_dir()
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=package.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changes = git("status", "--porcelain", "--", str(package))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head} + uncommitted changes" if changes else head


def source_digest() -> str:
    """A short hash of asignals' own source files: which code exactly was measured."""
    package = _package_dir()
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _revision_text() -> str:
    revision = source_revision()
    return "not from a git checkout" if revision is None else f"git {revision}"


def describe() -> dict[str, str]:
    peers = ", ".join(f"{name} {version(name)}" for name in PEER_DISTRIBUTIONS.values())
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": cpus(),
        "loops": (f"asyncio (stdlib), uvloop {version('uvloop')}, trio {version('trio')}"),
        "asignals": (
            f"{asignals_version()} ({_revision_text()}, sources {source_digest()}), "
            f"anyio {version('anyio')}"
        ),
        "load": load_average(),
        "peers": peers,
    }
