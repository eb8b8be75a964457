"""GraphQL over Server-Sent Events on /graphql: the graphql-sse protocol's "distinct
connections" mode (one operation per response), for clients that cannot or will not open
a WebSocket (docs/decisions/0026-subscriptions-over-sse.md).

A POST (or a GET, for ``EventSource``) to /graphql whose ``Accept`` lists
``text/event-stream`` gets an event stream instead of a JSON answer:

- ``event: next`` with ``data: <ExecutionResult>`` for each result, and ``event: complete``
  once the operation ended (a query or mutation: after its one result). A subscription's
  event carries its cursor as the SSE ``id``, so a client resumes after it with the
  ``Last-Event-ID`` header (``EventSource`` sends it by itself): that cursor stands for the
  subscription's ``after`` argument. Errors before execution (parse, validation, limits, an
  unknown persisted query) are a ``next`` with the errors, then ``complete``, as the
  protocol asks (an ``EventSource`` reads no 4xx body);
- ``:`` comments keep the connection alive every ``KEEP_ALIVE_SECONDS``;
- the same authentication as a WebSocket (``Authorization: Bearer``, checked and followed
  as ``connection_init``'s credentials are): none or bad credentials are a 401 before any
  stream; credentials that end while the stream is open end it: revoked ones with a
  ``next`` holding an ``UNAUTHENTICATED`` error and ``complete`` (do not reconnect), expired
  ones (or a changed role) without ``complete``, so that the client reconnects with a fresh
  access token and resumes;
- the same limits: request size, one operation (no batch), the caller's rate limit (one
  operation), the query limits of every operation, the slow-consumer cut (the stream ends
  without ``complete``; resume by ``Last-Event-ID``), and no stream outlives its server's
  shutdown (same: reconnect to another server and resume).

The operation runs through Strawberry's streaming execution (``Schema.stream``) with the
same context and resolvers as a WebSocket's; a subscription's events (and a live
dashboard's renderings) are pushed to the stream by the hub exactly as to a WebSocket of
our server: rendered once per group of subscribers, WebSocket and SSE alike
(``realtime.streams.subscribe``, ``EventStream`` as the hub's sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from graphql import GraphQLError, get_operation_ast, parse
from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.graphql import OperationType

# sse.py is HTTP's other answer format: it shares http.py's request handling (request
# id, body limits, parameter checks, rate limit, error answers).
from crm_graphql.http import (
    EVENT_STREAM,
    JSON,
    RequestError,
    _check_params,
    _client_ip,
    _cost_report,
    _error_body,
    _params,
    _rate_decision,
    _rate_limit,
    _request_id,
    _respond,
    cost_wanted,
    credentials_refused,
    failed_before,
)
from crm_graphql.limits import with_extensions
from crm_graphql.masking import format_error
from crm_graphql.persisted_queries import PersistedQueryError
from crm_graphql.realtime import connections, wait_until_set
from crm_graphql.realtime.connections import LiveContext
from crm_graphql.realtime.credentials import Credential
from crm_graphql.realtime.fanout import encode_result
from crm_graphql.realtime.ws import PROTOCOL_KEY
from crm_graphql.services.credentials import Reason
from crm_graphql.services.events import Position

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 12.0
# Bytes of frames from which a stream refuses more for a client that reads slower than
# events come (a batch of events is taken or refused whole, as by a WebSocket's sink).
HIGH_WATER = 256 * 1024
# Seconds a stream the server ended may take to be written out before its connection is
# dropped (the same grace as a WebSocket's close).
CUT_OFF_SECONDS = 10.0
KEEP_ALIVE = b":\n\n"
COMPLETE = b"event: complete\ndata:\n\n"
MISSING_CREDENTIALS = "Send `Authorization: Bearer <accessToken or API key>` to open a stream"

# The event streams this process serves, so that shutdown can end them.
OPEN_STREAMS: set[EventStream] = set()


def next_frame(payload: bytes, cursor: str | None = None) -> bytes:
    """A ``next`` event with an encoded ExecutionResult (orjson writes no newline), with
    the event's cursor as its ``id``."""
    head = b"id: " + cursor.encode() + b"\n" if cursor else b""
    return head + b"event: next\ndata: " + payload + b"\n\n"


