"""The outbox's API: what it accepts, what it refuses (with errors that name the fix), its
table in the application's metadata, and rows this process cannot deliver."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import MetaData, create_engine, func, inspect, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from asignals import AsyncSignal, receiver
from asignals.sqlalchemy import (
    Outbox,
    m2m_changed,
    post_bulk_update,
    post_delete,
    post_save,
    pre_save,
    track,
    untrack,
)
from durable.conftest import reset
from durable.models import Base, Dish
from durable.support import until

shipped = AsyncSignal("durable_shipped")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sqlite(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "api.db"
    return f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}"


def outbox_of(url: str, **options: Any) -> Outbox:
    return Outbox(create_engine(url), metadata=Base.metadata, **options)


def keep(*args: Any, **kwargs: Any) -> None:
    pass


# -- connecting ------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", [pre_save, post_bulk_update])
def test_only_post_save_post_delete_and_m2m_changed_take_outbox(
    sqlite: tuple[str, str], signal: Any
) -> None:
    outbox = outbox_of(sqlite[1])
    with pytest.raises(
        TypeError, match=r"only post_save, post_delete and m2m_changed have durable"
    ):
        signal.connect(keep, sender=Dish, outbox=outbox)
    with pytest.raises(TypeError, match=r"send durably with outbox.send\(session, durable_shipped"):
        receiver(shipped, outbox=outbox)(keep)
    assert not shipped.receivers_for(None)


def test_outbox_must_be_an_outbox() -> None:
    with pytest.raises(TypeError, match=r"takes an asignals.sqlalchemy.Outbox, got 'kitchen'"):
        post_save.connect(keep, sender=Dish, outbox="kitchen")


def test_durable_receivers_disconnect_like_any_other(sqlite: tuple[str, str]) -> None:
    outbox = outbox_of(sqlite[1])
    for signal in (post_save, post_delete, m2m_changed):
        signal.connect(keep, sender=Dish, outbox=outbox, dispatch_uid="keep")
        assert not signal.has_listeners(Dish)  # not an in-memory receiver
        assert signal.disconnect(dispatch_uid="keep", sender=Dish)
        assert not signal.disconnect(dispatch_uid="keep", sender=Dish)
    post_save.connect(keep, sender=Dish, outbox=outbox)
    assert post_save.disconnect(keep, sender=Dish)
    assert not outbox._durable_for(post_save, Dish)


def test_a_dotted_path_sender_is_connected_durably_once_mapped(sqlite: tuple[str, str]) -> None:
    outbox = outbox_of(sqlite[1])
    post_save.connect(keep, sender="durable.models.Dish", outbox=outbox, weak=False)
    try:
        assert outbox._durable_for(post_save, Dish)  # mapped already: connected at once
    finally:
        assert post_save.disconnect(keep, sender="durable.models.Dish")


# -- the options ------------------------------------------------------------------------------


def test_outbox_refuses_bad_options(sqlite: tuple[str, str]) -> None:
    engine = create_engine(sqlite[1])
    with pytest.raises(TypeError, match="takes an Engine or an AsyncEngine"):
        Outbox(sqlite[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease"):
        Outbox(engine, lease=0)
    with pytest.raises(TypeError, match="max_attempts"):
        Outbox(engine, max_attempts=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        Outbox(engine, max_attempts=0)
    with pytest.raises(TypeError, match="MetaData"):
        Outbox(engine, metadata={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an outbox table"):
        Outbox(engine, metadata=Base.metadata, table_name="durable_dishes")
    assert repr(Outbox(engine)) == "<Outbox 'asignals_outbox'>"


def test_the_table_is_in_the_apps_metadata_for_create_all(sqlite: tuple[str, str]) -> None:
    metadata = MetaData()
    engine = create_engine(sqlite[1])
    outbox = Outbox(engine, metadata=metadata, table_name="events_out")
    assert Outbox(engine, metadata=metadata, table_name="events_out").table is outbox.table
    metadata.create_all(engine)
    assert "events_out" in inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.anyio
async def test_create_table_is_idempotent(sqlite: tuple[str, str]) -> None:
    engine = create_async_engine(sqlite[0])
    outbox = Outbox(engine, table_name="own_outbox")
    await outbox.create_table()
    await outbox.create_table()
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    await engine.dispose()
    assert "own_outbox" in names


# -- outbox.send -------------------------------------------------------------------------------


def test_outbox_send_refuses_what_it_cannot_store(sqlite: tuple[str, str]) -> None:
    _, url = sqlite
    reset(url)
    engine = create_engine(url)
    outbox = Outbox(engine, metadata=Base.metadata)
    maker = sessionmaker(engine)
    track(maker)
    try:
        with maker() as session:
            with pytest.raises(
                TypeError, match=r"payload item 'when' holds a builtins.set.*register_type"
            ):
                outbox.send(session, shipped, "shop", when={1, 2})
            with pytest.raises(
                TypeError, match=r"the sender .*object.* cannot be stored.*register_sender"
            ):
                outbox.send(session, shipped, object())
            with pytest.raises(TypeError, match=r"model signals are written by the commit"):
                outbox.send(session, post_save, Dish)
            with pytest.raises(TypeError, match=r"finds a signal by its name; give it one"):
                outbox.send(session, AsyncSignal(), None)
            with pytest.raises(TypeError, match=r"cannot have an item named 'sender'"):
                outbox.send(session, shipped, None, sender=1)
            with pytest.raises(TypeError, match="takes a Session or an AsyncSession"):
                outbox.send("session", shipped, None)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="takes an AsyncSignal"):
                outbox.send(session, "shipped", None)  # type: ignore[arg-type]
            session.rollback()
        with (
            Session(engine) as untracked,
            pytest.raises(RuntimeError, match=r"not tracked.*track\(\)"),
        ):
            outbox.send(untracked, shipped, None)
    finally:
        untrack(maker)
        engine.dispose()


@dataclasses.dataclass
class Address:
    street: str
    number: int


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.anyio
async def test_registered_senders_and_types_are_stored_and_revived(sqlite: tuple[str, str]) -> None:
    async_url, url = sqlite
    reset(url)
    engine = create_async_engine(async_url)
    outbox = Outbox(engine, metadata=Base.metadata, poll_interval=0.1)
    shop = object()
    outbox.register_sender(shop, "shop")
    outbox.register_dataclass(Address, "address")
    outbox.register_type(Money, "money", lambda money: money.cents, Money)
    maker = async_sessionmaker(engine)
    track(maker)
    got: list[Any] = []

    def on_shipped(signal: AsyncSignal, sender: Any, **payload: Any) -> None:
        got.append((sender, payload))

    shipped.connect(on_shipped)
    try:
        async with outbox:
            async with maker.begin() as session:
                outbox.send(session, shipped, shop, to=Address("Main", 1), cost=Money(250))
                outbox.send(session, shipped, Dish, to=None, cost=None)
            await until(lambda: _true(len(got) == 2))
    finally:
        shipped.disconnect(on_shipped)
        untrack(maker)
        await engine.dispose()
    assert got == [
        (shop, {"to": Address("Main", 1), "cost": Money(250)}),
        (Dish, {"to": None, "cost": None}),
    ]


async def _true(value: bool) -> bool:
    return value


@pytest.mark.anyio
async def test_a_change_the_outbox_cannot_store_fails_the_commit(sqlite: tuple[str, str]) -> None:
    async_url, url = sqlite
    reset(url)
    engine = create_async_engine(async_url)
    outbox = Outbox(engine, metadata=Base.metadata)
    maker = async_sessionmaker(engine)
    track(maker)
    post_save.connect(keep, sender=Dish, outbox=outbox)
    try:
        async with maker() as session:
            session.add(Dish(name="soup"))
            await session.commit()
            dish = (await session.scalars(select(Dish))).one()
            dish.extra = Money(1)
            with pytest.raises(TypeError, match=r"the new value of 'extra' holds a .*Money"):
                await session.commit()
    finally:
        post_save.disconnect(keep, sender=Dish)
        untrack(maker)
        await engine.dispose()


# -- rows this relay cannot deliver ----------------------------------------------------------


@pytest.mark.anyio
async def test_a_row_of_an_unknown_signal_is_left_for_another_relay(
    sqlite: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    async_url, url = sqlite
    reset(url)
    engine = create_async_engine(async_url)
    outbox = Outbox(engine, metadata=Base.metadata, poll_interval=0.05)
    maker = async_sessionmaker(engine)
    track(maker)
    elsewhere = AsyncSignal("durable_known_elsewhere")
    try:
        async with maker.begin() as session:
            for number in range(3):
                outbox.send(session, elsewhere, None, number=number)
        del elsewhere  # this process no longer knows the signal
        caplog.set_level(logging.WARNING, "asignals.outbox")
        async with outbox:
            await anyio.sleep(0.5)  # several polls
            stats = await outbox.statistics()
        later = AsyncSignal("durable_known_elsewhere")  # known again: delivered
        got: list[int] = []
        later.connect(lambda sender, number, **kwargs: got.append(number), weak=False)
        async with outbox:
            await until(lambda: _true(len(got) == 3))
    finally:
        untrack(maker)
        await engine.dispose()
    assert (stats.pending, stats.unknown, stats.delivered) == (3, 3, 0)
    assert caplog.text.count("left an event for a relay that can deliver it") == 1
    assert "no signal named 'durable_known_elsewhere'" in caplog.text
    assert sorted(got) == [0, 1, 2]


@pytest.mark.anyio
async def test_requeue_of_every_dead_row_and_dead_letters_limit(sqlite: tuple[str, str]) -> None:
    async_url, url = sqlite
    reset(url)
    engine = create_async_engine(async_url)
    outbox = Outbox(engine, metadata=Base.metadata, poll_interval=0.05, max_attempts=1)
    maker = async_sessionmaker(engine)
    track(maker)
    failing = True
    got: list[int] = []

    def on_shipped(sender: Any, number: int, **kwargs: Any) -> None:
        if failing:
            raise ValueError(f"no {number}")
        got.append(number)

    shipped.connect(on_shipped)
    try:
        async with outbox:
            async with maker.begin() as session:
                for number in range(3):
                    outbox.send(session, shipped, None, number=number)
            await until(lambda: _dead(outbox, 3))
            assert len(await outbox.dead_letters(limit=2)) == 2
            with pytest.raises(TypeError, match="a list of ids"):
                await outbox.requeue("abc")
            failing = False
            assert await outbox.requeue() == 3
            await until(lambda: _true(len(got) == 3))
            assert await outbox.requeue() == 0
    finally:
        shipped.disconnect(on_shipped)
        untrack(maker)
        await engine.dispose()


async def _dead(outbox: Outbox, count: int) -> bool:
    return (await outbox.statistics()).dead == count


def test_rows_are_counted_by_the_table(sqlite: tuple[str, str]) -> None:
    _, url = sqlite
    reset(url)
    engine = create_engine(url)
    outbox = Outbox(engine, metadata=Base.metadata)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(outbox.table)).scalar_one() == 0
    engine.dispose()


@pytest.mark.anyio
async def test_the_relay_starts_once_and_stops_idempotently(sqlite: tuple[str, str]) -> None:
    engine = create_async_engine(sqlite[0])
    outbox = Outbox(engine, metadata=Base.metadata)
    reset(sqlite[1])
    states = [outbox.running]
    async with outbox:
        states.append(outbox.running)
        with pytest.raises(RuntimeError, match="already running"):
            await outbox.__aenter__()
    states.append(outbox.running)
    assert await outbox.__aexit__(None, None, None) is None
    await engine.dispose()
    assert states == [False, True, False]
