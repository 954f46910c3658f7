"""Trace context carried through storage and queues, and the bridge's messaging spans
(OpenTelemetry's messaging semantic conventions)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from time import perf_counter

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._metrics import Metrics
from ._names import error_type

_W3C = TraceContextTextMapPropagator()  # traceparent and tracestate, whatever is configured


class Messaging:
    """`capture`, `continued`, `producing`, `processing` and `event` of the tracer."""

    def __init__(self, tracer: trace.Tracer, metrics: Metrics) -> None:
        self._tracer = tracer
        self._metrics = metrics

    def capture(self) -> dict[str, str] | None:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        return carrier or None  # no span is current: nothing to continue

    @contextlib.contextmanager
    def continued(self, carrier: Mapping[str, str]) -> Iterator[None]:
        token = context.attach(_W3C.extract(carrier))
        try:
            yield
        finally:
            context.detach(token)

    @contextlib.contextmanager
    def producing(
        self, system: str, destination: str, message_id: str
    ) -> Iterator[dict[str, str] | None]:
        attributes = {
            "messaging.system": system,
            "messaging.destination.name": destination,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        with self._tracer.start_as_current_span(
            f"send {destination}",
            kind=SpanKind.PRODUCER,
            attributes={**attributes, "messaging.message.id": message_id},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            _W3C.inject(carrier)
            try:
                yield carrier
            except Exception as exc:
                kind = error_type(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute("error.type", kind)
                span.record_exception(exc)
                self._metrics.sent_messages.add(1, {**attributes, "error.type": kind})
                raise
            self._metrics.sent_messages.add(1, attributes)

    @contextlib.contextmanager
    def processing(
        self,
        system: str,
        destination: str,
        message_id: str,
        carrier: Mapping[str, str] | None,
        group: str | None,
    ) -> Iterator[None]:
        attributes = {
            "messaging.system": system,
            "messaging.destination.name": destination,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
        }
        if group is not None:
            attributes["messaging.consumer.group.name"] = group
        # The sender's context is the parent: the receivers here are in its trace.
        parent = _W3C.extract(carrier) if carrier else context.Context()
        started = perf_counter()
        with self._tracer.start_as_current_span(
            f"process {destination}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={**attributes, "messaging.message.id": message_id},
        ):
            try:
                yield
            finally:
                self._metrics.process_duration.record(perf_counter() - started, attributes)

    def event(self, name: str, attributes: Mapping[str, str | int]) -> None:
        trace.get_current_span().add_event(name, dict(attributes))
