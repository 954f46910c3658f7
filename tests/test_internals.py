"""White-box tests: internal bounds and bookkeeping that no public API can show.

These pin how asignals is built today — the connection table's published plans, the
loops compiled per payload shape and the caches that bound them, gather's split into
parts, the hook slot the testing helpers use, the private event loop of send_sync — and
are expected to change with a redesign. Everything a user can observe is tested by
behaviour elsewhere (through `receivers_for`, `has_listeners`, the responses of a send,
logging, `gc` and weak references); a test belongs here only when private state is the
one thing that can say what it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref
from typing import Any

import pytest
import uvloop
from helpers import (
    MODES,
    Mode,
    connect_every_kind,
    connect_in_progress,
    sender_of,
    sync_recorder,
)

from asignals import AsyncSignal, _gather, _loops
from asignals._connections import Connections
from asignals._dispatch import prepare
from asignals._plans import AwaitPlan, InlinePlan
from asignals._receivers import SYNC, make_ref
from asignals.testing import capture, connected_to, muted


class Shop:
    pass


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def echo_items(**kwargs: Any) -> list[tuple[str, Any]]:
    return list(kwargs.items())  # in order: the order is part of what is delivered


async def async_echo_items(**kwargs: Any) -> list[tuple[str, Any]]:
    return list(kwargs.items())


def items(sig: AsyncSignal, **payload: Any) -> list[tuple[str, Any]]:
    return [("signal", sig), ("sender", Shop), *payload.items()]


def receiver_named(name: str) -> Any:
    def receive(**kwargs: Any) -> str:
        return name

    receive.__qualname__ = name
    return receive


def connect(table: Connections, receiver: Any, sender: Any = None, uid: Any = None) -> None:
    table._connect(receiver, make_ref(receiver, True, table._on_death), sender, uid, SYNC)


def names(table: Connections, sender: Any = None) -> list[str]:
    return [ref().__qualname__ for ref, _ in table._plan_for(sender)]


# -- the connection table on its own: the plans it publishes after each kind of change --------


def test_plans_follow_connection_order_for_each_sender() -> None:
    table = Connections()
    a, b, c = receiver_named("a"), receiver_named("b"), receiver_named("c")
    shop = Shop()
    connect(table, a)
    connect(table, b, sender=shop)
    connect(table, c)
    connect(table, b, sender="shop.Order")
    assert names(table) == ["a", "c"]
    assert names(table, shop) == ["a", "b", "c"]
    assert names(table, "".join(["shop.", "Order"])) == ["a", "c", "b"]
    assert names(table, Shop()) == ["a", "c"]
    any_plan, own = table._plans
    assert len(any_plan) == 2
    assert len(own) == 2


def test_duplicates_and_disconnects_update_only_their_plans() -> None:
    table = Connections()
    a, b = receiver_named("a"), receiver_named("b")
    connect(table, a)
    connect(table, a)  # a duplicate: nothing changes
    connect(table, b, uid="b-uid")
    connect(table, receiver_named("other"), uid="b-uid")  # same uid: nothing changes
    assert names(table) == ["a", "b"]
    assert table._disconnect(None, None, "b-uid")
    assert not table._disconnect(None, None, "b-uid")
    assert table._disconnect(a, None, None)
    assert table._plans == ((), {})
    assert table._connections == []


def test_a_dead_sender_takes_its_plan_with_it() -> None:
    table = Connections()
    a = receiver_named("a")
    shop = Shop()
    connect(table, a, sender=shop)
    assert len(table._plans[1]) == 1
    del shop
    gc.collect()
    assert table._plans == ((), {})
    assert table._by_ref == {}


def test_a_death_while_the_lock_is_held_is_pruned_by_the_next_change() -> None:
    table = Connections()
    doomed, kept = receiver_named("doomed"), receiver_named("kept")
    connect(table, doomed)
    with table._lock:
        del doomed
        gc.collect()
    assert table._prune_pending
    connect(table, kept)
    assert names(table) == ["kept"]
    assert not table._prune_pending


# -- a signal's connections and plans: nothing left behind -----------------------------------
# test_weak_and_cache.py and test_threads.py check what a user sees in these situations;
# these check that the bookkeeping behind it is gone too.


def test_a_dead_senders_plan_stays_until_the_next_change_while_a_connect_is_in_progress() -> None:
    """What test_reused_id_is_safe_even_before_the_dead_sender_is_pruned relies on."""
    sig = AsyncSignal("s")
    handler = sync_recorder([], "h")
    shop = Shop()
    sig.connect(handler, sender=shop)
    dead_id = id(shop)
    with connect_in_progress(sig):
        del shop
        gc.collect()
    assert dead_id in sig._plans[1]  # the stale plan is really there, under the same id
    other = sync_recorder([], "other")
    sig.connect(other)
    assert dead_id not in sig._plans[1]


def test_deaths_during_a_connect_leave_no_connection_behind_after_the_next_change() -> None:
    """The situations of test_receiver_dying_while_pruning_is_deferred_is_skipped and
    test_deferred_prune_keeps_the_survivors_in_connection_order."""
    sig = AsyncSignal("s")
    handler, keep = sync_recorder([], "h"), sync_recorder([], "keep")
    sig.connect(handler)
    sig.connect(handler, sender=Shop)
    sig.connect(keep)
    with connect_in_progress(sig):
        del handler
        gc.collect()
    other = sync_recorder([], "other")
    sig.connect(other)
    assert len(sig._connections) == 2

    sig = AsyncSignal("s")
    shop, other_shop = Shop(), Shop()
    first, doomed = sync_recorder([], "first"), sync_recorder([], "doomed")
    for_shop, for_other = sync_recorder([], "for_shop"), sync_recorder([], "for_other")
    last = sync_recorder([], "last")
    sig.connect(first)
    sig.connect(doomed, sender=shop)
    sig.connect(for_shop, sender=shop)
    sig.connect(doomed)
    sig.connect(for_other, sender=other_shop)
    with connect_in_progress(sig):
        del doomed
        gc.collect()
    sig.connect(last)  # prunes everything that died meanwhile, then connects
    assert len(sig._connections) == 4


def test_per_object_connections_leave_no_connection_or_plan_behind() -> None:
    """The situation of test_per_object_connections_come_and_go_one_by_one."""
    sig = AsyncSignal("per-object")
    handler = sync_recorder([], "h")
    common = sync_recorder([], "common")
    sig.connect(common)
    jobs = [Shop() for _ in range(200)]
    for job in jobs:
        sig.connect(handler, sender=job)
    for job in jobs[:50]:
        assert sig.disconnect(handler, sender=job)
    del jobs[50:100]
    gc.collect()
    assert len(sig._connections) == 1 + 100  # common, and the 100 jobs still alive
    assert len(sig._plans[1]) == 100  # no plan left behind for a dead or finished job


def test_receivers_dying_in_another_thread_leave_no_connection_behind() -> None:
    """The situation of test_receivers_dying_in_another_thread_are_pruned."""
    sig = AsyncSignal("s")
    holder = [sync_recorder([], str(i)) for i in range(50)]
    for func in holder:
        sig.connect(func)
    del func

    def drop() -> None:
        holder.clear()
        gc.collect()

    thread = threading.Thread(target=drop)
    thread.start()
    thread.join(10)
    assert sig._connections == []


# -- the hook slot the testing helpers use ----------------------------------------------------


def hooked(signal: AsyncSignal) -> bool:
    """Whether something is installed in the signal's hook slot (checked on every send)."""
    return signal._hook is not None


