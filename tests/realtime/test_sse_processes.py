"""Event streams (GraphQL over SSE) on several server processes: an event written
through one process reaches a stream on the other, and a server shutting down ends its
streams (without ``complete``) so that their clients resume elsewhere by Last-Event-ID."""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Any

import httpx

from crm_graphql.models import Role
from crm_graphql.services import activities
from tests import support
from tests.realtime.processes import Cluster, Spawn
from tests.realtime.streams import FEED, head_cursor


async def test_an_event_written_on_b_reaches_an_event_stream_on_a(
    servers: Cluster,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
    async with (
        api(servers.b) as on_b,
        httpx.AsyncClient(base_url=servers.a.url, timeout=20) as http_a,
        support.event_stream(http_a, tokens[Role.AGENT], FEED, {"after": after}) as stream,
    ):
        assert stream.response.status_code == 200
        customer = await on_b.customer("Across")
        subjects = [f"from B {i}" for i in range(3)]
        for subject in subjects:
            await on_b.note(customer, subject)
        received = [await stream.next_result() for _ in subjects]
        assert [r["data"]["activityFeed"]["activity"]["subject"] for _, r in received] == subjects
        assert [event_id for event_id, _ in received] == [
            r["data"]["activityFeed"]["cursor"] for _, r in received
        ]


async def test_shutdown_ends_event_streams_and_their_clients_resume_on_another_server(
    spawn: Spawn,
    servers: Cluster,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    server = await spawn("sse-to-stop")
    after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
    async with api(servers.a) as on_a:
        customer = await on_a.customer("Moving on")
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=20) as http,
            support.event_stream(http, tokens[Role.AGENT], FEED, {"after": after}) as stream,
        ):
            await on_a.note(customer, "before")
            last_id, result = await stream.next_result()
            assert result["data"]["activityFeed"]["activity"]["subject"] == "before"
            server.signal(signal.SIGTERM)
            ending = await stream.ended()
        # No `complete`: the client reconnects; the comment says why.
        assert [(m.event, m.comment) for m in ending] == [
            (None, "server shutting down: reconnect with Last-Event-ID")
        ]
        assert server.proc is not None
        returncode = await asyncio.to_thread(server.proc.wait, 15)
        assert returncode in (0, 143, -signal.SIGTERM), (returncode, server.log_tail())
        await on_a.note(customer, "while away")
        async with (
            httpx.AsyncClient(base_url=servers.b.url, timeout=20) as http,
            support.event_stream(
                http, tokens[Role.AGENT], FEED, {"after": after}, last_event_id=last_id
            ) as stream,
        ):
            _, result = await stream.next_result()
            assert result["data"]["activityFeed"]["activity"]["subject"] == "while away"
