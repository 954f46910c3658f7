"""Tracing and metrics for asignals with OpenTelemetry: a span per send, the trace carried
across a commit and over Redis, and nothing at all while it is off.

```python
from asignals.opentelemetry import AsignalsInstrumentor

AsignalsInstrumentor().instrument(tracer_provider=provider, meter_provider=meter_provider)
```

`opentelemetry-instrument` turns it on with no code (the ``asignals`` entry point of the
``opentelemetry_instrumentor`` group). This package is the only part of asignals that
imports OpenTelemetry: the core knows a tracer only through ``asignals/_trace.py``, which
costs nothing while no tracer is installed. Needs the ``opentelemetry`` extra
(``pip install "asignals-dispatch[opentelemetry]"``).
"""

from .._extras import missing as _missing

try:
    import opentelemetry.instrumentation.instrumentor
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401
except ImportError as exc:
    raise _missing(
        "asignals.opentelemetry",
        "opentelemetry-api and opentelemetry-instrumentation",
        "opentelemetry",
        exc,
    ) from exc

from ._instrumentor import AsignalsInstrumentor as AsignalsInstrumentor

__all__ = ["AsignalsInstrumentor"]

AsignalsInstrumentor.__module__ = __name__
