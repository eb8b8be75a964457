"""GraphQL over HTTP (the GraphQL-over-HTTP spec, audited by graphql-http in the tests):
POST JSON, GET for queries only; ``application/graphql-response+json`` for clients that
accept it, ``application/json`` otherwise, whose request errors (parse, validation,
variable coercion) answer 200 as the spec's legacy rule asks; errors coded and unexpected
ones masked. An operation may name its document by hash (``persisted_queries.py``); a GET
answer without errors can be revalidated by ``ETag`` (decisions 0022, 0023).

No credentials and bad credentials answer alike: 401, ``UNAUTHENTICATED``,
``WWW-Authenticate: Bearer``, when the operation produced nothing for want of them.

A POST body may also be a JSON array of operations (a batch, at most
``max_batch_operations``): they run one after the other and the answer is the array of
their results. Every request counts against its caller's rate limit (one per operation)
before anything is parsed; a refused request is a 429 with ``Retry-After``, and every
answer carries the ``RateLimit-*`` headers of its bucket.

PostgreSQL or Redis stopping, starting or gone: the failed fields (or the whole
operation) get ``UNAVAILABLE`` errors with ``retryAfter``. An operation that produced no
data (``data`` null, or every root field null) answers 503 with ``Retry-After``; one with
partial data answers 200 (what it has, and the errors of what it has not). A batch
answers 503 only when none of its operations produced data: a 503 tells a client to send
the same request again, which must not repeat the operations that did run."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from crm_graphql import ratelimit
from crm_graphql.db.replica import database_failure
from crm_graphql.explorer import explorer_response, wants_explorer
from crm_graphql.limits import COST_HEADER, QueryLimits, cost_asked, cost_report, with_extensions
from crm_graphql.masking import UNAVAILABLE_RETRY_AFTER, format_error, unavailable_error
from crm_graphql.observability import metrics, tracing
from crm_graphql.observability.requests import current_request_id, request_id_for
from crm_graphql.persisted_queries import PersistedQueryError
from crm_graphql.resolvers.context import AppState, Context, reads_on_replica
from crm_graphql.resolvers.credentials import MalformedCredentials, actor_for_credentials
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError

log = logging.getLogger("crm_graphql.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"


class RequestError(Exception):
    """The HTTP request itself is unusable (not a GraphQL error inside a valid request)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}
        self.extensions = extensions or {}


def _media_type(request: Request) -> str:
    """The answer's media type: ``application/graphql-response+json`` when the client
    lists it (at a quality no lower than ``application/json``'s), else
    ``application/json``, which is also what no ``Accept``, ``*/*`` and anything else get
    (GraphQL over HTTP: a legacy client must keep working)."""
    best = _accepted(request)
    preferred = best.get(GRAPHQL_RESPONSE, 0.0)
    return GRAPHQL_RESPONSE if preferred > 0 and preferred >= best.get(JSON, 0.0) else JSON


def event_stream_wanted(request: Request) -> bool:
    """Whether the client asks for an event stream (GraphQL over SSE,
    crm_graphql/realtime/sse.py): its ``Accept`` lists ``text/event-stream``."""
    return _accepted(request).get(EVENT_STREAM, 0.0) > 0


def _accepted(request: Request) -> dict[str, float]:
    """The media types ``Accept`` lists by name (not ``*/*``), with their quality."""
    best: dict[str, float] = {}
    for item in request.headers.get("accept", "").split(","):
        media, _, parameters = item.partition(";")
        media = media.strip().lower()
        if not media or "*" in media:
            continue
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        best[media] = max(best.get(media, 0.0), quality)
    return best


def _respond(
    body: dict[str, Any] | list[Any] | bytes, status: int, media_type: str, headers: dict[str, str]
) -> Response:
    """``body`` encoded, or sent as it is when it already is JSON bytes (compiled reads)."""
    return Response(
        body if isinstance(body, bytes) else orjson.dumps(body),
        status_code=status,
        media_type=f"{media_type}; charset=utf-8",
        # JSON only: never sniffed into something a browser would run or render.
        headers={**headers, "X-Content-Type-Options": "nosniff"},
    )


# orjson's message for a document nested deeper than it parses (the tests of deep input in
# tests/api/test_hostile_input.py fail if the wording changes).
_DEPTH_LIMIT = "depth limit exceeded"


