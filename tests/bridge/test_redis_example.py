"""docs/examples/redis_shop.py as it is meant to run: two uvicorn workers and a mailer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bridge.nodes import WAIT, wait_until
from bridge.redis_server import RedisServer, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_two_uvicorn_workers_and_a_mailer(redis_server: RedisServer) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url}
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "redis_shop:app",
         "--workers", "2", "--host", "127.0.0.1", "--port", str(port), "--log-level",
         "warning"],
        env=env,
    )  # fmt: skip
    mailer = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "redis_shop.py"), "mailer"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert mailer.stdout is not None
        assert mailer.stdout.readline().strip() == "mailer ready"

        def get(path: str) -> httpx.Response:
            # A new connection per request, so that both workers get some.
            return httpx.get(base + path, timeout=5, headers={"connection": "close"})

        ready_workers: set[int] = set()

        def both_workers_ready() -> bool:
            # Pub/sub is at-most-once: a worker that has not subscribed yet would miss the
            # price change, so wait until each of the two has answered /ready.
            try:
                answer = get("/ready")
            except httpx.TransportError:
                return False
            if answer.status_code == 200:
                ready_workers.add(answer.json()["worker"])
            return len(ready_workers) == 2

        wait_until(both_workers_ready)
        changed = httpx.post(base + "/prices", json={"item": "pizza", "price": "9.50"})
        assert changed.status_code == 200
        seen: dict[int, str | None] = {}
        deadline = time.monotonic() + WAIT
        while len(seen) < 2 or set(seen.values()) != {"9.50"}:  # every worker's cache
            assert time.monotonic() < deadline, seen
            answer = get("/prices/pizza").json()
            seen[answer["worker"]] = answer["price"]
        placed = [httpx.post(base + "/orders", json={"item": f"item {n}"}) for n in range(5)]
        assert [response.status_code for response in placed] == [202] * 5
        order_ids = sorted(response.json()["order_id"] for response in placed)
        receipts = [mailer.stdout.readline() for _ in order_ids]
        assert sorted(int(line.split()[3]) for line in receipts) == order_ids
        assert all(line.rstrip().endswith("attempt 1") for line in receipts)
    finally:
        for process in (web, mailer):
            process.terminate()
            process.wait(timeout=WAIT)
        if mailer.stdout is not None:
            mailer.stdout.close()
