"""The bridge across real OS processes (``node.py``), through a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from asignals import _wire
from asignals.redis import RedisBridge
from bridge.nodes import Node, nodes, wait_until
from bridge.redis_server import RedisServer


def config(server: RedisServer, prefix: str, **options: Any) -> dict[str, Any]:
    return {"url": server.url, "prefix": prefix, **options}


def test_fanout_reaches_every_other_process_once(redis_server: RedisServer, prefix: str) -> None:
    fanout = config(redis_server, prefix, fanout=["cache_invalidated"])
    with nodes(fanout, fanout, fanout) as started:
        for index, node in enumerate(started):
            node.command(send="cache_invalidated", sender="products", payload={"key": index})
            node.wait_for("sent")
        for node in started:
            wait_until(lambda node=node: len(node.got()) == 3)  # type: ignore[misc]
        for index, node in enumerate(started):
            got = node.got()
            # its own message once, locally; every other process's message once, remotely
            assert sorted(e["payload"]["key"] for e in got) == [0, 1, 2]
            assert [e["remote"] for e in got if e["payload"]["key"] == index] == [False]
            assert all(e["sender"] == "products" for e in got)
        for node in started:  # nothing more arrives later
            node.command(rss=True)
            node.wait_for("rss")
            assert len(node.got()) == 3


def test_queue_is_handled_once_per_group(redis_server: RedisServer, prefix: str) -> None:
    producer = config(redis_server, prefix, queue={"order_created": None})
    mailer = config(redis_server, prefix, queue={"order_created": "mailer"}, claim_after=5.0)
    audit = config(redis_server, prefix, queue={"order_created": "audit"}, claim_after=5.0)
    with nodes(producer, mailer, mailer, audit) as (source, *consumers):
        for number in range(40):
            source.command(send="order_created", payload={"order_id": number})
        for _ in range(40):
            source.wait_for("sent")
        assert source.got() == []  # a producer runs no receiver of a queued signal

        def handled(group: list[Node]) -> list[int]:
            return sorted(e["payload"]["order_id"] for n in group for e in n.got())

        wait_until(lambda: handled(consumers[:2]) == list(range(40)))
        wait_until(lambda: handled(consumers[2:]) == list(range(40)))
        client = redis.Redis.from_url(redis_server.url)
        key = f"{prefix}:queue:order_created"
        wait_until(lambda: client.xpending(key, "mailer")["pending"] == 0)
        wait_until(lambda: client.xpending(key, "audit")["pending"] == 0)
        assert handled(consumers[:2]) == list(range(40))  # still once each
        client.close()


def test_a_killed_consumers_message_is_claimed_by_another(
    redis_server: RedisServer, prefix: str
) -> None:
    producer = config(redis_server, prefix, queue={"order_created": None})
    options = {"queue": {"order_created": "mailer"}, "claim_after": 0.3}
    client = redis.Redis.from_url(redis_server.url)
    key = f"{prefix}:queue:order_created"
    with nodes(producer, config(redis_server, prefix, behaviour="hang", **options)) as (
        source,
        doomed,
    ):
        source.command(send="order_created", payload={"order_id": 7})
        started = doomed.wait_for("started")
        assert started["count"] == 1
        doomed.kill()  # SIGKILL in the middle of the receiver
        assert client.xpending(key, "mailer")["pending"] == 1  # not acknowledged
        with nodes(config(redis_server, prefix, **options)) as (rescuer,):
            got = rescuer.wait_for("got")
            assert got["payload"] == {"order_id": 7}
            assert got["count"] == 2  # the second delivery
            assert got["stream_id"] == started["stream_id"]
            wait_until(lambda: client.xpending(key, "mailer")["pending"] == 0)
    client.close()


def test_a_failing_receiver_is_retried_then_dead_lettered(
    redis_server: RedisServer, prefix: str
) -> None:
    producer = config(redis_server, prefix, queue={"order_created": None})
    failing = config(
        redis_server,
        prefix,
        queue={"order_created": "mailer"},
        claim_after=0.3,
        max_deliveries=3,
        behaviour="fail",
    )
    client = redis.Redis.from_url(redis_server.url)
    key = f"{prefix}:queue:order_created"
    dead = f"{key}:dead:mailer"
    with nodes(producer, failing, failing) as (source, *consumers):
        source.command(send="order_created", payload={"order_id": 9})
        wait_until(lambda: client.xlen(dead) == 1 if client.exists(dead) else False)
        attempts = sorted(e["count"] for n in consumers for e in n.got())
        assert attempts == [1, 2, 3]  # delivered max_deliveries times, by either consumer
        assert client.xpending(key, "mailer")["pending"] == 0  # acked with the dead letter
        entries: Any = client.xrange(dead)
        ((_, fields),) = entries
        assert b"RuntimeError: receiver failed on delivery 3" in fields[b"error"]
        assert fields[b"deliveries"] == b"3"
    client.close()


def test_a_slow_fanout_consumer_stays_bounded(redis_server: RedisServer, prefix: str) -> None:
    slow = config(redis_server, prefix, fanout=["tick"], behaviour="slow")
    client = redis.Redis.from_url(redis_server.url)
    with nodes(slow) as (node,):
        node.command(rss=True)
        before = node.wait_for("rss")["kib"]
        blob = "x" * 4000
        channel = f"{prefix}:fanout:tick"
        message = _wire.seal(
            {
                "v": 1,
                "id": "i",
                "signal": "tick",
                "sender": None,
                "payload": {"blob": blob},
                "origin": "test",
                "ts": 0.0,
            },
            None,
        )
        pipe = client.pipeline(transaction=False)
        for _ in range(12_000):  # 48 MB, against a consumer handling 100 messages a second
            pipe.publish(channel, message)
        pipe.execute()
        node.command(rss=True)
        after = node.wait_for("rss")["kib"]
        # Memory is bounded by the socket buffers, not by the backlog (which Redis holds,
        # up to its client-output-buffer-limit for pub/sub, and then disconnects).
        assert after - before < 20_000, (before, after)
        assert 0 < len(node.got()) < 12_000
    client.close()


def test_the_bridge_needs_asyncio(redis_server: RedisServer) -> None:
    trio = pytest.importorskip("trio")
    bridge = RedisBridge(redis_server.url)
    with pytest.raises(RuntimeError, match="asyncio event loop"):
        trio.run(bridge.start)
