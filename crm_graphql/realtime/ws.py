"""GraphQL over WebSocket on /graphql: ``graphql-transport-ws`` and the legacy
``graphql-ws`` protocol, credentials in the ``connection_init`` payload.

Close codes (documented in README):
- 4403: missing or invalid credentials in ``connection_init`` (the legacy protocol gets
  a ``connection_error`` message first); 4401: an operation before ``connection_init``
  (the protocols' own codes);
- 4440: the access token expired, or the user's role changed: reconnect with a fresh
  access token (``refreshToken``) and resume with the last ``cursor`` seen;
- 4401: the credentials were revoked (API key revoked or expired, user disabled, logged
  out): reconnecting with them is refused. ``graphql-ws`` clients retry 4440 (calling
  ``connectionParams`` again) and give up on 4401;
- 4008: slow consumer — events were waiting and the client did not read them for
  ``slow_consumer_after`` seconds; reconnect and resume with the last ``cursor`` seen;
- 1001: the server is shutting down; reconnect (to any server) and resume by cursor;
- 1013 (Try Again Later): ``connection_init`` came while PostgreSQL or Redis was
  unavailable, so the credentials could not be checked; reconnect shortly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import signal
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from datetime import timedelta
from json import JSONDecodeError
from typing import Any

import orjson
from graphql.error import GraphQLError, GraphQLFormattedError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ErrorMessage as TransportErrorMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ErrorMessage as LegacyErrorMessage,
)

from crm_graphql.limits import COST_HEADER, cost_asked
from crm_graphql.masking import unavailable_service
from crm_graphql.observability import metrics
from crm_graphql.observability.requests import current_request_id
from crm_graphql.persisted_queries import PersistedQueryError
from crm_graphql.realtime import connections, ephemeral, fanout
from crm_graphql.realtime.connections import LiveContext
from crm_graphql.realtime.credentials import Credential
from crm_graphql.services.credentials import Reason
from crm_graphql.services.errors import DomainError

log = logging.getLogger(__name__)

MISSING_CREDENTIALS = 'Send {"Authorization": "Bearer <token>"} as the connection_init payload'
SLOW_CONSUMER = 4008
PROTOCOL_KEY = "crm.ws_protocol"
GOING_AWAY = 1001
CREDENTIALS_EXPIRED = 4440  # like HTTP 440 "login time-out": renew and reconnect
CREDENTIALS_REVOKED = 4401  # Unauthorized: graphql-ws does not retry it
TRY_AGAIN_LATER = 1013  # credentials not checkable during an outage: graphql-ws retries it
REJECTION_KEY = "crm.rejection"  # (code, reason) replacing the protocol's rejection close

# The sockets this process serves, so that shutdown can say goodbye with 1001, by their
# ASGI scope's id; and the credentials each stands on (kept here rather than in the
# scope: one more key there grows every socket's scope dictionary).
OPEN_SOCKETS: dict[int, WebSocket] = {}
_CREDENTIALS: dict[int, Credential] = {}


async def _trusted(context: LiveContext, payload: Any) -> tuple[Any, GraphQLFormattedError | None]:
    """In trusted-documents mode (``CRM_PERSISTED_ONLY``), an operation's payload with its
    manifest document (it may name it by hash), or the error refusing it; as it is
    otherwise. The same rule as HTTP's (crm_graphql/persisted_queries.py)."""
    persisted = context.app.persisted
    if persisted.trusted is None or not isinstance(payload, dict):
        return payload, None
    try:
        resolved = await persisted.resolve(payload)
    except PersistedQueryError as refused:
        return payload, {"message": str(refused), "extensions": {"code": refused.code}}
    return {**payload, "query": resolved.query}, None


