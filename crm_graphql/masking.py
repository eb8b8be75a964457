"""Errors as clients see them, over HTTP and WebSocket alike: domain errors keep their
message and code, GraphQL errors get a code, and anything unexpected is logged with the
request id and masked (``INTERNAL`` + ``requestId``; the detail only outside production).

``FormatErrors`` applies ``format_error`` to every result Strawberry produces, so the
WebSocket transports (which send ``error.formatted`` as is) mask exactly like HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from asyncpg.exceptions import PostgresConnectionError
from graphql import GraphQLError
from graphql.error import GraphQLFormattedError
from sqlalchemy.exc import DBAPIError
from strawberry.extensions import SchemaExtension

from crm_graphql.execution import response_order
from crm_graphql.services.errors import DomainError
from crm_graphql.services.ratelimit import RateLimited

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
    elif _database_unreachable(original):
        log.warning(
            "database unreachable (request %s): %s",
            request_id,
            original,
            extra={"request_id": request_id},
        )
        extensions = {"code": "UNAVAILABLE", "requestId": request_id}
        formatted = {**formatted, "message": "The database is unavailable; retry shortly"}
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
    result: dict[str, Any] = {**formatted, "extensions": extensions}
    return result  # type: ignore[return-value]


def _database_unreachable(error: BaseException | None) -> bool:
    """Connection-level failures (server down, restarting, network cut): retryable."""
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig if isinstance(error.orig, BaseException) else error.__cause__
    return isinstance(error, OSError | PostgresConnectionError) or (
        type(error).__name__ in _CONNECTION_ERRORS
    )


# asyncpg's errors for a connection that is gone or cannot be made right now.
_CONNECTION_ERRORS = frozenset(
    {"ConnectionDoesNotExistError", "CannotConnectNowError", "TooManyConnectionsError"}
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
