"""Fan-out (issue 7): subscribers with the same document, variables and visibility share
one rendering of each event and receive the same bytes; root-field arguments only choose
events; a subscriber resuming by cursor catches up from the group's rendered payloads and
joins the live set without gap or duplicate. A real uvicorn serves the app inside the
test process, so that the hub's counters can be read."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from websockets.frames import Frame, Opcode

from crm_graphql.models import ActivityType, Channel, Role, User, Workspace
from crm_graphql.realtime import SERVER_WEBSOCKETS, fanout
from crm_graphql.realtime.hub import Hub
from crm_graphql.realtime.unit_of_work import unit_of_work
from crm_graphql.services import activities, auth, conversations, customers
from crm_graphql.services.actor import Actor
from crm_graphql.services.auth import TokenConfig, issue_access_token
from tests import support
from tests.realtime.processes import serving_in_process, wait_for
from tests.realtime.streams import assert_in_order_once, head_cursor

FEED = """subscription($f: ActivityFeedFilter, $after: String) {
  activityFeed(filter: $f, after: $after) { cursor type activity { subject type } }
}"""
INBOX = "subscription { inbox { cursor type conversation { subject } } }"
INBOX_UNREAD = "subscription { inbox { cursor type conversation { subject unreadCount } } }"


@pytest.fixture
async def served(settings: Any) -> AsyncIterator[tuple[str, Starlette]]:
    """Served like ``crm-graphql serve`` serves it."""
    async with serving_in_process(settings, SERVER_WEBSOCKETS) as served:
        yield served


def _hub(app: Starlette) -> Hub:
    return app.state.crm.hub  # type: ignore[no-any-return]


def _token(settings: Any, user: User) -> str:
    return issue_access_token(TokenConfig(secret_key=settings.secret_key), user)[0]


async def _subscribe(
    base_url: str,
    token: str,
    query: str,
    variables: dict[str, Any] | None = None,
    protocol: str = "graphql-transport-ws",
) -> support.WSClient:
    ws = await support.WSClient.connect(base_url, token, protocol=protocol)
    await ws.acknowledged()
    await ws.subscribe(query, variables)
    return ws


async def _frames(ws: support.WSClient, count: int, timeout: float = 10) -> list[str]:  # noqa: ASYNC109
    """The next ``count`` data messages as received: raw text."""
    frames: list[str] = []
    while len(frames) < count:
        text = await asyncio.wait_for(ws.ws.recv(), timeout)
        if json.loads(text)["type"] in ("next", "data"):
            frames.append(text)
    return frames


async def _silent(ws: support.WSClient, seconds: float = 0.5) -> None:
    try:
        message = await ws.receive(timeout=seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {message}")


def _feed(frames: list[str]) -> list[Any]:
    """The ``activityFeed`` events of data frames."""
    return [json.loads(f)["payload"]["data"]["activityFeed"] for f in frames]


def _payload_bytes(frame: str) -> str:
    """The payload part of a data message, exactly as written."""
    start = frame.index('"payload":') + len('"payload":')
    return frame[start:-1]


async def _notes(app: Starlette, actor: Actor, customer_id: uuid.UUID, *subjects: str) -> None:
    """Log notes through the service, one transaction each, announced like mutations do."""
    crm = app.state.crm
    for subject in subjects:
        async with unit_of_work(crm.sessionmaker, crm.bus, actor.workspace_id) as session:
            await activities.create_activity(
                actor,
                session,
                {"type": ActivityType.NOTE, "subject": subject, "customer_id": customer_id},
            )


async def _customer(app: Starlette, actor: Actor) -> uuid.UUID:
    async with app.state.crm.sessionmaker() as session, session.begin():
        return (await customers.create_customer(actor, session, {"name": "Fan-out"})).id  # type: ignore[no-any-return]


async def _agent(app: Starlette, workspace_id: uuid.UUID, name: str) -> User:
    """Another agent of the workspace."""
    async with app.state.crm.sessionmaker() as session, session.begin():
        workspace = await session.get(Workspace, workspace_id)
        return await auth.create_user(
            session,
            workspace=workspace,
            email=f"agent-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=Role.AGENT,
            name=name,
        )


async def test_one_rendering_per_event_and_group_and_the_same_bytes_for_every_socket(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    base_url, app = served
    hub = _hub(app)
    agent, manager = _token(settings, users[Role.AGENT]), _token(settings, users[Role.MANAGER])
    customer = await _customer(app, actors[Role.AGENT])
    only_calls = {"f": {"types": ["CALL"]}}
    sockets = {
        "agent 1": await _subscribe(base_url, agent, FEED),
        "agent 2": await _subscribe(base_url, agent, FEED),
        "agent legacy": await _subscribe(base_url, agent, FEED, protocol="graphql-ws"),
        "manager": await _subscribe(base_url, manager, FEED),
        "agent, calls only": await _subscribe(base_url, agent, FEED, only_calls),
    }
    try:
        await wait_for(lambda: hub.stats()["members"] == len(sockets), what="all subscribed")
        # Two visibility classes (roles); the filter is a root argument: it only chooses.
        assert hub.stats()["groups"] == 2, hub.stats()
        before = hub.stats()
        subjects = ["first", "second", "third"]
        await _notes(app, actors[Role.AGENT], customer, *subjects)
        frames = {
            name: await _frames(ws, 3)
            for name, ws in sockets.items()
            if name != "agent, calls only"
        }
        await _silent(sockets["agent, calls only"])
        after = hub.stats()
    finally:
        for ws in sockets.values():
            await ws.close()

    assert after["renders"] - before["renders"] == 3 * 2, (before, after)
    assert after["deliveries"] - before["deliveries"] == 3 * 4, (before, after)
    payloads = {name: [_payload_bytes(f) for f in got] for name, got in frames.items()}
    assert payloads["agent 1"] == payloads["agent 2"] == payloads["agent legacy"]
    assert [json.loads(p) for p in payloads["manager"]] == [
        json.loads(p) for p in payloads["agent 1"]
    ]
    # The messages are the protocols' own, as Strawberry sends them.
    first = json.loads(frames["agent 1"][0])
    assert first["id"] == "1" and first["type"] == "next", first
    legacy = json.loads(frames["agent legacy"][0])
    assert legacy["type"] == "data" and legacy["id"] == "1", legacy
    feed = _feed(frames["agent 1"])
    assert [e["activity"]["subject"] for e in feed] == subjects
    assert {e["type"] for e in feed} == {"activity.created"}
    assert_in_order_once(feed)
    assert json.loads(frames["agent 1"][0])["payload"].keys() == {"data"}


async def test_the_events_of_one_read_reach_each_socket_in_one_write_as_separate_messages(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    """Events that one read of the log brings (here: one transaction's) go to each live
    socket in one write, and still arrive as one message each, in order."""
    base_url, app = served
    hub = _hub(app)
    agent, manager = _token(settings, users[Role.AGENT]), _token(settings, users[Role.MANAGER])
    customer = await _customer(app, actors[Role.AGENT])
    sockets = [
        await _subscribe(base_url, agent, FEED),
        await _subscribe(base_url, agent, FEED, protocol="graphql-ws"),
        await _subscribe(base_url, manager, FEED),
    ]
    subjects = [f"batched {i}" for i in range(4)]
    try:
        await wait_for(lambda: hub.stats()["members"] == len(sockets), what="all subscribed")
        before = hub.stats()
        crm = app.state.crm
        agent = actors[Role.AGENT]
        async with unit_of_work(crm.sessionmaker, crm.bus, agent.workspace_id) as session:
            for subject in subjects:
                await activities.create_activity(
                    agent,
                    session,
                    {"type": ActivityType.NOTE, "subject": subject, "customer_id": customer},
                )
        got = [_feed(await _frames(ws, len(subjects))) for ws in sockets]
        after = hub.stats()
    finally:
        for ws in sockets:
            await ws.close()
    for feed in got:
        assert [e["activity"]["subject"] for e in feed] == subjects
        assert_in_order_once(feed)
    assert after["deliveries"] - before["deliveries"] == len(subjects) * len(sockets)
    assert after["writes"] - before["writes"] == len(sockets), (before, after)


async def test_a_subscriber_resuming_by_cursor_catches_up_from_shared_renderings(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    base_url, app = served
    hub = _hub(app)
    token = _token(settings, users[Role.AGENT])
    customer = await _customer(app, actors[Role.AGENT])
    live = await _subscribe(base_url, token, FEED)
    resumed = None
    try:
        await wait_for(lambda: hub.stats()["members"] == 1, what="subscribed")
        before = hub.stats()["renders"]
        await _notes(app, actors[Role.AGENT], customer, *[f"note {i}" for i in range(5)])
        seen = _feed(await _frames(live, 5))
        # Resume after the first: four events come from the group's renderings, then live.
        resumed = await _subscribe(base_url, token, FEED, {"after": seen[0]["cursor"]})
        caught_up = _feed(await _frames(resumed, 4))
        assert caught_up == seen[1:]
        await _notes(app, actors[Role.AGENT], customer, "note 5", "note 6")
        more_live = _feed(await _frames(live, 2))
        more_resumed = _feed(await _frames(resumed, 2))
        assert more_resumed == more_live
        await _silent(resumed)
        await _silent(live)
        assert hub.stats()["renders"] - before == 7  # once per event: the group shares them
    finally:
        await live.close()
        if resumed is not None:
            await resumed.close()
    assert [e["activity"]["subject"] for e in caught_up + more_resumed] == [
        f"note {i}" for i in range(1, 7)
    ]
    assert_in_order_once(caught_up + more_resumed)


async def test_the_group_outlives_its_first_member_and_a_stopped_operation_gets_nothing_more(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    base_url, app = served
    hub = _hub(app)
    token = _token(settings, users[Role.AGENT])
    customer = await _customer(app, actors[Role.AGENT])
    first = await _subscribe(base_url, token, FEED)  # its subscription created the group
    second = await _subscribe(base_url, token, FEED)
    try:
        await wait_for(lambda: hub.stats()["members"] == 2, what="subscribed")
        await _notes(app, actors[Role.AGENT], customer, "both")
        assert len(await _frames(first, 1)) == len(await _frames(second, 1)) == 1
        await first.send({"id": "1", "type": "complete"})
        await wait_for(lambda: hub.stats()["members"] == 1, what="the first stopped")
        await _notes(app, actors[Role.AGENT], customer, "second only")
        data = json.loads((await _frames(second, 1))[0])["payload"]["data"]
        assert data["activityFeed"]["activity"]["subject"] == "second only"
        await _silent(first)
        assert hub.stats()["groups"] == 1
    finally:
        await first.close()
        await second.close()


async def test_conversation_selections_share_renderings_only_where_visibility_allows(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    """Two agents with the same inbox document share one group: a public conversation is
    rendered once for both, a private one for its assignee only (and never sent to the
    other). Read state makes a selection per user: one group each."""
    base_url, app = served
    hub = _hub(app)
    first = users[Role.AGENT]
    second = await _agent(app, first.workspace_id, "Second Agent")
    customer = await _customer(app, actors[Role.AGENT])
    tokens = [_token(settings, first), _token(settings, second)]
    shared = [await _subscribe(base_url, token, INBOX) for token in tokens]
    unread = [await _subscribe(base_url, token, INBOX_UNREAD) for token in tokens]
    try:
        await wait_for(lambda: hub.stats()["members"] == 4, what="subscribed")
        assert hub.stats()["groups"] == 1 + 2, hub.stats()
        before = hub.stats()["renders"]
        crm = app.state.crm
        for subject, private in (("private to the first", True), ("public", False)):
            manager = actors[Role.MANAGER]
            async with unit_of_work(crm.sessionmaker, crm.bus, manager.workspace_id) as session:
                await conversations.start_conversation(
                    manager,
                    session,
                    {
                        "customer_id": customer,
                        "channel": Channel.CHAT,
                        "subject": subject,
                        "is_private": private,
                        "assignee_id": first.id if private else None,
                    },
                )
        got = {
            name: [json.loads(f)["payload"]["data"]["inbox"] for f in await _frames(ws, count)]
            for name, ws, count in (
                ("first", shared[0], 2),
                ("second", shared[1], 1),
                ("first unread", unread[0], 2),
                ("second unread", unread[1], 1),
            )
        }
        await _silent(shared[1])
        await _silent(unread[1])
        # private: the assignee's own rendering in each of its two groups; public: the
        # shared group's common rendering plus one per read-state group.
        assert hub.stats()["renders"] - before == 2 + 3, hub.stats()
    finally:
        for ws in shared + unread:
            await ws.close()
    subjects = {n: [e["conversation"]["subject"] for e in events] for n, events in got.items()}
    assert subjects == {
        "first": ["private to the first", "public"],
        "second": ["public"],
        "first unread": ["private to the first", "public"],
        "second unread": ["public"],
    }
    assert got["first"][1] == got["second"][0]
    assert {e["conversation"]["unreadCount"] for e in got["first unread"]} == {0}


async def test_another_websocket_server_gets_per_subscriber_resolution(
    settings: Any, users: dict[Role, User], actors: dict[Role, Actor]
) -> None:
    """Under a server whose connections cannot be written to directly (uvicorn's wsproto
    implementation), each subscriber resolves its events itself, as before fan-out."""
    async with serving_in_process(settings, {"ws": "wsproto"}) as (base_url, app):
        hub = _hub(app)
        token = _token(settings, users[Role.AGENT])
        customer = await _customer(app, actors[Role.AGENT])
        after = await head_cursor(
            app.state.crm.sessionmaker, users[Role.AGENT].workspace_id, activities.TOPIC
        )
        sockets = [await _subscribe(base_url, token, FEED, {"after": after}) for _ in range(2)]
        try:
            await _notes(app, actors[Role.AGENT], customer, "one", "two")
            got = [_feed(await _frames(ws, 2)) for ws in sockets]
            assert hub.stats()["groups"] == 0 and hub.stats()["renders"] == 0, hub.stats()
        finally:
            for ws in sockets:
                await ws.close()
    assert got[0] == got[1]
    assert [e["activity"]["subject"] for e in got[0]] == ["one", "two"]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_pushed_frames_are_the_ones_websockets_builds(size: int) -> None:
    """Pushed events are framed by fanout itself (server side, no extension): the bytes
    must be websockets' own, at every length encoding of RFC 6455."""
    message = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    expected = Frame(Opcode.TEXT, message).serialize(mask=False, extensions=[])
    assert fanout._text_frame_header(len(message)) + message == expected


def _inbox(frame: str) -> Any:
    """The ``inbox`` event of a data frame (a rendering that failed fails the test)."""
    payload = json.loads(frame)["payload"]
    assert not payload.get("errors"), payload
    return payload["data"]["inbox"]


async def test_the_verdict_is_judged_once_per_event_and_group_however_many_subscribers(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    """Twelve agents' sockets (six agents, two each) on one inbox document are one group,
    two managers' sockets another: each conversation event is judged once per group, not
    once per socket. The verdict names who differs: a private conversation reaches its
    assignee's sockets (rendered as the assignee) and the managers' only, and a
    reassignment also reaches the agent who lost it; the other agents get nothing."""
    base_url, app = served
    hub = _hub(app)
    crm = app.state.crm
    agents = [users[Role.AGENT]]
    agents += [await _agent(app, agents[0].workspace_id, f"Agent {i}") for i in range(5)]
    customer = await _customer(app, actors[Role.AGENT])
    by_agent = {
        agent.id: [await _subscribe(base_url, _token(settings, agent), INBOX) for _ in range(2)]
        for agent in agents
    }
    manager_token = _token(settings, users[Role.MANAGER])
    managers = [await _subscribe(base_url, manager_token, INBOX) for _ in range(2)]
    sockets = [ws for pair in by_agent.values() for ws in pair] + managers
    first, second = agents[0].id, agents[1].id
    manager = actors[Role.MANAGER]

    async def write(change: Any) -> Any:
        async with unit_of_work(crm.sessionmaker, crm.bus, manager.workspace_id) as session:
            return await change(session)

    def start(subject: str, assignee: uuid.UUID | None) -> Any:
        data = {
            "customer_id": customer,
            "channel": Channel.CHAT,
            "subject": subject,
            "is_private": assignee is not None,
            "assignee_id": assignee,
        }
        return lambda session: conversations.start_conversation(manager, session, data)

    try:
        await wait_for(lambda: hub.stats()["members"] == len(sockets), what="subscribed")
        assert hub.stats()["groups"] == 2, hub.stats()
        before = hub.stats()
        await write(start("public", None))
        private = await write(start("private", first))
        # An event renders the conversation as it is when rendered: the first agent reads
        # the private one before it is handed to the second.
        early = {id(ws): [_inbox(f) for f in await _frames(ws, 2)] for ws in by_agent[first]}
        await write(lambda s: conversations.assign_conversation(manager, s, private.id, second))
        # The managers see all three events; the group verdicts are counted with them.
        for ws in managers:
            seen = [_inbox(f) for f in await _frames(ws, 3)]
            assert [(e["type"], e["conversation"]["subject"]) for e in seen] == [
                ("conversation.started", "public"),
                ("conversation.started", "private"),
                ("conversation.assigned", "private"),
            ]
        got = {
            agent_id: [
                early.get(id(ws), []) + [_inbox(f) for f in await _frames(ws, expected)]
                for ws in pair
            ]
            for agent_id, pair in by_agent.items()
            for expected in [{first: 1, second: 2}.get(agent_id, 1)]
        }
        for ws in sockets:
            await _silent(ws, 0.3)
        after = hub.stats()
    finally:
        for ws in sockets:
            await ws.close()
    assert after["verdicts"] - before["verdicts"] == 3 * 2, (before, after)
    subjects = {
        agent_id: [
            [(e["type"], (e["conversation"] or {}).get("subject")) for e in events]
            for events in pair
        ]
        for agent_id, pair in got.items()
    }
    public = ("conversation.started", "public")
    for agent_id, pair in subjects.items():
        if agent_id == first:  # assignee, then told it lost it (rendered for everyone)
            expected = [
                public,
                ("conversation.started", "private"),
                ("conversation.assigned", None),
            ]
        elif agent_id == second:  # nothing while it is the first's; then its own
            expected = [public, ("conversation.assigned", "private")]
        else:
            expected = [public]
        assert pair == [expected, expected], agent_id
