"""connect(), disconnect(), receivers_for(), has_listeners() and @receiver."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest
from helpers import MODES, Mode, async_recorder, receivers, sender_of, sync_recorder, values

from asignals import AsyncSignal, SignalStatistics, receiver
from asignals.testing import capture

pytestmark = pytest.mark.anyio


class Shop:
    pass


class Key:
    """Instances are all equal to each other and hash alike, but are distinct objects."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key)

    def __hash__(self) -> int:
        return 1


# -- connect ------------------------------------------------------------------------------


async def test_connect_returns_the_receiver_unchanged() -> None:
    sig = AsyncSignal("s")

    def handler(**kwargs: Any) -> str:
        return "h"

    assert sig.connect(handler) is handler

    @sig.connect
    async def decorated(**kwargs: Any) -> str:
        return "d"

    assert decorated.__name__ == "decorated"
    assert await decorated() == "d"
    assert sig.receivers_for() == [handler, decorated]
    assert values(await sig.send(None)) == ["h", "d"]


async def test_sender_none_connection_receives_every_sender() -> None:
    sig = AsyncSignal("s")
    seen: list[Any] = []

    def handler(sender: Any, **kwargs: Any) -> None:
        seen.append(sender)

    sig.connect(handler)
    other = object()
    await sig.send(Shop)
    await sig.send(other)
    await sig.send()
    assert seen == [Shop, other, None]


async def test_sender_filter_matches_only_that_sender() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")

    class Other:
        pass

    sig.connect(handler, sender=Shop)
    assert await sig.send(Other) == []
    assert await sig.send() == []
    assert receivers(await sig.send(Shop)) == [handler]
    assert calls == ["h"]


async def test_sender_filter_is_by_identity_not_equality() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    first, second = Key(), Key()
    assert first == second
    assert hash(first) == hash(second)

    sig.connect(handler, first)  # positional sender works too
    assert await sig.send(second) == []
    assert sig.receivers_for(second) == []
    assert not sig.has_listeners(second)
    assert receivers(await sig.send(first)) == [handler]
    assert calls == ["h"]


async def test_same_receiver_twice_for_same_sender_is_called_once() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")

    sig.connect(handler)
    sig.connect(handler)
    sig.connect(handler, weak=False)
    sig.connect(handler, Shop)
    sig.connect(handler, Shop)
    assert sig.receivers_for() == [handler]
    assert sig.receivers_for(Shop) == [handler, handler]  # any-sender + Shop: two connections
    await sig.send()
    assert calls == ["h"]


async def test_same_bound_method_twice_is_called_once() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []

    class Listener:
        def on(self, **kwargs: Any) -> None:
            calls.append("on")

    listener = Listener()
    sig.connect(listener.on)
    sig.connect(listener.on)  # a new bound-method object each time
    await sig.send()
    assert calls == ["on"]
    assert sig.disconnect(listener.on)
    assert not sig.has_listeners()


async def test_same_receiver_for_two_senders_makes_two_connections() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    other = object()

    sig.connect(handler, sender=Shop)
    sig.connect(handler, sender=other)
    assert sig.receivers_for(Shop) == [handler]
    assert sig.receivers_for(other) == [handler]
    assert sig.receivers_for() == []
    await sig.send(Shop)
    await sig.send(other)
    assert calls == ["h", "h"]

    assert sig.disconnect(handler, sender=Shop)
    assert sig.receivers_for(Shop) == []
    assert sig.receivers_for(other) == [handler]


async def test_dispatch_uid_dedupes_instead_of_identity() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    first = sync_recorder(calls, "first")
    second = sync_recorder(calls, "second")

    sig.connect(first, dispatch_uid="shop.receivers.first")
    sig.connect(second, dispatch_uid="shop.receivers.first")
    assert sig.receivers_for() == [first]
    await sig.send()
    assert calls == ["first"]


async def test_dispatch_uid_is_per_sender() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    first = sync_recorder(calls, "first")
    second = sync_recorder(calls, "second")

    sig.connect(first, dispatch_uid="uid")
    sig.connect(second, Shop, dispatch_uid="uid")
    assert sig.receivers_for() == [first]
    assert sig.receivers_for(Shop) == [first, second]


async def test_dispatch_uid_and_identity_are_separate_keys() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")

    sig.connect(handler, dispatch_uid="uid")
    sig.connect(handler)  # no uid: not the same connection as the uid one
    assert sig.receivers_for() == [handler, handler]
    # Disconnecting by receiver only removes the connection made without a uid.
    assert sig.disconnect(handler)
    assert sig.receivers_for() == [handler]
    assert not sig.disconnect(handler)
    assert sig.disconnect(dispatch_uid="uid")
    assert sig.receivers_for() == []


# -- disconnect ---------------------------------------------------------------------------


async def test_disconnect_returns_whether_something_was_removed() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    unrelated = sync_recorder(calls, "u")

    assert not sig.disconnect(handler)  # never connected
    sig.connect(handler)
    assert not sig.disconnect(unrelated)
    assert not sig.disconnect(handler, sender=Shop)  # connected for any sender, not Shop
    assert sig.disconnect(handler)
    assert not sig.disconnect(handler)  # already gone
    assert await sig.send() == []
    assert calls == []


