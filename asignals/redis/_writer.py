"""The writer: every send's message reaches Redis, alone or in pipelines.

A send made while no other command is in flight sends its own command, as a hand-written
loop would (one round trip, no hand-over to another task). Otherwise it hands its command
to the writer task and waits for Redis's reply to it; the writer sends what has gathered
meanwhile in one pipeline, one round trip for all of it. Concurrent sends (several
requests of a web worker, say) share round trips, which is where a bridge can beat one
connection per concurrent send. The waiting commands are bounded; a send that meets a
connection error retries until ``send_timeout``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._client import text
from ._health import Health
from ._types import Counters, not_running

if TYPE_CHECKING:
    from ._routes import Route


class Writer:
    """The writer of one bridge: `open` on every start, `run` in its task group, `close`."""

    def __init__(self, bridge: object, health: Health, counters: Counters, batch: int) -> None:
        self.bridge = bridge  # named in errors
        self._health = health
        self._counters = counters
        self._batch = batch
        self._client: Any = None  # redis.asyncio.Redis while running
        self._loop: asyncio.AbstractEventLoop | None = None
        # Commands waiting for the writer task (see run), bounded by _room.
        self._outbox: list[tuple[Route, bytes, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Semaphore(1)
        self._in_flight = 0  # commands sent and not answered yet (alone or in a pipeline)

    def open(self, client: Any) -> None:
        """Write through *client*, on the running event loop."""
        self._client = client
        # Made again on every start: asyncio primitives belong to the loop that used them.
        self._loop = asyncio.get_running_loop()
        self._outbox = []
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Semaphore(max(self._batch * 10, 1000))

    def close(self) -> None:
        """Stopped: sends raise until the next `open`."""
        self._client = None

    async def put(self, route: Route, data: bytes) -> Any:
        """Publish or enqueue one encoded message, retrying until ``send_timeout``."""
        if self._client is None:
            raise not_running(route.signal, self.bridge)
        result = await self._health.retrying(route.sending, lambda: self._submit(route, data))
        if route.mode == "fanout":
            self._counters.published += 1
            return result
        self._counters.enqueued += 1
        return text(result)

    async def _submit(self, route: Route, data: bytes) -> Any:
        """Hand one command to the writer and wait for Redis's reply to it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError(
                f"{route.signal!r} was sent on another event loop than the one running "
                f"{self.bridge!r}; from a plain thread, use anyio.from_thread or "
                f"asyncio.run_coroutine_threadsafe to send on the bridge's loop"
            )
        client = self._client
        if client is None:  # stopped while this send was retrying
            raise RuntimeError(f"{self.bridge!r} stopped before Redis accepted the message")
        if not self._in_flight and not self._outbox:  # nothing to share a round trip with
            self._in_flight += 1
            try:
                return await _command(client, route, data)
            finally:
                self._in_flight -= 1
        async with self._room:  # bounded: at most max_outbox commands wait
            future: asyncio.Future[Any] = loop.create_future()
            self._outbox.append((route, data, future))
            self._wake.set()
            return await future

    async def run(self) -> None:
        """Send waiting commands in pipelines: one round trip for every send made meanwhile."""
        batch: list[tuple[Route, bytes, asyncio.Future[Any]]] = []
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    batch = self._outbox[: self._batch]
                    del self._outbox[: self._batch]
                    pipe = self._client.pipeline(transaction=False)
                    for route, data, _ in batch:
                        _command(pipe, route, data)
                    self._in_flight += len(batch)
                    try:
                        replies = await pipe.execute(raise_on_error=False)
                    except Exception as exc:  # the connection: every command of the batch failed
                        replies = [exc] * len(batch)
                    finally:
                        self._in_flight -= len(batch)
                    for (_, _, future), reply in zip(batch, replies, strict=True):
                        if future.done():  # its sender was cancelled
                            continue
                        if isinstance(reply, Exception):
                            future.set_exception(reply)
                        else:
                            future.set_result(reply)
                    batch = []
        finally:  # stopped: nobody will answer these
            stopped = f"{self.bridge!r} stopped before Redis replied"
            for _, _, future in (*batch, *self._outbox):
                if not future.done():
                    future.set_exception(RuntimeError(stopped))
            self._outbox.clear()


def _command(target: Any, route: Route, data: bytes) -> Any:
    """PUBLISH or XADD one message, on a client (awaitable) or a pipeline (queued)."""
    if route.mode == "fanout":
        publish = target.spublish if route.sharded else target.publish
        return publish(route.key, data)
    return target.xadd(route.key, {"m": data}, maxlen=route.maxlen, approximate=True)
