"""asignals.testing: connected_to, muted and capture, in sync and async tests.

The async tests here run through pytest-asyncio (on asyncio and uvloop, see conftest).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import anyio
import pytest
from helpers import MODES, sender_of, sync_recorder

from asignals import AsyncSignal
from asignals.testing import Capture, Sent, capture, connected_to, muted


class Shop:
    pass


def run(coroutine_function: Any, *args: Any, **kwargs: Any) -> Any:
    """Drive a send from a sync test."""

    async def main() -> Any:
        return await coroutine_function(*args, **kwargs)

    return anyio.run(main)


# -- connected_to ---------------------------------------------------------------------------


def test_connected_to_sync_with_a_lambda() -> None:
    sig = AsyncSignal("s")
    seen: list[Any] = []
    with connected_to(lambda sender, **kwargs: seen.append(sender), sig):
        assert sig.has_listeners()
        assert len(sig.receivers_for()) == 1
        run(sig.send, Shop)
    assert not sig.has_listeners()
    run(sig.send, Shop)
    assert seen == [Shop]


def test_connected_to_with_sender() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    with connected_to(handler, sig, sender=Shop):
        assert sig.receivers_for(Shop) == [handler]
        assert sig.receivers_for() == []
        run(sig.send, object())
        run(sig.send, Shop)
    assert sig.receivers_for(Shop) == []
    assert calls == ["h"]


@pytest.mark.parametrize("weak", [True, False])
def test_connected_to_keeps_an_already_connected_receiver(weak: bool) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler, sender=Shop, weak=weak)
    with connected_to(handler, sig, sender=Shop):
        assert sig.receivers_for(Shop) == [handler]  # not connected twice
    assert sig.receivers_for(Shop) == [handler]
    run(sig.send, Shop)
    assert calls == ["h"]


def test_connected_to_only_counts_a_connection_for_the_same_sender() -> None:
    sig = AsyncSignal("s")
    handler = sync_recorder([], "h")
    sig.connect(handler, sender=Shop)
    with connected_to(handler, sig):
        assert sig.receivers_for() == [handler]
    assert sig.receivers_for() == []
    assert sig.receivers_for(Shop) == [handler]


def test_connected_to_disconnects_on_error() -> None:
    sig = AsyncSignal("s")
    handler = sync_recorder([], "h")
    with pytest.raises(RuntimeError), connected_to(handler, sig):
        raise RuntimeError
    assert not sig.has_listeners()


def test_connected_to_keeps_a_receiver_connected_with_a_dispatch_uid() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler, dispatch_uid="app.h")
    with connected_to(handler, sig):
        run(sig.send)
    assert calls == ["h"]  # called once, not once per connection
    assert sig.disconnect(dispatch_uid="app.h")


def test_connected_to_rejects_non_signal() -> None:
    handler = sync_recorder([], "h")
    with pytest.raises(TypeError, match="AsyncSignal"), connected_to(handler, "sig"):  # type: ignore[arg-type]
        pass


@pytest.mark.asyncio
async def test_connected_to_async() -> None:
    sig = AsyncSignal("s")
    seen: list[Any] = []

    async def handler(order: int, **kwargs: Any) -> int:
        seen.append(order)
        return order * 2

    with connected_to(handler, sig):
        assert [v for _, v in await sig.send(Shop, order=2)] == [4]
    assert await sig.send(Shop, order=3) == []
    assert seen == [2]


# -- muted ----------------------------------------------------------------------------------


def test_muted_sync() -> None:
    first, second, other = AsyncSignal("first"), AsyncSignal("second"), AsyncSignal("other")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    for sig in (first, second, other):
        sig.connect(handler)
    with muted(first, second):
        for sig in (first, second):
            for mode in MODES:
                assert run(sender_of(sig, mode), Shop, x=1) == []
        assert calls == []
        run(other.send)
        assert calls == ["h"]
        assert first.receivers_for() == [handler]  # connections are untouched
    run(first.send)
    run(second.gather)
    assert calls == ["h", "h", "h"]


@pytest.mark.asyncio
async def test_muted_async() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler)
    with muted(sig):
        for mode in MODES:
            assert await sender_of(sig, mode)(Shop) == []
    assert calls == []
    assert len(await sig.send(Shop)) == 1
    assert calls == ["h"]


def test_muted_needs_a_signal() -> None:
    with pytest.raises(TypeError, match="at least one signal"), muted():
        pass


def test_muted_with_a_bad_signal_mutes_nothing() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler)
    with pytest.raises(TypeError, match="AsyncSignal"), muted(sig, "nope"):  # type: ignore[arg-type]
        pass
    run(sig.send)
    assert calls == ["h"]


def test_nested_muted_restores_correctly() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler)
    with muted(sig):
        with muted(sig):
            run(sig.send)
        run(sig.send)  # still muted by the outer block
        assert calls == []
        with muted(sig, sig):
            run(sig.send)
        run(sig.send)
        assert calls == []
    run(sig.send)
    assert calls == ["h"]


def test_overlapping_muted_and_capture_restore_correctly() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler)

    mute = muted(sig)
    recording = capture(sig)
    mute.__enter__()
    sent = recording.__enter__()
    run(sig.send, Shop, n=1)
    mute.__exit__(None, None, None)  # leave the muted block first: not nested
    run(sig.send, Shop, n=2)
    assert calls == ["h"]
    recording.__exit__(None, None, None)
    run(sig.send, Shop, n=3)
    assert [s.payload["n"] for s in sent] == [1, 2]
    assert calls == ["h", "h"]


def test_capture_inside_muted_and_muted_inside_capture() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler)
    with capture(sig) as outer:
        with muted(sig):
            with capture(sig) as inner:
                run(sig.send, n=1)
            run(sig.send, n=2)
        run(sig.send, n=3)
    run(sig.send, n=4)
    assert [s.payload["n"] for s in outer] == [1, 2, 3]
    assert [s.payload["n"] for s in inner] == [1]
    assert calls == ["h", "h"]  # sends 3 and 4


# -- capture --------------------------------------------------------------------------------


def test_capture_sync_records_every_mode() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler)
    order = object()
    with capture(sig) as sent:
        for mode in MODES:
            run(sender_of(sig, mode), Shop, order=order, mode=mode)
    assert isinstance(sent, Capture)
    assert len(sent) == 4
    assert list(sent) == [Sent(Shop, {"order": order, "mode": mode}) for mode in MODES]
    assert sent[0].sender is Shop
    assert sent[-1].payload == {"order": order, "mode": "gather_robust"}
    assert calls == ["h"] * 4  # capture does not stop delivery
    assert repr(sent) == "<Capture of <AsyncSignal 's'>: 4 send(s)>"


def test_capture_records_without_receivers_and_sender_keyword() -> None:
    sig = AsyncSignal("s")
    with capture(sig) as sent:
        run(sig.send, sender=Shop, x=1)
        run(sig.send)
    assert list(sent) == [Sent(Shop, {"x": 1}), Sent(None, {})]


def test_capture_filters_by_sender_identity() -> None:
    sig = AsyncSignal("s")
    sender, twin = {"id": 1}, {"id": 1}
    with capture(sig, sender=sender) as sent, capture(sig) as everything:
        run(sig.send, sender, n=1)
        run(sig.send, twin, n=2)
        run(sig.gather, sender=sender, n=3)
        run(sig.send, n=4)
    assert [s.payload["n"] for s in sent] == [1, 3]
    assert all(s.sender is sender for s in sent)
    assert len(everything) == 4


def test_capture_payload_excludes_signal_and_sender() -> None:
    sig = AsyncSignal("s")
    handler = sync_recorder([], "h")
    sig.connect(handler)
    with capture(sig) as sent:
        run(sig.send, Shop, x=1)
        run(sig.gather, sender=Shop, x=2)
    assert [s.payload for s in sent] == [{"x": 1}, {"x": 2}]


def test_capture_does_not_record_rejected_sends() -> None:
    sig = AsyncSignal("s")
    with capture(sig) as sent, pytest.raises(TypeError):
        run(sig.send, Shop, 1)
    assert len(sent) == 0


def test_has_listeners_while_capturing() -> None:
    """Code that skips sends nobody listens to must still send while a capture records."""
    sig = AsyncSignal("s")
    assert not sig.has_listeners(Shop)
    with capture(sig, sender=Shop):
        assert sig.has_listeners(Shop)
        assert not sig.has_listeners(object())  # not recorded: still nobody listening
        with muted(sig):
            assert sig.has_listeners(Shop)
    with capture(sig):
        assert sig.has_listeners(object())
    with muted(sig):
        assert not sig.has_listeners(Shop)
    assert not sig.has_listeners(Shop)


def test_capture_rejects_non_signal() -> None:
    with pytest.raises(TypeError, match="AsyncSignal"), capture(object()):  # type: ignore[arg-type]
        pass


def test_capture_records_while_muted() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler)
    with muted(sig), capture(sig) as sent:
        assert run(sig.send, Shop, x=1) == []
    assert list(sent) == [Sent(Shop, {"x": 1})]
    assert calls == []


@pytest.mark.asyncio
async def test_capture_async_every_mode_and_sender_filter() -> None:
    sig = AsyncSignal("s")
    other = Shop()
    with capture(sig, Shop) as from_shop, ExitStack() as stack:
        everything = stack.enter_context(capture(sig))
        for mode in MODES:
            await sender_of(sig, mode)(Shop, mode=mode)
            await sender_of(sig, mode)(other, mode=mode)
    assert [s.payload["mode"] for s in from_shop] == list(MODES)
    assert [s.sender for s in everything] == [Shop, other] * 4


@pytest.mark.asyncio
async def test_all_helpers_together_async() -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []

    async def handler(**kwargs: Any) -> None:
        calls.append("h")

    with connected_to(handler, sig), capture(sig) as sent:
        await sig.gather(Shop)
        with muted(sig):
            assert await sig.gather_robust(Shop) == []
        await sig.send_robust(Shop)
    await sig.send(Shop)
    assert calls == ["h", "h"]
    assert len(sent) == 3
