"""`AsignalsInstrumentor`: turns tracing on (`instrument`) and off (`uninstrument`)."""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Collection, Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from .. import _trace
from .._extras import DISTRIBUTION
from ._messaging import Messaging
from ._metrics import Metrics
from ._sends import SendSpans

_SCOPE = "asignals"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"


class _Tracer(SendSpans, Messaging):
    """What `asignals._trace` calls while instrumented."""

    def __init__(
        self,
        tracer: trace.Tracer,
        meter: metrics.Meter,
        receiver_spans: bool,
        exclude: frozenset[str],
        min_duration: float,
    ) -> None:
        instruments = Metrics(meter)
        SendSpans.__init__(self, tracer, instruments, receiver_spans, exclude, min_duration)
        Messaging.__init__(self, tracer, instruments)


class AsignalsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OpenTelemetry tracing and metrics for every signal, the model signals' deliveries
    after commit and the Redis bridge.

    One instance per process (OpenTelemetry's instrumentors are singletons):
    ``AsignalsInstrumentor()`` always returns the same one. `instrument` and
    `uninstrument` are idempotent; uninstrumenting undoes exactly what instrumenting did,
    and from then on sends cost what they cost before.

    Example:
        ```python
        from asignals.opentelemetry import AsignalsInstrumentor

        AsignalsInstrumentor().instrument(
            tracer_provider=provider,
            meter_provider=meter_provider,
            exclude=("request_started", "request_finished"),
        )
        ...
        AsignalsInstrumentor().uninstrument()
        ```
    """

    _installed: _Tracer | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """Nothing beyond asignals itself, which carries this instrumentor: the loader of
        ``opentelemetry-instrument`` accepts it wherever asignals is installed."""
        return ()

    def instrument(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        receiver_spans: bool = False,
        exclude: Iterable[str] = (),
        min_duration: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """Trace every send of every signal, those created later included.

        Args:
            tracer_provider: Where spans go (default: the global tracer provider).
            meter_provider: Where metrics go (default: the global meter provider).
            receiver_spans: Also a child span per receiver called, ``"receive {signal}"``.
            exclude: Names of signals to leave untraced (``"request_started"``, ...).
            min_duration: Seconds: receiver spans shorter than this are dropped.

        Raises:
            TypeError: *exclude* is a string rather than a collection of names, or
                *min_duration* is not a number.
            ValueError: *min_duration* is negative or not finite.
        """
        if isinstance(exclude, str):
            raise TypeError(
                f"AsignalsInstrumentor().instrument(): exclude takes signal names, got the "
                f"string {exclude!r}; pass exclude=({exclude!r},)"
            )
        if isinstance(min_duration, bool) or not isinstance(min_duration, int | float):
            raise TypeError(
                f"AsignalsInstrumentor().instrument(): min_duration must be seconds (a "
                f"float), got {min_duration!r}"
            )
        if not math.isfinite(min_duration) or min_duration < 0:
            raise ValueError(
                f"AsignalsInstrumentor().instrument(): min_duration must be 0 or more "
                f"seconds, got {min_duration!r}"
            )
        super().instrument(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            receiver_spans=receiver_spans,
            exclude=frozenset(exclude),
            min_duration=float(min_duration),
            **kwargs,
        )

    def uninstrument(self, **kwargs: Any) -> None:
        """Stop tracing: no spans, no metrics, no context captured, from the next send."""
        super().uninstrument(**kwargs)

    def _instrument(self, **kwargs: Any) -> None:
        version = _version()
        tracer = trace.get_tracer(
            _SCOPE, version, kwargs.get("tracer_provider"), schema_url=_SCHEMA_URL
        )
        meter = metrics.get_meter(
            _SCOPE, version, kwargs.get("meter_provider"), schema_url=_SCHEMA_URL
        )
        installed = _Tracer(
            tracer,
            meter,
            bool(kwargs.get("receiver_spans", False)),
            kwargs.get("exclude", frozenset()),
            kwargs.get("min_duration", 0.0),
        )
        self._installed = installed
        _trace.install(installed)

    def _uninstrument(self, **kwargs: Any) -> None:
        installed, self._installed = self._installed, None
        if installed is not None and _trace.tracer is installed:
            _trace.install(None)


def _version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0"