async def test_disconnect_for_a_sender() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")

    sig.connect(handler, sender=Shop)
    assert not sig.disconnect(handler)  # sender=None means the any-sender connection
    assert sig.receivers_for(Shop) == [handler]
    assert sig.disconnect(handler, sender=Shop)
    assert sig.receivers_for(Shop) == []
    assert not sig.has_listeners(Shop)


async def test_disconnect_by_dispatch_uid() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    other = sync_recorder(calls, "o")

    sig.connect(handler, dispatch_uid=("app", "h"))
    sig.connect(other)
    assert not sig.disconnect(dispatch_uid=("app", "nope"))
    assert not sig.disconnect(dispatch_uid=("app", "h"), sender=Shop)
    assert sig.disconnect(dispatch_uid=("app", "h"))
    assert sig.receivers_for() == [other]
    assert not sig.disconnect(dispatch_uid=("app", "h"))


async def test_disconnect_needs_receiver_or_dispatch_uid() -> None:
    sig = AsyncSignal("needs_one")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler)

    with pytest.raises(TypeError, match="dispatch_uid") as info:
        sig.disconnect()
    assert "<AsyncSignal 'needs_one'>" in str(info.value)
    with pytest.raises(TypeError):
        sig.disconnect(sender=Shop)
    assert sig.receivers_for() == [handler]


# -- receivers_for / has_listeners --------------------------------------------------------


async def test_receivers_for_and_has_listeners_follow_call_order() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    a = sync_recorder(calls, "a")
    b = async_recorder(calls, "b")
    c = sync_recorder(calls, "c")
    d = async_recorder(calls, "d")

    assert not sig.has_listeners()
    assert not sig.has_listeners(Shop)
    assert sig.receivers_for() == []

    sig.connect(a)
    sig.connect(b, sender=Shop)
    sig.connect(c)
    sig.connect(d, sender=Shop)

    assert sig.has_listeners()
    assert sig.has_listeners(Shop)
    assert sig.has_listeners(object())  # any-sender receivers listen to everyone
    assert sig.receivers_for() == [a, c]
    assert sig.receivers_for(object()) == [a, c]
    assert sig.receivers_for(Shop) == [a, b, c, d]

    assert receivers(await sig.send(Shop)) == [a, b, c, d]
    assert calls == ["a", "b", "c", "d"]

    sig.disconnect(a)
    sig.disconnect(c)
    assert not sig.has_listeners()
    assert sig.has_listeners(Shop)
    assert sig.receivers_for(Shop) == [b, d]


@pytest.mark.parametrize("mode", MODES)
async def test_interleaved_any_and_sender_connections_keep_connection_order(mode: Mode) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    made = [
        (sync_recorder(calls, "any1", 1), None),
        (async_recorder(calls, "shop1", 2), Shop),
        (async_recorder(calls, "any2", 3), None),
        (sync_recorder(calls, "shop2", 4), Shop),
        (sync_recorder(calls, "other", 5), object()),
    ]
    for func, sender in made:
        sig.connect(func, sender)
    responses = await sender_of(sig, mode)(Shop)
    assert values(responses) == [1, 2, 3, 4]
    assert receivers(responses) == [made[i][0] for i in range(4)]


# -- @receiver -----------------------------------------------------------------------------


async def test_receiver_decorator_single_signal() -> None:
    sig = AsyncSignal("s")

    @receiver(sig)
    async def handler(**kwargs: Any) -> str:
        return "ok"

    assert sig.receivers_for() == [handler]
    assert values(await sig.send()) == ["ok"]
    assert await handler() == "ok"  # returned unchanged


async def test_receiver_decorator_list_and_sender() -> None:
    first, second = AsyncSignal("first"), AsyncSignal("second")
    calls: list[Any] = []

    @receiver([first, second], sender=Shop)
    def handler(signal: AsyncSignal, **kwargs: Any) -> None:
        calls.append(signal)

    assert first.receivers_for(Shop) == [handler]
    assert second.receivers_for(Shop) == [handler]
    assert first.receivers_for() == []
    await first.send(Shop)
    await second.send(Shop)
    await second.send(object())
    assert calls == [first, second]


async def test_receiver_decorator_accepts_any_iterable_of_signals() -> None:
    first, second = AsyncSignal("first"), AsyncSignal("second")

    @receiver(iter((first, second)))
    def handler(**kwargs: Any) -> None:
        pass

    assert first.receivers_for() == [handler]
    assert second.receivers_for() == [handler]


