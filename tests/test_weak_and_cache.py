"""Weak references to receivers and senders, and the per-sender plans built from them."""

from __future__ import annotations

import gc
import logging
import sys
import weakref
from typing import Any, cast

import anyio.to_thread
import pytest
from helpers import (
    MODES,
    Mode,
    async_recorder,
    connect_in_progress,
    receivers,
    sender_of,
    sync_recorder,
)

from asignals import AsyncSignal

pytestmark = pytest.mark.anyio


class Shop:
    pass


class Listener:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def on_sync(self, **kwargs: Any) -> str:
        self.calls.append("sync")
        return "sync"

    async def on_async(self, **kwargs: Any) -> str:
        self.calls.append("async")
        return "async"


class CallableListener:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append("callable")


class Slotted:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


# -- weak receivers ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_weak_function_receiver_is_dropped_after_collection(
    mode: Mode, is_async: bool
) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    keep = sync_recorder(calls, "keep")
    handler = async_recorder(calls, "h") if is_async else sync_recorder(calls, "h")
    ref = weakref.ref(handler)
    sig.connect(handler)
    sig.connect(handler, sender=Shop)
    sig.connect(keep)
    assert sig.receivers_for() == [handler, keep]

    del handler
    gc.collect()

    assert ref() is None  # the signal did not keep it alive
    assert sig.receivers_for() == [keep]
    assert sig.receivers_for(Shop) == [keep]
    assert receivers(await sender_of(sig, mode)(Shop)) == [keep]
    assert calls == ["keep"]


@pytest.mark.parametrize("method", ["on_sync", "on_async"])
async def test_weak_bound_method_is_dropped_after_instance_collection(method: str) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    listener = Listener(calls)
    instance_ref = weakref.ref(listener)
    sig.connect(getattr(listener, method))  # the bound-method object itself is a temporary
    sig.connect(getattr(listener, method), sender=Shop)

    assert sig.has_listeners()
    assert [r.__name__ for r in sig.receivers_for(Shop)] == [method, method]
    responses = await sig.send()
    assert [v for _, v in responses] == [method.removeprefix("on_")]

    del listener, responses  # the responses hold the bound method, hence the instance
    gc.collect()

    assert instance_ref() is None
    assert sig.receivers_for() == []
    assert not sig.has_listeners()
    assert not sig.has_listeners(Shop)
    assert await sig.send(Shop) == []
    assert calls == [method.removeprefix("on_")]


async def test_weak_callable_object_is_dropped_after_collection() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    listener = CallableListener(calls)
    sig.connect(listener)
    await sig.send()
    del listener
    gc.collect()
    assert await sig.send() == []
    assert calls == ["callable"]


async def test_weak_receiver_in_reference_cycle_is_dropped_by_gc() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    listener = Listener(calls)
    listener.cycle = listener  # type: ignore[attr-defined]  # only gc.collect() frees it
    sig.connect(listener.on_sync)
    del listener
    assert sig.has_listeners()  # still alive: in a cycle
    gc.collect()
    assert not sig.has_listeners()
    assert await sig.send() == []
    assert calls == []


async def test_weak_false_keeps_function_alive() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "strong")
    ref = weakref.ref(handler)
    sig.connect(handler, weak=False)
    del handler
    gc.collect()

    alive = ref()
    assert alive is not None
    assert sig.receivers_for() == [alive]
    assert await sig.send() == [(alive, None)]
    assert calls == ["strong"]

    assert sig.disconnect(alive)
    del alive
    gc.collect()
    assert ref() is None  # disconnecting released the strong reference


async def test_weak_false_keeps_bound_method_instance_alive() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    listener = Listener(calls)
    instance_ref = weakref.ref(listener)
    sig.connect(listener.on_async, weak=False)
    del listener
    gc.collect()
    assert instance_ref() is not None
    assert [v for _, v in await sig.send()] == ["async"]


async def test_lambda_needs_weak_false() -> None:
    sig = AsyncSignal("s")
    sig.connect(lambda **kwargs: "weak")
    sig.connect(lambda **kwargs: "strong", weak=False)
    assert [v for _, v in await sig.send()] == ["strong"]


