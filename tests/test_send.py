"""Sending: arguments, results, the four modes, errors, timeouts, cancellation, snapshots."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import (
    MODES,
    ROBUST_MODES,
    Mode,
    async_recorder,
    receivers,
    sender_of,
    sync_recorder,
    values,
)

from asignals import AsyncSignal

pytestmark = pytest.mark.anyio


class Shop:
    pass


class Order:
    pass


class Fatal(BaseException):
    """A BaseException that is not an Exception: never turned into a response."""


# -- arguments and results -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_receivers_get_signal_sender_and_payload(mode: Mode) -> None:
    sig = AsyncSignal("order_paid")
    order = Order()
    got: list[dict[str, Any]] = []

    def sync_handler(**kwargs: Any) -> None:
        got.append(kwargs)

    async def async_handler(signal: AsyncSignal, sender: Any, order: Order, **kwargs: Any) -> None:
        got.append({"signal": signal, "sender": sender, "order": order, **kwargs})

    sig.connect(sync_handler)
    sig.connect(async_handler)
    send = sender_of(sig, mode)

    await send(Shop, order=order)
    await send(sender=Shop, order=order)
    expected = {"signal": sig, "sender": Shop, "order": order}
    assert got == [expected] * 4


@pytest.mark.parametrize("mode", MODES)
async def test_send_without_sender_sends_none(mode: Mode) -> None:
    sig = AsyncSignal("s")
    got: list[Any] = []

    def handler(sender: Any, **kwargs: Any) -> None:
        got.append((sender, kwargs))

    sig.connect(handler)
    await sender_of(sig, mode)()
    await sender_of(sig, mode)(x=1)
    await sender_of(sig, mode)(None, sender=Shop)  # positional None counts as "not given"
    assert got == [
        (None, {"signal": sig}),
        (None, {"signal": sig, "x": 1}),
        (Shop, {"signal": sig}),
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_results_in_connection_order_with_mixed_receivers(mode: Mode) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handlers = [
        sync_recorder(calls, "a", 1),
        async_recorder(calls, "b", 2),
        sync_recorder(calls, "c", 3),
        async_recorder(calls, "d", 4),
    ]
    for handler in handlers:
        sig.connect(handler)

    responses = await sender_of(sig, mode)(Shop)

    assert responses == list(zip(handlers, [1, 2, 3, 4], strict=True))
    assert sorted(calls) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("mode", MODES)
async def test_no_receivers_returns_empty_list(mode: Mode) -> None:
    sig = AsyncSignal("s")
    assert await sender_of(sig, mode)(Shop, x=1) == []


def connect_slow_then_fast(sig: AsyncSignal, events: list[str]) -> list[Callable[..., Any]]:
    """Connect a receiver that suspends a while, then one that does not; return both."""

    async def slow(**kwargs: Any) -> None:
        events.append("slow start")
        await anyio.sleep(0.01)
        events.append("slow end")

    async def fast(**kwargs: Any) -> None:
        events.append("fast")

    sig.connect(slow)
    sig.connect(fast)
    return [slow, fast]


async def test_sequential_modes_run_receivers_one_after_another() -> None:
    sig = AsyncSignal("s")
    events: list[str] = []
    keep = connect_slow_then_fast(sig, events)
    await sig.send()
    await sig.send_robust()
    assert events == ["slow start", "slow end", "fast"] * 2
    del keep


# -- send: first exception propagates ------------------------------------------------------


async def test_send_propagates_first_exception_and_stops() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    first = sync_recorder(calls, "first")
    error = ValueError("boom")

    async def failing(**kwargs: Any) -> None:
        calls.append("failing")
        raise error

    later_sync = sync_recorder(calls, "later_sync")
    later_async = async_recorder(calls, "later_async")
    for handler in (first, failing, later_sync, later_async):
        sig.connect(handler)

    with pytest.raises(ValueError, match="boom") as info:
        await sig.send()
    assert info.value is error
    assert calls == ["first", "failing"]


async def test_send_propagates_sync_receiver_exception() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []

    def failing(**kwargs: Any) -> None:
        raise KeyError("k")

    later = sync_recorder(calls, "later")
    sig.connect(failing)
    sig.connect(later)
    with pytest.raises(KeyError):
        await sig.send()
    assert calls == []


# -- send_robust ---------------------------------------------------------------------------


async def test_send_robust_turns_exceptions_into_responses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("order_paid")
    calls: list[str] = []
    sync_error = ValueError("sync boom")
    async_error = RuntimeError("async boom")

    def failing_sync(**kwargs: Any) -> None:
        calls.append("failing_sync")
        raise sync_error

    async def failing_async(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        calls.append("failing_async")
        raise async_error

    later = async_recorder(calls, "later", "fine")
    for handler in (failing_sync, failing_async, later):
        sig.connect(handler)

    with caplog.at_level(logging.ERROR, logger="asignals"):
        responses = await sig.send_robust(Shop)

    assert calls == ["failing_sync", "failing_async", "later"]
    assert receivers(responses) == [failing_sync, failing_async, later]
    assert responses[0][1] is sync_error
    assert responses[1][1] is async_error
    assert responses[2][1] == "fine"
    assert sync_error.__traceback__ is not None
    assert async_error.__traceback__ is not None

    records = [r for r in caplog.records if r.name == "asignals"]
    assert len(records) == 2
    for record, handler, error in zip(
        records, (failing_sync, failing_async), (sync_error, async_error), strict=True
    ):
        assert record.levelno == logging.ERROR
        message = record.getMessage()
        assert "order_paid" in message
        assert handler.__qualname__ in message
        assert record.exc_info is not None
        assert record.exc_info[1] is error


async def test_send_robust_logs_partial_receivers_by_their_function(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("order_paid")

    def failing_target(**kwargs: Any) -> None:
        raise ValueError("boom")

    handler = functools.partial(failing_target, extra=1)
    sig.connect(handler)
    with caplog.at_level(logging.ERROR, logger="asignals"):
        responses = await sig.send_robust()
    assert isinstance(responses[0][1], ValueError)
    (record,) = [r for r in caplog.records if r.name == "asignals"]
    message = record.getMessage()
    assert "functools.partial(" in message
    assert "failing_target" in message
    assert "order_paid" in message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_base_exception_propagates_from_every_mode(mode: Mode, is_async: bool) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    fatal = Fatal("stop")

    def sync_fatal(**kwargs: Any) -> None:
        raise fatal

    async def async_fatal(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise fatal

    handler = async_fatal if is_async else sync_fatal
    later = sync_recorder(calls, "later")
    sig.connect(handler)
    sig.connect(later)

    with pytest.raises((Fatal, BaseExceptionGroup)) as info:
        await sender_of(sig, mode)()

    if mode in ("gather", "gather_robust"):
        assert isinstance(info.value, BaseExceptionGroup)
        assert not isinstance(info.value, ExceptionGroup)
        assert info.value.exceptions == (fatal,)
    else:
        assert info.value is fatal
        assert calls == []  # nothing after it ran


# -- gather --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["gather", "gather_robust"])
async def test_gather_runs_receivers_concurrently(mode: Mode) -> None:
    sig = AsyncSignal("s")
    first_ready, second_ready = anyio.Event(), anyio.Event()

    async def first(**kwargs: Any) -> str:
        first_ready.set()
        await second_ready.wait()  # deadlocks if the receivers ran one after another
        return "first"

    async def second(**kwargs: Any) -> str:
        second_ready.set()
        await first_ready.wait()
        return "second"

    sig.connect(first)
    sig.connect(second)
    with anyio.fail_after(5):
        responses = await sender_of(sig, mode)()
    assert responses == [(first, "first"), (second, "second")]


@pytest.mark.parametrize("mode", ["gather", "gather_robust"])
async def test_gather_results_in_connection_order_not_completion_order(mode: Mode) -> None:
    sig = AsyncSignal("s")
    finished: list[int] = []
    handlers = []
    for index, delay in enumerate([0.03, 0.0, 0.015]):

        async def handler(index: int = index, delay: float = delay, **kwargs: Any) -> int:
            await anyio.sleep(delay)
            finished.append(index)
            return index

        handlers.append(handler)
        sig.connect(handler)

    responses = await sender_of(sig, mode)()
    assert finished == [1, 2, 0]
    assert responses == list(zip(handlers, [0, 1, 2], strict=True))


async def test_gather_first_failure_cancels_siblings_and_raises_group() -> None:
    sig = AsyncSignal("s")
    running: set[str] = set()
    cancelled: list[str] = []
    started = anyio.Event()
    error = ValueError("boom")

    async def forever(**kwargs: Any) -> None:
        running.add("forever")
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append("forever")
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # a cancelled receiver may still clean up...
            raise
        finally:
            running.discard("forever")

    async def failing(**kwargs: Any) -> None:
        await started.wait()
        raise error

    sig.connect(forever)
    sig.connect(failing)

    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as info:
        await sig.gather()

    assert info.value.exceptions == (error,)
    assert cancelled == ["forever"]
    assert running == set()  # ...and has finished when gather raises


async def test_gather_returns_only_when_every_receiver_finished() -> None:
    sig = AsyncSignal("s")
    running: set[int] = set()
    finished: list[int] = []

    for index in range(3):

        async def handler(index: int = index, **kwargs: Any) -> None:
            running.add(index)
            await anyio.sleep(0.005 * index)
            running.discard(index)
            finished.append(index)

        sig.connect(handler, weak=False)

    await sig.gather()
    assert running == set()
    assert sorted(finished) == [0, 1, 2]


async def test_gather_robust_runs_every_receiver_to_completion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("gathered")
    finished: list[str] = []
    first_error, second_error = ValueError("one"), KeyError("two")

    async def fails_early(**kwargs: Any) -> None:
        raise first_error

    async def slow(**kwargs: Any) -> str:
        await anyio.sleep(0.02)
        finished.append("slow")
        return "slow"

    def fails_sync(**kwargs: Any) -> None:
        raise second_error

    async def fast(**kwargs: Any) -> str:
        finished.append("fast")
        return "fast"

    for handler in (fails_early, slow, fails_sync, fast):
        sig.connect(handler)

    with caplog.at_level(logging.ERROR, logger="asignals"):
        responses = await sig.gather_robust()

    assert sorted(finished) == ["fast", "slow"]
    assert responses == [
        (fails_early, first_error),
        (slow, "slow"),
        (fails_sync, second_error),
        (fast, "fast"),
    ]
    assert first_error.__traceback__ is not None
    messages = [r.getMessage() for r in caplog.records if r.name == "asignals"]
    assert len(messages) == 2
    assert all("gathered" in m for m in messages)
    assert sum("fails_early" in m for m in messages) == 1
    assert sum("fails_sync" in m for m in messages) == 1


# -- timeouts ------------------------------------------------------------------------------


async def sleeps_long(**kwargs: Any) -> str:
    await anyio.sleep(10)
    return "too late"


async def quick(**kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "quick"


async def test_timeout_on_coroutine_receiver_raises_timeout_error() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    later = sync_recorder(calls, "later")
    sig.connect(sleeps_long, timeout=0.05)
    sig.connect(later)

    start = time.monotonic()
    with anyio.fail_after(5), pytest.raises(TimeoutError):
        await sig.send()
    assert time.monotonic() - start < 5
    assert calls == []


@pytest.mark.parametrize("to_thread", [False, True], ids=["coroutine", "to_thread"])
async def test_the_timeout_error_names_the_receiver_the_signal_and_the_limit(
    to_thread: bool,
) -> None:
    sig = AsyncSignal("order_paid")

    def blocks(**kwargs: Any) -> None:
        time.sleep(0.3)

    sig.connect(blocks if to_thread else sleeps_long, timeout=0.05, to_thread=to_thread)
    with anyio.fail_after(5), pytest.raises(TimeoutError) as raised:
        await sig.send()
    message = str(raised.value)
    name = "blocks" if to_thread else "sleeps_long"
    assert f"{name} of signal 'order_paid' did not finish within its timeout of 0.05" in message
    assert ("its thread was left to finish" if to_thread else "it was cancelled") in message
    assert "timeout given to connect()" in message


async def test_a_receivers_own_timeout_error_is_not_taken_for_the_limit() -> None:
    sig = AsyncSignal("s")

    async def gives_up(**kwargs: Any) -> None:
        raise TimeoutError("the payment provider did not answer")

    sig.connect(gives_up, timeout=5)
    with pytest.raises(TimeoutError, match="payment provider"):
        await sig.send()


async def test_timeout_not_exceeded_returns_normally() -> None:
    sig = AsyncSignal("s")
    sig.connect(quick, timeout=5)
    assert await sig.send() == [(quick, "quick")]


async def test_send_robust_returns_timeout_error_as_response() -> None:
    sig = AsyncSignal("s")
    sig.connect(sleeps_long, timeout=0.05)
    sig.connect(quick)
    with anyio.fail_after(5):
        responses = await sig.send_robust()
    assert receivers(responses) == [sleeps_long, quick]
    assert isinstance(responses[0][1], TimeoutError)
    assert responses[1][1] == "quick"


async def test_gather_timeout_raises_group_and_gather_robust_returns_it() -> None:
    sig = AsyncSignal("s")
    sig.connect(sleeps_long, timeout=0.05)
    sig.connect(quick)
    with anyio.fail_after(5):
        with pytest.raises(ExceptionGroup) as info:
            await sig.gather()
        assert len(info.value.exceptions) == 1
        assert isinstance(info.value.exceptions[0], TimeoutError)
        responses = await sig.gather_robust()
    assert isinstance(responses[0][1], TimeoutError)
    assert responses[1] == (quick, "quick")


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_on_to_thread_receiver(mode: Mode) -> None:
    sig = AsyncSignal("s")
    release = threading.Event()
    done = threading.Event()

    def blocking(**kwargs: Any) -> str:
        release.wait(10)
        done.set()
        return "too late"

    sig.connect(blocking, to_thread=True, timeout=0.05)
    start = time.monotonic()
    try:
        with anyio.fail_after(5):
            if mode in ROBUST_MODES:
                responses = await sender_of(sig, mode)()
                assert isinstance(responses[0][1], TimeoutError)
            elif mode == "send":
                with pytest.raises(TimeoutError):
                    await sig.send()
            else:
                with pytest.raises(ExceptionGroup) as info:
                    await sig.gather()
                assert isinstance(info.value.exceptions[0], TimeoutError)
        assert time.monotonic() - start < 5
        assert not done.is_set()  # the thread was abandoned, not waited for
    finally:
        release.set()
    assert done.wait(5)


async def test_to_thread_receiver_within_timeout_returns_its_result() -> None:
    sig = AsyncSignal("s")

    def blocking(**kwargs: Any) -> str:
        return f"thread {kwargs['x']}"

    sig.connect(blocking, to_thread=True, timeout=5)
    assert await sig.send(x=1) == [(blocking, "thread 1")]


# -- cancellation --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_cancelling_the_caller_cancels_receivers(mode: Mode) -> None:
    sig = AsyncSignal("s")
    cancelled: list[str] = []
    calls: list[str] = []
    started = anyio.Event()

    async def forever(**kwargs: Any) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append("forever")
            raise

    later = async_recorder(calls, "later")
    sig.connect(forever)
    sig.connect(later)

    with anyio.fail_after(5):
        with anyio.move_on_after(0.05) as scope:
            await sender_of(sig, mode)()
        assert scope.cancelled_caught
        assert cancelled == ["forever"]
        if mode in ("send", "send_robust"):
            assert calls == []  # cancellation was not swallowed into a response


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
@pytest.mark.parametrize("mode", ["gather", "gather_robust"])
async def test_native_asyncio_cancel_of_a_gather_cancels_and_waits_for_receivers(
    mode: Mode,
) -> None:
    """One plain task.cancel(), as asyncio.timeout() or a server shutdown would send."""
    sig = AsyncSignal("s")
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(**kwargs: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            # Cleanup that takes a while: gather waits for it. Shielded, because gather
            # cancels level-style, as anyio does: an unshielded await here is cancelled too.
            with anyio.CancelScope(shield=True):
                await asyncio.sleep(0.01)
            finished.append("slow")

    sig.connect(slow)
    sig.connect(sleeps_long)
    task = asyncio.ensure_future(sender_of(sig, mode)())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["slow"]


@pytest.mark.parametrize("mode", MODES)
async def test_explicit_cancel_scope_cancel_from_another_task(mode: Mode) -> None:
    sig = AsyncSignal("s")
    cancelled: list[int] = []
    started = anyio.Event()
    finished: list[int] = []

    for index in range(2):

        async def forever(index: int = index, **kwargs: Any) -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(index)
                raise

        sig.connect(forever, weak=False)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            scope = anyio.CancelScope()

            async def sending() -> None:
                with scope:
                    await sender_of(sig, mode)()
                finished.append(1)

            group.start_soon(sending)
            await started.wait()
            scope.cancel()

    assert scope.cancelled_caught
    assert finished == [1]
    expected = [0] if mode in ("send", "send_robust") else [0, 1]
    assert sorted(cancelled) == expected


async def test_caller_cancellation_of_timeout_receiver_is_not_a_timeout_error() -> None:
    sig = AsyncSignal("s")
    sig.connect(sleeps_long, timeout=5)
    with anyio.fail_after(5):
        with anyio.move_on_after(0.05) as scope:
            await sig.send_robust()
        assert scope.cancelled_caught


@pytest.mark.parametrize("mode", ROBUST_MODES)
async def test_send_in_cancelled_scope_propagates_cancellation(mode: Mode) -> None:
    """Robust modes do not turn cancellation into a response and carry on."""
    sig = AsyncSignal("s")
    calls: list[str] = []

    async def forever(**kwargs: Any) -> None:
        await anyio.sleep_forever()

    later = async_recorder(calls, "later")
    sig.connect(forever)
    sig.connect(later)
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await sender_of(sig, mode)()
            calls.append("after send")
    assert scope.cancelled_caught
    assert calls == []


# -- snapshot semantics --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_receiver_connected_during_send_is_called_next_time(mode: Mode) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    late = sync_recorder(calls, "late")

    async def connector(**kwargs: Any) -> None:
        calls.append("connector")
        sig.connect(late)
        sig.connect(late, sender=Shop)
        await anyio.lowlevel.checkpoint()

    sig.connect(connector)
    sig.connect(sync_recorder(calls, "unused"), weak=False)
    await sender_of(sig, mode)(Shop)
    assert sorted(calls) == ["connector", "unused"]  # gather: any execution order
    calls.clear()
    await sender_of(sig, mode)(Shop)
    assert sorted(calls) == ["connector", "late", "late", "unused"]


@pytest.mark.parametrize("mode", MODES)
async def test_receiver_disconnected_during_send_is_still_called(mode: Mode) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    victim = sync_recorder(calls, "victim")

    def disconnector(**kwargs: Any) -> None:
        calls.append(f"disconnector {sig.disconnect(victim, sender=Shop)}")

    sig.connect(disconnector)
    sig.connect(victim, sender=Shop)
    await sender_of(sig, mode)(Shop)
    assert calls == ["disconnector True", "victim"]
    calls.clear()
    await sender_of(sig, mode)(Shop)
    assert calls == ["disconnector False"]


@pytest.mark.parametrize("mode", MODES)
async def test_receiver_garbage_collected_during_send_is_skipped(mode: Mode) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    holder = [sync_recorder(calls, "victim")]

    def killer(**kwargs: Any) -> None:
        calls.append("killer")
        holder.clear()  # drops the only strong reference to the weakly connected victim
        gc.collect()

    sig.connect(killer)
    sig.connect(holder[0])
    sig.connect(sync_recorder(calls, "after"), weak=False)

    responses = await sender_of(sig, mode)()
    assert calls == ["killer", "after"]
    assert len(responses) == 2
    assert responses[0][0] is killer


# -- max_concurrency -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["gather", "gather_robust"])
async def test_max_concurrency_limits_running_receivers(mode: Mode) -> None:
    sig = AsyncSignal("limited", max_concurrency=2)
    running = 0
    peak = 0
    order: list[int] = []

    for index in range(6):

        async def handler(index: int = index, **kwargs: Any) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.01 if index % 2 else 0.003)
            order.append(index)
            running -= 1
            return index

        sig.connect(handler, weak=False)

    with anyio.fail_after(5):
        responses = await sender_of(sig, mode)()
    assert peak == 2
    assert running == 0
    assert values(responses) == [0, 1, 2, 3, 4, 5]
    assert receivers(responses) == sig.receivers_for()
    assert sorted(order) == [0, 1, 2, 3, 4, 5]


async def test_max_concurrency_larger_than_receiver_count() -> None:
    sig = AsyncSignal("s", max_concurrency=10)
    first_ready, second_ready = anyio.Event(), anyio.Event()

    async def first(**kwargs: Any) -> int:
        first_ready.set()
        await second_ready.wait()
        return 1

    async def second(**kwargs: Any) -> int:
        second_ready.set()
        await first_ready.wait()
        return 2

    sig.connect(first)
    sig.connect(second)
    with anyio.fail_after(5):
        assert values(await sig.gather()) == [1, 2]


async def test_max_concurrency_one_serialises_gather() -> None:
    sig = AsyncSignal("s", max_concurrency=1)
    events: list[str] = []
    keep = connect_slow_then_fast(sig, events)
    await sig.gather()
    assert events == ["slow start", "slow end", "fast"]
    del keep


async def test_max_concurrency_with_failure_cancels_and_raises() -> None:
    sig = AsyncSignal("s", max_concurrency=2)
    calls: list[str] = []

    async def failing(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    sig.connect(failing)
    sig.connect(sleeps_long)
    sig.connect(sync_recorder(calls, "third"), weak=False)
    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as info:
        await sig.gather()
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert calls == []  # never started: the failure cancelled the workers


# -- a failed gather must leave the caller's task healthy -----------------------------------


async def test_failed_gather_leaves_enclosing_cancel_scope_working() -> None:
    sig = AsyncSignal("s")

    async def failing(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    sig.connect(failing)
    sig.connect(sleeps_long)

    escaped = False
    with anyio.fail_after(5):
        try:
            with anyio.move_on_after(0.05) as scope:
                with pytest.raises(ExceptionGroup):
                    await sig.gather()
                await anyio.sleep(5)  # the enclosing deadline must end this
        except anyio.get_cancelled_exc_class():
            escaped = True
    assert not escaped, "the enclosing scope's cancellation escaped it"
    assert scope.cancelled_caught


async def test_failed_gather_then_timeout_in_same_task() -> None:
    sig = AsyncSignal("s")

    async def failing(**kwargs: Any) -> None:
        raise ValueError("boom")

    sig.connect(failing)
    sig.connect(sleeps_long)
    escaped = False
    try:
        with pytest.raises(TimeoutError):  # noqa: PT012
            with anyio.fail_after(0.05):
                with pytest.raises(ExceptionGroup):
                    await sig.gather()
                await anyio.sleep(5)
    except anyio.get_cancelled_exc_class():
        escaped = True
    assert not escaped, "fail_after raised the cancellation instead of TimeoutError"
