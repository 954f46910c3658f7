"""gather's concurrency on asyncio and uvloop: each receiver in a task of its own, started
eagerly on Python 3.12+, and what a failure, an interrupt or a cancellation does to the
others whether they started eagerly or not; then max_concurrency's workers, robust
failures, receivers collected meanwhile, and what a failure must not keep alive.

On 3.12+ each child task runs at once, inside the Task constructor, up to its first
suspension (design.md, "Gather"). A child may then fail, or be interrupted, while later
children are still to be created: those must run nothing, the ones already suspended must
be cancelled, and the error must reach the caller. The eager-only tests are skipped on
3.11; the others run on every version and pin the same promise for lazy children.
(test_gather_cancellation.py covers cancellation on every backend, trio included.)
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import sys
import weakref
from collections.abc import Coroutine, Generator
from typing import Any

import anyio
import pytest

from asignals import AsyncSignal

eager_only = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="eager tasks exist from Python 3.12 on"
)

tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")


class Log:
    """Receivers that record what ran; kept alive by the test (signals hold them weakly)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.tasks: list[asyncio.Task[Any] | None] = []

    def instant(self, name: str) -> Any:
        async def instant(**kwargs: Any) -> str:
            self.calls.append(name)
            self.tasks.append(asyncio.current_task())
            return name

        return instant

    def waits(self, name: str) -> Any:
        async def waits(**kwargs: Any) -> str:
            self.calls.append(name)
            self.tasks.append(asyncio.current_task())
            try:
                await asyncio.sleep(0)
                self.calls.append(f"{name} after checkpoint")
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.calls.append(f"{name} cancelled")
                raise
            return name

        return waits

    def suspends_once(self, name: str) -> Any:
        async def suspends_once(**kwargs: Any) -> str:
            self.calls.append(name)
            self.tasks.append(asyncio.current_task())
            await asyncio.sleep(0)
            self.calls.append(f"{name} after checkpoint")
            return name

        return suspends_once

    def raises(self, name: str, error: type[BaseException]) -> Any:
        async def raises(**kwargs: Any) -> None:
            self.calls.append(name)
            self.tasks.append(asyncio.current_task())
            raise error(name)

        return raises


# Async tests are marked asyncio: they run on asyncio and on uvloop (conftest.py).


def connect_all(sig: AsyncSignal, *receivers: Any) -> None:
    for receiver in receivers:
        sig.connect(receiver)


# -- eager start on 3.12+ --------------------------------------------------------------------


@pytest.mark.asyncio
@eager_only
async def test_receivers_that_return_at_once_do_not_wait_for_the_loop() -> None:
    """The point of eager start: no turn of the event loop, no waiter."""
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.instant("a"), log.instant("b"), log.instant("c")]
    connect_all(sig, *receivers)
    turned: list[str] = []
    asyncio.get_running_loop().call_soon(turned.append, "loop turned")
    responses = await sig.gather()
    assert turned == []
    assert responses == [(receivers[0], "a"), (receivers[1], "b"), (receivers[2], "c")]


@pytest.mark.asyncio
@eager_only
async def test_receivers_run_up_to_their_first_suspension_in_order() -> None:
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.waits("a"), log.instant("b"), log.waits("c")]
    connect_all(sig, *receivers)
    gather = asyncio.ensure_future(sig.gather())
    await asyncio.sleep(0)  # the gather task runs once: every child starts eagerly in it
    assert log.calls == ["a", "b", "c"]
    gather.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gather
    assert log.calls[:3] == ["a", "b", "c"]
    assert {"a cancelled", "c cancelled"} <= set(log.calls)


# -- the same promises, eager or not ---------------------------------------------------------


@pytest.mark.asyncio
async def test_each_receiver_runs_in_a_task_and_context_of_its_own() -> None:
    sig, seen = AsyncSignal("s"), []

    def make(name: str) -> Any:
        async def receiver(**kwargs: Any) -> str:
            before = tag.get()
            tag.set(name)
            seen.append(asyncio.current_task())
            if name == "suspends":
                await asyncio.sleep(0)
            return f"{before} -> {tag.get()}"

        return receiver

    receivers = [make("one"), make("suspends"), make("two")]
    connect_all(sig, *receivers)
    tag.set("caller")
    responses = await sig.gather()
    # Each sees the caller's value in a copy of its own; no receiver's value leaks out.
    assert [response for _, response in responses] == [
        "caller -> one",
        "caller -> suspends",
        "caller -> two",
    ]
    assert tag.get() == "caller"
    caller = asyncio.current_task()
    assert len({id(task) for task in seen}) == 3
    assert all(task is not None and task is not caller and task.done() for task in seen)


