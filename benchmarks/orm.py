"""ORM: what ``asignals.sqlalchemy.track()`` adds to a commit (SQLite in memory, sync Session).

Each case commits N changed objects (an UPDATE each) in a loop, in four ways, timed in
many short interleaved rounds (alternating which goes first; the best round kept, the
collector paused, as ``timeit`` does):

* ``untracked``: a plain session (the baseline for "no receivers");
* ``tracked``: the same commit through a tracked session whose hooks are on (a receiver
  is connected for another model), with no receiver for these objects;
* ``by hand``: the untracked commit, then the receiver called by hand once per object with
  the payload a ``post_save`` receiver gets (the baseline for "one receiver");
* ``post_save``: the tracked commit with that receiver connected to ``post_save``.

The ratios are tracked / untracked and post_save / by hand, from the same run.

The bulk case (`run_bulk`) times one ORM-enabled UPDATE of 1,000 rows and its commit: the
bare statement through a plain session, against the same through a tracked session with a
``post_bulk_update`` receiver (which gets the 1,000 primary keys, fetched with RETURNING).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from ._model import Batch, Settings

COUNTS = (1, 10, 100)
NO_RECEIVERS_TARGET = 1.03
ONE_RECEIVER_TARGET = 1.10


@dataclass(frozen=True)
class OrmRow:
    changed: int
    untracked_us: float
    tracked_us: float
    by_hand_us: float
    post_save_us: float

    @property
    def no_receivers_ratio(self) -> float:
        return self.tracked_us / self.untracked_us

    @property
    def one_receiver_ratio(self) -> float:
        return self.post_save_us / self.by_hand_us


def unavailable() -> str | None:
    """Why the section cannot run here (SQLAlchemy missing), or ``None``."""
    try:
        import asignals.sqlalchemy  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def work_units(settings: Settings) -> int:
    return len(COUNTS) + 1  # and the bulk UPDATE


def run(settings: Settings, step: Callable[[str], None]) -> list[OrmRow]:
    from sqlalchemy import Integer, create_engine
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker

    from asignals.sqlalchemy import post_save, track, untrack

    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = "bench_rows"
        # No annotations: the class is local to this function (SQLAlchemy resolves
        # Mapped[...] annotations through the module's globals).
        id = mapped_column(Integer, primary_key=True)
        n = mapped_column(Integer, default=0, nullable=False)

    class Other(Base):  # has a receiver, so that the session hooks are on
        __tablename__ = "bench_others"
        id = mapped_column(Integer, primary_key=True)

    received: list[Any] = []

    def on_other(sender: Any, instance: Any, **kwargs: Any) -> None:
        pass  # pragma: no cover - no Other is ever saved

    def on_save(sender: Any, instance: Any, **kwargs: Any) -> None:
        received.append(instance)

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    # Many short interleaved rounds, the best kept: on a shared machine the minimum of
    # many small samples is the one estimate that other processes do not move.
    repeats = 5 if settings.quick else 60
    target_ns = (2 if settings.quick else 3) * 1e6
    rows: list[OrmRow] = []
    plain = sessionmaker(engine, expire_on_commit=False)
    tracked = sessionmaker(engine, expire_on_commit=False)
    track(tracked)
    post_save.connect(on_other, sender=Other)
    try:
        for n in COUNTS:
            step(f"commit of {n} changed object(s)")
            sessions: dict[str, Session] = {}
            objects: dict[str, list[Any]] = {}
            for name, maker in (
                ("untracked", plain),
                ("tracked", tracked),
                ("by hand", plain),
                ("post_save", tracked),
            ):
                session = sessions[name] = maker()
                objs = [Row() for _ in range(n)]
                session.add_all(objs)
                session.commit()
                objects[name] = objs

            def commits(
                session: Session, objs: list[Any], by_hand: bool = False
            ) -> Callable[[int], None]:
                def batch(k: int) -> None:
                    for _ in range(k):
                        for obj in objs:
                            obj.n += 1
                        session.commit()
                        if by_hand:
                            for obj in objs:
                                new = obj.n
                                on_save(
                                    sender=Row,
                                    instance=obj,
                                    created=False,
                                    update_fields=frozenset({"n"}),
                                    changes={"n": (new - 1, new)},
                                )
                    received.clear()

                return batch

            batches = {
                "untracked": commits(sessions["untracked"], objects["untracked"]),
                "tracked": commits(sessions["tracked"], objects["tracked"]),
            }
            timings = _measure(batches, target_ns, repeats)
            post_save.connect(on_save, sender=Row)
            try:
                batches_with = {
                    "by hand": commits(sessions["by hand"], objects["by hand"], by_hand=True),
                    "post_save": commits(sessions["post_save"], objects["post_save"]),
                }
                timings_with = _measure(batches_with, target_ns, repeats)
            finally:
                post_save.disconnect(on_save, sender=Row)
            for session in sessions.values():
                session.close()
            rows.append(
                OrmRow(
                    changed=n,
                    untracked_us=timings["untracked"],
                    tracked_us=timings["tracked"],
                    by_hand_us=timings_with["by hand"],
                    post_save_us=timings_with["post_save"],
                )
            )
    finally:
        post_save.disconnect(on_other, sender=Other)
        untrack(tracked)
        engine.dispose()
    return rows


BULK_ROWS = 1000
BULK_VARIANTS = ("bare", "post_bulk_update")


@dataclass(frozen=True)
class BulkRow:
    rows: int
    bare_us: float
    signal_us: float

    @property
    def ratio(self) -> float:
        return self.signal_us / self.bare_us


def run_bulk(settings: Settings, step: Callable[[str], None]) -> BulkRow:
    """One ORM-enabled UPDATE of BULK_ROWS rows and its commit: bare, and with the signal."""
    from sqlalchemy import Integer, create_engine, insert, update
    from sqlalchemy.orm import DeclarativeBase, mapped_column, sessionmaker

    from asignals.sqlalchemy import post_bulk_update, track, untrack

    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = "bench_bulk_rows"
        id = mapped_column(Integer, primary_key=True)
        n = mapped_column(Integer, default=0, nullable=False)

    step(f"bulk UPDATE of {BULK_ROWS} rows")
    received: list[int] = []

    def on_update(sender: Any, pks: Any, **kwargs: Any) -> None:
        received.append(len(pks))

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    plain = sessionmaker(engine)
    tracked = sessionmaker(engine)
    with plain() as session:
        session.execute(insert(Row), [{"n": 0} for _ in range(BULK_ROWS)])
        session.commit()
    track(tracked)
    post_bulk_update.connect(on_update, sender=Row)
    statement = update(Row).values(n=Row.n + 1)

    def updates(maker: Any) -> Callable[[int], None]:
        def batch(k: int) -> None:
            with maker() as session:
                for _ in range(k):
                    session.execute(statement)
                    session.commit()
            received.clear()

        return batch

    try:
        repeats = 5 if settings.quick else 30
        target_ns = (2 if settings.quick else 20) * 1e6
        timings = _measure(
            {"bare": updates(plain), "post_bulk_update": updates(tracked)}, target_ns, repeats
        )
    finally:
        post_bulk_update.disconnect(on_update, sender=Row)
        untrack(tracked)
        engine.dispose()
    return BulkRow(BULK_ROWS, timings["bare"], timings["post_bulk_update"])


def format_bulk(row: BulkRow) -> str:
    return (
        f"bulk: an ORM-enabled UPDATE of {row.rows} rows and its commit: bare "
        f"{row.bare_us:.1f} us, with a post_bulk_update receiver {row.signal_us:.1f} us "
        f"({row.ratio:.2f}x; the primary keys fetched with RETURNING)"
    )


def _measure(
    batches: dict[str, Callable[[int], None]],
    target_ns: float,
    repeats: int,
) -> dict[str, float]:
    """Microseconds per commit for each batch: calibrated, then interleaved rounds."""
    sizes: dict[str, int] = {}
    for name, batch in batches.items():
        batch(1)  # warm-up: compiled statements, caches
        k = 1
        while True:
            start = perf_counter_ns()
            batch(k)
            elapsed = perf_counter_ns() - start
            if elapsed >= target_ns / 10 or k >= 100_000:
                sizes[name] = max(1, round(k * target_ns / max(elapsed, 1)))
                break
            k *= 4
    samples: dict[str, list[float]] = {name: [] for name in batches}
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        names = list(batches)
        for round_ in range(repeats):
            for name in names if round_ % 2 == 0 else reversed(names):  # neither goes first
                start = perf_counter_ns()
                batches[name](sizes[name])
                samples[name].append((perf_counter_ns() - start) / sizes[name] / 1e3)
    finally:
        if enabled:
            gc.enable()
    return {name: min(values) for name, values in samples.items()}


def format_rows(rows: list[OrmRow]) -> str:
    lines = [
        "== ORM: what track() adds to a commit (SQLite in memory, sync Session, us per commit)",
        "",
        f"{'changed':>8} {'untracked':>10} {'tracked':>10} {'ratio':>6}   "
        f"{'by hand':>10} {'post_save':>10} {'ratio':>6}",
    ]
    for row in rows:
        lines.append(
            f"{row.changed:>8} {row.untracked_us:>10.1f} {row.tracked_us:>10.1f} "
            f"{row.no_receivers_ratio:>5.2f}x   {row.by_hand_us:>10.1f} "
            f"{row.post_save_us:>10.1f} {row.one_receiver_ratio:>5.2f}x"
        )
    lines.append("")
    lines.append(
        "tracked: hooks on (a receiver for another model), none for these objects; by hand: "
        "the untracked commit, then the receiver called once per object; post_save: the same "
        "receiver connected to post_save."
    )
    return "\n".join(lines)


def format_targets(rows: list[OrmRow], quick: bool) -> list[str]:
    if not rows:
        return []
    if quick:
        return ["orm: not judged (--quick batches are too short for 3% differences)"]
    worst_idle = max(row.no_receivers_ratio for row in rows)
    worst_one = max(row.one_receiver_ratio for row in rows)
    verdict = {True: "met", False: "MISSED"}
    return [
        f"orm: track() with no receivers <= {NO_RECEIVERS_TARGET:.2f}x an untracked commit: "
        f"worst {worst_idle:.2f}x ({verdict[worst_idle <= NO_RECEIVERS_TARGET]})",
        f"orm: one post_save receiver <= {ONE_RECEIVER_TARGET:.2f}x the receiver called by "
        f"hand: worst {worst_one:.2f}x ({verdict[worst_one <= ONE_RECEIVER_TARGET]})",
    ]


# -- programs for the instructions section ---------------------------------------------------

COMMIT_VARIANTS = ("untracked", "tracked", "by hand", "post_save")


def commit_program(variant: str, n: int) -> Batch:
    """``await batch(k)``: *k* commits of *n* changed objects, one of COMMIT_VARIANTS, as
    :func:`run` times them; for callgrind (``orm/commit/N/VARIANT``).

    Each program has a model, an engine and a session of its own, so that programs run in
    one child do not see each other's receivers (nor the mapper listeners they leave).
    """
    from sqlalchemy import Integer, create_engine
    from sqlalchemy.orm import DeclarativeBase, mapped_column, sessionmaker

    from asignals.sqlalchemy import post_save, track

    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = "bench_rows"
        id = mapped_column(Integer, primary_key=True)
        n = mapped_column(Integer, default=0, nullable=False)

    class Other(Base):
        __tablename__ = "bench_others"
        id = mapped_column(Integer, primary_key=True)

    received: list[Any] = []

    def on_other(sender: Any, instance: Any, **kwargs: Any) -> None:
        pass  # pragma: no cover - no Other is ever saved

    def on_save(sender: Any, instance: Any, **kwargs: Any) -> None:
        received.append(instance)

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    maker = sessionmaker(engine, expire_on_commit=False)
    if variant in ("tracked", "post_save"):
        track(maker)
        post_save.connect(on_other, sender=Other, weak=False)
    if variant == "post_save":
        post_save.connect(on_save, sender=Row, weak=False)
    session = maker()
    objs = [Row() for _ in range(n)]
    session.add_all(objs)
    session.commit()
    by_hand = variant == "by hand"

    async def batch(k: int) -> None:
        for _ in range(k):
            for obj in objs:
                obj.n += 1
            session.commit()
            if by_hand:
                for obj in objs:
                    new = obj.n
                    on_save(
                        sender=Row,
                        instance=obj,
                        created=False,
                        update_fields=frozenset({"n"}),
                        changes={"n": (new - 1, new)},
                    )
            received.clear()

    return batch


def bulk_program(variant: str) -> Batch:
    """``await batch(k)``: *k* ORM-enabled UPDATEs of BULK_ROWS rows, each committed,
    ``bare`` or with a ``post_bulk_update`` receiver, as :func:`run_bulk` times them
    (``orm/bulk/VARIANT``)."""
    from sqlalchemy import Integer, create_engine, insert, update
    from sqlalchemy.orm import DeclarativeBase, mapped_column, sessionmaker

    from asignals.sqlalchemy import post_bulk_update, track

    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = "bench_bulk_rows"
        id = mapped_column(Integer, primary_key=True)
        n = mapped_column(Integer, default=0, nullable=False)

    received: list[int] = []

    def on_update(sender: Any, pks: Any, **kwargs: Any) -> None:
        received.append(len(pks))

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    maker = sessionmaker(engine)
    with maker() as session:
        session.execute(insert(Row), [{"n": 0} for _ in range(BULK_ROWS)])
        session.commit()
    if variant == "post_bulk_update":
        track(maker)
        post_bulk_update.connect(on_update, sender=Row, weak=False)
    statement = update(Row).values(n=Row.n + 1)
    session = maker()

    async def batch(k: int) -> None:
        for _ in range(k):
            session.execute(statement)
            session.commit()
        received.clear()

    return batch
