"""Subscriptions over real WebSockets against a real uvicorn: delivery, resume by cursor,
authentication on connect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from crm_graphql.models import Role, User
from tests import support

BOARD = """subscription($p: ID!, $after: String) {
  dealBoard(pipelineId: $p, after: $after) { cursor type deal { title stage { name } } }
}"""
FEED = """subscription($after: String) {
  activityFeed(after: $after) { cursor type activity { subject type } }
}"""


@pytest.fixture
async def http(live_server: str, tokens: dict[Role, str]) -> AsyncIterator[support.GraphQLClient]:
    async with httpx.AsyncClient(base_url=live_server, timeout=20) as client:
        yield support.GraphQLClient(client, tokens[Role.MANAGER])


async def _pipeline(http: support.GraphQLClient) -> tuple[str, list[str]]:
    data = (
        await http(
            """mutation { createPipeline(input: {name: "Board", stages: [{name: "A"}, {name: "B"}]}) {
                 pipeline { id stages { id } } errors { message } } }"""
        )
    ).ok()["createPipeline"]["pipeline"]
    return data["id"], [s["id"] for s in data["stages"]]


async def _deal(http: support.GraphQLClient, pipeline: str, title: str) -> str:
    data = (
        await http(
            'mutation($p: ID!, $t: String!) { createDeal(input: {pipelineId: $p, title: $t, currency: "EUR"}) { deal { id } errors { message } } }',
            {"p": pipeline, "t": title},
        )
    ).ok()["createDeal"]
    assert data["errors"] == [], data
    return data["deal"]["id"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_deal_board_delivers_live_events_on_both_protocols(
    live_server: str, http: support.GraphQLClient, tokens: dict[Role, str], protocol: str
) -> None:
    pipeline, stages = await _pipeline(http)
    ws = await support.WSClient.connect(live_server, tokens[Role.AGENT], protocol=protocol)
    try:
        await ws.acknowledged()
        await ws.subscribe(BOARD, {"p": pipeline})
        await asyncio.sleep(0.3)  # the subscription is registered
        deal = await _deal(http, pipeline, "Live one")
        event = (await ws.next_data())["dealBoard"]
        assert event["type"] == "deal.created"
        assert event["deal"] == {"title": "Live one", "stage": {"name": "A"}}
        moved = await http(
            "mutation($d: ID!, $s: ID!) { moveDeal(input: {id: $d, stageId: $s}) { errors { code } } }",
            {"d": deal, "s": stages[1]},
        )
        assert moved.ok()["moveDeal"]["errors"] == []
        event = (await ws.next_data())["dealBoard"]
        assert event["type"] == "deal.moved" and event["deal"]["stage"] == {"name": "B"}
    finally:
        await ws.close()


async def test_resume_after_cursor_replays_what_was_missed_then_goes_live(
    live_server: str, http: support.GraphQLClient, tokens: dict[Role, str]
) -> None:
    pipeline, _ = await _pipeline(http)
    ws = await support.WSClient.connect(live_server, tokens[Role.AGENT])
    await ws.acknowledged()
    await ws.subscribe(BOARD, {"p": pipeline})
    await asyncio.sleep(0.3)
    await _deal(http, pipeline, "first")
    first = (await ws.next_data())["dealBoard"]
    await ws.close()
    # Offline: three more deals.
    for title in ("second", "third", "fourth"):
        await _deal(http, pipeline, title)
    ws = await support.WSClient.connect(live_server, tokens[Role.AGENT])
    try:
        await ws.acknowledged()
        await ws.subscribe(BOARD, {"p": pipeline, "after": first["cursor"]})
        missed = [(await ws.next_data())["dealBoard"]["deal"]["title"] for _ in range(3)]
        assert missed == ["second", "third", "fourth"]
        await _deal(http, pipeline, "fifth")
        assert (await ws.next_data())["dealBoard"]["deal"]["title"] == "fifth"
        with pytest.raises(TimeoutError):  # and nothing twice
            await ws.receive(timeout=0.5)
    finally:
        await ws.close()


async def test_activity_feed_streams_logged_activities(
    live_server: str, http: support.GraphQLClient, tokens: dict[Role, str]
) -> None:
    ws = await support.WSClient.connect(live_server, tokens[Role.VIEWER])
    try:
        await ws.acknowledged()
        await ws.subscribe(FEED)
        await asyncio.sleep(0.3)
        customer = (
            await http('mutation { createCustomer(input: {name: "Feed"}) { customer { id } } }')
        ).ok()
        cid = customer["createCustomer"]["customer"]["id"]
        created = await http(
            'mutation($c: ID!) { createActivity(input: {type: CALL, subject: "Rang", customerId: $c}) { errors { code } } }',
            {"c": cid},
        )
        assert created.ok()["createActivity"]["errors"] == []
        event = (await ws.next_data())["activityFeed"]
        assert event["type"] == "activity.created"
        assert event["activity"] == {"subject": "Rang", "type": "CALL"}
    finally:
        await ws.close()


@pytest.mark.parametrize(
    ("protocol", "payload", "code"),
    [
        ("graphql-transport-ws", {}, 4403),
        ("graphql-transport-ws", {"Authorization": "Bearer nonsense"}, 4403),
        ("graphql-ws", {"Authorization": "Bearer nonsense"}, 4403),
    ],
)
async def test_missing_or_invalid_credentials_close_the_socket(
    live_server: str, protocol: str, payload: dict[str, Any], code: int
) -> None:
    ws = await support.WSClient.connect(live_server, None, protocol=protocol, payload=payload)
    import websockets

    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            message = await ws.receive()
            assert message["type"] in ("connection_error",), message
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_subscribe_before_init_is_unauthorized(live_server: str) -> None:
    import websockets

    ws = await websockets.connect(
        live_server.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]
    )
    await ws.send(
        '{"id": "1", "type": "subscribe", "payload": {"query": "subscription { inbox { cursor } }"}}'
    )
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_foreign_pipeline_gives_an_error_not_events(
    live_server: str, tokens: dict[Role, str], sessionmaker: Any
) -> None:
    from crm_graphql.global_ids import to_global_id
    from crm_graphql.services import auth, deals
    from crm_graphql.services.actor import Actor

    async with sessionmaker() as session, session.begin():
        other = await auth.create_workspace(session, name=f"Other {id(session)}")
        actor = Actor(workspace_id=other.id, role=Role.ADMIN)
        foreign = await deals.create_pipeline(actor, session, {"name": "Theirs"})
    ws = await support.WSClient.connect(live_server, tokens[Role.ADMIN])
    try:
        await ws.acknowledged()
        await ws.subscribe(BOARD, {"p": to_global_id("Pipeline", foreign.id)})
        message = await ws.receive()
        # The subscription ends with a GraphQL error and never yields data.
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert message["type"] == "error" or message["payload"]["data"] is None, message
        assert errors[0]["extensions"]["code"] == "NOT_FOUND"
        assert (await ws.receive())["type"] == "complete"
    finally:
        await ws.close()


async def test_concurrent_writers_committing_out_of_order_are_delivered_once_in_order(
    live_server: str, tokens: dict[Role, str], database_url: str, actors: Any, redis_url: str
) -> None:
    """20 transactions take their event ids in one order and commit in another; the
    subscriber still gets every event exactly once, in one consistent order."""
    import random

    from crm_graphql.db.engine import make_engine, make_sessionmaker
    from crm_graphql.models import ActivityType
    from crm_graphql.realtime.bus import Bus
    from crm_graphql.realtime.unit_of_work import unit_of_work
    from crm_graphql.services import activities, customers

    agent = actors[Role.AGENT]
    engine = make_engine(database_url, pool_size=20)  # one connection per writer
    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        # One customer per writer: they touch different rows and never wait on each other.
        people = [
            await customers.create_customer(agent, session, {"name": f"Busy {i}"})
            for i in range(20)
        ]
    ws = await support.WSClient.connect(live_server, tokens[Role.AGENT])
    bus = Bus.from_url(redis_url)
    rng = random.Random(7)
    started = asyncio.Barrier(20)

    async def writer(i: int) -> str:
        async with unit_of_work(sessionmaker, bus, agent.workspace_id) as session:
            activity = await activities.create_activity(
                agent,
                session,
                {
                    "type": ActivityType.NOTE,
                    "subject": f"note {i}",
                    "customer_id": people[i].id,
                },
            )
            await started.wait()  # all 20 hold their event rows, uncommitted
            await asyncio.sleep(rng.random() * 0.4)
        return str(activity.id)

    try:
        await ws.acknowledged()
        await ws.subscribe("subscription { activityFeed { cursor activity { subject } } }")
        await asyncio.sleep(0.3)
        await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(20))), 30)
        received = [(await ws.next_data())["activityFeed"] for _ in range(20)]
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=1.0)
    finally:
        await ws.close()
        await bus.close()
        await engine.dispose()
    subjects = [e["activity"]["subject"] for e in received]
    assert sorted(subjects) == sorted(f"note {i}" for i in range(20))
    assert len(set(subjects)) == 20
    from crm_graphql.services.events import Position

    positions = [Position.decode(e["cursor"]) for e in received]
    assert positions == sorted(positions) and len(set(positions)) == 20
    # A late subscriber replaying from the start of this burst sees the same order.
    ws = await support.WSClient.connect(live_server, tokens[Role.AGENT])
    try:
        await ws.acknowledged()
        first = Position.decode(received[0]["cursor"])
        before_first = Position(first.txid, first.id - 1).encode()
        await ws.subscribe(
            "subscription($a: String) { activityFeed(after: $a) { cursor activity { subject } } }",
            {"a": before_first},
        )
        replay = [(await ws.next_data())["activityFeed"]["activity"]["subject"] for _ in range(20)]
        assert replay == subjects
    finally:
        await ws.close()


CONVERSATION_EVENTS = """subscription($c: ID!, $after: String) {
  conversationEvents(conversationId: $c, after: $after) {
    cursor type message { seq body } conversation { status assignee { email } }
  }
}"""
INBOX = "subscription { inbox { type conversation { subject } message { body } } }"


async def _conversation(http: support.GraphQLClient, subject: str, **extra: Any) -> str:
    customer = (
        await http('mutation { createCustomer(input: {name: "Chatty"}) { customer { id } } }')
    ).ok()
    data = (
        await http(
            "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } errors { code } } }",
            {
                "i": {
                    "customerId": customer["createCustomer"]["customer"]["id"],
                    "channel": "CHAT",
                    "subject": subject,
                    **extra,
                }
            },
        )
    ).ok()["startConversation"]
    assert data["errors"] == [], data
    return data["conversation"]["id"]  # type: ignore[no-any-return]


async def _send(http: support.GraphQLClient, conversation: str, body: str) -> None:
    sent = await http(
        "mutation($c: ID!, $b: String!) { sendMessage(input: {conversationId: $c, body: $b}) { errors { code } } }",
        {"c": conversation, "b": body},
    )
    assert sent.ok()["sendMessage"]["errors"] == []


async def test_unassigned_agent_stops_receiving_a_private_conversation(
    live_server: str, http: support.GraphQLClient, tokens: dict[Role, str], users: dict[Role, User]
) -> None:
    from crm_graphql.global_ids import to_global_id

    agent_id = to_global_id("User", users[Role.AGENT].id)
    conversation = await _conversation(http, "Private", isPrivate=True, assigneeId=agent_id)
    ws = await support.WSClient.connect(live_server, tokens[Role.AGENT])
    try:
        await ws.acknowledged()
        await ws.subscribe(CONVERSATION_EVENTS, {"c": conversation})
        await asyncio.sleep(0.3)
        await _send(http, conversation, "hello agent")
        event = (await ws.next_data())["conversationEvents"]
        assert event["type"] == "message.created" and event["message"]["body"] == "hello agent"
        manager_id = to_global_id("User", users[Role.MANAGER].id)
        reassigned = await http(
            "mutation($c: ID!, $a: ID) { assignConversation(input: {id: $c, assigneeId: $a}) { errors { code } } }",
            {"c": conversation, "a": manager_id},
        )
        assert reassigned.ok()["assignConversation"]["errors"] == []
        # The agent is told about the reassignment, then the subscription ends.
        told = await ws.receive()
        assert (
            told["type"] == "next"
            and told["payload"]["data"]["conversationEvents"]["type"] == "conversation.assigned"
        )
        assert (
            told["payload"]["data"]["conversationEvents"]["conversation"] is None
        )  # no longer visible
        assert (await ws.receive())["type"] == "complete"
        await _send(http, conversation, "secret now")
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=1.0)
        # Resubscribing is refused.
        await ws.subscribe(CONVERSATION_EVENTS, {"c": conversation})
        refused = await ws.receive()
        errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    finally:
        await ws.close()


async def test_inbox_shows_only_conversations_the_agent_may_see(
    live_server: str, http: support.GraphQLClient, tokens: dict[Role, str], users: dict[Role, User]
) -> None:
    from crm_graphql.global_ids import to_global_id

    manager_id = to_global_id("User", users[Role.MANAGER].id)
    ws = await support.WSClient.connect(live_server, tokens[Role.AGENT])
    try:
        await ws.acknowledged()
        await ws.subscribe(INBOX)
        await asyncio.sleep(0.3)
        hidden = await _conversation(http, "Manager only", isPrivate=True, assigneeId=manager_id)
        await _send(http, hidden, "not for agents")
        public = await _conversation(http, "Everyone")
        await _send(http, public, "hi all")
        first = (await ws.next_data())["inbox"]
        second = (await ws.next_data())["inbox"]
        assert (first["type"], first["conversation"]["subject"]) == (
            "conversation.started",
            "Everyone",
        )
        assert (second["type"], second["message"]["body"]) == ("message.created", "hi all")
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.8)
    finally:
        await ws.close()


async def test_an_api_keys_inbox_gets_nothing_of_a_private_conversation(
    live_server: str, http: support.GraphQLClient, tokens: dict[Role, str], users: dict[Role, User]
) -> None:
    """An API key sees public conversations only: neither a private conversation's start
    nor its first assignment (no previous assignee, like a key's own missing user)
    reaches its inbox; a public conversation's events do."""
    from crm_graphql.global_ids import to_global_id

    admin = support.GraphQLClient(http.http, tokens[Role.ADMIN])
    created = (
        await admin(
            'mutation { createApiKey(input: {name: "Inbox", scopes: [CONVERSATIONS_READ]}) '
            "{ token errors { code } } }"
        )
    ).ok()["createApiKey"]
    assert created["errors"] == [], created
    ws = await support.WSClient.connect(live_server, created["token"])
    try:
        await ws.acknowledged()
        await ws.subscribe(INBOX)
        await asyncio.sleep(0.3)
        private = await _conversation(http, "Private", isPrivate=True)
        assigned = await http(
            "mutation($c: ID!, $a: ID) { assignConversation(input: {id: $c, assigneeId: $a}) { errors { code } } }",
            {"c": private, "a": to_global_id("User", users[Role.AGENT].id)},
        )
        assert assigned.ok()["assignConversation"]["errors"] == []
        await _conversation(http, "Public")
        event = (await ws.next_data())["inbox"]
        assert (event["type"], event["conversation"]["subject"]) == (
            "conversation.started",
            "Public",
        )
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.8)
    finally:
        await ws.close()
