"""Typing and presence (ephemeral: Redis only) against a real uvicorn with real WebSocket
clients, and the process's ephemeral fan-out against a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import AuditLog, Channel, Event, Role, User, Workspace
from crm_graphql.realtime.ephemeral import (
    Fanout,
    FanoutSettings,
    Presence,
    PresenceSettings,
    presence_channel,
    presence_key,
)
from crm_graphql.services import api_keys, auth, conversations, customers
from crm_graphql.services.actor import Actor
from tests import support

Sessions = async_sessionmaker[AsyncSession]
Clients = dict[Role, support.GraphQLClient]

TYPING = """subscription($c: ID!) {
  typing(conversationId: $c) { conversationId isTyping at user { id name } }
}"""
SET_TYPING = """mutation($i: SetTypingInput!) {
  setTyping(input: $i) { ok errors { code field message } }
}"""
PRESENCE = "subscription { presence { status at user { id name } } }"
ONLINE = "query { onlineUsers { id name } }"


@pytest.fixture
async def clients(live_server: str, tokens: dict[Role, str]) -> AsyncIterator[Clients]:
    """A GraphQL-over-HTTP client of the live server per role."""
    async with httpx.AsyncClient(base_url=live_server, timeout=20) as http:
        yield {role: support.GraphQLClient(http, token) for role, token in tokens.items()}


@contextlib.asynccontextmanager
async def socket(live_server: str, token: str) -> AsyncIterator[support.WSClient]:
    ws = await support.WSClient.connect(live_server, token)
    try:
        await ws.acknowledged()
        yield ws
    finally:
        await ws.close()


def gid(user: User) -> str:
    return to_global_id("User", user.id)


async def start_conversation(client: support.GraphQLClient, **input: Any) -> str:
    customer = await client('mutation { createCustomer(input: {name: "Ada"}) { customer { id } } }')
    customer_id = customer.ok()["createCustomer"]["customer"]["id"]
    result = await client(
        """mutation($i: StartConversationInput!) {
             startConversation(input: $i) { conversation { id } errors { code } } }""",
        {"i": {"customerId": customer_id, "channel": "CHAT", **input}},
    )
    payload = result.ok()["startConversation"]
    assert payload["errors"] == [], payload
    return payload["conversation"]["id"]  # type: ignore[no-any-return]


async def set_typing(
    client: support.GraphQLClient, conversation: str, is_typing: bool = True
) -> dict[str, Any]:
    result = await client(
        SET_TYPING, {"i": {"conversationId": conversation, "isTyping": is_typing}}
    )
    return result.ok()["setTyping"]  # type: ignore[no-any-return]


async def assert_silent(ws: support.WSClient, seconds: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        message = await ws.receive(timeout=seconds)
        pytest.fail(f"unexpected message {message}")


async def stored_rows(sessionmaker: Sessions, workspace_id: uuid.UUID) -> tuple[int, int]:
    """Audit rows and events of a workspace."""
    async with sessionmaker() as session:
        audits = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.workspace_id == workspace_id)
        )
        events = await session.scalar(
            select(func.count()).select_from(Event).where(Event.workspace_id == workspace_id)
        )
    return int(audits or 0), int(events or 0)


# ------------------------------------------------------------------------- typing


async def test_typing_reaches_the_others_and_not_the_sender(
    live_server: str,
    clients: Clients,
    tokens: dict[Role, str],
    users: dict[Role, User],
    sessionmaker: Sessions,
    workspace: Workspace,
) -> None:
    conversation = await start_conversation(clients[Role.MANAGER])
    async with (
        socket(live_server, tokens[Role.AGENT]) as agent,
        socket(live_server, tokens[Role.MANAGER]) as manager,
    ):
        await agent.subscribe(TYPING, {"c": conversation})
        await manager.subscribe(TYPING, {"c": conversation})
        await asyncio.sleep(0.3)  # the subscriptions are registered
        before = await stored_rows(sessionmaker, workspace.id)

        assert await set_typing(clients[Role.AGENT], conversation) == {"ok": True, "errors": []}
        event = (await manager.next_data())["typing"]
        assert event["conversationId"] == conversation
        assert event["isTyping"] is True and event["at"]
        assert event["user"] == {"id": gid(users[Role.AGENT]), "name": users[Role.AGENT].name}

        # The agent's next message is the manager's signal, published after the agent's
        # own: so the agent was not sent its own.
        assert (await set_typing(clients[Role.MANAGER], conversation, False))["ok"] is True
        event = (await agent.next_data())["typing"]
        assert event["user"]["id"] == gid(users[Role.MANAGER]) and event["isTyping"] is False
        await assert_silent(agent)
        await assert_silent(manager)
        # An ephemeral signal: no audit row, no event, nothing stored.
        assert await stored_rows(sessionmaker, workspace.id) == before


async def test_typing_needs_a_visible_conversation_and_a_writer(
    live_server: str,
    clients: Clients,
    tokens: dict[Role, str],
    sessionmaker: Sessions,
    workspace: Workspace,
) -> None:
    async with sessionmaker() as session, session.begin():
        other_agent = await auth.create_user(
            session,
            workspace=workspace,
            email=f"agent-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=Role.AGENT,
        )
    private = await start_conversation(
        clients[Role.MANAGER], isPrivate=True, assigneeId=gid(other_agent)
    )
    public = await start_conversation(clients[Role.MANAGER])

    denied = await set_typing(clients[Role.AGENT], private)
    assert denied["ok"] is False
    assert [(e["code"], e["field"]) for e in denied["errors"]] == [("NOT_FOUND", "conversationId")]
    unknown = await set_typing(clients[Role.AGENT], to_global_id("Conversation", uuid.uuid4()))
    assert [e["code"] for e in unknown["errors"]] == ["NOT_FOUND"]
    viewer = await set_typing(clients[Role.VIEWER], public)
    assert [e["code"] for e in viewer["errors"]] == ["FORBIDDEN"]

    async with socket(live_server, tokens[Role.AGENT]) as agent:
        await agent.subscribe(TYPING, {"c": private})
        message = await agent.receive()
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "NOT_FOUND", message


async def test_typing_subscription_ends_when_the_conversation_is_no_longer_visible(
    app: Any,
    actors: dict[Role, Actor],
    sessionmaker: Sessions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Visibility is asked again (after the subscription's cache time) per event: an
    agent unassigned from a private conversation stops receiving its typing signals."""
    from crm_graphql.realtime import ephemeral
    from crm_graphql.resolvers import realtime as resolve
    from crm_graphql.resolvers.context import Context

    agent, manager = actors[Role.AGENT], actors[Role.MANAGER]
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(manager, session, {"name": "Ada"})
        private = await conversations.start_conversation(
            manager,
            session,
            {
                "customer_id": customer.id,
                "channel": Channel.CHAT,
                "is_private": True,
                "assignee_id": agent.user_id,
            },
        )
    monkeypatch.setattr(resolve, "CACHE_SECONDS", 0.0)  # ask the database every event
    state = app.state.crm
    info = SimpleNamespace(context=Context(app=state, actor=agent, request_id="test"))
    events = resolve.typing(info, to_global_id("Conversation", private.id))
    channel = ephemeral.typing_channel(agent.workspace_id, private.id)
    signal = {"user_id": str(manager.user_id), "is_typing": True, "at": ephemeral.now_iso()}
    try:
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.3)  # subscribed
        await ephemeral.of(state).fanout.publish(channel, signal)
        value = await asyncio.wait_for(first, 5)
        assert value.user is not None and value.user.id == manager.user_id and value.is_typing

        async with sessionmaker() as session, session.begin():
            await conversations.assign_conversation(manager, session, private.id, manager.user_id)
        await ephemeral.of(state).fanout.publish(channel, signal)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), 5)
    finally:
        await events.aclose()