def test_the_testing_helpers_take_their_hook_off_when_the_last_block_exits() -> None:
    """test_testing_helpers.py checks what the helpers do (the situations below are its
    tests'); this, that a signal is left with no hook to check on every send."""

    def handler(**kwargs: Any) -> None: ...

    sig = AsyncSignal("s")
    sig.connect(handler)
    with pytest.raises(TypeError, match="AsyncSignal"), muted(sig, "nope"):  # type: ignore[arg-type]
        pass
    assert not hooked(sig)  # a muted() with a bad signal
    with muted(sig):
        with muted(sig):
            pass
        with muted(sig, sig):
            pass
    assert not hooked(sig)  # nested muted()
    mute, recording = muted(sig), capture(sig)
    mute.__enter__()
    recording.__enter__()
    mute.__exit__(None, None, None)  # leave the muted block first: not nested
    assert hooked(sig)  # the capture is still recording
    recording.__exit__(None, None, None)
    assert not hooked(sig)  # overlapping muted() and capture()
    with connected_to(handler, sig), capture(sig), muted(sig):
        pass
    assert not hooked(sig)  # every helper together


# -- send_sync's event loop, kept per thread ---------------------------------------------------


def test_the_kept_loop_is_closed_at_exit_or_with_its_thread() -> None:
    """test_send_sync.py checks that the loop goes with its thread; only this can reach the
    function registered with atexit."""
    from asignals._sync import _close_at_exit, _private_loop, _threads

    kept_in_thread: list[Any] = []

    def work() -> None:
        kept = _private_loop()
        assert _private_loop() is kept
        kept_in_thread.append((weakref.ref(kept), kept._loop))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    [(ref, loop)] = kept_in_thread
    gc.collect()
    assert ref() is None  # went with its thread
    assert loop.is_closed()

    kept = _private_loop()  # this thread's
    _close_at_exit(weakref.ref(kept))
    assert kept._loop.is_closed()
    kept.close()  # twice is fine
    del _threads.loop
    _close_at_exit(ref)  # a loop that is gone already: nothing to do


