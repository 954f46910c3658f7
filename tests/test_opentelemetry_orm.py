"""A FastAPI request that changes a row: the ``post_save`` delivered after the commit is in
the request's trace, a child of the span current at the flush, even when the commit runs
later under another span (AsyncSession, and a sync Session in a ``def`` endpoint)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from orm_models import Base, Order
from otel_support import Telemetry, attrs, recorded
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from asignals.asgi import ASGIApp, Receive, Scope, Send
from asignals.sqlalchemy import post_save, track, untrack

pytestmark = pytest.mark.asyncio


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with recorded() as found:
        yield found


def traced_requests(app: ASGIApp, tracer: trace.Tracer) -> ASGIApp:
    """A SERVER span around each request, as an ASGI instrumentation would make."""

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        name = f"{scope['method']} {scope['path']}"
        with tracer.start_as_current_span(name, kind=trace.SpanKind.SERVER):
            await app(scope, receive, send)

    return traced


async def notify_kitchen(instance: Order, created: bool, **kwargs: Any) -> None:
    pass


def log_change(instance: Order, **kwargs: Any) -> None:
    pass


@pytest_asyncio.fixture
async def receivers() -> AsyncIterator[None]:
    post_save.connect(notify_kitchen, sender=Order)
    post_save.connect(log_change, sender=Order)
    try:
        yield
    finally:
        post_save.disconnect(notify_kitchen, sender=Order)
        post_save.disconnect(log_change, sender=Order)


def check_trace(telemetry: Telemetry, request_name: str) -> None:
    spans = telemetry.spans()
    request = telemetry.only(request_name)
    flushed = telemetry.only("flush")
    committed = telemetry.only("commit")
    delivered: list[ReadableSpan] = [
        span for span in spans if attrs(span).get("asignals.signal") == "post_save"
    ]
    assert len(delivered) == 1, [span.name for span in spans]
    (post,) = delivered
    assert post.name.endswith(" post_save")
    assert attrs(post)["asignals.receivers"] == 2
    trace_id = request.context.trace_id
    assert {post.context.trace_id, flushed.context.trace_id, committed.context.trace_id} == {
        trace_id
    }
    # The span current at the flush is the parent, not the commit's.
    assert post.parent is not None
    assert post.parent.span_id == flushed.context.span_id


async def test_post_save_after_an_async_commit_is_in_the_requests_trace(
    telemetry: Telemetry, receivers: None
) -> None:
    telemetry.instrument()
    tracer = telemetry.tracer_provider.get_tracer("test")
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    track(sessions)
    app = FastAPI()

    @app.post("/orders")
    async def create_order() -> dict[str, int]:
        async with sessions() as db:
            with tracer.start_as_current_span("flush"):
                order = Order(item="pizza")
                db.add(order)
                await db.flush()
            with tracer.start_as_current_span("commit"):
                await db.commit()
            return {"id": order.id}

    try:
        transport = httpx.ASGITransport(app=traced_requests(app, tracer))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            response = await client.post("/orders")
        assert response.status_code == 200
        check_trace(telemetry, "POST /orders")
    finally:
        untrack(sessions)
        await engine.dispose()


async def test_post_save_after_a_sync_commit_in_a_def_endpoint(
    telemetry: Telemetry, receivers: None, tmp_path: Path
) -> None:
    telemetry.instrument()
    tracer = telemetry.tracer_provider.get_tracer("test")
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    track(sessions)
    app = FastAPI()

    @app.post("/orders")
    def create_order() -> dict[str, int]:  # FastAPI runs it in a worker thread
        db: Session
        with sessions() as db:
            with tracer.start_as_current_span("flush"):
                order = Order(item="pizza")
                db.add(order)
                db.flush()
            with tracer.start_as_current_span("commit"):
                db.commit()
            return {"id": order.id}

    try:
        transport = httpx.ASGITransport(app=traced_requests(app, tracer))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            response = await client.post("/orders")
        assert response.status_code == 200
        check_trace(telemetry, "POST /orders")
    finally:
        untrack(sessions)
        engine.dispose()


async def test_nothing_is_captured_while_off(receivers: None) -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    track(sessions)
    seen: list[Any] = []

    def frame_trace(instance: Order, **kwargs: Any) -> None:
        seen.append(trace.get_current_span().get_span_context().is_valid)

    post_save.connect(frame_trace, sender=Order)
    try:
        async with sessions() as db:
            db.add(Order(item="pizza"))
            await db.commit()
        assert seen == [False]
    finally:
        post_save.disconnect(frame_trace, sender=Order)
        untrack(sessions)
        await engine.dispose()
