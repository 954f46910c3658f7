"""The outbox across real OS processes: a process killed after its commit, two relays
sharing the rows, a relay killed between the XADD and the DELETE."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from bridge.redis_server import RedisServer
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from asignals import _wire, receiver
from asignals.sqlalchemy import Outbox, post_save, track, untrack
from durable.conftest import reset
from durable.models import Base, Dish, Seen

SCRIPT = Path(__file__).with_name("relay_process.py")
WAIT = 60.0


class Relay:
    """One relay_process.py process."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for(self, kind: str) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            event: dict[str, Any] = json.loads(line)
            if event["event"] == kind:
                return event
        raise AssertionError(f"no {kind!r} event; exit {self.process.poll()}: {self.stderr()}")

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        assert self.process.stderr is not None
        return self.process.stderr.read()[-3000:]

    def killed(self) -> bool:
        try:
            return self.process.wait(timeout=WAIT) == -signal.SIGKILL
        except subprocess.TimeoutExpired:  # pragma: no cover - reported by the assertion
            return False

    def stop(self) -> None:
        assert self.process.stdin is not None
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def relays(*configs: dict[str, Any]) -> Iterator[list[Relay]]:
    started = [Relay(config) for config in configs]
    try:
        yield started
    finally:
        for relay in started:
            relay.stop()


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def seen(sync_url: str) -> list[tuple[str, str, str]]:
    engine = create_engine(sync_url)
    with Session(engine) as session:
        rows = [
            (s.event, s.delivery, s.process)
            for s in session.scalars(select(Seen).order_by(Seen.seq))
        ]
    engine.dispose()
    return rows


def outbox_rows(sync_url: str) -> int:
    engine = create_engine(sync_url)
    table = Base.metadata.tables["asignals_outbox"]
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return int(count)


def test_an_event_whose_process_died_after_the_commit_is_delivered_by_another(
    database: tuple[str, str],
) -> None:
    async_url, sync_url = database
    Outbox(create_engine(sync_url), metadata=Base.metadata)  # the table in Base.metadata
    reset(sync_url)
    with relays(
        {"url": async_url, "name": "doomed", "lease": 1.0, "die": "receiver", "commit": ["pizza"]}
    ) as (doomed,):
        doomed.wait_for("committed")  # commit() returned ...
        doomed.wait_for("dying")  # ... then its relay ran the receiver, which killed it
        assert doomed.killed()
    assert seen(sync_url) == []
    assert outbox_rows(sync_url) == 1  # the event outlived its process
    with relays({"url": async_url, "name": "rescuer", "lease": 1.0}) as (rescuer,):
        rescuer.wait_for("ready")
        wait_until(lambda: seen(sync_url), "the rescuer's delivery")
        wait_until(lambda: outbox_rows(sync_url) == 0, "the row's deletion")
    ((event, _, process),) = seen(sync_url)
    assert (event, process) == ("pizza", "rescuer")


def test_two_relays_share_500_events_and_deliver_each_once(postgres: Any) -> None:
    async_url, sync_url = postgres.url("asyncpg"), postgres.url("psycopg")
    engine = create_engine(sync_url)
    outbox = Outbox(engine, metadata=Base.metadata)
    reset(sync_url)
    maker = __import__("sqlalchemy.orm", fromlist=["sessionmaker"]).sessionmaker(engine)
    track(maker)

    @receiver(post_save, sender=Dish, outbox=outbox, weak=False)
    def never_here(sender: type, **kwargs: Any) -> None:  # no relay runs in this process
        raise AssertionError("delivered in the writing process")

    options = {"url": async_url, "batch_size": 10, "poll_interval": 0.05}
    try:
        with relays({**options, "name": "a"}, {**options, "name": "b"}) as started:
            for relay in started:
                relay.wait_for("ready")
            for batch in range(50):
                with maker.begin() as session:
                    session.add_all(Dish(name=f"dish {batch * 10 + n}") for n in range(10))
            wait_until(
                lambda: len(seen(sync_url)) >= 500 and outbox_rows(sync_url) == 0, "500 deliveries"
            )
            time.sleep(0.5)  # nothing more comes
    finally:
        post_save.disconnect(never_here, sender=Dish)
        untrack(maker)
        engine.dispose()
    deliveries = seen(sync_url)
    assert len(deliveries) == 500  # none twice
    assert {event for event, _, _ in deliveries} == {f"dish {n}" for n in range(500)}  # none lost
    by_process = Counter(process for _, _, process in deliveries)
    assert set(by_process) == {"a", "b"}  # shared


def test_a_relay_killed_between_xadd_and_delete_sends_the_same_delivery_id_again(
    database: tuple[str, str], redis_server: RedisServer, prefix: str
) -> None:
    async_url, sync_url = database
    engine = create_engine(sync_url)
    outbox = Outbox(engine, metadata=Base.metadata)
    reset(sync_url)
    from sqlalchemy.orm import sessionmaker

    from durable.relay_process import order_paid

    maker = sessionmaker(engine)
    track(maker)
    try:
        with maker.begin() as session:
            outbox.send(session, order_paid, "shop", order_id=42)
    finally:
        untrack(maker)
        engine.dispose()
    options = {"url": async_url, "redis_url": redis_server.url, "prefix": prefix, "lease": 1.0}
    with relays({**options, "name": "doomed", "die": "after_xadd"}) as (doomed,):
        doomed.wait_for("dying")
        assert doomed.killed()
    assert outbox_rows(sync_url) == 1
    with relays({**options, "name": "rescuer"}) as (rescuer,):
        rescuer.wait_for("ready")
        wait_until(lambda: outbox_rows(sync_url) == 0, "the second relay")
    client = redis.Redis.from_url(redis_server.url)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(  # type: ignore[assignment]
        f"{prefix}:queue:durable_order_paid"
    )
    client.close()
    envelopes = [_wire.open_envelope(fields[b"m"], None, 1 << 20) for _, fields in entries]
    assert len(envelopes) == 2
    assert envelopes[0].id == envelopes[1].id  # a consumer drops the copy by its id
    assert envelopes[0].payload == {"order_id": 42}