@pytest.mark.asyncio
async def test_failure_at_once_cancels_the_started_and_skips_the_rest() -> None:
    """With eager start the failure happens while gather is still creating children."""
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.waits("first"), log.raises("fails", ValueError), log.waits("later")]
    connect_all(sig, *receivers)
    with pytest.raises(ExceptionGroup) as info:
        await sig.gather()
    assert [str(e) for e in info.value.exceptions] == ["fails"]
    assert log.calls == ["first", "fails", "first cancelled"]  # "later" ran nothing
    assert all(task is not None and task.done() for task in log.tasks)


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
async def test_interrupt_at_once_reaches_the_caller(error: type[BaseException]) -> None:
    """Not out of the Task constructor or the event loop: to the caller, as from send()."""
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.waits("first"), log.raises("interrupts", error), log.instant("later")]
    connect_all(sig, *receivers)
    caught: BaseException | None = None
    try:
        await sig.gather()
    except BaseException as exc:  # the caller's own except sees it
        caught = exc
    assert isinstance(caught, BaseExceptionGroup)
    assert [type(e) for e in caught.exceptions] == [error]
    assert log.calls == ["first", "interrupts", "first cancelled"]
    # The caller's task and the loop are fine: the next gather runs normally.
    ok = log.instant("ok")
    sig2 = AsyncSignal("s2")
    sig2.connect(ok)
    assert await sig2.gather() == [(ok, "ok")]


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", [1, 2])
async def test_interrupt_at_once_in_a_limited_gather_reaches_the_caller(limit: int) -> None:
    sig, log = AsyncSignal("s", max_concurrency=limit), Log()
    receivers = [log.raises("interrupts", KeyboardInterrupt), log.instant("b"), log.instant("c")]
    connect_all(sig, *receivers)
    with pytest.raises(BaseExceptionGroup) as info:
        await sig.gather()
    assert [type(e) for e in info.value.exceptions] == [KeyboardInterrupt]
    # The worker that ran it stops; a second worker (started eagerly after the failure, or
    # lazily after it) sees that gather is stopping and takes no part either.
    assert log.calls == ["interrupts"]


@pytest.mark.asyncio
async def test_the_first_failure_at_once_stops_the_children_after_it() -> None:
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.raises("one", ValueError), log.raises("two", KeyError)]
    connect_all(sig, *receivers)
    with pytest.raises(ExceptionGroup) as info:
        await sig.gather()
    # The first failure stops the gather: the second receiver runs nothing.
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert log.calls == ["one"]


@pytest.mark.asyncio
async def test_robust_failure_at_once_is_a_response_and_the_rest_run() -> None:
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.suspends_once("first"), log.raises("fails", ValueError), log.instant("later")]
    connect_all(sig, *receivers)
    responses = await sig.gather_robust()
    assert log.calls == ["first", "fails", "later", "first after checkpoint"]
    assert [r for r, _ in responses] == receivers
    assert isinstance(responses[1][1], ValueError)


@pytest.mark.asyncio
async def test_results_stay_in_plan_order_whenever_each_finished() -> None:
    """Finished at once, after one suspension, after two: responses in plan order."""
    sig, log = AsyncSignal("s"), Log()

    async def suspends_twice(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "twice"

    receivers = [suspends_twice, log.suspends_once("once"), log.instant("at once")]
    connect_all(sig, *receivers)
    responses = await sig.gather()
    assert responses == [(receivers[0], "twice"), (receivers[1], "once"), (receivers[2], "at once")]


@pytest.mark.asyncio
async def test_pending_native_cancel_runs_nothing_past_the_first_checkpoint() -> None:
    """A Task.cancel() not delivered yet when gather starts: as with an anyio scope that
    is cancelled already (test_gather_cancellation.py), no child goes past its first
    checkpoint (an eager child would: its next step is scheduled before the cancel)."""
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.waits("a"), log.waits("b")]
    connect_all(sig, *receivers)
    caller = asyncio.current_task()
    assert caller is not None
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sig.gather()
    caller.uncancel()
    assert not [call for call in log.calls if call.endswith("after checkpoint")]
    assert all(task is not None and task.done() for task in log.tasks)


@pytest.mark.asyncio
@pytest.mark.parametrize("shielded", [False, True])
async def test_cancelled_anyio_scope_around_the_caller(shielded: bool) -> None:
    """Cancelled already: nothing past the first checkpoint. Behind a shield: runs normally."""
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.suspends_once("a"), log.instant("b")]
    connect_all(sig, *receivers)
    responses: list[Any] = []
    with anyio.CancelScope() as outer:
        outer.cancel()
        with anyio.CancelScope(shield=shielded):
            responses = await sig.gather()
    if shielded:
        assert responses == [(receivers[0], "a"), (receivers[1], "b")]
        assert not outer.cancelled_caught
    else:
        assert outer.cancelled_caught
        assert "a after checkpoint" not in log.calls
        assert responses == []


