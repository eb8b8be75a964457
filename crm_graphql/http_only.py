"""Middleware that only HTTP requests go through.

A middleware that passes a WebSocket on (``await self.app(...)``) stays on the
connection's stack for as long as the connection lives: its coroutine and frame per
socket. ``HttpOnly`` hands a WebSocket (and the lifespan) straight to the next
application without a frame of its own (``__call__`` returns the next application's
awaitable rather than awaiting it), and HTTP requests to the middleware it wraps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send


class HttpOnly:
    __slots__ = ("app", "http")
    # An ASGI 3 application, though ``__call__`` is no coroutine function (asgiref's
    # marker, which the OpenTelemetry middleware in front of it reads).
    _asgi_single_callable = True

    def __init__(self, app: ASGIApp, /, middleware: Callable[..., Any], **options: Any) -> None:
        self.app = app
        self.http = middleware(app, **options)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not ``async``: the awaitable returned is awaited by the caller, so a WebSocket
        # connection's stack holds no frame of this layer.
        target = self.http if scope["type"] == "http" else self.app
        result: Awaitable[None] = target(scope, receive, send)
        return result


def http_only(middleware: Middleware) -> Middleware:
    """``middleware`` (a Starlette ``Middleware`` configured by keywords) for HTTP
    requests only."""
    if middleware.args:
        raise TypeError("http_only takes a middleware configured by keywords only")
    return Middleware(HttpOnly, middleware=middleware.cls, **middleware.kwargs)