class LegacyHandler(BaseGraphQLWSHandler[Any, Any]):
    """subscriptions-transport-ws: after ``connection_error`` close with 4403, like the
    newer protocol, instead of 1011 (an internal error it is not). Both handlers tell a
    subscription's resolver its operation (``fanout.OPERATION``) so that it can push its
    frames, and stop those frames as soon as the client stops the operation, and run only
    manifest documents in trusted-documents mode."""

    async def handle_connection_init(self, message: Any) -> None:
        with _rejection_close(self.websocket, self.context, {1011: 4403}):
            await super().handle_connection_init(message)

    async def handle_start(self, message: Any) -> None:
        if self.connection_acknowledged:
            payload, refusal = await _trusted(self.context, message.get("payload"))
            if refusal is not None:
                await self.send_message(
                    LegacyErrorMessage(type="error", id=message["id"], payload=refusal)
                )
                return
            message = {**message, "payload": payload}
        await super().handle_start(message)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pushed: dict[str, fanout.Operation] = {}
        # Made in the connection's task: what adopted subscriptions run in (a copy each).
        self.connection_context = contextvars.copy_context()

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        # Runs as the operation's task: subscriptions may push their frames themselves,
        # and hand their pushing over to a task of the connection's (``_Adopting``).
        operation = fanout.Operation(operation_id, legacy=True)
        adopted = _Adopting(self, operation, GRAPHQL_WS_PROTOCOL)
        try:
            with (
                _pushing(self.pushed, operation),
                metrics.SUBSCRIPTIONS.labels(GRAPHQL_WS_PROTOCOL).track_inprogress(),
            ):
                await super().handle_async_results(operation_id, query, operation_name, variables)
        finally:
            if (task := adopted.taken_over()) is not None:
                # Strawberry forgot the operation as its task ended: stopping it
                # (``stop``, the connection's end) now stops the task that pushes.
                self.tasks[operation_id] = task
            await _operation_ended(self.context)

    async def handle_message(self, message: Any) -> None:
        try:
            await super().handle_message(message)
        finally:
            _handled(message)

    async def send_message(self, message: Any) -> None:
        if not _adopted_end(self, message):
            await super().send_message(message)

    async def cleanup_operation(self, operation_id: str) -> None:
        _end_pushed(self.pushed, operation_id)
        await super().cleanup_operation(operation_id)


class TransportHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pushed: dict[str, fanout.Operation] = {}
        # Made in the connection's task: what adopted subscriptions run in (a copy each).
        self.connection_context = contextvars.copy_context()

    async def handle_connection_init(self, message: Any) -> None:
        with _rejection_close(self.websocket, self.context, {}):
            await super().handle_connection_init(message)

    async def handle_subscribe(self, message: Any) -> None:
        if self.connection_acknowledged:
            payload, refusal = await _trusted(self.context, message.get("payload"))
            if refusal is not None:
                await self.send_message(
                    TransportErrorMessage(type="error", id=message["id"], payload=[refusal])
                )
                return
            message = {**message, "payload": payload}
        await super().handle_subscribe(message)

    async def handle_connection_init_timeout(self) -> None:
        try:
            await super().handle_connection_init_timeout()
        finally:
            # Over (timed out, or cancelled by connection_init): the handler need not
            # keep the finished task (and its exception) for the connection's life.
            self.connection_init_timeout_task = None

    async def run_operation(self, operation: Any) -> None:
        # Runs as the operation's task: subscriptions may push their frames themselves,
        # and hand their pushing over to a task of the connection's (``_Adopting``).
        pushed = fanout.Operation(operation.id, legacy=False)
        adopted = _Adopting(self, pushed, GRAPHQL_TRANSPORT_WS_PROTOCOL)
        try:
            with (
                _pushing(self.pushed, pushed),
                metrics.SUBSCRIPTIONS.labels(GRAPHQL_TRANSPORT_WS_PROTOCOL).track_inprogress(),
            ):
                await super().run_operation(operation)
        finally:
            if (task := adopted.taken_over()) is not None:
                # Strawberry forgot the operation as its stream ended: it is the adopted
                # task's now (``complete`` from the client, or the connection's end,
                # cancels it; a second ``subscribe`` with its id is refused).
                operation.task = task
                operation.query, operation.variables = "", None  # used to start it only
                self.operations[operation.id] = operation
            await _operation_ended(self.context)

    async def handle_message(self, message: Any) -> None:
        try:
            await super().handle_message(message)
        finally:
            _handled(message)

    async def send_message(self, message: Any) -> None:
        if not _adopted_end(self, message):
            await super().send_message(message)

    async def cleanup_operation(self, operation_id: str) -> None:
        _end_pushed(self.pushed, operation_id)
        await super().cleanup_operation(operation_id)


