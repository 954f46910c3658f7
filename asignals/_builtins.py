"""Signals that asignals itself sends (see :mod:`asignals.asgi`)."""

from __future__ import annotations

from ._signal import AsyncSignal

request_started = AsyncSignal(
    "request_started",
    doc="Sent before the application handles a request. Payload: scope.",
)
request_finished = AsyncSignal(
    "request_finished",
    doc=(
        "Sent once the application has returned for a request that got request_started. "
        "Payload: scope, status_code, response_complete, disconnected, exception, duration."
    ),
)
got_request_exception = AsyncSignal(
    "got_request_exception",
    doc="Sent when an exception escapes the application. Payload: scope, exception.",
)
app_started = AsyncSignal(
    "app_started",
    doc=(
        "Sent when the application reports lifespan startup complete, before the server "
        "starts serving. Payload: scope (the lifespan scope, with its 'state')."
    ),
)
app_stopping = AsyncSignal(
    "app_stopping",
    doc="Sent when the server begins the lifespan shutdown. Payload: scope.",
)