def _comment(text: str) -> bytes:
    return b": " + text.replace("\n", " ").encode() + b"\n\n"


class EventStream:
    """One event-stream response, as its operation's resolvers see it
    (``Context.event_stream``): where to resume, and where frames go.

    It is also the hub's ``Sink`` for a subscription's pushed events
    (``Hub.push``: rendered once per group of subscribers, WebSocket or event stream):
    frames wait in a buffer that the response writes out, which takes a write (a batch of
    events) while it holds less than ``HIGH_WATER`` bytes and refuses it after (the member
    catches up once it drained, or is cut off as a slow consumer). Where events are not
    pushed, the subscription sets ``cursor`` for the event it yields, written as that
    event's id."""

    def __init__(self, resume_after: str | None) -> None:
        self.resume_after = resume_after  # the client's Last-Event-ID
        self.cursor: str | None = None
        self.stopped = asyncio.Event()  # the server or the client ended it
        self.finished = False  # the operation completed: nothing more comes
        self.last: bytes = b""  # written before the stream ends (a reason, or complete)
        self.wake = asyncio.Event()  # frames are waiting, or it stopped or finished
        self._frames: list[bytes] = []
        self._size = 0
        self._room = asyncio.Event()  # the buffer is below HIGH_WATER
        self._room.set()
        self.on_end: Callable[[], None] | None = None  # the response's, once ended

    # ------------------------------------------------------------ the hub's Sink

    @property
    def closed(self) -> bool:
        return self.stopped.is_set()

    def write(self, payloads: Sequence[bytes], positions: Sequence[Position] = ()) -> bool:
        if self.closed or not self._room.is_set():
            return False
        cursors = [p.encode() for p in positions] if positions else [None] * len(payloads)
        self._add(b"".join(map(next_frame, payloads, cursors)))
        return True

    async def drained(self) -> None:
        await self._room.wait()

    # ------------------------------------------------------------ the response

    async def put(self, frame: bytes) -> None:
        """Queue a frame of the operation's own results, once there is room."""
        while not self._room.is_set() and not self.closed:
            await self._room.wait()
        self._add(frame)

    def _add(self, frame: bytes) -> None:
        self._frames.append(frame)
        self._size += len(frame)
        if self._size >= HIGH_WATER:
            self._room.clear()
        self.wake.set()

    def take(self) -> bytes:
        """The frames waiting, at once."""
        frames, self._frames, self._size = self._frames, [], 0
        self._room.set()
        return b"".join(frames)

    def finish(self) -> None:
        self.finished = True
        self.wake.set()

    def end(self, last: bytes) -> None:
        """End the stream from the server's side, after writing ``last``."""
        if not self.stopped.is_set():
            self.last = last
            self.stopped.set()
            self._room.set()  # whoever waits for room sees it closed
            self.wake.set()
            if self.on_end is not None:
                self.on_end()

    def slow(self) -> None:
        """The client did not read its events in time: end without ``complete``; it
        reconnects and resumes with the last ``id`` it read."""
        self.end(_comment("slow consumer: reconnect with Last-Event-ID"))

    def credentials_ended(self, reason: Reason) -> None:
        if reason.renewable:  # reconnect with a fresh access token, resume by Last-Event-ID
            self.end(_comment(reason.message))
            return
        error = {"message": reason.message, "extensions": {"code": "UNAUTHENTICATED"}}
        self.end(next_frame(orjson.dumps({"errors": [error]})) + COMPLETE)


def end_all() -> None:
    """End every event stream of this process (shutdown): clients reconnect elsewhere
    and resume by ``Last-Event-ID``."""
    for stream in list(OPEN_STREAMS):
        stream.end(_comment("server shutting down: reconnect with Last-Event-ID"))


