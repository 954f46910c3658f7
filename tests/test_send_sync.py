"""send_sync and send_robust_sync in each of the three situations a sync caller is in."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from helpers import MODES, Mode, receivers, sender_of, values

from asignals import AsyncSignal
from asignals.testing import capture


class Shop:
    pass


def thread_recorder(seen: list[str], name: str) -> Callable[..., Any]:
    def receive(**kwargs: Any) -> str:
        seen.append(f"{name}@{threading.current_thread().name}")
        return name

    return receive


def coroutine_recorder(seen: list[str], name: str) -> Callable[..., Any]:
    async def receive(**kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        seen.append(f"{name}@{threading.current_thread().name}")
        return name

    return receive


def event_loops() -> set[int]:
    """The ids of the event loops alive in the process (a garbage collector's view)."""
    return {id(o) for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)}


def run_in_fresh_thread(work: Callable[[], Any]) -> Any:
    """Run *work* in a new plain thread (no event loop, not anyio's); its result or error."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(("ok", work()))
        except BaseException as exc:  # handed back to the test
            outcome.append(("error", exc))

    thread = threading.Thread(target=target, name="plain")
    thread.start()
    thread.join(30)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


# -- 1. in an anyio worker thread: the send runs on the event loop -----------------------


@pytest.mark.anyio
async def test_worker_thread_sends_on_the_event_loop() -> None:
    sig = AsyncSignal("s")
    seen: list[str] = []
    sync_r, async_r = thread_recorder(seen, "sync"), coroutine_recorder(seen, "async")
    sig.connect(sync_r)
    sig.connect(async_r)
    loop_thread = threading.current_thread().name

    def endpoint() -> Any:
        seen.append(f"endpoint@{threading.current_thread().name}")
        return sig.send_sync(Shop, order=1)

    responses = await anyio.to_thread.run_sync(endpoint)
    assert values(responses) == ["sync", "async"]
    assert receivers(responses) == [sync_r, async_r]
    assert seen[1:] == [f"sync@{loop_thread}", f"async@{loop_thread}"]
    assert seen[0] != f"endpoint@{loop_thread}"


@pytest.mark.anyio
async def test_worker_thread_errors_as_in_send() -> None:
    sig = AsyncSignal("s")

    async def fails(**kwargs: Any) -> None:
        raise LookupError("nope")

    after = thread_recorder([], "after")
    sig.connect(fails)
    sig.connect(after)
    with pytest.raises(LookupError, match="nope"):
        await anyio.to_thread.run_sync(lambda: sig.send_sync(Shop))
    responses = await anyio.to_thread.run_sync(lambda: sig.send_robust_sync(Shop))
    assert isinstance(values(responses)[0], LookupError)
    assert values(responses)[1] == "after"


@pytest.mark.anyio
async def test_worker_thread_send_is_cancelled_with_its_host() -> None:
    sig = AsyncSignal("s")
    events: list[str] = []

    async def slow(**kwargs: Any) -> None:
        try:
            await anyio.sleep(10)
        finally:
            events.append("receiver cleaned up")

    sig.connect(slow)
    with anyio.move_on_after(0.2) as scope:
        await anyio.to_thread.run_sync(lambda: sig.send_sync(Shop))
    assert scope.cancelled_caught
    assert events == ["receiver cleaned up"]


@pytest.mark.anyio
async def test_worker_thread_bad_arguments_fail_in_the_thread() -> None:
    sig = AsyncSignal("s")
    keep = sig.connect(thread_recorder([], "r"))
    with pytest.raises(TypeError, match="keyword-only"):
        await anyio.to_thread.run_sync(lambda: sig.send_sync(Shop, 1))
    del keep


@pytest.mark.anyio
async def test_worker_thread_send_is_captured_once() -> None:
    sig = AsyncSignal("s")
    with capture(sig) as sent:
        await anyio.to_thread.run_sync(lambda: sig.send_sync(Shop, n=1))
    assert [s.payload for s in sent] == [{"n": 1}]


# -- 2. on a thread that runs an event loop --------------------------------------------


@pytest.mark.anyio
async def test_on_the_loop_sync_receivers_run_inline() -> None:
    sig = AsyncSignal("s")
    seen: list[str] = []
    first, second = thread_recorder(seen, "a"), thread_recorder(seen, "b")
    sig.connect(first)
    sig.connect(second)
    assert values(sig.send_sync(Shop)) == ["a", "b"]
    assert values(sig.send_robust_sync(Shop)) == ["a", "b"]
    assert len(seen) == 4


@pytest.mark.anyio
async def test_on_the_loop_a_coroutine_receiver_raises_before_any_runs() -> None:
    sig = AsyncSignal("order_paid")
    seen: list[str] = []
    sig.connect(thread_recorder(seen, "sync"))
    keep = coroutine_recorder(seen, "async")
    sig.connect(keep)
    for method in (sig.send_sync, sig.send_robust_sync):
        with pytest.raises(RuntimeError, match=r"await order_paid\.send(_robust)?\(\.\.\.\)"):
            method(Shop)
    assert seen == []


@pytest.mark.anyio
async def test_on_the_loop_a_thread_receiver_raises_too() -> None:
    sig = AsyncSignal("s")
    keep = sig.connect(thread_recorder([], "t"), to_thread=True)
    with pytest.raises(RuntimeError, match="running an event loop"):
        sig.send_sync(Shop)
    del keep


@pytest.mark.anyio
async def test_on_the_loop_base_exceptions_propagate() -> None:
    sig = AsyncSignal("s")

    def interrupts(**kwargs: Any) -> None:
        raise KeyboardInterrupt

    sig.connect(interrupts)
    with pytest.raises(KeyboardInterrupt):
        sig.send_robust_sync(Shop)


# -- 3. no event loop anywhere -----------------------------------------------------------


def test_without_a_loop_sync_receivers_start_no_event_loop() -> None:
    sig = AsyncSignal("s")
    loops_seen: list[bool] = []

    def receive(**kwargs: Any) -> str:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loops_seen.append(False)
        else:
            loops_seen.append(True)
        return threading.current_thread().name

    sig.connect(receive)

    def work() -> Any:
        before = event_loops()
        responses = sig.send_sync(Shop)
        return values(responses), event_loops() - before

    assert run_in_fresh_thread(work) == (["plain"], set())  # no loop made, none kept
    assert loops_seen == [False]


def test_without_a_loop_coroutine_receivers_run_to_completion() -> None:
    sig = AsyncSignal("s")
    loops_used: list[int] = []

    async def receive(n: int, **kwargs: Any) -> int:
        await asyncio.sleep(0)
        loops_used.append(id(asyncio.get_running_loop()))
        return n * 2

    sig.connect(receive)
    before = thread_recorder([], "before")
    sig.connect(before)

    def work() -> Any:
        return [values(sig.send_sync(Shop, n=n)) for n in (1, 2)]

    assert run_in_fresh_thread(work) == [[2, "before"], [4, "before"]]
    assert len(set(loops_used)) == 1  # one loop kept for the thread, reused


def test_without_a_loop_errors_as_in_send(caplog: pytest.LogCaptureFixture) -> None:
    sig = AsyncSignal("order_paid")

    async def fails(**kwargs: Any) -> None:
        raise LookupError("nope")

    def sync_fails(**kwargs: Any) -> None:
        raise ValueError("sync nope")

    sig.connect(fails)
    sig.connect(sync_fails)
    with pytest.raises(LookupError):
        run_in_fresh_thread(lambda: sig.send_sync(Shop))
    with caplog.at_level(logging.ERROR, logger="asignals"):
        responses = run_in_fresh_thread(lambda: sig.send_robust_sync(Shop))
    assert [type(v) for v in values(responses)] == [LookupError, ValueError]
    assert "order_paid" in caplog.text


def test_without_a_loop_keyboard_interrupt_propagates_and_the_loop_survives() -> None:
    sig = AsyncSignal("s")
    interrupt = [True]

    async def receive(**kwargs: Any) -> str:
        await asyncio.sleep(0)
        if interrupt.pop():
            raise KeyboardInterrupt
        return "fine"

    sig.connect(receive)

    def work() -> Any:
        interrupted = False
        try:
            sig.send_sync(Shop)
        except KeyboardInterrupt:
            interrupted = True
        interrupt.append(False)
        return interrupted, values(sig.send_sync(Shop))

    assert run_in_fresh_thread(work) == (True, ["fine"])


def test_without_a_loop_in_this_thread_sync_receivers_run_inline() -> None:
    """The test's own thread has no loop either: the plain situation of a script."""
    sig = AsyncSignal("s")
    keep = sig.connect(thread_recorder([], "r"))
    assert values(sig.send_sync(Shop)) == ["r"]
    assert values(sig.send_robust_sync(Shop, nothing=None)) == ["r"]
    assert AsyncSignal("empty").send_sync(Shop) == []
    del keep


