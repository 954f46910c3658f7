"""Fresh databases for the outbox tests: an SQLite file and PostgreSQL (tests/_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge.conftest import prefix, redis_server
from sqlalchemy import create_engine

from asignals.sqlalchemy import Outbox
from durable.models import Base

__all__ = ["database", "prefix", "redis_server"]  # the bridge tests' Redis fixtures too

DATABASES = ["sqlite-file", "postgresql"]


def reset(sync_url: str) -> None:
    """Drop and create the test tables (the outbox table too, when in Base.metadata)."""
    engine = create_engine(sync_url)
    Outbox(engine, metadata=Base.metadata)  # its table is in the metadata from now on
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(async url, sync url) of an empty database."""
    if request.param == "sqlite-file":
        path = tmp_path / "shop.db"
        yield f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}"
    else:
        postgres = request.getfixturevalue("postgres")
        yield postgres.url("asyncpg"), postgres.url("psycopg")
