"""The ``redis`` section: asignals.redis end to end, against hand-written redis-py loops.

For fanout (PUBLISH / SUBSCRIBE) and queue (XADD / XREADGROUP / XACK), with 1 and 4
consumer processes: one producer in this process sends N messages (8 concurrent senders,
and, with one consumer, also one sender at a time), each carrying its
``time.monotonic()``; consumer processes (``_redis_node.py``) record the
latency from send to receiver. Throughput is N divided by the time from the first send
until every message has been handled (fanout: by every consumer; queue: once, by the
group, and acknowledged). The floor is the same commands written by hand with redis-py,
JSON in and out, no envelope. A redis-server of its own runs on a free port meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._wrk import free_port

SENDERS = 8
WAIT = 120.0


@dataclass
class RedisRow:
    mode: str
    consumers: int
    senders: int
    impl: str
    messages: int
    per_second: float
    p50_ms: float
    p99_ms: float


class _Server:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="asignals-bench-redis-"))
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.directory), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def wait_ready(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    await client.ping()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        shutil.rmtree(self.directory, ignore_errors=True)


async def _node(config: dict[str, Any]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._redis_node",
        json.dumps(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,  # the latencies come back as one JSON line
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT)
    if line.strip() != b"ready":
        raise RuntimeError(f"a benchmark consumer failed to start: {line!r}")
    return process


async def _records(process: asyncio.subprocess.Process) -> list[list[float]]:
    """Close a consumer's stdin (queue consumers stop then) and read what it handled."""
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.close()
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), WAIT)
        if not line:
            raise RuntimeError("a benchmark consumer exited without its results")
        if line.startswith(b"["):
            break
    await asyncio.wait_for(process.wait(), WAIT)
    result: list[list[float]] = json.loads(line)
    return result


async def _first_phase_done(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT)
    if line.strip() != b"first phase":
        raise RuntimeError(f"a benchmark consumer said {line!r}")


async def _scenario(
    url: str, mode: str, consumers: int, senders: int, impl: str, count: int, probes: int
) -> RedisRow:
    """Throughput: *count* messages from *senders* concurrent senders. Latency: then, once
    they are all handled, *probes* messages one at a time (2 ms apart)."""
    import redis.asyncio as aioredis

    from asignals import AsyncSignal
    from asignals.redis import RedisBridge

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    name = "order_created"
    key = f"{prefix}:{mode}:{name}"
    base = {"impl": impl, "mode": mode, "url": url, "prefix": prefix, "signal": name,
            "key": key, "group": "g", "count": count + probes,
            "first_phase": count if mode == "fanout" else -1}  # fmt: skip
    nodes = [await _node({**base, "consumer": f"c{i}"}) for i in range(consumers)]
    client = aioredis.Redis.from_url(url)
    bridge = RedisBridge(url, prefix=prefix)
    signal = AsyncSignal(name)
    if impl == "asignals":  # (a bridge would also hear the hand-written messages)
        if mode == "fanout":
            bridge.fanout(signal)
        else:
            bridge.queue(signal)

    async def send_asignals(order_id: int) -> None:
        await signal.send(None, order_id=order_id, t=time.monotonic())

    async def send_by_hand(order_id: int) -> None:
        data = json.dumps({"payload": {"order_id": order_id, "t": time.monotonic()}})
        if mode == "fanout":
            await client.publish(key, data)
        else:
            await client.xadd(key, {"m": data}, maxlen=100_000, approximate=True)

    send = send_asignals if impl == "asignals" else send_by_hand

    async def sender(start: int) -> None:
        for order_id in range(start, count, senders):
            await send(order_id)

    async def handled(total: int) -> None:
        if mode == "fanout":
            await asyncio.gather(*(_first_phase_done(node) for node in nodes))
        else:
            await asyncio.wait_for(_queue_drained(client, key, total), WAIT)

    try:
        async with bridge:
            started = time.monotonic()
            await asyncio.gather(*(sender(i) for i in range(senders)))
            await handled(count)
            for order_id in range(count, count + probes):
                await send(order_id)
                await asyncio.sleep(0.002)
            if mode == "queue":
                await handled(count + probes)
            records = [record for node in nodes for record in await _records(node)]
    finally:
        for node in nodes:
            if node.returncode is None:
                node.kill()
                await node.wait()
        await client.delete(key)
        await client.aclose()
    finished = max(at for order_id, _, at in records if order_id < count)
    latencies = sorted(latency for order_id, latency, _ in records if order_id >= count)
    return RedisRow(
        mode=mode,
        consumers=consumers,
        senders=senders,
        impl=impl,
        messages=count,
        per_second=count / (finished - started),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


async def _queue_drained(client: Any, key: str, count: int) -> None:
    while True:
        (group,) = await client.xinfo_groups(key)
        if group["pending"] == 0 and group["entries-read"] == count:
            return
        await asyncio.sleep(0.005)


async def _run(quick: bool) -> list[RedisRow]:
    server = _Server()
    try:
        await server.wait_ready()
        count = 1_000 if quick else 10_000
        probes = 50 if quick else 300
        repeats = 1 if quick else 3
        cases = [
            (mode, consumers, senders, impl)
            for mode in ("fanout", "queue")
            for consumers, senders in ((1, 1), (1, SENDERS), (4, SENDERS))
            for impl in ("redis-py", "asignals")
        ]
        best: dict[tuple[str, int, int, str], RedisRow] = {}
        for _ in range(repeats):  # interleaved, so a busy moment hurts every case alike
            for case in cases:
                row = await _scenario(server.url, *case, count, probes)
                if case not in best or row.per_second > best[case].per_second:
                    best[case] = row
        return [best[case] for case in cases]
    finally:
        server.stop()


def run(quick: bool) -> tuple[list[RedisRow], str | None]:
    """The rows, or none and the reason the section was skipped."""
    if shutil.which("redis-server") is None:
        return [], "redis: skipped, redis-server is not installed (make redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return [], 'redis: skipped, redis-py is missing (pip install "asignals-dispatch[redis]")'
    return asyncio.run(_run(quick)), None


def format_rows(rows: list[RedisRow], skipped: str | None) -> str:
    title = "redis: asignals.redis end to end, against hand-written redis-py"
    out = [f"\n{title}\n{'=' * len(title)}"]
    if skipped is not None:
        out.append(skipped)
        return "\n".join(out)
    out.append(
        f"N messages from 1 or {SENDERS} concurrent senders in this process to consumer processes;"
        "\nmsgs/s = N / (first send .. last handled, by every consumer for fanout, once per"
        "\ngroup for queue); then, with nothing queued, probe messages one at a time (2 ms"
        "\napart): latency from send to receiver; ratio = asignals / redis-py msgs/s."
    )
    header = ("mode", "consumers", "senders", "impl", "msgs/s", "p50 ms", "p99 ms", "ratio")
    lines = [header]
    floor: dict[tuple[str, int, int], float] = {}
    for row in rows:
        key = (row.mode, row.consumers, row.senders)
        if row.impl == "redis-py":
            floor[key] = row.per_second
        ratio = f"{row.per_second / floor[key]:.2f}x" if key in floor else ""
        lines.append(
            (row.mode, str(row.consumers), str(row.senders), row.impl, f"{row.per_second:,.0f}",
             f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}", ratio if row.impl == "asignals" else "")
        )  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        out.append("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(line)))
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
