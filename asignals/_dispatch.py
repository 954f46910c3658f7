"""The dispatch loop: how a send calls its receivers.

There is one loop, :func:`run_in_order`. ``send`` and ``send_robust`` run it over the whole
plan; ``gather`` and ``gather_robust`` run it over one receiver at a time, in concurrent
tasks of one task group (:func:`run_concurrently`). Error handling therefore lives in one
place: ``robust`` turns an ``Exception`` into that receiver's response; anything else
(cancellation included) always propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._receivers import ASYNC, SYNC, Call, Receiver, Ref, describe

if TYPE_CHECKING:
    from ._signal import AsyncSignal

logger = logging.getLogger("asignals")

Plan = Sequence[tuple[Ref, Call]]
Responses = list[tuple[Receiver, Any]]


def log_failure(signal: AsyncSignal, receiver: Receiver, exc: Exception) -> None:
    """Log a receiver's exception that a robust send returns instead of raising."""
    logger.error(
        "Receiver %s of signal %r raised %s",
        describe(receiver),
        signal.name,
        type(exc).__name__,
        exc_info=exc,
    )


async def run_in_order(
    signal: AsyncSignal, plan: Plan, kwargs: dict[str, Any], robust: bool
) -> Responses:
    """Call every live receiver of *plan* in order and collect ``(receiver, response)``."""
    responses: Responses = []
    for ref, call in plan:
        receiver = ref()
        if receiver is None:  # garbage-collected since the plan was built
            continue
        try:
            if call is SYNC:
                response = receiver(**kwargs)
            elif call is ASYNC:
                response = await receiver(**kwargs)
            else:
                response = await call(receiver, kwargs)  # type: ignore[operator]
        except Exception as exc:
            if not robust:
                raise
            log_failure(signal, receiver, exc)
            response = exc
        responses.append((receiver, response))
    return responses


async def run_concurrently(
    signal: AsyncSignal,
    plan: Plan,
    kwargs: dict[str, Any],
    robust: bool,
    max_concurrency: int | None,
) -> Responses:
    """Run every receiver of *plan* in a task of one task group; responses in plan order.

    Structured: the task group does not exit before every receiver has finished. Without
    *robust*, the first failure cancels the others and the task group raises an
    ``ExceptionGroup``.
    """
    if not plan:
        return []
    slots: list[Responses] = [[] for _ in plan]  # a dead receiver leaves its slot empty
    indexes: Iterator[int] = iter(range(len(plan)))

    async def worker() -> None:
        # Workers share one iterator, so at most `workers` receivers run at once.
        for index in indexes:
            slots[index] = await run_in_order(signal, (plan[index],), kwargs, robust)

    workers = len(plan) if max_concurrency is None else min(max_concurrency, len(plan))
    if _running_asyncio():
        # The stdlib task group has the same semantics (cancel siblings on failure, raise an
        # ExceptionGroup, cancel children with the parent) at a fifth of the cost per task of
        # anyio's, which would dominate a gather of receivers that return at once.
        async with asyncio.TaskGroup() as asyncio_group:
            for _ in range(workers):
                asyncio_group.create_task(worker())
    else:
        async with anyio.create_task_group() as anyio_group:
            for _ in range(workers):
                anyio_group.start_soon(worker)
    return [response for slot in slots for response in slot]


def _running_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
