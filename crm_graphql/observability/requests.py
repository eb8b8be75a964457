"""The request id: taken from the caller's ``X-Request-Id`` when it is a short token, else
made here, once per HTTP request or WebSocket connection, by the outermost middleware. It
is sent back in ``X-Request-Id``, lands in the audit log, and every log line written while
the request runs carries it (``RequestIdFilter``), uvicorn's access line included: that
line is written when the answer starts, inside the request's own context."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("crm_request_id", default=None)

_GIVEN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_HEADER = b"x-request-id"


def request_id_for(given: str | None) -> str:
    """The caller's id when it is a short token (it lands in the audit log and the logs),
    else a new one."""
    return given if given and _GIVEN.match(given) else uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request this code runs for, if any."""
    return REQUEST_ID.get()


class RequestIds:
    """ASGI middleware: the request id of each HTTP request and WebSocket connection, set
    for everything that runs inside it and answered in ``X-Request-Id``."""

    # An ASGI 3 application, though ``__call__`` is no coroutine function (asgiref's
    # marker, for whatever wraps it).
    _asgi_single_callable = True

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "websocket":
            # Set for the rest of the connection's own task (uvicorn runs each connection
            # in a task of its own, which ends with it): no frame of this layer is kept
            # on the stack of a connection that may stay open for hours.
            REQUEST_ID.set(_given(scope))
            result: Awaitable[None] = self.app(scope, receive, send)
            return result
        if kind != "http":
            passed: Awaitable[None] = self.app(scope, receive, send)
            return passed
        return self._http(scope, receive, send)

    async def _http(self, scope: Any, receive: Any, send: Any) -> None:
        request_id = _given(scope)
        token = REQUEST_ID.set(request_id)
        try:

            async def send_with_id(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = message.setdefault("headers", [])
                    if not any(name.lower() == _HEADER for name, _ in headers):
                        message["headers"] = [*headers, (_HEADER, request_id.encode())]
                await send(message)

            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


def _given(scope: Any) -> str:
    """The request id of a request or connection: its ``X-Request-Id`` or a new one."""
    given = None
    for name, value in scope["headers"]:
        if name == _HEADER:
            given = value.decode("latin-1")
            break
    return request_id_for(given)


class RequestIdFilter(logging.Filter):
    """Gives a log record the current request id (``record.request_id``) unless it has
    one: the JSON formatter writes it as a field, ``WithRequestId`` appends it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class WithRequestId(logging.Formatter):
    """A text formatter's line with `` request_id=...`` appended when the record has one."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return line
        first, newline, rest = line.partition("\n")  # before a traceback, if any
        return f"{first} request_id={request_id}{newline}{rest}"
