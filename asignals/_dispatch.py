"""The dispatch loop: how a send calls its receivers.

There is one loop, ``LOOP_SOURCE``. ``send`` and ``send_robust`` run it over the whole
plan; ``gather`` and ``gather_robust`` run it over parts of the plan (each coroutine
receiver, or a run of sync receivers) in concurrent tasks (``run_concurrently``). Error
handling therefore lives in one place: ``robust`` turns an ``Exception`` into that
receiver's response; anything else (cancellation included) always propagates.

Why the loop is compiled per payload shape: calling ``receiver(**kwargs)`` makes CPython
unpack the dict into a fresh argument array on every call, which costs as much as the
call itself. A loop compiled for the payload names ``order`` and ``user`` instead passes
``order=order, user=user`` as literal keywords, like hand-written code does. Each shape is
compiled once and cached; payloads whose names cannot be spelled as literal keywords use
the same loop compiled with ``**payload``.
"""

from __future__ import annotations

import asyncio
import keyword
import linecache
import logging
from collections.abc import Callable, Coroutine, Iterator
from types import CodeType
from typing import TYPE_CHECKING, Any

from ._receivers import ASYNC, SYNC, Entry, Receiver, describe

if TYPE_CHECKING:
    from ._signal import AsyncSignal

logger = logging.getLogger("asignals")

Plan = tuple[Entry, ...]
Responses = list[tuple[Receiver, Any]]
Loop = Callable[[Any, Plan, bool, Any, dict[str, Any]], Coroutine[Any, Any, Responses]]
"""``loop(signal, plan, robust, sender, payload)``: the compiled dispatch loop."""


def log_failure(signal: AsyncSignal, receiver: Receiver, exc: Exception) -> None:
    """Log a receiver's exception that a robust send returns instead of raising."""
    logger.error(
        "Receiver %s of signal %r raised %s",
        describe(receiver),
        signal.label,
        type(exc).__name__,
        exc_info=exc,
    )


LOOP_SOURCE = '''\
async def run_in_order(signal, plan, robust, sender, payload):
    """Call every live receiver of *plan* in order; collect (receiver, response) pairs."""
    {unpack}
    responses = []
    for ref, call in plan:
        receiver = ref()
        if receiver is None:  # garbage-collected since the plan was built
            continue
        try:
            if call is SYNC:
                response = receiver({arguments})
            elif call is ASYNC:
                response = await receiver({arguments})
            else:  # to_thread and/or timeout
                response = await call(receiver, dict({arguments}))
        except Exception as exc:
            if not robust:
                raise
            log_failure(signal, receiver, exc)
            response = exc
        responses.append((receiver, response))
    return responses
'''


def _names_in(source: str) -> frozenset[str]:
    """Every name the loop's code uses (locals, globals, builtins), read off its bytecode."""
    module = compile(source, "<asignals dispatch loop>", "exec")
    (function,) = (const for const in module.co_consts if isinstance(const, CodeType))
    return frozenset(function.co_varnames + function.co_names)


# A payload item named like one of these (`plan`, `Exception`, ...) would shadow it inside
# a loop compiled with literal keywords, so such payloads take the ** loop.
_LOOP_NAMES = _names_in(LOOP_SOURCE.format(unpack="", arguments="signal=signal, sender=sender"))
_MAX_SHAPES = 256  # beyond this many payload shapes, new ones share the ** loop
loops: dict[tuple[str, ...], Loop] = {}
"""Compiled loops by payload names; the send path reads it directly."""


def _compile(names: tuple[str, ...] | None) -> Loop:
    """Compile the loop for these payload names (``None``: any names, through ``**``)."""
    if names is None:
        unpack, keywords = "", ", **payload"
    else:
        unpack = "; ".join(f"{name} = payload[{name!r}]" for name in names)
        keywords = "".join(f", {name}={name}" for name in names)
    arguments = f"signal=signal, sender=sender{keywords}"
    source = LOOP_SOURCE.format(unpack=unpack, arguments=arguments)
    # A distinct file name per shape, registered with linecache, so that tracebacks through
    # the loop show its source lines.
    filename = f"<asignals dispatch loop ({'**' if names is None else ', '.join(names)})>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"SYNC": SYNC, "ASYNC": ASYNC, "log_failure": log_failure}
    exec(compile(source, filename, "exec"), namespace)
    loop: Loop = namespace["run_in_order"]
    return loop


_any_payload_loop = _compile(None)


def loop_for(shape: tuple[str, ...]) -> Loop:
    """The dispatch loop for a payload with these names (the caller has looked in the
    cache first, which the hot path does inline); compiled on first use."""
    loop = loops.get(shape)
    if loop is None:
        if len(loops) >= _MAX_SHAPES:
            return _any_payload_loop
        # ASCII only: the compiler NFKC-normalises identifiers, so "ﬁle" would become "file".
        spellable = all(
            name.isascii()
            and name.isidentifier()
            and not keyword.iskeyword(name)
            and name not in _LOOP_NAMES
            for name in shape
        )
        loop = loops[shape] = _compile(shape) if spellable else _any_payload_loop
    return loop