class _Adopting:
    """Runs an operation's pushed subscription (``Hub.push``) in a task of its own once
    it has subscribed (``fanout.Operation.adopt``): the operation's task ends, and with it
    what only served to start the subscription (graphql-core's execution context,
    Strawberry's operation state and extensions, the resolvers' frames). An idle socket
    keeps its connection's task and one small task per subscription, waiting for its
    member to leave the live set.

    As before, for the client: when the subscription ends (the event that ended its
    access was sent) the operation completes; an error is sent as the operation's data
    message with the error (masked like every other) and then ``complete``; stopped by
    the client (or the connection's end), it sends nothing more (the legacy protocol's
    handler sends ``complete``, as Strawberry's does when an operation is stopped)."""

    __slots__ = ("handler", "operation", "protocol", "quiet", "task")

    def __init__(self, handler: Any, operation: fanout.Operation, protocol: str) -> None:
        self.handler = handler
        self.operation = operation
        self.protocol = protocol
        self.task: asyncio.Task[None] | None = None
        self.quiet = False  # stopped while handed over: Strawberry said what there was
        operation.adopt = self.adopt

    def adopt(self, pushing: Coroutine[Any, Any, None]) -> None:
        operation = self.operation
        operation.adopt = None
        operation.adopted = operation.handing_over = True
        metrics.SUBSCRIPTIONS.labels(self.protocol).inc()
        # The task runs the subscription's coroutine itself (no frame around it), in a
        # copy of the connection's context: nothing of the operation's task's.
        context = self.handler.connection_context.copy()
        self.task = task = asyncio.get_running_loop().create_task(pushing, context=context)
        task.add_done_callback(self._ended)

    def taken_over(self) -> asyncio.Task[None] | None:
        """Called as the operation's task ends: the adopted task, which goes on as the
        operation; None when there is none (or it ended already, or the client stopped
        the operation meanwhile: then it is cancelled)."""
        operation = self.operation
        operation.adopt = None
        task = self.task
        if task is None:
            return None
        operation.handing_over = False
        if operation.ended:  # stopped (or the connection ended) before it was handed over
            self.quiet = True
            task.cancel()
            return None
        if task.done():
            _forget_adopted(self.handler, operation, task)
            return None
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The adopted subscription ended: say so to the client as Strawberry would have
        (``complete``; an error first as a data message), and free its id."""
        metrics.SUBSCRIPTIONS.labels(self.protocol).dec()
        handler, operation = self.handler, self.operation
        _forget_adopted(handler, operation, task)
        messages: list[dict[str, Any]] = []
        if task.cancelled():
            if operation.legacy and not self.quiet:
                messages.append({"type": "complete", "id": operation.id})
        else:
            error = task.exception()
            if isinstance(error, Exception):
                context = handler.context
                payload = fanout.encode_result(
                    None,
                    [GraphQLError(str(error), original_error=error)],
                    production=context.app.settings.is_production,
                    request_id=context.request_id,
                )
                kind = "data" if operation.legacy else "next"
                messages.append(
                    {"type": kind, "id": operation.id, "payload": orjson.loads(payload)}
                )
            messages.append({"type": "complete", "id": operation.id})
        if messages:
            _spawn(_send_all(handler.websocket, messages))


async def _send_all(websocket: Any, messages: list[dict[str, Any]]) -> None:
    with contextlib.suppress(Exception):  # the connection may be gone
        for message in messages:
            await websocket.send_json(message)


def _forget_adopted(handler: Any, operation: fanout.Operation, task: asyncio.Task[None]) -> None:
    """An adopted operation is over: its id is free again (once its own task is done)."""
    if operation.handing_over:
        return  # ``taken_over`` comes back to it
    if handler.pushed.get(operation.id) is operation:
        del handler.pushed[operation.id]
    if operation.legacy:
        if handler.tasks.get(operation.id) is task:
            del handler.tasks[operation.id]
    else:
        running = handler.operations.get(operation.id)
        if running is not None and running.task is task:
            del handler.operations[operation.id]


def _handled(message: Any) -> None:
    """A message from the client has been handled: emptied, so that the handler's loop,
    which holds the last one while it waits for the next, keeps nothing of it (a
    ``subscribe`` and its document, for as long as the socket is idle)."""
    if isinstance(message, dict):
        message.clear()


def _adopted_end(handler: Any, message: Any) -> bool:
    """Whether ``message`` is the ``complete`` Strawberry sends as an operation's task ends
    after its subscription was adopted: not the operation's end, so not sent."""
    if not isinstance(message, dict) or message.get("type") != "complete":
        return False
    operation = handler.pushed.get(message.get("id"))
    return operation is not None and operation.handing_over


