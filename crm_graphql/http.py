"""GraphQL over HTTP (the GraphQL-over-HTTP spec): POST JSON, GET for queries only,
``application/graphql-response+json``; errors coded and unexpected ones masked."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import orjson
from asyncpg.exceptions import PostgresConnectionError
from graphql import GraphQLError
from graphql.error import GraphQLFormattedError
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from crm_graphql.explorer import explorer_response, wants_explorer
from crm_graphql.resolvers.context import AppState, Context
from crm_graphql.resolvers.credentials import MalformedCredentials, actor_for_credentials
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError

log = logging.getLogger("crm_graphql.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


class RequestError(Exception):
    """The HTTP request itself is unusable (not a GraphQL error inside a valid request)."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


def _media_type(request: Request) -> str:
    accept = request.headers.get("accept", "")
    if GRAPHQL_RESPONSE in accept or not accept or ("*/*" in accept and JSON not in accept):
        return GRAPHQL_RESPONSE
    return JSON


def _respond(
    body: dict[str, Any], status: int, media_type: str, headers: dict[str, str]
) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=f"{media_type}; charset=utf-8",
        headers=headers,
    )


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
    elif _database_unreachable(original):
        log.warning("database unreachable (request %s): %s", request_id, original)
        extensions = {"code": "UNAVAILABLE", "requestId": request_id}
        formatted = {**formatted, "message": "The database is unavailable; retry shortly"}
    elif original is not None and not isinstance(original, GraphQLError):
        log.error("unexpected error (request %s)", request_id, exc_info=original)
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


async def _params(request: Request, max_bytes: int) -> dict[str, Any]:
    if request.method == "GET":
        q = request.query_params
        params: dict[str, Any] = {"query": q.get("query"), "operationName": q.get("operationName")}
        for key in ("variables", "extensions"):
            if q.get(key):
                try:
                    params[key] = orjson.loads(q[key])
                except orjson.JSONDecodeError as exc:
                    raise RequestError(400, f"`{key}` is not valid JSON", "BAD_REQUEST") from exc
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, GRAPHQL_RESPONSE, "application/graphql+json"):
        raise RequestError(
            415, "POST a JSON body with `Content-Type: application/json`", "UNSUPPORTED_MEDIA_TYPE"
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise RequestError(
            413, f"Request body is larger than {max_bytes} bytes", "PAYLOAD_TOO_LARGE"
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(
                413, f"Request body is larger than {max_bytes} bytes", "PAYLOAD_TOO_LARGE"
            )
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "The body is not valid JSON", "BAD_REQUEST") from exc
    if not isinstance(params, dict):
        raise RequestError(400, "The body must be a JSON object", "BAD_REQUEST")
    return params


def _check_params(params: dict[str, Any]) -> None:
    if not isinstance(params.get("query"), str) or not params["query"].strip():
        raise RequestError(400, "`query` must be a non-empty string", "BAD_REQUEST")
    if params.get("variables") is not None and not isinstance(params["variables"], dict):
        raise RequestError(400, "`variables` must be a JSON object", "BAD_REQUEST")
    if params.get("operationName") is not None and not isinstance(params["operationName"], str):
        raise RequestError(400, "`operationName` must be a string", "BAD_REQUEST")


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _request_id(request: Request) -> str:
    """The caller's ``X-Request-Id`` when it is a short token (it lands in the audit log and
    the logs), else a new one."""
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def _error_body(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _actor(app: AppState, request: Request, request_id: str) -> Actor | None:
    """The caller of an ``Authorization: Bearer`` header (access token or API key); a
    header that is given but does not hold is a 401, not an anonymous request."""
    try:
        return await actor_for_credentials(
            app,
            request.headers.get("authorization"),
            request_id=request_id,
            client_ip=_client_ip(request),
        )
    except MalformedCredentials as error:
        raise RequestError(401, error.message, error.code) from error
    except DomainError as error:
        raise RequestError(
            401, error.message, error.code, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from error


def _is_request_error(result: ExecutionResult) -> bool:
    """Parse and validation failures: nothing was executed."""
    return (
        result.data is None and bool(result.errors) and all(not e.path for e in result.errors or [])
    )


async def graphql_endpoint(request: Request) -> Response:
    app: AppState = request.app.state.crm
    if request.method == "GET" and wants_explorer(request):
        return explorer_response(request)
    media_type = _media_type(request)
    request_id = _request_id(request)
    headers = {"X-Request-Id": request_id}
    try:
        params = await _params(request, app.settings.max_request_bytes)
        _check_params(params)
        actor = await _actor(app, request, request_id)
    except RequestError as exc:
        return _respond(
            _error_body(str(exc), exc.code), exc.status, media_type, {**headers, **exc.headers}
        )
    if app.compiled is not None:
        compiled = await app.compiled.execute(
            actor, params["query"], params.get("variables"), params.get("operationName")
        )
        if compiled is not None:
            if not app.settings.is_production:
                headers["X-Crm-Read-Path"] = "compiled"
            media = f"{media_type}; charset=utf-8"
            return Response(compiled, 200, media_type=media, headers=headers)
    context = Context(app=app, actor=actor, request_id=request_id, client_ip=_client_ip(request))
    allowed = {OperationType.QUERY} if request.method == "GET" else None
    try:
        result = await request.app.state.schema.execute(
            params["query"],
            variable_values=params.get("variables"),
            context_value=context,
            operation_name=params.get("operationName"),
            allowed_operation_types=allowed,
        )
    except InvalidOperationTypeError:
        body = _error_body(
            "Only queries may be sent with GET; POST mutations", "METHOD_NOT_ALLOWED"
        )
        return _respond(body, 405, media_type, {**headers, "Allow": "POST"})
    finally:
        await context.close()
    production = app.settings.is_production
    body = {}
    if result.errors:
        body["errors"] = [format_error(e, request_id, production=production) for e in result.errors]
    if not _is_request_error(result):
        body["data"] = result.data
        status = 200
    else:
        status = 400
    return _respond(body, status, media_type, headers)
