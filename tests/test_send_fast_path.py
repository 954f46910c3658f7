"""The send fast path: loops chosen by payload length and plan class, checked by the loop.

`AsyncSignal._choose_loops` remembers the loops of the last send; the next send takes them
when its payload has as many items and its plan is of the same class, and the loop itself
checks the names (asignals/_dispatch.py, `guessed_loop`). These tests change names, order,
plan kinds and receivers between sends and check that every send still delivers exactly
what it was given.
"""

from __future__ import annotations

import gc
import threading
import warnings
from types import CoroutineType
from typing import Any, cast

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from helpers import MODES, Mode, sender_of

from asignals import AsyncSignal
from asignals import _dispatch as dispatch

pytestmark = pytest.mark.anyio


class Shop:
    pass


def echo(**kwargs: Any) -> list[tuple[str, Any]]:
    return list(kwargs.items())  # in order: the order is part of what is delivered


async def async_echo(**kwargs: Any) -> list[tuple[str, Any]]:
    return list(kwargs.items())


def items(sig: AsyncSignal, **payload: Any) -> list[tuple[str, Any]]:
    return [("signal", sig), ("sender", Shop), *payload.items()]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("receiver", [echo, async_echo], ids=["sync", "coroutine"])
async def test_same_length_other_names_and_order_are_delivered_as_sent(
    mode: Mode, receiver: Any
) -> None:
    sig = AsyncSignal("steady")
    sig.connect(receiver)
    send = sender_of(sig, mode)
    sends: list[dict[str, Any]] = [
        {"a": 1},
        {"a": 2},
        {"b": 3},  # as many items as the last send, another name
        {"a": 4, "b": 5},
        {"b": 6, "a": 7},  # the same names in another order
        {"b": 8, "a": 9},
        {"a": 10, "c": 11},
        {},
        {"order": 12},
    ]
    for payload in sends * 2:
        [(_, received)] = await send(Shop, **payload)
        assert received == items(sig, **payload)


async def test_a_mismatch_makes_the_next_send_choose_again() -> None:
    sig = AsyncSignal("rechoose")
    sig.connect(echo)
    await sig.send(Shop, a=1)
    chosen = sig._last_loops
    assert chosen[0] == 1
    await sig.send(Shop, b=2)  # the loop for `a` was tried, saw `b`, handed it on
    assert sig._last_loops[0] == -1  # no payload has that length
    assert await sig.send(Shop, b=3) == [(echo, items(sig, b=3))]
    assert sig._last_loops[0] == 1
    assert sig._last_loops is not chosen


@pytest.mark.parametrize("mode", MODES)
async def test_plan_kind_changes_between_sends(mode: Mode) -> None:
    """Connecting a coroutine receiver next to sync ones makes the plan mixed; the next
    send must not run it through the loop for sync receivers (which would not await it)."""
    sig = AsyncSignal("kinds")
    send = sender_of(sig, mode)
    sig.connect(echo)
    assert type(sig._plans[0]) is dispatch.InlinePlan
    assert await send(Shop, a=1) == [(echo, items(sig, a=1))]
    sig.connect(async_echo)
    assert type(sig._plans[0]) is tuple
    assert await send(Shop, a=2) == [(echo, items(sig, a=2)), (async_echo, items(sig, a=2))]
    sig.disconnect(echo)
    assert type(sig._plans[0]) is dispatch.AwaitPlan
    assert await send(Shop, a=3) == [(async_echo, items(sig, a=3))]

    def in_thread(**kwargs: Any) -> str:
        return "thread"

    sig.connect(in_thread, weak=False, to_thread=True)
    assert type(sig._plans[0]) is tuple  # a to_thread receiver: the loop that branches
    assert await send(Shop, a=4) == [(async_echo, items(sig, a=4)), (in_thread, "thread")]


def test_plan_classes_follow_every_update() -> None:
    """Plans published by connect, disconnect, a receiver's death and a sender's own
    connections all carry the class that matches their receivers."""
    sig = AsyncSignal("classes")

    def first(**kwargs: Any) -> None: ...

    def second(**kwargs: Any) -> None: ...

    async def third(**kwargs: Any) -> None: ...

    sig.connect(first)
    sig.connect(second, sender=Shop)
    assert type(sig._plans[0]) is dispatch.InlinePlan
    assert type(sig._plan_for(Shop)) is dispatch.InlinePlan
    assert len(sig._plan_for(Shop)) == 2
    sig.connect(third)
    assert type(sig._plans[0]) is tuple
    assert type(sig._plan_for(Shop)) is tuple
    sig.disconnect(first)
    assert type(sig._plans[0]) is dispatch.AwaitPlan
    assert type(sig._plan_for(Shop)) is tuple  # second (sync) and third (coroutine)
    del third
    gc.collect()
    assert sig._plans[0] == ()
    assert type(sig._plan_for(Shop)) is dispatch.InlinePlan
    sig._publish(list(sig._connections))  # the rebuild after deaths during a connect
    assert type(sig._plan_for(Shop)) is dispatch.InlinePlan


