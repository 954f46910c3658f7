"""Spans of in-process sends: one per send of a signal with receivers, named after its
mode, and (``receiver_spans=True``) one per receiver called."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from time import perf_counter, time_ns
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._plans import AwaitPlan, InlinePlan, Plan, Responses
from .._receivers import ASYNC, SYNC, Entry, is_coroutine_callable
from .._trace import Forwarding
from ._metrics import Metrics
from ._names import error_type, first_error, function_name

_ROBUST = frozenset({"send_robust", "gather_robust", "send_robust_sync"})


class SendSpans:
    """The `send` of the tracer (see ``asignals/_trace.py``)."""

    def __init__(
        self,
        tracer: trace.Tracer,
        metrics: Metrics,
        receiver_spans: bool,
        exclude: frozenset[str],
        min_duration: float,
    ) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._receiver_spans = receiver_spans
        self._exclude = exclude
        self._min_ns = int(min_duration * 1e9)

    def send(self, signal: Any, mode: str, plan: Plan) -> TracedSend | None:
        name = signal.name or signal.label
        if name in self._exclude:
            return None
        traced = TracedSend(self, name, mode)
        entries: list[Entry] = []
        local = False
        for entry in plan:
            ref, call = entry
            if isinstance(ref(), Forwarding):  # the bridge's publish: its own span says it
                entries.append(entry)
                continue
            local = True
            entries.append((traced.counted(ref, call), call))
        if not local:  # no receiver here (a queued send): the PRODUCER span only
            return None
        kind = type(plan)
        traced.plan = kind(entries) if kind is InlinePlan or kind is AwaitPlan else tuple(entries)
        return traced

    def receiver_span(
        self,
        name: str,
        receiver: Any,
        parent: context.Context,
        start: int,
        exc: BaseException | None,
    ) -> None:
        """The span of one receiver's call, made after it returned (if not too short)."""
        end = time_ns()
        if end - start < self._min_ns:
            return
        span = self._tracer.start_span(
            f"receive {name}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={"asignals.signal": name, "code.function.name": function_name(receiver)},
            start_time=start,
        )
        if isinstance(exc, Exception):
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.set_attribute("error.type", error_type(exc))
            span.record_exception(exc)
        span.end(end_time=end)


class TracedSend:
    """One traced send (`asignals._trace.SendTrace`): its span is current while it runs."""

    __slots__ = ("_span", "_started", "_token", "calls", "mode", "name", "plan", "spans")

    def __init__(self, spans: SendSpans, name: str, mode: str) -> None:
        self.spans = spans
        self.name = name
        self.mode = mode
        self.plan: Plan = ()
        self.calls = 0  # receivers called, those that raised included

    def counted(self, ref: Callable[[], Any], call: Any) -> Callable[[], Any]:
        """*ref*, counting the calls it leads to (the loop calls it right before)."""
        wrap = self.spans._receiver_spans

        def counting() -> Any:
            receiver = ref()
            if receiver is not None:
                self.calls += 1
                if wrap:
                    return _timed(self, receiver, call)
            return receiver

        return counting

    def __enter__(self) -> TracedSend:
        attributes = {"asignals.signal": self.name, "asignals.mode": self.mode}
        self._span = span = self.spans._tracer.start_span(
            f"{self.mode} {self.name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._token = context.attach(trace.set_span_in_context(span))
        self._started = perf_counter()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        span = self._span
        metrics = self.spans._metrics
        attributes = {"asignals.signal": self.name, "asignals.mode": self.mode}
        try:
            span.set_attribute("asignals.receivers", self.calls)
            if isinstance(exc, Exception):  # not a cancellation: a receiver's exception
                error = first_error(exc)
                kind_name = error_type(exc)
                span.set_status(Status(StatusCode.ERROR, str(error)))
                span.set_attribute("error.type", kind_name)
                span.record_exception(error)
                metrics.receiver_errors.add(1, {**attributes, "error.type": kind_name})
            metrics.send_duration.record(perf_counter() - self._started, attributes)
        finally:
            context.detach(self._token)
            span.end()

    def returned(self, responses: Responses) -> None:
        """Robust modes: each exception a receiver raised becomes an ``exception`` event."""
        wrapped = self.spans._receiver_spans
        if wrapped:
            _unwrap(responses)
        if self.mode not in _ROBUST:
            return
        attributes = {"asignals.signal": self.name, "asignals.mode": self.mode}
        for _, response in responses:
            if isinstance(response, Exception):
                self._span.record_exception(response)
                self.spans._metrics.receiver_errors.add(
                    1, {**attributes, "error.type": error_type(response)}
                )


def _timed(traced: TracedSend, receiver: Any, call: Any) -> Any:
    """*receiver*, timed into a receiver span (sync or async, as the loop will call it)."""
    spans, name = traced.spans, traced.name
    parent = context.get_current()
    is_async = call is ASYNC or (call is not SYNC and is_coroutine_callable(receiver))
    if is_async:

        async def timed_async(**named: Any) -> Any:
            start = time_ns()
            try:
                response = await receiver(**named)
            except BaseException as exc:
                spans.receiver_span(name, receiver, parent, start, exc)
                raise
            spans.receiver_span(name, receiver, parent, start, None)
            return response

        wrapper: Any = timed_async
    else:

        def timed(**named: Any) -> Any:
            start = time_ns()
            try:
                response = receiver(**named)
            except BaseException as exc:
                spans.receiver_span(name, receiver, parent, start, exc)
                raise
            spans.receiver_span(name, receiver, parent, start, None)
            return response

        wrapper = timed
    # Named as the receiver, so that a robust send logs the receiver's name.
    functools.update_wrapper(wrapper, receiver)
    wrapper.asignals_receiver = receiver
    return wrapper


def _unwrap(responses: Iterable[Any]) -> None:
    """Put each receiver back in place of its timing wrapper in *responses*."""
    if not isinstance(responses, list):
        return
    for index, (receiver, response) in enumerate(responses):
        original = getattr(receiver, "asignals_receiver", None)
        if original is not None:
            responses[index] = (original, response)
