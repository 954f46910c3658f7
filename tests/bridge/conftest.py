"""A real redis-server for the bridge tests: started on 127.0.0.1 and a free port, in a
temporary directory, and stopped afterwards.

``redis_server`` is shared by the whole session (tests keep apart by key prefix);
``own_redis`` is a server of the test's own, with ``appendonly yes``, for tests that kill
and restart it.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.redis_server import RedisClusterServers, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:  # pragma: no cover - the Makefile installs it
        pytest.fail("redis-server is not installed: run `make redis-server` (apt-get)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A real 3-master Redis Cluster, shared by the session (tests keep apart by prefix)."""
    if shutil.which("redis-cli") is None:  # pragma: no cover - it comes with redis-server
        pytest.fail("redis-cli is not installed: run `make redis-server` (apt-get)")
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so tests sharing a server never meet."""
    return f"t{uuid.uuid4().hex[:10]}"
