"""redis-py, as the bridge uses it: the one module of the package that imports it.

A missing redis-py fails here, when `asignals.redis` is imported, with the error naming
the extra to install. The rest of the package takes what it needs from this module: the
client, the errors that mean the connection failed, and replies turned into text.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import anyio

from .._extras import missing

try:
    import redis.asyncio as aioredis
    import redis.exceptions as redis_errors
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ResponseError as ResponseError
except ImportError as exc:  # pragma: no cover - the dev extra installs redis
    raise missing("asignals.redis", "redis-py", "redis", exc) from exc

logger = logging.getLogger("asignals.redis")

CONNECTION_ERRORS: Final = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    TimeoutError,
    # A cluster between a failover and its new slot map: the same command succeeds later.
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)
"""What a command raises when the connection (not the command) failed: worth retrying."""


def connect(url: str, timeout: float, cluster: bool = False) -> Any:
    """A client for *url* (it connects on its first command): ``redis.asyncio.Redis``, or
    with *cluster* ``redis.asyncio.RedisCluster``, which finds every node from that one and
    follows ``MOVED`` and ``ASK`` redirections itself."""
    if cluster:
        return aioredis.RedisCluster.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, protocol=2
        )
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        # Bounds every command (pub/sub's blocking reads excepted): a server that
        # stops answering raises TimeoutError instead of hanging a send.
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # the bridge retries, with its own deadline
        protocol=2,
    )


async def close_quietly(closable: Any) -> None:
    """Close a client or pub/sub connection, even while cancelled, without hanging."""
    if closable is None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
        try:
            await closable.aclose()
        except Exception:  # closing a broken connection may fail; it is closed either way
            logger.debug("closing %r failed", closable, exc_info=True)


def text(value: Any) -> str:
    """A reply field as text (the client returns bytes: ``decode_responses`` is off)."""
    return value.decode() if isinstance(value, bytes) else str(value)
