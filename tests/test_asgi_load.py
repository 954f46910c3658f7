"""Thousands of requests through ``SignalMiddleware`` under uvicorn: nothing lost, nothing leaked.

Each round sends ``REQUESTS`` requests, ``CONCURRENCY`` at a time over at most as many
connections, mixing successes with failures (an endpoint that raises: 500). After every
round each ``request_started`` has had exactly one ``request_finished``, the server's loop
is back to its baseline number of tasks, and (from the second round on) the number of
objects in the process does not grow.
"""

from __future__ import annotations

import gc
from collections import Counter
from typing import Any

import anyio
import httpx
import pytest
from asgi_apps import (
    LOOPS,
    WAIT,
    AppError,
    LoopName,
    Probe,
    make_starlette_app,
    serving,
    silenced,
    wait_until,
)

from asignals import got_request_exception, request_finished, request_started
from asignals.asgi import Scope, SignalMiddleware
from asignals.testing import connected_to

ROUNDS = 3
REQUESTS = 1000
CONCURRENCY = 50
FAILURE_EVERY = 10  # every 10th request goes to /error
OBJECT_GROWTH_TOLERANCE = 500  # gc-tracked objects, between rounds 2 and 3


def path_for(index: int) -> str:
    if index % FAILURE_EVERY == 0:
        return "/error"
    return "/stream" if index % 2 else "/"


async def one_round(url: str) -> Counter[int]:
    """Send REQUESTS requests with CONCURRENCY workers; count the status codes."""
    statuses: Counter[int] = Counter()
    indexes = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=WAIT) as client:

        async def worker() -> None:
            for index in indexes:
                path = path_for(index)
                # uvicorn closes the connection of a request that raised: say so up front,
                # so that the client does not pick that connection for the next request.
                headers = {"connection": "close"} if path == "/error" else {}
                response = await client.get(path, headers=headers)
                statuses[response.status_code] += 1

        async with anyio.create_task_group() as group:
            for _ in range(CONCURRENCY):
                group.start_soon(worker)
    return statuses


def gc_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


@pytest.mark.parametrize("loop", LOOPS)
def test_many_requests_balance_and_leak_nothing(loop: LoopName) -> None:
    probe = Probe()
    in_flight: dict[int, Scope] = {}
    counts: Counter[str] = Counter()
    problems: list[str] = []

    # The receivers run on the server's loop only: no locking needed.
    def started(scope: Scope, **kwargs: Any) -> None:
        if id(scope) in in_flight:
            problems.append(f"request_started twice for {scope['path']}")
        in_flight[id(scope)] = scope
        counts["started"] += 1

    def finished(scope: Scope, exception: BaseException | None, **kwargs: Any) -> None:
        if in_flight.pop(id(scope), None) is not scope:
            problems.append(f"request_finished without request_started for {scope['path']}")
        counts["finished"] += 1
        counts["finished with exception"] += exception is not None

    def failed(exception: BaseException, **kwargs: Any) -> None:
        if not isinstance(exception, AppError):
            problems.append(f"unexpected exception {exception!r}")
        counts["exceptions"] += 1

    failures_per_round = len(range(0, REQUESTS, FAILURE_EVERY))
    objects: list[int] = []
    with (
        connected_to(started, request_started),
        connected_to(finished, request_finished),
        connected_to(failed, got_request_exception),
        # 100 tracebacks a round from uvicorn: kept out of the log capture (and memory).
        silenced("uvicorn.error"),
        # A loaded machine can leave a pooled connection idle past uvicorn's 5 s
        # keep-alive, and the server then closes it under the client's next request.
        serving(SignalMiddleware(make_starlette_app(probe)), loop, timeout_keep_alive=60) as server,
    ):
        baseline_tasks = server.task_count()
        for round_number in range(1, ROUNDS + 1):
            statuses = anyio.run(one_round, server.url)
            total = round_number * REQUESTS

            assert statuses == {200: REQUESTS - failures_per_round, 500: failures_per_round}
            assert wait_until(lambda: counts["finished"] >= total)  # noqa: B023
            assert problems == []
            assert in_flight == {}
            assert counts["started"] == counts["finished"] == total
            assert counts["exceptions"] == round_number * failures_per_round
            assert counts["finished with exception"] == counts["exceptions"]
            assert wait_until(lambda: server.task_count() == baseline_tasks)
            probe.reset()  # the events and exceptions the app recorded
            objects.append(gc_objects())

    growth = objects[2] - objects[1]
    assert growth < OBJECT_GROWTH_TOLERANCE, f"gc objects after each round: {objects}"
