"""Cross-origin requests from browser clients: an allowlist of origins (``CRM_CORS_ORIGINS``,
none by default), the request headers mainstream GraphQL clients send, and nothing
CORS-related for an origin that is not on the list.

Starlette's ``CORSMiddleware`` decides; two of its answers are adjusted: an allowed
preflight is ``204 No Content`` (nothing to read in it), and an origin off the list gets no
``Access-Control-*`` header at all, neither on a refused preflight (Starlette sends the
allowed methods and headers with its 400) nor on an ordinary answer (Starlette sends
``Access-Control-Expose-Headers`` to every origin)."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Message, Send

# What browser GraphQL clients send besides the CORS-safelisted headers: credentials and
# JSON bodies; Apollo Client's client awareness and CSRF-prevention headers; graphql-sse's
# reconnection; W3C trace context (OpenTelemetry's fetch instrumentation); our request id
# and our ask for the query's cost (``http.cost_wanted``).
CLIENT_HEADERS: tuple[str, ...] = (
    "Authorization",
    "Content-Type",
    "Accept",
    "X-Request-Id",
    "X-CRM-Cost",
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "graphql-client-name",
    "graphql-client-version",
    "Last-Event-ID",
    "traceparent",
    "tracestate",
    "baggage",
)

# Answer headers a cross-origin script may read (beyond the safelisted Cache-Control,
# Content-Type, Expires, Last-Modified ...).
EXPOSED_HEADERS: tuple[str, ...] = (
    "X-Request-Id",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "WWW-Authenticate",
    "ETag",
)

ALLOWED_METHODS: tuple[str, ...] = ("GET", "POST")

# Browsers cap a cached preflight at two hours (Chromium) or less; asking for more is moot.
PREFLIGHT_MAX_AGE_SECONDS = 7200


class AllowlistCORSMiddleware(CORSMiddleware):
    """``CORSMiddleware`` with 204 preflights and silence towards other origins."""

    def preflight_response(self, request_headers: Headers) -> Response:
        decided = super().preflight_response(request_headers)
        headers = {"Vary": decided.headers["vary"]}
        if decided.status_code != 200:
            # Refused: say why in the body, but grant nothing in the headers.
            return Response(decided.body, decided.status_code, headers, "text/plain")
        headers.update(
            (name, value)
            for name, value in decided.headers.items()
            if name.startswith("access-control-")
        )
        return Response(status_code=204, headers=headers)

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if (
            message["type"] != "http.response.start"
            or origin is None
            or self.is_allowed_origin(origin)
        ):
            await super().send(message, send, request_headers)
            return
        message.setdefault("headers", [])
        headers = MutableHeaders(scope=message)
        # The answer differs by origin: caches must not hand an allowed origin's to it.
        headers.add_vary_header("Origin")
        await send(message)


def cors_middleware(origins: list[str], extra_headers: list[str]) -> Middleware:
    """The CORS layer for ``origins`` (``*`` for any); with none, every cross-origin
    request is refused (a preflight gets a 400 without CORS headers rather than a 405)."""
    return Middleware(
        AllowlistCORSMiddleware,
        allow_origins=origins,
        allow_methods=ALLOWED_METHODS,
        allow_headers=[*CLIENT_HEADERS, *extra_headers],
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
    )
