"""gather and gather_robust under cancellation: structured on asyncio, uvloop and trio alike.

Each test is one promise of design.md ("Concurrency is structured"): when gather returns or
raises, no receiver is still running (threads included), a receiver's error is never lost,
the caller's deadline is honoured even by a receiver's cleanup, and a KeyboardInterrupt or
SystemExit from a receiver reaches the caller.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from helpers import Mode, sender_of

from asignals import AsyncSignal

pytestmark = pytest.mark.anyio

GATHERS: tuple[Mode, ...] = ("gather", "gather_robust")


class ThreadProbe:
    """A blocking receiver for ``to_thread=True`` that records whether its thread finished."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()
        self.finished = threading.Event()

    def __call__(self, **kwargs: Any) -> str:
        self.started.set()
        time.sleep(self.seconds)
        self.finished.set()
        return "thread done"


async def until(condition: threading.Event) -> None:
    """Wait (bounded) for an event set in another thread."""
    assert await anyio.to_thread.run_sync(condition.wait, 5)


async def forever(**kwargs: Any) -> None:
    await anyio.sleep_forever()


# -- 1. a thread without a timeout is never abandoned ---------------------------------------


@pytest.mark.parametrize("mode", GATHERS)
async def test_cancelled_gather_returns_only_after_its_threads_finished(mode: Mode) -> None:
    sig = AsyncSignal("s")
    probes = [ThreadProbe(0.3), ThreadProbe(0.3)]
    for probe in probes:
        sig.connect(probe, to_thread=True)
    sig.connect(forever)
    with anyio.fail_after(10):
        with anyio.move_on_after(0.05) as scope:
            await sender_of(sig, mode)()
    assert scope.cancelled_caught
    assert all(probe.finished.is_set() for probe in probes), "gather left a thread running"


async def test_failed_gather_raises_only_after_its_threads_finished() -> None:
    sig = AsyncSignal("s")
    probe = ThreadProbe(0.3)

    async def fails_once_the_thread_runs(**kwargs: Any) -> None:
        await until(probe.started)
        raise ValueError("boom")

    sig.connect(probe, to_thread=True)
    sig.connect(fails_once_the_thread_runs)
    with anyio.fail_after(10), pytest.raises(ExceptionGroup) as info:
        await sig.gather()
    assert probe.finished.is_set(), "gather raised with a thread still running"
    assert [type(e) for e in info.value.exceptions] == [ValueError]


@pytest.mark.parametrize("mode", GATHERS)
async def test_thread_with_a_timeout_is_still_abandoned_on_cancellation(mode: Mode) -> None:
    """The one documented exception: a timeout means "do not wait for the thread"."""
    sig = AsyncSignal("s")
    probe = ThreadProbe(0.5)
    sig.connect(probe, to_thread=True, timeout=30)
    with anyio.fail_after(10):
        with anyio.move_on_after(0.05):
            await sender_of(sig, mode)()
        assert not probe.finished.is_set()
    probe.finished.wait(5)  # do not leave it running into the next test


# -- 2. an exception raised while being cancelled is not lost -------------------------------


