"""asignals.sqlalchemy: connecting (lazy string senders, sync-only init signals), track()
targets, and pre_init / post_init."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from orm_models import Base, Customer, Order
from sqlalchemy import create_engine, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    configure_mappers,
    mapped_column,
    sessionmaker,
)

from asignals import AsyncSignal
from asignals.sqlalchemy import post_init, post_save, pre_init, track, untrack


def _noop(**kwargs: Any) -> None:
    pass


# -- lazy string senders ------------------------------------------------------------------


@pytest.fixture
def lazy_module(tmp_path: Path) -> Iterator[str]:
    """A models module on sys.path that is not imported yet; its name is yielded."""
    name = f"lazy_shop_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from sqlalchemy import String
            from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

            class Base(DeclarativeBase):
                pass

            class Pizza(Base):
                __tablename__ = "pizzas"
                id: Mapped[int] = mapped_column(primary_key=True)
                name: Mapped[str] = mapped_column(String(20))
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_string_sender_connects_to_the_class_once_it_is_mapped(lazy_module: str) -> None:
    def on_pizza(**kwargs: Any) -> None:
        pass

    post_save.connect(on_pizza, sender=f"{lazy_module}.Pizza")
    module = __import__(lazy_module)
    assert post_save.receivers_for(module.Pizza) == [on_pizza]
    assert post_save.receivers_for(Order) == []
    assert post_save.disconnect(on_pizza, sender=f"{lazy_module}.Pizza")
    assert post_save.receivers_for(module.Pizza) == []


@pytest.mark.asyncio
async def test_string_sender_end_to_end(lazy_module: str) -> None:
    seen: list[tuple[type, str, bool]] = []

    async def on_pizza(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
        seen.append((sender, instance.name, created))

    post_save.connect(on_pizza, sender=f"{lazy_module}.Pizza")
    module = __import__(lazy_module)
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as connection:
        await connection.run_sync(module.Base.metadata.create_all)
    sessions = async_sessionmaker(engine)
    track(sessions)
    try:
        async with sessions() as session:
            session.add(module.Pizza(name="margherita"))
            await session.commit()
    finally:
        untrack(sessions)
        post_save.disconnect(on_pizza, sender=f"{lazy_module}.Pizza")
        await engine.dispose()
    assert seen == [(module.Pizza, "margherita", True)]


def test_string_sender_of_an_imported_class_connects_at_once() -> None:
    path = f"{Order.__module__}.Order"
    post_save.connect(_noop, sender=path)
    try:
        assert post_save.receivers_for(Order) == [_noop]
    finally:
        assert post_save.disconnect(_noop, sender=path)
    assert post_save.receivers_for(Order) == []
    assert not post_save.disconnect(_noop, sender=path)
    assert not post_save.disconnect(_noop, sender="nowhere.Nothing")


def test_string_sender_keeps_the_connect_checks() -> None:
    with pytest.raises(TypeError, match=r"\*\*kwargs"):
        post_save.connect(lambda sender: None, sender="later.models.Thing", weak=False)


def test_string_sender_connected_by_dispatch_uid_disconnects_by_it() -> None:
    with warnings.catch_warnings():  # 'later' is no module: a warning if mappers are configured
        warnings.simplefilter("ignore", RuntimeWarning)
        post_save.connect(_noop, sender="later.models.Thing", dispatch_uid="audit")
        post_save.connect(_noop, sender="later.models.Thing", dispatch_uid="audit")
    assert post_save.disconnect(sender="later.models.Thing", dispatch_uid="audit")
    assert not post_save.disconnect(sender="later.models.Thing", dispatch_uid="audit")


def test_a_string_that_names_no_mapped_class_warns_once_when_mappers_configure() -> None:
    _new_mapped_class()  # the mappers are not all configured: nothing is known yet
    post_save.connect(_noop, sender="shop.modles.Order")  # a typo
    try:
        _new_mapped_class()
        with pytest.warns(RuntimeWarning, match=r"'shop\.modles\.Order'"):
            configure_mappers()
        _new_mapped_class()
        configure_mappers()  # no second warning (pytest turns warnings into errors)
    finally:
        assert post_save.disconnect(_noop, sender="shop.modles.Order")


@pytest.mark.parametrize(
    "path",
    [
        "shop.modles.Ordre",  # no such module
        f"{Order.__module__}.Ordr",  # the module is imported, without such a class
        f"{Order.__module__}.Base",  # a class of that module, but not a mapped one
        "json.nothing.Order",  # a package imported, without such a module
    ],
)
def test_a_string_connected_after_the_mappers_are_configured_warns_at_once(path: str) -> None:
    _new_mapped_class()
    configure_mappers()
    with pytest.warns(RuntimeWarning, match="no mapped class has that module and name"):
        post_save.connect(_noop, sender=path)

    def other(**kwargs: Any) -> None:
        pass

    try:
        post_save.connect(other, sender=path)  # no second warning for the path
        assert post_save.receivers_for(Order) == []
    finally:
        assert post_save.disconnect(_noop, sender=path)
        assert post_save.disconnect(other, sender=path)


def test_a_string_naming_a_module_still_to_import_waits_quietly(lazy_module: str) -> None:
    _new_mapped_class()
    configure_mappers()
    post_save.connect(_noop, sender=f"{lazy_module}.Pizza")  # no warning: it may come
    try:
        module = __import__(lazy_module)
        assert post_save.receivers_for(module.Pizza) == [_noop]
    finally:
        assert post_save.disconnect(_noop, sender=f"{lazy_module}.Pizza")


def _new_mapped_class() -> type:
    class Local(DeclarativeBase):
        pass

    class Thing(Local):
        __tablename__ = "things"
        id: Mapped[int] = mapped_column(primary_key=True)

    return Thing


# -- pre_init / post_init -----------------------------------------------------------------


def test_init_signals_refuse_coroutine_and_thread_receivers() -> None:
    async def later(**kwargs: Any) -> None:
        pass

    for signal in (pre_init, post_init):
        with pytest.raises(TypeError, match=rf"{signal.name}.*later.*coroutine receiver"):
            signal.connect(later)
        with pytest.raises(TypeError, match="to_thread=True"):
            signal.connect(_noop, to_thread=True)
        assert signal.receivers_for(None) == []
    assert isinstance(pre_init, AsyncSignal)


def test_init_signals_on_construction_and_on_load() -> None:
    seen: list[tuple[Any, ...]] = []

    def before(sender: type, args: tuple[Any, ...], kwargs: dict[str, Any], **rest: Any) -> None:
        seen.append(("pre_init", sender.__name__, args, dict(kwargs)))

    def after(sender: type, instance: Any, **rest: Any) -> None:
        seen.append(("post_init", sender.__name__, instance.item))

    pre_init.connect(before, sender=Order)
    post_init.connect(after, sender=Order)
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    try:
        order = Order(item="pizza")
        assert seen == [
            ("pre_init", "Order", (), {"item": "pizza"}),
            ("post_init", "Order", "pizza"),
        ]
        seen.clear()
        with Session(engine) as session:
            session.add(order)
            session.commit()
        with Session(engine) as session:
            loaded = session.scalars(select(Order)).one()
            assert loaded.item == "pizza"
        assert seen == [("post_init", "Order", "pizza")]  # loading calls no constructor
    finally:
        pre_init.disconnect(before, sender=Order)
        post_init.disconnect(after, sender=Order)
        engine.dispose()
    seen.clear()
    Order(item="soup")
    assert seen == []


def test_init_signals_reach_only_the_receivers_of_the_class_constructed() -> None:
    seen: list[str] = []

    def after(sender: type, **kwargs: Any) -> None:
        seen.append(sender.__name__)

    pre_init.connect(after, sender=Order)
    post_init.connect(after, sender=Order)
    try:
        Customer(name="Ada")
        assert seen == []
        Order(item="pizza")
        assert seen == ["Order", "Order"]
    finally:
        pre_init.disconnect(after, sender=Order)
        post_init.disconnect(after, sender=Order)


def test_post_init_receiver_can_fill_defaults() -> None:
    def default_slug(instance: Any, **kwargs: Any) -> None:
        if instance.slug is None:
            instance.slug = f"{instance.item}-slug"

    post_init.connect(default_slug, sender=Order)
    try:
        assert Order(item="pizza").slug == "pizza-slug"
        assert Order(item="pasta", slug="mine").slug == "mine"
    finally:
        post_init.disconnect(default_slug, sender=Order)


@pytest.mark.anyio
async def test_init_signals_are_sent_inline_on_a_running_loop_too() -> None:
    """The tests above construct without any event loop (a script); a coroutine does too,
    on every loop, and the init signals run their receivers right there all the same."""
    seen: list[str] = []

    def after(instance: Any, **kwargs: Any) -> None:
        seen.append(instance.item)

    post_init.connect(after, sender=Order)
    try:
        Order(item="pizza")
        await anyio.to_thread.run_sync(lambda: Order(item="pasta"))  # a worker thread
    finally:
        post_init.disconnect(after, sender=Order)
    assert seen == ["pizza", "pasta"]


# -- track() targets ----------------------------------------------------------------------


def test_track_refuses_other_objects() -> None:
    with pytest.raises(TypeError, match="track\\(\\) takes None"):
        track("sessions")


def test_untrack_of_something_untracked_does_nothing() -> None:
    untrack(sessionmaker())


def test_tracking_an_async_session_class_patches_and_restores_it() -> None:
    class ShopSession(AsyncSession):
        pass

    track(ShopSession)
    try:
        assert issubclass(ShopSession.sync_session_class, Session)
        assert ShopSession.sync_session_class is not Session
        assert AsyncSession.sync_session_class is Session
    finally:
        untrack(ShopSession)
    assert "sync_session_class" not in vars(ShopSession)
    assert ShopSession.sync_session_class is Session


def test_tracking_an_async_sessionmaker_gives_it_its_own_sync_class() -> None:
    class Mine(Session):
        pass

    plain: async_sessionmaker[AsyncSession] = async_sessionmaker()
    custom: async_sessionmaker[AsyncSession] = async_sessionmaker(sync_session_class=Mine)
    track(plain)
    track(custom)
    try:
        assert issubclass(plain.kw["sync_session_class"], Session)
        assert plain.kw["sync_session_class"] is not Session
        assert issubclass(custom.kw["sync_session_class"], Mine)
        assert custom.kw["sync_session_class"] is not Mine
    finally:
        untrack(plain)
        untrack(custom)
    assert "sync_session_class" not in plain.kw
    assert custom.kw["sync_session_class"] is Mine


def test_sessions_are_not_listened_to_before_a_session_signal_is_used() -> None:
    # A fresh interpreter: this one's signals have long had receivers.
    program = textwrap.dedent(
        """
        from sqlalchemy import event
        from sqlalchemy.orm import Session
        import asignals.sqlalchemy as orm
        from asignals.sqlalchemy._flush import after_flush, before_flush
        from asignals.testing import capture

        orm.track()
        assert not event.contains(Session, "after_flush", after_flush)
        orm.pre_init.connect(lambda **kw: None, weak=False)  # not a session signal
        assert not event.contains(Session, "after_flush", after_flush)
        with capture(orm.post_delete):
            pass
        assert event.contains(Session, "after_flush", after_flush)
        # Receivers after the commit only: the flush itself is not listened to.
        assert not event.contains(Session, "before_flush", before_flush)
        orm.pre_save.connect(lambda **kw: None, weak=False)
        assert event.contains(Session, "before_flush", before_flush)
        assert event.contains(Session, "after_flush", after_flush)
        orm.untrack()
        assert not event.contains(Session, "after_flush", after_flush)
        assert not event.contains(Session, "before_flush", before_flush)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_importing_without_sqlalchemy_names_the_extra_to_install() -> None:
    # A fresh interpreter in which SQLAlchemy cannot be found, as in a venv without it.
    program = textwrap.dedent(
        """
        import sys

        class NoSQLAlchemy:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "sqlalchemy":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, NoSQLAlchemy())
        try:
            import asignals.sqlalchemy
        except ImportError as exc:
            print(exc)
        import asignals  # the core needs no extra
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        'asignals.sqlalchemy needs SQLAlchemy 2.0.59 or later: pip install "asignals-dispatch'
        "[sqlalchemy]\" (No module named 'sqlalchemy')"
    )
