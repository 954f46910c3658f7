"""app.add_middleware(SignalMiddleware): inside Starlette's ServerErrorMiddleware.

What most FastAPI users write. An error then escapes the middleware before any response
started, and the 500 is sent further out: request_finished reports that 500.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgi_apps import recording, serving, silenced
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asignals import got_request_exception, request_finished, request_started
from asignals.asgi import SignalMiddleware


class Broken(Exception):
    pass


def starlette_app() -> Starlette:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def error(request: Request) -> PlainTextResponse:
        raise Broken("route failed")

    app = Starlette(routes=[Route("/ok", ok), Route("/error", error)])
    app.add_middleware(SignalMiddleware)
    return app


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> str:
        return "ok"

    @app.get("/error")
    def error() -> str:  # a def endpoint: run in a worker thread
        raise Broken("route failed")

    app.add_middleware(SignalMiddleware)
    return app


@pytest.mark.parametrize("make", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])
def test_an_error_under_add_middleware_reports_500(make: Any) -> None:
    signals = (request_started, request_finished, got_request_exception)
    with serving(make()) as server, silenced("uvicorn.error"), recording(*signals) as recorder:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/ok").status_code == 200
            assert client.get("/error").status_code == 500
        first, second = recorder.wait_for(request_finished, count=2)
    assert first.payload["status_code"] == 200
    assert second.payload["status_code"] == 500
    assert isinstance(second.payload["exception"], Broken)
    assert second.payload["response_complete"] is False
    assert len(recorder.of(got_request_exception)) == 1
