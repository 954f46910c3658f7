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
import contextlib
import dis
import inspect
import keyword
import linecache
import logging
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from itertools import chain
from types import CodeType
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import anyio

from ._receivers import ASYNC, SYNC, Entry, Receiver, describe
from ._task_state import cancel_pending, in_shielded_scope

if TYPE_CHECKING:
    from ._signal import AsyncSignal

logger = logging.getLogger("asignals")

Plan = tuple[Entry, ...]
Responses = list[tuple[Receiver, Any]]
Loop = Callable[[Any, Iterable[Entry], bool, Any, dict[str, Any]], Coroutine[Any, Any, Responses]]
"""``loop(signal, plan, robust, sender, payload)``: the compiled dispatch loop. The plan may
be an iterator: what is left of it tells how far a loop got that was cut short."""
ChildLoop = Callable[
    [Any, Iterable[Entry], bool, Any, dict[str, Any], "_Children", int], Coroutine[Any, Any, None]
]
"""``child(signal, part, robust, sender, payload, children, index)``: the same loop as the
body of one child task of a gather on asyncio, reporting to *children* (`CHILD_SOURCE`)."""


def log_failure(signal: AsyncSignal, receiver: Receiver, exc: Exception) -> Exception:
    """Log a receiver's exception that a robust send returns instead of raising; return it.

    Logging never breaks delivery: a failure of the logging itself (a filter or handler
    that raises) is dropped.
    """
    with contextlib.suppress(Exception):  # a failing filter or handler: nobody to tell
        logger.error(
            "Receiver %s of signal %r raised %s",
            describe(receiver),
            signal.label,
            type(exc).__name__,
            exc_info=exc,
        )
    return exc


class InlinePlan(tuple[Entry, ...]):
    """A plan whose receivers are all inline sync receivers (:data:`SYNC`)."""

    __slots__ = ()


class AwaitPlan(tuple[Entry, ...]):
    """A plan whose receivers are all plain coroutine receivers (:data:`ASYNC`).

    It keeps its parts for gather (`_parts`, one per receiver) once computed: a plan never
    changes (connecting publishes a new one), and splitting a plan of 100 receivers again
    on every gather cost a twentieth of the gather. (Hence no ``__slots__``.)
    """

    parts: list[Plan] | None = None


def plan_of(entries: tuple[Entry, ...]) -> Plan:
    """*entries* as a plan whose class tells the loop what it holds (see `LOOP_SOURCE`)."""
    if not entries:
        return ()
    first = entries[0][1]
    if first is SYNC or first is ASYNC:
        for _, call in entries:
            if call is not first:
                return entries
        return InlinePlan(entries) if first is SYNC else AwaitPlan(entries)
    return entries


def extend(plan: Plan, entry: Entry) -> Plan:
    """*plan* with *entry* appended, its class kept when *entry* is of the same kind."""
    entries = (*plan, entry)
    kind = type(plan)
    if kind is InlinePlan:
        return InlinePlan(entries) if entry[1] is SYNC else entries
    if kind is AwaitPlan:
        return AwaitPlan(entries) if entry[1] is ASYNC else entries
    return plan_of(entries) if len(entries) == 1 else entries


LOOP_BODY = """\
{unpack}
responses = []
for ref, call in plan:
    receiver = ref()
    if receiver is None:  # garbage-collected since the plan was built
        continue
    try:
        {call}
    except Exception as exc:
        if not robust:
            raise
        responses.append((receiver, log_failure(signal, receiver, exc)))
        continue
    responses.append((receiver, response))
"""
"""The dispatch loop, one template: it leaves the plan's (receiver, response) pairs in
``responses``. ``{unpack}`` binds the payload's items to locals (and, in a
`guessed_loop`, checks that they are the expected ones); ``{call}`` calls one receiver: a
branch on its kind in general, or the one kind an `InlinePlan` or `AwaitPlan` holds,
which saves the branch for every receiver. It is compiled inside one of two functions:
`LOOP_SOURCE` (send, and gather on trio) or `CHILD_SOURCE` (gather on asyncio)."""

