"""gather and gather_robust: the receivers of one send, run concurrently.

The plan is split into parts (each coroutine or thread receiver, or a run of inline sync
receivers), and each part runs through the same compiled dispatch loop, in a task of its
own: on trio in a nursery, on asyncio and uvloop as plain tasks that `Children` gives a
task group's rules (docs/design.md, "Gather").
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable, Coroutine, Iterator
from itertools import chain
from typing import Any, cast

import anyio

from ._loops import ChildLoop, Loop, child_for, loop_for
from ._plans import AwaitPlan, InlinePlan, Plan, Responses
from ._receivers import SYNC
from ._task_state import cancel_pending, in_shielded_scope


async def run_concurrently(
    signal: Any,
    shape: tuple[str, ...],
    plan: Plan,
    sender: Any,
    payload: dict[str, Any],
    robust: bool,
    max_concurrency: int | None,
) -> Responses:
    """Run the receivers of a non-empty *plan* concurrently, for a payload with the names
    *shape*; responses in plan order.

    Structured: nothing is left running when this returns or raises. Without *robust*, the
    first failure cancels the others and raises an ``ExceptionGroup``.
    """
    parts = _parts(plan)
    try:
        event_loop = asyncio.get_running_loop()
    except RuntimeError:  # anyio's other backend: trio
        loop = loop_for(shape, type(plan), robust)
        outcomes = await _run_in_trio_nursery(signal, loop, parts, sender, payload, max_concurrency)
    else:
        child = child_for(shape, type(plan), robust)
        outcomes = await _run_in_asyncio_tasks(
            event_loop, child, signal, parts, sender, payload, max_concurrency
        )
    # One part (one receiver, or a run of sync ones): its list, fresh per gather, as it is.
    flat = outcomes[0] if len(outcomes) == 1 else [*chain.from_iterable(outcomes)]
    # A receiver's frame reaches the task that ran it (frames link to their callers), and
    # that task's frame reaches `outcomes`: emptied, so that an exception returned in the
    # responses is not in a reference cycle that keeps the payload alive. A child that ran
    # eagerly, inside the Task constructor, links to a frame of this gather: `flat` is
    # dropped from this one on the way out for the same reason (as the loop drops its
    # `responses`).
    outcomes.clear()
    try:
        return flat
    finally:
        del flat


def _parts(plan: Plan) -> list[Plan]:
    """Split *plan* into the units that run concurrently, in order.

    Each coroutine (or thread) receiver is a unit of its own. Consecutive inline sync
    receivers cannot overlap anything, so they form one unit: one task for the run instead
    of one each, and a run of sync receivers keeps its order. (Tasks start in connection
    order on asyncio; trio deliberately varies the start order of sibling tasks.)
    """
    if type(plan) is InlinePlan:  # sync receivers only: one part (not kept on the plan,
        return [plan]  # which would then hold itself, a cycle only the collector frees)
    if type(plan) is AwaitPlan:  # a part per coroutine receiver
        parts = plan.parts
        if parts is None:
            parts = plan.parts = [(entry,) for entry in plan]
        return parts
    parts = []
    start = 0
    for index, (_, call) in enumerate(plan):
        if call is not SYNC or index + 1 == len(plan) or plan[index + 1][1] is not SYNC:
            parts.append(plan[start : index + 1])
            start = index + 1
    return parts


async def _run_in_trio_nursery(
    signal: Any,
    loop: Loop,
    parts: list[Plan],
    sender: Any,
    payload: dict[str, Any],
    max_concurrency: int | None,
) -> list[Responses]:
    """The contract, from a trio nursery, which keeps it by itself; results in order.

    Straight from trio rather than through anyio: an anyio task group adds a task handle,
    a cancel scope and an event per task, which made gather 2.6 times a bare nursery.
    """
    import trio  # only reached while trio runs the event loop

    results: list[Responses] = [[] for _ in parts]
    if max_concurrency is None or max_concurrency >= len(parts):
        coroutines = [loop(signal, part, sender, payload) for part in parts]

        async def run(index: int) -> None:
            results[index] = await coroutines[index]

        async with trio.open_nursery() as nursery:
            for index in range(len(coroutines)):
                nursery.start_soon(run, index)
        return results
    # Workers share one iterator, so at most `max_concurrency` parts run at once.
    indexes: Iterator[int] = iter(range(len(parts)))

    async def worker() -> None:
        for index in indexes:
            results[index] = await loop(signal, parts[index], sender, payload)

    async with trio.open_nursery() as nursery:
        for _ in range(max_concurrency):
            nursery.start_soon(worker)
    return results


_GATHER_FAILED = "a receiver failed during gather(); the others were cancelled"
_CANCEL_MESSAGE = "asignals gather() is cancelling its receivers"
_SHIELD_POLL = 0.001  # seconds between looks at receivers that wait in a shielded scope


async def _run_in_asyncio_tasks(
    event_loop: asyncio.AbstractEventLoop,
    child: ChildLoop,
    signal: Any,
    parts: list[Plan],
    sender: Any,
    payload: dict[str, Any],
    max_concurrency: int | None,
) -> list[Responses]:
    """The same contract with plain asyncio tasks, cancelled the way anyio cancels.

    A task each, and no anyio task group or cancel scope per task: those cost two to four
    times the whole task (design.md, "Gather"). What a task group would add, `Children`
    does only once something has to be cancelled: level-style cancellation that respects
    anyio shields. Every child reports its own end, so the normal path is one future,
    one counter and one task per part (cheaper than ``asyncio.wait``), and the task's
    coroutine is the dispatch loop itself (`asignals._loop.run_part`). On Python 3.12+ the tasks
    start eagerly (design.md, "Eager start"): no future at all when every child returned
    before its first suspension.
    """
    children = Children(event_loop, len(parts))
    tasks = children.tasks
    eager = _EAGER_TASKS and _builds_eager_tasks(event_loop)
    if max_concurrency is not None and max_concurrency < len(parts):
        # Workers share one iterator, so at most `max_concurrency` parts run at once; each
        # part still reports to `children` (a worker never raises), and counts itself out.
        indexes: Iterator[int] = iter(range(len(parts)))

        async def worker() -> None:
            for index in indexes:
                await child(signal, parts[index], sender, payload, children, index)

        for _ in range(max_concurrency):
            if eager:
                tasks.append(_Task(worker(), loop=event_loop, eager_start=True))
            else:
                tasks.append(event_loop.create_task(worker()))
    elif eager:
        # Each child runs at once, inside the Task constructor, up to its first suspension:
        # a receiver that returns at once never waits for a turn of the loop, and when all
        # of them did, no waiter is needed. A child that fails or is interrupted there
        # stops the gather like any other, and the children created after it run nothing.
        task, add = _Task, tasks.append
        for index, part in enumerate(parts):
            coroutine = child(signal, part, sender, payload, children, index)
            add(task(coroutine, loop=event_loop, eager_start=True))
    else:
        for index, part in enumerate(parts):
            coroutine = child(signal, part, sender, payload, children, index)
            tasks.append(event_loop.create_task(coroutine))
    caller_cancelled: BaseException | None = None
    if children.pending:
        if eager and cancel_pending(asyncio.current_task(event_loop)):
            # The caller was cancelled before the children started (an anyio scope around
            # it, or a Task.cancel() not delivered yet): its cancellation arrives after the
            # children's next steps, which eager start has scheduled already. Stopped now,
            # they stop at their first checkpoint, as lazy children (and trio's) do.
            children.stop()
        children.waiter = event_loop.create_future()
        try:
            await children.waiter
        except BaseException as exc:  # the caller is cancelled (or interrupted)
            caller_cancelled = exc
            children.stop()
            await children.wait_for_all()
    errors, children.errors = children.errors, []  # the children's frames hold `children`
    try:
        if caller_cancelled is not None:
            failures = [e for e in errors if not isinstance(e, asyncio.CancelledError)]
            if failures:  # raised while being cancelled: not lost, and neither is the cancel
                raise BaseExceptionGroup(_GATHER_FAILED, [*failures, caller_cancelled])
            raise caller_cancelled
        if errors:
            raise BaseExceptionGroup(_GATHER_FAILED, errors)
    finally:
        del caller_cancelled, errors  # no cycle through this frame's traceback
    return children.results


_EAGER_TASKS = sys.version_info >= (3, 12)
_Task: Callable[..., asyncio.Task[Any]] = asyncio.Task  # typed so: 3.11 has no eager_start


# Eager tasks exist from Python 3.12 on. Neither `loop.create_task()` nor a TaskGroup's
# accepts `eager_start` there (3.12, 3.13.0), so eager children are built as
# `asyncio.Task(..., loop=..., eager_start=True)`: what asyncio's and uvloop's own
# `create_task()` do, minus the eagerness, when no task factory is set.
def _builds_eager_tasks(event_loop: asyncio.AbstractEventLoop) -> bool:
    """Whether gather may build its children's tasks itself instead of ``create_task()``.

    Only on a loop whose ``create_task`` is asyncio's or uvloop's own (not replaced on the
    loop object or its class, by instrumentation for instance), and without a task
    factory: both are the user's say in how tasks are made, so ``create_task()`` is then
    called, as on Python 3.11 (and an eager task factory makes the children eager anyway).
    Asked on every gather, so that a replacement made later is seen.
    """
    if event_loop.get_task_factory() is not None:
        return False
    if "create_task" in getattr(event_loop, "__dict__", ()):
        return False
    create_task = getattr(type(event_loop), "create_task", None)
    if create_task is asyncio.BaseEventLoop.create_task:
        return True
    uvloop = sys.modules.get("uvloop")
    return uvloop is not None and create_task is uvloop.Loop.create_task


class Children:
    """The tasks of one asyncio gather: how many are still running, their results and
    failures, and (once stopping) the cancellation that anyio would deliver to them."""

    __slots__ = ("errors", "event_loop", "pending", "results", "stopping", "tasks", "waiter")

    def __init__(self, event_loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.event_loop = event_loop
        self.tasks: list[asyncio.Task[None]] = []
        self.pending = count
        # One shared empty list: a slot is only ever replaced (by its child), never appended to.
        self.results: list[Responses] = [[]] * count
        self.errors: list[BaseException] = []
        self.stopping = False
        self.waiter: asyncio.Future[None] | None = None

    def failed(self, exc: BaseException) -> None:
        """A child's part raised *exc*: keep it for the caller, and stop the gather.

        Nothing escapes a child task: asyncio re-raises a task's KeyboardInterrupt or
        SystemExit out of ``run_until_complete``, and out of the Task constructor for a
        task started eagerly. A child's own cancellation, once stopping, is no failure.
        """
        if not (isinstance(exc, asyncio.CancelledError) and self.stopping):
            self.errors.append(exc)
            self.stop()

    def finished(self) -> None:
        """The last child has counted itself out: wake the caller if it waits."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def stop(self) -> None:
        """Cancel every child until it has finished (a child not started yet never starts)."""
        if not self.stopping:
            self.stopping = True
            self._deliver()

    def _deliver(self) -> None:
        """Cancel each running child once more; again on the next turn of the loop.

        Level-style, as anyio's cancel scopes cancel: a receiver that catches the
        cancellation and awaits again (cleanup in ``finally``) is cancelled again. A child
        inside a shielded anyio scope is left alone, as anyio leaves it: that is how a
        ``to_thread`` receiver without a timeout is waited for, never abandoned.
        """
        if not self.pending:
            return
        again = shielded = False
        current = asyncio.current_task()
        for task in self.tasks:
            if task.done() or task is current or not _started(task):
                continue  # a child that has not started sees `stopping` when it does
            if in_shielded_scope(task):
                shielded = True
            else:
                task.cancel(_CANCEL_MESSAGE)
                again = True
        if again:
            self.event_loop.call_soon(self._deliver)
        elif shielded:  # nothing to cancel until a shield ends: look again shortly, not busily
            self.event_loop.call_later(_SHIELD_POLL, self._deliver)

    async def wait_for_all(self) -> None:
        """Wait until every child has finished, whatever cancels the caller meanwhile.

        Shielded from anyio, which would otherwise cancel this task again on every turn of
        the loop; a native ``Task.cancel()`` is absorbed here too: the children are being
        cancelled already, and nothing is left running behind the caller's back.
        """
        with anyio.CancelScope(shield=True):
            while self.pending:
                self.waiter = self.event_loop.create_future()
                try:
                    await self.waiter
                except asyncio.CancelledError:
                    continue


def _started(task: asyncio.Task[Any]) -> bool:
    coroutine = cast(Coroutine[Any, Any, None], task.get_coro())  # a child or a worker
    return inspect.getcoroutinestate(coroutine) != inspect.CORO_CREATED
