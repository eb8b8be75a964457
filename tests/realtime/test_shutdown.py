"""Graceful shutdown (issue 5, point 8): on SIGTERM the server stops accepting, closes its
WebSockets with 1001 (clients reconnect elsewhere and resume by cursor) and finishes the
requests in flight."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from typing import Any

import pytest
import websockets

from crm_graphql.models import Role
from crm_graphql.realtime.ws import GOING_AWAY
from crm_graphql.services import activities
from tests.realtime.processes import Spawn, wait_for
from tests.realtime.streams import FEED, close_code, head_cursor, subscribed, take


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_sigterm_closes_sockets_with_1001_and_finishes_requests_in_flight(
    spawn: Spawn,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    server = await spawn("to-stop")
    async with api(server) as on_server:
        customer = await on_server.customer("Last words")
        after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
        ws = await subscribed(server.url, tokens[Role.AGENT], FEED, {"after": after})
        await on_server.note(customer, "live")
        assert (await take(ws, "activityFeed", 1))[0]["activity"]["subject"] == "live"

    # A request in flight: headers and half of the body sent, the rest after SIGTERM.
    body = json.dumps(
        {
            "query": 'mutation($c: ID!) { createActivity(input: {type: NOTE, subject: "in flight", customerId: $c}) { activity { subject } errors { code } } }',
            "variables": {"c": customer},
        }
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        (
            "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {tokens[Role.MANAGER]}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + body[: len(body) // 2]
    )
    await writer.drain()
    async with api(server) as on_server:  # a round trip: the server has read those bytes
        assert (await on_server.http.get("/healthz")).status_code == 200

    server.signal(signal.SIGTERM)
    try:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.receive(timeout=10)
        code = close_code(closed.value)
        # No new connections once shutting down.
        await wait_for(lambda: _refused(server.port), timeout=5, what="connections refused")
        # The request in flight completes.
        writer.write(body[len(body) // 2 :])
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
        status_line, _, rest = raw.partition(b"\r\n")
        assert b" 200 " in status_line, raw
        payload = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert payload["data"]["createActivity"] == {
            "activity": {"subject": "in flight"},
            "errors": [],
        }, payload
        assert server.proc is not None
        returncode = await asyncio.to_thread(server.proc.wait, 15)
        assert returncode in (0, 143, -signal.SIGTERM), (returncode, server.log_tail())
    finally:
        writer.close()
        await ws.close()
    assert code == GOING_AWAY, f"socket closed with {code}, not 1001 ({server.log_tail(15)})"
