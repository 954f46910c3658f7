"""Event loops for the async tests.

* Tests marked ``@pytest.mark.asyncio`` run on asyncio and on uvloop (pytest-asyncio's
  loop-factory hook).
* Tests marked ``@pytest.mark.anyio`` (the dispatch tests) run on asyncio, uvloop and trio
  (anyio's pytest plugin, through the ``anyio_backend`` fixture).

The ``postgres`` fixture starts one PostgreSQL server for the whole session (tests/_servers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import uvloop
from _servers import Postgres, postgres_server, why_no_postgres


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"loop_factory": uvloop.new_event_loop}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of our own on 127.0.0.1, for the whole test session."""
    reason = why_no_postgres()
    if reason is not None:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with postgres_server() as server:
        yield server