LOOP_SOURCE = """\
async def run_in_order(signal, plan, robust, sender, payload):
    \"\"\"Call every live receiver of *plan* in order; collect (receiver, response) pairs.\"\"\"
    {body}
    try:
        return responses
    finally:
        # The traceback of a returned exception holds this frame: without this, the frame
        # would hold the exception (in `responses`), a cycle that keeps the payload alive
        # until the cycle collector runs. (No local but `responses` ever holds one.)
        del responses
"""
"""The loop as a function that returns the responses."""

CHILD_SOURCE = """\
async def run_part(signal, plan, robust, sender, payload, children, part_index):
    \"\"\"One part of a gather, in a task of its own: the loop over *plan*, which reports its
    responses or its failure to *children* (a `_Children`) instead of raising.\"\"\"
    if not children.stopping:  # else cancelled before it started: run nothing
        try:
            {body}
            children.results[part_index] = responses
        except BaseException as exc:  # nothing may escape the task (see _Children.failed)
            children.failed(exc)
    children.pending -= 1
    if not children.pending:
        children.finished()
    # As in run_in_order: the traceback of an exception returned or raised holds this
    # frame, which must then hold neither the exception nor `children` (which holds it).
    children = responses = None
"""
"""The loop as the whole of a gather's child task (`run_concurrently` on asyncio): one
coroutine per part, where a loop awaited by a wrapper that reports would be two, about a
tenth of a gather to receivers that return at once."""

COMPREHENSION_SOURCE = """\
async def run_in_order(signal, plan, robust, sender, payload):
    \"\"\"Call every live receiver of *plan* in order; collect (receiver, response) pairs.\"\"\"
    {unpack}
    return [
        (receiver, {call})
        for ref, _ in plan
        if (receiver := ref()) is not None  # None: garbage-collected since the plan was built
    ]
"""
"""The same loop for `send` over a plan of one kind, on Python 3.12+: the compiler inlines
a comprehension there (PEP 709), and it appends without a method call, a few percent of a
send to many receivers. (On 3.11 a comprehension is a function call of its own, which
costs more than it saves for a few receivers.)"""
_COMPREHENSIONS = sys.version_info >= (3, 12)

_CALL_ANY_KIND = """\
if call is SYNC:
    response = receiver({arguments})
elif call is ASYNC:
    response = await receiver({arguments})
else:  # to_thread and/or timeout
    response = await call(receiver, dict({arguments}))"""


def _fill(template: str, **fields: str) -> str:
    """*template* with its ``{fields}`` filled in, the later lines of a field that spans
    several indented as deep as the line of its placeholder (so that the templates above
    nest into each other)."""
    lines = []
    for line in template.splitlines(keepends=True):
        indent = "\n" + line[: len(line) - len(line.lstrip())]
        filled = {name: text.rstrip("\n").replace("\n", indent) for name, text in fields.items()}
        lines.append(line.format_map(filled))
    return "".join(lines)


class _Kind(NamedTuple):
    """How the loop for plans of one class calls a receiver."""

    call: str  # the statement that calls one receiver, in LOOP_SOURCE
    expression: str | None  # the same as an expression, in COMPREHENSION_SOURCE


_KINDS: dict[type, _Kind] = {
    tuple: _Kind(_CALL_ANY_KIND, None),
    # Every call of an InlinePlan is SYNC, every call of an AwaitPlan ASYNC. (Said here, not
    # in the generated lines: a traceback through the loop shows the line of the call.)
    InlinePlan: _Kind("response = receiver({arguments})", "receiver({arguments})"),
    AwaitPlan: _Kind("response = await receiver({arguments})", "await receiver({arguments})"),
}


