"""asignals.sqlalchemy with the sync Session, on SQLite (sqlite3, file and memory) and
PostgreSQL (psycopg): in a plain script, in an anyio worker thread, on the loop's thread."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from orm_models import Base, Order, Tag, real_sqlite_transactions, recording
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from asignals.sqlalchemy import m2m_changed, post_delete, post_save, pre_save, track, untrack
from asignals.testing import capture

DATABASES = ["sqlite-memory", "sqlite-file", "postgresql"]


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite-memory":
        url = "sqlite://"
    elif request.param == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
    else:
        url = request.getfixturevalue("postgres").url("psycopg")
    # Memory databases are per connection: one connection shared by every thread.
    options: dict[str, Any] = {}
    if url == "sqlite://":
        from sqlalchemy.pool import StaticPool

        options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_engine(url, **options)
    if url.startswith("sqlite"):
        real_sqlite_transactions(engine)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def maker(engine: Engine) -> Iterator[sessionmaker[Session]]:
    sessions = sessionmaker(engine)
    track(sessions)
    yield sessions
    untrack(sessions)


def saved(item: str) -> tuple[Any, ...]:
    return ("post_save", "Order", item, True, None, {})


def test_plain_script_runs_sync_receivers_inline_and_coroutines_to_completion(
    maker: sessionmaker[Session],
) -> None:
    calls: list[str] = []

    def inline(instance: Order, **kwargs: Any) -> None:
        calls.append(f"sync {instance.item}")

    async def awaited(instance: Order, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        calls.append(f"async {instance.item}")

    post_save.connect(inline, sender=Order)
    post_save.connect(awaited, sender=Order)
    try:
        with maker() as session:  # expire_on_commit=True
            session.add(Order(item="pizza"))
            session.commit()
            assert calls == ["sync pizza", "async pizza"]  # in connection order, done
    finally:
        post_save.disconnect(inline, sender=Order)
        post_save.disconnect(awaited, sender=Order)


def test_sync_rules_match_the_async_ones(maker: sessionmaker[Session]) -> None:
    with recording(post_save, post_delete, kind="sync") as events:
        with maker() as session:
            kept, dropped = Order(item="pizza"), Order(item="tmp")
            session.add_all([kept, dropped])
            session.flush()
            kept.item = "pasta"
            session.delete(dropped)
            with session.begin_nested():
                session.add(Order(item="nested"))
            savepoint = session.begin_nested()
            session.add(Order(item="gone"))
            savepoint.rollback()
            session.commit()
        assert events == [saved("pasta"), saved("nested")]
        events.clear()
        with maker() as session:
            session.add(Order(item="never"))
            session.flush()
            session.rollback()
        assert events == []


def test_pre_save_coroutine_receiver_runs_in_a_script(maker: sessionmaker[Session]) -> None:
    async def fill_slug(instance: Order, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        instance.slug = f"{instance.item}-slug"

    pre_save.connect(fill_slug, sender=Order)
    try:
        with maker() as session:
            session.add(Order(item="pizza"))
            session.commit()
            assert session.scalar(select(Order.slug)) == "pizza-slug"
    finally:
        pre_save.disconnect(fill_slug, sender=Order)


@pytest.mark.anyio
async def test_worker_thread_runs_coroutine_receivers_on_the_event_loop(
    maker: sessionmaker[Session],
) -> None:
    loop_thread = threading.get_ident()
    ran_on: list[int] = []

    async def notify(instance: Order, created: bool, **kwargs: Any) -> None:
        await anyio.sleep(0.01)
        ran_on.append(threading.get_ident())

    def endpoint() -> int:  # what a FastAPI `def` endpoint would do
        with maker() as session:
            session.add(Order(item="pizza"))
            session.commit()
            assert len(ran_on) == 1  # delivered before commit() returned
            return threading.get_ident()

    post_save.connect(notify, sender=Order)
    try:
        worker = await anyio.to_thread.run_sync(endpoint)
    finally:
        post_save.disconnect(notify, sender=Order)
    assert ran_on == [loop_thread]
    assert worker != loop_thread


@pytest.mark.anyio
async def test_on_the_loop_thread_a_coroutine_receiver_is_logged_and_the_commit_stands(
    maker: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def inline(**kwargs: Any) -> None:
        calls.append("sync")

    async def cannot_wait(**kwargs: Any) -> None:
        calls.append("async")

    post_save.connect(inline, sender=Order)
    with maker() as session:
        session.add(Order(item="first"))
        session.commit()  # all-sync plan: inline, even on the loop's thread
    assert calls == ["sync"]
    post_save.connect(cannot_wait, sender=Order)
    try:
        with caplog.at_level(logging.ERROR, logger="asignals"), maker() as session:
            session.add(Order(item="second"))
            session.commit()
    finally:
        post_save.disconnect(inline, sender=Order)
        post_save.disconnect(cannot_wait, sender=Order)
    assert calls == ["sync"]
    assert "could not deliver 1 model signal(s) after the commit" in caplog.text
    assert "await post_save.send_robust" in caplog.text
    with maker() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 2


@pytest.mark.anyio
async def test_on_the_loop_thread_a_coroutine_pre_save_fails_the_flush(
    maker: sessionmaker[Session],
) -> None:
    async def fill(**kwargs: Any) -> None:
        pass

    pre_save.connect(fill, sender=Order)
    try:
        with maker() as session:
            session.add(Order(item="pizza"))
            with pytest.raises(RuntimeError, match="event loop"):
                session.commit()
    finally:
        pre_save.disconnect(fill, sender=Order)


def test_capture_sees_model_signals(maker: sessionmaker[Session]) -> None:
    with capture(post_save, sender=Order) as sent, maker() as session:
        session.add(Order(item="pizza"))
        session.commit()
    [(sender, payload)] = sent
    assert sender is Order
    assert payload["created"] is True


def test_a_weak_receiver_that_ran_at_a_commit_is_collected_silently(
    maker: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """Commits run post_save's plan themselves (not through send()): they note that its
    receivers were sent to, so a receiver that ran and is collected later is no mistake."""
    calls: list[str] = []

    class Audit:
        def saved(self, instance: Order, **kwargs: Any) -> None:
            calls.append(instance.item)

    audit = Audit()
    post_save.connect(audit.saved, sender=Order)
    with caplog.at_level(logging.WARNING, logger="asignals"):
        with maker() as session:
            session.add(Order(item="pizza"))
            session.commit()
        del audit
        gc.collect()
    assert calls == ["pizza"]
    assert "before it was ever called" not in caplog.text
    assert not post_save.has_listeners(Order)


def test_an_expired_attribute_set_unread_reports_none_as_old_value(
    maker: sessionmaker[Session],
) -> None:
    with maker() as session:  # expire_on_commit=True
        order = Order(item="pizza")
        session.add(order)
        session.commit()
        with recording(post_save, kind="sync") as events:
            order.item = "pasta"  # expired: the old value was never loaded
            session.commit()
            assert order.item == "pasta"  # loaded again (the commit expired it)
            order.quantity = 1  # the same values: nothing to deliver
            order.item = "pasta"
            session.commit()
    assert events == [
        ("post_save", "Order", "pasta", False, frozenset({"item"}), {"item": (None, "pasta")})
    ]


def test_receivers_of_other_classes_and_signals_are_left_alone(
    maker: sessionmaker[Session],
) -> None:
    with (
        recording(pre_save, post_save, m2m_changed, kind="sync", sender=Tag) as events,
        maker() as session,
    ):
        order = Order(item="pizza", tags=[Tag(name="hot")])
        session.add(order)
        session.commit()
        session.delete(order)
        session.commit()
    assert [e[:3] for e in events] == [
        ("pre_save", "Tag", "hot"),
        ("post_save", "Tag", "hot"),
    ]


def test_an_async_session_class_with_its_own_sync_class_is_restored() -> None:
    class Mine(Session):
        pass

    class ShopSession(AsyncSession):
        sync_session_class = Mine

    track(ShopSession)
    try:
        assert issubclass(ShopSession.sync_session_class, Mine)
        assert ShopSession.sync_session_class is not Mine
    finally:
        untrack(ShopSession)
    assert ShopSession.sync_session_class is Mine


def test_a_session_class_can_be_tracked(engine: Engine) -> None:
    class ShopSession(Session):
        pass

    track(ShopSession)
    try:
        with recording(post_save, kind="sync") as events, ShopSession(engine) as session:
            session.add(Order(item="pizza"))
            session.commit()
        with recording(post_save, kind="sync") as untracked, Session(engine) as plain:
            plain.add(Order(item="pasta"))
            plain.commit()
    finally:
        untrack(ShopSession)
    assert events == [saved("pizza")]
    assert untracked == []


def test_what_a_class_wants_is_asked_again_after_each_change(
    maker: sessionmaker[Session],
) -> None:
    # Flushes keep, per class, whether post_save / post_delete / m2m_changed want it; a
    # connect, a disconnect or a capture since then must be seen by the next commit.
    with recording(post_save, kind="sync", sender=Tag), maker() as session:
        order = Order(item="pizza")
        session.add(order)
        session.commit()  # Order: no receiver, remembered as such
        with recording(post_save, post_delete, kind="sync", sender=Order) as events:
            order.item = "pasta"
            session.commit()
            with capture(post_delete, sender=Order) as captured:
                session.delete(order)
                session.commit()
        session.add(Order(item="soup"))
        session.commit()  # the receivers are gone again: nothing recorded
    assert [e[:2] for e in events] == [("post_save", "Order"), ("post_delete", "Order")]
    assert [payload["instance"].item for _, payload in captured] == ["pasta"]


def test_a_second_capture_on_the_same_signal_is_seen(maker: sessionmaker[Session]) -> None:
    # Captures share the signal's one hook and change what it observes in place, so what
    # a class wants is never kept while a hook is installed.
    with capture(post_save, sender=Tag):
        with maker() as session:
            session.add(Order(item="pizza"))
            session.commit()  # Order: not captured
        with capture(post_save, sender=Order) as orders, maker() as session:
            session.add(Order(item="pasta"))
            session.commit()
    assert [(sender, payload["created"]) for sender, payload in orders] == [(Order, True)]


@pytest.mark.parametrize("kind", ["sync", "coroutine"])
def test_a_failing_post_save_receiver_is_logged_counted_and_the_commit_stands(
    maker: sessionmaker[Session], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Lost work is visible: logged with its traceback and counted in statistics()."""

    def fails(**kwargs: Any) -> None:
        raise ValueError("kitchen printer on fire")

    async def fails_later(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("kitchen printer on fire")

    receiver = fails if kind == "sync" else fails_later
    failures = post_save.statistics().failures
    post_save.connect(receiver, sender=Order)
    try:
        with caplog.at_level(logging.ERROR, logger="asignals"), maker() as session:
            session.add(Order(item="pizza"))
            session.commit()  # does not raise
    finally:
        post_save.disconnect(receiver, sender=Order)
    assert "kitchen printer on fire" in caplog.text
    assert post_save.statistics().failures == failures + 1
    with maker() as session:
        assert session.query(Order).count() == 1
