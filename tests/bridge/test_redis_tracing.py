"""Tracing across the bridge: a producer process and a consumer process over a real
redis-server are one trace, the CONSUMER span a child of the PRODUCER span; the envelope
carries the W3C trace context, and envelopes without it still decode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import StatusCode
from otel_support import Telemetry, attrs, recorded

from asignals import AsyncSignal, _wire
from asignals.redis import BridgeConnectionError, RedisBridge
from bridge.nodes import Node, nodes
from bridge.redis_server import RedisServer
from bridge.support import Recorder, running, until


def config(server: RedisServer, prefix: str, **options: Any) -> dict[str, Any]:
    return {"url": server.url, "prefix": prefix, "trace": True, **options}


def span(node: Node, name: str) -> dict[str, Any]:
    return node.wait_for("span", name=name)


def test_a_queued_message_is_one_trace_from_producer_to_consumer(
    redis_server: RedisServer, prefix: str
) -> None:
    key = f"{prefix}:queue:order_created"
    producer = config(redis_server, prefix, queue={"order_created": None})
    consumer = config(redis_server, prefix, queue={"order_created": "mailer"})
    with nodes(producer, consumer) as (source, mailer):
        source.command(send="order_created", payload={"order_id": 7})
        source.wait_for("sent")
        produced = span(source, f"send {key}")
        processed = span(mailer, f"process {key}")
        sent_here = span(mailer, "send_robust order_created")
    assert produced["kind"] == "PRODUCER"
    assert produced["parent_id"] is None  # the command made no span around the send
    message_id = produced["attributes"]["messaging.message.id"]
    assert produced["attributes"] == {
        "messaging.system": "redis",
        "messaging.destination.name": key,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": message_id,
    }
    assert processed["kind"] == "CONSUMER"
    assert processed["trace_id"] == produced["trace_id"]
    assert processed["parent_id"] == produced["span_id"]
    assert processed["attributes"] == {
        "messaging.system": "redis",
        "messaging.destination.name": key,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": "mailer",
        "messaging.message.id": message_id,
    }
    # The local send it makes is its child; the producer had no local receivers, so it
    # made the PRODUCER span only.
    assert sent_here["parent_id"] == processed["span_id"]
    assert sent_here["trace_id"] == produced["trace_id"]
    assert [e["name"] for e in source.events if e["event"] == "span"] == [f"send {key}"]


def test_a_fanout_message_keeps_the_trace_of_the_local_send(
    redis_server: RedisServer, prefix: str
) -> None:
    channel = f"{prefix}:fanout:cache_invalidated"
    both = config(redis_server, prefix, fanout=["cache_invalidated"])
    with nodes(both, both) as (source, listener):
        source.command(send="cache_invalidated", sender="products", payload={"key": 1})
        source.wait_for("sent")
        local = span(source, "send cache_invalidated")
        produced = span(source, f"send {channel}")
        processed = span(listener, f"process {channel}")
    assert local["kind"] == "INTERNAL"
    assert local["attributes"]["asignals.receivers"] == 1  # the publish is not a receiver
    assert produced["parent_id"] == local["span_id"]
    assert processed["parent_id"] == produced["span_id"]
    assert processed["trace_id"] == local["trace_id"]
    assert "messaging.consumer.group.name" not in processed["attributes"]


def test_dead_lettering_is_an_event_on_the_consumer_span(
    redis_server: RedisServer, prefix: str
) -> None:
    key = f"{prefix}:queue:order_created"
    producer = config(redis_server, prefix, queue={"order_created": None})
    consumer = config(
        redis_server, prefix, queue={"order_created": "mailer"}, behaviour="fail", max_deliveries=1
    )
    with nodes(producer, consumer) as (source, mailer):
        source.command(send="order_created", payload={"order_id": 7})
        processed = span(mailer, f"process {key}")
    assert processed["events"] == ["dead_letter"]


def test_the_envelope_carries_the_trace_context_and_decodes_without_it() -> None:
    envelope = {
        "v": 1,
        "origin": "here",
        "id": "ab",
        "signal": "order_created",
        "sender": None,
        "payload": {},
        "ts": 1.0,
    }
    assert _wire.open_envelope(_wire.seal(envelope, None), None, 10_000).trace is None
    carrier = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "tracestate": "a=b"}
    secret = b"s" * 16
    traced = _wire.seal({**envelope, "trace": carrier}, secret)
    assert _wire.open_envelope(traced, secret, 10_000).trace == carrier
    assert _wire.envelope_of(traced)["trace"] == carrier
    odd = _wire.seal({**envelope, "trace": {"traceparent": 1}}, None)
    assert _wire.open_envelope(odd, None, 10_000).trace is None  # delivered, untraced


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with recorded() as found:
        yield found


@pytest.mark.asyncio
async def test_bridge_metrics_and_a_queued_send_without_local_receivers(
    telemetry: Telemetry, redis_server: RedisServer, prefix: str
) -> None:
    telemetry.instrument()
    here, there = AsyncSignal("order_created"), AsyncSignal("order_created")
    here.connect(Recorder())  # not called: a queued send runs where a group consumes
    mailer = Recorder()
    there.connect(mailer)
    a, b = (
        RedisBridge(redis_server.url, prefix=prefix),
        RedisBridge(redis_server.url, prefix=prefix),
    )
    a.queue(here)
    b.queue(there, group="mailer")
    async with running(a, b):
        await here.send("shop", order_id=1)
        await mailer.wait(1)
        await until(lambda: bool(telemetry.points("messaging.process.duration")))
    key = f"{prefix}:queue:order_created"
    names = sorted(s.name for s in telemetry.spans())
    assert names == sorted([f"send {key}", f"process {key}", "send_robust order_created"])
    (sent,) = telemetry.points("messaging.client.sent.messages")
    assert sent.value == 1
    assert dict(sent.attributes)["messaging.destination.name"] == key
    (processed,) = telemetry.points("messaging.process.duration")
    assert processed.count == 1
    assert dict(processed.attributes)["messaging.consumer.group.name"] == "mailer"


@pytest.mark.asyncio
async def test_a_publish_that_fails_is_an_error_on_the_producer_span(
    telemetry: Telemetry, own_redis: RedisServer, prefix: str
) -> None:
    telemetry.instrument()
    cache_invalidated = AsyncSignal("cache_invalidated")
    bridge = RedisBridge(own_redis.url, prefix=prefix, send_timeout=0.3)
    bridge.fanout(cache_invalidated)
    async with bridge:
        own_redis.stop()  # the publish retries until send_timeout, then raises
        with pytest.raises(BridgeConnectionError):
            await cache_invalidated.send("products")
    channel = f"{prefix}:fanout:cache_invalidated"
    produced = telemetry.only(f"send {channel}")
    assert produced.status.status_code is StatusCode.ERROR
    error_type = "asignals.redis.BridgeConnectionError"
    assert attrs(produced)["error.type"] == error_type
    (sent,) = telemetry.points("messaging.client.sent.messages")
    assert dict(sent.attributes)["error.type"] == error_type
    assert telemetry.named("send cache_invalidated") == []  # no local receiver
