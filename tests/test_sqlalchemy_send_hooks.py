"""Model signals on a signal with a send hook that adds a receiver to be awaited, as the
Redis bridge's fanout does (it adds the entry that publishes): delivered after the commit
wherever the session runs, never run as if every receiver were sync."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio.lowlevel
import pytest
import pytest_asyncio
from orm_models import Base, Order
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from asignals import _hooks
from asignals._dispatch import Plan
from asignals._receivers import ASYNC
from asignals.sqlalchemy import post_save, track, untrack


class AwaitedEntry:
    """A send hook that adds one coroutine receiver to every plan (as a bridge adds its
    publish), recording what reached it."""

    def __init__(self) -> None:
        self.reached: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, sender: Any, payload: dict[str, Any], plan: Plan) -> Plan:
        async def publish(**kwargs: Any) -> None:
            await anyio.lowlevel.checkpoint()  # it really waits
            self.reached.append((sender, payload))

        return ((itertools.repeat(publish).__next__, ASYNC), *plan)

    def observes(self, sender: Any) -> bool:
        return True


@pytest.fixture
def hooked() -> Iterator[tuple[AwaitedEntry, list[Any]]]:
    hook = AwaitedEntry()
    local: list[Any] = []

    def on_save(instance: Any, **kwargs: Any) -> None:  # sync: alone it would run inline
        local.append(instance)

    post_save.connect(on_save, sender=Order)
    _hooks.add_hook(post_save, hook, _hooks.BRIDGE)
    try:
        yield hook, local
    finally:
        _hooks.remove_hook(post_save, hook)
        post_save.disconnect(on_save, sender=Order)


@pytest_asyncio.fixture
async def maker() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine)
    track(sessions)
    try:
        yield sessions
    finally:
        untrack(sessions)
        await engine.dispose()


@pytest.mark.asyncio
async def test_async_session_awaits_the_hooks_receiver(
    maker: async_sessionmaker[AsyncSession], hooked: tuple[AwaitedEntry, list[Any]]
) -> None:
    hook, local = hooked
    async with maker() as session, session.begin():
        order = Order(item="tea")
        session.add(order)
    assert local == [order]
    assert [(sender, payload["instance"]) for sender, payload in hook.reached] == [(Order, order)]


def test_sync_session_in_a_script_runs_the_hooks_receiver(
    hooked: tuple[AwaitedEntry, list[Any]],
) -> None:
    hook, local = hooked
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine)
    track(sessions)
    try:
        with sessions() as session, session.begin():
            order = Order(item="tea")
            session.add(order)
    finally:
        untrack(sessions)
        engine.dispose()
    assert local == [order]
    assert [payload["instance"] for _, payload in hook.reached] == [order]


def test_a_capture_a_receiver_starts_sees_the_rest_of_that_commits_sends() -> None:
    """A commit's sends share one snapshot of the receivers, but a send hook installed
    meanwhile (here by the first receiver) sees every send after it, as it would between
    two plain sends."""
    from contextlib import ExitStack

    from asignals.testing import Capture, capture

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine)
    track(sessions)
    later = ExitStack()
    seen: list[str] = []
    captured: list[Capture] = []

    def on_save(instance: Order, **kwargs: Any) -> None:
        seen.append(instance.item)
        if len(seen) == 1:
            captured.append(later.enter_context(capture(post_save)))

    orders = [Order(item="a"), Order(item="b"), Order(item="c")]
    post_save.connect(on_save, sender=Order)
    try:
        with sessions() as session:
            session.add_all(orders)
            session.commit()
    finally:
        later.close()
        post_save.disconnect(on_save, sender=Order)
        untrack(sessions)
        engine.dispose()
    assert seen == ["a", "b", "c"]
    assert [sent.payload["instance"] for sent in captured[0]] == orders[1:]