def _names_in(source: str) -> frozenset[str]:
    """Every name a payload item would shadow in the loop's code: its locals, and the
    globals and builtins it reads (not attribute names), read off its bytecode."""
    module = compile(source, "<asignals dispatch loop>", "exec")
    (function,) = (const for const in module.co_consts if isinstance(const, CodeType))
    read = {op.argval for op in dis.get_instructions(function) if op.opname == "LOAD_GLOBAL"}
    return frozenset(function.co_varnames) | read


_MAX_SHAPES = 256  # beyond this many payload shapes, new ones share the ** loop
# Beyond this many payload names, the ** loop: names may come from user input
# (`send(self, **form)`), and CPython's compiler takes time quadratic in the number of
# keywords of one call (10,000 names: seconds, blocking the event loop). Keyword passing
# beats ** for a handful of names; a payload of 32 is already rare.
_MAX_NAMES = 32
_ORDER_NAMES = tuple(f"_key{index}" for index in range(_MAX_NAMES))

# A payload item named like one of these (`plan`, `Exception`, ...) would shadow it inside
# a loop compiled with literal keywords, so such payloads take the ** loop. `__debug__`
# cannot be assigned at all.
_ANY_BODY = _fill(
    LOOP_BODY,
    unpack="refit, KeyError",
    call=_CALL_ANY_KIND.format(arguments="signal=signal, sender=sender"),
)
_LOOP_NAMES = (
    _names_in(_fill(LOOP_SOURCE, body=_ANY_BODY))
    | _names_in(_fill(CHILD_SOURCE, body=_ANY_BODY))
    | _names_in(_fill(COMPREHENSION_SOURCE, unpack="", call="receiver()"))
    | set(_ORDER_NAMES)
    | {"__debug__"}
)
loops: dict[tuple[str, ...], Loop] = {}
"""Compiled loops by payload names; the send path reads it directly."""
child_loops: dict[tuple[tuple[str, ...], type], ChildLoop] = {}
"""Compiled gather children by payload names and plan kind; gather reads it directly."""
_any_payload_children: dict[type, ChildLoop] = {}
_guessed: dict[tuple[tuple[str, ...], type, bool], Loop] = {}


def _unpack(names: tuple[str, ...], guessed: bool) -> str:
    """The loop's first lines: the payload's items as locals.

    A guessed loop was chosen by the payload's length alone (`guessed_loop`), so it checks
    the names too: one name by looking it up, two or more by reading them off the dict in
    order (receivers get the items in the order the send gave them). A mismatch hands the
    send to the right loop.
    """
    unpack = "; ".join(f"{name} = payload[{name!r}]" for name in names)
    if not guessed or not names:  # an empty payload: its length says it all
        return unpack
    if len(names) == 1:
        return "\n".join(["try:", f"    {unpack}", "except KeyError:", f"    {_REFIT}"])
    order = _ORDER_NAMES[: len(names)]
    mismatch = " or ".join(f"{key} != {name!r}" for key, name in zip(order, names, strict=True))
    return "\n".join([f"{', '.join(order)} = payload", f"if {mismatch}:", f"    {_REFIT}", unpack])


_REFIT = "return await refit(signal, plan, robust, sender, payload)"