# -- the loops compiled per payload shape, and the caches that bound them --------------------


def _compiled(shape: tuple[str, ...]) -> bool:
    """Whether a loop was compiled for these payload names (by any send mode)."""
    return any(key[0] == shape for key in _loops._cache)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_ten_thousand_payload_names_compile_no_loop(mode: Mode) -> None:
    """(test_send_payloads.py checks that they are delivered.)"""
    sig = AsyncSignal("form")
    sig.connect(echo)
    form = {f"field_{index}": index for index in range(10_000)}
    await sender_of(sig, mode)(None, **form)
    shape = tuple(form)
    assert not _compiled(shape)  # nothing compiled (seconds, before the first await)
    assert _loops.takes_any_payload(_loops.loop_for(shape))


@pytest.mark.anyio
async def test_payload_names_up_to_the_cap_are_compiled() -> None:
    sig = AsyncSignal("wide")
    sig.connect(echo)
    at_cap = {f"cap_{index}": index for index in range(_loops.MAX_NAMES)}
    over = {**at_cap, "one_more": 0}
    assert (await sig.send(None, **at_cap))[0][1] == {"signal": sig, "sender": None, **at_cap}
    assert (await sig.send(None, **over))[0][1] == {"signal": sig, "sender": None, **over}
    assert _compiled(tuple(at_cap))
    assert not _compiled(tuple(over))