@pytest.mark.parametrize("mode", MODES)
async def test_bad_arguments_raise_when_called_before_any_await(mode: Mode) -> None:
    """The TypeError comes from the call itself: no coroutine is made (so no "never
    awaited" warning either), and it points at the line that sent."""
    sig = AsyncSignal("eager_errors")
    sig.connect(echo)
    send = sender_of(sig, mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="keyword-only"):
            _ = send(Shop, 1)
        with pytest.raises(TypeError, match="'signal' is reserved"):
            _ = send(Shop, signal=1)
        with pytest.raises(TypeError, match="given twice"):
            _ = send(Shop, sender=object())
        gc.collect()


@pytest.mark.parametrize("mode", ["send", "send_robust"])
async def test_forgotten_await_names_the_signal_and_mode(mode: Mode) -> None:
    sig = AsyncSignal("order_paid")
    sig.connect(echo)
    send = sender_of(sig, mode)
    with pytest.warns(RuntimeWarning, match=f"coroutine 'order_paid.{mode}' was never awaited"):
        _drop(send(Shop, a=1))


def _drop(coroutine: object) -> None:
    del coroutine
    gc.collect()


async def test_each_signal_names_its_own_coroutines() -> None:
    first, second = AsyncSignal("first"), AsyncSignal("second")
    for sig in (first, second):
        sig.connect(echo)
    one, two = first.send(Shop, a=1), second.send_robust(Shop, a=1)
    try:
        names = [cast("CoroutineType[Any, Any, Any]", c).__qualname__ for c in (one, two)]
        assert names == ["first.send", "second.send_robust"]
    finally:
        one.close()
        two.close()


async def test_shapes_past_the_cap_still_deliver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "_guessed", {})
    monkeypatch.setattr(dispatch, "_MAX_SHAPES", 1)
    sig = AsyncSignal("many_shapes")
    sig.connect(echo)
    for index in range(8):
        payload = {f"name_{index}": index, "x": 0}
        assert await sig.send(Shop, **payload) == [(echo, items(sig, **payload))]
    assert len(dispatch._guessed) <= 5  # the cap: five loops per shape allowed


async def test_a_send_from_another_thread_meanwhile_is_not_confused() -> None:
    """A thread with no event loop (send_sync inline) and the loop alternate shapes and
    share the signal's remembered loops: each send still gets its own payload."""
    sig = AsyncSignal("threads")
    sig.connect(echo)
    failures: list[BaseException] = []

    def other_thread() -> None:
        try:
            for index in range(300):
                assert sig.send_sync(Shop, b=index) == [(echo, items(sig, b=index))]
        except BaseException as exc:  # reported below, in the test
            failures.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    for index in range(300):
        assert await sig.send(Shop, a=index) == [(echo, items(sig, a=index))]
        await anyio.lowlevel.checkpoint()
    await anyio.to_thread.run_sync(thread.join)
    assert failures == []


async def test_names_from_user_input_keep_memory_bounded() -> None:
    """`send(self, **form)` with ever new names: the loops a signal keeps named copies of
    stay bounded."""
    sig = AsyncSignal("forms")
    sig.connect(echo)
    for index in range(300):
        one = {f"a{index}": index}
        two = {f"b{index}": index, f"c{index}": index}
        assert await sig.send(Shop, **one) == [(echo, items(sig, **one))]
        assert await sig.send(Shop, **two) == [(echo, items(sig, **two))]
    assert len(sig._named_loops) <= 64


async def test_a_signal_whose_names_keep_changing_stops_guessing() -> None:
    sig = AsyncSignal("unsteady")
    sig.connect(echo)
    for index in range(40):
        payload = {"order": index} if index % 2 else {"user": index}
        assert await sig.send(Shop, **payload) == [(echo, items(sig, **payload))]
    assert sig._misses == 8  # then no more guesses, so no more misses
    assert sig._last_loops[0] == -1


async def test_the_any_payload_loop_is_not_remembered() -> None:
    """A payload name the loop cannot pass as a keyword (`plan`) takes the `**` loop; a
    later payload of the same length with an ordinary name gets its own fast loop."""
    sig = AsyncSignal("shadowing")
    sig.connect(echo)
    assert await sig.send(Shop, plan=1) == [(echo, items(sig, plan=1))]
    assert sig._last_loops[0] == -1
    assert await sig.send(Shop, order=2) == [(echo, items(sig, order=2))]
    assert sig._last_loops[0] == 1
    assert sig._last_loops[2][0].__code__ is not dispatch.any_payload_loop.__code__