def _compile(
    names: tuple[str, ...] | None,
    kind: type = tuple,
    guessed: bool = False,
    robust: bool = True,
    child: bool = False,
) -> Callable[..., Any]:
    """Compile the loop for these payload names (``None``: any names, through ``**``), for
    plans of *kind* (`InlinePlan`, `AwaitPlan`, or ``tuple``: any); with ``robust=False``
    one that may assume that it is never asked to be robust; with ``child=True`` as a
    gather's child (`CHILD_SOURCE`, a `ChildLoop`), else as a `Loop`."""
    if names is None:
        unpack, keywords = "", ", **payload"
    else:
        unpack = _unpack(names, guessed)
        keywords = "".join(f", {name}={name}" for name in names)
    arguments = f"signal=signal, sender=sender{keywords}"
    how = _KINDS[kind]
    if not robust and _COMPREHENSIONS and how.expression is not None:
        call = how.expression.format(arguments=arguments)
        source = _fill(COMPREHENSION_SOURCE, unpack=unpack, call=call)
    else:
        body = _fill(LOOP_BODY, unpack=unpack, call=how.call.format(arguments=arguments))
        source = _fill(CHILD_SOURCE if child else LOOP_SOURCE, body=body)
    name = GATHER_FRAME if child else SEND_FRAME
    filename, first_line = _register(name, source)
    namespace: dict[str, Any] = {
        "SYNC": SYNC,
        "ASYNC": ASYNC,
        "log_failure": log_failure,
        "refit": _refit,
    }
    # Compiled as lines of the one generated file of its name (see _register).
    exec(compile("\n" * (first_line - 1) + source, filename, "exec"), namespace)
    function: Callable[..., Any] = namespace["run_part" if child else "run_in_order"]
    function.__code__ = function.__code__.replace(co_name=name, co_qualname=name)
    function.__name__ = function.__qualname__ = name
    return function


SEND_FRAME = "asignals.send"
GATHER_FRAME = "asignals.gather"
"""What a traceback calls the frames of the compiled loops: ``File "<asignals.send>", line
42, in asignals.send`` (a send, send_sync, and gather on trio), ``asignals.gather`` for a
gather's child task on asyncio. Short and alike, so that a reader skips them as asignals'
own; the line below still shows the call of the receiver. (A send renames the coroutine
after the signal, ``order_paid.send``, so that a forgotten ``await`` names it: the frame
keeps the short name, which lives on the code.)"""

_generated: dict[str, list[str]] = {}
_generated_lock = threading.Lock()


def _register(name: str, source: str) -> tuple[str, int]:
    """Add *source* to the lines of the generated file ``<name>`` that linecache serves, so
    that tracebacks show its lines; return the file name and the line *source* starts at.

    Every loop compiled under one name shares one file: each shape has its own source,
    and linecache keeps one text per file name, so the loops take turns in it, one after
    another (a loop's line numbers run on from the previous one's). Bounded, as the
    compiled loops are. Registered again each time, in case linecache was cleared.
    """
    filename = f"<{name}>"
    with _generated_lock:
        lines = _generated.setdefault(filename, [])
        first_line = len(lines) + 1
        lines.extend(source.splitlines(True))
        size = sum(map(len, lines))
        linecache.cache[filename] = (size, None, lines, filename)
    return filename, first_line


def _spellable(shape: tuple[str, ...]) -> bool:
    """Whether these payload names can be passed as literal keywords by a compiled loop."""
    # ASCII only: the compiler NFKC-normalises identifiers, so "ﬁle" would become "file".
    return len(shape) <= _MAX_NAMES and all(
        name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and name not in _LOOP_NAMES
        for name in shape
    )


def loop_for(shape: tuple[str, ...]) -> Loop:
    """The dispatch loop for a payload with these names (the caller has looked in the
    cache first, which the hot path does inline); compiled on first use."""
    loop = loops.get(shape)
    if loop is None:
        if len(loops) >= _MAX_SHAPES or not _spellable(shape):
            return any_payload_loop
        loop = loops[shape] = _compile(shape)
    return loop


def child_loop_for(shape: tuple[str, ...], kind: type) -> ChildLoop:
    """The loop as a gather's child (`CHILD_SOURCE`) for payloads with these names and
    plans of this *kind*: the parts of a plan of one kind are of that kind too. Compiled
    on first use; bounded as `loop_for` is, beyond which shapes share the ``**`` child."""
    kind = kind if kind in _KINDS else tuple
    child: ChildLoop | None = child_loops.get((shape, kind))
    if child is None:
        if len(child_loops) >= _MAX_SHAPES or not _spellable(shape):
            child = _any_payload_children.get(kind)
            if child is None:
                child = _any_payload_children[kind] = _compile(None, kind, child=True)
            return child
        child = child_loops[shape, kind] = _compile(shape, kind, child=True)
    return child


