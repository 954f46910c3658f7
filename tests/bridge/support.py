"""What the bridge tests share: a recording receiver, bounded waits, raw clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis

from asignals import AsyncSignal
from asignals.redis import Delivery, RedisBridge, current_delivery
from bridge.redis_server import RedisServer

WAIT = 20.0


class Recorder:
    """A receiver that keeps what it got (and the Delivery it ran for)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, dict[str, Any], Delivery | None]] = []
        self.fail = fail

    async def __call__(self, sender: Any, **payload: Any) -> str:
        payload.pop("signal")
        self.calls.append((sender, payload, current_delivery()))
        if self.fail:
            raise RuntimeError(f"failing on call {len(self.calls)}")
        return "done"

    async def wait(self, count: int) -> None:
        await until(lambda: len(self.calls) >= count)


async def until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Wait (bounded) until *condition()* holds; it may be a coroutine function."""
    with anyio.fail_after(WAIT):
        while True:
            result = condition()
            if await result if not isinstance(result, bool) else result:
                return
            await anyio.sleep(0.01)


@asynccontextmanager
async def running(*bridges: RedisBridge) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for bridge in bridges:
            await stack.enter_async_context(bridge)
        yield


async def settle() -> None:
    """Time for anything that was going to arrive to arrive."""
    await anyio.sleep(0.3)


def raw(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url)


def connected(bridge: RedisBridge) -> bool:
    return bridge.connected


async def no_pending(client: aioredis.Redis | aioredis.RedisCluster, key: str, group: str) -> bool:
    summary: Any = await client.xpending(key, group)
    return bool(summary["pending"] == 0)


async def has_dead_letters(bridge: RedisBridge, signal: AsyncSignal, group: str) -> bool:
    return bool(await bridge.dead_letters(signal, group=group))