async def _params(
    request: Request, max_bytes: int, max_upload_bytes: int = 0
) -> dict[str, Any] | list[Any]:
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
    if content_type == MULTIPART and max_upload_bytes:
        return await _multipart_params(request, max_upload_bytes)
    if content_type not in (JSON, GRAPHQL_RESPONSE, "application/graphql+json"):
        # Form and text bodies are what a cross-site form can send without a CORS
        # preflight: never accept them (no CSRF through simple requests).
        raise RequestError(
            415, "POST a JSON body with `Content-Type: application/json`", "UNSUPPORTED_MEDIA_TYPE"
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise RequestError(
            413, f"Request body is larger than {max_bytes} bytes", "PAYLOAD_TOO_LARGE"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(
                413, f"Request body is larger than {max_bytes} bytes", "PAYLOAD_TOO_LARGE"
            )
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if _DEPTH_LIMIT in str(exc):  # orjson's own nesting limit (1024): too deep anyway
            raise RequestError(400, "The body is nested too deeply", "INPUT_TOO_DEEP") from exc
        raise RequestError(400, "The body is not valid JSON", "BAD_REQUEST") from exc
    if not isinstance(params, dict | list):
        raise RequestError(
            400, "The body must be a JSON object (or an array of them)", "BAD_REQUEST"
        )
    return params


MULTIPART = "multipart/form-data"
# A header no cross-site form can send without a CORS preflight: multipart requests must
# carry one, so an upload is never a simple (CSRF-able) request. Credentials count.
PREFLIGHT_HEADERS = ("authorization", "graphql-preflight", "apollo-require-preflight")


async def _multipart_params(request: Request, max_bytes: int) -> dict[str, Any]:
    """A GraphQL multipart request (github.com/jaydenseric/graphql-multipart-request-spec):
    the ``operations`` JSON, the ``map`` of file fields to variable paths, and the files,
    which become the variables' values (Starlette ``UploadFile``s, spooled to disk past
    1 MB; ``Upload`` arguments receive them)."""
    if not any(request.headers.get(h) for h in PREFLIGHT_HEADERS):
        raise RequestError(
            400,
            "A multipart request needs `Authorization` (or `GraphQL-Preflight: 1`): "
            "uploads are never simple cross-site requests",
            "PREFLIGHT_REQUIRED",
        )
    length = request.headers.get("content-length")
    if not (length and length.isdigit()):
        raise RequestError(411, "A multipart request needs a Content-Length", "LENGTH_REQUIRED")
    if int(length) > max_bytes:
        raise RequestError(
            413, f"Request body is larger than {max_bytes} bytes", "PAYLOAD_TOO_LARGE"
        )
    try:
        form = await request.form(max_files=10, max_fields=20, max_part_size=max_bytes)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        raise RequestError(400, f"Not a valid multipart body: {exc}", "BAD_REQUEST") from exc
    try:
        operations = orjson.loads(str(form.get("operations") or ""))
        mapping = orjson.loads(str(form.get("map") or "{}"))
    except orjson.JSONDecodeError as exc:
        raise RequestError(
            400, "`operations` and `map` must be JSON (the multipart request spec)", "BAD_REQUEST"
        ) from exc
    if not isinstance(operations, dict) or not isinstance(mapping, dict):
        raise RequestError(
            400, "`operations` must be one operation and `map` an object", "BAD_REQUEST"
        )
    for key, paths in mapping.items():
        upload = form.get(key)
        if upload is None or isinstance(upload, str) or not isinstance(paths, list):
            raise RequestError(400, f"`map` names a missing file {key!r}", "BAD_REQUEST")
        for path in paths:
            _put(operations, str(path), upload)
    return operations


def _put(operations: dict[str, Any], path: str, value: Any) -> None:
    """Set ``variables.input.file`` (a path of the spec) to ``value``."""
    *parents, last = path.split(".")
    target: Any = operations
    try:
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        elif isinstance(target, dict) and last in target:
            target[last] = value
        else:
            raise KeyError(last)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise RequestError(
            400, f"`map` path {path!r} is not a null variable of `operations`", "BAD_REQUEST"
        ) from exc


def _operations(params: dict[str, Any] | list[Any], max_batch: int) -> list[dict[str, Any]]:
    """The operations of a request: one, or the elements of a batch (checked)."""
    if isinstance(params, dict):
        _check_params(params)
        return [params]
    if not params:
        raise RequestError(400, "A batch must hold at least one operation", "BAD_REQUEST")
    if max_batch and len(params) > max_batch:
        raise RequestError(
            400,
            f"A batch may hold at most {max_batch} operations ({len(params)} sent)",
            "BATCH_TOO_LARGE",
        )
    for index, item in enumerate(params):
        if not isinstance(item, dict):
            raise RequestError(400, f"Batch item {index} is not a JSON object", "BAD_REQUEST")
        try:
            _check_params(item)
        except RequestError as error:
            raise RequestError(400, f"Batch item {index}: {error}", error.code) from error
    return params


def _check_params(params: dict[str, Any]) -> None:
    if params.get("extensions") is not None and not isinstance(params["extensions"], dict):
        raise RequestError(400, "`extensions` must be a JSON object", "BAD_REQUEST")
    query = params.get("query")
    if query is not None and not isinstance(query, str):
        raise RequestError(400, "`query` must be a non-empty string", "BAD_REQUEST")
    # A persisted query may name its document by hash alone (persisted_queries.py).
    persisted = "persistedQuery" in (params.get("extensions") or {})
    if not persisted and (not query or not query.strip()):
        raise RequestError(400, "`query` must be a non-empty string", "BAD_REQUEST")
    if params.get("variables") is not None and not isinstance(params["variables"], dict):
        raise RequestError(400, "`variables` must be a JSON object", "BAD_REQUEST")
    if params.get("operationName") is not None and not isinstance(params["operationName"], str):
        raise RequestError(400, "`operationName` must be a string", "BAD_REQUEST")


def _request_id(request: Request) -> str:
    """The request's id (``observability.requests``: the middleware made it)."""
    return current_request_id() or request_id_for(request.headers.get("x-request-id"))


def _error_body(
    message: str, code: str, extensions: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, **(extensions or {})}}]}


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _actor(app: AppState, request: Request, request_id: str) -> Actor | None:
    """The caller of an ``Authorization: Bearer`` header (access token or API key); a
    header that is given but does not hold is a 401, not an anonymous request."""
    with credentials_refused():
        return await actor_for_credentials(
            app,
            request.headers.get("authorization"),
            request_id=request_id,
            client_ip=_client_ip(request),
        )


