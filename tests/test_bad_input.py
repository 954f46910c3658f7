"""Bad input gets a clear error and leaves the signal exactly as it was."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import MODES, Mode, sender_of, state, sync_recorder

from asignals import AsyncSignal

pytestmark = pytest.mark.anyio

NAME = "<AsyncSignal 'orders'>"


class Shop:
    pass


class NoWeakrefCallable:
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> str:
        return "called"


class NoWeakrefMethods:
    __slots__ = ()

    def method(self, **kwargs: Any) -> str:
        return "method"


def no_kwargs(sender: Any, signal: Any) -> None:
    pass


async def async_no_kwargs(sender: Any) -> None:
    pass


async def coroutine_receiver(**kwargs: Any) -> None:
    pass


def sync_receiver(**kwargs: Any) -> None:
    pass


Calls = list[str]


@pytest.fixture
def calls() -> Calls:
    return []


@pytest.fixture
def sig(calls: Calls) -> Iterator[AsyncSignal]:
    """A signal with some connections, whose state must survive every bad call."""
    signal = AsyncSignal("orders")
    keep = [sync_recorder(calls, "a"), sync_recorder(calls, "b")]
    signal.connect(keep[0])
    signal.connect(keep[1], sender=Shop, dispatch_uid="b")
    signal.connect(sync_receiver, sender=Shop, weak=False)
    yield signal
    del keep


def assert_unchanged(signal: AsyncSignal, before: Any) -> None:
    assert state(signal, Shop) == before


# -- connect -------------------------------------------------------------------------------


def test_non_callable_receiver(sig: AsyncSignal) -> None:
    before = state(sig, Shop)
    for bad in (5, "receiver", None, [sync_receiver]):
        with pytest.raises(TypeError, match="callable") as info:
            sig.connect(bad)  # type: ignore[type-var]
        assert NAME in str(info.value)
    assert_unchanged(sig, before)


@pytest.mark.parametrize("bad", [no_kwargs, async_no_kwargs, lambda sender: None])
def test_receiver_without_var_keyword(sig: AsyncSignal, bad: Callable[..., Any]) -> None:
    before = state(sig, Shop)
    with pytest.raises(TypeError, match=r"\*\*kwargs") as info:
        sig.connect(bad, weak=False)
    assert NAME in str(info.value)
    assert_unchanged(sig, before)


def test_partial_without_var_keyword_names_its_function(sig: AsyncSignal) -> None:
    before = state(sig, Shop)
    with pytest.raises(TypeError, match=r"functools\.partial\(.*no_kwargs") as info:
        sig.connect(functools.partial(no_kwargs, signal=None), weak=False)
    assert "**kwargs" in str(info.value)
    assert_unchanged(sig, before)


def test_bound_method_without_var_keyword(sig: AsyncSignal) -> None:
    class Listener:
        def on(self, sender: Any) -> None:
            pass

    before = state(sig, Shop)
    with pytest.raises(TypeError, match=r"\*\*kwargs.*Listener\.on"):
        sig.connect(Listener().on)
    assert_unchanged(sig, before)


def test_weak_receiver_that_cannot_be_weakly_referenced(sig: AsyncSignal) -> None:
    before = state(sig, Shop)
    for bad in (NoWeakrefCallable(), NoWeakrefMethods().method):
        with pytest.raises(TypeError, match="weak=False") as info:
            sig.connect(bad)
        assert NAME in str(info.value)
        with pytest.raises(TypeError, match="weak=False"):
            sig.connect(bad, sender=Shop, dispatch_uid="other")
    assert_unchanged(sig, before)


async def test_weak_false_accepts_non_weakrefable_receivers() -> None:
    sig = AsyncSignal("s")
    callable_object = NoWeakrefCallable()
    bound = NoWeakrefMethods().method
    sig.connect(callable_object, weak=False)
    sig.connect(bound, weak=False)
    assert [v for _, v in await sig.send()] == ["called", "method"]
    assert sig.disconnect(bound)
    assert sig.disconnect(callable_object)


async def test_builtin_without_signature_is_accepted() -> None:
    """A callable whose signature cannot be inspected gets the benefit of the doubt."""
    sig = AsyncSignal("s")
    receiver = dict  # inspect.signature(dict) raises ValueError
    sig.connect(receiver, weak=False)
    assert await sig.send(Shop, x=1) == [(dict, {"signal": sig, "sender": Shop, "x": 1})]


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        pytest.param(-1, ValueError, id="negative"),
        pytest.param(0, ValueError, id="zero"),
        pytest.param(0.0, ValueError, id="zero-float"),
        pytest.param(float("nan"), ValueError, id="nan"),
        pytest.param(float("inf"), ValueError, id="inf"),
        pytest.param("1", TypeError, id="str"),
        pytest.param(True, TypeError, id="bool"),
        pytest.param([1], TypeError, id="list"),
    ],
)
@pytest.mark.parametrize("to_thread", [False, True], ids=["coroutine", "to_thread"])
def test_bad_timeout(
    sig: AsyncSignal, timeout: Any, error: type[Exception], to_thread: bool
) -> None:
    receiver = sync_receiver if to_thread else coroutine_receiver
    before = state(sig, Shop)
    with pytest.raises(error, match="timeout") as info:
        sig.connect(receiver, timeout=timeout, to_thread=to_thread)
    assert NAME in str(info.value)
    assert_unchanged(sig, before)


def test_timeout_on_inline_sync_receiver(sig: AsyncSignal) -> None:
    before = state(sig, Shop)
    with pytest.raises(ValueError, match="to_thread=True") as info:
        sig.connect(sync_receiver, timeout=1)
    assert NAME in str(info.value)
    assert_unchanged(sig, before)


def test_to_thread_with_coroutine_receiver(sig: AsyncSignal) -> None:
    before = state(sig, Shop)
    with pytest.raises(ValueError, match="to_thread") as info:
        sig.connect(coroutine_receiver, to_thread=True)
    assert NAME in str(info.value)
    with pytest.raises(ValueError, match="to_thread"):
        sig.connect(coroutine_receiver, to_thread=True, timeout=1)
    assert_unchanged(sig, before)


@pytest.mark.parametrize("uid", [["list"], {"a": 1}, {1, 2}, ("tuple", ["inner list"])])
def test_unhashable_dispatch_uid(sig: AsyncSignal, uid: Any) -> None:
    before = state(sig, Shop)
    with pytest.raises(TypeError, match="dispatch_uid") as info:
        sig.connect(sync_receiver, dispatch_uid=uid)
    assert NAME in str(info.value)
    assert_unchanged(sig, before)


def test_valid_timeouts_are_accepted() -> None:
    sig = AsyncSignal("s")
    sig.connect(coroutine_receiver, timeout=1)
    sig.connect(sync_receiver, timeout=0.5, to_thread=True)
    assert sig.receivers_for() == [coroutine_receiver, sync_receiver]


# -- AsyncSignal() --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1])
def test_max_concurrency_too_small(bad: int) -> None:
    with pytest.raises(ValueError, match="max_concurrency") as info:
        AsyncSignal("limited", max_concurrency=bad)
    assert "'limited'" in str(info.value)


@pytest.mark.parametrize("bad", ["2", 2.0, True, [2]])
def test_max_concurrency_wrong_type(bad: Any) -> None:
    with pytest.raises(TypeError, match="max_concurrency") as info:
        AsyncSignal("limited", max_concurrency=bad)
    assert "'limited'" in str(info.value)


@pytest.mark.parametrize("bad", ["", 5, b"name"])
def test_bad_signal_name(bad: Any) -> None:
    with pytest.raises(TypeError, match="name"):
        AsyncSignal(bad)


def test_repr_and_attributes() -> None:
    sig = AsyncSignal("order_paid", max_concurrency=3, doc="Sent once paid.")
    assert repr(sig) == "<AsyncSignal 'order_paid'>"
    assert sig.name == "order_paid"
    assert sig.max_concurrency == 3
    assert sig.__doc__ == "Sent once paid."
    assert AsyncSignal("x").max_concurrency is None


# -- sending -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_positional_payload(sig: AsyncSignal, calls: Calls, mode: Mode) -> None:
    before = state(sig, Shop)
    with pytest.raises(TypeError, match="keyword-only") as info:
        await sender_of(sig, mode)(Shop, 1)
    assert NAME in str(info.value)
    with pytest.raises(TypeError, match="keyword-only"):
        await sender_of(sig, mode)(Shop, 1, 2, order=3)
    assert calls == []
    assert_unchanged(sig, before)
    assert len(await sender_of(sig, mode)(Shop)) == 3  # still works


@pytest.mark.parametrize("mode", MODES)
async def test_sender_given_twice(sig: AsyncSignal, calls: Calls, mode: Mode) -> None:
    with pytest.raises(TypeError, match="sender") as info:
        await sender_of(sig, mode)(Shop, sender=object())
    assert NAME in str(info.value)
    with pytest.raises(TypeError, match="sender"):
        await sender_of(sig, mode)(Shop, sender=Shop)
    assert calls == []


@pytest.mark.parametrize("mode", MODES)
async def test_signal_is_a_reserved_payload_key(sig: AsyncSignal, calls: Calls, mode: Mode) -> None:
    with pytest.raises(TypeError, match="'signal' is reserved") as info:
        await sender_of(sig, mode)(Shop, signal="x")
    assert NAME in str(info.value)
    with pytest.raises(TypeError, match="'signal' is reserved"):
        await sender_of(sig, mode)(sender=Shop, signal=sig)
    assert calls == []


def test_max_concurrency_is_read_only() -> None:
    sig = AsyncSignal("limited", max_concurrency=2)
    with pytest.raises(AttributeError):
        sig.max_concurrency = 0  # type: ignore[misc]
    assert sig.max_concurrency == 2
