"""The documentation's example programs run, and the demo app works under real uvicorn."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
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


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_demo_app_sends_its_signals(
    demo: ModuleType, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="demo"),
        serving(demo.app, loop=loop) as server,  # type: ignore[arg-type]
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        created = client.post("/orders", json={"item": "pizza", "quantity": 2})
        refused = client.post("/orders", json={"item": "anchovies"})
        page = client.get("/")
        stats = client.get("/stats").json()
    assert created.status_code == 201
    body = created.json()
    assert body["order"] == {"id": 1, "item": "pizza", "quantity": 2}
    assert body["receivers"] == [
        "send_confirmation: 'mailed confirmation for order #1'",
        "count_order: None",
    ]
    assert refused.status_code == 422
    assert page.status_code == 200
    assert "Order a pizza" in page.text
    assert stats == {"orders": 1, "items:pizza": 2, "notifications_sent": 1, "requests": 3}
    assert "notification: order #1 (2 x pizza) confirmed" in caplog.text
    assert "POST /orders -> 201 in" in caplog.text
    assert "POST /orders -> 422 in" in caplog.text
