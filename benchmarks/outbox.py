"""The ``outbox`` section: what a durable receiver costs a commit, and how fast the relay
delivers, against the strictest fair baselines.

* **Commit**: a commit of 1 and 10 changed objects (an UPDATE each) through a tracked sync
  Session, SQLite in memory (and PostgreSQL, when a server can be started here), with one
  durable ``post_save`` receiver, against the same commit with that receiver connected in
  memory. The difference is the outbox's work: one row per event, INSERTed in the same
  transaction (no relay runs meanwhile; rows accumulate). Timed like the ``orm`` section:
  best of many short interleaved rounds.
* **Relay**: N events, each committed in a transaction of its own (an INSERT of a model
  row and of the event) by one writer task, delivered to one receiver by a relay in the
  same process (asyncio, aiosqlite on a file, and asyncpg): events/s from the first commit
  to the last delivery; then probe events one at a time, 2 ms apart, for the latency from
  ``commit()`` returning to the receiver (p50, p99). The floor is a hand-written outbox
  loop doing the same: INSERT in the transaction, woken by the commit (or a 1 s poll),
  SELECT a batch, deliver, DELETE the batch.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._model import Settings
from .orm import _measure, unavailable

__all__ = ["run", "unavailable", "work_units"]

COMMIT_COUNTS = (1, 10)
COMMIT_TARGET = 1.3


@dataclass(frozen=True)
class CommitRow:
    database: str
    changed: int
    in_memory_us: float
    durable_us: float

    @property
    def ratio(self) -> float:
        return self.durable_us / self.in_memory_us


@dataclass(frozen=True)
class RelayRow:
    database: str
    impl: str
    events: int
    per_second: float
    p50_ms: float
    p99_ms: float


def work_units(settings: Settings) -> int:
    return 2 * len(COMMIT_COUNTS) + 4


@contextmanager
def _postgres() -> Iterator[Any]:
    """A PostgreSQL server of the test setup's (tests/_servers.py), or None."""
    path = Path(__file__).resolve().parent.parent / "tests" / "_servers.py"
    spec = importlib.util.spec_from_file_location("_asignals_test_servers", path)
    if spec is None or spec.loader is None:  # pragma: no cover
        yield None
        return
    servers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = servers
    spec.loader.exec_module(servers)
    if servers.why_no_postgres() is not None:
        yield None
        return
    with servers.postgres_server() as server:
        yield server


