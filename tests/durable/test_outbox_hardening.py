"""The transactional outbox where an adversarial review broke it: each test holds one case
it got wrong, now right (each docstring tells what used to go wrong). Real SQLite files
(and PostgreSQL where it matters), no mocks."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from asignals import AsyncSignal, current_delivery
from asignals.sqlalchemy import Outbox, post_delete, post_save, track, untrack
from durable.review_models import Chef, Menu, ReviewBase, Role
from durable.support import until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sqlite(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "review.db"
    return f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}"


@pytest.fixture(params=["sqlite-file", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite-file":
        path = tmp_path / "review.db"
        return f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}"
    postgres = request.getfixturevalue("postgres")
    return postgres.url("asyncpg"), postgres.url("psycopg")


def reset(sync_url: str) -> None:
    """Fresh review tables, the outbox table (in ReviewBase.metadata) included."""
    engine = create_engine(sync_url)
    Outbox(engine, metadata=ReviewBase.metadata)
    ReviewBase.metadata.drop_all(engine)
    ReviewBase.metadata.create_all(engine)
    engine.dispose()


@dataclass
class App:
    engine: AsyncEngine
    outbox: Outbox
    maker: async_sessionmaker[Any]
    events: list[Any] = field(default_factory=list)

    async def rows(self) -> int:
        async with self.engine.connect() as connection:
            count = await connection.execute(select(func.count()).select_from(self.outbox.table))
            return int(count.scalar_one())


@asynccontextmanager
async def app_on(database: tuple[str, str], **options: Any) -> AsyncIterator[App]:
    async_url, sync_url = database
    reset(sync_url)
    engine = create_async_engine(async_url)
    outbox = Outbox(engine, metadata=ReviewBase.metadata, poll_interval=0.05, **options)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    track(maker)
    try:
        yield App(engine, outbox, maker)
    finally:
        untrack(maker)
        await engine.dispose()


async def settle(seconds: float = 0.5) -> None:
    await anyio.sleep(seconds)


# -- 1. a savepoint left open when `async with session.begin()` commits ----------------------


async def test_savepoint_left_open_at_session_begin_exit_still_writes_the_durable_row(
    database: tuple[str, str],
) -> None:
    """`async with session.begin():` commits the outermost transaction with a savepoint
    still open: SQLAlchemy's before_commit then runs while in_nested_transaction() is
    true, `_before_commit` returns early, and no row is written. The in-memory receiver
    gets the event; the durable one never does (the event is lost)."""
    async with app_on(database) as app:
        in_memory: list[str] = []

        def inline(sender: type, instance: Chef, **kwargs: Any) -> None:
            in_memory.append(instance.name)

        def durable(sender: type, instance: Chef, **kwargs: Any) -> None:
            app.events.append(instance.name)

        post_save.connect(inline, sender=Chef, weak=False)
        post_save.connect(durable, sender=Chef, weak=False, outbox=app.outbox)
        try:
            async with app.maker.begin() as session:
                await session.begin_nested()  # never released explicitly
                session.add(Chef(id=1, name="ada"))
            assert in_memory == ["ada"]  # committed, and delivered in memory
            assert await app.rows() == 1
        finally:
            post_save.disconnect(inline, sender=Chef)
            post_save.disconnect(durable, sender=Chef)


async def test_savepoint_left_open_at_session_commit_writes_the_durable_row(
    sqlite: tuple[str, str],
) -> None:
    """The same with `session.commit()` (which commits the savepoint first): correct
    today, kept as the contrast of the test above."""
    async with app_on(sqlite) as app:
        post_save.connect(_keep, sender=Chef, weak=False, outbox=app.outbox)
        try:
            async with app.maker() as session:
                await session.begin_nested()
                session.add(Chef(id=1, name="ada"))
                await session.commit()
            assert await app.rows() == 1
        finally:
            post_save.disconnect(_keep, sender=Chef)


def _keep(*args: Any, **kwargs: Any) -> None:
    pass


# -- 2. a many-to-one relationship assigned without being loaded ------------------------------


async def test_assigning_an_unloaded_many_to_one_does_not_fail_the_commit(
    sqlite: tuple[str, str],
) -> None:
    """`menu.chef = other` on a Menu whose `chef` was never loaded: the recorded old value
    is SQLAlchemy's PASSIVE_NO_RESULT symbol (`_changes.changes` maps only NO_VALUE to
    None), which the outbox cannot encode: the user's commit raises TypeError. (The
    in-memory receiver gets the symbol itself as the old value.)"""
    async with app_on(sqlite) as app:
        got: list[Any] = []

        def moved(sender: type, instance: Menu, changes: dict[str, Any], **kwargs: Any) -> None:
            got.append(changes)

        async with app.maker.begin() as session:
            session.add_all([Chef(id=1, name="ada"), Chef(id=2, name="bob")])
            session.add(Menu(id=1, name="lunch", chef_id=1))
        post_save.connect(moved, sender=Menu, weak=False, outbox=app.outbox)
        try:
            async with app.maker.begin() as session:
                menu = await session.get(Menu, 1)
                assert menu is not None
                menu.chef = await session.get(Chef, 2)
            async with app.outbox:
                await until(lambda: _true(bool(got)))
        finally:
            post_save.disconnect(moved, sender=Menu)
        (changes,) = got
        assert changes["chef_id"] == (1, 2)
        old, new = changes["chef"]
        assert old is None or isinstance(old, Chef)  # unknown old value: None, as for NO_VALUE
        assert isinstance(new, Chef)
        assert new.id == 2


async def _true(value: bool) -> bool:
    return value


# -- 3. two Outbox objects on one table ------------------------------------------------------


async def test_two_outboxes_on_one_table_deliver_each_row_to_its_own_receivers(
    sqlite: tuple[str, str],
) -> None:
    """Rows do not say which Outbox wrote them: a relay delivers every `post_save` row to
    its own outbox's durable receivers. With a kitchen receiver on one outbox and a
    billing receiver on another (same table, the default name), one commit writes two
    rows; the kitchen outbox's relay takes both: kitchen runs twice, billing never (its
    row is deleted)."""
    async with app_on(sqlite) as app:
        other = Outbox(app.engine, poll_interval=0.05)  # its own MetaData, the same table name
        assert other.table.name == app.outbox.table.name

        def kitchen(sender: type, instance: Chef, **kwargs: Any) -> None:
            app.events.append(("kitchen", instance.name))

        def billing(sender: type, instance: Chef, **kwargs: Any) -> None:
            app.events.append(("billing", instance.name))

        post_save.connect(kitchen, sender=Chef, weak=False, outbox=app.outbox)
        post_save.connect(billing, sender=Chef, weak=False, outbox=other)
        try:
            async with app.outbox:
                async with app.maker.begin() as session:
                    session.add(Chef(id=1, name="ada"))
                await until(lambda: _true(len(app.events) >= 2))
                await settle(0.3)
            async with other:  # the billing relay, started late: its row must still be there
                await until(lambda: _true(len(app.events) >= 2))
                await settle(0.3)
        finally:
            post_save.disconnect(kitchen, sender=Chef)
            post_save.disconnect(billing, sender=Chef)
        assert sorted(app.events) == [("billing", "ada"), ("kitchen", "ada")]


# -- 4. leases of delivered rows expire before the batch deletes them ----------------------


async def test_rows_delivered_early_in_a_batch_are_not_delivered_again_by_another_relay(
    database: tuple[str, str],
) -> None:
    """A batch deletes its delivered rows only at its end (`_deliver_batch`'s finally), and
    renews only the rows not yet started: a delivered row's lease runs out while the batch
    goes on, and a second relay leases it and runs its receivers again, though every
    receiver returned and every relay is healthy. Each receiver here takes 0.3 s, well
    within the 1 s lease (and under lease/2, so renewals keep the undelivered rows)."""
    app_options = {"lease": 1.0, "batch_size": 10}
    async with app_on(database, **app_options) as app:
        second = Outbox(app.engine, metadata=ReviewBase.metadata, poll_interval=0.05, lease=1.0)
        runs: Counter[str] = Counter()
        signal = AsyncSignal("review_slow_ticket")

        async def print_ticket(sender: Any, number: int, **kwargs: Any) -> None:
            delivery = current_delivery()
            assert delivery is not None
            runs[delivery.id] += 1
            await anyio.sleep(0.3)

        signal.connect(print_ticket)
        try:
            async with app.outbox:
                async with app.maker.begin() as session:
                    for number in range(6):
                        app.outbox.send(session, signal, None, number=number)
                await settle(0.1)  # the first relay has leased the six rows
                async with second:
                    await until(lambda: _drained(app))
                    await settle(0.5)
        finally:
            signal.disconnect(print_ticket)
        assert len(runs) == 6
        assert [count for count in runs.values() if count > 1] == []


async def _drained(app: App) -> bool:
    return await app.rows() == 0


# -- 5. stored values that look like the outbox's own tags ----------------------------------


async def test_a_json_column_value_is_not_taken_for_a_stored_object(
    sqlite: tuple[str, str],
) -> None:
    """`changes` values are stored with `Codecs.plain`, which escapes only "$type" keys: a
    JSON column whose new value is {"$instance": [path, key]} (data a user can choose) is
    read back by `model_payload` as a reference and loaded: the receiver gets a Chef
    instead of the dict that was saved (in memory: the dict)."""
    async with app_on(sqlite) as app:
        async with app.maker.begin() as session:
            session.add_all([Chef(id=1, name="ada"), Menu(id=1, name="lunch", notes={})])
        saved = {"$instance": ["durable.review_models.Chef", 1]}
        got: list[Any] = []

        def noted(sender: type, instance: Menu, changes: dict[str, Any], **kwargs: Any) -> None:
            got.append(changes["notes"][1])

        post_save.connect(noted, sender=Menu, weak=False, outbox=app.outbox)
        try:
            async with app.maker.begin() as session:
                menu = await session.get(Menu, 1)
                assert menu is not None
                menu.notes = saved
            async with app.outbox:
                await until(lambda: _true(bool(got)))
        finally:
            post_save.disconnect(noted, sender=Menu)
        assert got == [saved]


# -- 6. post_delete stores every column, whatever its type --------------------------------------


async def test_deleting_a_row_with_an_enum_or_bytes_column_does_not_fail_the_commit(
    sqlite: tuple[str, str],
) -> None:
    """A durable post_delete stores every loaded column value through the JSON codecs,
    which know no Enum, bytes, time or timedelta: deleting a Menu (an Enum column, a
    LargeBinary one) raises TypeError from commit(), though no receiver asked for those
    columns and SQLAlchemy itself maps them. The in-memory post_delete works."""
    async with app_on(sqlite) as app:
        async with app.maker.begin() as session:
            session.add(Menu(id=1, name="lunch", role=Role.waiter, logo=b"\x89PNG"))
        got: list[Any] = []

        def gone(sender: type, instance: Menu, **kwargs: Any) -> None:
            got.append((instance.id, instance.role, instance.logo))

        post_delete.connect(gone, sender=Menu, weak=False, outbox=app.outbox)
        try:
            async with app.maker.begin() as session:
                menu = await session.get(Menu, 1)
                await session.delete(menu)
            async with app.outbox:
                await until(lambda: _true(bool(got)))
        finally:
            post_delete.disconnect(gone, sender=Menu)
        assert got == [(1, Role.waiter, b"\x89PNG")]


# -- 7. where the rows are written -------------------------------------------------------------


async def test_a_session_with_binds_can_commit_with_a_durable_receiver(
    sqlite: tuple[str, str],
) -> None:
    """`durable.write` asks `session.connection(bind_arguments={"clause": outbox.table})`:
    a session configured with ``binds={Base: engine}`` (no default bind: the usual
    multi-database setup) has no bind for the outbox table, so every commit that writes
    a row raises UnboundExecutionError, though the outbox was given that very engine."""
    async with app_on(sqlite) as app:
        maker = async_sessionmaker(binds={ReviewBase: app.engine}, expire_on_commit=False)
        track(maker)
        post_save.connect(_keep, sender=Chef, weak=False, outbox=app.outbox)
        try:
            async with maker.begin() as session:
                session.add(Chef(id=1, name="ada"))
            assert await app.rows() == 1
        finally:
            post_save.disconnect(_keep, sender=Chef)
            untrack(maker)


async def test_an_outbox_on_another_database_than_the_session_is_refused_or_delivers(
    sqlite: tuple[str, str], tmp_path: Path
) -> None:
    """The rows go through the committing session's connection, the relay reads through
    `outbox.engine`: when they are different databases (both with the tables: say a
    replica, or a tenant database) the commit succeeds and the event sits forever
    where no relay of this outbox looks. Expected: a ValueError naming the fix at the
    commit (or a delivery); today neither happens."""
    async with app_on(sqlite) as app:
        other_path = tmp_path / "other.db"
        reset(f"sqlite:///{other_path}")
        other = create_async_engine(f"sqlite+aiosqlite:///{other_path}")
        maker = async_sessionmaker(other, expire_on_commit=False)
        track(maker)

        def durable(sender: type, instance: Chef, **kwargs: Any) -> None:
            app.events.append(instance.name)

        post_save.connect(durable, sender=Chef, weak=False, outbox=app.outbox)
        refused = False
        try:
            try:
                async with maker.begin() as session:
                    session.add(Chef(id=1, name="ada"))
            except ValueError:
                refused = True
            if not refused:
                async with app.outbox:
                    with anyio.move_on_after(2):
                        await until(lambda: _true(bool(app.events)))
        finally:
            post_save.disconnect(durable, sender=Chef)
            untrack(maker)
            await other.dispose()
        assert refused or app.events == ["ada"]


# -- 8. a relay stopped while it leases ----------------------------------------------------------


async def test_stopping_the_relay_during_its_lease_statement_does_not_use_up_an_attempt(
    sqlite: tuple[str, str],
) -> None:
    """With an `Engine`, `Database.run` runs the statement in a worker thread, which a
    cancellation does not stop: the lease UPDATE commits, then the cancellation drops the
    leased rows on the floor. They stay leased (delivery waits a whole lease) with an
    attempt counted though no receiver ran; with max_attempts=1 the next relay buries the
    event as dead without ever running its receiver."""
    _, sync_url = sqlite
    reset(sync_url)
    engine = create_engine(sync_url)
    outbox = Outbox(
        engine, metadata=ReviewBase.metadata, poll_interval=0.05, lease=0.3, max_attempts=1
    )
    maker = sessionmaker(engine)
    track(maker)
    in_lease = anyio.Event()
    token = anyio.lowlevel.current_token()
    slow = [True]

    def slow_database(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if slow[0] and statement.startswith("UPDATE") and "lease_owner" in statement:
            slow[0] = False
            anyio.from_thread.run_sync(in_lease.set, token=token)
            time.sleep(0.3)  # a slow database while the relay is being stopped

    event.listen(engine, "after_cursor_execute", slow_database)
    got: list[str] = []

    def durable(sender: type, instance: Chef, **kwargs: Any) -> None:
        got.append(instance.name)

    post_save.connect(durable, sender=Chef, weak=False, outbox=outbox)
    try:
        with maker.begin() as session:
            session.add(Chef(id=1, name="ada"))
        async with outbox:
            await in_lease.wait()  # the relay is inside its lease statement: stop it
        await settle(0.5)  # the lease (0.3 s) has expired
        async with outbox:
            await settle(0.5)
        stats = await outbox.statistics()
    finally:
        post_save.disconnect(durable, sender=Chef)
        untrack(maker)
        engine.dispose()
    assert (got, stats.dead) == (["ada"], 0)


# -- 9. rows this relay cannot really deliver --------------------------------------------------


async def test_a_named_signal_without_receivers_here_leaves_its_rows(
    sqlite: tuple[str, str],
) -> None:
    """A web process imports the module defining `order_paid` but connects its receivers
    only in the worker: the web process's relay (started in its lifespan) finds the signal
    by name, sends to no receiver, and deletes the row: the event is lost for the worker.
    Model rows without a durable receiver here are left (Unknown); a named signal without
    a receiver (nor a send hook) for that sender should be left the same way."""
    async with app_on(sqlite) as app:
        order_paid = AsyncSignal("review_order_paid")  # imported, no receiver in this process
        async with app.outbox:
            async with app.maker.begin() as session:
                app.outbox.send(session, order_paid, "shop", order_id=7)
            await settle(0.5)
            stats = await app.outbox.statistics()
        assert (stats.delivered, stats.pending) == (0, 1)
        assert await app.rows() == 1


async def test_a_payload_that_cannot_be_built_is_a_failed_attempt_not_a_database_outage(
    sqlite: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A model row that this version of the code cannot turn into a payload (here: a
    post_delete row from an older deployment, with a column the class no longer has)
    raises out of `model_payload`; `Relay.run` logs it as "cannot reach its table",
    the rows behind it in the batch are given back each round (head-of-line blocking,
    no backoff), and the row is finally buried with the error "the relay delivering it
    stopped". Expected: a failed attempt with its real error, retried with backoff, and
    the next rows delivered meanwhile."""
    async with app_on(sqlite, max_attempts=2, backoff=0.05) as app:
        from asignals.sqlalchemy._outbox import _rows, _table

        got: list[str] = []

        def gone(sender: type, instance: Chef, **kwargs: Any) -> None:
            got.append(instance.name)

        post_delete.connect(gone, sender=Chef, weak=False, outbox=app.outbox)
        try:
            async with app.maker.begin() as session:
                session.add(Chef(id=2, name="bob"))
            async with app.maker.begin() as session:
                await session.delete(await session.get(Chef, 2))
            row = app.outbox._rows.model_row(
                post_delete, _rows.model_sender(Chef), {"instance": Chef(id=1, name="x")}, "0"
            )
            old = (
                "0" * 32,  # the oldest row: leased first
                *row[1:3],
                '{"pk":1,"values":{"id":1,"name":"ada","nickname":"a"}}',
                *row[4:],
            )
            async with app.engine.begin() as connection:
                await connection.run_sync(_table.insert_rows, app.outbox.table, [old])
            caplog.set_level(logging.ERROR, "asignals.outbox")
            async with app.outbox:
                await settle(1.0)
            (dead,) = await app.outbox.dead_letters()
        finally:
            post_delete.disconnect(gone, sender=Chef)
        assert got == ["bob"]
        assert "cannot reach its table" not in caplog.text
        assert dead.error is not None
        assert "nickname" in dead.error


# -- 10. a receiver's CancelledError --------------------------------------------------------


async def test_a_receiver_raising_cancelled_error_does_not_cancel_the_application(
    sqlite: tuple[str, str],
) -> None:
    """A durable receiver that raises CancelledError (it awaited a task someone else
    cancelled: an HTTP client's pooled request, a shielded future) is not a failed
    attempt: `send_robust` lets it through, the relay task dies with it, anyio cancels the
    task group, and the application's code inside `async with outbox:` (its lifespan) is
    cancelled; `__aexit__` then swallows the cancellation, so nothing is even logged.
    Expected: a failed attempt like any other error, the application untouched."""
    import asyncio

    async with app_on(sqlite, max_attempts=1) as app:
        signal = AsyncSignal("review_cancelled")

        async def call_printer(sender: Any, **kwargs: Any) -> None:
            raise asyncio.CancelledError  # e.g. `await task` where the task was cancelled

        signal.connect(call_printer)
        reached_the_end = False
        try:
            async with app.outbox:
                async with app.maker.begin() as session:
                    app.outbox.send(session, signal, None)
                await settle(0.5)
                reached_the_end = True
        finally:
            signal.disconnect(call_printer)
        assert reached_the_end
        assert (await app.outbox.statistics()).dead == 1


# -- 11. names the relay cannot resolve -----------------------------------------------------------


async def test_outbox_send_refuses_a_signal_named_like_a_model_signal(
    sqlite: tuple[str, str],
) -> None:
    """`outbox.send` refuses the model signals themselves but accepts any other signal
    named "post_save", "post_delete" or "m2m_changed": the relay then reads the row as a
    model event (`MODEL_SIGNALS` is looked up by name): it is never delivered to the
    signal's receivers, and stays in the table forever. The same for a name two live
    signals share. Expected: a ValueError at `outbox.send` naming the fix."""
    async with app_on(sqlite) as app:
        mine = AsyncSignal("post_save")  # an application's own signal, unluckily named
        with pytest.raises(ValueError, match="post_save"):
            async with app.maker.begin() as session:
                app.outbox.send(session, mine, None, order_id=1)
        twins = AsyncSignal("review_twin"), AsyncSignal("review_twin")  # a module imported twice
        with pytest.raises(ValueError, match="review_twin"):
            async with app.maker.begin() as session:
                app.outbox.send(session, twins[0], None, order_id=1)


# -- 12. the relay's own connection while receivers run -------------------------------------------


async def test_a_durable_receiver_can_write_through_the_same_engine_with_one_connection(
    sqlite: tuple[str, str],
) -> None:
    """`Database.loading` keeps the relay's AsyncSession (and its pooled connection, in an
    open transaction: "idle in transaction" on PostgreSQL) checked out while the
    receivers run. A receiver writing through a session of the application's engine
    then waits for a second connection: with pool_size=1 (which the in-memory path
    supports: `_give_back_connections`) it times out, every attempt, and the event ends
    dead. Expected: the loaded objects are kept, the connection is given back first."""
    async_url, sync_url = sqlite
    reset(sync_url)
    engine = create_async_engine(async_url, pool_size=1, max_overflow=0, pool_timeout=1)
    outbox = Outbox(
        engine, metadata=ReviewBase.metadata, poll_interval=0.05, max_attempts=2, backoff=0.05
    )
    maker = async_sessionmaker(engine, expire_on_commit=False)
    track(maker)
    got: list[int] = []

    async def kitchen(sender: type, instance: Chef, **kwargs: Any) -> None:
        async with maker.begin() as session:  # the receiver's own write, same engine
            session.add(Menu(id=instance.id, name=f"{instance.name}'s menu"))
        got.append(instance.id)

    post_save.connect(kitchen, sender=Chef, weak=False, outbox=outbox)
    try:
        async with outbox:
            async with maker.begin() as session:
                session.add(Chef(id=1, name="ada"))
            with anyio.move_on_after(5):
                await until(lambda: _true(bool(got)))
        stats = await outbox.statistics()
    finally:
        post_save.disconnect(kitchen, sender=Chef)
        untrack(maker)
        await engine.dispose()
    assert (got, stats.dead) == ([1], 0)


async def test_a_dead_letter_counts_the_receiver_runs(sqlite: tuple[str, str]) -> None:
    """max_attempts=1 and a relay stopped while the receiver runs: the attempt is used up,
    and the next relay buries the row (right). But the row is leased once more before it
    is buried, and that lease counts an attempt: the dead letter says attempts=2 while
    its receiver ran once."""
    async with app_on(sqlite, max_attempts=1, lease=0.2) as app:
        running = anyio.Event()
        runs: list[int] = []

        async def slow(sender: type, instance: Chef, **kwargs: Any) -> None:
            runs.append(1)
            running.set()
            await anyio.sleep(30)

        post_save.connect(slow, sender=Chef, weak=False, outbox=app.outbox)
        try:
            async with app.outbox:
                async with app.maker.begin() as session:
                    session.add(Chef(id=1, name="ada"))
                await running.wait()  # stopped while the receiver runs
            async with app.outbox:
                await until(lambda: _dead_count(app.outbox, 1))
            (dead,) = await app.outbox.dead_letters()
        finally:
            post_save.disconnect(slow, sender=Chef)
        assert runs == [1]
        assert dead.attempts == 1


async def _dead_count(outbox: Outbox, count: int) -> bool:
    return (await outbox.statistics()).dead == count


# -- 13. stopping the relay while a statement is in flight ---------------------------------------


def test_stopping_the_relay_leaves_no_database_call_in_flight(sqlite: tuple[str, str]) -> None:
    """`async with outbox: pass` cancels the relay in its first lease statement; the
    statement's aiosqlite call is not waited for, and finishes on a closed event loop:
    "RuntimeError: Event loop is closed" in aiosqlite's thread. (This is what makes
    test_outbox_delivery's first sqlite test ERROR after test_outbox_api's last one on
    main.) Expected: shutdown waits for (shields) the statement it interrupted."""
    import asyncio
    import threading

    async_url, sync_url = sqlite
    reset(sync_url)

    async def start_and_stop() -> None:
        engine = create_async_engine(async_url)
        outbox = Outbox(engine, metadata=ReviewBase.metadata)
        async with outbox:
            pass
        await engine.dispose()

    errors: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        for _ in range(3):
            asyncio.run(start_and_stop())
        time.sleep(0.5)
    finally:
        threading.excepthook = hook
    assert errors == []


# -- 14. option checks ----------------------------------------------------------------------------


def test_outbox_option_values_out_of_range_raise_value_error(sqlite: tuple[str, str]) -> None:
    """An empty table_name is a bad value of the right type (TypeError today), and a
    first retry delay longer than max_backoff is accepted silently (every retry then
    waits max_backoff)."""
    engine = create_engine(sqlite[1])
    try:
        with pytest.raises(ValueError, match="table_name"):
            Outbox(engine, table_name="")
        with pytest.raises(ValueError, match="max_backoff"):
            Outbox(engine, backoff=10.0, max_backoff=1.0)
    finally:
        engine.dispose()
