"""Subscribers must not hold database connections between events (DESIGN.md: each event
is resolved in a short-lived scope "so a long-lived socket neither holds a connection nor
serves stale rows"). With a pool smaller than the number of sockets, every socket still
gets every event."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from crm_graphql.models import Role
from crm_graphql.services import activities
from tests.realtime.processes import Cluster, Spawn
from tests.realtime.streams import FEED, head_cursor, subscribed, take

POOL = 2  # CRM_DB_POOL_SIZE: 2 connections plus 2 overflow
SOCKETS = 6


async def test_more_subscribers_than_pooled_connections_all_keep_receiving(
    servers: Cluster,
    spawn: Spawn,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    small = await spawn("small-pool", CRM_DB_POOL_SIZE=str(POOL))
    async with api(servers.a) as on_a:
        customer = await on_a.customer("Pool")
        after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
        sockets = [
            await subscribed(small.url, tokens[Role.AGENT], FEED, {"after": after})
            for _ in range(SOCKETS)
        ]
        try:
            for i in range(3):
                await on_a.note(customer, f"pooled {i}")
                got = await asyncio.gather(*(take(ws, "activityFeed", 1, 8) for ws in sockets))
                assert [g[0]["activity"]["subject"] for g in got] == [f"pooled {i}"] * SOCKETS
        finally:
            for ws in sockets:
                await ws.close()