@contextlib.contextmanager
def credentials_refused() -> Iterator[None]:
    """Credentials that were given but do not hold: a 401 ``RequestError``."""
    try:
        yield
    except MalformedCredentials as error:
        raise RequestError(
            401, error.message, error.code, {"WWW-Authenticate": 'Bearer error="invalid_request"'}
        ) from error
    except DomainError as error:
        raise RequestError(
            401, error.message, error.code, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from error


def _is_request_error(result: ExecutionResult) -> bool:
    """Parse and validation failures: nothing was executed."""
    return (
        result.data is None and bool(result.errors) and all(not e.path for e in result.errors or [])
    )


def _codes(body: dict[str, Any]) -> set[Any]:
    return {(e.get("extensions") or {}).get("code") for e in body.get("errors") or []}


def _no_data(body: dict[str, Any]) -> bool:
    """Nothing was produced: no ``data``, or every root field null."""
    data = body.get("data")
    return data is None or all(value is None for value in data.values())


def _retry_after(body: dict[str, Any]) -> int | None:
    hints = [(e.get("extensions") or {}).get("retryAfter") for e in body.get("errors") or []]
    return max((h for h in hints if isinstance(h, int)), default=None)


async def _rate_limit(
    app: AppState, actor: Actor | None, request: Request, operations: int
) -> dict[str, str]:
    """Count the request's operations against its bucket: the ``RateLimit-*`` headers,
    or ``RequestError(429)`` when the bucket refuses them."""
    decision = await _rate_decision(app, actor, request, operations)
    return {} if decision is None else decision.headers()


async def _rate_decision(
    app: AppState, actor: Actor | None, request: Request, operations: int
) -> ratelimit.Decision | None:
    """``_rate_limit``'s decision (None when rate limits are off)."""
    bucket = ratelimit.actor_bucket(actor, _client_ip(request), app.settings)
    if bucket is None:
        return None
    decision = await app.limiter.hit(bucket, operations)
    if not decision.allowed:
        raise RequestError(
            429,
            f"Rate limit of {bucket.limit} operations a minute exceeded; "
            f"retry in {decision.retry_after} s",
            "RATE_LIMITED",
            decision.headers(),
            {"retryAfter": decision.retry_after},
        )
    return decision


def cost_wanted(request: Request) -> bool:
    """Whether the client asks for ``extensions.cost`` in its answers (``X-CRM-Cost: 1``;
    README, "Query cost and budgets")."""
    return cost_asked(request.headers.get(COST_HEADER))


def _cost_report(
    request: Request,
    actor: Actor | None,
    query: str | None,
    variables: Any,
    throttle: ratelimit.Decision | None,
) -> dict[str, Any]:
    """``limits.cost_report`` of one operation of this request, with the caller's limits
    (``throttle``: the request's rate decision)."""
    limits = QueryLimits.from_settings(request.app.state.crm.settings).for_actor(actor)
    # graphql-core's schema: what the limits measure.
    return cost_report(request.app.state.schema._schema, limits, query, variables, throttle)


def _request_error_status(media_type: str) -> int:
    """The status of a GraphQL request error (parse, validation, variable coercion: nothing
    ran): 400 for ``application/graphql-response+json``; 200 for ``application/json``,
    whose clients may read no body of a 4xx (GraphQL over HTTP, legacy watershed)."""
    return 400 if media_type == GRAPHQL_RESPONSE else 200


async def _execute(
    request: Request, context: Context, params: dict[str, Any], media_type: str
) -> tuple[dict[str, Any], int]:
    """One operation: (response body, HTTP status)."""
    app = context.app
    allowed = {OperationType.QUERY}
    if request.method != "GET":
        allowed.add(OperationType.MUTATION)
    try:
        result = await request.app.state.schema.execute(
            params["query"],
            variable_values=params.get("variables"),
            context_value=context,
            operation_name=params.get("operationName"),
            allowed_operation_types=allowed,
        )
    except InvalidOperationTypeError as exc:
        if exc.operation_type == OperationType.SUBSCRIPTION:
            raise _subscription_elsewhere(request) from exc
        raise RequestError(
            405,
            "Only queries may be sent with GET; POST mutations",
            "METHOD_NOT_ALLOWED",
            {"Allow": "POST"},
        ) from exc
    except CannotGetOperationTypeError as exc:
        # An unknown `operationName`, or several operations and none named.
        return (
            _error_body(exc.as_http_error_reason(), "GRAPHQL_VALIDATION_FAILED"),
            _request_error_status(media_type),
        )
    finally:
        await context.close()
    production = app.settings.is_production
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [
            format_error(e, context.request_id, production=production) for e in result.errors
        ]
    if not _is_request_error(result):
        body["data"] = result.data
    if body.get("data") is None and _codes(body) == {"RATE_LIMITED"}:
        return body, 429
    if "UNAVAILABLE" in _codes(body) and _no_data(body):
        return body, 503
    if context.actor is None and _codes(body) == {"UNAUTHENTICATED"} and _no_data(body):
        # Anonymous and nothing produced for want of credentials: the same 401 as a bad
        # token gets (README, "HTTP"), so a client has one rule for "log in again".
        return body, 401
    return body, 200 if "data" in body else _request_error_status(media_type)


def _subscription_elsewhere(request: Request) -> RequestError:
    """A subscription asked for as one JSON answer: 406, saying where streams are served
    (a WebSocket, or an event stream here: crm_graphql/realtime/sse.py)."""
    url = request.url.replace(query="", fragment="")
    websocket = url.replace(scheme="wss" if url.scheme == "https" else "ws")
    return RequestError(
        406,
        f"A subscription is a stream, not one JSON answer: subscribe over a WebSocket at "
        f"{websocket} (graphql-transport-ws or graphql-ws), or POST it to {url} with "
        "`Accept: text/event-stream` (GraphQL over Server-Sent Events)",
        "SUBSCRIPTION_NEEDS_STREAM",
    )


async def _executed(
    request: Request,
    app: AppState,
    actor: Actor | None,
    request_id: str,
    params: dict[str, Any],
    media_type: str,
) -> tuple[dict[str, Any] | bytes, int]:
    """The operation executed by Strawberry; a query whose read on the replica failed in
    the database (the replica stopped, or cancelled a statement: a recovery conflict) runs
    again on the primary (docs/decisions/0024): queries change nothing."""
    context = Context(
        app=app,
        actor=actor,
        request_id=request_id,
        client_ip=_client_ip(request),
        base_url=str(request.base_url),
    )
    try:
        body, status = await _execute(request, context, params, media_type)
    except Exception as exc:
        if not reads_on_replica(context) or not database_failure(exc):
            raise
        failure: BaseException = exc
    else:
        if context.replica_failure is None:
            return body, status
        failure = context.replica_failure
    assert app.replica is not None
    app.replica.failed(failure)
    context = Context(
        app=app,
        actor=actor,
        request_id=request_id,
        client_ip=_client_ip(request),
        base_url=str(request.base_url),
        sessions=app.sessionmaker,
    )
    return await _execute(request, context, params, media_type)


async def _operation(
    request: Request,
    app: AppState,
    actor: Actor | None,
    request_id: str,
    params: dict[str, Any],
    media_type: str,
    *,
    report_cost: bool = False,
    throttle: ratelimit.Decision | None = None,
) -> tuple[dict[str, Any] | bytes, int]:
    """One operation, counted and timed (``/metrics``) and traced; with its
    ``extensions.cost`` when ``report_cost`` (``throttle``: the request's rate
    decision)."""
    observed = metrics.ObservedOperation(params.get("operationName"))
    with tracing.span("graphql.operation") as span:
        body, status = await _answer(request, app, actor, request_id, params, media_type, observed)
        if report_cost:
            report = _cost_report(request, actor, observed.query, params.get("variables"), throttle)
            body = with_extensions(body, {"cost": report})
        name, kind = observed.answered(app.settings, body, status)
        if span is not None:
            span.set_attributes(
                {
                    "graphql.operation.name": name,
                    "graphql.operation.type": kind,
                    "crm.read_path": "compiled" if isinstance(body, bytes) else "executed",
                    "http.response.status_code": status,
                }
            )
    return body, status


async def _answer(
    request: Request,
    app: AppState,
    actor: Actor | None,
    request_id: str,
    params: dict[str, Any],
    media_type: str,
    observed: metrics.ObservedOperation,
) -> tuple[dict[str, Any] | bytes, int]:
    """One operation of the request, by the compiled read path when it can answer it,
    else executed: (body, HTTP status). Its document may be named by hash (persisted
    queries); one sent with its hash is kept once it ran without a request error."""
    try:
        resolved = await app.persisted.resolve(params)
    except PersistedQueryError as refused:
        return _error_body(str(refused), refused.code), refused.status
    query = observed.query = resolved.query
    try:
        # The compiled read path (docs/decisions/0006): the response as bytes, or None.
        compiled = app.compiled and await app.compiled.execute(
            actor, query, params.get("variables"), params.get("operationName")
        )
        if compiled:
            outcome: tuple[dict[str, Any] | bytes, int] = (compiled, 200)
        else:
            outcome = await _executed(
                request, app, actor, request_id, {**params, "query": query}, media_type
            )
    except Exception as exc:
        # Failed outside of GraphQL execution (a pool, a session's close): the same
        # answer as a failure inside it.
        error = unavailable_error(exc, request_id)
        if error is None:
            raise
        return {"errors": [error], "data": None}, 503
    body = outcome[0]
    if resolved.register and (isinstance(body, bytes) or "data" in body):
        await app.persisted.register(resolved.register, query)
    return outcome


async def graphql_endpoint(request: Request) -> Response:
    app: AppState = request.app.state.crm
    if request.method == "GET" and wants_explorer(request):
        return explorer_response(request)
    if event_stream_wanted(request):
        # GraphQL over Server-Sent Events; that module builds on this one.
        from crm_graphql.realtime.sse import event_stream

        return await event_stream(request)
    media_type = _media_type(request)
    request_id = _request_id(request)
    headers = {"X-Request-Id": request_id}
    try:
        params = await _params(
            request, app.settings.max_request_bytes, app.settings.max_upload_bytes
        )
        operations = _operations(params, app.settings.max_batch_operations)
        try:
            actor = await _actor(app, request, request_id)
        except RequestError:
            # Bad credentials count against the address, like anonymous requests: guessing
            # tokens or keys is slowed too (429 once the address is out of budget).
            await _rate_limit(app, None, request, 1)
            raise
        decision = await _rate_decision(app, actor, request, len(operations))
        if decision is not None:
            headers.update(decision.headers())
        results = [
            await _operation(
                request,
                app,
                actor,
                request_id,
                operation,
                media_type,
                report_cost=cost_wanted(request),
                throttle=decision,
            )
            for operation in operations
        ]
    except Exception as exc:
        # Before any operation ran (an API key looked up while PostgreSQL is down).
        return failed_before(exc, request_id, media_type, headers)
    if isinstance(params, list):
        # A batch answers 200 with one result per operation, each with its own errors;
        # 503 when none of them produced anything (module docstring).
        unavailable = all(status == 503 for _, status in results)
        bodies = [orjson.Fragment(b) if isinstance(b, bytes) else b for b, _ in results]
        if unavailable:
            hints = [_retry_after(b) for b, _ in results if isinstance(b, dict)]
            headers["Retry-After"] = str(max(h for h in hints if h is not None))
        return _respond(bodies, 503 if unavailable else 200, media_type, headers)
    body, status = results[0]
    if isinstance(body, bytes):
        if not app.settings.is_production:
            headers["X-Crm-Read-Path"] = "compiled"
    else:
        retry_after = _retry_after(body)
        if retry_after is not None and status in (429, 503):
            headers["Retry-After"] = str(retry_after)
        if status == 401:
            # No credentials were sent (RFC 6750: no error code then).
            headers["WWW-Authenticate"] = "Bearer"
    if request.method == "GET":
        return _get_response(request, body, status, media_type, headers, actor is not None)
    return _respond(body, status, media_type, headers)


def failed_before(
    exc: Exception, request_id: str, media_type: str, headers: dict[str, str]
) -> Response:
    """The answer to a request that failed before any operation ran: its
    ``RequestError``, or 503 with ``Retry-After`` when PostgreSQL or Redis is unavailable.
    Anything else is raised again (call it while handling ``exc``)."""
    if isinstance(exc, RequestError):
        metrics.refused_request(exc.code)
        return _respond(
            _error_body(str(exc), exc.code, exc.extensions),
            exc.status,
            media_type,
            {**headers, **exc.headers},
        )
    error = unavailable_error(exc, request_id)
    if error is None:
        raise exc
    headers = {**headers, "Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
    return _respond({"errors": [error]}, 503, media_type, headers)


def _get_response(
    request: Request,
    body: dict[str, Any] | bytes,
    status: int,
    media_type: str,
    headers: dict[str, str],
    private: bool,
) -> Response:
    """A GET's answer (a query, by text or by hash): a complete success carries an
    ``ETag`` and may be kept by the browser (``private``, with credentials) or any cache
    (``public``), to be revalidated each time (``no-cache``: the data changes with every
    write); ``If-None-Match`` with that ETag gets a 304 without the body. Anything else
    is ``no-store``."""
    encoded = body if isinstance(body, bytes) else orjson.dumps(body)
    # Compiled answers are bytes: any "errors" key in them (or a value that merely looks
    # like one) makes the answer uncacheable, which errs on the safe side.
    failed = b'"errors":' in encoded if isinstance(body, bytes) else bool(body.get("errors"))
    if status != 200 or failed:
        return _respond(encoded, status, media_type, {**headers, "Cache-Control": "no-store"})
    etag = f'W/"{hashlib.blake2b(encoded, digest_size=16).hexdigest()}"'
    headers = {
        **headers,
        "ETag": etag,
        "Cache-Control": f"{'private' if private else 'public'}, no-cache",
        # The answer depends on who asks, on the media type asked for, and on whether the
        # cost figures were (``extensions.cost``).
        "Vary": f"Accept, Authorization, {COST_HEADER}",
    }
    given = request.headers.get("if-none-match", "")
    if any(tag.strip() in (etag, etag[2:], "*") for tag in given.split(",")):
        return Response(status_code=304, headers=headers)
    return _respond(encoded, status, media_type, headers)
