"""asignals.opentelemetry: a span per send of each mode, on asyncio, uvloop and trio; the
receivers' spans; errors; what is left out; metrics; and nothing once uninstrumented."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Telemetry, attrs, recorded

from asignals import (
    AsyncSignal,
    _trace,
    got_request_exception,
    request_finished,
    request_started,
)
from asignals._dispatch import Watch
from asignals.asgi import ASGIApp, Message, Receive, Scope, Send, SignalMiddleware
from asignals.opentelemetry import AsignalsInstrumentor
from asignals.testing import connected_to


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with recorded() as found:
        yield found


class OrderFailed(Exception):
    pass


ORDER_FAILED = f"{__name__}.OrderFailed"


def ok(sender: Any, **kwargs: Any) -> str:
    return "ok"


async def ok_async(sender: Any, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "ok async"


def fails(sender: Any, **kwargs: Any) -> None:
    raise OrderFailed("no stock")


MODES = ["send", "send_robust", "gather", "gather_robust"]


async def send_in(mode: str, signal: AsyncSignal, **payload: Any) -> Any:
    return await getattr(signal, mode)("shop", **payload)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_each_mode_is_one_internal_span_under_the_caller(
    telemetry: Telemetry, mode: str
) -> None:
    telemetry.instrument()
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok)
    order_paid.connect(ok_async)
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        responses = await send_in(mode, order_paid, order=1)
    assert [response for _, response in responses] == ["ok", "ok async"]
    span = telemetry.only(f"{mode} order_paid")
    assert span.kind is SpanKind.INTERNAL
    assert attrs(span) == {
        "asignals.signal": "order_paid",
        "asignals.mode": mode,
        "asignals.receivers": 2,
    }
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_signal_without_receivers_makes_no_span(telemetry: Telemetry, mode: str) -> None:
    telemetry.instrument()
    quiet = AsyncSignal("quiet")
    await send_in(mode, quiet, order=1)
    assert telemetry.spans() == []


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["send", "gather"])
async def test_a_receivers_exception_sets_error_status_and_type(
    telemetry: Telemetry, mode: str
) -> None:
    telemetry.instrument()
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok)
    order_paid.connect(fails)
    with pytest.raises((OrderFailed, ExceptionGroup)):
        await send_in(mode, order_paid)
    span = telemetry.only(f"{mode} order_paid")
    assert span.status.status_code is StatusCode.ERROR
    attributes = attrs(span)
    assert attributes["error.type"] == ORDER_FAILED  # the receiver's, not the group's
    assert attributes["asignals.receivers"] == 2


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["send_robust", "gather_robust"])
async def test_robust_modes_record_each_failure_as_an_event_and_leave_the_status(
    telemetry: Telemetry, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry.instrument()
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(fails)
    order_paid.connect(ok)
    order_paid.connect(fails, dispatch_uid="again")
    responses = await send_in(mode, order_paid)
    assert [receiver for receiver, _ in responses] == [fails, ok, fails]
    span = telemetry.only(f"{mode} order_paid")
    assert span.status.status_code is StatusCode.UNSET
    assert [event.name for event in span.events] == ["exception", "exception"]
    assert attrs(span.events[0])["exception.type"] == ORDER_FAILED
    assert attrs(span)["asignals.receivers"] == 3
    errors = telemetry.points("asignals.receiver.errors")
    assert sum(point.value for point in errors) == 2


@pytest.mark.anyio
async def test_send_counts_the_receivers_called_up_to_the_failure(telemetry: Telemetry) -> None:
    telemetry.instrument()
    order_paid = AsyncSignal("order_paid")
    for uid in ("a", "b"):
        order_paid.connect(ok, dispatch_uid=uid)
    order_paid.connect(fails)
    order_paid.connect(ok, dispatch_uid="never")
    with pytest.raises(OrderFailed):
        await order_paid.send("shop")
    assert dict(telemetry.only("send order_paid").attributes or {})["asignals.receivers"] == 3


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_receiver_spans_are_children_named_after_the_receiver(
    telemetry: Telemetry, mode: str
) -> None:
    telemetry.instrument(receiver_spans=True)
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok)
    order_paid.connect(ok_async)
    responses = await send_in(mode, order_paid)
    assert [receiver for receiver, _ in responses] == [ok, ok_async]  # not their wrappers
    send = telemetry.only(f"{mode} order_paid")
    received = telemetry.named("receive order_paid")
    assert sorted(attrs(span)["code.function.name"] for span in received) == [
        f"{__name__}.ok",
        f"{__name__}.ok_async",
    ]
    for span in received:
        assert span.parent is not None
        assert span.parent.span_id == send.context.span_id
        assert span.kind is SpanKind.INTERNAL


@pytest.mark.anyio
async def test_receiver_spans_shorter_than_min_duration_are_dropped(
    telemetry: Telemetry,
) -> None:
    telemetry.instrument(receiver_spans=True, min_duration=0.05)

    async def slow(**kwargs: Any) -> None:
        await anyio.sleep(0.1)

    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok)
    order_paid.connect(slow)
    await order_paid.send("shop")
    received = telemetry.only("receive order_paid")  # the slow one only
    assert attrs(received)["code.function.name"].endswith(".slow")
    assert received.end_time is not None
    assert received.start_time is not None
    assert received.end_time - received.start_time >= 0.1e9


@pytest.mark.anyio
async def test_excluded_signals_make_no_spans(telemetry: Telemetry) -> None:
    telemetry.instrument(exclude=("request_started", "noisy"), receiver_spans=True)
    noisy, order_paid = AsyncSignal("noisy"), AsyncSignal("order_paid")
    noisy.connect(ok)
    order_paid.connect(ok)
    await noisy.send("shop")
    await order_paid.send("shop")
    assert sorted(span.name for span in telemetry.spans()) == [
        "receive order_paid",
        "send order_paid",
    ]


def test_send_sync_without_an_event_loop_is_one_span(telemetry: Telemetry) -> None:
    telemetry.instrument()
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok)
    order_paid.connect(ok_async)
    order_paid.send_sync("shop")
    order_paid.send_robust_sync("shop")
    assert dict(telemetry.only("send_sync order_paid").attributes or {})["asignals.mode"] == (
        "send_sync"
    )
    assert telemetry.only("send_robust_sync order_paid").kind is SpanKind.INTERNAL
    assert len(telemetry.spans()) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["send_sync", "send_robust_sync"])
async def test_send_sync_from_a_worker_thread_is_one_span_in_the_callers_trace(
    telemetry: Telemetry, mode: str
) -> None:
    telemetry.instrument(receiver_spans=True)
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok)
    order_paid.connect(ok_async)  # runs on the event loop that started the thread
    tracer = telemetry.tracer_provider.get_tracer("test")

    def endpoint() -> Any:
        with tracer.start_as_current_span("endpoint"):
            return getattr(order_paid, mode)("shop")

    responses = await anyio.to_thread.run_sync(endpoint)
    assert [response for _, response in responses] == ["ok", "ok async"]
    endpoint_span = telemetry.only("endpoint")
    span = telemetry.only(f"{mode} order_paid")
    assert span.parent is not None
    assert span.parent.span_id == endpoint_span.context.span_id
    assert attrs(span)["asignals.receivers"] == 2
    names = sorted(s.name for s in telemetry.spans())
    assert names == sorted(["endpoint", f"{mode} order_paid", *["receive order_paid"] * 2])


@pytest.mark.anyio
async def test_send_sync_on_the_event_loops_thread_is_one_span(telemetry: Telemetry) -> None:
    telemetry.instrument()
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok)
    order_paid.send_sync("shop")
    order_paid.connect(fails)
    with pytest.raises(OrderFailed):
        order_paid.send_sync("shop")
    first, second = telemetry.named("send_sync order_paid")
    assert first.status.status_code is StatusCode.UNSET
    assert second.status.status_code is StatusCode.ERROR
    assert attrs(second)["error.type"] == ORDER_FAILED


@pytest.mark.anyio
async def test_signals_created_after_instrument_are_traced_and_uninstrument_stops_all(
    telemetry: Telemetry,
) -> None:
    before = AsyncSignal("before")
    before.connect(ok)
    await before.send("shop")  # a prepared send kept, reused while untraced
    await before.send("shop")
    telemetry.instrument()
    telemetry.instrument()  # twice: the same as once
    after = AsyncSignal("after")
    after.connect(ok)
    await before.send("shop")
    await after.send("shop")
    assert sorted(span.name for span in telemetry.spans()) == ["send after", "send before"]
    AsignalsInstrumentor().uninstrument()
    AsignalsInstrumentor().uninstrument()  # idempotent
    telemetry.exporter.clear()
    await before.send("shop")
    await after.gather("shop")
    after.send_sync("shop")
    assert telemetry.spans() == []
    assert _trace.tracer is None
    assert _trace.capture() is None


def test_uninstrument_gives_the_hot_paths_back(telemetry: Telemetry) -> None:
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok, weak=False)
    watch = Watch(order_paid)
    plans = [watch.plan]
    telemetry.instrument()
    plans.append(watch.plan)  # None: the middleware prepares (and traces) each send
    AsignalsInstrumentor().uninstrument()
    plans.append(watch.plan)
    assert [plan is not None for plan in plans] == [True, False, True]


@pytest.mark.anyio
async def test_send_duration_histogram(telemetry: Telemetry) -> None:
    telemetry.instrument()
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(ok)
    await order_paid.send("shop")
    await order_paid.send_robust("shop")
    await order_paid.send("shop")
    points = telemetry.points("asignals.send.duration")
    by_mode = {dict(point.attributes)["asignals.mode"]: point for point in points}
    assert by_mode["send"].count == 2
    assert by_mode["send_robust"].count == 1
    assert all(dict(p.attributes)["asignals.signal"] == "order_paid" for p in points)


def test_trace_context_is_captured_and_continued_only_while_instrumented(
    telemetry: Telemetry,
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("off"):
        assert _trace.capture() is None
    telemetry.instrument()
    with tracer.start_as_current_span("request") as request:
        carrier = _trace.capture()
    assert carrier is not None
    assert set(carrier) >= {"traceparent"}
    seen: list[Any] = []

    def elsewhere() -> None:  # another thread: no context of its own
        with _trace.continued(carrier), tracer.start_as_current_span("later"):
            seen.append(trace.get_current_span().get_span_context())

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    later = telemetry.only("later")
    assert later.parent is not None
    assert later.parent.span_id == request.get_span_context().span_id
    assert seen[0].trace_id == request.get_span_context().trace_id
    with _trace.continued(None):  # nothing carried: nothing changes
        assert not trace.get_current_span().get_span_context().is_valid


def test_instrument_checks_its_arguments() -> None:
    instrumentor = AsignalsInstrumentor()
    with pytest.raises(TypeError, match=r"exclude=\('noisy',\)"):
        instrumentor.instrument(exclude="noisy")
    with pytest.raises(ValueError, match="min_duration"):
        instrumentor.instrument(min_duration=-1.0)
    with pytest.raises(TypeError, match="min_duration"):
        instrumentor.instrument(min_duration="1")  # type: ignore[arg-type]
    assert _trace.tracer is None


def test_importing_without_opentelemetry_names_the_extra() -> None:
    code = "import sys; sys.modules['opentelemetry'] = None; import asignals.opentelemetry"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert 'pip install "asignals-dispatch[opentelemetry]"' in done.stderr


def test_opentelemetry_instrument_finds_and_turns_on_the_instrumentor() -> None:
    # What `opentelemetry-instrument` does at start-up, in a process of its own: its
    # loader reads the entry points, checks each distribution's declared dependencies,
    # and instruments those it accepts.
    code = """if True:
        import logging
        logging.basicConfig(level=logging.DEBUG)
        from opentelemetry.instrumentation.auto_instrumentation import _load
        from opentelemetry.instrumentation.distro import DefaultDistro
        _load._load_instrumentors(DefaultDistro())
        from asignals import _trace
        from asignals.opentelemetry import AsignalsInstrumentor
        assert AsignalsInstrumentor().is_instrumented_by_opentelemetry
        assert _trace.tracer is not None
        print("instrumented")
    """
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "instrumented" in done.stdout
    assert "Instrumented asignals" in done.stderr


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise OrderFailed("the endpoint failed")


@pytest.mark.anyio
@pytest.mark.parametrize("app", [hello, broken], ids=["ok", "raising"])
async def test_the_middlewares_request_signals_are_spans_of_the_request(
    telemetry: Telemetry, app: ASGIApp
) -> None:
    telemetry.instrument()
    tracer = telemetry.tracer_provider.get_tracer("test")
    middleware = SignalMiddleware(app)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    with (
        connected_to(ok, request_started),
        connected_to(ok, request_finished),
        connected_to(ok, got_request_exception),
        tracer.start_as_current_span("GET /") as request,
        contextlib.suppress(OrderFailed),
    ):
        await middleware(scope, receive, send)
    names = {"send request_started", "send_robust request_finished"}
    if app is broken:
        names.add("send_robust got_request_exception")
    assert {span.name for span in telemetry.spans()} == {"GET /", *names}
    for name in names:
        span = telemetry.only(name)
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id


@pytest.mark.anyio
async def test_excluded_request_signals_cost_no_span(telemetry: Telemetry) -> None:
    telemetry.instrument(exclude=("request_started", "request_finished"))
    middleware = SignalMiddleware(hello)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    with connected_to(ok, request_started), connected_to(ok, request_finished):
        await middleware(scope, receive, send)
    assert telemetry.spans() == []


def blocking(sender: Any, **kwargs: Any) -> str:
    return "from a thread"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["send", "gather_robust"])
async def test_receiver_spans_of_thread_and_timeout_receivers(
    telemetry: Telemetry, mode: str
) -> None:
    telemetry.instrument(receiver_spans=True)
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(blocking, to_thread=True)
    order_paid.connect(ok_async, timeout=5)
    responses = await send_in(mode, order_paid)
    assert responses == [(blocking, "from a thread"), (ok_async, "ok async")]
    send = telemetry.only(f"{mode} order_paid")
    received = telemetry.named("receive order_paid")
    assert sorted(attrs(span)["code.function.name"] for span in received) == [
        f"{__name__}.blocking",
        f"{__name__}.ok_async",
    ]
    assert all(span.parent and span.parent.span_id == send.context.span_id for span in received)


@pytest.mark.anyio
async def test_a_robust_send_with_receiver_spans_logs_the_receivers_own_name(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry.instrument(receiver_spans=True)
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(fails)
    ((receiver, response),) = await order_paid.send_robust("shop")
    assert receiver is fails
    assert isinstance(response, OrderFailed)
    assert f"Receiver {__name__}.fails of signal 'order_paid' raised OrderFailed" in caplog.text
    assert order_paid.statistics().failures == 1
    (received,) = telemetry.named("receive order_paid")
    assert received.status.status_code is StatusCode.ERROR
