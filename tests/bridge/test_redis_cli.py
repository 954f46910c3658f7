"""`python -m asignals.redis dead-letters`, the operator's command line, against dead letters
a real bridge left in a real redis-server."""

from __future__ import annotations

import asyncio
import io
import json
import runpy
import subprocess
import sys
import uuid
from typing import Any

import pytest
import redis

from asignals import AsyncSignal
from asignals.redis import RedisBridge
from asignals.redis._cli import main
from bridge.redis_server import RedisClusterServers, RedisServer, free_port
from bridge.support import Recorder, running, until

SECRET = "the-app-secret-0123456789"


def leave_dead_letters(url: str, prefix: str, *, cluster: bool = False) -> None:
    """Two messages of "order" whose receiver fails, dead letters of group "mailer"."""

    async def produce() -> None:
        here, there = AsyncSignal("order"), AsyncSignal("order")
        failing = Recorder(fail=True)
        there.connect(failing)
        web = RedisBridge(url, prefix=prefix, secret=SECRET, cluster=cluster)
        web.queue(here)
        mailer = RedisBridge(url, prefix=prefix, secret=SECRET, cluster=cluster)
        mailer.queue(there, group="mailer", max_deliveries=1)
        async with running(web, mailer):
            await here.send(None, order_id=1, ref=uuid.UUID(int=1))
            await here.send("shop", order_id=2)

            async def both() -> bool:
                return len(await mailer.dead_letters(there, group="mailer")) == 2

            await until(both)

    asyncio.run(produce())


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(["dead-letters", *args], out)
    return status, out.getvalue()


def test_list_requeue_and_purge_dead_letters_without_the_application(
    redis_server: RedisServer, prefix: str
) -> None:
    leave_dead_letters(redis_server.url, prefix)
    where = ["--url", redis_server.url, "--prefix", prefix, "--signal", "order"]
    where += ["--group", "mailer"]

    status, table = cli("list", *where)
    assert status == 0
    header, first, _ = table.splitlines()
    assert header.split() == ["STREAM", "ID", "ID", "DELIVERIES", "ERROR", "PAYLOAD"]
    assert "RuntimeError: failing on call 1" in first
    assert '{"order_id": 1, "ref": {"$type": "uuid", "v": "000' in first  # as on the wire

    status, document = cli("list", *where, "--json", "--secret", SECRET)
    letters: list[dict[str, Any]] = json.loads(document)
    assert [letter["payload"]["order_id"] for letter in letters] == [1, 2]
    assert [letter["sender"] for letter in letters] == [None, "shop"]
    assert [letter["signature_ok"] for letter in letters] == [True, True]
    assert [letter["deliveries"] for letter in letters] == [1, 1]
    assert all(len(letter["id"]) == 32 for letter in letters)
    _, document = cli("list", *where, "--json", "--secret", "not-the-secret-0123456789")
    assert [letter["signature_ok"] for letter in json.loads(document)] == [False, False]
    _, document = cli("list", *where, "--json", "--ids", letters[1]["stream_id"])
    assert [letter["id"] for letter in json.loads(document)] == [letters[1]["id"]]

    assert cli("requeue", *where, "--ids", letters[0]["stream_id"]) == (
        0,
        "requeued 1 dead letter(s) of 'order' (group 'mailer')\n",
    )
    assert cli("purge", *where, "--json") == (0, '{\n  "purged": 1\n}\n')
    assert cli("list", *where) == (0, "no dead letters\n")
    assert cli("requeue", *where) == (0, "requeued 0 dead letter(s) of 'order' (group 'mailer')\n")


def test_the_command_line_refuses_bad_arguments_and_reports_an_unreachable_redis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    where = ["--signal", "order", "--group", "mailer"]
    with pytest.raises(SystemExit) as exit_:
        cli("list", *where, "--ids", "not-an-id")
    assert exit_.value.code == 2
    assert "'not-an-id' is not a stream id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli("list", *where, "--count", "0")
    assert "--count and --maxlen must be at least 1" in capsys.readouterr().err
    url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    assert cli("purge", *where, "--url", url, "--timeout", "1") == (1, "")
    assert f"error: Redis at {url}: ConnectionError" in capsys.readouterr().err


def test_python_m_asignals_redis_names_its_actions_and_runs(
    redis_server: RedisServer, prefix: str
) -> None:
    command = [sys.executable, "-m", "asignals.redis"]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, check=True)
    assert "dead-letters {list,requeue,purge}" in shown.stdout
    listed = subprocess.run(
        [*command, "dead-letters", "list", "--url", redis_server.url, "--prefix", prefix,
         "--signal", "order", "--group", "mailer", "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(listed.stdout) == []


def test_a_dead_letter_that_is_not_a_message_is_listed_as_far_as_it_goes(
    redis_server: RedisServer, prefix: str
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    dead = f"{prefix}:queue:order:dead:mailer"
    client.xadd(dead, {"m": b"[1, 2]", "deliveries": b"many", "error": b"dropped (malformed)"})
    client.xadd(dead, {"m": b"{" * 10, "error": b"dropped (malformed)"})
    client.close()
    where = ["--url", redis_server.url, "--prefix", prefix, "--signal", "order"]
    _, document = cli("list", *where, "--group", "mailer", "--json")
    letters = json.loads(document)
    assert [(letter["payload"], letter["deliveries"]) for letter in letters] == [(None, None)] * 2


def test_the_module_runs_as_a_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["python -m asignals.redis", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("asignals.redis", run_name="__main__")
    assert exit_.value.code == 0


def test_the_command_line_reaches_a_cluster_through_any_node(
    redis_cluster: RedisClusterServers, prefix: str
) -> None:
    leave_dead_letters(redis_cluster.urls[0], prefix, cluster=True)
    where = ["--url", redis_cluster.urls[2], "--cluster", "--prefix", prefix]
    where += ["--signal", "order", "--group", "mailer"]
    _, document = cli("list", *where, "--json")
    letters = json.loads(document)
    assert [letter["payload"]["order_id"] for letter in letters] == [1, 2]
    assert cli("requeue", *where, "--ids", letters[0]["stream_id"])[1].startswith("requeued 1 ")
    assert cli("purge", *where)[1].startswith("purged 1 ")