def test_signal_is_not_kept_alive_by_its_receivers_or_senders() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    shop = Shop()
    sig.connect(handler)
    sig.connect(handler, sender=shop)
    signal_ref = weakref.ref(sig)
    del sig
    gc.collect()
    assert signal_ref() is None
    del handler, shop  # death callbacks of a dead signal do nothing
    gc.collect()


def test_death_callback_outliving_its_signal_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver and a sender that die after their signal: the weak references' callbacks
    run and must not fail (an error in them would only reach sys.unraisablehook)."""
    failures: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", failures.append)
    sig = AsyncSignal("s")
    handler = sync_recorder([], "h")
    shop = Shop()
    sig.connect(handler)
    sig.connect(handler, sender=shop)
    signal_ref = weakref.ref(sig)
    del sig
    gc.collect()
    assert signal_ref() is None
    del handler, shop  # their death callbacks run now, for a signal that is gone
    gc.collect()
    assert failures == []


async def test_has_listeners_false_when_every_receiver_died_unpruned() -> None:
    sig = AsyncSignal("s")
    handlers = [sync_recorder([], "a"), sync_recorder([], "b")]
    for handler in handlers:
        sig.connect(handler)
    del handler
    with connect_in_progress(sig):  # defer pruning
        handlers.clear()
        gc.collect()
    assert not sig.has_listeners()
    assert sig.receivers_for() == []
    assert await sig.send() == []


# -- senders -------------------------------------------------------------------------------


async def test_connecting_for_a_sender_does_not_keep_it_alive() -> None:
    sig = AsyncSignal("s")
    shop = Shop()
    sender_ref = weakref.ref(shop)
    # A strongly held receiver: once its connection is dropped, nothing refers to it.
    handler = sync_recorder([], "h")
    receiver_ref = weakref.ref(handler)
    sig.connect(handler, sender=shop, weak=False)
    assert sig.receivers_for(shop) == [handler]
    del handler

    del shop
    gc.collect()

    assert sender_ref() is None
    assert receiver_ref() is None  # the connection was dropped with its sender


async def test_sender_death_keeps_other_connections() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    any_sender = sync_recorder(calls, "any")
    shop, other = Shop(), Shop()
    sig.connect(handler, sender=shop)
    sig.connect(any_sender)
    sig.connect(handler, sender=other)
    del shop
    gc.collect()
    assert sig.receivers_for(other) == [any_sender, handler]
    assert sig.receivers_for() == [any_sender]
    await sig.send(other)
    assert calls == ["any", "h"]


class Sender:
    """Weakly referenceable, with an unusual size so other objects rarely take its memory."""

    __slots__ = ("__weakref__", *(f"slot{i}" for i in range(27)))


def find_object_with_id(target_id: int, tries: int = 100_000) -> Sender | None:
    """Make Sender objects until one lands where the dead sender was (or give up)."""
    keep: list[Sender] = []  # keep them alive, or each one would reuse the same free block
    for _ in range(tries):
        candidate = Sender()
        if id(candidate) == target_id:
            return candidate
        keep.append(candidate)
    return None


async def test_new_sender_reusing_dead_senders_id_gets_no_receivers() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    any_sender = sync_recorder(calls, "any")
    sig.connect(any_sender)
    shop = Sender()
    sig.connect(handler, sender=shop)
    dead_id = id(shop)
    del shop
    gc.collect()

    newcomer = find_object_with_id(dead_id)
    if newcomer is None:
        pytest.skip("no object reused the dead sender's id()")
    assert sig.receivers_for(newcomer) == [any_sender]
    assert sig.has_listeners(newcomer)
    assert receivers(await sig.send(newcomer)) == [any_sender]
    assert calls == ["any"]


async def test_reused_id_is_safe_even_before_the_dead_sender_is_pruned() -> None:
    """If pruning is deferred (a connect() held the lock), the stale plan must not match.
    (test_internals.py checks that the stale plan is really still there.)"""
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    shop = Sender()
    sig.connect(handler, sender=shop)
    dead_id = id(shop)
    with connect_in_progress(sig):  # as if another thread were connecting right now
        del shop
        gc.collect()
        newcomer = find_object_with_id(dead_id)
    if newcomer is None:
        pytest.skip("no object reused the dead sender's id()")
    assert sig.receivers_for(newcomer) == []
    assert not sig.has_listeners(newcomer)
    assert await sig.send(newcomer) == []
    assert calls == []


async def test_receiver_dying_while_pruning_is_deferred_is_skipped() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    keep = async_recorder(calls, "keep")
    sig.connect(handler)
    sig.connect(handler, sender=Shop)
    sig.connect(keep)
    with connect_in_progress(sig):
        del handler
        gc.collect()
    # The dead connection was not pruned yet, but nothing reports or calls it.
    assert sig.has_listeners()  # skips the dead one, finds `keep`
    assert sig.receivers_for() == [keep]
    assert sig.receivers_for(Shop) == [keep]
    for mode in MODES:
        assert receivers(await sender_of(sig, mode)(Shop)) == [keep]
    assert calls == ["keep"] * 4
    # The next connect() prunes it.
    other = sync_recorder(calls, "other")
    sig.connect(other)
    assert sig.receivers_for(Shop) == [keep, other]


# -- plans are invalidated -----------------------------------------------------------------


async def test_sender_plan_follows_connect_disconnect_and_gc() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    shop = Shop()
    a = sync_recorder(calls, "a")
    b = sync_recorder(calls, "b")
    c = sync_recorder(calls, "c")

    assert await sig.send(shop) == []  # send before any connection: no stale empty plan kept
    sig.connect(a, sender=shop)
    assert receivers(await sig.send(shop)) == [a]
    sig.connect(b)  # an any-sender connection joins the sender's plan too
    assert receivers(await sig.send(shop)) == [a, b]
    assert receivers(await sig.send()) == [b]
    sig.connect(c, sender=shop)
    assert receivers(await sig.send(shop)) == [a, b, c]
    sig.disconnect(a, sender=shop)
    assert receivers(await sig.send(shop)) == [b, c]
    sig.disconnect(b)
    assert receivers(await sig.send(shop)) == [c]
    del c
    gc.collect()
    assert await sig.send(shop) == []
    assert not sig.has_listeners(shop)
    sig.connect(a, sender=shop)
    assert receivers(await sig.send(shop)) == [a]


# -- unhashable and non-weakrefable senders -------------------------------------------------


def make_int(text: str) -> int:
    return int(text)


def make_str(*parts: str) -> str:
    return "".join(parts)


@pytest.mark.parametrize(
    ("make", "label"),
    [
        pytest.param(lambda: {"k": 1}, "dict", id="dict-unhashable"),
        pytest.param(lambda: [1, 2], "list", id="list-unhashable"),
        pytest.param(lambda: Slotted(1), "slots", id="slots-no-weakref"),
        pytest.param(lambda: (1, [2]), "tuple", id="tuple-unhashable-no-weakref"),
    ],
)
async def test_unusual_senders_filter_by_identity(make: Any, label: str) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sender = make()
    twin = make()  # equal (for the builtins) but a distinct object
    assert sender is not twin

    sig.connect(handler, sender=sender)
    assert sig.receivers_for(sender) == [handler]
    assert sig.has_listeners(sender)
    assert sig.receivers_for(twin) == []
    assert await sig.send(twin) == []
    assert receivers(await sig.send(sender)) == [handler]
    assert calls == ["h"]

    assert not sig.disconnect(handler, sender=twin)
    assert sig.disconnect(handler, sender=sender)
    assert await sig.send(sender) == []


async def test_small_int_and_interned_str_senders() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler, sender=7)
    sig.connect(handler, sender="shop")
    await sig.send(7)
    await sig.send("shop")
    await sig.send(8)
    assert calls == ["h", "h"]


async def test_deferred_prune_keeps_the_survivors_in_connection_order() -> None:
    """Deaths during a connect() (lock held) are pruned by the next one, all at once."""
    sig = AsyncSignal("s")
    calls: list[str] = []
    shop, other = Shop(), Shop()
    first = sync_recorder(calls, "first")
    doomed = sync_recorder(calls, "doomed")
    for_shop = sync_recorder(calls, "for_shop")
    for_other = sync_recorder(calls, "for_other")
    last = sync_recorder(calls, "last")
    sig.connect(first)
    sig.connect(doomed, sender=shop)
    sig.connect(for_shop, sender=shop)
    sig.connect(doomed)
    sig.connect(for_other, sender=other)
    with connect_in_progress(sig):  # as if the collection ran inside another thread's connect()
        del doomed
        gc.collect()
    sig.connect(last)  # prunes everything that died meanwhile, then connects
    assert sig.receivers_for(shop) == [first, for_shop, last]
    assert sig.receivers_for(other) == [first, for_other, last]
    assert sig.receivers_for(None) == [first, last]
    assert receivers(await sig.send(shop)) == [first, for_shop, last]
    assert calls == ["first", "for_shop", "last"]


def test_per_object_connections_come_and_go_one_by_one() -> None:
    """Connections per object (a sender each) are added, disconnected and collected alone."""
    sig = AsyncSignal("per-object")
    handler = sync_recorder([], "h")
    common = sync_recorder([], "common")
    sig.connect(common)
    jobs = [Shop() for _ in range(200)]
    for job in jobs:
        sig.connect(handler, sender=job)
    assert all(sig.receivers_for(job) == [common, handler] for job in jobs)
    for job in jobs[:50]:
        assert sig.disconnect(handler, sender=job)
        assert not sig.disconnect(handler, sender=job)
    assert all(sig.receivers_for(job) == [common] for job in jobs[:50])
    del jobs[50:100]
    gc.collect()
    assert all(sig.receivers_for(job) == [common, handler] for job in jobs[50:])
    sig.disconnect(common)
    assert all(sig.receivers_for(job) == [handler] for job in jobs[50:])
    assert sig.receivers_for(None) == []


# -- a weak receiver collected before it ever ran is reported -----------------------------


def never_called(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings about receivers collected before they ever ran, in order."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "asignals"
        and record.levelno == logging.WARNING
        and "before it was ever called" in record.getMessage()
    ]


def connect_a_closure(sig: AsyncSignal) -> None:
    def closure(**kwargs: Any) -> None:  # gone when this function returns
        pass

    sig.connect(closure)


def connect_a_temporary_method(sig: AsyncSignal) -> None:
    sig.connect(Listener([]).on_sync)


def connect_a_lambda(sig: AsyncSignal) -> None:
    sig.connect(lambda **kwargs: None)


def connect_a_temporary_callable(sig: AsyncSignal) -> None:
    sig.connect(CallableListener([]))


def connect_a_cycle(sig: AsyncSignal) -> None:
    listener = Listener([])
    listener.cycle = listener  # type: ignore[attr-defined]  # only the collector frees it
    sig.connect(listener.on_async)


@pytest.mark.parametrize(
    ("connect", "named"),
    [
        (connect_a_lambda, f"{__name__}.connect_a_lambda.<locals>.<lambda>"),
        (connect_a_closure, f"{__name__}.connect_a_closure.<locals>.closure"),
        (connect_a_temporary_method, f"{__name__}.Listener.on_sync"),
        (connect_a_temporary_callable, f"<{__name__}.CallableListener object at 0x"),
        (connect_a_cycle, f"{__name__}.Listener.on_async"),
    ],
    ids=["lambda", "closure", "temporary-method", "temporary-callable", "cycle"],
)
async def test_a_weak_receiver_collected_before_it_ever_ran_is_reported(
    connect: Any, named: str, caplog: pytest.LogCaptureFixture
) -> None:
    sig = AsyncSignal("order_paid")
    keep = sync_recorder([], "keep")
    sig.connect(keep)
    for order in (1, 2):  # sends before it was connected count for nothing
        await sig.send(Shop, order=order)
    with caplog.at_level(logging.WARNING, logger="asignals"):
        connect(sig)
        gc.collect()
        (message,) = never_called(caplog)
    assert message.startswith(f"Receiver {named}"), message  # named by what it was: it is gone
    assert "of <AsyncSignal 'order_paid'> was garbage-collected before it was ever called" in (
        message
    )
    assert "Connect it with weak=False" in message
    assert receivers(await sig.send(Shop, order=3)) == [keep]


@pytest.mark.parametrize("mode", [*MODES, "send_sync", "send_robust_sync"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_weak_receiver_that_ran_is_collected_silently(
    mode: str, is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sig = AsyncSignal("order_paid")
    calls: list[str] = []
    recorder = async_recorder if is_async else sync_recorder
    keep = recorder(calls, "keep")
    sig.connect(keep)
    await sig.send(Shop, order=0)
    await sig.send(Shop, order=0)  # the sends have settled on their shortcut, which the
    calls.clear()  # next one takes: same payload length, a plan of the same kind
    with caplog.at_level(logging.WARNING, logger="asignals"):
        handler = recorder(calls, "h")
        sig.connect(handler)
        if mode.endswith("_sync"):  # from a worker thread: run on this loop
            await anyio.to_thread.run_sync(lambda: getattr(sig, mode)(Shop, order=1))
        else:
            await sender_of(sig, cast(Mode, mode))(Shop, order=1)
        del handler
        gc.collect()
    assert sorted(calls) == ["h", "keep"]  # (gather on trio starts them in any order)
    assert never_called(caplog) == []


async def test_a_receiver_reached_only_through_the_send_shortcut_is_collected_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The send shortcut (the loops remembered for the last payload length and plan kind)
    writes nothing per send: the first send after a weak connect notes it, for every
    sender's plan."""
    sig = AsyncSignal("order_paid")
    shop, bank = Shop(), Shop()
    calls: list[str] = []
    for_shop, for_bank = sync_recorder(calls, "shop"), sync_recorder(calls, "bank")
    with caplog.at_level(logging.WARNING, logger="asignals"):
        sig.connect(for_shop, sender=shop)
        sig.connect(for_bank, sender=bank)
        await sig.send(shop, order=1)  # chooses its loops
        await sig.send(bank, order=2)  # another plan of the same kind: the shortcut
        del for_bank
        gc.collect()
    assert calls == ["shop", "bank"]
    assert never_called(caplog) == []


