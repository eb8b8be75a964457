"""Event streams (GraphQL over SSE) on several server processes: an event written
through one process reaches a stream on the other, and a server shutting down ends its
streams (without ``complete``) so that their clients resume elsewhere by Last-Event-ID."""

from __future__ import annotations

import asyncio
import signal
import socket
import uuid
from typing import Any

import httpx

from crm_graphql.models import Role
from crm_graphql.realtime.bus import Bus, channel_name
from crm_graphql.services import activities, events
from crm_graphql.services.actor import Actor
from crm_graphql.services.events import Position
from tests import support
from tests.realtime.processes import Cluster, RedisServer, Spawn, wait_for
from tests.realtime.streams import FEED, head_cursor
from tests.realtime.test_slow_consumer import (
    BODY,
    FEED_WITH_BODY,
    SLOW_AFTER,
    _write_events,
    big_activity,
)


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


async def test_a_stream_that_is_not_read_is_cut_off_and_resumes_by_last_event_id(
    spawn: Spawn,
    private_redis: RedisServer,
    tokens: dict[Role, str],
    actors: dict[Role, Actor],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    """Like a WebSocket's slow consumer (test_slow_consumer.py): the server neither
    buffers without bound nor keeps the subscription; the client resumes by its last id."""
    server = await spawn("sse-slow", CRM_SLOW_CONSUMER_SECONDS=str(SLOW_AFTER))
    agent = actors[Role.AGENT]
    activity_id = await big_activity(sessionmaker, agent)
    channel = channel_name(workspace_id, activities.TOPIC)
    after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
    bus = Bus.from_url(private_redis.url)
    # A small receive buffer, no compression: the server's writes back up at once.
    transport = httpx.AsyncHTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
    )
    processed: list[tuple[str | None, Any]] = []
    try:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=30, transport=transport) as http,
            support.event_stream(
                http,
                tokens[Role.AGENT],
                FEED_WITH_BODY,
                {"after": after},
                headers={"Accept-Encoding": "identity"},
            ) as stream,
        ):
            await wait_for(lambda: private_redis.numsub(channel), what="the server subscribed")
            await _write_events(sessionmaker, bus, agent, activity_id, 5)
            processed += [await stream.next_result() for _ in range(5)]
            assert processed[0][1]["data"]["activityFeed"]["activity"]["body"] == BODY

            # The client stops reading; a backlog far bigger than any buffer arrives.
            rss_before = server.rss_bytes()
            await _write_events(sessionmaker, bus, agent, activity_id, BACKLOG)
            # The server gives up on the stream (its subscription, the process's only one
            # on this channel, is released) while the client still reads nothing.
            await wait_for(
                lambda: _released(private_redis, channel),
                timeout=SLOW_AFTER + 20,
                interval=0.2,
                what="the slow stream cut off",
            )
            assert server.rss_bytes() - rss_before < 50 * 2**20
    finally:
        await bus.close()
    ids = [Position.decode(event_id or "") for event_id, _ in processed]
    assert ids == sorted(set(ids))

    # Resumed with the last id read: exactly the rest.
    last = processed[-1][0]
    async with support.log_reader(sessionmaker) as conn:
        rest, _, _ = await events.read_events(
            conn, workspace_id, activities.TOPIC, Position.decode(last or ""), limit=10 * BACKLOG
        )
    assert len(processed) + len(rest) == 5 + BACKLOG
    query = "subscription { activityFeed { cursor } }"
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        support.event_stream(http, tokens[Role.AGENT], query, last_event_id=last) as stream,
    ):
        resumed = [(await stream.next_result())[0] for _ in rest]
        assert resumed == [e.cursor for e in rest]


# 24 MB of frames, written in batches of 250: far more than the stream's buffer,
# uvicorn's and the sockets' hold (a batch read at once is written at once, as on a
# WebSocket: the stream stalls after a few of them).
BACKLOG = 2000


async def _released(redis_server: RedisServer, channel: str) -> bool:
    return await redis_server.numsub(channel) == 0
