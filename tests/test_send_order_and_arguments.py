"""Every send calls the receivers connected at that moment, in connection order, each the way
its kind needs, with exactly the arguments that send was given — whatever the sends before
it looked like: other payload names, the same names in another order, other kinds of
receivers, sends from another thread meanwhile. Bad arguments fail at the call itself, and
a send that is never awaited says which signal and mode it was.
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
async def test_names_and_order_changing_between_sends_are_delivered_as_sent(
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


@pytest.mark.parametrize("mode", MODES)
async def test_receiver_kinds_changing_between_sends_are_each_called_their_way(mode: Mode) -> None:
    """A coroutine receiver connected next to sync ones is awaited by the very next send
    (not called the way the sync receivers before it were, and left unawaited); a receiver
    for a worker thread runs there. (test_internals.py pins the plan class behind each.)"""
    sig = AsyncSignal("kinds")
    send = sender_of(sig, mode)
    sig.connect(echo)
    assert await send(Shop, a=1) == [(echo, items(sig, a=1))]
    sig.connect(async_echo)
    assert await send(Shop, a=2) == [(echo, items(sig, a=2)), (async_echo, items(sig, a=2))]
    sig.disconnect(echo)
    assert await send(Shop, a=3) == [(async_echo, items(sig, a=3))]

    def in_thread(**kwargs: Any) -> str:
        return "thread"

    sig.connect(in_thread, weak=False, to_thread=True)
    assert await send(Shop, a=4) == [(async_echo, items(sig, a=4)), (in_thread, "thread")]


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


async def test_sends_from_another_thread_meanwhile_each_get_their_own_payload() -> None:
    """A thread with no event loop (send_sync inline) and the event loop alternate payload
    names on one signal: each send still delivers its own payload."""
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