@pytest.mark.anyio
async def test_the_loop_cache_is_bounded_and_compiles_each_shape_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tiny cache, empty at first, restored afterwards (test_send_payloads.py sends more
    shapes than the real one holds, in a fresh interpreter)."""
    monkeypatch.setattr(_loops, "_cache", {})
    monkeypatch.setattr(_loops, "MAX_LOOPS", 6)
    sig = AsyncSignal("s")
    seen: list[dict[str, Any]] = []
    keep = connect_every_kind(sig, seen, Shop)
    for index in range(5):
        for mode in MODES:
            await sender_of(sig, mode)(Shop, **{f"name{index}": index})
    assert seen == [{f"name{i}": i} for i in range(5) for _ in range(4 * 4)]
    del keep
    assert len([key for key in _loops._cache if key[0] is not None]) <= 6
    first = _loops.loop_for(("name0",), tuple, robust=True, checked=True)
    assert first is _loops.loop_for(("name0",), tuple, robust=True, checked=True)  # once
    beyond = _loops.child_for(("name4",), tuple, robust=True)  # the ** child, shared
    assert beyond is _loops.child_for(("name5",), tuple, robust=True)
    assert _loops.takes_any_payload(beyond)


def test_spellable_shapes_get_their_own_loop_and_others_share_the_generic_one() -> None:
    spellable = _loops.loop_for(("order", "user"))
    assert spellable is _loops.loop_for(("order", "user"))
    assert spellable is not _loops.loop_for(("user", "order"))
    generic = _loops.loop_for(("class",))
    assert generic is _loops.loop_for(("plan",))
    assert generic is _loops.loop_for(("a b",))
    assert generic is _loops.loop_for(("responses",))  # a local of the template
    assert generic is not spellable
    assert _loops.takes_any_payload(generic)
    assert not _loops.takes_any_payload(spellable)


@pytest.mark.anyio
async def test_loop_cache_overflow_still_delivers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_loops, "_cache", {})
    monkeypatch.setattr(_loops, "MAX_LOOPS", 1)
    sig = AsyncSignal("overflow")
    sig.connect(echo)
    assert await sig.send(None, a=1) == [(echo, {"signal": sig, "sender": None, "a": 1})]
    assert await sig.send(None, b=2) == [(echo, {"signal": sig, "sender": None, "b": 2})]


# -- the template and its compiled copies --------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("robust", [False, True], ids=["send", "send_robust"])
async def test_the_template_behaves_as_its_compiled_copies(robust: bool) -> None:
    """`asignals._loop.run_in_order`, run as written, gives what every compiled copy of it
    gives: the same responses for every kind of receiver, and the same failure."""
    from asignals._loop import run_in_order
    from asignals._plans import kind_of

    sig = AsyncSignal("template")
    seen: list[dict[str, Any]] = []
    keep = connect_every_kind(sig, seen, Shop)
    plan = sig._plans[1][id(Shop)][1]
    payload = {"order": 1, "user": 2}
    expected = await run_in_order(sig, plan, Shop, payload, robust)
    for shape in (tuple(payload), None):
        for checked in (False, True):
            loop = _loops.loop_for(shape, kind_of(plan), robust, checked)
            assert await loop(sig, plan, Shop, payload) == expected
    del keep

    def fails(**kwargs: Any) -> None:
        raise ValueError("no")

    failing = ((make_ref(fails, False, print), SYNC),)
    compiled = _loops.loop_for(tuple(payload), InlinePlan, robust)
    if robust:
        ((_, error),) = await run_in_order(sig, failing, Shop, payload, robust)
        ((_, again),) = await compiled(sig, failing, Shop, payload)
        assert type(error) is type(again) is ValueError
    else:
        with pytest.raises(ValueError, match="no"):
            await run_in_order(sig, failing, Shop, payload, robust)
        with pytest.raises(ValueError, match="no"):
            await compiled(sig, failing, Shop, payload)


def test_compiled_copies_are_named_and_have_source_lines() -> None:
    import linecache

    loop = _loops.loop_for(("order",), AwaitPlan, robust=True, checked=True)
    assert loop.__code__.co_name == "asignals.send"
    lines = linecache.getlines(loop.__code__.co_filename)
    first = loop.__code__.co_firstlineno
    source = "".join(lines[first - 1 : first + 12])
    assert "order = payload['order']" in source
    assert "await receiver(signal=signal, sender=sender, order=order)" in source
    child = _loops.child_for(("order",), AwaitPlan, robust=False)
    assert child.__code__.co_name == "asignals.gather"


# -- the plan class each mix of receiver kinds gets --------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_plan_class_follows_the_kinds_of_receivers_between_sends(mode: Mode) -> None:
    """The plan classes behind test_send_order_and_arguments.py's
    test_receiver_kinds_changing_between_sends_are_each_called_their_way."""
    sig = AsyncSignal("kinds")
    send = sender_of(sig, mode)
    sig.connect(echo_items)
    assert type(sig._plans[0]) is InlinePlan
    assert await send(Shop, a=1) == [(echo_items, items(sig, a=1))]
    sig.connect(async_echo_items)
    assert type(sig._plans[0]) is tuple
    await send(Shop, a=2)
    sig.disconnect(echo_items)
    assert type(sig._plans[0]) is AwaitPlan
    await send(Shop, a=3)

    def in_thread(**kwargs: Any) -> str:
        return "thread"

    sig.connect(in_thread, weak=False, to_thread=True)
    assert type(sig._plans[0]) is tuple  # a to_thread receiver: the loop that branches
    assert await send(Shop, a=4) == [(async_echo_items, items(sig, a=4)), (in_thread, "thread")]


def test_plan_classes_follow_every_update() -> None:
    """Plans published by connect, disconnect, a receiver's death and a sender's own
    connections all carry the class that matches their receivers."""
    sig = AsyncSignal("classes")

    def first(**kwargs: Any) -> None: ...

    def second(**kwargs: Any) -> None: ...

    async def third(**kwargs: Any) -> None: ...

    sig.connect(first)
    sig.connect(second, sender=Shop)
    assert type(sig._plans[0]) is InlinePlan
    assert type(sig._plan_for(Shop)) is InlinePlan
    assert len(sig._plan_for(Shop)) == 2
    sig.connect(third)
    assert type(sig._plans[0]) is tuple
    assert type(sig._plan_for(Shop)) is tuple
    sig.disconnect(first)
    assert type(sig._plans[0]) is AwaitPlan
    assert type(sig._plan_for(Shop)) is tuple  # second (sync) and third (coroutine)
    del third
    gc.collect()
    assert sig._plans[0] == ()
    assert type(sig._plan_for(Shop)) is InlinePlan
    sig._publish(list(sig._connections))  # the rebuild after deaths during a connect
    assert type(sig._plan_for(Shop)) is InlinePlan


# -- the prepared send a signal keeps for the next one ---------------------------------------


@pytest.mark.anyio
async def test_a_mismatch_makes_the_next_send_prepare_again() -> None:
    sig = AsyncSignal("rechoose")
    sig.connect(echo_items)
    await sig.send(Shop, a=1)
    ready = sig._ready
    assert ready[1] == 1
    await sig.send(Shop, b=2)  # the loop for `a` was tried, saw `b`, handed it on
    assert sig._ready[1] == -1  # no payload has that length
    assert await sig.send(Shop, b=3) == [(echo_items, items(sig, b=3))]
    assert sig._ready[1] == 1
    assert sig._ready is not ready


@pytest.mark.anyio
async def test_every_change_forgets_the_prepared_send() -> None:
    sig = AsyncSignal("changes")
    sig.connect(echo_items)
    await sig.send(Shop, a=1)
    assert sig._ready[1] == 1
    sig.connect(echo, weak=False)
    assert sig._ready[1] == -1
    await sig.send(Shop, a=1)
    with capture(sig):  # a send hook
        assert sig._ready[1] == -1
        await sig.send(Shop, a=1)
        assert sig._ready[1] == -1  # not kept while a hook is installed
    await sig.send(Shop, a=1)
    sig.connect(echo_items, sender=Shop)  # a sender's own plan: looked up on each send
    assert sig._ready[1] == -1
    assert await sig.send(Shop, a=1) == [
        (echo_items, items(sig, a=1)),
        (echo, {"signal": sig, "sender": Shop, "a": 1}),
        (echo_items, items(sig, a=1)),
    ]
    assert sig._ready[1] == 1
    assert await sig.send(None, a=2) == [
        (echo_items, [("signal", sig), ("sender", None), ("a", 2)]),
        (echo, {"signal": sig, "sender": None, "a": 2}),
    ]


@pytest.mark.anyio
async def test_a_send_made_while_a_sender_gets_its_own_plan_runs_a_whole_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connect for one sender stores that sender's plan into the table in place, then
    forgets the prepared send: a send made in between (another thread, at a switch of the
    GIL) runs the plan from before or after, each with a loop fit for it: a coroutine
    receiver is awaited, never called as if it were sync."""
    sig = AsyncSignal("race")
    sig.connect(echo, weak=False)
    await sig.send(Shop, a=1)  # prepared: a plan of sync receivers only
    made_in_between: list[Any] = []
    changed = sig._changed

    def send_first() -> None:
        made_in_between.append(sig.send(Shop, a=2))  # the plan is taken here, at the call
        changed()

    monkeypatch.setattr(sig, "_changed", send_first)
    sig.connect(async_echo_items, sender=Shop, weak=False)
    monkeypatch.undo()
    (responses,) = [await send for send in made_in_between]
    assert responses in (
        [(echo, {"signal": sig, "sender": Shop, "a": 2})],
        [(echo, {"signal": sig, "sender": Shop, "a": 2}), (async_echo_items, items(sig, a=2))],
    )


