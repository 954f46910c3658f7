"""RedisBridge in one process, against a real redis-server: two bridges stand for two
processes (each with its own signal objects, as two processes would have)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import logging
import threading
import time
import uuid
from typing import Any

import anyio
import anyio.to_thread
import pytest

from asignals import AsyncSignal, _wire
from asignals.redis import (
    BridgeConnectionError,
    RedisBridge,
    bridge_connected,
    bridge_disconnected,
)
from asignals.testing import capture, connected_to, muted
from bridge.redis_server import RedisServer
from bridge.support import (
    WAIT,
    Recorder,
    connected,
    has_dead_letters,
    no_pending,
    raw,
    running,
    settle,
    until,
)

pytestmark = pytest.mark.asyncio


# -- fanout -----------------------------------------------------------------------------------


async def test_fanout_runs_local_receivers_once_and_reaches_the_other_process(
    redis_server: RedisServer, prefix: str
) -> None:
    here, there = AsyncSignal("cache_invalidated"), AsyncSignal("cache_invalidated")
    local, remote = Recorder(), Recorder()
    here.connect(local)
    there.connect(remote)
    a, b = (
        RedisBridge(redis_server.url, prefix=prefix),
        RedisBridge(redis_server.url, prefix=prefix),
    )
    a.fanout(here)
    b.fanout(there)
    async with running(a, b):
        responses = await here.send("products", key=1)
        assert [r for _, r in responses][1:] == ["done"]
        assert "publish 'cache_invalidated'" in repr(responses[0][0])
        await remote.wait(1)
        await settle()
    assert local.calls == [("products", {"key": 1}, None)]  # once, and not as a delivery
    ((sender, payload, delivery),) = remote.calls
    assert (sender, payload) == ("products", {"key": 1})
    assert delivery is not None
    assert (delivery.mode, delivery.delivery_count, delivery.origin) == ("fanout", 1, a.origin)
    assert a.statistics().published == 1
    assert b.statistics().received == 1


async def test_a_receiver_of_a_remote_message_may_send_again(
    redis_server: RedisServer, prefix: str
) -> None:
    # The re-send is not published again, but a send made by its receiver is.
    ping_a, ping_b = AsyncSignal("ping"), AsyncSignal("ping")
    pong_a, pong_b = AsyncSignal("pong"), AsyncSignal("pong")
    pongs = Recorder()

    async def answer(sender: Any, n: int, **kwargs: Any) -> None:
        await pong_b.send(None, n=n + 1)

    ping_b.connect(answer)
    pong_a.connect(pongs)
    a, b = (
        RedisBridge(redis_server.url, prefix=prefix),
        RedisBridge(redis_server.url, prefix=prefix),
    )
    a.fanout(ping_a, pong_a)
    b.fanout(ping_b, pong_b)
    async with running(a, b):
        await ping_a.send(None, n=1)
        await pongs.wait(1)
        await settle()
    assert [payload for _, payload, _ in pongs.calls] == [{"n": 2}]
    assert b.statistics().published == 1  # the pong only


async def test_send_sync_from_a_worker_thread_crosses(
    redis_server: RedisServer, prefix: str
) -> None:
    here, there = AsyncSignal("cache_invalidated"), AsyncSignal("cache_invalidated")
    remote = Recorder()
    there.connect(remote)
    a, b = (
        RedisBridge(redis_server.url, prefix=prefix),
        RedisBridge(redis_server.url, prefix=prefix),
    )
    a.fanout(here)
    b.fanout(there)
    async with running(a, b):
        # Sync code in a threadpool (a `def` endpoint): the send runs on the bridge's loop.
        responses = await anyio.to_thread.run_sync(lambda: here.send_sync("products", key=2))
        assert responses[0][1] == 2  # PUBLISH reached both bridges' subscriptions
        await remote.wait(1)
    assert [payload for _, payload, _ in remote.calls] == [{"key": 2}]


async def test_send_sync_from_a_plain_thread_says_how_to_send(
    redis_server: RedisServer, prefix: str
) -> None:
    here = AsyncSignal("cache_invalidated")
    bridge = RedisBridge(redis_server.url, prefix=prefix)
    bridge.fanout(here)
    errors: list[BaseException] = []

    def from_a_plain_thread() -> None:  # no event loop, not an anyio worker thread
        try:
            here.send_sync(None, key=1)
        except RuntimeError as exc:
            errors.append(exc)

    async with bridge:
        thread = threading.Thread(target=from_a_plain_thread)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
    (error,) = errors
    assert "another event loop" in str(error)
    assert bridge.statistics().published == 0


async def test_testing_helpers_work_with_a_bridge(redis_server: RedisServer, prefix: str) -> None:
    here, there = AsyncSignal("settings_changed"), AsyncSignal("settings_changed")
    remote = Recorder()
    there.connect(remote)
    a, b = (
        RedisBridge(redis_server.url, prefix=prefix),
        RedisBridge(redis_server.url, prefix=prefix),
    )
    a.fanout(here)
    b.fanout(there)
    async with running(a, b):
        with capture(here) as sent:
            await here.send(None, n=1)
        assert [s.payload for s in sent] == [{"n": 1}]
        with muted(here):  # a muted send publishes nothing either
            assert await here.send(None, n=2) == []
        local = Recorder()
        with connected_to(local, here):
            await here.send(None, n=3)
        await remote.wait(2)
        await settle()
    assert [payload["n"] for _, payload, _ in remote.calls] == [1, 3]
    assert [payload["n"] for _, payload, _ in local.calls] == [3]
    assert here.has_listeners()  # another process may listen
    assert type(here._hook).__name__ == "HookChain"  # the bridge's hook is still there
    assert a.discard(here)
    assert here._hook is None
    assert not here.has_listeners()
    assert not a.discard(here)


# -- queue ------------------------------------------------------------------------------------


async def test_queue_send_enqueues_and_a_group_consumer_handles_it(
    redis_server: RedisServer, prefix: str
) -> None:
    produced, consumed = AsyncSignal("order_created"), AsyncSignal("order_created")
    local, worker = Recorder(), Recorder()
    produced.connect(local)  # not run: a queued send runs no local receiver
    consumed.connect(worker)
    web = RedisBridge(redis_server.url, prefix=prefix)
    mailer = RedisBridge(redis_server.url, prefix=prefix, consumer="mailer-1")
    web.queue(produced)
    mailer.queue(consumed, group="mailer", claim_after=5.0)
    async with running(web, mailer):
        ((entry, stream_id),) = await produced.send("shop", order_id=42)
        assert "enqueue 'order_created'" in repr(entry)
        await worker.wait(1)
        client = raw(redis_server)
        await until(lambda: no_pending(client, f"{prefix}:queue:order_created", "mailer"))
        await client.aclose()
    assert local.calls == []
    ((sender, payload, delivery),) = worker.calls
    assert (sender, payload) == ("shop", {"order_id": 42})
    assert delivery is not None
    assert (delivery.stream_id, delivery.group, delivery.delivery_count) == (
        stream_id,
        "mailer",
        1,
    )
    assert mailer.statistics().acknowledged == 1
    assert web.statistics().enqueued == 1


async def test_failed_messages_stay_pending_then_go_to_the_dead_letters(
    redis_server: RedisServer, prefix: str
) -> None:
    produced, consumed = AsyncSignal("webhook"), AsyncSignal("webhook")
    failing = Recorder(fail=True)
    consumed.connect(failing)
    web = RedisBridge(redis_server.url, prefix=prefix)
    worker = RedisBridge(redis_server.url, prefix=prefix)
    web.queue(produced)
    worker.queue(consumed, group="hooks", claim_after=0.3, max_deliveries=3)
    client = raw(redis_server)
    key = f"{prefix}:queue:webhook"
    async with running(web, worker):
        await produced.send(None, url="https://example.invalid/")
        await failing.wait(1)
        assert (await client.xpending(key, "hooks"))["pending"] == 1  # not acknowledged
        await until(lambda: has_dead_letters(worker, consumed, "hooks"))
        (letter,) = await web.dead_letters(produced, group="hooks")
        assert (await client.xpending(key, "hooks"))["pending"] == 0
        assert await web.dead_letters(produced, group="other") == []
    await client.aclose()
    assert [d.delivery_count for _, _, d in failing.calls if d] == [1, 2, 3]
    assert letter.payload == {"url": "https://example.invalid/"}
    assert letter.deliveries == 3
    assert letter.error.startswith("RuntimeError: failing on call 3")
    assert worker.statistics().dead_lettered == 1
    assert worker.statistics().acknowledged == 0


async def test_a_restarted_consumer_first_rereads_its_own_pending_entries(
    redis_server: RedisServer, prefix: str
) -> None:
    produced, consumed = AsyncSignal("job"), AsyncSignal("job")
    web = RedisBridge(redis_server.url, prefix=prefix)
    web.queue(produced)
    started = anyio.Event()

    async def stuck(sender: Any, **payload: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    consumed.connect(stuck)
    first = RedisBridge(redis_server.url, prefix=prefix, consumer="worker-1")
    first.queue(consumed, group="jobs", claim_after=60.0)  # nobody would claim it for a minute
    async with running(web):
        async with first:
            await produced.send(None, n=1)
            with anyio.fail_after(WAIT):
                await started.wait()
        consumed.disconnect(stuck)  # the bridge stopped in the middle of the receiver
        assert first.discard(consumed)
        again = Recorder()
        consumed.connect(again)
        second = RedisBridge(redis_server.url, prefix=prefix, consumer="worker-1")
        second.queue(consumed, group="jobs", claim_after=60.0)
        async with second:
            await again.wait(1)
    ((_, payload, delivery),) = again.calls
    assert payload == {"n": 1}
    assert delivery is not None
    assert delivery.delivery_count == 2


async def test_a_long_batch_is_not_claimed_away_from_its_consumer(
    redis_server: RedisServer, prefix: str
) -> None:
    # One consumer reads 16 messages in one batch and needs 1.6 s for them, longer than
    # claim_after: it keeps the rest of the batch its own, so the other consumer of the
    # group (claiming every 0.5 s) never runs one of them a second time.
    produced = AsyncSignal("job")
    web = RedisBridge(redis_server.url, prefix=prefix)
    web.queue(produced)
    handled: list[tuple[str, int]] = []
    consumers = []
    for name in ("a", "b"):
        signal = AsyncSignal("job")

        async def slow(sender: Any, n: int, name: str = name, **kwargs: Any) -> None:
            handled.append((name, n))
            await anyio.sleep(0.1)

        signal.connect(slow, weak=False)
        bridge = RedisBridge(redis_server.url, prefix=prefix, consumer=name)
        bridge.queue(signal, group="g", claim_after=1.0)
        consumers.append(bridge)
    async with running(web):
        for n in range(16):  # all in the stream before the first consumer reads
            await produced.send(None, n=n)
        async with running(*consumers):
            await until(lambda: len(handled) >= 16)
            await anyio.sleep(1.5)  # long enough for a claim to have happened
    assert sorted(n for _, n in handled) == list(range(16))  # each exactly once


# -- what crosses -----------------------------------------------------------------------------


@dataclasses.dataclass
class Order:
    id: int
    placed: datetime.datetime
    total: decimal.Decimal
    tags: list[str]


class Shop:
    pass


async def test_registered_senders_and_types_round_trip(
    redis_server: RedisServer, prefix: str
) -> None:
    here, there = AsyncSignal("order_paid"), AsyncSignal("order_paid")
    remote = Recorder()
    there.connect(remote)
    bridges = (
        RedisBridge(redis_server.url, prefix=prefix),
        RedisBridge(redis_server.url, prefix=prefix),
    )
    for bridge, signal in zip(bridges, (here, there), strict=True):
        bridge.fanout(signal)
        bridge.register_sender(Shop, "shop.Shop")
        bridge.register_dataclass(Order)
    order = Order(1, datetime.datetime(2026, 1, 2, 3, 4, 5), decimal.Decimal("9.90"), ["a"])
    payload = {
        "order": order,
        "ref": uuid.UUID(int=5),
        "day": datetime.date(2026, 1, 2),
        "meta": {"$type": "not a type", "nested": [1, 2.5, None, True]},
        "pair": (1, "b"),
    }
    async with running(*bridges):
        await here.send(Shop, **payload)
        await here.send(7, n=1)
        await remote.wait(2)
    (sender, got, _), (number, _, _) = remote.calls
    assert sender is Shop
    assert number == 7
    assert got == {**payload, "pair": [1, "b"]}  # tuples cross as lists
    assert got["order"] == order


async def test_what_cannot_cross_raises_in_send_before_anything_is_published(
    redis_server: RedisServer, prefix: str
) -> None:
    signal = AsyncSignal("order_created")
    bridge = RedisBridge(redis_server.url, prefix=prefix, max_message_bytes=2000)
    bridge.queue(signal)
    async with bridge:
        with pytest.raises(TypeError, match=r"'order_created'.*'when'.*datetime\.time"):
            await signal.send(None, n=1, when=datetime.time(1, 2))
        with pytest.raises(TypeError, match=r"'bad'.*non-string key 1"):
            await signal.send(None, bad={1: "x"})
        with pytest.raises(TypeError, match=r"'f'.*nan"):
            await signal.send(None, f=float("nan"))
        with pytest.raises(TypeError, match="register_sender"):
            await signal.send(Shop, n=1)
        with pytest.raises(TypeError, match="register_sender"):
            await signal.send(True, n=1)  # a bool is not an int sender
        with pytest.raises(ValueError, match="max_message_bytes=2000"):
            await signal.send(None, blob="x" * 3000)
        client = raw(redis_server)
        assert await client.exists(f"{prefix}:queue:order_created") == 0
        await client.aclose()
    with pytest.raises(RuntimeError, match="not running"):
        await signal.send(None, n=1)


async def test_only_registered_signals_and_well_formed_messages_cross(
    redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    there = AsyncSignal("news")
    remote = Recorder()
    there.connect(remote)
    bridge = RedisBridge(redis_server.url, prefix=prefix, max_message_bytes=10_000)
    bridge.fanout(there)
    channel = f"{prefix}:fanout:news"

    def envelope(**changes: Any) -> dict[str, Any]:
        fields = {"v": 1, "id": "x", "signal": "news", "sender": None, "payload": {},
                  "origin": "o", "ts": 1.0}  # fmt: skip
        return {**fields, **changes}

    bad = [
        b"not json",
        b"[1, 2]",
        _wire.seal(envelope(v=2), None),
        _wire.seal(envelope(signal="other"), None),
        _wire.seal(envelope(sender={"$sender": "nobody"}), None),
        _wire.seal(envelope(payload={"x": {"$type": "pickle", "v": "..."}}), None),
        _wire.seal(envelope(payload={"signal": 1}), None),
        _wire.seal(envelope(payload={"blob": "x" * 20_000}), None),
        _wire.seal({k: v for k, v in envelope().items() if k != "ts"}, None),
        b"not json either",
    ]
    client = raw(redis_server)
    caplog.set_level(logging.WARNING, "asignals.redis")
    async with bridge:
        for data in bad:
            await client.publish(channel, data)
        await client.publish(channel, _wire.seal(envelope(payload={"ok": True}), None))
        await remote.wait(1)
    await client.aclose()
    assert [payload for _, payload, _ in remote.calls] == [{"ok": True}]
    dropped = {kind: n for kind, n in bridge.statistics().dropped.items() if n}
    assert dropped == {
        "malformed": 5,
        "wrong_version": 1,
        "unknown_signal": 1,
        "unknown_sender": 1,
        "unknown_type": 1,
        "oversized": 1,
    }
    drops = [r for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(drops) == len(dropped)  # logged once per kind


async def test_signed_messages_cross_and_unsigned_or_tampered_ones_are_dropped(
    redis_server: RedisServer, prefix: str
) -> None:
    secret = "s3cret-s3cret-s3cret"
    here, there, stranger = AsyncSignal("news"), AsyncSignal("news"), AsyncSignal("news")
    remote = Recorder()
    there.connect(remote)
    a = RedisBridge(redis_server.url, prefix=prefix, secret=secret)
    b = RedisBridge(redis_server.url, prefix=prefix, secret=secret)
    c = RedisBridge(redis_server.url, prefix=prefix, secret="another-secret-entirely")
    a.fanout(here)
    b.fanout(there)
    c.fanout(stranger)
    client = raw(redis_server)
    async with running(a, b, c):
        await stranger.send(None, n=0)  # signed with another secret
        signed = _wire.seal(
            {"v": 1, "id": "x", "signal": "news", "sender": None, "payload": {"n": 1},
             "origin": "o", "ts": 1.0},
            secret.encode(),
        )  # fmt: skip
        await client.publish(f"{prefix}:fanout:news", signed.replace(b'"n":1', b'"n":2'))
        await client.publish(f"{prefix}:fanout:news", signed[signed.index(b"{") :])
        await here.send(None, n=3)
        await remote.wait(1)
        await settle()
    await client.aclose()
    assert [payload for _, payload, _ in remote.calls] == [{"n": 3}]
    dropped = b.statistics().dropped
    assert (dropped["bad_signature"], dropped["unsigned"]) == (2, 1)


async def test_queue_dead_letters_bad_entries_and_keeps_consuming(
    redis_server: RedisServer, prefix: str
) -> None:
    produced, consumed = AsyncSignal("job"), AsyncSignal("job")
    worker = Recorder()
    consumed.connect(worker)
    web = RedisBridge(redis_server.url, prefix=prefix)
    consumer = RedisBridge(redis_server.url, prefix=prefix)
    web.queue(produced)
    consumer.queue(consumed, group="g", claim_after=0.3)
    client = raw(redis_server)
    async with running(web, consumer):
        await client.xadd(f"{prefix}:queue:job", {"m": b"garbage"})
        await client.xadd(f"{prefix}:queue:job", {"other": b"field"})
        await produced.send(None, n=1)
        await worker.wait(1)
        await until(lambda: no_pending(client, f"{prefix}:queue:job", "g"))
        letters = await consumer.dead_letters(consumed, group="g")
    await client.aclose()
    stats = consumer.statistics()
    assert (stats.dropped["malformed"], stats.dead_lettered) == (2, 2)
    assert [letter.error for letter in letters] == [
        "dropped (malformed: not a JSON document)",
        "dropped (malformed: the entry has no message field)",
    ]


# -- lifecycle and failures -------------------------------------------------------------------


async def test_start_and_stop_are_idempotent_and_symmetric(
    redis_server: RedisServer, prefix: str
) -> None:
    signal = AsyncSignal("news")
    bridge = RedisBridge(redis_server.url, prefix=prefix)
    bridge.fanout(signal)
    assert not connected(bridge)
    await bridge.stop()  # not running: nothing to do
    for _ in range(2):
        await bridge.start()
        await bridge.start()
        assert connected(bridge)
        assert "running" in repr(bridge)
        await signal.send(None)
        await bridge.stop()
        await bridge.stop()
        assert not bridge.connected
    assert bridge.statistics().published == 2
    with pytest.raises(RuntimeError, match="not running"):
        await signal.send(None)


async def test_start_fails_with_connection_error_when_redis_is_unreachable() -> None:
    from bridge.redis_server import free_port

    bridge = RedisBridge(f"redis://127.0.0.1:{free_port()}/0", send_timeout=0.3)
    bridge.fanout(AsyncSignal("news"))
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"send_timeout=0\.3"):
        await bridge.start()
    assert time.monotonic() - started < 10
    assert not bridge.connected


async def test_redis_restart_reconnects_and_loses_no_accepted_message(
    own_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    fan_here, fan_there = AsyncSignal("news"), AsyncSignal("news")
    produced, consumed = AsyncSignal("job"), AsyncSignal("job")
    news, jobs = Recorder(), Recorder()
    fan_there.connect(news)
    consumed.connect(jobs)
    options: dict[str, Any] = {"prefix": prefix, "send_timeout": 0.5, "reconnect_cap": 0.3,
                               "health_interval": 0.1}  # fmt: skip
    web = RedisBridge(own_redis.url, **options)
    worker = RedisBridge(own_redis.url, **options)
    web.fanout(fan_here)
    web.queue(produced)
    worker.fanout(fan_there)
    worker.queue(consumed, group="g", claim_after=0.3)
    events: list[str] = []

    def on_down(sender: Any, error: BaseException, **kwargs: Any) -> None:
        events.append("down")

    def on_up(sender: Any, outage: float, **kwargs: Any) -> None:
        events.append("up")

    caplog.set_level(logging.WARNING, "asignals.redis")
    with connected_to(on_down, bridge_disconnected), connected_to(on_up, bridge_connected):
        async with running(web, worker):
            accepted = [await produced.send(None, n=n) for n in range(20)]
            own_redis.kill()
            await jobs.wait(0)
            started = time.monotonic()
            with pytest.raises(ConnectionError, match="did not answer"):
                await produced.send(None, n=99)
            with pytest.raises(BridgeConnectionError):
                await fan_here.send(None, n=99)
            assert time.monotonic() - started < 10  # a bounded wait, no hang
            await until(lambda: not web.connected and not worker.connected)
            own_redis.start()  # same port, same appendonly file
            await until(lambda: web.connected and worker.connected)
            await produced.send(None, n=20)
            await jobs.wait(21)
            with anyio.fail_after(WAIT):  # the subscription is back: fanout resumes
                while not news.calls:
                    await fan_here.send(None, n=1)
                    await anyio.sleep(0.1)
    assert len(accepted) == 20
    handled = sorted({payload["n"] for _, payload, _ in jobs.calls})
    assert handled == list(range(21))  # nothing that send() accepted was lost
    assert 99 not in handled
    assert "down" in events
    assert "up" in events
    lost = [r for r in caplog.records if "lost Redis" in r.getMessage()]
    back = [r for r in caplog.records if "reconnected" in r.getMessage()]
    assert 1 <= len(lost) <= 2  # once per outage, per bridge
    assert 1 <= len(back) <= 2
    assert web.statistics().outages == 1


async def test_a_send_still_retrying_when_the_bridge_stops_raises_instead_of_hanging(
    own_redis: RedisServer, prefix: str
) -> None:
    signal = AsyncSignal("job")
    bridge = RedisBridge(own_redis.url, prefix=prefix, send_timeout=10.0)
    bridge.queue(signal)
    errors: list[BaseException] = []

    async def sending() -> None:
        try:
            await signal.send(None, n=1)
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tasks:
        await bridge.start()
        own_redis.kill()
        tasks.start_soon(sending)
        await until(lambda: not bridge.connected)  # the send is retrying meanwhile
        await bridge.stop()
    (error,) = errors
    assert "stopped before Redis accepted the message" in str(error)
    assert bridge.statistics().enqueued == 0


async def test_registration_errors_name_the_signal_and_the_fix(redis_server: RedisServer) -> None:
    bridge = RedisBridge(redis_server.url)
    signal = AsyncSignal("news")
    bridge.fanout(signal)
    bridge.fanout(signal)  # again: nothing new
    with pytest.raises(ValueError, match="either fanned out or queued"):
        bridge.queue(signal)
    with pytest.raises(ValueError, match="another signal named 'news'"):
        bridge.fanout(AsyncSignal("news"))
    with pytest.raises(ValueError, match="another RedisBridge"):
        RedisBridge(redis_server.url).fanout(signal)
    with pytest.raises(TypeError, match="AsyncSignal"):
        bridge.fanout("news")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="under its name"):
        bridge.fanout(AsyncSignal())
    with pytest.raises(ValueError, match="claim_after"):
        bridge.queue(AsyncSignal("q"), group="g", claim_after=0)
    with pytest.raises(TypeError, match="max_deliveries"):
        bridge.queue(AsyncSignal("q"), group="g", max_deliveries=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="group"):
        bridge.queue(AsyncSignal("q"), group="")
    with pytest.raises(ValueError, match="cross as they are"):
        bridge.register_sender("shop", "shop")
    bridge.register_sender(Shop, "shop.Shop")
    with pytest.raises(ValueError, match="already taken"):
        bridge.register_sender(Order, "shop.Shop")
    with pytest.raises(ValueError, match="already taken"):
        bridge.register_type(Shop, "uuid", str, str)
    with pytest.raises(TypeError, match="dataclass"):
        bridge.register_dataclass(Shop)
    with pytest.raises(ValueError, match="not queued"):
        await bridge.dead_letters(signal, group="g")
    for bad in ({"url": ""}, {"prefix": 1}, {"secret": "short"}, {"send_timeout": -1},
                {"maxlen": 0}, {"batch": True}, {"secret": 5}):  # fmt: skip
        with pytest.raises((TypeError, ValueError)):
            RedisBridge(**bad)


@pytest.mark.parametrize(
    "name", ["send_timeout", "reconnect_base", "reconnect_cap", "health_interval"]
)
@pytest.mark.parametrize("seconds", [10**400, float("inf")], ids=["huge-int", "inf"])
async def test_seconds_no_timer_can_take_are_refused_with_their_name(
    name: str, seconds: float
) -> None:
    finite = f"{name} must be a positive, finite number of seconds"
    options: dict[str, Any] = {name: seconds}
    with pytest.raises(ValueError, match=rf"^RedisBridge\(\): {finite}"):
        RedisBridge(**options)
    with pytest.raises(ValueError, match=r"claim_after must be a positive, finite number"):
        RedisBridge().queue(AsyncSignal("q"), claim_after=seconds)
