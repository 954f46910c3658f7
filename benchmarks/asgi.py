"""ASGI: what ``SignalMiddleware`` costs a request, in process and under a load generator.

Two views of the variants of :mod:`benchmarks.asgi_app`:

* In process: the app called directly with a fake server connection, timed like the
  dispatch section. No sockets, no server, and a minimal ASGI app inside instead of
  Starlette: the overhead each variant adds per request (its time minus the bare app's,
  the two timed interleaved), with little noise. The
  baseline is the floor: a hand-written pure ASGI middleware that calls the same receiver
  with the same payload on started and finished (lower is better).
* Under load: each variant in its own uvicorn process on 127.0.0.1 (a free port,
  ``--no-access-log``, one worker), ``wrk --latency`` loading it from another core (see
  :mod:`._wrk`). All variants of one event loop are started together and measured in
  rounds, one short wrk run per variant per round, so that a drift in machine speed hits
  them alike; the best run (highest requests/s) is kept with its latency percentiles.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, cast

from ._model import AsgiRow, Batch, InProcessRow, LoopName, NotApplicable, Settings, Timing
from ._progress import Progress
from ._timing import measure, run_on_loop
from ._wrk import (
    BUSY_CORES,
    WARM_UP_SECONDS,
    WRK_MISSING,
    CpuMeter,
    Server,
    WrkResult,
    cpu_plan,
    http_implementation,
    run_wrk,
    warm_up,
)

READY_TIMEOUT = 30.0
BASELINE = "bare"
FLOOR = "floor"
VARIANTS: dict[str, str] = {
    "bare": "Starlette app, no middleware",
    "noop": "+ no-op pure ASGI middleware",
    "floor": "+ hand-written floor middleware calling the receiver on started+finished",
    "signals_none": "+ SignalMiddleware, no receivers",
    "signals_async": "+ SignalMiddleware, coroutine receiver on started+finished",
    "signals_sync": "+ SignalMiddleware, sync receiver on started+finished",
    "basehttp": "+ BaseHTTPMiddleware calling the same hook before and after",
}
"""Factory in :mod:`benchmarks.asgi_app` -> what it serves, in report order."""


class SectionSkipped(Exception):
    """Raised when a section cannot run at all on this machine; the message says why."""


def work_units(settings: Settings) -> int:
    per_loop = len(VARIANTS) * (settings.asgi_repeats + 1)  # wrk rounds + in-process
    return len(settings.asgi_loops) * per_loop


def run(
    settings: Settings, progress: Progress
) -> tuple[list[InProcessRow], list[AsgiRow], list[str], str | None]:
    """Measure every variant on every configured loop, in process and under wrk.

    Returns the in-process rows, the wrk rows, notes, and why wrk did not run (or None).
    Raises SectionSkipped when the section cannot run at all (no Starlette or uvicorn).
    """
    for module in ("uvicorn", "starlette"):
        if importlib.util.find_spec(module) is None:
            raise SectionSkipped(
                f"{module} is not installed (pip install -e '.[bench]'); skipping the ASGI section"
            )
    loops: list[str] = []
    rows: list[AsgiRow] = []
    for loop in settings.asgi_loops:
        if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            rows += [AsgiRow(loop, v, d, na="uvloop is not installed") for v, d in VARIANTS.items()]
            progress.advance(len(VARIANTS) * (settings.asgi_repeats + 1))
        else:
            loops.append(loop)
    in_process = [row for loop in loops for row in _in_process(loop, settings, progress)]
    if shutil.which("wrk") is None:
        return in_process, [], [], WRK_MISSING
    server_cpu, client_cpu = cpu_plan()
    notes = [
        f"uvicorn {_version('uvicorn')}, --http auto = {http_implementation()}, one worker, "
        f"--no-access-log; wrk -t1 -c{settings.asgi_connections} --latency, "
        f"{settings.asgi_seconds:g} s per run, best of {settings.asgi_repeats} interleaved "
        f"round(s) after a {WARM_UP_SECONDS:g} s warm-up, up to {settings.asgi_retries} more "
        f"run(s) for a variant whose best run had other work on the machine",
        (
            f"server pinned to CPU {server_cpu}, wrk to CPU {client_cpu}"
            if server_cpu is not None
            else "fewer than two CPUs available: server and wrk share the CPUs (not pinned)"
        ),
    ]
    if http_implementation() == "h11":
        notes.append(
            "h11 is uvicorn's pure-Python HTTP parser; install httptools for the faster parser "
            "most deployments use (middleware overhead then weighs more)"
        )
    for loop in loops:
        rows += _run_loop(loop, settings, progress, server_cpu, client_cpu)
    _fill_ratios(rows)
    return in_process, rows, notes, None


# -- in process: the app called directly ------------------------------------------------

_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


_REQUEST = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT = {"type": "http.disconnect"}


class _Connection:
    """A fake server connection: one request message, then disconnect; sends dropped."""

    __slots__ = ("received",)

    def __init__(self) -> None:
        self.received = False

    async def receive(self) -> dict[str, Any]:
        if self.received:
            return _DISCONNECT
        self.received = True
        return _REQUEST

    @staticmethod
    async def send(message: dict[str, Any]) -> None:
        return None


def request_batch(app: Callable[..., Any]) -> Batch:
    async def batch(k: int) -> None:
        for _ in range(k):
            connection = _Connection()
            await app(dict(_SCOPE), connection.receive, connection.send)

    return batch


IN_PROCESS_BARE = "minimal ASGI app (the same response, no framework), no middleware"
"""In process the variants wrap `asgi_app.minimal_app`, not Starlette: an overhead is a
difference of two best times, and around a 1 us app it is not lost in a 15 us app's
noise (the instructions a middleware adds are the same around either app)."""

IN_PROCESS_GROUPS: tuple[tuple[str, ...], ...] = (
    ("noop", FLOOR, "signals_none", "basehttp"),
    (FLOOR, "signals_async"),
    (FLOOR, "signals_sync"),
)
"""Variants timed together, interleaved, each group with a bare app and the floor of its own.

