"""The gather child on asyncio: the dispatch loop compiled as a child task's whole
coroutine (``CHILD_SOURCE`` in asignals/_dispatch.py), reporting to ``_Children`` itself.

These pin what the loop promises everywhere (dead weak references skipped, robust
failures as responses, readable tracebacks, no reference cycles) for that variant, and
the limited gather whose workers run one child after another.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import traceback
import weakref
from typing import Any

import pytest

from asignals import AsyncSignal
from asignals import _dispatch as dispatch

# Async tests are marked asyncio: they run on asyncio and on uvloop (conftest.py).
pytestmark = pytest.mark.asyncio


class Payload:
    """A payload item that can be weakly referenced, to see when it is freed."""


async def test_a_receiver_collected_after_the_plan_was_built_is_skipped() -> None:
    sig = AsyncSignal("s")
    later: list[Any] = []

    async def first(**kwargs: Any) -> str:
        later.clear()  # the last strong reference to `second`: its child finds it dead
        await asyncio.sleep(0)
        return "first"

    async def second(**kwargs: Any) -> str:  # pragma: no cover - collected before its turn
        return "second"

    later.append(second)
    sig.connect(first)
    sig.connect(second)
    del second
    # Children start in plan order on asyncio: `first` runs before `second`'s child looks.
    assert await sig.gather(None) == [(first, "first")]


@pytest.mark.parametrize("at_once", [True, False], ids=["at-once", "after-a-checkpoint"])
async def test_robust_failure_is_a_response_and_logged(
    at_once: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sig = AsyncSignal("s")

    async def fails(**kwargs: Any) -> None:
        if not at_once:
            await asyncio.sleep(0)
        raise ValueError("boom")

    async def works(**kwargs: Any) -> str:
        return "ok"

    sig.connect(fails)
    sig.connect(works)
    with caplog.at_level(logging.ERROR, logger="asignals"):
        responses = await sig.gather_robust(None, order=1)
    assert [r for r, _ in responses] == [fails, works]
    assert isinstance(responses[0][1], ValueError)
    assert responses[1][1] == "ok"
    assert "raised ValueError" in caplog.text


async def test_traceback_of_a_failed_gather_shows_the_loop_source() -> None:
    sig = AsyncSignal("tb")

    async def fails(**kwargs: Any) -> None:
        raise ValueError("boom")

    sig.connect(fails)
    with pytest.raises(ExceptionGroup) as info:
        await sig.gather(None, order=1)
    (error,) = info.value.exceptions
    text = "".join(traceback.format_exception(error))
    assert 'File "<asignals.gather>", line ' in text
    assert "await receiver(signal=signal, sender=sender, order=order)" in text


@pytest.mark.parametrize("at_once", [True, False], ids=["at-once", "after-a-checkpoint"])
@pytest.mark.parametrize("robust", [False, True], ids=["gather", "gather_robust"])
async def test_a_failure_does_not_keep_the_payload_alive(
    at_once: bool, robust: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's frame is in the failure's traceback: it must not hold `children`
    (which holds the failure) or its responses once it has reported."""
    monkeypatch.setattr(logging.getLogger("asignals"), "disabled", True)
    sig = AsyncSignal("s")

    async def fails(**kwargs: Any) -> None:
        if not at_once:
            await asyncio.sleep(0)
        raise ValueError("receiver failed")

    sig.connect(fails)
    gc.collect()
    gc.disable()
    try:
        payload = Payload()
        alive = weakref.ref(payload)
        if robust:
            responses = await sig.gather_robust(None, order=payload)
            error = responses[0][1]
            del responses
        else:
            try:
                await sig.gather(None, order=payload)
            except ExceptionGroup as group:
                (error,) = group.exceptions
        assert isinstance(error, ValueError)
        assert error.__traceback__ is not None  # the receiver's frames are still there
        del payload, error
        assert alive() is None, "a reference cycle keeps the payload alive"
    finally:
        gc.enable()


async def test_limited_gather_runs_every_part_in_a_task_it_owns() -> None:
    sig = AsyncSignal("s", max_concurrency=2)
    tasks: list[asyncio.Task[Any] | None] = []
    receivers = []
    for index in range(5):

        async def receiver(index: int = index, **kwargs: Any) -> int:
            tasks.append(asyncio.current_task())
            await asyncio.sleep(0)
            return index

        receivers.append(receiver)
        sig.connect(receiver)
    caller = asyncio.current_task()
    assert await sig.gather(None) == [(r, i) for i, r in enumerate(receivers)]
    assert len(set(tasks)) == 2  # two workers, each running parts one after another
    assert caller not in tasks
    assert all(task is not None and task.done() for task in tasks)


async def test_limited_gather_stops_at_the_first_failure() -> None:
    sig = AsyncSignal("s", max_concurrency=1)
    ran: list[str] = []

    async def fails(**kwargs: Any) -> None:
        ran.append("fails")
        raise ValueError("boom")

    async def after(**kwargs: Any) -> None:  # pragma: no cover - never reached
        ran.append("after")

    sig.connect(fails)
    sig.connect(after)
    with pytest.raises(ExceptionGroup) as info:
        await sig.gather(None)
    assert [str(e) for e in info.value.exceptions] == ["boom"]
    assert ran == ["fails"]  # the part after the failure ran nothing


async def test_a_plan_splits_into_parts_once() -> None:
    sig = AsyncSignal("s")

    async def a(**kwargs: Any) -> str:
        return "a"

    async def b(**kwargs: Any) -> str:
        return "b"

    sig.connect(a)
    plan = sig._plan_to_send(None, {})
    assert dispatch._parts(plan) is dispatch._parts(plan)
    sig.connect(b)
    assert await sig.gather(None) == [(a, "a"), (b, "b")]  # a new plan, its own parts
    assert len(dispatch._parts(sig._plan_to_send(None, {}))) == 2


async def test_a_plan_of_sync_receivers_is_freed_without_the_collector_after_a_gather() -> None:
    # A plan that kept itself as its own part would be a cycle: a disconnected strong
    # receiver (and what it holds) would then live until the cycle collector ran.
    class Held:
        pass

    held = Held()
    alive = weakref.ref(held)

    def holding(held: Held = held, **kwargs: Any) -> Held:
        return held

    def other(**kwargs: Any) -> int:
        return 1

    signal = AsyncSignal("sync_only")
    signal.connect(holding, weak=False)
    signal.connect(other, weak=False)
    assert type(signal._plans[0]) is dispatch.InlinePlan
    assert [response for _, response in await signal.gather(None)] == [held, 1]
    gc.collect()
    gc.disable()
    try:
        signal.disconnect(holding)
        del holding, held
        assert alive() is None
    finally:
        gc.enable()