@pytest.mark.asyncio
async def test_error_in_cleanup_under_an_already_cancelled_scope_is_not_lost() -> None:
    """The children stopped before gather waits (eager) fail in their cleanup: raised."""
    sig = AsyncSignal("s")

    async def fails_in_cleanup(**kwargs: Any) -> None:
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(30)
        finally:
            raise ValueError("cleanup failed")

    sig.connect(fails_in_cleanup)
    scope = anyio.CancelScope()
    scope.cancel()
    with pytest.raises(ExceptionGroup) as info, scope:
        await sig.gather()
    # As a trio nursery reports it: the error, without the cancellation it ended.
    assert [str(e) for e in info.value.exceptions] == ["cleanup failed"]


@pytest.mark.asyncio
async def test_a_task_factory_makes_the_children() -> None:
    """A task factory is the user's say in how tasks are made: gather does not bypass it."""
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.instant("a"), log.suspends_once("b")]
    connect_all(sig, *receivers)
    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []

    def factory(
        loop: asyncio.AbstractEventLoop,
        coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    loop.set_task_factory(factory)
    try:
        assert await sig.gather() == [(receivers[0], "a"), (receivers[1], "b")]
    finally:
        loop.set_task_factory(None)
    assert len(log.tasks) == 2
    assert all(task in made for task in log.tasks)


# -- when gather builds eager tasks itself ---------------------------------------------------


class CountingLoop(asyncio.SelectorEventLoop):
    """A loop with a create_task of its own, which gather must call."""

    created = 0

    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        CountingLoop.created += 1
        return super().create_task(coro, **kwargs)


async def gathered(sig: AsyncSignal) -> Any:
    return await sig.gather()  # (the coroutine is made on the loop: see send_sync)


def test_a_loop_with_its_own_create_task_makes_the_children() -> None:
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.instant("a"), log.instant("b")]
    connect_all(sig, *receivers)
    CountingLoop.created = 0
    with asyncio.Runner(loop_factory=CountingLoop) as runner:
        assert runner.run(gathered(sig)) == [(receivers[0], "a"), (receivers[1], "b")]
        assert CountingLoop.created == 3  # the runner's task for the gather, and 2 children


def test_create_task_replaced_on_the_loop_object_makes_the_children() -> None:
    """Instrumentation that wraps ``loop.create_task`` on the instance (after gathers ran
    already) sees every child task, as on Python 3.11."""
    sig, log = AsyncSignal("s"), Log()
    receivers = [log.instant("a"), log.instant("b")]
    connect_all(sig, *receivers)
    created: list[object] = []
    with asyncio.Runner() as runner:
        assert runner.run(gathered(sig)) == [(receivers[0], "a"), (receivers[1], "b")]
        loop = runner.get_loop()
        original = loop.create_task

        def counting(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            created.append(coro)
            return original(coro, **kwargs)

        loop.create_task = counting  # type: ignore[method-assign]
        assert runner.run(gathered(sig)) == [(receivers[0], "a"), (receivers[1], "b")]
    children = [c for c in created if getattr(c, "__qualname__", "") == "asignals.gather"]
    assert len(children) == 2


# -- failures, limits and collected receivers -----------------------------------------------


class Payload:
    """A payload item that can be weakly referenced, to see when it is freed."""


@pytest.mark.asyncio
async def test_a_receiver_collected_while_the_gather_runs_is_skipped() -> None:
    sig = AsyncSignal("s")
    later: list[Any] = []

    async def first(**kwargs: Any) -> str:
        later.clear()  # the last strong reference to `second`: its task finds it dead
        await asyncio.sleep(0)
        return "first"

    async def second(**kwargs: Any) -> str:  # pragma: no cover - collected before its turn
        return "second"

    later.append(second)
    sig.connect(first)
    sig.connect(second)
    del second
    # Tasks start in connection order on asyncio: `first` runs before `second`'s task looks.
    assert await sig.gather(None) == [(first, "first")]


@pytest.mark.parametrize("at_once", [True, False], ids=["at-once", "after-a-checkpoint"])
@pytest.mark.asyncio
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


@pytest.mark.parametrize("at_once", [True, False], ids=["at-once", "after-a-checkpoint"])
@pytest.mark.parametrize("robust", [False, True], ids=["gather", "gather_robust"])
@pytest.mark.asyncio
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


@pytest.mark.asyncio
async def test_limited_gather_runs_its_receivers_in_as_many_tasks_as_the_limit() -> None:
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


@pytest.mark.asyncio
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
    assert ran == ["fails"]  # the receiver after the failure never ran


@pytest.mark.asyncio
async def test_a_disconnected_sync_receiver_is_freed_without_the_collector_after_a_gather() -> None:
    # Gathering sync receivers must leave no reference cycle behind: a disconnected strong
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
    assert [response for _, response in await signal.gather(None)] == [held, 1]
    gc.collect()
    gc.disable()
    try:
        signal.disconnect(holding)
        del holding, held
        assert alive() is None
    finally:
        gc.enable()