A group's variants may share the process's global signals: the receivers a variant
connects are connected for the whole group, so a variant that must see no receivers
(``signals_none``) is never grouped with one that connects some. The bare app, the no-op
and the floor middleware send no signals, so connections do not change their cost.
"""


def _in_process(loop: str, settings: Settings, progress: Progress) -> list[InProcessRow]:
    """Time per request of every variant, called directly on *loop*: the overhead, noise-free.

    Each group of :data:`IN_PROCESS_GROUPS` is timed interleaved with a bare app of its own,
    so that a variant's overhead (its time minus the bare app's) and its ratio to the floor
    middleware's overhead come from the same rounds. Between groups, every receiver is
    disconnected again.
    """
    from . import asgi_app

    rows = {variant: InProcessRow(loop, variant, VARIANTS[variant]) for variant in VARIANTS}
    rows[BASELINE].description = IN_PROCESS_BARE
    bare_samples: list[float] = []
    try:
        for group in IN_PROCESS_GROUPS:
            for variant in group:
                if variant != FLOOR or rows[FLOOR].ns is None:
                    progress.step(f"{loop} {variant} in process")
            names = (BASELINE, *group)
            batches = {
                name: request_batch(asgi_app.FACTORIES[name](asgi_app.minimal)) for name in names
            }

            async def main(
                batches: dict[str, Batch] = batches,
            ) -> dict[str, Timing | NotApplicable]:
                return await measure(
                    batches,
                    target_ns=settings.batch_target_ms * 1e6,
                    repeats=settings.asgi_in_process_repeats,
                )

            outcome = run_on_loop(cast(LoopName, loop), main)
            asgi_app.disconnect_all()
            bare = outcome[BASELINE]
            if isinstance(bare, NotApplicable):
                for variant in group:
                    rows[variant].na = rows[variant].na or f"the bare app: {bare.reason}"
                continue
            bare_samples.append(bare.best_ns)
            floor = outcome.get(FLOOR)
            floor_overhead = floor.best_ns - bare.best_ns if isinstance(floor, Timing) else None
            for variant in group:
                measured, row = outcome[variant], rows[variant]
                if variant == FLOOR and row.ns is not None:
                    continue  # the floor's own row comes from the first group
                if isinstance(measured, NotApplicable):
                    row.na = measured.reason
                    continue
                row.ns, row.bare_ns = measured.best_ns, bare.best_ns
                row.ratio = row.ns / row.bare_ns
                row.overhead_ns = row.ns - row.bare_ns
                if floor_overhead:
                    row.overhead_ratio = row.overhead_ns / floor_overhead
    finally:
        asgi_app.disconnect_all()
    progress.advance(1)  # the bare app, timed within every group
    if bare_samples:
        base = rows[BASELINE]
        base.ns = base.bare_ns = min(bare_samples)
        base.ratio, base.overhead_ns = 1.0, 0.0
    return list(rows.values())


def _run_loop(
    loop: str,
    settings: Settings,
    progress: Progress,
    server_cpu: int | None,
    client_cpu: int | None,
) -> list[AsgiRow]:
    servers: dict[str, Server] = {}
    failed: dict[str, str] = {}
    results: dict[str, list[WrkResult]] = {variant: [] for variant in VARIANTS}
    try:
        for variant in VARIANTS:
            servers[variant] = Server(variant, loop, server_cpu)
        for variant, server in servers.items():
            why = server.wait_ready(READY_TIMEOUT)
            if why is not None:
                failed[variant] = why
            else:
                warm_up(server, WARM_UP_SECONDS)
        meter = CpuMeter([server.process.pid for server in servers.values()])

        def measure(variant: str, server: Server) -> None:
            try:
                results[variant].append(
                    run_wrk(
                        server.url,
                        settings.asgi_seconds,
                        settings.asgi_connections,
                        client_cpu,
                        meter,
                    )
                )
            except (subprocess.SubprocessError, ValueError) as exc:
                failed[variant] = f"wrk failed: {exc}"

        for round_number in range(settings.asgi_repeats):
            for variant, server in servers.items():
                progress.step(f"{loop} {variant} round {round_number + 1}")
                if variant in failed:
                    continue
                measure(variant, server)
        # A variant whose every run shared the server's core with other work gets a few
        # more runs, so that one busy moment does not decide its ratio.
        for variant, server in servers.items():
            for _ in range(settings.asgi_retries):
                if variant in failed or not _disturbed(results[variant]):
                    break
                progress.step(f"{loop} {variant} rerun (machine was busy)")
                measure(variant, server)
    finally:
        for server in servers.values():
            server.stop()
    rows: list[AsgiRow] = []
    for variant, description in VARIANTS.items():
        row = AsgiRow(loop, variant, description, runs=len(results[variant]))
        if variant in failed:
            row.na = failed[variant]
        elif results[variant]:
            best = max(results[variant], key=lambda result: result.rps)
            row.rps, row.p50_us, row.p99_us = best.rps, best.p50_us, best.p99_us
            row.errors = sum(result.errors for result in results[variant])
            row.other_cores = best.other_cores
        rows.append(row)
    return rows


def _disturbed(results: list[WrkResult]) -> bool:
    """Whether the run that would be kept (the fastest) had company on the machine."""
    if not results:
        return False
    best = max(results, key=lambda result: result.rps)
    return best.other_cores is not None and best.other_cores > BUSY_CORES


def _fill_ratios(rows: list[AsgiRow]) -> None:
    bare = {row.loop: row for row in rows if row.variant == BASELINE and row.rps}
    for row in rows:
        base = bare.get(row.loop)
        if base is None or row.rps is None:
            continue
        row.rps_ratio = row.rps / base.rps if base.rps else None
        row.p50_ratio = row.p50_us / base.p50_us if row.p50_us and base.p50_us else None
        row.p99_ratio = row.p99_us / base.p99_us if row.p99_us and base.p99_us else None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"