def run(settings: Settings, step: Callable[[str], None]) -> tuple[list[CommitRow], list[RelayRow]]:
    commits: list[CommitRow] = []
    relays: list[RelayRow] = []
    with _postgres() if not settings.quick else _nothing() as postgres:
        databases: list[tuple[str, str, str]] = [
            ("sqlite", "sqlite://", ""),  # the relay case uses a file instead
        ]
        if postgres is not None:
            databases.append(("postgresql", postgres.url("psycopg"), postgres.url("asyncpg")))
        for name, sync_url, _ in databases:
            commits += _commits(settings, step, name, sync_url)
        directory = Path(tempfile.mkdtemp(prefix="asignals-bench-outbox-"))
        try:
            relay_urls = [("sqlite", f"sqlite+aiosqlite:///{directory / 'relay.db'}")]
            if postgres is not None:
                relay_urls.append(("postgresql", postgres.url("asyncpg")))
            for name, url in relay_urls:
                for impl in ("by hand", "asignals"):
                    step(f"relay, {impl}, {name}")
                    relays.append(asyncio.run(_relay(settings, name, url, impl)))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return commits, relays


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _commits(
    settings: Settings, step: Callable[[str], None], database: str, url: str
) -> list[CommitRow]:
    from sqlalchemy import Integer, create_engine
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
    from sqlalchemy.pool import StaticPool

    from asignals.sqlalchemy import Outbox, post_save, track, untrack

    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = "bench_outbox_rows"
        id = mapped_column(Integer, primary_key=True)
        n = mapped_column(Integer, default=0, nullable=False)

    options: dict[str, Any] = {"poolclass": StaticPool} if url == "sqlite://" else {}
    engine = create_engine(url, **options)
    outbox = Outbox(engine, metadata=Base.metadata, table_name="bench_outbox")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)

    def on_save(sender: Any, instance: Any, **kwargs: Any) -> None:
        pass

    repeats = 5 if settings.quick else 40
    target_ns = (2 if settings.quick else 5) * 1e6
    maker = sessionmaker(engine, expire_on_commit=False)
    track(maker)
    rows: list[CommitRow] = []
    try:
        for n in COMMIT_COUNTS:
            step(f"commit of {n} changed object(s), {database}")
            sessions: dict[str, Session] = {}
            objects: dict[str, list[Any]] = {}
            for name in ("in memory", "durable"):
                session = sessions[name] = maker()
                objs = [Row() for _ in range(n)]
                session.add_all(objs)
                session.commit()
                objects[name] = objs

            def commits(
                name: str,
                sessions: dict[str, Session] = sessions,
                objects: dict[str, Any] = objects,
            ) -> Callable[[int], None]:
                session, objs = sessions[name], objects[name]

                def batch(k: int) -> None:
                    for _ in range(k):
                        for obj in objs:
                            obj.n += 1
                        session.commit()

                return batch

            post_save.connect(on_save, sender=Row)
            try:
                in_memory = _measure({"in memory": commits("in memory")}, target_ns, 1)
            finally:
                post_save.disconnect(on_save, sender=Row)
            # Interleave: each round times the in-memory and the durable receiver.
            samples: dict[str, list[float]] = {"in memory": [in_memory["in memory"]], "durable": []}
            for _ in range(repeats):
                post_save.connect(on_save, sender=Row)
                try:
                    samples["in memory"].append(
                        _measure({"in memory": commits("in memory")}, target_ns, 1)["in memory"]
                    )
                finally:
                    post_save.disconnect(on_save, sender=Row)
                post_save.connect(on_save, sender=Row, outbox=outbox)
                try:
                    samples["durable"].append(
                        _measure({"durable": commits("durable")}, target_ns, 1)["durable"]
                    )
                finally:
                    post_save.disconnect(on_save, sender=Row)
            for session in sessions.values():
                session.close()
            rows.append(CommitRow(database, n, min(samples["in memory"]), min(samples["durable"])))
    finally:
        untrack(maker)
        engine.dispose()
    return rows


