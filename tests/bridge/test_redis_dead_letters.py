"""Dead letters an operator can replay or delete, and duplicate suppression, against a real
redis-server."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from asignals import AsyncSignal
from asignals.redis import RedisBridge
from bridge.redis_server import RedisServer
from bridge.support import Recorder, has_dead_letters, no_pending, raw, running, settle, until

pytestmark = pytest.mark.asyncio
SECRET = "the-app-secret-0123456789"


async def test_a_consumer_with_a_stale_key_dead_letters_and_a_requeue_delivers_once_fixed(
    redis_server: RedisServer, prefix: str
) -> None:
    web_signal, billing_signal = AsyncSignal("order"), AsyncSignal("order")
    stale_signal, fixed_signal = AsyncSignal("order"), AsyncSignal("order")
    billing, mailer = Recorder(), Recorder()
    billing_signal.connect(billing)
    stale_signal.connect(mailer)
    fixed_signal.connect(mailer)
    web = RedisBridge(redis_server.url, prefix=prefix, secret=SECRET)
    web.queue(web_signal)
    billing_bridge = RedisBridge(redis_server.url, prefix=prefix, secret=SECRET)
    billing_bridge.queue(billing_signal, group="billing")
    stale = RedisBridge(redis_server.url, prefix=prefix, secret="last-weeks-secret-0123")
    stale.queue(stale_signal, group="mailer")
    async with running(web, billing_bridge, stale):
        await web_signal.send(None, order_id=7)
        await billing.wait(1)
        await until(lambda: has_dead_letters(stale, stale_signal, "mailer"))
        (letter,) = await stale.dead_letters(stale_signal, group="mailer")
    assert mailer.calls == []
    assert letter.error.startswith("dropped (bad_signature")
    stats = stale.statistics()
    assert (stats.dropped["bad_signature"], stats.dead_lettered, stats.acknowledged) == (1, 1, 0)

    fixed = RedisBridge(redis_server.url, prefix=prefix, secret=SECRET)
    fixed.queue(fixed_signal, group="mailer")
    async with running(billing_bridge, fixed):
        assert await fixed.requeue(fixed_signal, group="mailer") == 1
        await mailer.wait(1)
        await settle()
        assert await fixed.dead_letters(fixed_signal, group="mailer") == []
    ((_, payload, delivery),) = mailer.calls
    ((_, _, first),) = billing.calls  # billing, which had finished it, never ran it again
    assert payload == {"order_id": 7}
    assert delivery is not None
    assert first is not None
    assert delivery.id == first.id  # the same envelope: idempotent receivers know it
    # The dead letter names the queue entry it was; the requeued message is a new entry of
    # the queue stream. (Entry ids are per stream: the dead-letter stream's own id for the
    # letter may equal the queue's id for the original, when both were added in the same
    # millisecond.)
    assert letter.original_id == first.stream_id
    assert delivery.stream_id != first.stream_id


async def test_requeue_and_purge_take_dead_letter_ids_or_all(
    redis_server: RedisServer, prefix: str
) -> None:
    here, there = AsyncSignal("job"), AsyncSignal("job")
    failing = Recorder(fail=True)
    there.connect(failing)
    web = RedisBridge(redis_server.url, prefix=prefix)
    web.queue(here)
    worker = RedisBridge(redis_server.url, prefix=prefix)
    worker.queue(there, group="g", max_deliveries=1)
    async with running(web, worker):
        for n in range(4):
            await here.send(None, n=n)

        async def four() -> bool:
            return len(await worker.dead_letters(there, group="g")) == 4

        await until(four)
        letters = await worker.dead_letters(there, group="g")
        first, second = letters[0].stream_id, letters[1].stream_id
        assert await worker.requeue(there, group="g", ids=[first]) == 1
        await failing.wait(5)  # run again (and failed again: a dead letter again)
        await until(four)
        assert await worker.purge_dead_letters(there, group="g", ids=[second, second]) == 1
        assert await worker.purge_dead_letters(there, group="g", ids=[second]) == 0
        assert await worker.requeue(there, group="g", ids=[second]) == 0  # gone
        assert await worker.purge_dead_letters(there, group="g", ids=[]) == 0
        left = await worker.dead_letters(there, group="g")
        assert [letter.payload["n"] for letter in left] == [2, 3, 0]
        assert await worker.purge_dead_letters(there, group="g") == 3
        assert await worker.dead_letters(there, group="g") == []
        assert await worker.requeue(there, group="g") == 0
        with pytest.raises(ValueError, match=r"requeue\(<AsyncSignal 'job'>\): 'x' is not a"):
            await worker.requeue(there, group="g", ids=["x"])
        with pytest.raises(TypeError, match="ids must be a list"):
            await worker.purge_dead_letters(there, group="g", ids="1-0")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="group must be a non-empty string"):
            await worker.requeue(there, group="")
        with pytest.raises(ValueError, match="not queued"):
            await worker.requeue(AsyncSignal("job"), group="g")
    with pytest.raises(RuntimeError, match="not running"):
        await worker.purge_dead_letters(there, group="g")


async def test_requeue_all_moves_more_than_a_page(redis_server: RedisServer, prefix: str) -> None:
    signal = AsyncSignal("job")
    bridge = RedisBridge(redis_server.url, prefix=prefix)
    bridge.queue(signal)
    client = raw(redis_server)
    dead = f"{prefix}:queue:job:dead:g"
    async with bridge:
        for n in range(250):
            await client.xadd(dead, {"m": b"x", "id": b"1-0", "error": b"e", "deliveries": n})
        assert await bridge.requeue(signal, group="g") == 250
        entries: Any = await client.xrange(f"{prefix}:queue:job")
    await client.aclose()
    assert len(entries) == 250
    assert {tuple(fields.items()) for _, fields in entries} == {((b"m", b"x"), (b"g", b"g"))}


async def test_dedupe_acknowledges_a_message_its_group_finished_without_running_it_again(
    redis_server: RedisServer, prefix: str
) -> None:
    here, there = AsyncSignal("job"), AsyncSignal("job")
    worker = Recorder()
    there.connect(worker)
    web = RedisBridge(redis_server.url, prefix=prefix)
    web.queue(here)
    consumer = RedisBridge(redis_server.url, prefix=prefix)
    consumer.queue(there, group="g", dedupe=60)
    stream = f"{prefix}:queue:job"
    client = raw(redis_server)
    async with running(web, consumer):
        await here.send(None, n=1)
        await worker.wait(1)
        entries: Any = await client.xrange(stream)
        ((_, fields),) = entries
        await client.xadd(stream, fields)  # the same message (one envelope id), again
        await here.send(None, n=2)
        await worker.wait(2)
        await until(lambda: no_pending(client, stream, "g"))
        delivery = worker.calls[0][2]
        assert delivery is not None
        ttl = await client.ttl(f"{stream}:done:g:{delivery.id}")
    await client.aclose()
    assert [payload for _, payload, _ in worker.calls] == [{"n": 1}, {"n": 2}]
    stats = consumer.statistics()
    assert (stats.duplicates, stats.acknowledged, stats.received) == (1, 3, 2)
    assert 0 < ttl <= 60


async def test_dedupe_must_be_positive_seconds_for_a_group() -> None:
    bridge = RedisBridge()
    for seconds in (0, 10**400, float("inf")):
        with pytest.raises(ValueError, match=r"dedupe must be a positive, finite number"):
            bridge.queue(AsyncSignal("a"), group="g", dedupe=seconds)
    with pytest.raises(TypeError, match=r"dedupe must be a number of seconds"):
        bridge.queue(AsyncSignal("b"), group="g", dedupe="1h")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dedupe is kept per consumer group; pass group="):
        bridge.queue(AsyncSignal("c"), dedupe=60)


async def test_concurrent_sends_share_round_trips_and_all_arrive(
    redis_server: RedisServer, prefix: str
) -> None:
    here, there = AsyncSignal("job"), AsyncSignal("job")
    worker = Recorder()
    there.connect(worker)
    web = RedisBridge(redis_server.url, prefix=prefix, batch=16)
    web.queue(here)
    consumer = RedisBridge(redis_server.url, prefix=prefix)
    consumer.queue(there, group="g")
    async with running(web, consumer):
        async with anyio.create_task_group() as tasks:
            for n in range(200):
                tasks.start_soon(functools.partial(here.send, None, n=n))
        await worker.wait(200)
    assert sorted(payload["n"] for _, payload, _ in worker.calls) == list(range(200))
    assert web.statistics().enqueued == 200


async def test_dead_letters_that_are_not_messages_are_read_as_far_as_they_go(
    redis_server: RedisServer, prefix: str
) -> None:
    signal = AsyncSignal("job")
    bridge = RedisBridge(redis_server.url, prefix=prefix)
    bridge.queue(signal)
    client = raw(redis_server)
    await client.xadd(f"{prefix}:queue:job:dead:g", {"m": b"{", "deliveries": b"?", "at": b"?"})
    async with bridge:
        (letter,) = await bridge.dead_letters(signal, group="g")
    await client.aclose()
    assert (letter.id, letter.payload, letter.deliveries, letter.failed_at) == ("", {}, 0, 0.0)
