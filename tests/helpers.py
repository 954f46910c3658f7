"""Shared helpers for the asignals tests (plain functions, no fixtures)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import anyio
import anyio.lowlevel

from asignals import AsyncSignal

Mode = Literal["send", "send_robust", "gather", "gather_robust"]
MODES: tuple[Mode, ...] = ("send", "send_robust", "gather", "gather_robust")
ROBUST_MODES: tuple[Mode, ...] = ("send_robust", "gather_robust")
STRICT_MODES: tuple[Mode, ...] = ("send", "gather")

Responses = list[tuple[Callable[..., Any], Any]]


def sender_of(signal: AsyncSignal, mode: Mode) -> Callable[..., Coroutine[Any, Any, Responses]]:
    """The bound send method called *mode* (``signal.send``, ``signal.gather``, ...)."""
    method: Callable[..., Coroutine[Any, Any, Responses]] = getattr(signal, mode)
    return method


def sync_recorder(calls: list[str], name: str, result: Any = None) -> Callable[..., Any]:
    """A sync receiver appending *name* to *calls* and returning *result*.

    Keep a reference to it: signals hold receivers weakly by default.
    """

    def receive(**kwargs: Any) -> Any:
        calls.append(name)
        return result

    receive.__qualname__ = f"sync_recorder.{name}"
    return receive


def async_recorder(calls: list[str], name: str, result: Any = None) -> Callable[..., Any]:
    """A coroutine receiver appending *name* to *calls* (after a checkpoint)."""

    async def receive(**kwargs: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        calls.append(name)
        return result

    receive.__qualname__ = f"async_recorder.{name}"
    return receive


def receivers(responses: Responses) -> list[Callable[..., Any]]:
    return [receiver for receiver, _ in responses]


def values(responses: Responses) -> list[Any]:
    return [response for _, response in responses]


def state(signal: AsyncSignal, *senders: Any) -> list[tuple[list[Callable[..., Any]], bool]]:
    """Everything observable about *signal*'s connections, for before/after comparisons."""
    return [(signal.receivers_for(s), signal.has_listeners(s)) for s in (None, *senders)]


def connect_every_kind(signal: AsyncSignal, seen: list[dict[str, Any]], sender: Any) -> list[Any]:
    """Connect one receiver of each calling convention, each recording the payload it got.

    A sync one, a coroutine one for *sender*, one with a timeout, one in a worker thread
    for *sender*; they answer "inline", "coroutine", "timeout", "thread". Returns them:
    keep them alive (signals hold receivers weakly).
    """

    def payload_of(named: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in named.items() if k not in ("signal", "sender")}

    def inline(**kwargs: Any) -> str:
        assert kwargs["signal"] is signal
        seen.append(payload_of(kwargs))
        return "inline"

    async def coroutine(**kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        seen.append(payload_of(kwargs))
        return "coroutine"

    async def with_timeout(**kwargs: Any) -> str:
        seen.append(payload_of(kwargs))
        return "timeout"

    def in_thread(**kwargs: Any) -> str:
        assert threading.current_thread() is not threading.main_thread()
        seen.append(payload_of(kwargs))
        return "thread"

    signal.connect(inline)
    signal.connect(coroutine, sender=sender)
    signal.connect(with_timeout, timeout=5)
    signal.connect(in_thread, sender=sender, to_thread=True)
    return [inline, coroutine, with_timeout, in_thread]


@contextmanager
def connect_in_progress(signal: AsyncSignal) -> Iterator[None]:
    """As if another thread were inside ``signal.connect()`` while the block runs.

    Receivers and senders that die meanwhile are not pruned at once: the next change
    (connect or disconnect) prunes them. This is the one place the tests take the
    signal's private lock to stage that race deterministically.
    """
    with signal._lock:
        yield
