"""The documentation's example programs run, and the demo app works under real uvicorn."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import sqlalchemy
from _servers import Postgres
from asgi_apps import serving

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if p.name != "demo_app.py")


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_program_runs(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the example printed nothing"


@pytest.fixture
def demo() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("demo_app", EXAMPLES / "demo_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_app"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        # Its receivers are connected weakly: they go with the module.
        del sys.modules["demo_app"]


@pytest.fixture(params=["sqlite-asyncio", "sqlite-uvloop", "postgresql-asyncio"])
def demo_database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Points the demo's DATABASE_URL at a fresh database; returns the event loop to use."""
    param: str = request.param
    database, loop = param.split("-")
    if database == "sqlite":
        monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    else:
        server: Postgres = request.getfixturevalue("postgres")
        admin = sqlalchemy.create_engine(server.url("psycopg"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text("DROP DATABASE IF EXISTS demo_shop"))
            connection.execute(sqlalchemy.text("CREATE DATABASE demo_shop"))
        admin.dispose()
        monkeypatch.setenv("DATABASE_URL", server.url("asyncpg", "demo_shop"))
    return loop


def test_demo_app_sends_its_signals(
    demo_database: str, demo: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="demo"),
        serving(demo.app, loop=demo_database) as server,  # type: ignore[arg-type]
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        created = client.post("/orders", json={"item": "Pizza Margherita", "quantity": 2})
        dry = client.post("/orders", params={"dry_run": "true"}, json={"item": "Soup"})
        # The durable kitchen notification: delivered by the relay right after the commit.
        deadline = time.monotonic() + 30
        while client.get("/stats").json().get("kitchen_notifications") != 1:
            assert time.monotonic() < deadline, "the kitchen was never told"
            time.sleep(0.02)
        changed = client.patch("/orders/1", json={"quantity": 3})
        refused = client.post("/orders", json={"item": "anchovies"})
        deleted = client.delete("/orders/1")
        missing = client.delete("/orders/1")
        page = client.get("/")
        stats = client.get("/stats").json()
    assert created.status_code == 201
    body = created.json()
    # pre_save filled the slug in the flush.
    assert body == {
        "order": {"id": 1, "item": "Pizza Margherita", "quantity": 2, "slug": "2-pizza-margherita"}
    }
    # The dry run's flush ran pre_save (the slug), its rollback sent nothing.
    assert dry.status_code == 201
    assert dry.json()["rolled_back"] is True
    assert dry.json()["order"]["slug"] == "1-soup"
    assert changed.status_code == 200
    assert changed.json()["order"]["slug"] == "3-pizza-margherita"
    assert refused.status_code == 422
    assert deleted.status_code == 204
    assert missing.status_code == 404
    assert page.status_code == 200
    assert "Order a pizza" in page.text
    requests = stats.pop("requests")
    assert requests >= 8  # and one per /stats poll
    assert stats == {
        "kitchen_notifications": 1,
        "changed": 1,
        "cancelled": 1,
        "outbox": {"pending": 0, "dead": 0},
    }
    assert demo.kitchen_tickets == ["order #1: 2 x Pizza Margherita (2-pizza-margherita)"]
    assert "kitchen: order #1: 2 x Pizza Margherita" in caplog.text
    assert (
        "changed: order #1: quantity 2 -> 3, slug '2-pizza-margherita' -> '3-pizza-margherita'"
        in caplog.text
    )
    assert "cancelled: order #1 (3-pizza-margherita)" in caplog.text
    assert "POST /orders -> 201 in" in caplog.text
    assert "POST /orders -> 422 in" in caplog.text