@contextlib.contextmanager
def _rejection_close(websocket: Any, context: LiveContext, codes: dict[int, int]) -> Iterator[None]:
    """While ``connection_init`` is handled, the protocol's close (of Strawberry's socket
    adapter ``websocket``) of a rejected connection uses the code and reason
    ``on_ws_connect`` chose (``REJECTION_KEY`` in the scope of the context's socket), else
    ``codes`` maps the protocol's code (the legacy protocol's 1011 is no internal error)."""
    original_close = websocket.close
    scope = context.websocket.scope if context.websocket is not None else {}

    async def close(code: int = 1000, reason: str = "") -> None:
        chosen = scope.pop(REJECTION_KEY, None)
        if chosen is not None:
            code, reason = chosen
        await original_close(codes.get(code, code), reason)

    websocket.close = close
    try:
        yield
    finally:
        websocket.close = original_close


async def _operation_ended(context: LiveContext) -> None:
    """The connection's context gives back the connection its reads took (a query's or
    a mutation's fields): the context lives as long as the socket, and the requests' pool
    is fixed, so a socket that kept it after its operation would hold one of the pool's
    connections while idle, and wait for a second one in its next mutation. Operations
    still running on the socket read on a new session."""
    with contextlib.suppress(Exception):  # a dead connection is the pool's problem
        await context.close()


@contextlib.contextmanager
def _pushing(pushed: dict[str, fanout.Operation], operation: fanout.Operation) -> Iterator[None]:
    """While an operation's task runs, its resolvers find it in ``fanout.OPERATION``."""
    pushed[operation.id] = operation
    fanout.OPERATION.set(operation)
    try:
        yield
    finally:
        operation.adopt = None  # too late to hand its subscription over
        executor, operation.executor = operation.executor, None
        if executor is not None and hasattr(executor, "release"):
            executor.release()  # its work is done: freed now, not by a collection
        if pushed.get(operation.id) is operation and not operation.adopted:
            del pushed[operation.id]


def _end_pushed(pushed: dict[str, fanout.Operation], operation_id: str) -> None:
    """The client stopped an operation: pushed frames for it stop at once (its task is
    cancelled only on the next turn of the loop)."""
    operation = pushed.pop(operation_id, None)
    if operation is not None:
        operation.end()


class _Adapter(ASGIWebSocketAdapter):
    """Strawberry's ASGI socket adapter whose loop keeps no text of the last message
    while it waits for the next (Strawberry's keeps it in a local for as long as the
    socket is idle)."""

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object]:
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                try:
                    yield self.view.decode_json(await self.ws.receive_text())
                except JSONDecodeError as e:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from e
        except KeyError as e:
            raise NonTextMessageReceived from e
        except WebSocketDisconnect:
            pass


