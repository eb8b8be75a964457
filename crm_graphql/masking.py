"""Errors as clients see them, over HTTP and WebSocket alike: domain errors keep their
message and code, GraphQL errors get a code, and anything unexpected is logged with the
request id and masked (``INTERNAL`` + ``requestId``; the detail only outside production).

``FormatErrors`` applies ``format_error`` to every result Strawberry produces, so the
WebSocket transports (which send ``error.formatted`` as is) mask exactly like HTTP."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from asyncpg import exceptions as pg_errors
from graphql import GraphQLError
from graphql.error import GraphQLFormattedError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from strawberry.extensions import SchemaExtension

from crm_graphql.execution import response_order
from crm_graphql.logs import RepeatedWarning
from crm_graphql.ratelimit import RateLimited
from crm_graphql.services.errors import DomainError

if TYPE_CHECKING:
    from strawberry.types.execution import StreamExecutionResult

log = logging.getLogger("crm_graphql.errors")


def format_error(
    error: GraphQLError, request_id: str, *, production: bool
) -> GraphQLFormattedError:
    """Domain errors keep their message and code; GraphQL errors get a code; anything else
    is logged and masked with the request id."""
    formatted = error.formatted
    original = error.original_error
    extensions = dict(formatted.get("extensions") or {})
    if isinstance(original, DomainError):
        extensions["code"] = original.code
        if original.field:
            extensions["field"] = original.field
        if isinstance(original, RateLimited):
            extensions["retryAfter"] = original.retry_after
    elif (unavailable := unavailable_error(original, request_id)) is not None:
        formatted = {**formatted, "message": unavailable["message"]}
        extensions = dict(unavailable["extensions"] or {})
    elif original is not None and not isinstance(original, GraphQLError):
        log.error(
            "unexpected error (request %s) at %s",
            request_id,
            ".".join(str(p) for p in error.path or ()) or "-",
            exc_info=original,
            extra={"request_id": request_id, "path": error.path},
        )
        extensions = {"code": "INTERNAL", "requestId": request_id}
        formatted = {**formatted, "message": "Internal server error"}
        if not production:
            extensions["detail"] = f"{type(original).__name__}: {original}"
    elif "code" not in extensions:
        extensions["code"] = "GRAPHQL_VALIDATION_FAILED" if not error.path else "BAD_REQUEST"
    if extensions.get("code") == "UNAVAILABLE":
        extensions.setdefault("retryAfter", UNAVAILABLE_RETRY_AFTER)
    result: GraphQLFormattedError = {**formatted, "extensions": extensions}
    return result


# Seconds a client (or load balancer) waits before retrying a request that failed because
# PostgreSQL or Redis is stopping, starting or gone: `Retry-After` of the 503 and
# `extensions.retryAfter` of the error. A fast restart takes a few seconds.
UNAVAILABLE_RETRY_AFTER = 2
UNAVAILABLE_MESSAGES = {
    "PostgreSQL": "The database is unavailable",
    "Redis": "Redis is unavailable",
    "server": "A server the API depends on is unavailable",
}
# One line per interval with a count: an outage under load would log every request.
_unavailable_warning = RepeatedWarning(log, interval=10.0)


def unavailable_error(error: BaseException | None, request_id: str) -> GraphQLFormattedError | None:
    """The client's error for a failure caused by PostgreSQL or Redis being stopping,
    starting or gone (``UNAVAILABLE`` with ``retryAfter``), counted in the throttled
    warning; None for any other error."""
    service = unavailable_service(error)
    if service is None:
        return None
    _unavailable_warning(
        "%s unavailable (latest request %s: %s); failed requests: %d%s",
        service,
        request_id,
        error,
        extra={"request_id": request_id},
    )
    return {
        "message": f"{UNAVAILABLE_MESSAGES[service]}; retry shortly",
        "extensions": {
            "code": "UNAVAILABLE",
            "requestId": request_id,
            "retryAfter": UNAVAILABLE_RETRY_AFTER,
        },
    }


def unavailable_service(error: BaseException | None) -> str | None:
    """``"PostgreSQL"``, ``"Redis"`` (or ``"server"``: a socket error below either) when
    ``error``, or an error it was raised from or wraps, says that server is stopping,
    starting or gone; else None.

    The driver's error is rarely the one raised: SQLAlchemy wraps asyncpg's exception in
    an adapter exception (``DBAPIError.orig``) whose ``__cause__`` is asyncpg's; a
    connection lost at commit surfaces as ``__context__`` of another error. So the whole
    chain is walked (each error once)."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen or len(seen) > 20:
            continue
        seen.add(id(current))
        service = _service_of(current)
        if service is not None:
            return service
        pending.append(current.__context__)
        pending.append(current.__cause__)
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            pending.append(current.orig)
    return None