@pytest.mark.anyio
async def test_names_from_user_input_keep_memory_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`send(self, **form)` with ever new names: the loops a signal keeps named copies of
    stay bounded (and so does the module's cache, past which names share the ** loop)."""
    monkeypatch.setattr(_loops, "_cache", {})  # filled here, and dropped afterwards
    sig = AsyncSignal("forms")
    sig.connect(echo_items)
    for index in range(300):
        one = {f"a{index}": index}
        two = {f"b{index}": index, f"c{index}": index}
        assert await sig.send(Shop, **one) == [(echo_items, items(sig, **one))]
        assert await sig.send(Shop, **two) == [(echo_items, items(sig, **two))]
    assert len(sig._named_loops) <= 64
    assert len(_loops._cache) <= _loops.MAX_LOOPS + len(_loops._generic)


@pytest.mark.anyio
async def test_a_signal_whose_names_keep_changing_stops_reusing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_loops, "_cache", {})  # room for these names, whatever ran before
    sig = AsyncSignal("unsteady")
    sig.connect(echo_items)
    for index in range(40):
        payload = {"order": index} if index % 2 else {"user": index}
        assert await sig.send(Shop, **payload) == [(echo_items, items(sig, **payload))]
    assert sig._misses == 8  # then no more reuse, so no more misses
    assert sig._ready[1] == -1