async def _relay(settings: Settings, database: str, url: str, impl: str) -> RelayRow:
    from sqlalchemy import Integer, String, delete, insert, select
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase, mapped_column

    from asignals import AsyncSignal
    from asignals.sqlalchemy import Outbox, track, untrack

    class Base(DeclarativeBase):
        pass

    class Order(Base):
        __tablename__ = "bench_relay_orders"
        id = mapped_column(Integer, primary_key=True)
        n = mapped_column(Integer, nullable=False)

    class Handmade(Base):
        __tablename__ = "bench_handmade_outbox"
        id = mapped_column(Integer, primary_key=True, autoincrement=True)
        payload = mapped_column(String(200), nullable=False)

    engine = create_async_engine(url)
    outbox = Outbox(engine, metadata=Base.metadata, table_name="bench_relay_outbox")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(Base.metadata.create_all)
    maker = async_sessionmaker(engine)
    track(maker)
    count = 200 if settings.quick else 2_000
    probes = 20 if settings.quick else 200
    committed: dict[int, float] = {}
    received: dict[int, float] = {}
    everything = asyncio.Event()
    signal = AsyncSignal("bench_order_placed")

    def receive(n: int) -> None:
        received[n] = time.monotonic()
        if len(received) == count or n >= count:
            everything.set()

    def on_placed(sender: Any, n: int, **kwargs: Any) -> None:
        receive(n)

    wake = asyncio.Event()

    async def by_hand_relay() -> None:
        import json

        while True:
            async with engine.begin() as connection:
                batch = (
                    await connection.execute(
                        select(Handmade.id, Handmade.payload).order_by(Handmade.id).limit(100)
                    )
                ).all()
            for _, payload in batch:
                receive(json.loads(payload)["n"])
            if batch:
                async with engine.begin() as connection:
                    await connection.execute(
                        delete(Handmade).where(Handmade.id.in_([row_id for row_id, _ in batch]))
                    )
            if len(batch) < 100:
                with suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
                wake.clear()

    async def commit(n: int) -> None:
        async with maker.begin() as session:
            session.add(Order(n=n))
            if impl == "asignals":
                outbox.send(session, signal, None, n=n)
            else:
                await session.execute(insert(Handmade).values(payload=f'{{"n": {n}}}'))
        committed[n] = time.monotonic()
        if impl == "by hand":
            wake.set()

    signal.connect(on_placed)
    task: asyncio.Task[None] | None = None
    try:
        if impl == "asignals":
            await outbox.__aenter__()
        else:
            task = asyncio.create_task(by_hand_relay())
        started = time.monotonic()
        for n in range(count):
            await commit(n)
        await asyncio.wait_for(everything.wait(), 120)
        finished = max(received[n] for n in range(count))
        latencies = []
        for n in range(count, count + probes):
            everything.clear()
            await commit(n)
            await asyncio.wait_for(everything.wait(), 30)
            latencies.append(received[n] - committed[n])
            await asyncio.sleep(0.002)
    finally:
        signal.disconnect(on_placed)
        if impl == "asignals":
            await outbox.__aexit__(None, None, None)
        elif task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        untrack(maker)
        await engine.dispose()
    latencies.sort()
    return RelayRow(
        database=database,
        impl=impl,
        events=count,
        per_second=count / (finished - started),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


def format_rows(commits: list[CommitRow], relays: list[RelayRow]) -> str:
    title = "outbox: durable receivers (asignals.sqlalchemy.Outbox)"
    lines = [f"\n{title}\n{'=' * len(title)}"]
    lines.append(
        "A commit of N changed objects with one durable post_save receiver, against the same\n"
        "commit with the receiver in memory (us per commit; the cost is one INSERT per event):"
    )
    lines.append(f"{'database':>12} {'changed':>8} {'in memory':>10} {'durable':>10} {'ratio':>6}")
    for row in commits:
        lines.append(
            f"{row.database:>12} {row.changed:>8} {row.in_memory_us:>10.1f} "
            f"{row.durable_us:>10.1f} {row.ratio:>5.2f}x"
        )
    lines.append("")
    lines.append(
        "The relay: events committed one per transaction, delivered in this process (events/s\n"
        "from the first commit to the last delivery; latency from commit() returning to the\n"
        "receiver, one event at a time); ratio = asignals / hand-written loop events/s:"
    )
    lines.append(
        f"{'database':>12} {'impl':>10} {'events':>7} {'events/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'ratio':>6}"
    )
    floors = {relay.database: relay.per_second for relay in relays if relay.impl == "by hand"}
    for relay in relays:
        floor = floors.get(relay.database)
        ratio = relay.per_second / floor if floor else 0.0
        lines.append(
            f"{relay.database:>12} {relay.impl:>10} {relay.events:>7} {relay.per_second:>9.0f} "
            f"{relay.p50_ms:>7.2f} {relay.p99_ms:>7.2f} {ratio:>5.2f}x"
        )
    return "\n".join(lines)


def format_targets(commits: list[CommitRow], quick: bool) -> list[str]:
    sqlite = [row for row in commits if row.database == "sqlite"]
    if not sqlite:
        return []
    if quick:
        return ["outbox: not judged (--quick batches are too short)"]
    worst = max(row.ratio for row in sqlite)
    verdict = "met" if worst <= COMMIT_TARGET else "MISSED"
    return [
        f"outbox: a commit with one durable receiver <= {COMMIT_TARGET:.1f}x the same with an "
        f"in-memory receiver (SQLite in memory): worst {worst:.2f}x ({verdict})"
    ]
