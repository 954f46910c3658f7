"""One process of a bridge test: ``python node.py '<json config>'``.

It runs a RedisBridge, prints one JSON line per event on stdout (``ready``, ``got``,
``started``, ``rss``, ``sent``) and takes JSON commands on stdin, one per line:
``{"send": "<signal>", "sender": ..., "payload": {...}}``, ``{"rss": true}``, and EOF to
stop. Config keys: url, prefix, consumer, fanout (signal names), queue ({name: group or
null}), claim_after, max_deliveries, behaviour ("ok", "fail", "hang", "slow"), trace (true:
asignals.opentelemetry instrumented, each finished span printed as a ``span`` event).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import anyio
import anyio.to_thread

from asignals import AsyncSignal
from asignals.redis import RedisBridge, current_delivery


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # pragma: no cover


def trace_to_stdout() -> None:
    """Instrument asignals; print each finished span as an event."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from asignals.opentelemetry import AsignalsInstrumentor

    class Printed(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            for span in spans:
                assert isinstance(span, ReadableSpan)
                assert span.context is not None
                emit(
                    event="span",
                    name=span.name,
                    kind=span.kind.name,
                    trace_id=format(span.context.trace_id, "032x"),
                    span_id=format(span.context.span_id, "016x"),
                    parent_id=None if span.parent is None else format(span.parent.span_id, "016x"),
                    attributes=dict(span.attributes or {}),
                    events=[e.name for e in span.events],
                )
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Printed()))
    AsignalsInstrumentor().instrument(tracer_provider=provider)


async def main(config: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if config.get("trace"):
        trace_to_stdout()
    bridge = RedisBridge(
        config["url"],
        prefix=config["prefix"],
        consumer=config.get("consumer"),
        send_timeout=config.get("send_timeout", 5.0),
        reconnect_cap=0.5,
    )
    behaviour = config.get("behaviour", "ok")
    signals: dict[str, AsyncSignal] = {}

    async def receive(signal: AsyncSignal, sender: Any, **payload: Any) -> None:
        delivery = current_delivery()
        event = {
            "signal": signal.name,
            "sender": sender,
            "payload": payload,
            "remote": delivery is not None,
            "count": delivery.delivery_count if delivery else 0,
            "stream_id": delivery.stream_id if delivery else None,
        }
        if behaviour == "hang":
            emit(event="started", **event)
            await anyio.sleep_forever()
        if behaviour == "slow":
            await anyio.sleep(0.01)
        emit(event="got", **event)
        if behaviour == "fail":
            raise RuntimeError(f"receiver failed on delivery {event['count']}")

    for name in config.get("fanout", []):
        signals[name] = AsyncSignal(name)
        bridge.fanout(signals[name])
    for name, group in config.get("queue", {}).items():
        signals[name] = AsyncSignal(name)
        bridge.queue(
            signals[name],
            group=group,
            claim_after=config.get("claim_after", 0.3),
            max_deliveries=config.get("max_deliveries", 3),
        )
    for signal in signals.values():
        signal.connect(receive)

    async with bridge:
        emit(event="ready")
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            command = json.loads(line)
            if "rss" in command:
                emit(event="rss", kib=rss_kib())
            elif "send" in command:
                signal = signals[command["send"]]
                await signal.send(command.get("sender"), **command.get("payload", {}))
                emit(event="sent", signal=signal.name)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
