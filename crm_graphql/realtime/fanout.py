"""Writing one rendered event to many sockets (see docs/decisions/0007-fanout.md).

An event is rendered (its selection executed and encoded) once per group of subscribers;
each member then only wraps the shared payload bytes in its protocol's data message
(``{"id":..,"type":"next","payload":..}``, or ``{"type":"data","id":..,"payload":..}`` on
the legacy protocol) and writes the frame straight to its connection, without a task,
queue or ASGI round trip per socket.
"""

from __future__ import annotations

import contextvars
import struct
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.exceptions import InvalidState
from websockets.protocol import Side, State

from crm_graphql.jsonbytes import dumps_kept
from crm_graphql.limits import OWED_COST, OwedCost, with_extensions
from crm_graphql.masking import format_error

# The operation being run on a WebSocket (set by realtime.ws per operation task): what a
# subscription resolver needs to push its frames itself.
OPERATION: contextvars.ContextVar[Operation | None] = contextvars.ContextVar(
    "crm_ws_operation", default=None
)


@dataclass(eq=False, slots=True)
class Operation:
    id: str
    legacy: bool  # subscriptions-transport-ws ("data" messages) instead of graphql-ws
    ended: bool = False  # the client stopped it: send nothing more for it
    # Set by the connection's handler (realtime.ws): takes over the pushed subscription's
    # coroutine (``Hub.push``) and runs it as the operation from then on, so that the
    # operation's task, and with it graphql-core's and Strawberry's state of the
    # subscription, ends once it has subscribed. None: the subscription awaits it itself.
    adopt: Callable[[Coroutine[Any, Any, None]], None] | None = None
    adopted: bool = False  # its pushed subscription runs in a task of its own
    handing_over: bool = False  # adopted, and the operation's own task is ending
    # The executor that started an adopted subscription: released (``release()``) once
    # the operation's own task is over.
    executor: Any = None

    def end(self) -> None:
        self.ended = True


def encode_result(
    data: Any, errors: list[Any] | None, *, production: bool, request_id: str | None = None
) -> bytes:
    """The payload of a data message, as Strawberry's WebSocket handlers build it, with
    errors formatted and masked like every other answer (``masking.format_error``; a
    rendering shared by many sockets gets a request id of its own for the log)."""
    payload: dict[str, Any] = {"data": data}
    if errors:
        rid = request_id or uuid.uuid4().hex
        payload["errors"] = [format_error(error, rid, production=production) for error in errors]
    # Kept: in a group's window of renderings and by dashboards (``jsonbytes``).
    return dumps_kept(payload)


class Reporting:
    """A pushed subscription's sink whose first frame carries the cost report the
    operation owes (``limits.OwedCost``: its client asked for it), spliced into that
    payload alone; the frames after it, and every other member's, are the shared bytes
    as rendered."""

    __slots__ = ("_owed", "_sink")

    def __init__(self, sink: Any, owed: OwedCost) -> None:
        self._sink = sink
        self._owed = owed

    @property
    def closed(self) -> bool:
        return bool(self._sink.closed)

    def write(self, payloads: Sequence[bytes], positions: Sequence[Any] = ()) -> bool:
        if self._owed.sent or not payloads:
            return bool(self._sink.write(payloads, positions))
        first = with_extensions(payloads[0], {"cost": self._owed.report})
        if not self._sink.write([first, *payloads[1:]], positions):
            return False  # nothing was sent: the next write carries it
        self._owed.take()
        return True

    async def drained(self) -> None:
        await self._sink.drained()


def owing(sink: Any) -> Any:
    """``sink``, or (the operation owes a cost report: ``limits.OWED_COST``) ``sink``
    whose first frame carries it."""
    owed = OWED_COST.get()
    return sink if owed is None or owed.sent else Reporting(sink, owed)


def _text_frame_header(length: int) -> bytes:
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class SocketSink:
    """Frames of one operation, written to a uvicorn ``websockets-sansio`` connection
    (the server the CLI runs). Writes only while the transport is below its high-water
    mark, so a client that does not read makes the member fall behind instead of growing
    a buffer; ``drained`` waits for the transport to take data again."""

    __slots__ = ("_operation", "_prefix", "_protocol")

    def __init__(self, protocol: Any, operation: Operation) -> None:
        self._protocol = protocol
        self._operation = operation
        op_id = orjson.dumps(operation.id)
        self._prefix = (
            b'{"type":"data","id":' + op_id + b',"payload":'
            if operation.legacy
            else b'{"id":' + op_id + b',"type":"next","payload":'
        )

    @classmethod
    def attach(cls, protocol: Any, operation: Operation | None) -> SocketSink | None:
        """A sink for this connection, or None when the server is not one we can write
        to directly (the subscription then runs through Strawberry, per subscriber)."""
        if operation is None or protocol is None:
            return None
        needed = ("conn", "transport", "writable", "close_sent", "disconnected")
        if not all(hasattr(protocol, name) for name in needed):
            return None
        if not hasattr(protocol.conn, "send_text"):
            return None
        return cls(protocol, operation)

    @property
    def closed(self) -> bool:
        protocol = self._protocol
        return bool(
            self._operation.ended
            or protocol.close_sent
            or protocol.disconnected
            or protocol.conn.state is not State.OPEN
        )

    def write(self, payloads: Sequence[bytes], positions: Sequence[Any] = ()) -> bool:
        protocol = self._protocol
        if (
            self._operation.ended
            or protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
        ):
            return False
        conn = protocol.conn
        prefix = self._prefix
        messages = [prefix + payload + b"}" for payload in payloads]
        if conn.side is Side.SERVER and not conn.extensions:
            # The frames websockets would build (RFC 6455 5.2: FIN + text, unmasked from
            # a server, no extension), without its per-frame objects: this runs once per
            # delivered batch and socket (RT2: 50,000 events a second).
            if conn.state is not State.OPEN or conn.expect_continuation_frame:
                return False
            frames = []
            for message in messages:
                frames.append(_text_frame_header(len(message)))
                frames.append(message)
            protocol.transport.write(b"".join(frames))
            return True
        try:
            for message in messages:
                conn.send_text(message)
        except InvalidState:
            return False
        protocol.transport.write(b"".join(conn.data_to_send()))
        return True

    async def drained(self) -> None:
        await self._protocol.writable.wait()
