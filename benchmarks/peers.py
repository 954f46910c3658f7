"""Peer libraries, one adapter per entry point, all with the same interface.

Each adapter is an :class:`~._model.Implementation`: it connects the case's receivers to a
fresh signal of its library in that library's default mode (weak references where the
library has them) and returns a batch of sends written the way that library's users write
them. When the library cannot run a case, the adapter says why (``n/a``) instead of
dropping out of the table: not installed, receivers of a kind it does not call, or an event
loop it does not run on.

Peers are imported lazily, so the suite runs (and reports them as n/a) without them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Any

from ._model import Batch, Implementation, Mode, NotApplicable, Setup

Connector = Callable[[list[Callable[..., Any]]], object]
"""Connect receivers to a new signal of one library; return the signal."""

PEER_DISTRIBUTIONS = {
    "django": "Django",
    "blinker": "blinker",
    "aiosignal": "aiosignal",
    "async_signals": "async-signals",
    "psygnal": "psygnal",
}

NOT_COMPARED: dict[Mode, str] = {
    "send_robust": "blinker, aiosignal and psygnal have no robust send",
    "gather": (
        "blinker, aiosignal, async-signals and psygnal have no concurrent send; "
        "Django's asend gathers coroutine receivers, so it is listed here too"
    ),
    "gather_robust": (
        "blinker, aiosignal, async-signals and psygnal have no concurrent robust send; "
        "Django's asend_robust gathers coroutine receivers, so it is listed here too"
    ),
}


def missing(module: str) -> NotApplicable | None:
    """``n/a`` when *module* is not installed, with the command that installs it."""
    if importlib.util.find_spec(module) is None:
        return NotApplicable(
            f"{PEER_DISTRIBUTIONS[module]} is not installed (pip install -e '.[bench]')"
        )
    return None


def version(module: str) -> str:
    try:
        return importlib.metadata.version(PEER_DISTRIBUTIONS[module])
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# -- connecting: shared by the dispatch and the memory sections ---------------------------


def connect_django(receivers: list[Callable[..., Any]]) -> object:
    from django.dispatch import Signal

    signal = Signal()
    for r in receivers:
        signal.connect(r)  # weak=True by default
    return signal


def connect_blinker(receivers: list[Callable[..., Any]]) -> object:
    import blinker

    signal = blinker.Signal()
    for r in receivers:
        signal.connect(r)  # weak=True by default
    return signal


def connect_aiosignal(receivers: list[Callable[..., Any]]) -> object:
    from aiosignal import Signal

    signal = Signal(owner=None)  # a list: strong references only
    signal.extend(receivers)
    signal.freeze()  # send() refuses to run before
    return signal


def connect_async_signals(receivers: list[Callable[..., Any]]) -> object:
    from async_signals import Signal

    signal = Signal()
    for r in receivers:
        signal.connect(r)  # weak=True by default
    return signal


def connect_psygnal(receivers: list[Callable[..., Any]]) -> object:
    from psygnal import SignalInstance

    signal = SignalInstance((object, object))  # emit(sender, value)
    for r in receivers:
        signal.connect(r)
    return signal


CONNECTORS: dict[str, tuple[str, Connector]] = {
    "django": ("django", connect_django),
    "blinker": ("blinker", connect_blinker),
    "aiosignal": ("aiosignal", connect_aiosignal),
    "async-signals": ("async_signals", connect_async_signals),
    "psygnal": ("psygnal", connect_psygnal),
}
"""Row name -> (module, connector), for the memory footprint table."""


# -- sending ------------------------------------------------------------------------------

_NO_ASYNC_ON_TRIO = "uses asyncio.gather and asyncio threads: asyncio event loops only"


def _django_asend(robust: bool) -> Callable[[Setup], Batch | NotApplicable]:
    def build(setup: Setup) -> Batch | NotApplicable:
        if (na := missing("django")) is not None:
            return na
        if setup.case.loop == "trio":
            return NotApplicable(f"Signal.asend {_NO_ASYNC_ON_TRIO}")
        signal: Any = connect_django(setup.receivers)
        sender, payload = setup.sender, setup.payload
        if robust:

            async def batch(k: int) -> None:
                for _ in range(k):
                    await signal.asend_robust(sender, **payload)

        else:

            async def batch(k: int) -> None:
                for _ in range(k):
                    await signal.asend(sender, **payload)

        return batch

    return build


def _django_send(robust: bool) -> Callable[[Setup], Batch | NotApplicable]:
    def build(setup: Setup) -> Batch | NotApplicable:
        if (na := missing("django")) is not None:
            return na
        if setup.case.kind != "sync":
            return NotApplicable(
                "Signal.send runs coroutine receivers through async_to_sync, which refuses "
                "to run inside an event loop"
            )
        signal: Any = connect_django(setup.receivers)
        sender, payload = setup.sender, setup.payload
        if robust:

            async def batch(k: int) -> None:
                for _ in range(k):
                    signal.send_robust(sender, **payload)

        else:

            async def batch(k: int) -> None:
                for _ in range(k):
                    signal.send(sender, **payload)

        return batch

    return build


def _blinker_send_async(setup: Setup) -> Batch | NotApplicable:
    if (na := missing("blinker")) is not None:
        return na
    if setup.case.kind == "sync":
        return NotApplicable(
            "send_async refuses sync receivers unless given a _sync_wrapper (see blinker send)"
        )
    signal: Any = connect_blinker(setup.receivers)
    sender, payload = setup.sender, setup.payload

    async def batch(k: int) -> None:
        for _ in range(k):
            await signal.send_async(sender, **payload)

    return batch


def _blinker_send(setup: Setup) -> Batch | NotApplicable:
    if (na := missing("blinker")) is not None:
        return na
    if setup.case.kind != "sync":
        return NotApplicable(
            "send refuses coroutine receivers unless given an _async_wrapper "
            "(see blinker send_async)"
        )
    signal: Any = connect_blinker(setup.receivers)
    sender, payload = setup.sender, setup.payload

    async def batch(k: int) -> None:
        for _ in range(k):
            signal.send(sender, **payload)

    return batch


def _aiosignal_send(setup: Setup) -> Batch | NotApplicable:
    if (na := missing("aiosignal")) is not None:
        return na
    if setup.case.kind == "sync":
        return NotApplicable("awaits what every receiver returns: sync receivers are not supported")
    signal: Any = connect_aiosignal(setup.receivers)
    sender, payload = setup.sender, setup.payload

    async def batch(k: int) -> None:
        for _ in range(k):
            await signal.send(sender, **payload)

    return batch


def _async_signals_send(robust: bool) -> Callable[[Setup], Batch | NotApplicable]:
    def build(setup: Setup) -> Batch | NotApplicable:
        if (na := missing("async_signals")) is not None:
            return na
        signal: Any = connect_async_signals(setup.receivers)
        sender, payload = setup.sender, setup.payload
        if robust:

            async def batch(k: int) -> None:
                for _ in range(k):
                    await signal.send_robust(sender, **payload)

        else:

            async def batch(k: int) -> None:
                for _ in range(k):
                    await signal.send(sender, **payload)

        return batch

    return build


def _psygnal_emit(setup: Setup) -> Batch | NotApplicable:
    if (na := missing("psygnal")) is not None:
        return na
    if setup.case.kind != "sync":
        return NotApplicable(
            "emit() does not await coroutine receivers (it hands them to a background task)"
        )
    signal: Any = connect_psygnal(setup.receivers)
    sender = setup.sender
    (value,) = setup.payload.values()  # psygnal has no keyword payload: emit(sender, value)

    async def batch(k: int) -> None:
        for _ in range(k):
            signal.emit(sender, value)

    return batch


def _shared(_: Mode) -> str:
    return "same code in every mode"


PEERS: list[Implementation] = [
    Implementation(
        "django asend",
        "peer",
        frozenset({"send", "gather"}),
        _django_asend(robust=False),
        "Django Signal.asend: sync receivers one after another in a worker thread "
        "(sync_to_async), coroutine receivers concurrently (asyncio.gather)",
        _shared,
    ),
    Implementation(
        "django asend_robust",
        "peer",
        frozenset({"send_robust", "gather_robust"}),
        _django_asend(robust=True),
        "Django Signal.asend_robust: as asend, exceptions returned",
        _shared,
    ),
    Implementation(
        "django send",
        "peer",
        frozenset({"send"}),
        _django_send(robust=False),
        "Django Signal.send (sync), called from a coroutine",
    ),
    Implementation(
        "django send_robust",
        "peer",
        frozenset({"send_robust"}),
        _django_send(robust=True),
        "Django Signal.send_robust (sync), called from a coroutine",
    ),
    Implementation(
        "blinker send_async",
        "peer",
        frozenset({"send"}),
        _blinker_send_async,
        "blinker Signal.send_async: awaits each coroutine receiver in turn",
    ),
    Implementation(
        "blinker send",
        "peer",
        frozenset({"send"}),
        _blinker_send,
        "blinker Signal.send (sync), called from a coroutine",
    ),
    Implementation(
        "aiosignal send",
        "peer",
        frozenset({"send"}),
        _aiosignal_send,
        "aiosignal Signal.send (frozen list, strong references, returns nothing)",
    ),
    Implementation(
        "async-signals send",
        "peer",
        frozenset({"send"}),
        _async_signals_send(robust=False),
        "async_signals.Signal.send: Django's dispatcher made async, in order",
    ),
    Implementation(
        "async-signals send_robust",
        "peer",
        frozenset({"send_robust"}),
        _async_signals_send(robust=True),
        "async_signals.Signal.send_robust",
    ),
    Implementation(
        "psygnal emit",
        "peer",
        frozenset({"send"}),
        _psygnal_emit,
        "psygnal SignalInstance.emit (sync, positional payload, returns nothing)",
    ),
]