async def run_concurrently(
    signal: AsyncSignal,
    loop: Loop,
    plan: Plan,
    sender: Any,
    payload: dict[str, Any],
    robust: bool,
    max_concurrency: int | None,
) -> Responses:
    """Run the receivers of a non-empty *plan* concurrently; responses in plan order.

    Structured: nothing is left running when this returns or raises. Without *robust*, the
    first failure cancels the others and raises an ``ExceptionGroup``.
    """
    parts = _parts(plan)
    if max_concurrency is None or max_concurrency >= len(parts):
        outcomes = await _run_all([loop(signal, part, robust, sender, payload) for part in parts])
    else:
        # Workers share one iterator, so at most `max_concurrency` parts run at once.
        outcomes = [[] for _ in parts]
        indexes: Iterator[int] = iter(range(len(parts)))

        async def worker() -> Responses:
            for index in indexes:
                outcomes[index] = await loop(signal, parts[index], robust, sender, payload)
            return []

        await _run_all([worker() for _ in range(max_concurrency)])
    return [response for responses in outcomes for response in responses]


def _parts(plan: Plan) -> list[Plan]:
    """Split *plan* into the units that run concurrently, in order.

    Each coroutine (or thread) receiver is a unit of its own. Consecutive inline sync
    receivers cannot overlap anything, so they form one unit: one task for the run instead
    of one each, and a run of sync receivers keeps its order. (Tasks start in connection
    order on asyncio; trio deliberately varies the start order of sibling tasks.)
    """
    parts: list[Plan] = []
    start = 0
    for index, (_, call) in enumerate(plan):
        if call is not SYNC or index + 1 == len(plan) or plan[index + 1][1] is not SYNC:
            parts.append(plan[start : index + 1])
            start = index + 1
    return parts


async def _run_all(coroutines: list[Coroutine[Any, Any, Responses]]) -> list[Responses]:
    """Run *coroutines* concurrently, structured; their results in order.

    The first failure cancels the others and raises an ExceptionGroup; cancelling the
    caller cancels them all; nothing is left running when this returns or raises.
    """
    try:
        event_loop = asyncio.get_running_loop()
    except RuntimeError:  # anyio's other backend: trio
        return await _run_all_in_trio_nursery(coroutines)
    return await _run_all_in_asyncio_tasks(event_loop, coroutines)


async def _run_all_in_trio_nursery(
    coroutines: list[Coroutine[Any, Any, Responses]],
) -> list[Responses]:
    """The contract, from a trio nursery.

    Straight from trio rather than through anyio: an anyio task group adds a task handle,
    a cancel scope and an event per task, which made gather 2.6 times a bare nursery.
    """
    import trio  # only reached while trio runs the event loop

    results: list[Responses] = [[] for _ in coroutines]

    async def run(index: int) -> None:
        results[index] = await coroutines[index]

    async with trio.open_nursery() as nursery:
        for index in range(len(coroutines)):
            nursery.start_soon(run, index)
    return results


async def _run_all_in_asyncio_tasks(
    event_loop: asyncio.AbstractEventLoop, coroutines: list[Coroutine[Any, Any, Responses]]
) -> list[Responses]:
    """The same contract with plain asyncio tasks, for speed.

    anyio's task group costs about five times the stdlib's per task, and the stdlib's
    TaskGroup before Python 3.13 leaves the caller's cancellation count raised after a
    child fails (CPython gh-116720), which breaks timeouts around a failed gather. Tasks
    and ``asyncio.wait`` have neither problem.
    """
    tasks = [event_loop.create_task(coroutine) for coroutine in coroutines]
    try:
        _, running = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:  # the caller was cancelled
        await _cancel_and_wait(tasks)
        raise
    if running or any(_failed(task) for task in tasks):
        await _cancel_and_wait(tasks)
        raise BaseExceptionGroup(
            "a receiver failed during gather(); the others were cancelled",
            [error for task in tasks if _failed(task) and (error := task.exception())],
        )
    return [task.result() for task in tasks]


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


async def _cancel_and_wait(tasks: list[asyncio.Task[Responses]]) -> None:
    """Cancel *tasks* and wait until every one has finished, even if cancelled meanwhile."""
    for task in tasks:
        task.cancel()
    cancelled: BaseException | None = None
    while running := [task for task in tasks if not task.done()]:
        try:
            await asyncio.wait(running)
        except BaseException as exc:  # cancelled again: finish waiting, then propagate
            cancelled = exc
    if cancelled is not None:
        raise cancelled