@pytest.mark.parametrize("method", ["send_sync", "send_robust_sync"])
@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        pytest.param((Shop, 1), {}, "keyword-only", id="positional-payload"),
        pytest.param((Shop,), {"signal": 1}, "reserved", id="signal-item"),
        pytest.param((Shop,), {"sender": Shop}, "twice", id="sender-twice"),
    ],
)
def test_bad_arguments(method: str, args: Any, kwargs: Any, match: str) -> None:
    sig = AsyncSignal("s")
    keep = sig.connect(thread_recorder([], "r"))
    with pytest.raises(TypeError, match=match):
        getattr(sig, method)(*args, **kwargs)
    del keep


def test_sender_by_keyword() -> None:
    sig = AsyncSignal("s")
    got: list[Any] = []
    sig.connect(lambda sender, **kwargs: got.append(sender), weak=False)
    sig.send_sync(sender=Shop)
    sig.send_sync()
    assert got == [Shop, None]


SCRIPT = """
import asyncio, warnings
warnings.simplefilter("error")
from asignals import AsyncSignal

order_paid = AsyncSignal()

async def mail(sender, order, **kwargs):
    await asyncio.sleep(0)
    return f"mailed {order}"

def count(sender, **kwargs):
    return "counted"

order_paid.connect(mail)
order_paid.connect(count)
print([response for _, response in order_paid.send_sync("shop", order=7)])
print([response for _, response in order_paid.send_robust_sync("shop", order=8)])
"""


