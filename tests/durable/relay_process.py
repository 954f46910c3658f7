"""One process of an outbox test: ``python relay_process.py '<json config>'``.

It tracks its sessions, connects the durable receiver of ``Dish`` saves (which records
each run in the ``durable_seen`` table, or with ``"die": "receiver"`` kills the process on
entry), runs the outbox's relay (and a Redis bridge carrying ``durable_order_paid`` as a
queue when ``redis_url`` is given), prints ``{"event": "ready"}``, commits the dishes named
in ``"commit"``, and runs until its stdin closes. ``"die": "after_xadd"`` kills it after a
relayed message reached Redis, before its row is deleted.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from asignals import AsyncSignal, current_delivery, receiver
from asignals.sqlalchemy import Outbox, post_save, track
from asignals.sqlalchemy._outbox import _table
from durable.models import Base, Dish, Seen

order_paid = AsyncSignal("durable_order_paid")


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def die(*args: Any) -> None:
    emit(event="dying")
    os.kill(os.getpid(), signal.SIGKILL)


async def main(config: dict[str, Any]) -> None:
    engine = create_async_engine(config["url"])
    outbox = Outbox(
        engine,
        metadata=Base.metadata,
        lease=config.get("lease", 30.0),
        poll_interval=config.get("poll_interval", 0.1),
        batch_size=config.get("batch_size", 100),
    )
    maker = async_sessionmaker(engine)
    track(maker)
    name = config["name"]

    @receiver(post_save, sender=Dish, outbox=outbox, weak=False)
    async def kitchen(sender: type, instance: Dish, **kwargs: Any) -> None:
        if config.get("die") == "receiver":
            die()
        delivery = current_delivery()
        assert delivery is not None
        async with maker() as session:
            session.add(Seen(event=instance.name, delivery=delivery.id, process=name))
            await session.commit()

    if config.get("die") == "after_xadd":
        _table.remove = die  # type: ignore[assignment]  # the crash between XADD and DELETE

    async with outbox:
        if "redis_url" in config:
            from asignals.redis import RedisBridge

            bridge = RedisBridge(config["redis_url"], prefix=config["prefix"])
            bridge.queue(order_paid)
            async with bridge:
                await serve(config, maker)
        else:
            await serve(config, maker)
    await engine.dispose()


async def serve(config: dict[str, Any], maker: async_sessionmaker[Any]) -> None:
    emit(event="ready")
    for dish in config.get("commit", ()):
        async with maker.begin() as session:
            session.add(Dish(name=dish))
        emit(event="committed", dish=dish)
    await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
