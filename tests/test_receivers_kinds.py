"""Every kind of callable is called correctly, and awaited when it is a coroutine receiver."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import MODES, Mode, sender_of

from asignals import AsyncSignal

pytestmark = pytest.mark.anyio

Seen = list[dict[str, Any]]
Factory = Callable[[Seen], Callable[..., Any]]


class Shop:
    pass


# Each factory returns a receiver that records the keyword arguments it got and returns a
# marker. Coroutine receivers only produce their marker once awaited (a checkpoint first),
# so a receiver that was called but not awaited would show up as a coroutine object.


def plain_function(seen: Seen) -> Callable[..., Any]:
    def receive(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "result"

    return receive


def coroutine_function(seen: Seen) -> Callable[..., Any]:
    async def receive(**kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        seen.append(kwargs)
        return "result"

    return receive


class SyncMethods:
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def receive(self, **kwargs: Any) -> str:
        self.seen.append(kwargs)
        return "result"

    def __call__(self, **kwargs: Any) -> str:
        return self.receive(**kwargs)


class AsyncMethods:
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def receive(self, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        self.seen.append(kwargs)
        return "result"

    async def __call__(self, **kwargs: Any) -> str:
        return await self.receive(**kwargs)


STATIC_SEEN: Seen = []


class Static:
    @staticmethod
    def sync_static(**kwargs: Any) -> str:
        STATIC_SEEN.append(kwargs)
        return "result"

    @staticmethod
    async def async_static(**kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        STATIC_SEEN.append(kwargs)
        return "result"

    @classmethod
    def sync_class(cls, **kwargs: Any) -> str:
        assert cls is Static
        STATIC_SEEN.append(kwargs)
        return "result"

    @classmethod
    async def async_class(cls, **kwargs: Any) -> str:
        assert cls is Static
        await anyio.lowlevel.checkpoint()
        STATIC_SEEN.append(kwargs)
        return "result"


def bound_sync_method(seen: Seen) -> Callable[..., Any]:
    return SyncMethods(seen).receive


def bound_async_method(seen: Seen) -> Callable[..., Any]:
    return AsyncMethods(seen).receive


def sync_callable_object(seen: Seen) -> Callable[..., Any]:
    return SyncMethods(seen)


def async_callable_object(seen: Seen) -> Callable[..., Any]:
    return AsyncMethods(seen)


def wraps_sync_wrapper_around_coroutine_function(seen: Seen) -> Callable[..., Any]:
    inner = coroutine_function(seen)

    @functools.wraps(inner)
    def wrapper(**kwargs: Any) -> Any:
        return inner(**kwargs)  # a plain def returning the coroutine

    return wrapper


def static_or_class(attribute: str) -> Factory:
    def factory(seen: Seen) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(Static, attribute)
        return method

    factory.__name__ = attribute
    return factory


def partial_of(factory: Factory) -> Factory:
    def make(seen: Seen) -> Callable[..., Any]:
        return functools.partial(factory(seen), bound="yes")

    make.__name__ = f"partial({factory.__name__})"
    return make


def partial_of_partial(factory: Factory) -> Factory:
    def make(seen: Seen) -> Callable[..., Any]:
        return functools.partial(functools.partial(factory(seen), bound="yes"), outer="yes")

    make.__name__ = f"partial(partial({factory.__name__}))"
    return make


BASE: list[Factory] = [
    plain_function,
    coroutine_function,
    bound_sync_method,
    bound_async_method,
    sync_callable_object,
    async_callable_object,
]
STATIC: list[Factory] = [
    static_or_class(name) for name in ("sync_static", "async_static", "sync_class", "async_class")
]
KINDS: list[Factory] = [
    *BASE,
    *(partial_of(f) for f in BASE),
    *(partial_of_partial(f) for f in BASE),
    wraps_sync_wrapper_around_coroutine_function,
    partial_of(wraps_sync_wrapper_around_coroutine_function),
    *STATIC,
    *(partial_of(f) for f in STATIC),
]


def extra_for(factory: Factory) -> dict[str, str]:
    name = factory.__name__
    if name.startswith("partial(partial("):
        return {"bound": "yes", "outer": "yes"}
    if name.startswith("partial("):
        return {"bound": "yes"}
    return {}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("factory", KINDS, ids=[f.__name__ for f in KINDS])
async def test_receiver_kind_is_called_and_awaited(factory: Factory, mode: Mode) -> None:
    sig = AsyncSignal("kinds")
    seen: Seen = []
    STATIC_SEEN.clear()
    handler = factory(seen)  # keep it referenced: connected weakly
    assert sig.connect(handler, sender=Shop) is handler
    assert sig.receivers_for(Shop) == [handler]

    responses = await sender_of(sig, mode)(Shop, order=42)

    assert len(responses) == 1
    got_receiver, response = responses[0]
    assert got_receiver is handler or got_receiver == handler  # bound methods compare equal
    assert response == "result"
    records = STATIC_SEEN if any(f.__name__ in factory.__name__ for f in STATIC) else seen
    assert records == [{"signal": sig, "sender": Shop, "order": 42, **extra_for(factory)}]


@pytest.mark.parametrize("mode", MODES)
async def test_mixed_kinds_in_one_send_keep_connection_order(mode: Mode) -> None:
    sig = AsyncSignal("mixed")
    seen: Seen = []
    handlers = [factory(seen) for factory in BASE]
    for handler in handlers:
        sig.connect(handler)
    responses = await sender_of(sig, mode)(Shop)
    assert [r for r, _ in responses] == handlers
    assert [v for _, v in responses] == ["result"] * len(BASE)
    assert len(seen) == len(BASE)


async def test_sync_receiver_returning_an_awaitable_is_not_awaited() -> None:
    """Only coroutine receivers are awaited: a sync receiver's return value is kept as is."""
    sig = AsyncSignal("s")
    event = anyio.Event()

    def handler(**kwargs: Any) -> anyio.Event:
        return event

    sig.connect(handler)
    assert await sig.send() == [(handler, event)]


