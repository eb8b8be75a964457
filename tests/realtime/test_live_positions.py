"""Live members share their stream's position (docs/decisions/0031, "Positions of live
members"): a batch of events costs the members it writes to, not every live member of
the stream. A member that received nothing while other conversations' events went by
still gets its own conversation's next event once, live; when its socket stops taking
data it leaves the live set from where the live set was, catches up, is cut off as a slow
consumer (4008) if it still does not read, and resumes by cursor without gap or
duplicate."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Channel, Role
from crm_graphql.realtime import SERVER_WEBSOCKETS
from crm_graphql.realtime.bus import Bus, channel_name
from crm_graphql.realtime.hub import Hub, Member
from crm_graphql.realtime.unit_of_work import unit_of_work
from crm_graphql.realtime.ws import SLOW_CONSUMER
from crm_graphql.services import conversations, customers, events
from crm_graphql.services.actor import Actor
from crm_graphql.services.events import Position
from tests import support
from tests.realtime.processes import RedisServer, Spawn, serving_in_process, wait_for
from tests.realtime.streams import (
    assert_in_order_once,
    head_cursor,
    next_event,
    nothing_more,
    read_until_closed,
    resumes_with_the_rest,
    slow_reader,
    write_backlog,
)

CONVERSATION_EVENTS = """subscription($c: ID!, $after: String) {
  conversationEvents(conversationId: $c, after: $after) { cursor type message { body } }
}"""
SLOW_AFTER = 2  # CRM_SLOW_CONSUMER_SECONDS of the server under test
BACKLOG = 1500
BODY = secrets.token_urlsafe(7000)  # 9 KB in every frame, incompressible


@pytest.fixture
async def served(settings: Any) -> AsyncIterator[tuple[str, Starlette]]:
    """Served like ``crm-graphql serve`` serves it, inside the test (the hub is read)."""
    async with serving_in_process(settings, SERVER_WEBSOCKETS) as served:
        yield served


async def _chats(sessionmaker: Any, bus: Bus, manager: Actor, count: int) -> list[uuid.UUID]:
    async with unit_of_work(sessionmaker, bus, manager.workspace_id) as session:
        customer = await customers.create_customer(manager, session, {"name": "Quiet"})
        started = [
            await conversations.start_conversation(
                manager, session, {"customer_id": customer.id, "channel": Channel.CHAT}
            )
            for _ in range(count)
        ]
    return [c.id for c in started]


async def _send(sessionmaker: Any, bus: Bus, manager: Actor, chat: uuid.UUID, body: str) -> None:
    """One message, one transaction, announced after commit (a batch of its own)."""
    async with unit_of_work(sessionmaker, bus, manager.workspace_id) as session:
        await conversations.send_message(manager, session, chat, body=body)


async def _events(ws: support.WSClient, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        found.append((await ws.next_data(15))["conversationEvents"])
    return found


def _members(hub: Hub, entity: uuid.UUID) -> list[Member]:
    return [
        member
        for stream in hub.streams.values()
        for group in stream.groups.values()
        for member in group.by_entity.get(entity, ())
    ]


async def test_a_batch_touches_no_quiet_member_and_the_quiet_one_still_gets_its_next_event(
    served: tuple[str, Starlette], tokens: dict[Role, str], actors: dict[Role, Actor]
) -> None:
    base_url, app = served
    crm = app.state.crm
    hub: Hub = crm.hub
    manager = actors[Role.MANAGER]
    quiet_chat, busy_chat = await _chats(crm.sessionmaker, crm.bus, manager, 2)
    token = tokens[Role.MANAGER]
    quiet = await support.WSClient.connect(base_url, token)
    busy = await support.WSClient.connect(base_url, token)
    try:
        for ws, chat in ((quiet, quiet_chat), (busy, busy_chat)):
            await ws.acknowledged()
            await ws.subscribe(CONVERSATION_EVENTS, {"c": to_global_id("Conversation", chat)})
        await wait_for(
            lambda: (
                all(m.live for c in (quiet_chat, busy_chat) for m in _members(hub, c))
                and len(_members(hub, quiet_chat)) == len(_members(hub, busy_chat)) == 1
            ),
            what="both members live",
        )
        [member] = _members(hub, quiet_chat)
        joined_at = member.position
        for i in range(12):
            await _send(crm.sessionmaker, crm.bus, manager, busy_chat, f"busy {i}")
        got = await _events(busy, 12)
        assert [e["message"]["body"] for e in got] == [f"busy {i}" for i in range(12)]
        assert_in_order_once(got)
        await nothing_more(quiet, 0.3)

        # The batches went by without touching the quiet member: the stream's shared
        # position moved past the busy chat's last event, the member's own stayed.
        assert member.group is not None
        stream = member.group.stream
        assert member.live
        assert member.position == joined_at
        assert stream.seen == Position.decode(got[-1]["cursor"])
        assert member not in stream.behind  # the slow-consumer watch skips live members

        # Its own conversation's next event reaches it once, live.
        await _send(crm.sessionmaker, crm.bus, manager, quiet_chat, "for the quiet one")
        [mine] = await _events(quiet, 1)
        assert mine["message"]["body"] == "for the quiet one"
        await nothing_more(quiet, 0.3)
        await nothing_more(busy, 0.1)
        assert member.position == stream.seen == Position.decode(mine["cursor"])
    finally:
        await quiet.close()
        await busy.close()


async def test_an_idle_live_member_is_not_cut_off_while_a_batch_waits_for_its_rendering(
    settings: Any, tokens: dict[Role, str], actors: dict[Role, Actor]
) -> None:
    """A live member that received nothing for longer than ``slow_consumer_after`` has no
    events waiting for it: while a batch waits for its rendering (a slow database), the
    slow-consumer watch must not take it for a client that does not read. Before, the
    watch compared every member's own position with the head: with RT1X's sockets idle
    through a long connect phase, the first batch closed them all with 4008."""
    quick_watch = settings.model_copy(update={"slow_consumer_seconds": 1.0})
    async with serving_in_process(quick_watch, SERVER_WEBSOCKETS) as (base_url, app):
        crm = app.state.crm
        hub: Hub = crm.hub
        manager = actors[Role.MANAGER]
        [chat] = await _chats(crm.sessionmaker, crm.bus, manager, 1)
        ws = await support.WSClient.connect(base_url, tokens[Role.MANAGER])
        try:
            await ws.acknowledged()
            await ws.subscribe(CONVERSATION_EVENTS, {"c": to_global_id("Conversation", chat)})
            await wait_for(
                lambda: [m.live for m in _members(hub, chat)] == [True], what="member live"
            )
            [member] = _members(hub, chat)
            assert member.group is not None
            stream = member.group.stream
            await asyncio.sleep(1.5)  # idle for longer than the watch allows
            # Every rendering slot taken: the batch is read (the head moves past the
            # member's own position) and waits for its rendering.
            slots = [hub.render_slots.acquire() for _ in range(hub.settings.render_concurrency)]
            for taken in slots:
                await taken
            try:
                await _send(crm.sessionmaker, crm.bus, manager, chat, "after a stall")
                await wait_for(lambda: stream.head > member.position, what="the batch read")
                await asyncio.sleep(2.5)  # five turns of the watch
                assert not member.slow_reported
            finally:
                for _ in slots:
                    hub.render_slots.release()
            [mine] = await _events(ws, 1)
            assert mine["message"]["body"] == "after a stall"
            await nothing_more(ws, 0.3)
        finally:
            await ws.close()


async def _next_event(ws: Any, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
    return await next_event(ws, "conversationEvents", timeout)


async def _backlog(
    sessionmaker: Any, bus: Bus, manager: Actor, chat: uuid.UUID, after: str, count: int
) -> None:
    """``count`` events of the chat, all showing its last (big) message, committed in
    batches and announced like the services do."""
    async with support.log_reader(sessionmaker) as conn:
        logged, _, _ = await events.read_events(
            conn, manager.workspace_id, conversations.TOPIC, Position.decode(after), limit=1000
        )
    payload = [e for e in logged if e.entity_id == chat and e.type == "message.created"][-1].payload
    await write_backlog(
        sessionmaker,
        bus,
        manager,
        count,
        topic=conversations.TOPIC,
        type="message.created",
        entity_type="Conversation",
        entity_id=chat,
        payload=payload,
    )


async def test_a_quiet_member_that_stops_reading_catches_up_is_cut_off_and_resumes(
    spawn: Spawn,
    private_redis: RedisServer,
    tokens: dict[Role, str],
    actors: dict[Role, Actor],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    server = await spawn("quiet", CRM_SLOW_CONSUMER_SECONDS=str(SLOW_AFTER))
    manager = actors[Role.MANAGER]
    token = tokens[Role.MANAGER]
    bus = Bus.from_url(private_redis.url)
    channel = channel_name(workspace_id, conversations.TOPIC)
    quiet_chat, busy_chat = await _chats(sessionmaker, bus, manager, 2)
    after = await head_cursor(sessionmaker, workspace_id, conversations.TOPIC)
    slow = await slow_reader(
        server.url,
        token,
        CONVERSATION_EVENTS,
        {"c": to_global_id("Conversation", quiet_chat), "after": after},
    )
    busy = await support.WSClient.connect(server.url, token)
    try:
        await busy.acknowledged()
        await busy.subscribe(
            CONVERSATION_EVENTS, {"c": to_global_id("Conversation", busy_chat), "after": after}
        )
        await wait_for(lambda: private_redis.numsub(channel), what="the server subscribed")
        # Batches of the busy chat only: the quiet member takes nothing from them.
        for i in range(20):
            await _send(sessionmaker, bus, manager, busy_chat, f"busy {i}")
        assert len(await _events(busy, 20)) == 20
        await busy.close()
        with pytest.raises(TimeoutError):
            await _next_event(slow, 0.3)

        # Its own chat's events still come, live, once each.
        for i in range(3):
            await _send(sessionmaker, bus, manager, quiet_chat, BODY if i == 2 else f"mine {i}")
        processed = [await _next_event(slow) for _ in range(3)]
        assert [e["message"]["body"] for e in processed] == ["mine 0", "mine 1", BODY]

        # It stops reading: a backlog far bigger than any socket buffer arrives. The
        # member leaves the live set, waits for its socket and is cut off (the process's
        # only subscription of the stream is released).
        await _backlog(sessionmaker, bus, manager, quiet_chat, after, BACKLOG)

        async def released() -> bool:
            return await private_redis.numsub(channel) == 0

        await wait_for(
            released,
            timeout=SLOW_AFTER + 15,
            interval=0.1,
            what="the slow client cut off",
        )
        on_the_wire, with_code = await read_until_closed(slow, "conversationEvents")
        processed += on_the_wire
        assert with_code == SLOW_CONSUMER, with_code
        assert len(processed) < 3 + BACKLOG, "nothing was held back: the test proves nothing"
        assert_in_order_once(processed)
    finally:
        await slow.close()
        await busy.close()
        await bus.close()

    # A fresh connection after the last processed cursor gets exactly the rest of its chat.
    await resumes_with_the_rest(
        sessionmaker,
        server.url,
        token,
        (workspace_id, conversations.TOPIC, quiet_chat),
        processed,
        (
            "conversationEvents",
            CONVERSATION_EVENTS,
            {"c": to_global_id("Conversation", quiet_chat)},
        ),
        3 + BACKLOG,
    )
