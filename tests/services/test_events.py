"""The event horizon: streams wait for running write transactions of this database only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.db.engine import make_read_pool
from crm_graphql.realtime.hub import Hub, HubSettings
from crm_graphql.services import events
from crm_graphql.services.actor import Actor
from tests import support
from tests.realtime.processes import wait_for

TOPIC = "horizon-test"


async def commit_event(
    sessionmaker: async_sessionmaker[AsyncSession], actor: Actor, type: str = "test"
) -> None:
    async with sessionmaker() as session, session.begin():
        events.record_event(
            actor, session, topic=TOPIC, type=type, entity_type="Test", entity_id=None, payload={}
        )


@pytest.fixture
async def hub(sessionmaker: async_sessionmaker[AsyncSession], redis_url: str) -> AsyncIterator[Hub]:
    """A hub of its own (as a server process has), on the test's database and Redis."""
    client = redis.Redis.from_url(redis_url)
    pool = await make_read_pool(sessionmaker.kw["bind"].url.render_as_string(False), 2, "test")
    hub = Hub(pool, sessionmaker, client)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()
        await pool.close()
        await client.aclose()


@contextlib.asynccontextmanager
async def following(hub: Hub, actor: Actor) -> AsyncIterator[list[events.StoredEvent]]:
    """Follow the test topic without a cursor: the events received so far."""
    received: list[events.StoredEvent] = []

    async def follow() -> None:
        async for event in hub.follow(actor.workspace_id, TOPIC, None):
            received.append(event)

    follower = asyncio.create_task(follow())
    try:
        yield received
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


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
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor, hub: Hub
) -> None:
    """While an older writer stays open, the hub's reader re-checks only the horizon (the
    log cannot hold anything deliverable that its last read did not see); once the writer
    ends, without events of its own and so without a doorbell, the event comes through."""
    async with following(hub, admin) as received:
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


async def test_events_held_back_for_long_are_reported_once_naming_the_open_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
    admin: Actor,
    redis_url: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A session left idle in a transaction that wrote holds every stream back (nothing is
    lost: its events come when it ends). The hub says so once, naming the backend, so an
    operator can find it; before, live events just stopped without a word."""
    client = redis.Redis.from_url(redis_url)
    pool = await make_read_pool(database_url, 2, "test")
    hub = Hub(pool, sessionmaker, client, HubSettings(held_back_warning=0.3))
    await hub.start()
    idle = await asyncpg.connect(
        support.asyncpg_dsn(database_url), server_settings={"application_name": "left-open"}
    )
    try:
        async with following(hub, admin) as received:
            await wait_for(lambda: bool(hub.streams), what="the stream is read")
            writing = idle.transaction()
            await writing.start()
            await idle.fetchval("SELECT pg_current_xact_id()")  # wrote, then went idle
            with caplog.at_level(logging.WARNING, logger="crm_graphql.realtime.hub"):
                await commit_event(sessionmaker, admin)
                await asyncio.sleep(1.0)  # three times the warning's delay
            warnings = [r.getMessage() for r in caplog.records if "open transaction" in r.message]
            assert len(warnings) == 1, warnings
            assert "left-open" in warnings[0] and "idle in transaction" in warnings[0]
            assert "pg_current_xact_id" in warnings[0]
            assert received == []
            await writing.rollback()
            await wait_for(lambda: len(received) == 1, what="the held-back event")
    finally:
        await idle.close()
        await hub.close()
        await pool.close()
        await client.aclose()


# ------------------------------------------------- the horizon across epochs (issue 12)

EPOCH = 2**32


def _widening_cases() -> list[tuple[int, int]]:
    """(64-bit xid, xmax near it): running xids up to 2^31 below or above the xmax,
    around epoch boundaries, near 0 and near 2^32, and at random."""
    nears = [3, 4, 5000, 2**31 - 1, 2**31, 2**31 + 1, EPOCH - 1, EPOCH, EPOCH + 3]
    nears += [k * EPOCH + d for k in (1, 7, 2**20) for d in (-2, -1, 0, 1, 2, 3, 2**31)]
    offsets = [-(2**31), -(2**31) + 1, -65536, -2, -1, 0, 1, 2, 65536, 2**31 - 2, 2**31 - 1]
    rng = random.Random(12)
    nears += [rng.randrange(3, 2**44) for _ in range(40)]
    offsets += [rng.randrange(-(2**31), 2**31) for _ in range(40)]
    return [
        (near + offset, near)
        for near in nears
        for offset in offsets
        # Transaction ids whose low 32 bits are 0, 1 or 2 are never handed out.
        if near + offset >= 3 and (near + offset) % EPOCH >= 3
    ]


async def test_a_running_xid_is_widened_to_the_epoch_nearest_the_xmax(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """``crm_xid_near`` (migration 0008) gives back the 64-bit xid of a 32-bit
    ``backend_xid`` wherever it lies within 2^31 of the xmax, either side, across epochs
    (0006 put any xid at or above the xmax into the previous epoch)."""
    cases = _widening_cases()
    assert len(cases) > 3000
    async with support.log_reader(sessionmaker) as conn:
        widened = await conn.fetchval(
            "SELECT array_agg(crm_xid_near((full_xid % 4294967296)::text::xid, near) ORDER BY n)"
            " FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS c (full_xid, near, n)",
            [full for full, _ in cases],
            [near for _, near in cases],
        )
    wrong = [
        (full, near, got) for (full, near), got in zip(cases, widened, strict=True) if got != full
    ]
    assert not wrong, wrong[:10]


async def test_the_horizon_stays_within_running_transactions_under_looping_writers(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The issue's reproduction: four sessions loop short write transactions while
    another asks for the horizon. It is never below the oldest transaction running
    before the call (0006: 2,879 of 3,000 calls came out about 2^32 too low) nor above
    the next xid after it."""
    url = support.asyncpg_dsn(sessionmaker.kw["bind"].url.render_as_string(False))
    stop = asyncio.Event()
    committed = [0] * 4

    async def writer(number: int) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TEMP TABLE churn (n int)")
            while not stop.is_set():
                async with conn.transaction():
                    await conn.execute("INSERT INTO churn VALUES (1)")
                committed[number] += 1
        finally:
            await conn.close()

    writers = [asyncio.create_task(writer(n)) for n in range(4)]
    wrong: list[tuple[int, int, int]] = []
    calls = 0
    try:
        async with support.log_reader(sessionmaker) as conn:
            await wait_for(lambda: min(committed) >= 10, timeout=30, what="four writers looping")
            snapshot = "pg_current_snapshot()"
            deadline = time.monotonic() + 3
            while calls < 2000 and time.monotonic() < deadline:
                oldest = await conn.fetchval(f"SELECT pg_snapshot_xmin({snapshot})::text::bigint")
                horizon = await events.horizon(conn)
                following = await conn.fetchval(
                    f"SELECT pg_snapshot_xmax({snapshot})::text::bigint"
                )
                calls += 1
                if not oldest <= horizon <= following:
                    wrong.append((oldest, horizon, following))
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert calls >= 200
    assert not wrong, f"{len(wrong)} of {calls} calls: {wrong[:5]}"