async def test_self_referencing_wrapped_chain_is_a_sync_receiver() -> None:
    """A __wrapped__ loop must not hang the coroutine detection."""
    sig = AsyncSignal("s")
    seen: Seen = []

    def odd(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "odd"

    odd.__wrapped__ = odd  # type: ignore[attr-defined]
    sig.connect(odd)
    assert await sig.send(Shop) == [(odd, "odd")]
    assert seen == [{"signal": sig, "sender": Shop}]


class AsyncDecorator:
    """A class-based decorator: an async __call__ around a sync function it __wrapped__s."""

    def __init__(self, func: Callable[..., Any]) -> None:
        functools.update_wrapper(self, func)

    async def __call__(self, **kwargs: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return self.__wrapped__(**kwargs)  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
async def test_async_call_wins_over_a_sync_wrapped_function(mode: Mode) -> None:
    sig = AsyncSignal("decorated")
    seen: Seen = []
    handler = AsyncDecorator(plain_function(seen))
    sig.connect(handler)
    assert await sender_of(sig, mode)(Shop, order=1) == [(handler, "result")]
    assert seen == [{"signal": sig, "sender": Shop, "order": 1}]


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
@pytest.mark.parametrize("mode", MODES)
async def test_asgiref_sync_to_async_is_a_coroutine_receiver(mode: Mode) -> None:
    from asgiref.sync import sync_to_async

    sig = AsyncSignal("asgiref")
    seen: Seen = []
    handler = sync_to_async(plain_function(seen))
    sig.connect(handler)
    assert await sender_of(sig, mode)(Shop, order=1) == [(handler, "result")]
    assert seen == [{"signal": sig, "sender": Shop, "order": 1}]
