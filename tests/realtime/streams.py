"""Subscription helpers: where a stream stands, subscribing from there, collecting events
and checking they arrived once each and in order."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import uuid
from typing import Any

import websockets

from crm_graphql.services import events
from crm_graphql.services.events import Position
from tests import support

FEED = """subscription($after: String) {
  activityFeed(after: $after) { cursor type activity { subject } }
}"""
BOARD = """subscription($p: ID!, $after: String) {
  dealBoard(pipelineId: $p, after: $after) { cursor type deal { title } }
}"""


async def head_cursor(sessionmaker: Any, workspace_id: uuid.UUID, topic: str) -> str:
    """The cursor of the stream's newest event (or its origin): subscribing after it
    yields exactly what is written from now on, however late the server registers it."""
    async with support.log_reader(sessionmaker) as conn:
        return (await events.head(conn, workspace_id, topic)).encode()


async def subscribed(
    base_url: str, token: str, query: str, variables: dict[str, Any]
) -> support.WSClient:
    ws = await support.WSClient.connect(base_url, token)
    await ws.acknowledged()
    await ws.subscribe(query, variables)
    return ws


async def take(ws: support.WSClient, field: str, count: int, timeout: float = 15) -> list[Any]:  # noqa: ASYNC109
    return [(await ws.next_data(timeout))[field] for _ in range(count)]


async def nothing_more(ws: support.WSClient, seconds: float = 0.7) -> None:
    """No further message arrives (no duplicates)."""
    try:
        message = await ws.receive(timeout=seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected extra message: {message}")


def assert_in_order_once(received: list[dict[str, Any]]) -> None:
    positions = [Position.decode(e["cursor"]) for e in received]
    assert all(a < b for a, b in itertools.pairwise(positions)), positions


def close_code(error: websockets.ConnectionClosed) -> int | None:
    return error.rcvd.code if error.rcvd is not None else None


async def slow_reader(base_url: str, token: str, query: str, variables: dict[str, Any]) -> Any:
    """A GraphQL-over-WebSocket client that reads only when told to: a 4-message queue, a
    small TCP receive buffer and no compression, so the server's writes back up as soon
    as it stops."""
    port = int(base_url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    ws = await websockets.connect(
        base_url.replace("http://", "ws://") + "/graphql",
        sock=sock,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        max_queue=4,
        compression=None,
        open_timeout=10,
        close_timeout=1,
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
    subscribe = {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": query, "variables": variables},
    }
    await ws.send(json.dumps(subscribe))
    return ws


async def next_event(ws: Any, field: str, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
    """The next event of a ``slow_reader``'s subscription (its root ``field``)."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] == "next":
            assert not message["payload"].get("errors"), message
            return message["payload"]["data"][field]  # type: ignore[no-any-return]
        assert message["type"] in ("ping", "pong"), message


async def read_until_closed(ws: Any, field: str) -> tuple[list[dict[str, Any]], int | None]:
    """What a ``slow_reader`` still finds on the wire, then the close code it ends with."""
    found: list[dict[str, Any]] = []
    try:
        while True:
            found.append(await next_event(ws, field))
    except websockets.ConnectionClosed as closed:
        return found, close_code(closed)


async def resumes_with_the_rest(
    sessionmaker: Any,
    base_url: str,
    token: str,
    stream: tuple[uuid.UUID, str, uuid.UUID | None],
    processed: list[dict[str, Any]],
    subscription: tuple[str, str, dict[str, Any]],
    written: int,
) -> int:
    """A fresh connection after the last ``processed`` cursor gets exactly the rest of
    the stream (``workspace, topic, entity``: only that entity's events when given), in
    order, then nothing; with what was processed, ``written`` events in all. The
    ``subscription`` is its field, document and variables, where the variable ``after``
    is set to the last cursor. How many it resumed with."""
    workspace_id, topic, entity = stream
    last = processed[-1]["cursor"]
    async with support.log_reader(sessionmaker) as conn:
        rest, _, _ = await events.read_events(
            conn, workspace_id, topic, Position.decode(last), limit=10 * written
        )
    rest = [e for e in rest if entity is None or e.entity_id == entity]
    assert len(processed) + len(rest) == written
    field, query, variables = subscription
    resumed = await subscribed(base_url, token, query, {**variables, "after": last})
    try:
        cursors = [e["cursor"] for e in await take(resumed, field, len(rest))]
        assert cursors == [e.cursor for e in rest]
        await nothing_more(resumed, 0.5)
    finally:
        await resumed.close()
    return len(rest)


async def write_backlog(
    sessionmaker: Any,
    bus: Any,
    actor: Any,
    count: int,
    *,
    topic: str,
    type: str,
    entity_type: str,
    entity_id: uuid.UUID,
    payload: dict[str, Any],
) -> None:
    """``count`` events of one entity, all with ``payload``, committed in batches of 250
    and announced on Redis like the services do (a backlog for a slow reader)."""
    from crm_graphql.realtime.unit_of_work import unit_of_work
    from crm_graphql.services.events import record_event

    done = 0
    while done < count:
        batch = min(250, count - done)
        async with unit_of_work(sessionmaker, bus, actor.workspace_id) as session:
            for _ in range(batch):
                record_event(
                    actor,
                    session,
                    topic=topic,
                    type=type,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    payload=payload,
                )
        done += batch
