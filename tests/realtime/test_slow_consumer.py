"""A client that stops reading (issue 5, point 7): the server cuts it off with close code
4008 instead of buffering for it, its memory stays bounded meanwhile, and the client
resumes by cursor without missing anything."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from crm_graphql.models import ActivityType, Role
from crm_graphql.realtime.bus import Bus, channel_name
from crm_graphql.realtime.ws import SLOW_CONSUMER
from crm_graphql.services import activities, customers
from crm_graphql.services.actor import Actor
from tests.realtime.processes import RedisServer, Spawn, wait_for
from tests.realtime.streams import (
    assert_in_order_once,
    head_cursor,
    next_event,
    read_until_closed,
    resumes_with_the_rest,
    slow_reader,
    write_backlog,
)

SLOW_AFTER = 2  # CRM_SLOW_CONSUMER_SECONDS of the server under test
BACKLOG = 2000
BODY = secrets.token_urlsafe(9000)  # 12 KB in every event's frame, incompressible
FEED_WITH_BODY = """subscription($after: String) {
  activityFeed(after: $after) { cursor activity { subject body } }
}"""


async def _raw_client(base_url: str, token: str, after: str) -> Any:
    return await slow_reader(base_url, token, FEED_WITH_BODY, {"after": after})


async def _next_event(ws: Any, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
    return await next_event(ws, "activityFeed", timeout)


async def _write_events(
    sessionmaker: Any, bus: Bus, actor: Actor, activity_id: uuid.UUID, count: int
) -> None:
    """``count`` activity events (all showing the same big activity), committed in batches
    and announced on Redis like the services do."""
    await write_backlog(
        sessionmaker,
        bus,
        actor,
        count,
        topic=activities.TOPIC,
        type="activity.created",
        entity_type="Activity",
        entity_id=activity_id,
        payload={"activity_id": activity_id, "type": "NOTE"},
    )


async def big_activity(sessionmaker: Any, agent: Actor) -> uuid.UUID:
    """An activity whose rendering is BODY-big (what ``_write_events``' events show)."""
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(agent, session, {"name": "Firehose"})
        activity = await activities.create_activity(
            agent,
            session,
            {"type": ActivityType.NOTE, "subject": "big", "body": BODY, "customer_id": customer.id},
        )
    return activity.id


async def test_a_client_that_stops_reading_is_cut_off_with_4008_and_resumes_by_cursor(
    spawn: Spawn,
    private_redis: RedisServer,
    tokens: dict[Role, str],
    actors: dict[Role, Actor],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    server = await spawn("slow", CRM_SLOW_CONSUMER_SECONDS=str(SLOW_AFTER))
    agent = actors[Role.AGENT]
    activity_id = await big_activity(sessionmaker, agent)
    channel = channel_name(workspace_id, activities.TOPIC)
    after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
    bus = Bus.from_url(private_redis.url)
    ws = await _raw_client(server.url, tokens[Role.AGENT], after)
    try:
        await wait_for(lambda: private_redis.numsub(channel), what="the server subscribed")
        # While the client reads, events flow.
        await _write_events(sessionmaker, bus, agent, activity_id, 5)
        processed = [await _next_event(ws) for _ in range(5)]
        assert processed[0]["activity"]["body"] == BODY

        # The client stops reading; a backlog far bigger than any socket buffer arrives.
        rss_before = server.rss_bytes()
        stopped_at = time.monotonic()
        await _write_events(sessionmaker, bus, agent, activity_id, BACKLOG)
        written_in = time.monotonic() - stopped_at
        peak = rss_before

        async def released() -> bool:
            nonlocal peak
            peak = max(peak, server.rss_bytes())
            return await private_redis.numsub(channel) == 0

        # The server gives up on the client (its subscription, the process's only one on
        # this channel, is released) while the client still reads nothing.
        await wait_for(
            released, timeout=SLOW_AFTER + 10, interval=0.1, what="the slow client cut off"
        )
        cut_after = time.monotonic() - stopped_at
        assert peak - rss_before < 50 * 2**20, (rss_before, peak)

        # Reading again, the client finds what was already on the wire, then code 4008.
        on_the_wire, with_code = await read_until_closed(ws, "activityFeed")
        processed += on_the_wire
        assert with_code == SLOW_CONSUMER, with_code
        assert len(processed) < 5 + BACKLOG, "nothing was held back: the test proves nothing"
        assert_in_order_once(processed)
    finally:
        await ws.close()
        await bus.close()

    # A fresh connection after the last processed cursor gets exactly the rest.
    resumed = await resumes_with_the_rest(
        sessionmaker,
        server.url,
        tokens[Role.AGENT],
        (workspace_id, activities.TOPIC, None),
        processed,
        (
            "activityFeed",
            "subscription($after: String) { activityFeed(after: $after) { cursor } }",
            {},
        ),
        5 + BACKLOG,
    )
    print(
        f"slow consumer: backlog written in {written_in:.1f} s, cut off {cut_after:.1f} s "
        "after it stopped reading; "
        f"RSS {rss_before / 2**20:.0f} -> peak {peak / 2**20:.0f} MB; "
        f"{len(processed)} events read before 4008, {resumed} resumed"
    )