async def test_the_snapshot_rule_is_postgresqls(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """``Snapshot.sees`` in Python is ``pg_visible_in_snapshot`` in SQL."""
    snapshots = ["100:100:", "100:140:100,120,139", "4294967290:4294967310:4294967300"]
    async with support.log_reader(sessionmaker) as conn:
        for text_form in snapshots:
            snapshot = events.Snapshot.parse(text_form)
            txids = list(range(snapshot.xmin - 3, snapshot.xmax + 3))
            visible = await conn.fetchval(
                "SELECT array_agg(pg_visible_in_snapshot(t::text::xid8, $2::text::pg_snapshot) ORDER BY t)"
                " FROM unnest($1::bigint[]) AS t",
                txids,
                text_form,
            )
            assert [snapshot.sees(t) for t in txids] == visible, text_form


async def test_a_subscription_without_cursor_gets_what_commits_after_it_only(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor, hub: Hub
) -> None:
    """An older write transaction holds the horizon back; a younger one commits an event
    before the subscription starts, the older one after: the subscriber gets the older
    one's event, not the younger one's (both sort after the start, only one is new)."""
    await commit_event(sessionmaker, admin, "history")
    async with sessionmaker() as older:
        events.record_event(
            admin, older, topic=TOPIC, type="older", entity_type="Test", entity_id=None, payload={}
        )
        await older.flush()  # written, with its xid: the horizon stays below it
        await commit_event(sessionmaker, admin, "younger")  # committed before subscribing
        async with following(hub, admin) as received:
            await wait_for(
                lambda: any(s.subscribers for s in hub.streams.values()), what="subscribed"
            )
            await older.commit()  # committed after subscribing
            await commit_event(sessionmaker, admin, "later")
            hub._wake_all()  # nobody rang the doorbell: the test wrote past the unit of work
            await wait_for(lambda: len(received) >= 2, what="two events")
            assert [e.type for e in received] == ["older", "later"]


async def test_a_stream_woken_as_it_closes_still_closes(admin: Actor, hub: Hub) -> None:
    """A stream's reader cancelled just as its doorbell rings stops (on Python 3.11
    ``asyncio.wait_for`` swallowed that cancellation: the stream never closed, and every
    later subscription of the process waited for the hub's lock)."""
    async with following(hub, admin):
        await wait_for(lambda: hub.stats()["reads"] >= 1, what="the stream is read")
        [stream] = hub.streams.values()
        await asyncio.sleep(0.2)  # its reader waits for the doorbell
        assert stream.task is not None
        stream.wake.set()
        stream.task.cancel()  # as ``Stream.close`` does, before the reader runs again
        done, _ = await asyncio.wait([stream.task], timeout=5)
        assert done, "the stream's reader went on after it was cancelled"


def test_a_cursor_beyond_64_bits_names_no_position() -> None:
    """Positions are bigint columns: a larger number is refused as an invalid cursor (a
    VALIDATION error on `after`), not sent to the database (which answered INTERNAL)."""
    import base64

    from crm_graphql.services.errors import Invalid

    def cursor(txid: int, id: int) -> str:
        return base64.urlsafe_b64encode(f"ev:{txid}:{id}".encode()).decode().rstrip("=")

    last = events.LAST_ID
    assert events.Position.decode(cursor(last, -last - 1)) == events.Position(last, -last - 1)
    for txid, id in ((last + 1, 1), (1, last + 1), (-last - 2, 1), (10**20, 1)):
        with pytest.raises(Invalid):
            events.Position.decode(cursor(txid, id))