def test_a_script_sends_and_exits_cleanly() -> None:
    """A real process: the kept event loop is closed at exit, with no warning."""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", textwrap.dedent(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "['mailed 7', 'counted']",
        "['mailed 8', 'counted']",
    ]
    assert done.stderr == ""


def test_without_a_loop_an_interrupt_outside_the_receiver_cancels_it_cleanly() -> None:
    """KeyboardInterrupt from a loop callback leaves the send's task pending: it is
    cancelled (its cleanup runs) before the interrupt goes on, and the loop stays usable."""
    sig = AsyncSignal("s")
    events: list[str] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    async def receive(**kwargs: Any) -> str:
        if not events:
            asyncio.get_running_loop().call_soon(interrupt)
            try:
                await asyncio.sleep(10)
            finally:
                events.append("cleaned up")
        return "fine"

    sig.connect(receive)

    def work() -> Any:
        with pytest.raises(KeyboardInterrupt):
            sig.send_sync(Shop)
        return values(sig.send_sync(Shop))

    assert run_in_fresh_thread(work) == ["fine"]
    assert events == ["cleaned up"]


def test_the_loop_a_thread_sent_on_is_closed_and_freed_with_the_thread() -> None:
    """(test_internals.py checks that it is closed at exit too.)"""
    sig = AsyncSignal("s")

    async def receive(**kwargs: Any) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    sig.connect(receive)

    def work() -> Any:
        [first], [second] = values(sig.send_sync(Shop)), values(sig.send_sync(Shop))
        assert second is first  # kept for the thread, reused
        assert not first.is_closed()
        return first

    loop = run_in_fresh_thread(work)
    gc.collect()
    assert loop.is_closed()  # went with its thread
    freed = weakref.ref(loop)
    del loop
    gc.collect()
    assert freed() is None


def test_capture_sees_a_send_from_sync_code_without_a_loop() -> None:
    sig = AsyncSignal("s")
    with capture(sig) as sent:
        assert sig.send_sync(Shop, n=1) == []
    assert [s.payload for s in sent] == [{"n": 1}]


# -- the awaitable send methods, called from sync code ------------------------------------

SYNC_METHODS = {
    "send": "send_sync",
    "send_robust": "send_robust_sync",
    "gather": "send_sync",
    "gather_robust": "send_robust_sync",
}


def run_here(work: Callable[[], Any]) -> Any:
    return work()