async def event_stream(request: Request) -> Response:
    """The /graphql answer to a request that accepts ``text/event-stream``."""
    app = request.app.state.crm
    live = connections.of(request.app)
    request_id = _request_id(request)
    headers = {"X-Request-Id": request_id}
    try:
        params = await _params(request, app.settings.max_request_bytes)
        if not isinstance(params, dict):
            message = "An event stream runs one operation, not a batch"
            raise RequestError(400, message, "BAD_REQUEST")
        _check_params(params)
        try:
            with credentials_refused():
                found = await live.authenticate(
                    app,
                    request.headers.get("authorization"),
                    request_id=request_id,
                    client_ip=_client_ip(request),
                )
            if found is None:
                raise RequestError(
                    401, MISSING_CREDENTIALS, "UNAUTHENTICATED", {"WWW-Authenticate": "Bearer"}
                )
        except RequestError:
            await _rate_limit(app, None, request, 1)  # guessing is slowed, as on HTTP
            raise
        actor, grant = found
        decision = await _rate_decision(app, actor, request, 1)
        if decision is not None:
            headers.update(decision.headers())
    except Exception as exc:
        return failed_before(exc, request_id, JSON, headers)

    stream = EventStream(request.headers.get("last-event-id") or None)
    credential = Credential(grant, stream.credentials_ended)
    try:
        await app.hub.credentials.register(credential)
    except Exception as exc:
        app.hub.credentials.unregister(credential)
        return failed_before(exc, request_id, JSON, headers)
    if credential.ended is not None:
        app.hub.credentials.unregister(credential)
        return _respond(
            _error_body(credential.ended.message, "UNAUTHENTICATED"),
            401,
            JSON,
            {**headers, "WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    context = live.context(
        app=app,
        actor=actor,
        request_id=request_id,
        client_ip=_client_ip(request),
        credential=credential,
        event_stream=stream,
        # Asked with the same header as HTTP: each answer's extensions.cost (a
        # subscription's first event), with this request's rate decision.
        cost_wanted=cost_wanted(request),
        rate_decision=decision,
    )
    return EventStreamResponse(request, context, stream, params, headers)


class EventStreamResponse(Response):
    """The stream itself: the operation's results as they come, keep-alives between them,
    until the operation completes, the client goes away or the server ends it."""

    def __init__(
        self,
        request: Request,
        context: LiveContext,
        stream: EventStream,
        params: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        # As StreamingResponse does: no body set, so no Content-Length.
        self.status_code = 200
        self.media_type = f"{EVENT_STREAM}; charset=utf-8"
        self.background = None
        self.init_headers(
            {
                **headers,
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # proxies (nginx) pass each event on at once
                "X-Content-Type-Options": "nosniff",
            }
        )
        self.request = request
        self.context = context
        self.stream = stream
        self.params = params

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        stream, context = self.stream, self.context
        # Ended by the server, the response still has to be written out; a client that
        # does not read lets no write finish: its connection is dropped after
        # CUT_OFF_SECONDS (uvicorn's request cycle, kept by ws.keep_protocol; without it,
        # the connection stays until the client reads or goes).
        transport = getattr(scope.get(PROTOCOL_KEY), "transport", None)
        cut_off: list[asyncio.TimerHandle] = []
        if transport is not None:
            loop = asyncio.get_running_loop()
            stream.on_end = lambda: cut_off.append(
                loop.call_later(CUT_OFF_SECONDS, transport.abort)
            )
        OPEN_STREAMS.add(stream)
        producer = asyncio.create_task(self._produce(), name="event stream")
        listener = asyncio.create_task(_until_disconnect(receive, stream))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": KEEP_ALIVE, "more_body": True})
            while True:
                woke = await wait_until_set(stream.wake, KEEP_ALIVE_SECONDS)
                stream.wake.clear()
                frames = stream.take() if woke else KEEP_ALIVE
                if frames:
                    await send({"type": "http.response.body", "body": frames, "more_body": True})
                if stream.finished or stream.closed:
                    break
            if not listener.done():
                await send({"type": "http.response.body", "body": stream.last, "more_body": False})
        except OSError:
            log.debug("event stream %s: the client went away", context.request_id)
        finally:
            OPEN_STREAMS.discard(stream)
            stream.on_end = None
            for timer in cut_off:
                timer.cancel()
            stream.end(b"")  # pushed frames stop here
            for task in (producer, listener):
                task.cancel()
            for task in (producer, listener):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if context.credential is not None:
                context.app.hub.credentials.unregister(context.credential)
            with contextlib.suppress(Exception):
                await context.close()

    async def _produce(self) -> None:
        """Run the operation; each result it yields becomes a frame (a pushed
        subscription's frames come through ``EventStream.write``). Ends with ``complete``
        once the operation ended."""
        context, stream, params = self.context, self.stream, self.params
        app = context.app
        production = app.settings.is_production
        try:
            resolved = await app.persisted.resolve(params)
        except PersistedQueryError as refused:
            refusal = self._reported(_error_body(str(refused), refused.code), None)
            await stream.put(next_frame(orjson.dumps(refusal)) + COMPLETE)
            stream.finish()
            return
        method = self.request.method
        not_here = _refusal(
            resolved.query, params.get("operationName"), method, app.settings.max_tokens
        )
        if not_here is not None:
            not_here = self._reported(not_here, resolved.query)
            await stream.put(next_frame(orjson.dumps(not_here)) + COMPLETE)
            stream.finish()
            return
        allowed = (
            {OperationType.QUERY, OperationType.SUBSCRIPTION}
            if method == "GET"
            else {OperationType.QUERY, OperationType.MUTATION, OperationType.SUBSCRIPTION}
        )
        register = resolved.register  # the hash of a document to keep once it ran
        try:
            results = await self.request.app.state.schema.stream(
                resolved.query,
                variable_values=params.get("variables"),
                context_value=context,
                operation_name=params.get("operationName"),
                allowed_operation_types=allowed,
            )
            async with contextlib.aclosing(results):
                async for result in results:
                    cursor, stream.cursor = stream.cursor, None
                    errors = getattr(result, "errors", None)
                    data = getattr(result, "data", None)
                    if register is not None and (data is not None or _executed(errors)):
                        await app.persisted.register(register, resolved.query)
                        register = None
                    payload = encode_result(
                        data, errors, production=production, request_id=context.request_id
                    )
                    extensions = getattr(result, "extensions", None)
                    if extensions:  # extensions.cost, when asked (limits.OperationLimits)
                        payload = with_extensions(payload, extensions)
                    await stream.put(next_frame(payload, cursor))
        except Exception as exc:  # unavailable services, or a bug: masked like any answer
            failure = GraphQLError(str(exc), original_error=exc)
            error = format_error(failure, context.request_id, production=production)
            await stream.put(next_frame(orjson.dumps({"errors": [error]})))
        await stream.put(COMPLETE)
        stream.finish()

    def _reported(self, body: dict[str, Any], query: str | None) -> dict[str, Any]:
        """An answer given without running the operation, with its ``extensions.cost``
        when asked, as HTTP gives it (what runs gets it from ``OperationLimits``)."""
        context = self.context
        if not context.cost_wanted:
            return body
        variables = self.params.get("variables")
        report = _cost_report(self.request, context.actor, query, variables, context.rate_decision)
        return with_extensions(body, {"cost": report})


def _refusal(query: str, operation_name: str | None, method: str, max_tokens: int) -> Any:
    """The answer to an operation that must not run here, as HTTP gives it: an unknown
    ``operationName``, a mutation over GET (``Schema.stream`` would report them as
    unexpected errors); None otherwise (a document that does not parse included: the
    stream reports that with its code)."""
    try:
        document = parse(query, max_tokens=max_tokens or None)
    except GraphQLError:
        return None
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        reason = CannotGetOperationTypeError(operation_name).as_http_error_reason()
        return _error_body(reason, "GRAPHQL_VALIDATION_FAILED")
    if method == "GET" and operation.operation.value == "mutation":
        return _error_body("Mutations may not be sent with GET: POST them", "METHOD_NOT_ALLOWED")
    return None


def _executed(errors: Any) -> bool:
    """Errors of execution (with a path), not of the request (parse, validation)."""
    return bool(errors) and any(getattr(e, "path", None) for e in errors)


async def _until_disconnect(receive: Any, stream: EventStream) -> None:
    """Wait for the client to go away (the request's body was read already), then stop."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.end(b"")
            return
