"""Whether a bridge reaches Redis: outages noticed and announced once, backoff between
attempts, commands retried until ``send_timeout``, and the PING that watches a quiet
connection."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import anyio

from .._signal import AsyncSignal
from ._client import CONNECTION_ERRORS
from ._types import BridgeConnectionError, Counters, Settings

logger = logging.getLogger("asignals.redis")

bridge_connected = AsyncSignal(
    "bridge_connected",
    doc="Sent (robustly, sender=the bridge) when a RedisBridge reaches Redis again after "
    "an outage. Payload: outage (seconds the outage lasted).",
)
"""Sent robustly, with the bridge as sender, when it reaches Redis again after an outage.

Payload: `outage`, the seconds the outage lasted.
"""

bridge_disconnected = AsyncSignal(
    "bridge_disconnected",
    doc="Sent (robustly, sender=the bridge) when a RedisBridge loses Redis. Payload: error.",
)
"""Sent robustly, with the bridge as sender, when it loses Redis. Payload: `error`."""


class Backoff:
    """Bounded exponential backoff with jitter: 0.5x to 1x of min(cap, base * 2**n)."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return float(delay * random.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.attempt = 0


class Health:
    """The connection state of one bridge, which all its parts report to.

    A part that meets a connection error calls `went_down`; one that gets a reply after an
    outage calls `came_up`. Each change is logged, counted and announced once (with
    `bridge_disconnected` and `bridge_connected`), however many parts notice it, and only
    while the bridge runs: between `started` and `stopped`.
    """

    def __init__(self, bridge: object, settings: Settings, counters: Counters) -> None:
        self.bridge = bridge  # named in logs and errors; the sender of the two signals
        self.url = settings.url
        self.settings = settings
        self.counters = counters
        self.connected = False  # only ever True while the bridge runs
        self._running = False
        self._down_since = 0.0

    def started(self) -> None:
        """The bridge runs, connected: from now on changes are announced."""
        self._running = True
        self.connected = True

    def stopped(self) -> None:
        """The bridge stopped: nothing is announced until it starts again."""
        self._running = False
        self.connected = False

    def backoff(self) -> Backoff:
        """The delays between reconnection attempts, as the bridge's settings set them."""
        return Backoff(self.settings.reconnect_base, self.settings.reconnect_cap)

    async def went_down(self, error: BaseException) -> None:
        if not self.connected:
            return
        self.connected = False
        self._down_since = time.monotonic()
        self.counters.outages += 1
        logger.warning(
            "%r lost Redis at %s (%s: %s); reconnecting with backoff (up to %.1f s apart)",
            self.bridge,
            self.url,
            type(error).__name__,
            error,
            self.settings.reconnect_cap,
        )
        await bridge_disconnected.send_robust(self.bridge, error=error)

    async def came_up(self) -> None:
        if self.connected or not self._running:
            return
        self.connected = True
        outage = time.monotonic() - self._down_since
        logger.warning("%r reconnected to Redis at %s after %.1f s", self.bridge, self.url, outage)
        await bridge_connected.send_robust(self.bridge, outage=outage)

    async def retrying(self, what: str, command: Callable[[], Any]) -> Any:
        """Run one Redis command, retrying connection errors until ``send_timeout``.

        Raises:
            BridgeConnectionError: Still failing at the deadline; the message says *what*
                was being done.
        """
        send_timeout = self.settings.send_timeout
        deadline = time.monotonic() + send_timeout
        backoff = Backoff(min(self.settings.reconnect_base, 0.05), self.settings.reconnect_cap)
        while True:
            try:
                result = await command()  # bounded by the client's socket timeouts
            except CONNECTION_ERRORS as exc:
                await self.went_down(exc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BridgeConnectionError(
                        f"{self.bridge!r}: {what}: Redis at {self.url} did not answer within "
                        f"send_timeout={send_timeout} s ({type(exc).__name__}: {exc})"
                    ) from exc
                await anyio.sleep(min(backoff.next_delay(), remaining))
            else:
                if not self.connected:
                    await self.came_up()
                return result

    async def watch(self, client: Any) -> None:
        """PING while connected; after a failure, retry with backoff until Redis is back."""
        backoff = self.backoff()
        while True:
            await anyio.sleep(
                self.settings.health_interval if self.connected else backoff.next_delay()
            )
            try:
                with anyio.fail_after(self.settings.send_timeout):
                    await client.ping()
            except CONNECTION_ERRORS as exc:
                await self.went_down(exc)
            else:
                backoff.reset()
                await self.came_up()