class GraphQLWebSocket(GraphQL[LiveContext, None]):
    """Strawberry's WebSocket handling with our context and authentication (the app's
    ``connections.Connections``)."""

    graphql_ws_handler_class = LegacyHandler
    graphql_transport_ws_handler_class = TransportHandler
    websocket_adapter_class = _Adapter

    def __init__(self, schema: Any) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=10),
            keep_alive=True,
            keep_alive_interval=20,
        )

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> LiveContext:
        app = request.app.state.crm
        client_ip = request.client.host if request.client else None
        # The connection's id (observability.requests): in its log lines and spans too.
        request_id = current_request_id() or uuid.uuid4().hex
        new_context = connections.of(request.app).context
        context = new_context(app=app, actor=None, request_id=request_id, client_ip=client_ip)
        if isinstance(request, WebSocket):
            context.websocket = request
            OPEN_SOCKETS[id(request.scope)] = request
        return context

    async def on_ws_connect(self, context: LiveContext) -> Any:
        params = context.connection_params or {}
        header = _authorization(params)
        if not header:
            raise ConnectionRejectionError(
                {
                    "message": MISSING_CREDENTIALS,
                    "code": "UNAUTHENTICATED",
                }
            )
        websocket = context.websocket
        try:
            authenticate = connections.of(websocket.app).authenticate
            found = await authenticate(
                context.app, header, request_id=context.request_id, client_ip=context.client_ip
            )
        except DomainError as error:
            raise ConnectionRejectionError(
                {"message": error.message, "code": error.code}
            ) from error
        except Exception as exc:
            if (rejection := _unavailable(websocket, exc)) is None:
                raise
            raise rejection from exc
        if found is None:
            raise ConnectionRejectionError(
                {"message": "Invalid credentials", "code": "UNAUTHENTICATED"}
            )
        actor, grant = found
        credential = Credential(grant, functools.partial(_close_ended_soon, websocket))
        # Followed before the connection is acknowledged: no operation runs on it before
        # revocations that committed after the check are applied.
        _CREDENTIALS[id(websocket.scope)] = credential
        try:
            await context.app.hub.credentials.register(credential)
        except Exception as exc:
            if (rejection := _unavailable(websocket, exc)) is None:
                raise
            raise rejection from exc
        if credential.ended is not None:
            raise ConnectionRejectionError(
                {"message": credential.ended.message, "code": "UNAUTHENTICATED"}
            )
        context.actor = actor
        context.credential = credential
        # Asked once for the connection, as an HTTP client asks with the header.
        context.cost_wanted = cost_asked(_header(params, COST_HEADER))
        # Read once: what the connection needs of the payload (credentials, the cost
        # header) is taken; the socket does not keep it (a token) for its whole life.
        context.connection_params = None
        await ephemeral.connection_opened(context)  # presence: a user is online
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        websocket = scope.get("type") == "websocket"
        if websocket:
            metrics.WEBSOCKET_CONNECTIONS.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            if websocket:
                metrics.WEBSOCKET_CONNECTIONS.dec()
            OPEN_SOCKETS.pop(id(scope), None)
            credential = _CREDENTIALS.pop(id(scope), None) if websocket else None
            if credential is not None:
                scope["app"].state.crm.hub.credentials.unregister(credential)
            await ephemeral.connection_closed(scope)  # presence: maybe offline


def _unavailable(websocket: WebSocket, error: Exception) -> ConnectionRejectionError | None:
    """The rejection for an error while checking credentials at ``connection_init`` when
    PostgreSQL or Redis is unavailable, closed with 1013 (the credentials cannot be
    checked, so no connection without that check); None for any other error."""
    service = unavailable_service(error)
    if service is None:
        return None
    message = f"{service} is unavailable: reconnect shortly"
    websocket.scope[REJECTION_KEY] = (TRY_AGAIN_LATER, message)
    return ConnectionRejectionError({"message": message, "code": "UNAVAILABLE"})


def _header(params: dict[str, Any], name: str) -> Any:
    """A header's value among a connection_init payload's parameters: ``name`` in any
    case, at the top or in a nested ``headers`` object (some clients send their HTTP
    headers so); None when absent."""
    nested = params.get("headers")
    candidates: list[dict[str, Any]] = [params, nested if isinstance(nested, dict) else {}]
    for source in candidates:
        for key, value in source.items():
            blank = value is None or (isinstance(value, str) and not value.strip())
            if isinstance(key, str) and key.lower() == name.lower() and not blank:
                return value
    return None


