"""RedisBridge(cluster=True) against a real 3-master Redis Cluster on 127.0.0.1: bridges
connected to different nodes fan out and queue to each other, each signal's keys in one
slot, the signals spread over the slots."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from asignals import AsyncSignal
from asignals.redis import RedisBridge
from bridge.redis_server import RedisClusterServers
from bridge.support import Recorder, has_dead_letters, no_pending, running, settle, until

pytestmark = pytest.mark.asyncio
NAMES = ["orders", "invoices", "cache", "settings", "users", "carts"]


def bridge_on(cluster: RedisClusterServers, node: int, prefix: str, **options: Any) -> RedisBridge:
    return RedisBridge(cluster.urls[node], prefix=prefix, cluster=True, **options)


async def test_fanout_reaches_every_process_whichever_node_each_is_connected_to(
    redis_cluster: RedisClusterServers, prefix: str
) -> None:
    bridges = [bridge_on(redis_cluster, node, prefix) for node in range(3)]
    signals = [[AsyncSignal(name) for name in NAMES] for _ in bridges]
    recorders = [Recorder() for _ in bridges]
    for bridge, own, recorder in zip(bridges, signals, recorders, strict=True):
        bridge.fanout(*own)
        for signal in own:
            signal.connect(recorder)
    async with running(*bridges):
        for index, signal in enumerate(signals[0]):
            await signal.send(None, n=index)
        for recorder in recorders:
            await recorder.wait(len(NAMES))
        await settle()
    expected = [{"n": index} for index in range(len(NAMES))]
    for recorder in recorders:  # the sender's own receivers ran once, locally
        assert sorted((payload for _, payload, _ in recorder.calls), key=str) == sorted(
            expected, key=str
        )
    assert bridges[1].statistics().received == len(NAMES)
    assert bridges[0].statistics().published == len(NAMES)


async def test_a_queue_across_nodes_dead_letters_requeues_and_dedupes_in_one_slot(
    redis_cluster: RedisClusterServers, prefix: str
) -> None:
    here, there = AsyncSignal("orders"), AsyncSignal("orders")
    attempts: list[int] = []

    async def flaky(sender: Any, n: int, **kwargs: Any) -> None:
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    there.connect(flaky)
    web = bridge_on(redis_cluster, 0, prefix)
    web.queue(here)
    worker = bridge_on(redis_cluster, 2, prefix)
    worker.queue(there, group="mailer", max_deliveries=1, dedupe=60)
    stream = f"{prefix}:queue:{{orders}}"
    client = aioredis.RedisCluster.from_url(redis_cluster.urls[1])
    async with running(web, worker):
        await here.send(None, n=1)
        await until(lambda: has_dead_letters(worker, there, "mailer"))
        assert await worker.requeue(there, group="mailer") == 1
        await until(lambda: len(attempts) == 2)
        await until(lambda: no_pending(client, stream, "mailer"))
        done = [key async for key in client.scan_iter(match=f"{stream}:done:*")]
        slots = {
            await client.cluster_keyslot(key) for key in (stream, f"{stream}:dead:mailer", *done)
        }
        spread = {await client.cluster_keyslot(f"{prefix}:queue:{{{name}}}") for name in NAMES}
    await client.aclose()
    assert attempts == [1, 1]
    assert len(done) == 1
    assert len(slots) == 1  # the stream, its dead letters, its dedupe records
    assert len(spread) > 1  # other signals elsewhere
    stats = worker.statistics()
    assert (stats.dead_lettered, stats.acknowledged, stats.failed) == (1, 1, 1)


async def command(node: aioredis.Redis, *args: Any) -> Any:
    return await node.execute_command(*args)  # type: ignore[no-untyped-call]


async def move_slot(cluster: RedisClusterServers, key: str) -> None:
    """Move the slot of *key*, with its keys, to another master, the way `redis-cli
    --cluster reshard` does: IMPORTING and MIGRATING (clients get ASK), MIGRATE, then the
    new owner everywhere (clients get MOVED)."""
    nodes = [aioredis.Redis.from_url(url) for url in cluster.urls]
    try:
        slot = int(await command(nodes[0], "CLUSTER", "KEYSLOT", key))
        ids = [(await command(node, "CLUSTER", "MYID")).decode() for node in nodes]
        ranges = await command(nodes[0], "CLUSTER", "SLOTS")
        owner = next(
            master[2].decode() for start, end, master, *_ in ranges if start <= slot <= end
        )
        source = ids.index(owner)
        target = (source + 1) % len(nodes)
        await command(nodes[target], "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        await command(nodes[source], "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        port = cluster.nodes[target].port
        for _ in range(100):  # bounded: each round moves up to 100 keys
            keys = await command(nodes[source], "CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            await command(nodes[source], "MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)
        for node in nodes:
            await command(node, "CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    finally:
        for node in nodes:
            await node.aclose()


async def test_moving_a_signals_slot_to_another_node_loses_no_queued_message(
    redis_cluster: RedisClusterServers, prefix: str
) -> None:
    here, there = AsyncSignal("payments"), AsyncSignal("payments")
    worker = Recorder()
    there.connect(worker)
    web = bridge_on(redis_cluster, 0, prefix)
    web.queue(here)
    consumer = bridge_on(redis_cluster, 1, prefix, reconnect_base=0.05, reconnect_cap=0.2)
    consumer.queue(there, group="g")
    stream = f"{prefix}:queue:{{payments}}"
    client = aioredis.RedisCluster.from_url(redis_cluster.urls[2])
    async with running(web, consumer):
        for n in range(20):
            await here.send(None, n=n)
        await worker.wait(20)
        await move_slot(redis_cluster, stream)  # ASK while it moves, MOVED afterwards
        for n in range(20, 40):
            await here.send(None, n=n)
        await worker.wait(40)
        await until(lambda: no_pending(client, stream, "g"))
    await client.aclose()
    assert sorted(payload["n"] for _, payload, _ in worker.calls) == list(range(40))
