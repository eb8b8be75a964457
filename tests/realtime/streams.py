"""Subscription helpers: where a stream stands, subscribing from there, collecting events
and checking they arrived once each and in order."""

from __future__ import annotations

import itertools
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