async def test_receiver_decorator_passes_every_connect_option() -> None:
    sig = AsyncSignal("s")

    @receiver(sig, dispatch_uid="uid")
    def first(**kwargs: Any) -> str:
        return "first"

    @receiver(sig, dispatch_uid="uid")
    def duplicate(**kwargs: Any) -> str:
        return "duplicate"

    assert sig.receivers_for() == [first]

    @receiver(
        sig, sender=Shop, to_thread=True, timeout=5
    )  # a loaded machine may be slow to start the thread
    def in_thread(**kwargs: Any) -> str:
        return "thread"

    async def slow(**kwargs: Any) -> None:
        await anyio.sleep(10)

    receiver(sig, sender=Shop, timeout=0.05)(slow)

    responses = await sig.send_robust(Shop)
    assert values(responses)[:2] == ["first", "thread"]
    assert isinstance(values(responses)[2], TimeoutError)

    # weak=False: the decorator keeps a lambda alive
    receiver(sig, weak=False)(lambda **kwargs: "lambda")
    assert values(await sig.send())[-1] == "lambda"


async def test_receiver_decorator_weak_by_default() -> None:
    sig = AsyncSignal("s")
    receiver(sig)(lambda **kwargs: "lambda")  # nothing else refers to the lambda
    assert sig.receivers_for() == []
    assert await sig.send() == []


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(5, id="int"),
        pytest.param("order_paid", id="str"),
        pytest.param([], id="empty-list"),
        pytest.param(None, id="none"),
        pytest.param([AsyncSignal("ok"), "nope"], id="list-with-non-signal"),
        pytest.param(AsyncSignal, id="class"),
    ],
)
def test_receiver_decorator_rejects_non_signals(bad: Any) -> None:
    with pytest.raises(TypeError, match="AsyncSignal"):
        receiver(bad)


def test_receiver_decorator_bad_list_connects_nothing() -> None:
    ok = AsyncSignal("ok")
    with pytest.raises(TypeError):
        receiver([ok, 5])  # type: ignore[list-item]
    assert ok.receivers_for() == []


def test_receiver_decorator_validates_options_when_applied() -> None:
    sig = AsyncSignal("s")
    with pytest.raises(ValueError, match="timeout"):

        @receiver(sig, timeout=-1)
        async def handler(**kwargs: Any) -> None:
            pass

    assert sig.receivers_for() == []


def test_many_senders_each_get_their_own_receivers_in_connection_order() -> None:
    sig = AsyncSignal("per-object")
    senders = [Shop() for _ in range(50)]
    everyone: list[Callable[..., Any]] = []
    own: dict[int, list[Callable[..., Any]]] = {id(s): [] for s in senders}
    keep: list[Callable[..., Any]] = []
    for round_ in range(3):
        common = sync_recorder([], f"any{round_}")
        keep.append(common)
        sig.connect(common)
        everyone.append(common)
        for sender in senders:
            mine = sync_recorder([], f"own{round_}")
            keep.append(mine)
            sig.connect(mine, sender)
            own[id(sender)].append(mine)
    for sender in senders:
        theirs = own[id(sender)]
        expected = [everyone[0], theirs[0], everyone[1], theirs[1], everyone[2], theirs[2]]
        assert sig.receivers_for(sender) == expected
    assert sig.receivers_for(None) == everyone


def test_a_dispatch_uid_that_is_not_equal_to_itself_still_dedupes() -> None:
    sig = AsyncSignal("s")
    uid = float("nan")
    first, second = sync_recorder([], "first"), sync_recorder([], "second")
    sig.connect(first, dispatch_uid=uid)
    sig.connect(second, dispatch_uid=uid)
    assert sig.receivers_for() == [first]
    assert sig.disconnect(dispatch_uid=uid)
    assert sig.receivers_for() == []


# -- statistics(): what is connected, and how ------------------------------------------------


def test_statistics_count_receivers_weak_ones_senders_and_hooks() -> None:
    sig = AsyncSignal("stats")
    assert sig.statistics() == SignalStatistics(receivers=0, weak=0, senders=0, hooked=False)

    def a(**kwargs: Any) -> None: ...

    def b(**kwargs: Any) -> None: ...

    class Shop:
        pass

    sig.connect(a)
    sig.connect(b, sender=Shop, weak=False)
    sig.connect(a, sender=Shop)
    stats = sig.statistics()
    assert (stats.receivers, stats.weak, stats.senders, stats.hooked) == (3, 2, 1, False)
    with capture(sig):
        assert sig.statistics().hooked
    assert not sig.statistics().hooked
    del a
    gc.collect()
    assert sig.statistics() == SignalStatistics(
        receivers=1, weak=0, senders=1, hooked=False, failures=0
    )
    del Shop
    gc.collect()
    assert sig.statistics().receivers == 0


@pytest.mark.parametrize("mode", ["send_robust", "gather_robust", "send_robust_sync"])
async def test_statistics_count_the_failures_robust_sends_caught(mode: str) -> None:
    sig = AsyncSignal("counted")

    def fails(**kwargs: Any) -> None:
        raise ValueError("no")

    def works(**kwargs: Any) -> str:
        return "ok"

    sig.connect(fails, weak=False)
    sig.connect(works, weak=False)
    for _ in range(3):
        if mode == "send_robust_sync":
            await anyio.to_thread.run_sync(lambda: sig.send_robust_sync(None))
        else:
            await getattr(sig, mode)(None)
    assert sig.statistics().failures == 3
    with pytest.raises(ValueError, match="no"):
        await sig.send(None)  # raised to the caller: not a caught failure
    assert sig.statistics().failures == 3