# ----------------------------------------------------------------------- presence


async def test_presence_follows_a_users_connections(
    live_server: str,
    clients: Clients,
    tokens: dict[Role, str],
    users: dict[Role, User],
    actors: dict[Role, Actor],
    sessionmaker: Sessions,
) -> None:
    agent_id = gid(users[Role.AGENT])

    async def online() -> set[str]:
        return {u["id"] for u in (await clients[Role.VIEWER](ONLINE)).ok()["onlineUsers"]}

    async with socket(live_server, tokens[Role.MANAGER]) as watcher:
        await watcher.subscribe(PRESENCE)
        await asyncio.sleep(0.3)
        assert await online() == {gid(users[Role.MANAGER])}

        async with socket(live_server, tokens[Role.AGENT]):
            event = (await watcher.next_data())["presence"]
            assert event["status"] == "ONLINE" and event["at"]
            assert event["user"] == {"id": agent_id, "name": users[Role.AGENT].name}
            assert agent_id in await online()

            # A second connection of the same user (another tab) changes nothing...
            async with socket(live_server, tokens[Role.AGENT]):
                await assert_silent(watcher)
            # ... and closing one of two neither.
            await assert_silent(watcher)
            assert agent_id in await online()

        event = (await watcher.next_data())["presence"]
        assert (event["status"], event["user"]["id"]) == ("OFFLINE", agent_id)
        assert agent_id not in await online()

        # An API key (an integration) has no presence.
        async with sessionmaker() as session, session.begin():
            _, key = await api_keys.create_api_key(
                actors[Role.ADMIN],
                session,
                name="Chat widget",
                scopes=[api_keys.CONVERSATIONS_READ],
            )
        async with socket(live_server, key):
            await assert_silent(watcher)
        assert await online() == {gid(users[Role.MANAGER])}