@pytest.mark.anyio
async def test_the_any_payload_loop_is_not_kept() -> None:
    """A payload name the loop cannot pass as a keyword (`plan`) takes the `**` loop; a
    later payload of the same length with an ordinary name gets its own fast loop."""
    sig = AsyncSignal("shadowing")
    sig.connect(echo_items)
    assert await sig.send(Shop, plan=1) == [(echo_items, items(sig, plan=1))]
    assert sig._ready[1] == -1
    assert await sig.send(Shop, order=2) == [(echo_items, items(sig, order=2))]
    assert sig._ready[1] == 1
    assert not _loops.takes_any_payload(sig._ready[2])


# -- gather on asyncio: a plan's parts, and when it builds eager tasks itself ------------------


@pytest.mark.asyncio
async def test_a_plan_splits_into_parts_once() -> None:
    sig = AsyncSignal("s")

    async def a(**kwargs: Any) -> str:
        return "a"

    async def b(**kwargs: Any) -> str:
        return "b"

    sig.connect(a)
    plan = prepare(sig, None, {})
    assert _gather._parts(plan) is _gather._parts(plan)
    sig.connect(b)
    assert await sig.gather(None) == [(a, "a"), (b, "b")]  # a new plan, its own parts
    assert len(_gather._parts(prepare(sig, None, {}))) == 2


class CountingLoop(asyncio.SelectorEventLoop):
    """A loop with a create_task of its own (test_gather_concurrency.py checks that gather
    calls it)."""

    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        return super().create_task(coro, **kwargs)


