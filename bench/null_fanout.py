"""The load generator's own ceiling: a broadcast server that does nothing but broadcast.

RT2 steps its event rate up until the raw floor stops holding; a step the floor fails
only says something about the floor if the load generator (the sender and
bench/ws_clients.py) holds that rate against a server that costs nothing. This server is
that: plain asyncio (uvloop) with its own HTTP/1.1 and WebSocket framing, no database, no
Redis, one process:

- ``POST /raw/publish`` (the raw floor's RT2 route, same body and answer): encode the
  activity's ``next`` frame once and write the same bytes to every subscribed socket;
- ``POST /raw/send`` (the raw floor's RT1 route): the message frame to the sockets that
  follow the conversation, the inbox frame to the assignee's inbox sockets;
- ``/graphql``: graphql-transport-ws, just enough for the bench client (init/ack,
  subscribe, ping/pong, complete), as the raw floor's;
- ``GET /readyz``.

    python -m bench.null_fanout PORT
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
from typing import Any, Generic, TypeVar

import orjson

S = TypeVar("S")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked server frame (RFC 6455), FIN set."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def unmask(data: bytes, key: bytes) -> bytes:
    mask = int.from_bytes((key * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ mask).to_bytes(len(data), "big")


class Groups(Generic[S]):
    """Which sockets get which frames, as the bench's subscriptions ask (shared with the raw
    floor): a subscription naming a ``conversationId`` follows that conversation, one whose
    document asks for ``inbox`` follows its user's inbox, any other the activity feed."""

    def __init__(self) -> None:
        self.feed: set[S] = set()
        self.conversations: dict[str, set[S]] = {}
        self.inboxes: dict[str, set[S]] = {}
        self.joined: dict[S, set[S]] = {}  # a socket's group

    def subscribe(self, socket: S, payload: dict[str, Any], user: str) -> None:
        variables = payload.get("variables") or {}
        if "conversationId" in variables:
            group = self.conversations.setdefault(variables["conversationId"], set())
        elif "inbox" in payload.get("query", ""):
            group = self.inboxes.setdefault(user, set())
        else:
            group = self.feed
        self.forget(socket)
        group.add(socket)
        self.joined[socket] = group

    def forget(self, socket: S) -> None:
        group = self.joined.pop(socket, None)
        if group is not None:
            group.discard(socket)


HUB: Groups[asyncio.Transport] = Groups()
OK = b'{"data":{"createActivity":{"activity":{"id":"0"},"errors":[]}}}'


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.websocket = False
        self.token = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            HUB.forget(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.websocket:
            self.frames()
        else:
            self.requests()

    # ---------------------------------------------------------------- HTTP

    def requests(self) -> None:
        assert self.transport is not None
        while not self.websocket:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path = head[0].split(" ")[:2]
            if headers.get("upgrade", "").lower() == "websocket":
                accept = base64.b64encode(
                    hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest()
                )
                self.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n"
                    b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                self.websocket = True
                self.frames()
                return
            answer = self.route(method, path, body)
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(answer)).encode()
                + b"\r\n\r\n"
                + answer
            )

    def route(self, method: str, path: str, body: bytes) -> bytes:
        if path == "/readyz":
            return b'{"ok":true}'
        variables: dict[str, Any] = orjson.loads(body)["variables"]
        if path == "/raw/publish":
            payload = {
                "activityFeed": {
                    "cursor": "0",
                    "type": "activity.created",
                    "activity": {"id": "0", "type": "NOTE", "subject": variables["subject"]},
                }
            }
            data = frame(orjson.dumps({"id": "1", "type": "next", "payload": {"data": payload}}))
            for transport in HUB.feed:
                transport.write(data)
            return OK
        if path == "/raw/send":
            conversation = variables["conversationId"]
            message = {"conversationEvents": {"message": {"body": variables["body"]}}}
            data = frame(orjson.dumps({"id": "1", "type": "next", "payload": {"data": message}}))
            for transport in HUB.conversations.get(conversation, ()):
                transport.write(data)
            inbox = {"inbox": {"conversation": {"id": conversation}, "body": variables["body"]}}
            data = frame(orjson.dumps({"id": "1", "type": "next", "payload": {"data": inbox}}))
            for transport in HUB.inboxes.get(variables.get("assignee", ""), ()):
                transport.write(data)
            return b'{"data":{"sendMessage":{"message":{"seq":0},"errors":[]}}}'
        return b'{"errors":[{"message":"no such route"}]}'

    # ---------------------------------------------------------------- WebSocket

    def frames(self) -> None:
        assert self.transport is not None
        while len(self.buffer) >= 2:
            opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
            at = 2
            if length == 126:
                length, at = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                length, at = int.from_bytes(self.buffer[2:10], "big"), 10
            masked = self.buffer[1] & 0x80
            if len(self.buffer) < at + (4 if masked else 0) + length:
                return
            key = self.buffer[at : at + 4] if masked else b""
            at += len(key)
            payload = self.buffer[at : at + length]
            self.buffer = self.buffer[at + length :]
            if masked and payload:
                payload = unmask(payload, key)
            if opcode == 0x8:
                self.transport.write(frame(b"", 0x8))
                self.transport.close()
                return
            if opcode == 0x9:
                self.transport.write(frame(payload, 0xA))
            elif opcode == 0x1:
                self.message(orjson.loads(payload))

    def message(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        kind = message.get("type")
        if kind == "connection_init":
            self.token = str((message.get("payload") or {}).get("Authorization", ""))
            self.token = self.token.removeprefix("Bearer ")
            self.transport.write(frame(b'{"type":"connection_ack"}'))
        elif kind == "ping":
            self.transport.write(frame(b'{"type":"pong"}'))
        elif kind == "subscribe":
            HUB.subscribe(self.transport, message.get("payload") or {}, self.token)
        elif kind == "complete":
            HUB.forget(self.transport)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        Connection, "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))