# ------------------------------------------------------------- the process fan-out


@pytest.fixture
async def fanout_redis(redis_url: str) -> AsyncIterator[tuple[redis.Redis, str]]:
    """A Redis client whose connections carry a name of their own (to find and kill)."""
    name = f"crm-ephemeral-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url, decode_responses=True, client_name=name)
    yield client, name
    await client.aclose()


async def _eventually(check: Any, seconds: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_fanout_has_one_redis_subscription_per_channel_and_drops_the_oldest(
    fanout_redis: tuple[redis.Redis, str],
) -> None:
    client, _ = fanout_redis
    fanout = Fanout(client, FanoutSettings(queue_size=3, idle_read=0.2))
    await fanout.start()
    channel = f"crm:test:{uuid.uuid4().hex}"

    async def subscriptions() -> int:
        return int(dict(await client.pubsub_numsub(channel))[channel])

    try:
        async with fanout.listen(channel) as a, fanout.listen(channel) as b:
            assert await subscriptions() == 1  # two local listeners, one Redis subscription
            for n in range(5):
                await fanout.publish(channel, {"n": n})
            await _eventually(lambda: _true(a.dropped == 2 and b.dropped == 2))
            assert [(await anext(a))["n"] for _ in range(3)] == [2, 3, 4]  # newest kept
            assert b.queue.qsize() == 3  # b is not slowed down by a, nor a by b
        assert fanout.listeners(channel) == 0

        async def unsubscribed() -> bool:
            return await subscriptions() == 0

        await _eventually(unsubscribed)
    finally:
        await fanout.close()


async def test_fanout_survives_losing_its_redis_connection(
    fanout_redis: tuple[redis.Redis, str], redis_url: str
) -> None:
    client, name = fanout_redis
    fanout = Fanout(client, FanoutSettings(idle_read=0.2))
    await fanout.start()
    channel = f"crm:test:{uuid.uuid4().hex}"
    try:
        async with fanout.listen(channel) as listener:
            await fanout.publish(channel, {"n": 1})
            assert (await asyncio.wait_for(anext(listener), 5)) == {"n": 1}
            # As if Redis restarted: every connection of this client is cut.
            killer = redis.Redis.from_url(redis_url, decode_responses=True)
            try:
                for entry in await killer.client_list():
                    if entry.get("name") == name:
                        with contextlib.suppress(redis.RedisError):
                            await killer.client_kill_filter(_id=entry["id"])
            finally:
                await killer.aclose()

            async def heard_again() -> bool:
                with contextlib.suppress(redis.RedisError):  # the killed publisher, once
                    await fanout.publish(channel, {"n": 2})
                with contextlib.suppress(TimeoutError):
                    return (await asyncio.wait_for(anext(listener), 0.2)) == {"n": 2}
                return False

            await _eventually(heard_again)
    finally:
        await fanout.close()


async def test_presence_of_a_dead_process_expires(redis_url: str) -> None:
    """Two processes' presence in one workspace; one dies without saying goodbye: its
    users go offline (with an event) once their heartbeat is older than ``stale_after``,
    while the living process's users stay online."""
    fast = PresenceSettings(heartbeat=0.2, stale_after=1.0)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    alive, dead = Presence(client, fast), Presence(client, fast)
    fanout = Fanout(client, FanoutSettings(idle_read=0.2))
    await fanout.start()
    await alive.start()
    await dead.start()
    workspace, anna, bert = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        async with fanout.listen(presence_channel(workspace)) as events:
            await dead.opened(dead.register(workspace, anna))
            await alive.opened(alive.register(workspace, bert))
            online = [await asyncio.wait_for(anext(events), 5) for _ in range(2)]
            assert {(e["user_id"], e["status"]) for e in online} == {
                (str(anna), "online"),
                (str(bert), "online"),
            }
            assert set(await alive.online_user_ids(workspace)) == {anna, bert}

            assert dead._heartbeat is not None
            dead._heartbeat.cancel()  # the process dies: no heartbeat, no goodbye
            gone = await asyncio.wait_for(anext(events), 5)
            assert (gone["user_id"], gone["status"]) == (str(anna), "offline")
            assert await alive.online_user_ids(workspace) == [bert]
    finally:
        await alive.close()
        await fanout.close()
        await client.delete(presence_key(workspace))
        await client.aclose()


async def _true(value: bool) -> bool:
    return value


async def test_a_burst_of_connections_leaves_presence_exact(redis_url: str) -> None:
    """Thousands of connections opening and closing at once (a reconnect storm after a
    restart) over two workspaces: their presence changes go out in batches, in the
    order they came, so what Redis holds afterwards is exactly the connections still
    open, and the offline events name exactly the users whose last connection closed."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    presence = Presence(client, PresenceSettings(heartbeat=3600, stale_after=3600))
    workspaces = [uuid.uuid4(), uuid.uuid4()]
    users = [uuid.uuid4() for _ in range(2_500)]  # 5,000 connections: one at a time, behind
    # a lock, the last of them waited past the 2 s Redis timeout and were never added
    try:
        opened = [
            (workspaces[i % 2], user, presence.register(workspaces[i % 2], user))
            for i, user in enumerate(users)
            for _ in range(2)  # two connections each
        ]

        async def open_then_maybe_close(index: int, connection_id: str) -> None:
            await presence.opened(connection_id)
            if index % 3 == 0:  # a third close again at once, racing the others
                await presence.closed(connection_id)

        await asyncio.gather(*(open_then_maybe_close(i, c) for i, (_, _, c) in enumerate(opened)))
        for workspace in workspaces:
            expected = {
                f"{user}:{c}"
                for i, (w, user, c) in enumerate(opened)
                if w == workspace and i % 3 != 0
            }
            assert set(await client.zrange(presence_key(workspace), 0, -1)) == expected
            assert set(await presence.online_user_ids(workspace)) == {
                uuid.UUID(member.partition(":")[0]) for member in expected
            }
    finally:
        await presence.close()
        for workspace in workspaces:
            assert await client.zcard(presence_key(workspace)) == 0
        await client.aclose()


async def test_a_heartbeat_refreshes_every_connection_in_slices(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat refreshes a process's connections a slice at a time (one script call
    each, a short turn of the loop each), every one of them, and never revives one that
    closed before its slice went out."""
    from crm_graphql.realtime import ephemeral

    monkeypatch.setattr(ephemeral, "HEARTBEAT_SLICE", 3)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    presence = Presence(client, PresenceSettings(heartbeat=0.2, stale_after=3600))
    workspace = uuid.uuid4()
    calls: list[int] = []
    script = presence._script

    users = [uuid.uuid4() for _ in range(8)]
    ids = [presence.register(workspace, user) for user in users]
    closed = presence.connections[ids[7]].member

    async def counted(*, keys: Any, args: Any, client: Any = None) -> Any:
        calls.append(len(args) - 6)  # the members of this call
        # The last connection closes while the first slice is sent, before its own.
        presence.connections.pop(ids[7], None)
        return await script(keys=keys, args=args, client=client)

    presence._script = counted  # type: ignore[assignment]
    await presence.start()
    try:
        await _eventually(lambda: _true(len(calls) >= 3))
        members = set(await client.zrange(presence_key(workspace), 0, -1))
    finally:
        await presence.close()
        await client.delete(presence_key(workspace))
        for user in users:
            await client.delete(f"{presence_key(workspace)}:{user}")
        await client.aclose()
    assert calls[:3] == [3, 3, 1]
    assert members == {f"{user}:{i}" for user, i in zip(users[:7], ids[:7], strict=True)}
    assert closed not in members
