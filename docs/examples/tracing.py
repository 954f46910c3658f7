"""Tracing and metrics: the spans of one request that saves an order.

Run: python docs/examples/tracing.py (the opentelemetry extra, and the SDK).
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind
from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asignals import AsyncSignal, receiver
from asignals.opentelemetry import AsignalsInstrumentor
from asignals.sqlalchemy import post_save, track

# In an application: a BatchSpanProcessor around an OTLP exporter.
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
AsignalsInstrumentor().instrument(tracer_provider=provider, receiver_spans=True)
tracer = provider.get_tracer("shop")


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(40))


order_paid = AsyncSignal("order_paid")


@receiver(post_save, sender=Order)
async def notify_kitchen(instance: Order, created: bool, **kwargs: Any) -> None:
    await asyncio.sleep(0.01)


@receiver(order_paid)
async def send_receipt(order: Order, **kwargs: Any) -> None:
    await asyncio.sleep(0.02)


@receiver(order_paid)
def bump_metrics(**kwargs: Any) -> None:
    pass


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    track(sessions)
    # What a web framework's instrumentation makes for a request:
    with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER):
        async with sessions() as db:
            order = Order(item="pizza")
            db.add(order)
            await db.commit()  # post_save, in the request's trace
        await order_paid.gather_robust("shop", order=order)
    await engine.dispose()


def tree(spans: list[ReadableSpan]) -> list[str]:
    """The spans as an indented tree, each with its kind and duration."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, indent: str) -> None:
        for span in children.get(parent, []):
            assert span.context is not None
            took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            code = (span.attributes or {}).get("code.function.name")
            name = span.name if code is None else f"{span.name} ({code})"
            lines.append(f"{indent}{name}  [{span.kind.name}, {took:.0f} ms]")
            walk(span.context.span_id, indent + "    ")

    walk(None, "")
    return lines


if __name__ == "__main__":
    asyncio.run(main())
    print("\n".join(tree(list(exporter.get_finished_spans()))))