@pytest.mark.parametrize("connected", [True, False], ids=["receivers", "no-receivers"])
@pytest.mark.parametrize("where", [run_here, run_in_fresh_thread], ids=["here", "plain-thread"])
@pytest.mark.parametrize("mode", MODES)
def test_send_from_sync_code_raises_naming_send_sync(
    mode: Mode, where: Callable[[Callable[[], Any]], Any], connected: bool
) -> None:
    """Django's habit, ``send(...)`` in sync code: no event loop runs in the thread to
    await the coroutine, so the call raises at once (no receiver runs, and no coroutine is
    left to warn later), with receivers or without."""
    order_paid = AsyncSignal("order_paid")
    seen: list[str] = []
    keep = thread_recorder(seen, "r")
    if connected:
        order_paid.connect(keep)
    with pytest.raises(RuntimeError) as info:
        where(lambda: sender_of(order_paid, mode)(Shop, order=1))
    assert str(info.value) == (
        f"<AsyncSignal 'order_paid'>.{mode}() was called with no event loop running in this "
        f"thread; call order_paid.{SYNC_METHODS[mode]}(...) from sync code, or "
        f"`await order_paid.{mode}(...)` from a coroutine"
    )
    gc.collect()  # a coroutine made and dropped would warn now (and warnings are errors)
    assert seen == []
    assert values(getattr(order_paid, SYNC_METHODS[mode])(Shop, order=1)) == (
        ["r"] if connected else []
    )


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_send_in_a_worker_thread_raises_naming_send_sync(mode: Mode) -> None:
    """A ``def`` endpoint runs in a worker thread, where no event loop runs."""
    order_paid = AsyncSignal("order_paid")
    seen: list[str] = []
    keep = thread_recorder(seen, "r")
    order_paid.connect(keep)
    with pytest.raises(RuntimeError, match=rf"call order_paid\.{SYNC_METHODS[mode]}\(\.\.\.\)"):
        _ = await anyio.to_thread.run_sync(lambda: sender_of(order_paid, mode)(Shop))
    assert seen == []
    method = getattr(order_paid, SYNC_METHODS[mode])
    assert values(await anyio.to_thread.run_sync(lambda: method(Shop))) == ["r"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_sync_function_on_the_loop_thread_may_return_the_send(mode: Mode) -> None:
    """A plain ``def`` called on the thread running the loop (on trio too, where asyncio
    sees no loop) returns the coroutine for its caller to await."""
    sig = AsyncSignal("s")
    keep = thread_recorder([], "r")
    sig.connect(keep)

    def notify() -> Coroutine[Any, Any, Any]:
        return sender_of(sig, mode)(Shop, n=1)

    assert values(await notify()) == ["r"]


SCRIPT_SENDS = """
import asyncio
import sys

from asignals import AsyncSignal

order_paid = AsyncSignal()


def receive(**kwargs):
    print("received")


order_paid.connect(receive)
for attempt in (lambda: order_paid.send("shop"), lambda: asyncio.run(order_paid.send("shop"))):
    try:
        attempt()
    except RuntimeError as exc:
        print(exc)
print("trio" in sys.modules)
order_paid.send_sync("shop")
"""


def test_a_script_that_calls_send_is_told_to_call_send_sync() -> None:
    """A real process, without trio imported: the error at the call, also for
    ``asyncio.run(signal.send(...))`` (the coroutine is made before the loop runs), and no
    warning about a coroutine never awaited."""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", textwrap.dedent(SCRIPT_SENDS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    error = (
        "<AsyncSignal __main__.order_paid>.send() was called with no event loop running in "
        "this thread; call __main__.order_paid.send_sync(...) from sync code, or "
        "`await __main__.order_paid.send(...)` from a coroutine"
    )
    assert done.stdout.splitlines() == [error, error, "False", "received"]
    assert done.stderr == ""


@pytest.mark.parametrize("robust", [False, True], ids=["send_sync", "send_robust_sync"])
def test_a_failure_in_a_sync_send_does_not_keep_the_payload_alive(
    robust: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exception (returned, or raised) holds the loop's frame in its traceback; on
    Python 3.12+ that frame links back to the frame that ran it: neither may hold the
    exception, or the payload stays alive until the cycle collector runs."""
    monkeypatch.setattr(logging.getLogger("asignals"), "disabled", True)  # no log records
    sig = AsyncSignal("s")

    class Payload:
        pass

    def fails(**kwargs: Any) -> None:
        raise ValueError("no")

    sig.connect(fails, weak=False)
    gc.collect()
    gc.disable()
    try:
        payload = Payload()
        alive = weakref.ref(payload)
        if robust:
            responses = sig.send_robust_sync(None, order=payload)
            error = responses[0][1]
            del responses
        else:
            with pytest.raises(ValueError, match="no") as raised:
                sig.send_sync(None, order=payload)
            error = raised.value
            del raised
        assert isinstance(error, ValueError)
        assert error.__traceback__ is not None
        del payload, error
        assert alive() is None, "a reference cycle keeps the payload alive"
    finally:
        gc.enable()
