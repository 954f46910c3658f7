"""A bridge running or stopped: its connection, and the task group that owns every
background task while it runs.

`Lifecycle.start` connects, then starts the health check, the writer, the fanout listener
and one consumer per queued signal and group, returning once each is ready (subscribed,
its group created); `Lifecycle.stop` cancels them all, waits for them and closes the
connection. Both do nothing when there is nothing to do, and stop undoes exactly what
start did, so a bridge can be started again. While it is stopped, a send of a signal it
carries raises (`Lifecycle.encode`).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._client import close_quietly, connect
from ._fanout import FanoutListener
from ._health import Health
from ._messages import Messages
from ._streams import Consumer
from ._types import Counters, Settings
from ._writer import Writer

if TYPE_CHECKING:
    from ._routes import Route, Routes


class Lifecycle:
    """Starts and stops one bridge's parts; `client` is its connection while it runs."""

    def __init__(
        self,
        bridge: object,
        settings: Settings,
        consumer: str,
        health: Health,
        writer: Writer,
        messages: Messages,
        counters: Counters,
    ) -> None:
        self.bridge = bridge  # named in errors
        self.settings = settings
        self.consumer = consumer  # this process's name in each consumer group
        self.health = health
        self.writer = writer
        self.messages = messages
        self.counters = counters
        self.client: Any = None  # redis.asyncio.Redis while running
        self._task_group: anyio.abc.TaskGroup | None = None

    @property
    def running(self) -> bool:
        return self._task_group is not None

    def encode(self, route: Route, sender: Any, payload: dict[str, Any]) -> bytes:
        """The message of one send, made inside send() so errors surface there."""
        if self._task_group is None:
            raise RuntimeError(
                f"{route.signal!r} is carried by {self.bridge!r}, which is not running: send "
                f"inside `async with bridge:` (or discard the signal from the bridge)"
            )
        return self.messages.encode(route, sender, payload)

    async def start(self, routes: Routes) -> None:
        """Connect and start every part for *routes* (see `RedisBridge.start`)."""
        if self._task_group is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{self.bridge!r}: redis-py's client needs an asyncio event loop (uvloop "
                f"works); run the bridge on anyio's asyncio backend, not trio"
            ) from None
        client = connect(self.settings.url, self.settings.send_timeout, self.settings.cluster)
        try:
            await self.health.retrying("connecting", lambda: client.ping())
        except BaseException:
            await close_quietly(client)
            raise
        self.client = client
        self.writer.open(client)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self.health.started()
        try:
            task_group.start_soon(self.health.watch, client)
            task_group.start_soon(self.writer.run)
            if fanout := [route for route in routes if route.mode == "fanout"]:
                listener = FanoutListener(
                    self.bridge,
                    client,
                    fanout,
                    self.health,
                    self.messages,
                    self.counters,
                    self.settings.send_timeout,
                )
                await task_group.start(listener.run)
            for route in routes:
                for group in route.groups.values():
                    consumer = Consumer(
                        self.bridge,
                        client,
                        route,
                        group,
                        self.consumer,
                        self.health,
                        self.messages,
                        self.counters,
                        self.settings,
                    )
                    await task_group.start(consumer.run)
        except BaseException:
            await self.stop(None, None, None)
            raise

    async def stop(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Cancel every part, wait for them, close the connection (see `RedisBridge.stop`)."""
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        self.health.stopped()
        task_group.cancel_scope.cancel()
        try:
            await task_group.__aexit__(exc_type, exc, traceback)
        finally:
            client, self.client = self.client, None
            self.writer.close()
            await close_quietly(client)