def guessed_loop(shape: tuple[str, ...], kind: type, robust: bool) -> Loop:
    """A loop for payloads of this *shape* and plans of this *kind* (``type(plan)``) that a
    send may pick by the payload's length alone: it checks the names itself and hands a
    payload that has others to `refit`.

    This is what makes a signal's steady sends cheap: building and hashing the payload's
    names cost a fifth of a one-receiver send, comparing its length nothing.
    """
    kind = kind if kind in _KINDS else tuple
    robust = robust or not (_COMPREHENSIONS and _KINDS[kind].expression is not None)
    loop = _guessed.get((shape, kind, robust))
    if loop is None:
        if len(_guessed) >= 5 * _MAX_SHAPES or not _spellable(shape):
            return any_payload_loop  # takes any payload: no check needed
        loop = _guessed[shape, kind, robust] = _compile(shape, kind, True, robust)
    return loop


async def _refit(
    signal: AsyncSignal, plan: Iterable[Entry], robust: bool, sender: Any, payload: dict[str, Any]
) -> Responses:
    """A guessed loop met a payload with other names than its own: run the right loop, and
    make the signal choose again on its next send."""
    signal._forget_loops()
    shape = tuple(payload)
    return await (loops.get(shape) or loop_for(shape))(signal, plan, robust, sender, payload)


any_payload_loop = _compile(None)
"""The loop compiled with ``**payload``: it takes any payload, and checks nothing."""


async def run_concurrently(
    signal: AsyncSignal,
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
        loop = loops.get(shape) or loop_for(shape)
        outcomes = await _run_in_trio_nursery(
            signal, loop, parts, robust, sender, payload, max_concurrency
        )
    else:
        kind = type(plan)
        child = child_loops.get((shape, kind)) or child_loop_for(shape, kind)
        outcomes = await _run_in_asyncio_tasks(
            event_loop, child, signal, parts, robust, sender, payload, max_concurrency
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
    signal: AsyncSignal,
    loop: Loop,
    parts: list[Plan],
    robust: bool,
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
        coroutines = [loop(signal, part, robust, sender, payload) for part in parts]

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
            results[index] = await loop(signal, parts[index], robust, sender, payload)

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
    signal: AsyncSignal,
    parts: list[Plan],
    robust: bool,
    sender: Any,
    payload: dict[str, Any],
    max_concurrency: int | None,
) -> list[Responses]:
    """The same contract with plain asyncio tasks, cancelled the way anyio cancels.

    A task each, and no anyio task group or cancel scope per task: those cost two to four
    times the whole task (design.md, "Gather"). What a task group would add, `_Children`
    does only once something has to be cancelled: level-style cancellation that respects
    anyio shields. Every child reports its own end, so the normal path is one future,
    one counter and one task per part (cheaper than ``asyncio.wait``), and the task's
    coroutine is the dispatch loop itself (`CHILD_SOURCE`). On Python 3.12+ the tasks
    start eagerly (design.md, "Eager start"): no future at all when every child returned
    before its first suspension.
    """
    children = _Children(event_loop, len(parts))
    tasks = children.tasks
    eager = _EAGER_TASKS and _builds_eager_tasks(event_loop)
    if max_concurrency is not None and max_concurrency < len(parts):
        # Workers share one iterator, so at most `max_concurrency` parts run at once; each
        # part still reports to `children` (a worker never raises), and counts itself out.
        indexes: Iterator[int] = iter(range(len(parts)))

        async def worker() -> None:
            for index in indexes:
                await child(signal, parts[index], robust, sender, payload, children, index)

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
            coroutine = child(signal, part, robust, sender, payload, children, index)
            add(task(coroutine, loop=event_loop, eager_start=True))
    else:
        for index, part in enumerate(parts):
            coroutine = child(signal, part, robust, sender, payload, children, index)
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


class _Children:
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