def _authorization(params: dict[str, Any]) -> str | None:
    """The Authorization value from a connection_init payload: ``Authorization`` (see
    ``_header``), or a bare ``token``."""
    value = _header(params, "authorization")
    if isinstance(value, str) and value.strip():
        return value.strip()
    token = params.get("token")
    if isinstance(token, str) and token.strip():
        return f"Bearer {token.strip()}"
    return None


async def close_slow_consumer(websocket: WebSocket, cursor_hint: str | None = None) -> None:
    """Cut off a connection that does not read its events (close code 4008)."""
    reason = "slow consumer: reconnect and resume with your last cursor"
    await close_socket(websocket, SLOW_CONSUMER, reason)


def _close_ended_soon(websocket: WebSocket, reason: Reason) -> None:
    _spawn(close_ended(websocket, reason))


async def close_ended(websocket: WebSocket, reason: Reason) -> None:
    """Close a connection whose credentials ended: 4440 when a fresh access token cures
    it (expired, role changed), else 4401 (revoked)."""
    code = CREDENTIALS_EXPIRED if reason.renewable else CREDENTIALS_REVOKED
    await close_socket(websocket, code, reason.message)


async def close_socket(websocket: WebSocket, code: int, reason: str) -> None:
    """Close a connection from the server's side, even when its client does not read."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), 1)
        return
    # The ASGI close waits for the socket to drain, which a client that does not read
    # never lets happen. Queue the close frame behind the buffered data ourselves
    # (uvicorn's websockets-sansio protocol, pinned by the CLI) and drop the connection
    # if the client does not read it within 10 s; without those internals, drop it now.
    protocol: Any = websocket.scope.get(PROTOCOL_KEY)
    conn = getattr(protocol, "conn", None)
    transport = getattr(protocol, "transport", None)
    if transport is None or getattr(protocol, "close_sent", False):
        return
    if conn is None or not hasattr(conn, "send_close"):
        transport.abort()
        return
    try:
        conn.send_close(code, reason)
    except Exception:  # the connection is closing already (its close frame went out)
        transport.abort()
        return
    transport.write(b"".join(conn.data_to_send()))
    protocol.close_sent = True
    protocol.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
    asyncio.get_running_loop().call_later(10, transport.abort)


def keep_protocol(app: Any) -> Any:
    """ASGI wrapper that lets ``close_slow_consumer`` reach the server's protocol object of
    a WebSocket (the bound ``send`` of uvicorn's protocol), and an event stream
    (realtime/sse.py) its request cycle's transport (the bound ``send`` of uvicorn's HTTP
    request cycle) to cut off a client that does not read."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("websocket", "http"):
            scope[PROTOCOL_KEY] = getattr(send, "__self__", None)
        await app(scope, receive, send)

    return wrapped


async def close_all(code: int = GOING_AWAY) -> None:
    """Close every open socket of this process (shutdown), and end its event streams
    (GraphQL over SSE): clients reconnect and resume."""
    from crm_graphql.realtime import sse  # it builds on the HTTP endpoint, which is later

    sse.end_all()
    sockets = list(OPEN_SOCKETS.values())
    OPEN_SOCKETS.clear()

    async def close(ws: WebSocket) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=code, reason="server shutting down"), 2)

    await asyncio.gather(*(close(ws) for ws in sockets))


def close_sockets_before_exit() -> Callable[[], None]:
    """Wrap the server's SIGTERM/SIGINT handlers (uvicorn's, installed before the app
    starts) so that open sockets are closed with 1001 *before* the server shuts down:
    uvicorn itself would drop them with 1012. Returns a function that restores them."""
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        original = previous.get(signum)

        async def goodbye() -> None:
            await close_all(GOING_AWAY)
            if callable(original):
                original(signum, frame)

        loop.call_soon_threadsafe(lambda: _spawn(goodbye()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        current = signal.getsignal(sig)
        if callable(current):  # only when someone (uvicorn) handles it
            previous[sig] = current
            signal.signal(sig, handler)

    def restore() -> None:
        for sig, original in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, original)

    return restore


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
