"""Hostile input: receivers that cannot be described, numbers too large for a
float, reference cycles through tracebacks, autodiscover(module="__init__")."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio.lowlevel
import pytest
from helpers import ROBUST_MODES, Mode, sender_of, sync_recorder

from asignals import AsyncSignal, autodiscover

pytestmark = pytest.mark.anyio


class Payload:
    """A payload item that can be weakly referenced, to see when it is freed."""


@contextmanager
def no_cycle_collector() -> Iterator[None]:
    """Only reference counting frees objects inside: a cycle keeps them alive."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# -- receivers that cannot be described -------------------------------------------------------


class Undescribable:
    """A callable whose __repr__ and __qualname__ raise."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __getattribute__(self, name: str) -> Any:
        if name == "__qualname__":
            raise RuntimeError("no qualname")
        return object.__getattribute__(self, name)

    def __call__(self, **kwargs: Any) -> None:
        raise ValueError("receiver failed")


class UndescribableWithoutKwargs(Undescribable):
    def __call__(self) -> None:  # type: ignore[override]
        raise NotImplementedError


@pytest.mark.parametrize("mode", ROBUST_MODES)
async def test_undescribable_failing_receiver_does_not_stop_delivery(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    bad = Undescribable()
    later = sync_recorder(calls, "later")
    sig.connect(bad, weak=False)
    sig.connect(later)
    with caplog.at_level(logging.ERROR, logger="asignals"):
        responses = await sender_of(sig, mode)()
    assert calls == ["later"]
    assert [type(response) for _, response in responses] == [ValueError, type(None)]
    (record,) = [r for r in caplog.records if r.name == "asignals"]
    assert "Undescribable object at 0x" in record.getMessage()


async def test_logging_that_fails_does_not_stop_delivery() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []

    def fails(**kwargs: Any) -> None:
        raise ValueError("receiver failed")

    def broken_filter(record: logging.LogRecord) -> bool:
        raise RuntimeError("broken log filter")

    later = sync_recorder(calls, "later")
    sig.connect(fails)
    sig.connect(later)
    asignals_logger = logging.getLogger("asignals")
    asignals_logger.addFilter(broken_filter)
    try:
        responses = await sig.send_robust()
    finally:
        asignals_logger.removeFilter(broken_filter)
    assert calls == ["later"]
    assert isinstance(responses[0][1], ValueError)


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_connect_error_for_an_undescribable_receiver_is_a_type_error() -> None:
    sig = AsyncSignal("s")
    with pytest.raises(TypeError, match=r"add \*\*kwargs to .*UndescribableWithoutKwargs"):
        sig.connect(UndescribableWithoutKwargs(), weak=False)


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_connect_error_for_an_undescribable_non_callable_is_a_type_error() -> None:
    class NotCallable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(TypeError, match=r"must be callable, got .*NotCallable object at 0x"):
        AsyncSignal("s").connect(NotCallable())  # type: ignore[type-var]


# -- numbers too large for a float -------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
@pytest.mark.parametrize("seconds", [10**400, float("inf")], ids=["huge-int", "inf"])
async def test_connect_rejects_a_timeout_no_timer_can_take(seconds: float) -> None:
    async def receiver(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()

    with pytest.raises(ValueError, match="positive, finite number of seconds"):
        AsyncSignal("s").connect(receiver, timeout=seconds)


# -- no reference cycles through tracebacks ----------------------------------------------------


@pytest.mark.parametrize("mode", ROBUST_MODES)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_returned_exception_does_not_keep_the_payload_alive(
    mode: Mode, is_async: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("asignals"), "disabled", True)  # no log records
    sig = AsyncSignal("s")

    def fails(**kwargs: Any) -> None:
        raise ValueError("receiver failed")

    async def fails_async(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("receiver failed")

    sig.connect(fails_async if is_async else fails)
    with no_cycle_collector():
        payload = Payload()
        alive = weakref.ref(payload)
        responses = await sender_of(sig, mode)(None, order=payload)
        error = responses[0][1]
        assert isinstance(error, ValueError)
        assert error.__traceback__ is not None  # the receiver's frames are still there
        del payload, responses, error
        assert alive() is None, "a reference cycle keeps the payload alive"


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_autodiscover_rejects_module_init() -> None:
    with pytest.raises(ValueError, match=r"__init__\.py a second time"):
        autodiscover("json", module="__init__")