async def test_error_raised_during_cancellation_reaches_the_caller() -> None:
    sig = AsyncSignal("s")

    async def fails_in_cleanup(**kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    sig.connect(fails_in_cleanup)
    sig.connect(forever)
    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as info:
        with anyio.move_on_after(0.05):
            await sig.gather()
    # As a trio nursery reports it: the error, without the cancellation it ended.
    assert [str(e) for e in info.value.exceptions] == ["cleanup failed"]


async def test_gather_robust_logs_an_error_raised_during_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("s")

    async def fails_in_cleanup(**kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    sig.connect(fails_in_cleanup)
    with caplog.at_level(logging.ERROR, logger="asignals"), anyio.fail_after(5):
        with anyio.move_on_after(0.05):
            await sig.gather_robust()
    (record,) = [r for r in caplog.records if r.name == "asignals"]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "cleanup failed"


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_native_cancel_with_an_error_keeps_both() -> None:
    """Without an anyio scope to absorb it, the cancellation stays in the group too."""
    sig = AsyncSignal("s")
    started = asyncio.Event()

    async def fails_in_cleanup(**kwargs: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            raise ValueError("cleanup failed")

    sig.connect(fails_in_cleanup)
    task = asyncio.ensure_future(sig.gather())
    await started.wait()
    task.cancel()
    with pytest.raises(BaseExceptionGroup) as info:
        await task
    assert [type(e) for e in info.value.exceptions] == [ValueError, asyncio.CancelledError]


# -- 3. the caller's deadline is honoured by a receiver's cleanup ---------------------------


@pytest.mark.parametrize("mode", GATHERS)
async def test_cleanup_awaits_are_cancelled_again(mode: Mode) -> None:
    sig = AsyncSignal("s")
    cleanup: list[str] = []

    async def slow_cleanup(**kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            try:
                await anyio.sleep(1.5)
                cleanup.append("slept")
            except anyio.get_cancelled_exc_class():
                cleanup.append("cancelled again")
                raise

    sig.connect(slow_cleanup)
    sig.connect(forever)
    with anyio.fail_after(5):
        with anyio.move_on_after(0.1) as scope:
            await sender_of(sig, mode)()
    assert scope.cancelled_caught
    assert cleanup == ["cancelled again"]


@pytest.mark.parametrize("mode", GATHERS)
async def test_shielded_cleanup_runs_to_completion(mode: Mode) -> None:
    """Cancelled the anyio way: a receiver's shield is respected."""
    sig = AsyncSignal("s")
    cleanup: list[str] = []

    async def shielded_cleanup(**kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)
                await anyio.sleep(0.01)
            cleanup.append("done")

    sig.connect(shielded_cleanup)
    with anyio.fail_after(5):
        with anyio.move_on_after(0.05) as scope:
            await sender_of(sig, mode)()
    assert scope.cancelled_caught
    assert cleanup == ["done"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_one_native_cancel_cancels_cleanup_again() -> None:
    """A plain Task.cancel() (asyncio.timeout, a server shutdown) is delivered level-style
    to the receivers too, as an anyio task group would deliver it."""
    sig = AsyncSignal("s")
    started = asyncio.Event()
    cleanup: list[str] = []

    async def slow_cleanup(**kwargs: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cleanup.append("cancelled again")
                raise

    sig.connect(slow_cleanup)
    task = asyncio.ensure_future(sig.gather())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert cleanup == ["cancelled again"]


@pytest.mark.parametrize("mode", GATHERS)
async def test_failure_cancels_siblings_cleanup_again(mode: Mode) -> None:
    sig = AsyncSignal("s")
    cleanup: list[str] = []
    started = anyio.Event()

    async def slow_cleanup(**kwargs: Any) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                cleanup.append("cancelled again")
                raise

    async def fails(**kwargs: Any) -> None:
        await started.wait()
        raise ValueError("boom")

    sig.connect(slow_cleanup)
    sig.connect(fails)
    with anyio.fail_after(5):
        if mode == "gather":
            with pytest.raises(ExceptionGroup):
                await sig.gather()
            assert cleanup == ["cancelled again"]
        else:  # nothing to cancel: the failure is the receiver's response
            with anyio.move_on_after(0.05):
                await sig.gather_robust()
            assert cleanup == ["cancelled again"]


async def test_receiver_that_ignores_cancellation_is_awaited() -> None:
    """Structured even against a receiver that swallows cancellation once."""
    sig = AsyncSignal("s")
    finished: list[str] = []

    async def stubborn(**kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            pass  # swallowed; the next await is cancelled again
        try:
            await anyio.sleep(30)
        finally:
            finished.append("stubborn")

    sig.connect(stubborn)
    with anyio.fail_after(5):
        with anyio.move_on_after(0.05):
            await sig.gather()
    assert finished == ["stubborn"]


# -- 4. KeyboardInterrupt and SystemExit reach the caller -----------------------------------


@pytest.mark.parametrize("mode", GATHERS)
@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
async def test_interrupt_from_a_receiver_reaches_the_caller(
    mode: Mode, error: type[BaseException]
) -> None:
    sig = AsyncSignal("s")
    cancelled: list[str] = []

    async def interrupts(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise error("from a receiver")

    async def sibling(**kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append("sibling")
            raise

    sig.connect(interrupts)
    sig.connect(sibling)
    caught: BaseException | None = None
    with anyio.fail_after(5):
        try:
            await sender_of(sig, mode)()
        except BaseException as exc:  # the caller's own except sees it, as with send()
            caught = exc
    assert isinstance(caught, BaseExceptionGroup)
    assert [type(e) for e in caught.exceptions] == [error]
    assert cancelled == ["sibling"]


@pytest.mark.parametrize("mode", GATHERS)
async def test_interrupt_in_a_limited_gather_reaches_the_caller(mode: Mode) -> None:
    sig = AsyncSignal("s", max_concurrency=1)

    async def interrupts(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    sig.connect(interrupts)
    sig.connect(forever)
    with anyio.fail_after(5), pytest.raises(BaseExceptionGroup) as info:
        await sender_of(sig, mode)()
    assert [type(e) for e in info.value.exceptions] == [KeyboardInterrupt]


# -- the caller's task stays healthy ---------------------------------------------------------


async def test_gather_cancelled_before_its_receivers_started_runs_none() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []

    async def records(**kwargs: Any) -> None:
        calls.append("ran")
        await anyio.lowlevel.checkpoint()
        calls.append("after checkpoint")

    sig.connect(records)
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await sig.gather()
    assert scope.cancelled_caught
    assert "after checkpoint" not in calls


async def test_cancelled_gather_leaves_the_next_deadline_working() -> None:
    sig = AsyncSignal("s")
    sig.connect(forever)
    with anyio.fail_after(5):
        with anyio.move_on_after(0.02) as first:
            await sig.gather()
        assert first.cancelled_caught
        with anyio.move_on_after(0.02) as second:
            await anyio.sleep(5)
        assert second.cancelled_caught
