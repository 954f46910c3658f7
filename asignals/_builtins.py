"""Signals that asignals itself sends, from :mod:`asignals.asgi`."""

from __future__ import annotations

from ._signal import AsyncSignal

request_started = AsyncSignal(
    "request_started",
    doc="Sent before the application handles a request. Payload: scope.",
)
"""Sent before the application handles a request. Payload: `scope`."""

request_finished = AsyncSignal(
    "request_finished",
    doc=(
        "Sent once the application has returned for a request that got request_started. "
        "Payload: scope, status_code, response_complete, disconnected, exception, duration, "
        "close_code."
    ),
)
"""Sent once the application has returned, for every request that got `request_started`.

Payload: `scope`, `status_code`, `response_complete`, `disconnected`, `exception`,
`duration` (seconds) and `close_code` (websockets; `None` for HTTP).
"""

got_request_exception = AsyncSignal(
    "got_request_exception",
    doc="Sent when an exception escapes the application. Payload: scope, exception.",
)
"""Sent when an `Exception` escapes the application. Payload: `scope`, `exception`."""

app_started = AsyncSignal(
    "app_started",
    doc=(
        "Sent when the application reports lifespan startup complete, before the server "
        "starts serving. Payload: scope (the lifespan scope, with its 'state')."
    ),
)
"""Sent when the application reports startup complete, before the server serves.

Payload: `scope` (the lifespan scope, with its `state`). A receiver that raises fails the
startup.
"""

app_stopping = AsyncSignal(
    "app_stopping",
    doc="Sent when the server begins the lifespan shutdown. Payload: scope.",
)
"""Sent (robustly) when the server begins the lifespan shutdown. Payload: `scope`."""