async def test_a_receiver_for_one_sender_that_ran_after_a_send_from_another_is_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first send comes from a sender nobody listens to (it calls nobody, so it hands
    no receiver a plan); the next ones reach the receiver: it ran, so its death is quiet."""
    sig = AsyncSignal("order_paid")
    shop, bank = Shop(), Shop()
    calls: list[str] = []
    for_shop = sync_recorder(calls, "shop")
    with caplog.at_level(logging.WARNING, logger="asignals"):
        sig.connect(for_shop, sender=shop)
        await sig.send(bank, order=1)
        await sig.send(shop, order=2)
        await sig.send(shop, order=3)
        del for_shop
        gc.collect()
    assert calls == ["shop", "shop"]
    assert never_called(caplog) == []


async def test_disconnected_and_strong_receivers_are_never_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("order_paid")
    shop = Shop()
    calls: list[str] = []
    with caplog.at_level(logging.WARNING, logger="asignals"):
        handler = sync_recorder(calls, "h")
        sig.connect(handler)
        assert sig.disconnect(handler)
        del handler
        sig.connect(lambda **kwargs: calls.append("strong"), weak=False)
        kept = sync_recorder(calls, "kept")
        sig.connect(kept, sender=shop)
        del shop  # its sender dies, not the receiver
        gc.collect()
    assert never_called(caplog) == []
    assert receivers(await sig.send(Shop)) != []
    assert calls == ["strong"]


async def test_the_same_mistake_is_reported_once_per_signal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lambda connected per request would otherwise log on every request."""
    first, second = AsyncSignal("first"), AsyncSignal("second")
    with caplog.at_level(logging.WARNING, logger="asignals"):
        for _ in range(3):
            connect_a_lambda(first)
            connect_a_lambda(second)
            gc.collect()
        connect_a_closure(first)
    assert [m.split(" was ")[0] for m in never_called(caplog)] == [
        f"Receiver {__name__}.connect_a_lambda.<locals>.<lambda> of <AsyncSignal 'first'>",
        f"Receiver {__name__}.connect_a_lambda.<locals>.<lambda> of <AsyncSignal 'second'>",
        f"Receiver {__name__}.connect_a_closure.<locals>.closure of <AsyncSignal 'first'>",
    ]


async def test_a_death_while_a_connect_holds_the_lock_is_reported_by_the_next_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("order_paid")
    calls: list[str] = []
    with caplog.at_level(logging.WARNING, logger="asignals"):
        handler = sync_recorder(calls, "h")
        sig.connect(handler)
        with connect_in_progress(sig):  # the collector runs while a connect() holds the lock
            del handler
            gc.collect()
        assert never_called(caplog) == []
        keep = sync_recorder(calls, "keep")
        sig.connect(keep)  # prunes it, and reports it (outside the lock)
    (message,) = never_called(caplog)
    assert message.startswith("Receiver helpers.sync_recorder.h of <AsyncSignal 'order_paid'>")
    assert receivers(await sig.send(Shop)) == [keep]
