"""Hostile input, fanned out and queued, against a real redis-server: every message that
cannot reach a receiver is a counted drop, logged once per reason, never a traceback; in a
queue it is dead-lettered with its reason, never acknowledged into nothing nor left pending."""

from __future__ import annotations

import hashlib
import hmac
import logging
import sys
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from asignals import AsyncSignal
from asignals.redis import RedisBridge
from bridge.redis_server import RedisServer
from bridge.support import Recorder, no_pending, raw, running, settle

pytestmark = pytest.mark.asyncio
SECRET = b"the-app-secret-0123456789"


def signed(body: bytes, secret: bytes = SECRET) -> bytes:
    return b"s1." + hmac.new(secret, body, hashlib.sha256).hexdigest().encode() + b"." + body


def body(payload: bytes = b'{"n":0}', sender: bytes = b"null", ts: bytes = b"1.0") -> bytes:
    return (
        b'{"v":1,"origin":"elsewhere","id":"e1","signal":"job","sender":' + sender
        + b',"payload":' + payload + b',"ts":' + ts + b"}"
    )  # fmt: skip


# Deep enough that reviving it (Python code, one or two frames a level) fails where the
# JSON parser (C) still copes: 3.11 counts both against one limit, 3.12+ apart.
REVIVE_DEPTH = 600 if sys.version_info < (3, 12) else 1_500
DEEP = b"[" * REVIVE_DEPTH + b"]" * REVIVE_DEPTH