def _service_of(error: BaseException) -> str | None:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return "PostgreSQL"
    if isinstance(error, SQLAlchemyTimeoutError):  # no pooled connection came free in time
        return "PostgreSQL"
    if isinstance(error, _POSTGRES_GONE):
        return "PostgreSQL"
    if isinstance(error, pg_errors.InterfaceError) and "connection is closed" in str(error):
        return "PostgreSQL"
    if isinstance(error, RedisConnectionError | RedisTimeoutError):  # LOADING included
        return "Redis"
    if isinstance(error, ConnectionError | TimeoutError | socket.gaierror) or (
        isinstance(error, OSError) and error.errno in _UNREACHABLE
    ):  # refused, reset, timed out, unreachable: below either driver
        return "server"
    return None


# Socket errors without a subclass of their own (ECONNREFUSED is ConnectionRefusedError).
# Not any OSError: a missing file is a bug, not an outage.
_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})


# asyncpg's errors for a server that is gone or cannot take connections right now:
# SQLSTATE class 08 (connection exceptions), 57P01 admin shutdown (`pg_ctl stop -m
# fast`), 57P02 crash shutdown, 57P03 cannot connect now ("the database system is
# starting up / shutting down"), 53300 too many connections. Not 57014 (a statement
# cancelled or timed out: the server is fine).
_POSTGRES_GONE = (
    pg_errors.PostgresConnectionError,
    pg_errors.AdminShutdownError,
    pg_errors.CrashShutdownError,
    pg_errors.CannotConnectNowError,
    pg_errors.TooManyConnectionsError,
)


class _Formatted(GraphQLError):
    """An error already formatted for the client: ``formatted`` returns it unchanged."""

    def __init__(self, formatted: GraphQLFormattedError, source: GraphQLError) -> None:
        super().__init__(
            formatted["message"],
            nodes=source.nodes,
            source=source.source,
            positions=source.positions,
            path=source.path,
            extensions=dict(formatted.get("extensions") or {}),
        )
        self._formatted = formatted

    @property
    def formatted(self) -> GraphQLFormattedError:
        return self._formatted


class FormatErrors(SchemaExtension):
    """Replace every error of a result (and of each streamed subscription event) by its
    client form (``format_error``), in response order (``execution.response_order``)."""

    _streamed = False

    def _format(self, result: Any) -> None:
        errors = getattr(result, "errors", None)
        if not errors:
            return
        context = self.execution_context.context
        request_id = getattr(context, "request_id", "-")
        app = getattr(context, "app", None)
        production = bool(app is not None and app.settings.is_production)
        result.errors = [
            e
            if isinstance(e, _Formatted)
            else _Formatted(format_error(e, request_id, production=production), e)
            for e in response_order(errors, getattr(result, "data", None))
        ]

    def on_operation(self) -> Iterator[None]:
        self._streamed = False
        yield
        if not self._streamed:
            self._format(self.execution_context.result)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self._streamed = True
        self._format(result)
        yield None
