"""The dispatch API (asignals/_dispatch.py): the contract the integrations build on.

What docs/design.md promises of it, checked as an integration would use it: `prepare`
gives the plan a send runs, hooks applied; `plan_for` the same before any hook; `Watch`
keeps up with every change; `caller` tells where sync code runs; `run_inline` runs a
plan of sync receivers anywhere; `check_receiver` refuses what `connect` refuses.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from asignals import AsyncSignal
from asignals import _dispatch as dispatch
from asignals.testing import capture, muted


class Shop:
    pass


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


async def async_echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def seen(watch: dispatch.Watch) -> dispatch.Plan | None:
    return watch.plan  # read through a call: each read is of the watch's current state


def idle(watch: dispatch.Watch) -> bool:
    return watch.idle


def receivers_of(plan: dispatch.Plan) -> list[Any]:
    return [ref() for ref, _ in plan]


def test_prepare_gives_the_senders_plan_with_the_hooks_applied() -> None:
    sig = AsyncSignal("prepared")
    sig.connect(echo, weak=False)
    sig.connect(async_echo, sender=Shop, weak=False)
    assert receivers_of(dispatch.prepare(sig, None, {})) == [echo]
    assert receivers_of(dispatch.prepare(sig, Shop, {})) == [echo, async_echo]
    with capture(sig) as captured:
        assert receivers_of(dispatch.prepare(sig, Shop, {"a": 1})) == [echo, async_echo]
        assert receivers_of(dispatch.plan_for(sig, Shop)) == [echo, async_echo]
    assert [(s.sender, s.payload) for s in captured.sends] == [(Shop, {"a": 1})]  # prepare only
    with muted(sig):
        assert dispatch.prepare(sig, Shop, {}) == ()
        assert receivers_of(dispatch.plan_for(sig, Shop)) == [echo, async_echo]  # no hook


def test_a_prepared_plan_is_a_snapshot() -> None:
    sig = AsyncSignal("snapshot")
    sig.connect(echo, weak=False)
    plan = dispatch.prepare(sig, None, {})
    sig.disconnect(echo)
    assert receivers_of(plan) == [echo]
    assert dispatch.prepare(sig, None, {}) == ()


def test_is_idle_version_and_the_hook_flag_follow_every_change() -> None:
    sig = AsyncSignal("changes")
    versions = [dispatch.version(sig)]
    assert dispatch.is_idle(sig)
    assert not dispatch.is_hooked(sig)

    def receive(**kwargs: Any) -> None: ...

    sig.connect(receive)
    versions.append(dispatch.version(sig))
    assert not dispatch.is_idle(sig)
    with capture(sig):
        versions.append(dispatch.version(sig))
        assert dispatch.is_hooked(sig)
    versions.append(dispatch.version(sig))
    del receive
    gc.collect()
    versions.append(dispatch.version(sig))
    assert dispatch.is_idle(sig)
    assert versions == sorted(set(versions))  # each change a new, larger version


def test_a_watch_keeps_up_with_connections_hooks_senders_and_deaths() -> None:
    sig = AsyncSignal("watched")
    watch = dispatch.Watch(sig)
    assert idle(watch)
    assert seen(watch) == ()

    def receive(**kwargs: Any) -> None: ...

    sig.connect(receive)  # weakly held, not handed to a send yet: no plan to reuse
    assert not idle(watch)
    assert seen(watch) is None
    assert receivers_of(dispatch.prepare(sig, None, {})) == [receive]
    assert receivers_of(seen(watch) or ()) == [receive]
    with capture(sig):
        assert seen(watch) is None  # a hook sees each send: prepare() must be asked
    assert seen(watch) is not None
    sig.connect(echo, sender=Shop, weak=False)
    assert seen(watch) is None  # a sender has receivers of its own
    sig.disconnect(echo, sender=Shop)
    assert seen(watch) is not None
    del receive
    gc.collect()
    assert idle(watch)
    assert seen(watch) == ()


def test_check_receiver_refuses_what_connect_refuses_and_connects_nothing() -> None:
    sig = AsyncSignal("checked")
    assert dispatch.check_receiver(sig, async_echo) is True
    assert dispatch.check_receiver(sig, echo) is False
    with pytest.raises(TypeError, match=r"\*\*kwargs"):
        dispatch.check_receiver(sig, lambda: None)
    with pytest.raises(ValueError, match="to_thread"):
        dispatch.check_receiver(sig, async_echo, to_thread=True)
    assert sig.receivers_for(None) == []


def test_run_inline_runs_sync_receivers_without_any_event_loop() -> None:
    sig = AsyncSignal("inline")
    sig.connect(echo, weak=False)
    plan = dispatch.prepare(sig, Shop, {"a": 1})
    assert dispatch.inline(plan)
    expected = [(echo, {"signal": sig, "sender": Shop, "a": 1})]
    assert dispatch.run_inline(sig, plan, Shop, {"a": 1}, robust=False) == expected
    sig.connect(async_echo, weak=False)
    assert not dispatch.inline(dispatch.prepare(sig, Shop, {}))


def test_caller_without_an_event_loop() -> None:
    assert dispatch.caller() is dispatch.Caller.NO_LOOP
    found: list[dispatch.Caller] = []
    thread = threading.Thread(target=lambda: found.append(dispatch.caller()))
    thread.start()
    thread.join()
    assert found == [dispatch.Caller.NO_LOOP]


@pytest.mark.anyio
async def test_caller_on_the_event_loop_and_in_its_worker_threads() -> None:
    assert dispatch.caller() is dispatch.Caller.EVENT_LOOP
    assert await anyio.to_thread.run_sync(dispatch.caller) is dispatch.Caller.WORKER_THREAD


def test_caller_in_a_thread_of_asyncios_own_executor() -> None:
    """Not an anyio worker thread: nothing would run a send on the loop for it."""

    async def main() -> dispatch.Caller:
        return await asyncio.get_running_loop().run_in_executor(None, dispatch.caller)

    assert asyncio.run(main()) is dispatch.Caller.NO_LOOP


class RecordingTracer:
    """A tracer as asignals._trace sees one: records the sends it is asked to trace."""

    def __init__(self) -> None:
        self.sends: list[tuple[str, str, int]] = []

    def send(self, signal: Any, mode: str, plan: Any) -> None:
        self.sends.append((signal.name, mode, len(plan)))
        return  # traced by nobody: the send runs as it is

    def capture(self) -> dict[str, str]:
        return {"traceparent": "captured"}


@pytest.mark.anyio
async def test_a_tracer_sees_every_send_of_every_signal_while_installed() -> None:
    from asignals import _trace

    def receiver(**kwargs: Any) -> str:
        return "done"

    before = AsyncSignal("before")
    before.connect(receiver, weak=False)
    await before.send("shop")
    await before.send("shop")  # reuses its prepared send
    watch = dispatch.Watch(before)
    plans = [watch.plan]
    tracer = RecordingTracer()
    assert not dispatch.traced()
    _trace.install(tracer)  # type: ignore[arg-type]
    try:
        assert dispatch.traced()
        plans.append(watch.plan)
        after = AsyncSignal("after")
        after.connect(receiver, weak=False)
        await before.send("shop")
        await before.send_robust("shop")
        await after.gather("shop")
        await after.gather_robust("shop")
        assert _trace.capture() == {"traceparent": "captured"}
    finally:
        _trace.install(None)
    plans.append(watch.plan)
    await before.send("shop")
    assert tracer.sends == [
        ("before", "send", 1),
        ("before", "send_robust", 1),
        ("after", "gather", 1),
        ("after", "gather_robust", 1),
    ]
    assert [plan is not None for plan in plans] == [True, False, True]
    assert _trace.capture() is None
    with _trace.continued({"traceparent": "x"}):  # off: nothing to continue
        pass