HOSTILE: dict[str, tuple[bytes, str]] = {
    "a payload too deep to revive": (
        signed(body(b'{"$type":"dict","v":[["x",' + DEEP + b"]]}")),
        "malformed",
    ),
    "a 50,000-deep array": (
        signed(body(b'{"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}")),
        "malformed",
    ),
    "a 400-digit ts": (signed(body(ts=b"9" * 400)), "malformed"),
    "a payload reviving to a UUID": (
        signed(body(b'{"$type":"uuid","v":"' + str(uuid.UUID(int=1)).encode() + b'"}')),
        "malformed",
    ),
    "an escaped payload with a non-string key": (
        signed(body(b'{"$type":"dict","v":[[1,2]]}')),
        "malformed",
    ),
    "another key's signature": (signed(body(), b"a-stale-key-0123456789"), "bad_signature"),
    "an unknown sender": (signed(body(sender=b'{"$sender":"nobody"}')), "unknown_sender"),
    "an unknown type": (signed(body(b'{"x":{"$type":"pickle","v":"..."}}')), "unknown_type"),
}
EXPECTED = {"malformed": 5, "bad_signature": 1, "unknown_sender": 1, "unknown_type": 1}


@pytest.mark.parametrize("where", ["server", "cluster"])
@pytest.mark.parametrize("mode", ["fanout", "queue"])
async def test_every_undecodable_message_is_a_counted_drop_logged_once_per_reason(
    request: pytest.FixtureRequest,
    prefix: str,
    mode: str,
    where: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    here, there = AsyncSignal("job"), AsyncSignal("job")
    worker = Recorder()
    there.connect(worker)
    client: Any
    if where == "cluster":  # the sender, the receiver and the raw client on three nodes
        urls = request.getfixturevalue("redis_cluster").urls
        client = aioredis.RedisCluster.from_url(urls[1])
        key = f"{prefix}:{mode}:{{job}}"
        publish = client.spublish
    else:
        server = request.getfixturevalue("redis_server")
        urls = [server.url] * 3
        client = raw(server)
        key = f"{prefix}:{mode}:job"
        publish = client.publish
    cluster = where == "cluster"
    sender = RedisBridge(urls[0], prefix=prefix, secret=SECRET, cluster=cluster)
    receiver = RedisBridge(urls[2], prefix=prefix, secret=SECRET, cluster=cluster)
    if mode == "fanout":
        sender.fanout(here)
        receiver.fanout(there)
    else:
        sender.queue(here)
        receiver.queue(there, group="workers")
    caplog.set_level(logging.INFO, "asignals.redis")
    async with running(sender, receiver):
        for data, _ in HOSTILE.values():
            if mode == "fanout":
                await publish(key, data)
            else:
                await client.xadd(key, {"m": data})
        await here.send(None, n=1)  # after them all, on the same connection
        await worker.wait(1)
        if mode == "queue":
            letters = await receiver.dead_letters(there, group="workers")
            assert await no_pending(client, key, "workers")
        await settle()
    await client.aclose()
    assert [payload for _, payload, _ in worker.calls] == [{"n": 1}]
    stats = receiver.statistics()
    assert {kind: n for kind, n in stats.dropped.items() if n} == EXPECTED
    assert not [record for record in caplog.records if record.exc_info]  # no traceback
    drops = [
        record
        for record in caplog.records
        if "dropped a message" in record.getMessage()
        and isinstance(record.args, tuple)
        and record.args[0] is receiver  # (in fanout, the sender hears them too)
    ]
    assert len(drops) == len(EXPECTED)  # once per reason, not once per message
    if mode == "fanout":
        assert stats.dead_lettered == 0
        return
    # Queued: each one kept, with its reason, for an operator to look at (or requeue).
    assert stats.dead_lettered == len(HOSTILE)
    assert stats.acknowledged == 1
    assert [letter.error.partition(":")[0] for letter in letters] == [
        f"dropped ({kind}" for _, kind in HOSTILE.values()
    ]
    assert [letter.id for letter in letters][-2:] == ["e1"] * 2  # signed: id known
    assert not [record for record in caplog.records if "moved to" in record.getMessage()]


@pytest.mark.parametrize("where", ["server", "cluster"])
@pytest.mark.parametrize("mode", ["fanout", "queue"])
async def test_a_payload_item_named_type_crosses_as_it_is(
    request: pytest.FixtureRequest, prefix: str, mode: str, where: str
) -> None:
    here, there = AsyncSignal("job"), AsyncSignal("job")
    worker = Recorder()
    there.connect(worker)
    if where == "cluster":
        urls = request.getfixturevalue("redis_cluster").urls
    else:
        urls = [request.getfixturevalue("redis_server").url] * 3
    cluster = where == "cluster"
    a = RedisBridge(urls[0], prefix=prefix, cluster=cluster)
    b = RedisBridge(urls[1], prefix=prefix, cluster=cluster)
    if mode == "fanout":
        a.fanout(here)
        b.fanout(there)
    else:
        a.queue(here)
        b.queue(there, group="workers")
    payloads: list[dict[str, Any]] = [
        {"$type": "x", "n": 1},
        {"$type": "uuid", "v": str(uuid.UUID(int=3))},
        {"$type": "dict", "v": [["k", 1]]},
    ]
    async with running(a, b):
        for payload in payloads:
            await here.send(None, **payload)
        await worker.wait(len(payloads))
    assert [payload for _, payload, _ in worker.calls] == payloads
    assert sum(b.statistics().dropped.values()) == 0


@pytest.mark.parametrize("mode", ["fanout", "queue"])
async def test_a_circular_or_too_deep_value_raises_type_error_naming_signal_and_item(
    redis_server: RedisServer, prefix: str, mode: str
) -> None:
    signal = AsyncSignal("job")
    bridge = RedisBridge(redis_server.url, prefix=prefix)
    if mode == "fanout":
        bridge.fanout(signal)
    else:
        bridge.queue(signal)
    circular: list[Any] = []
    circular.append(circular)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    async with bridge:
        for name, value in (("loop", circular), ("tower", {"a": deep})):
            with pytest.raises(TypeError, match=rf"'job'.*payload item '{name}' is nested too"):
                await signal.send(None, **{name: value})
    stats = bridge.statistics()
    assert (stats.published, stats.enqueued) == (0, 0)