@pytest.mark.parametrize("factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_eager_tasks_only_on_plain_loops_without_a_task_factory(factory: Any) -> None:
    """The check itself, on every Python (on 3.11 gather never asks it)."""

    async def probe() -> list[bool]:
        loop = asyncio.get_running_loop()
        answers = [_gather._builds_eager_tasks(loop)]
        loop.set_task_factory(lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))
        answers.append(_gather._builds_eager_tasks(loop))
        loop.set_task_factory(None)
        return answers

    loop = factory()
    try:
        assert loop.run_until_complete(probe()) == [True, False]
    finally:
        loop.close()
    other = CountingLoop()
    try:
        assert _gather._builds_eager_tasks(other) is False
    finally:
        other.close()


# -- the plain-function loops: a plan of sync receivers, one send or many -----------------


def _sync_plan(sig: AsyncSignal, *receivers: Any) -> Any:
    for receiver in receivers:
        sig.connect(receiver, weak=False)
    plan = prepare(sig, None, {"order": 0})
    assert type(plan) is InlinePlan or all(call is SYNC for _, call in plan)
    return plan


def test_the_loop_of_sync_receivers_is_a_plain_function_that_answers_like_a_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("sync_only")

    def first(signal: Any, sender: Any, order: int, **kwargs: Any) -> int:
        return order + 1

    def broken(**kwargs: Any) -> None:
        raise ValueError("no stock")

    plan = _sync_plan(sig, first, broken)
    loop = _loops.inline_for(("order",), robust=True)
    assert not asyncio.iscoroutinefunction(loop)
    assert loop is _loops.inline_for(("order",), robust=True)  # compiled once
    [(r1, one), (r2, error)] = loop(sig, plan, None, {"order": 41})
    assert (r1, one, r2) == (first, 42, broken)
    assert isinstance(error, ValueError)
    assert sig.statistics().failures == 1
    assert "no stock" in caplog.text
    with pytest.raises(ValueError, match="no stock"):  # not robust: raised
        _loops.inline_for(("order",))(sig, plan, None, {"order": 1})


def test_many_sends_of_one_plan_run_in_order_robustly_without_responses() -> None:
    sig = AsyncSignal("many")
    seen: list[tuple[str, int]] = []

    def first(order: int, **kwargs: Any) -> str:
        seen.append(("first", order))
        if order == 2:
            raise ValueError("second order fails")
        return "ignored"

    def second(order: int, **kwargs: Any) -> None:
        seen.append(("second", order))

    plan = _sync_plan(sig, first, second)
    each = _loops.each_for(("order",))
    assert not asyncio.iscoroutinefunction(each)
    assert each(sig, plan, None, [{"order": n} for n in (1, 2, 3)]) == 3
    assert seen == [(name, n) for n in (1, 2, 3) for name in ("first", "second")]
    assert sig.statistics().failures == 1


def test_many_sends_stop_before_the_first_payload_a_send_hook_must_see() -> None:
    """A receiver that starts a capture: the rest of the payloads are the hook's, and the
    loop says how many it sent itself."""
    sig = AsyncSignal("hooked")
    seen: list[int] = []
    captures = contextlib.ExitStack()

    def starts_a_capture(order: int, **kwargs: Any) -> None:
        seen.append(order)
        if order == 2:
            captures.enter_context(capture(sig))

    plan = _sync_plan(sig, starts_a_capture)
    with captures:
        sent = _loops.each_for(("order",))(sig, plan, None, [{"order": n} for n in (1, 2, 3)])
    assert sent == 2
    assert seen == [1, 2]


def test_payload_names_the_many_sends_loop_uses_itself_share_the_generic_copy() -> None:
    sig = AsyncSignal("names")
    got: list[dict[str, Any]] = []

    def record(**kwargs: Any) -> None:
        got.append({k: v for k, v in kwargs.items() if k not in ("signal", "sender")})

    plan = _sync_plan(sig, record)
    for name in ("payloads", "sent"):
        each = _loops.each_for((name,))
        assert _loops.takes_any_payload(each)
        assert each(sig, plan, None, [{name: 1}, {name: 2}]) == 2
    assert got == [{"payloads": 1}, {"payloads": 2}, {"sent": 1}, {"sent": 2}]
