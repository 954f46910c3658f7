"""Load generation: uvicorn servers in subprocesses, and wrk runs against them.

Servers listen on 127.0.0.1 only, on a free port; every wrk run is bounded in time. Where
two CPUs are available the server and wrk are pinned to different ones (set in the child
before exec, so that every thread inherits it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent  # the directory that holds `benchmarks/`
WRK_MISSING = (
    "wrk is not installed: run `apt-get install wrk` (`make bench` installs it); "
    "skipping the ASGI runs under load (the in-process timings above still ran)"
)
WARM_UP_SECONDS = 0.5
BUSY_CORES = 0.1  # other processes using more than this during a run disturb it


@dataclass
class WrkResult:
    rps: float
    p50_us: float
    p99_us: float
    errors: int
    other_cores: float | None = None


class CpuMeter:
    """How much CPU processes other than ours used while a run lasted (Linux).

    Other work on the machine (a test suite, a build) steals cycles from the server and
    skews one variant against another; the report shows it so that such runs are seen.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _busy(self) -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(v) for v in stat.readline().split()[1:8]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq = fields
        return (user + nice + system + irq + softirq) / self.tick

    def _ours(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / self.tick  # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        import resource  # Unix only, like the rest of this section

        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished wrk runs
        return total + me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime

    def start(self) -> tuple[float, float | None, float]:
        return time.monotonic(), self._busy(), self._ours()

    def others(self, started: tuple[float, float | None, float]) -> float | None:
        """Cores' worth of CPU used by other processes since *started*."""
        wall, busy, ours = started
        busy_now = self._busy()
        if busy is None or busy_now is None:
            return None
        elapsed = time.monotonic() - wall
        return max(0.0, (busy_now - busy) - (self._ours() - ours)) / elapsed


def http_implementation() -> str:
    """What uvicorn's ``--http auto`` picks here."""
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def cpu_plan() -> tuple[int | None, int | None]:
    """(server core, wrk core), or (None, None) when there are not two cores to pin to."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def _pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None

    def pin() -> None:  # runs in the child before exec, so every thread it starts inherits
        os.sched_setaffinity(0, {cpu})

    return pin


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One uvicorn process serving one variant."""

    def __init__(self, variant: str, loop: str, cpu: int | None) -> None:
        self.variant = variant
        self.port = free_port()
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        # `python -m uvicorn` with this interpreter: the same environment as the suite.
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                f"benchmarks.asgi_app:{variant}",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--loop",
                loop,
                "--http",
                "auto",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            preexec_fn=_pin(cpu),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_ready(self, timeout: float) -> str | None:
        """Wait until ``GET /`` answers 200; return why not, or ``None`` once it does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"uvicorn exited with {self.process.returncode}: {self.log_tail()}"
            if self.answers():
                return None
            time.sleep(0.05)
        return f"uvicorn did not answer within {timeout:.0f} s: {self.log_tail()}"

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def log_tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "no output"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()


_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, p50 and p99 (µs) and the error count from ``wrk --latency`` output."""
    rps = _RPS.search(output)
    percentiles = {p: float(v) * _UNIT_US[u] for p, v, u in _PERCENTILE.findall(output)}
    if rps is None or set(percentiles) != {"50", "99"}:
        raise ValueError(f"unexpected wrk output: {output.strip()[-300:]!r}")
    errors = sum(int(n) for n in _SOCKET_ERRORS.findall(output)[0]) if "Socket" in output else 0
    non_2xx = _NON_2XX.search(output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(float(rps.group(1)), percentiles["50"], percentiles["99"], errors)


def run_wrk(
    url: str, seconds: float, connections: int, cpu: int | None, meter: CpuMeter
) -> WrkResult:
    duration = max(1, round(seconds))
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        url,
    ]
    started = meter.start()
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
        preexec_fn=_pin(cpu),
    )
    result = parse_wrk(completed.stdout)
    result.other_cores = meter.others(started)
    return result


def warm_up(server: Server, seconds: float) -> None:
    """Send a server requests for a moment, so that first-request work is not measured."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.answers()
