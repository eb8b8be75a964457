"""The event horizon: streams wait for running write transactions of this database only."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.db.engine import make_read_pool
from crm_graphql.realtime.hub import Hub
from crm_graphql.services import events
from crm_graphql.services.actor import Actor
from tests import support
from tests.realtime.processes import wait_for

TOPIC = "horizon-test"


async def commit_event(sessionmaker: async_sessionmaker[AsyncSession], actor: Actor) -> None:
    async with sessionmaker() as session, session.begin():
        events.record_event(
            actor, session, topic=TOPIC, type="test", entity_type="Test", entity_id=None, payload={}
        )


async def read(sessionmaker: async_sessionmaker[AsyncSession], actor: Actor) -> tuple[int, bool]:
    async with support.log_reader(sessionmaker) as conn:
        batch, held_back, _ = await events.read_events(
            conn, actor.workspace_id, TOPIC, events.ORIGIN
        )
    return len(batch), held_back


async def test_a_long_write_in_another_database_does_not_hold_events_back(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor, server_database_url: str
) -> None:
    other = await asyncpg.connect(support.asyncpg_dsn(server_database_url))
    try:
        writing = other.transaction()
        await writing.start()
        await other.fetchval("SELECT pg_current_xact_id()")  # holds an xid, like a bulk load
        await commit_event(sessionmaker, admin)
        assert await read(sessionmaker, admin) == (1, False)
    finally:
        await writing.rollback()
        await other.close()


async def test_a_running_write_of_this_database_holds_later_events_back(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor
) -> None:
    async with sessionmaker() as running:
        await running.execute(text("SELECT pg_current_xact_id()"))  # an older writer, open
        await commit_event(sessionmaker, admin)
        # Committed, but behind a transaction that could still write an earlier event.
        assert await read(sessionmaker, admin) == (0, True)
        await running.rollback()
    assert await read(sessionmaker, admin) == (1, False)


async def test_a_held_back_stream_skips_rereads_until_the_horizon_moves(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor, redis_url: str
) -> None:
    """While an older writer stays open, the hub's reader re-checks only the horizon (the
    log cannot hold anything deliverable that its last read did not see); once the writer
    ends, without events of its own and so without a doorbell, the event comes through."""
    client = redis.Redis.from_url(redis_url)
    pool = await make_read_pool(sessionmaker.kw["bind"].url.render_as_string(False), 2, "test")
    hub = Hub(pool, sessionmaker, client)
    await hub.start()
    received: list[events.StoredEvent] = []

    async def follow() -> None:
        async for event in hub.follow(admin.workspace_id, TOPIC, None):
            received.append(event)

    follower = asyncio.create_task(follow())
    try:
        await wait_for(lambda: bool(hub.streams), what="the stream is read")
        async with sessionmaker() as running:
            await running.execute(text("SELECT pg_current_xact_id()"))  # an older writer
            await commit_event(sessionmaker, admin)
            await wait_for(lambda: hub.stats()["skipped_reads"] >= 3, what="re-reads skipped")
            reads = hub.stats()["reads"]
            await asyncio.sleep(0.2)  # held back: polled every 20 ms, read no more
            assert hub.stats()["reads"] == reads
            assert received == []
            await running.rollback()  # ends without an event: no doorbell rings
        await wait_for(lambda: len(received) == 1, what="the held-back event")
        assert received[0].topic == TOPIC
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await hub.close()
        await pool.close()
        await client.aclose()
