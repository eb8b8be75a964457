"""Several server processes sharing PostgreSQL and Redis (issue 5, points 4 and 5):
fan-out across processes with one Redis subscription per channel per process, a Redis
restart in the middle of a stream, and a server process killed under its clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import websockets

from crm_graphql.global_ids import decode_id
from crm_graphql.models import Role
from crm_graphql.realtime.bus import channel_name
from crm_graphql.services import activities, deals
from tests.realtime.processes import Cluster, RedisServer, Spawn, wait_for
from tests.realtime.streams import (
    BOARD,
    FEED,
    assert_in_order_once,
    close_code,
    head_cursor,
    nothing_more,
    subscribed,
    take,
)


async def test_writes_on_one_process_reach_every_subscriber_on_the_other(
    servers: Cluster,
    private_redis: RedisServer,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    a, b = servers.a, servers.b
    feed_channel = channel_name(workspace_id, activities.TOPIC)
    async with api(a) as on_a:
        customer = await on_a.customer("Fan-out")
        pipeline = await on_a.pipeline()
        pipeline_uuid = decode_id(pipeline, "Pipeline")
        assert pipeline_uuid is not None
        board_topic = deals.pipeline_topic(pipeline_uuid)
        board_channel = channel_name(workspace_id, board_topic)
        feed_after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
        board_after = await head_cursor(sessionmaker, workspace_id, board_topic)
        assert await private_redis.numsub(feed_channel) == 0

        token = tokens[Role.AGENT]
        feeds = [await subscribed(b.url, token, FEED, {"after": feed_after}) for _ in range(5)]
        boards = [
            await subscribed(b.url, token, BOARD, {"p": pipeline, "after": board_after})
            for _ in range(5)
        ]
        try:
            # Ten sockets on B, one Redis subscription per channel.
            await wait_for(
                lambda: private_redis.numsub(feed_channel), what="B subscribed to the feed"
            )
            await wait_for(
                lambda: private_redis.numsub(board_channel), what="B subscribed to the board"
            )
            assert await private_redis.numsub(feed_channel) == 1
            assert await private_redis.numsub(board_channel) == 1

            # Writes through A arrive on all of B's sockets, promptly: the hub reads on
            # Redis' word, not on its 2 s safety poll (5 polls would take ~5 s in all).
            latencies = []
            for i in range(5):
                started = time.monotonic()
                await on_a.note(customer, f"fan {i}")
                got = await asyncio.gather(*(take(ws, "activityFeed", 1) for ws in feeds))
                latencies.append(time.monotonic() - started)
                assert all(g[0]["activity"]["subject"] == f"fan {i}" for g in got), got
            assert sum(latencies) < 2.5, latencies
            await on_a.deal(pipeline, "Fanned deal")
            got = await asyncio.gather(*(take(ws, "dealBoard", 1) for ws in boards))
            assert all(g[0]["type"] == "deal.created" for g in got), got
            assert all(g[0]["deal"]["title"] == "Fanned deal" for g in got), got

            # A subscriber on A too: one subscription per process, two in all.
            on_a_ws = await subscribed(a.url, token, FEED, {"after": feed_after})
            try:
                await wait_for(lambda: private_redis.numsub_is(feed_channel, 2), what="NUMSUB 2")
                assert len(await take(on_a_ws, "activityFeed", 5)) == 5  # the replay
                await on_a.note(customer, "both")
                assert (await take(on_a_ws, "activityFeed", 1))[0]["activity"]["subject"] == "both"
                for ws in feeds:
                    assert (await take(ws, "activityFeed", 1))[0]["activity"]["subject"] == "both"
                    await nothing_more(ws, 0.1)
            finally:
                await on_a_ws.close()
            # The last socket of a process gone, its subscription goes too.
            await wait_for(lambda: private_redis.numsub_is(feed_channel, 1), what="NUMSUB 1")
        finally:
            for ws in feeds + boards:
                await ws.close()
        await wait_for(lambda: private_redis.numsub_is(feed_channel, 0), what="NUMSUB 0")
        await wait_for(lambda: private_redis.numsub_is(board_channel, 0), what="NUMSUB 0")


async def test_redis_restart_mid_stream_loses_and_repeats_nothing(
    servers: Cluster,
    private_redis: RedisServer,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    a, b = servers.a, servers.b
    feed_channel = channel_name(workspace_id, activities.TOPIC)
    async with api(a) as on_a:
        customer = await on_a.customer("Through a Redis restart")
        after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
        ws = await subscribed(b.url, tokens[Role.AGENT], FEED, {"after": after})
        written: list[str] = []
        try:
            await wait_for(lambda: private_redis.numsub(feed_channel), what="B subscribed")
            for i in range(2):
                written.append(f"before {i}")
                await on_a.note(customer, written[-1])
            received = await take(ws, "activityFeed", 2)

            private_redis.kill()
            # Writes still succeed: the change is committed, publishing fails quietly.
            for i in range(3):
                written.append(f"during {i}")
                started = time.monotonic()
                response = await on_a.activity(customer, written[-1])
                assert response.ok()["createActivity"]["errors"] == []
                assert time.monotonic() - started < 5, "a write waited on the dead Redis"
            ready = await on_a.http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "error"

            private_redis.start()
            await wait_for(
                lambda: private_redis.numsub(feed_channel),
                timeout=15,
                what="B subscribed again after the restart",
            )
            for i in range(2):
                written.append(f"after {i}")
                await on_a.note(customer, written[-1])
            received += await take(ws, "activityFeed", 5)
            await nothing_more(ws)
        finally:
            await ws.close()
    assert [e["activity"]["subject"] for e in received] == written
    assert_in_order_once(received)


async def test_clients_of_a_killed_process_resume_on_another_and_miss_nothing(
    servers: Cluster,
    spawn: Spawn,
    private_redis: RedisServer,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    a = servers.a
    victim = await spawn("victim")
    total = 40
    written: list[str] = []
    async with api(a) as on_a:
        customer = await on_a.customer("Survivor")
        after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
        ws = await subscribed(victim.url, tokens[Role.AGENT], FEED, {"after": after})

        async def write_all() -> None:
            for i in range(total):
                written.append(f"note {i:02}")
                await on_a.note(customer, written[-1])
                await asyncio.sleep(0.025)  # a steady stream, not a burst

        writer = asyncio.create_task(write_all())
        received: list[dict[str, Any]] = []
        try:
            received += await take(ws, "activityFeed", 8)
            victim.kill()  # mid-stream, while A keeps writing
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:  # whatever was already on the wire, then the drop
                    received.append((await ws.next_data(10))["activityFeed"])
            assert close_code(closed.value) is None  # no close frame: the process died
            assert not writer.done(), "the writes were over before the kill"

            # Reconnect to the surviving process with the last cursor seen.
            ws = await subscribed(
                a.url, tokens[Role.AGENT], FEED, {"after": received[-1]["cursor"]}
            )
            await asyncio.wait_for(writer, 30)
            received += await take(ws, "activityFeed", total - len(received))
            await nothing_more(ws)
        finally:
            writer.cancel()
            await ws.close()
    assert [e["activity"]["subject"] for e in received] == written
    assert_in_order_once(received)
