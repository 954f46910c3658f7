"""One consumer process of the redis benchmark: ``python -m benchmarks._redis_node CONFIG``.

CONFIG (JSON): impl ("asignals" or "redis-py"), mode ("fanout" or "queue"), url, key
(channel or stream), group, consumer, count (fanout: messages to wait for). It prints
``ready`` once subscribed (or its group exists), ``first phase`` once it has handled
*first_phase* messages, then, when stdin closes (queue) or after *count* messages
(fanout), one JSON line: ``[order_id, latency, received at]`` for every message it handled
(seconds, ``time.monotonic()``, which is system-wide on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from asignals import AsyncSignal
from asignals.redis import RedisBridge


def receiver_for(records: list[list[float]], done: asyncio.Event, config: dict[str, Any]) -> Any:
    """Records [order_id, latency, received at] per message; tells when a phase is done."""
    count, first_phase = config["count"], config["first_phase"]

    def receive(sender: Any, order_id: int, t: float, **kwargs: Any) -> None:
        now = time.monotonic()
        records.append([order_id, now - t, now])
        if len(records) == first_phase:
            print("first phase", flush=True)
        if len(records) >= count:
            done.set()

    return receive


async def wait_for_stdin_eof() -> None:
    await asyncio.to_thread(sys.stdin.read)


async def run_asignals(
    config: dict[str, Any], records: list[list[float]], done: asyncio.Event
) -> None:
    signal = AsyncSignal(config["signal"])
    receive = receiver_for(records, done, config)
    signal.connect(receive)
    bridge = RedisBridge(config["url"], prefix=config["prefix"], consumer=config["consumer"])
    if config["mode"] == "fanout":
        bridge.fanout(signal)
    else:
        bridge.queue(signal, group=config["group"], claim_after=60.0)
    async with bridge:
        print("ready", flush=True)
        await (done.wait() if config["mode"] == "fanout" else wait_for_stdin_eof())


async def run_redis_py(
    config: dict[str, Any], records: list[list[float]], done: asyncio.Event
) -> None:
    """The floor: the same commands, written by hand."""
    receive = receiver_for(records, done, config)
    client = aioredis.Redis.from_url(config["url"])
    key, group, consumer = config["key"], config["group"], config["consumer"]
    if config["mode"] == "fanout":
        pubsub = client.pubsub()
        await pubsub.subscribe(key)
        await pubsub.get_message(timeout=5)  # the subscribe confirmation
        print("ready", flush=True)
        while not done.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is not None and message["type"] == "message":
                receive(None, **json.loads(message["data"])["payload"])
        await pubsub.aclose()
    else:
        with contextlib.suppress(redis.exceptions.ResponseError):  # BUSYGROUP
            await client.xgroup_create(key, group, id="0", mkstream=True)
        print("ready", flush=True)
        eof = asyncio.create_task(wait_for_stdin_eof())
        while not eof.done():
            reply: Any = await client.xreadgroup(group, consumer, {key: ">"}, count=100, block=100)
            if reply:
                entries = reply[0][1]
                for _, fields in entries:
                    receive(None, **json.loads(fields[b"m"])["payload"])
                await client.xack(key, group, *[stream_id for stream_id, _ in entries])
        await eof
    await client.aclose()


async def main(config: dict[str, Any]) -> None:
    records: list[list[float]] = []
    done = asyncio.Event()
    run = run_asignals if config["impl"] == "asignals" else run_redis_py
    await run(config, records, done)
    print(json.dumps(records), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
