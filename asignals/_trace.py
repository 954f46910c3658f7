"""Tracing: the seam `asignals.opentelemetry` plugs into, and the one place the core asks
whether sends are traced.

While nothing is instrumented, `tracer` is ``None`` and this module costs the hot paths
nothing: a signal's reused prepared send and the middleware's `Watch` plans never look
here. Installing a tracer (`install`) makes every signal forget its prepared send and keep
none while traced, so every send, of signals created before or after, takes its prepared
path (`asignals._dispatch.prepare`); that path asks `tracer` once and, while one is
installed, runs the send inside a `SendTrace` named after its mode.

Carrying a trace through storage or a queue: `capture()` returns the current trace
context as a small ``dict[str, str]`` (the W3C ``traceparent`` and ``tracestate``) or
``None`` when not traced, doing no work then; ``with continued(carrier):`` makes a carried
context current again (nothing when off or when *carrier* is ``None``). The model signals
keep the context of each flush for their delivery after the commit, the Redis bridge puts
it in its envelope, and the outbox in its row.

Messaging spans for a bridge: `producing` (a PRODUCER span around handing a message over,
yielding the carrier to send with it), `processing` (a CONSUMER span around running a
message, parented to the carried context) and `event` (an event on the current span).

Gauges: an integration registers a function that reads its current values (`gauge`;
the outbox's pending rows and lag), which the metrics read when they are collected
(`readings`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from ._plans import Plan, Responses

if TYPE_CHECKING:
    from ._loops import Loop
    from ._signal import AsyncSignal

Carrier = dict[str, str]
"""A trace context as text: ``{"traceparent": ..., "tracestate": ...}`` (W3C)."""


class SendTrace(Protocol):
    """One traced send: entered around running *plan*, told what it returned."""

    plan: Plan
    """The plan to run in its place (the same receivers, counted as they are called)."""

    def __enter__(self) -> object: ...

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None: ...

    def returned(self, responses: Responses) -> None:
        """The send returned *responses* (robust modes: failures among them)."""
        ...


class Tracer(Protocol):
    """What an installed tracer (`asignals.opentelemetry`) provides."""

    def send(self, signal: AsyncSignal[...], mode: str, plan: Plan) -> SendTrace | None:
        """The trace of one send of *signal* in *mode* over *plan*; ``None``: untraced."""
        ...

    def capture(self) -> Carrier | None: ...

    def continued(self, carrier: Mapping[str, str]) -> AbstractContextManager[object]: ...

    def producing(
        self, system: str, destination: str, message_id: str
    ) -> AbstractContextManager[Carrier | None]: ...

    def processing(
        self,
        system: str,
        destination: str,
        message_id: str,
        carrier: Mapping[str, str] | None,
        group: str | None,
    ) -> AbstractContextManager[object]: ...

    def event(self, name: str, attributes: Mapping[str, str | int]) -> None: ...


class Forwarding:
    """Base class of a plan entry's receiver that carries the send elsewhere (the Redis
    bridge's publish): a tracer does not count it as a receiver (its own PRODUCER span
    tells what it did), and a send with only such entries has no span of its own."""

    __slots__ = ()


tracer: Tracer | None = None
"""The installed tracer, or ``None`` (never instrumented, or uninstrumented)."""

_signals: weakref.WeakSet[AsyncSignal[...]] = weakref.WeakSet()
_lock = threading.Lock()
_NOTHING: AbstractContextManager[Any] = contextlib.nullcontext()


def created(signal: AsyncSignal[...]) -> None:
    """*signal* was created: known, so that installing a tracer reaches it."""
    with _lock:
        _signals.add(signal)


def install(new: Tracer | None) -> None:
    """Install *new* (``None``: uninstall); every signal prepares its next send again."""
    global tracer
    with _lock:
        tracer = new
        signals = list(_signals)
    for signal in signals:
        with signal._lock:  # as every change of a signal: a new version
            signal._changed()


def capture() -> Carrier | None:
    """The current trace context, to store or send with a message; ``None`` (and no work)
    when nothing is traced."""
    current = tracer
    return None if current is None else current.capture()


def continued(carrier: Mapping[str, str] | None) -> AbstractContextManager[object]:
    """Make the carried trace context current inside the ``with`` block (nothing when
    nothing is traced, or *carrier* is ``None``)."""
    current = tracer
    if current is None or carrier is None:
        return _NOTHING
    return current.continued(carrier)


def producing(
    system: str, destination: str, message_id: str
) -> AbstractContextManager[Carrier | None]:
    """A PRODUCER span around handing one message over; yields the carrier to put in the
    message (``None`` when nothing is traced)."""
    current = tracer
    if current is None:
        return _NOTHING
    return current.producing(system, destination, message_id)


def processing(
    system: str,
    destination: str,
    message_id: str,
    carrier: Mapping[str, str] | None,
    group: str | None = None,
) -> AbstractContextManager[object]:
    """A CONSUMER span around running one message, a child of the context it carried."""
    current = tracer
    if current is None:
        return _NOTHING
    return current.processing(system, destination, message_id, carrier, group)


def event(name: str, attributes: Mapping[str, str | int]) -> None:
    """Record an event on the current span (a dead letter on the CONSUMER span)."""
    current = tracer
    if current is not None:
        current.event(name, attributes)


# -- running a send traced ----------------------------------------------------------------


async def run(
    signal: AsyncSignal[...],
    mode: str,
    plan: Plan,
    start: Callable[[Plan], Awaitable[Responses]],
) -> Responses:
    """``await start(plan)`` inside the trace of a *mode* send (when traced)."""
    current = tracer
    trace = None if current is None else current.send(signal, mode, plan)
    if trace is None:
        return await start(plan)
    with trace:
        responses = await start(trace.plan)
        trace.returned(responses)
    return responses


def run_sync(
    signal: AsyncSignal[...], mode: str, plan: Plan, start: Callable[[Plan], Responses]
) -> Responses:
    """``start(plan)`` inside the trace of a *mode* send (when traced), from sync code."""
    current = tracer
    trace = None if current is None else current.send(signal, mode, plan)
    if trace is None:
        return start(plan)
    with trace:
        responses = start(trace.plan)
        trace.returned(responses)
    return responses


def traced_loop(loop: Loop, mode: str) -> Loop:
    """*loop* (a send's or a send_robust's), run inside the trace of a *mode* send."""

    def send(signal: Any, plan: Any, sender: Any, payload: dict[str, Any]) -> Any:
        def start(plan: Plan) -> Awaitable[Responses]:
            return loop(signal, plan, sender, payload)

        coroutine = run(signal, mode, plan, start)
        names = signal._coroutine_names or signal._name_sends()
        coroutine.__qualname__ = names[_MODES.index(mode)]  # type: ignore[attr-defined]
        return coroutine

    return send


_MODES = ("send", "send_robust", "gather", "gather_robust")


Reading = tuple[str, float, Mapping[str, str]]
"""A gauge's current value: its name, the value, its attributes."""

_gauges: list[Callable[[], list[Reading]]] = []


def gauge(source: Callable[[], list[Reading]]) -> None:
    """Register *source*, which returns the current value of some gauges (cheap, no I/O:
    it reads what its integration last measured)."""
    if source not in _gauges:
        _gauges.append(source)


def readings(name: str) -> list[tuple[float, Mapping[str, str]]]:
    """The current values of the gauge *name*, from every source."""
    return [
        (value, attributes)
        for source in list(_gauges)
        for found, value, attributes in source()
        if found == name
    ]
