"""Conversations: gap-free message order, idempotent retries, who sees what, unread,
assignment, customer messages through API keys, and the events every change writes."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import (
    ApiKey,
    AuditLog,
    Conversation,
    ConversationStatus,
    Customer,
    Event,
    Message,
    MessageAuthorType,
    Role,
    User,
    Workspace,
)
from crm_graphql.services import api_keys, auth, conversations, customers, events
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from crm_graphql.services.events import CHANGES_TOPIC
from crm_graphql.storage import querying
from tests import support

Sessions = async_sessionmaker[AsyncSession]
PAGE = querying.PageRequest(first=100)
CONVERSATION_KEYS = {
    "conversation_id",
    "customer_id",
    "assignee_id",
    "is_private",
    "status",
    "channel",
    "last_message_seq",
    "version",
}
MESSAGE_KEYS = {
    "message_id",
    "seq",
    "author_type",
    "author_user_id",
    "body",
    "client_message_id",
    "created_at",
}


# ---------------------------------------------------------------------------- helpers


async def make_user(sessionmaker: Sessions, workspace_id: uuid.UUID, role: Role) -> Actor:
    async with sessionmaker() as s, s.begin():
        workspace = await s.get(Workspace, workspace_id)
        assert workspace is not None
        user = await auth.create_user(
            s,
            workspace=workspace,
            email=f"{role.value}-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=role,
        )
    return Actor(workspace_id=workspace_id, role=role, user_id=user.id)


@pytest.fixture
async def other_agent(sessionmaker: Sessions, agent: Actor) -> Actor:
    return await make_user(sessionmaker, agent.workspace_id, Role.AGENT)


@pytest.fixture
async def customer(sessionmaker: Sessions, agent: Actor) -> Customer:
    async with sessionmaker() as s, s.begin():
        return await customers.create_customer(agent, s, {"name": "Ada"})


async def key_actor(sessionmaker: Sessions, admin: Actor, *scopes: str) -> Actor:
    """The actor of a freshly created API key, as authentication builds it."""
    async with sessionmaker() as s, s.begin():
        _, token = await api_keys.create_api_key(admin, s, name="Chat widget", scopes=scopes)
    async with sessionmaker() as s, s.begin():
        return await api_keys.authenticate_api_key(s, token)


@pytest.fixture
async def channel(sessionmaker: Sessions, admin: Actor) -> Actor:
    """A channel integration: an API key that may write conversations."""
    return await key_actor(sessionmaker, admin, api_keys.CONVERSATIONS_WRITE)


async def start(
    sessionmaker: Sessions, actor: Actor, customer: Customer, **data: Any
) -> Conversation:
    async with sessionmaker() as s, s.begin():
        return await conversations.start_conversation(
            actor, s, {"customer_id": customer.id, "channel": "chat", **data}
        )


async def send(
    sessionmaker: Sessions,
    actor: Actor,
    conversation_id: uuid.UUID,
    body: str = "Hello",
    client_message_id: str | None = None,
) -> Message:
    async with sessionmaker() as s, s.begin():
        return await conversations.send_message(
            actor, s, conversation_id, body=body, client_message_id=client_message_id
        )


async def post(
    sessionmaker: Sessions,
    actor: Actor,
    conversation_id: uuid.UUID,
    body: str = "Hi there",
    client_message_id: str | None = None,
) -> Message:
    async with sessionmaker() as s, s.begin():
        return await conversations.post_customer_message(
            actor, s, conversation_id, body=body, client_message_id=client_message_id
        )


async def reload(sessionmaker: Sessions, conversation_id: uuid.UUID) -> Conversation:
    async with sessionmaker() as s:
        found = await s.get(Conversation, conversation_id)
        assert found is not None
        return found


async def events_of(sessionmaker: Sessions, conversation_id: uuid.UUID) -> list[Event]:
    async with sessionmaker() as s:
        rows = await s.scalars(
            select(Event)
            .where(Event.entity_id == conversation_id, Event.topic != CHANGES_TOPIC)
            .order_by(Event.id)
        )
        return list(rows)


async def seqs(sessionmaker: Sessions, conversation_id: uuid.UUID) -> list[int]:
    async with sessionmaker() as s:
        rows = await s.scalars(
            select(Message.seq).where(Message.conversation_id == conversation_id)
        )
        return sorted(rows)


async def listed(sessionmaker: Sessions, actor: Actor, filter: Any = None) -> set[uuid.UUID]:
    async with sessionmaker() as s:
        page = await querying.list_page(
            actor, s, conversations.CONVERSATIONS, filter=filter, page=PAGE
        )
        return {c.id for c in page.items}


async def unread(sessionmaker: Sessions, actor: Actor, conversation_id: uuid.UUID) -> int | None:
    async with sessionmaker() as s:
        return (await conversations.unread_counts(actor, s, [conversation_id])).get(conversation_id)


# ------------------------------------------------------------------- order and retries


async def test_concurrent_senders_get_gap_free_seq(
    sessionmaker: Sessions, agent: Actor, manager: Actor, customer: Customer
) -> None:
    conversation = await start(sessionmaker, agent, customer)
    senders = [agent, manager] * 5
    sent = await asyncio.gather(
        *(send(sessionmaker, a, conversation.id, f"message {i}") for i, a in enumerate(senders))
    )
    assert sorted(m.seq for m in sent) == list(range(1, 11))
    assert await seqs(sessionmaker, conversation.id) == list(range(1, 11))
    stored = await reload(sessionmaker, conversation.id)
    assert stored.last_message_seq == 10
    assert stored.version == conversation.version  # messages do not bump the version
    created = [
        e for e in await events_of(sessionmaker, conversation.id) if e.type == "message.created"
    ]
    assert sorted(e.payload["seq"] for e in created) == list(range(1, 11))


async def test_a_message_is_two_statements_the_first_taking_the_event_lock(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    """sendMessage (M1, issue 14 point 4): the conversation's event lock is taken by the
    statement that advances ``seq`` (it was a statement of its own); a retry's path,
    which reads before it writes, still takes it first, apart."""
    conversation = await start(sessionmaker, agent, customer)
    with support.Statements(sessionmaker) as sent:
        await send(sessionmaker, agent, conversation.id, "one trip fewer")
    assert len(sent) == 2, sent
    assert "pg_advisory_xact_lock" in sent[0] and "UPDATE conversations" in sent[0]
    with support.Statements(sessionmaker) as sent:
        await send(sessionmaker, agent, conversation.id, "retried", client_message_id="r-1")
    assert "pg_advisory_xact_lock" in sent[1] and "UPDATE" not in sent[1], sent
    assert sum("pg_advisory_xact_lock" in statement for statement in sent) == 1, sent


async def test_a_conversations_events_are_stored_in_the_order_of_its_changes(
    sessionmaker: Sessions,
    agent: Actor,
    manager: Actor,
    customer: Customer,
    channel: Actor,
) -> None:
    """Every writer of a conversation's events at once (agents' and the customer's
    messages, status, assignment, read receipts): read as streams read them, in
    (txid, id) order, the messages come in ``seq`` order and every event's
    ``last_message_seq`` and ``version`` never go back."""
    conversation = await start(sessionmaker, agent, customer)

    async def change(number: int) -> Any:
        async with sessionmaker() as s, s.begin():
            kind = number % 6
            if kind == 0:
                return await conversations.post_customer_message(
                    channel, s, conversation.id, body=f"customer {number}"
                )
            if kind == 1:
                status = "pending" if number % 4 == 1 else "open"
                return await conversations.set_conversation_status(
                    manager, s, conversation.id, status
                )
            if kind == 2:
                assignee = agent if number % 4 == 2 else manager
                return await conversations.assign_conversation(
                    manager, s, conversation.id, assignee.user_id
                )
            if kind == 3:
                return await conversations.mark_conversation_read(agent, s, conversation.id)
            sender = agent if kind == 4 else manager
            return await conversations.send_message(
                sender, s, conversation.id, body=f"agent {number}"
            )

    await asyncio.gather(*(change(n) for n in range(60)))
    async with support.log_reader(sessionmaker) as conn:
        stream, _, _ = await events.read_events(
            conn, agent.workspace_id, conversations.TOPIC, events.ORIGIN, limit=1000
        )
    mine = [e for e in stream if e.entity_id == conversation.id]
    messages = [e.payload["seq"] for e in mine if e.type == "message.created"]
    assert messages == list(range(1, len(messages) + 1)), messages
    for field in ("last_message_seq", "version"):
        values = [e.payload[field] for e in mine]
        assert values == sorted(values), (field, [(e.type, e.payload[field]) for e in mine])


@pytest.mark.parametrize(
    "write",
    ["send_message", "post_customer_message", "set_status", "assign", "mark_read"],
)
async def test_a_writer_of_conversation_events_fails_loudly_after_an_earlier_write(
    sessionmaker: Sessions,
    agent: Actor,
    manager: Actor,
    customer: Customer,
    channel: Actor,
    write: str,
) -> None:
    """Each writer of an existing conversation's events takes the conversation's lock
    before anything in its transaction writes (else its events could be read out of
    order): code that wrote first is a bug, and says so instead of passing silently."""
    conversation = await start(sessionmaker, agent, customer, body="Hello")
    calls = {
        "send_message": lambda s: conversations.send_message(agent, s, conversation.id, body="Hi"),
        "post_customer_message": lambda s: conversations.post_customer_message(
            channel, s, conversation.id, body="Hi"
        ),
        "set_status": lambda s: conversations.set_conversation_status(
            manager, s, conversation.id, "closed"
        ),
        "assign": lambda s: conversations.assign_conversation(
            manager, s, conversation.id, agent.user_id
        ),
        "mark_read": lambda s: conversations.mark_conversation_read(agent, s, conversation.id),
    }
    async with sessionmaker() as s, s.begin():
        await customers.create_customer(manager, s, {"name": "Written first"})
        await s.flush()
        with pytest.raises(conversations.WrittenBeforeLock):
            await calls[write](s)
    async with sessionmaker() as s, s.begin():
        await calls[write](s)  # first in its transaction: fine


async def test_retry_with_the_same_client_message_id_returns_the_first_message(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    conversation = await start(sessionmaker, agent, customer)
    first = await send(sessionmaker, agent, conversation.id, "Hello", "c-1")
    again = await send(sessionmaker, agent, conversation.id, "Hello", "c-1")
    assert again.id == first.id and again.seq == first.seq == 1
    assert await seqs(sessionmaker, conversation.id) == [1]
    created = [
        e for e in await events_of(sessionmaker, conversation.id) if e.type == "message.created"
    ]
    assert len(created) == 1
    async with sessionmaker() as s:
        audited = await s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.entity_id == first.id)
        )
    assert audited == 1
    # The same ID for another text is a client bug: say so instead of dropping the text.
    with pytest.raises(Conflict) as error:
        await send(sessionmaker, agent, conversation.id, "Something else", "c-1")
    assert error.value.field == "clientMessageId"


async def test_racing_identical_retries_create_one_message(
    sessionmaker: Sessions, agent: Actor, customer: Customer, channel: Actor
) -> None:
    conversation = await start(sessionmaker, agent, customer)
    agent_tries = await asyncio.gather(
        *(send(sessionmaker, agent, conversation.id, "Once", "dup") for _ in range(6))
    )
    customer_tries = await asyncio.gather(
        *(post(sessionmaker, channel, conversation.id, "Me too", "wa-77") for _ in range(4))
    )
    assert len({m.id for m in agent_tries}) == 1
    assert len({m.id for m in customer_tries}) == 1
    assert await seqs(sessionmaker, conversation.id) == [1, 2]
    created = [
        e for e in await events_of(sessionmaker, conversation.id) if e.type == "message.created"
    ]
    assert [e.payload["client_message_id"] for e in created] == ["dup", "wa-77"]


async def test_message_body_is_required_and_bounded(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    conversation = await start(sessionmaker, agent, customer)
    for body in ("", "   ", "x" * 10_001):
        with pytest.raises(Invalid) as error:
            await send(sessionmaker, agent, conversation.id, body)
        assert error.value.field == "body"
    longest = await send(sessionmaker, agent, conversation.id, "x" * 10_000)
    assert longest.seq == 1  # failed sends used no seq


# --------------------------------------------------------------------------- visibility


def test_can_see_matches_the_visibility_rule() -> None:
    workspace, me, someone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def user(role: Role) -> Actor:
        return Actor(workspace_id=workspace, role=role, user_id=me)

    def key(*scopes: str) -> Actor:
        return Actor(
            workspace_id=workspace,
            role=Role.AGENT,
            api_key_id=uuid.uuid4(),
            scopes=frozenset(scopes),
        )

    for role in (Role.ADMIN, Role.MANAGER):
        assert conversations.can_see(user(role), is_private=True, assignee_id=someone)
    for role in (Role.AGENT, Role.VIEWER):
        assert conversations.can_see(user(role), is_private=False, assignee_id=someone)
        assert conversations.can_see(user(role), is_private=True, assignee_id=me)
        assert not conversations.can_see(user(role), is_private=True, assignee_id=someone)
        assert not conversations.can_see(user(role), is_private=True, assignee_id=None)
    reader = key(api_keys.CONVERSATIONS_READ)
    assert conversations.can_see(reader, is_private=False, assignee_id=None)
    assert not conversations.can_see(reader, is_private=True, assignee_id=None)
    assert not conversations.can_see(key(api_keys.DEALS_READ), is_private=False, assignee_id=None)


async def test_private_conversation_of_another_agent_does_not_exist_for_an_agent(
    sessionmaker: Sessions,
    agent: Actor,
    other_agent: Actor,
    manager: Actor,
    viewer: Actor,
    customer: Customer,
) -> None:
    private = await start(
        sessionmaker, manager, customer, is_private=True, assignee_id=other_agent.user_id, body="Hi"
    )
    public = await start(sessionmaker, manager, customer)

    with pytest.raises(NotFound):
        await send(sessionmaker, agent, private.id, "Let me in")
    for change in (
        lambda s: conversations.assign_conversation(agent, s, private.id, agent.user_id),
        lambda s: conversations.set_conversation_status(agent, s, private.id, "closed"),
        lambda s: conversations.mark_conversation_read(agent, s, private.id),
        lambda s: conversations.get_visible(agent, s, private.id),
    ):
        async with sessionmaker() as s, s.begin():
            with pytest.raises(NotFound):
                await change(s)
    assert await listed(sessionmaker, agent) == {public.id}
    assert await listed(sessionmaker, viewer) == {public.id}
    # Nested under the customer too: the list statement carries the rule.
    async with sessionmaker() as s:
        pages = await querying.pages_by_parent(
            agent, s, conversations.CONVERSATIONS, "customer_id", [customer.id], page=PAGE
        )
        counts = await querying.counts_by_parent(
            agent, s, conversations.CONVERSATIONS, "customer_id", [customer.id]
        )
    assert [c.id for c in pages[customer.id].items] == [public.id]
    assert counts[customer.id] == 1

    # The assignee and managers see it and write into it.
    assert (await send(sessionmaker, other_agent, private.id, "On it")).seq == 2
    assert (await send(sessionmaker, manager, private.id, "Thanks")).seq == 3
    assert await listed(sessionmaker, other_agent) == {private.id, public.id}
    assert await listed(sessionmaker, manager) == {private.id, public.id}

    # Losing the assignment loses the conversation.
    async with sessionmaker() as s, s.begin():
        await conversations.assign_conversation(manager, s, private.id, agent.user_id)
    assert await listed(sessionmaker, other_agent) == {public.id}
    assert await listed(sessionmaker, agent) == {private.id, public.id}


async def test_by_id_loading_hides_invisible_conversations_and_their_messages(
    sessionmaker: Sessions,
    admin: Actor,
    agent: Actor,
    other_agent: Actor,
    manager: Actor,
    viewer: Actor,
    outsider: Actor,
    customer: Customer,
    channel: Actor,
) -> None:
    """Both ways of loading by id (the ORM's, and the plain one renderings of live events
    use) apply the same rule and give the same rows."""
    private = await start(sessionmaker, manager, customer, is_private=True, body="Secret")
    mine = await start(
        sessionmaker, manager, customer, is_private=True, assignee_id=agent.user_id, body="Hi"
    )
    public = await start(sessionmaker, manager, customer, body="Hello")
    async with sessionmaker() as s:
        await conversations.set_conversation_status(manager, s, public.id, "pending")
        await s.commit()
    everything = [private.id, mine.id, public.id]
    async with sessionmaker() as s:
        messages = {
            m.conversation_id: m.id
            for m in await s.scalars(select(Message).where(Message.conversation_id.in_(everything)))
        }

    async def visible(actor: Actor, model: type[Any], ids: list[uuid.UUID]) -> set[uuid.UUID]:
        async with sessionmaker() as s:
            found = await conversations.get_many_visible(actor, s, model, ids)
        async with support.log_reader(sessionmaker) as conn:
            plain = await conversations.fetch_many_visible(actor, conn, model, ids)
        columns = [attr.key for attr in inspect(model).column_attrs]
        assert {i: [getattr(r, c) for c in columns] for i, r in plain.items()} == {
            i: [getattr(r, c) for c in columns] for i, r in found.items()
        }
        return set(found)

    ids = [*everything, uuid.uuid4()]
    assert await visible(manager, Conversation, ids) == set(everything)
    assert await visible(admin, Conversation, ids) == set(everything)
    assert await visible(agent, Conversation, ids) == {mine.id, public.id}
    assert await visible(viewer, Conversation, ids) == {public.id}
    assert await visible(other_agent, Conversation, ids) == {public.id}
    assert await visible(channel, Conversation, ids) == {public.id}
    assert await visible(outsider, Conversation, ids) == set()
    assert await visible(agent, Message, list(messages.values())) == {
        messages[mine.id],
        messages[public.id],
    }
    assert await visible(manager, Message, list(messages.values())) == set(messages.values())
    assert await visible(channel, Message, list(messages.values())) == {messages[public.id]}
    unscoped = await key_actor(sessionmaker, admin, api_keys.DEALS_READ)
    async with support.log_reader(sessionmaker) as conn:
        with pytest.raises(Forbidden):
            await conversations.fetch_many_visible(unscoped, conn, Conversation, everything)


async def test_api_keys_see_only_non_private_conversations(
    sessionmaker: Sessions, admin: Actor, manager: Actor, customer: Customer, channel: Actor
) -> None:
    private = await start(sessionmaker, manager, customer, is_private=True)
    public = await start(sessionmaker, manager, customer)
    assert await listed(sessionmaker, channel) == {public.id}
    with pytest.raises(NotFound):
        await post(sessionmaker, channel, private.id)
    unscoped = await key_actor(sessionmaker, admin, api_keys.DEALS_READ)
    with pytest.raises(Forbidden):
        await listed(sessionmaker, unscoped)
    with pytest.raises(Invalid) as error:
        await start(sessionmaker, channel, customer, is_private=True)
    assert error.value.field == "isPrivate"


async def test_other_workspaces_conversations_are_not_found(
    sessionmaker: Sessions, agent: Actor, outsider: Actor, customer: Customer
) -> None:
    conversation = await start(sessionmaker, agent, customer, body="Hello")
    with pytest.raises(NotFound):
        await send(sessionmaker, outsider, conversation.id)
    assert conversation.id not in await listed(sessionmaker, outsider)
    with pytest.raises(NotFound) as error:
        await start(sessionmaker, outsider, customer)
    assert error.value.field == "customerId"


# ------------------------------------------------------------------------------ unread


async def test_unread_filter_and_count_follow_the_read_receipt(
    sessionmaker: Sessions, agent: Actor, manager: Actor, customer: Customer, channel: Actor
) -> None:
    conversation = await start(sessionmaker, channel, customer, body="I need help")
    quiet = await start(sessionmaker, agent, customer)  # no messages: never unread
    assert await listed(sessionmaker, agent, {"unread": True}) == {conversation.id}
    assert await listed(sessionmaker, agent, {"unread": False}) == {quiet.id}
    assert await unread(sessionmaker, agent, conversation.id) == 1

    await post(sessionmaker, channel, conversation.id, "Hello?")
    assert await unread(sessionmaker, agent, conversation.id) == 2
    async with sessionmaker() as s, s.begin():
        await conversations.mark_conversation_read(agent, s, conversation.id, 1)
    assert await unread(sessionmaker, agent, conversation.id) == 1
    # The agent's own message counts as read for them, not for a colleague.
    await send(sessionmaker, agent, conversation.id, "Here I am")
    assert await unread(sessionmaker, agent, conversation.id) == 0
    assert await listed(sessionmaker, agent, {"unread": True}) == set()
    assert await unread(sessionmaker, manager, conversation.id) == 3
    assert await listed(
        sessionmaker, manager, {"or": [{"unread": True}, {"status": {"eq": "closed"}}]}
    ) == {conversation.id}
    # API keys have no receipts: nothing is unread for them, and they have no count.
    assert await listed(sessionmaker, channel, {"unread": True}) == set()
    assert await unread(sessionmaker, channel, conversation.id) is None


async def test_read_receipts_only_move_forward(
    sessionmaker: Sessions, agent: Actor, customer: Customer, channel: Actor
) -> None:
    conversation = await start(sessionmaker, channel, customer, body="One")
    await post(sessionmaker, channel, conversation.id, "Two")
    async with sessionmaker() as s, s.begin():
        await conversations.mark_conversation_read(agent, s, conversation.id)
    async with sessionmaker() as s, s.begin():
        await conversations.mark_conversation_read(agent, s, conversation.id, 1)  # no-op
    async with sessionmaker() as s, s.begin():
        with pytest.raises(Invalid) as error:
            await conversations.mark_conversation_read(agent, s, conversation.id, 3)
    assert error.value.field == "upToSeq"
    reads = [
        e for e in await events_of(sessionmaker, conversation.id) if e.type == "conversation.read"
    ]
    assert [(e.payload["user_id"], e.payload["last_read_seq"]) for e in reads] == [
        (str(agent.user_id), 2)
    ]
    async with sessionmaker() as s, s.begin():
        with pytest.raises(Forbidden):
            await conversations.mark_conversation_read(channel, s, conversation.id)


# -------------------------------------------------------------------------- assignment


async def test_assignment_goes_to_active_non_viewers_of_the_workspace(
    sessionmaker: Sessions,
    agent: Actor,
    other_agent: Actor,
    viewer: Actor,
    outsider: Actor,
    customer: Customer,
) -> None:
    conversation = await start(sessionmaker, agent, customer)

    async def assign(user_id: uuid.UUID | None, version: int | None = None) -> Conversation:
        async with sessionmaker() as s, s.begin():
            return await conversations.assign_conversation(
                agent, s, conversation.id, user_id, expected_version=version
            )

    with pytest.raises(Invalid) as error:
        await assign(viewer.user_id)
    assert error.value.field == "assigneeId"
    with pytest.raises(NotFound) as not_found:
        await assign(outsider.user_id)
    assert not_found.value.field == "assigneeId"
    async with sessionmaker() as s, s.begin():
        await s.execute(update(User).where(User.id == other_agent.user_id).values(is_active=False))
    with pytest.raises(Invalid):
        await assign(other_agent.user_id)

    assigned = await assign(agent.user_id, conversation.version)
    assert assigned.assignee_id == agent.user_id and assigned.version == conversation.version + 1
    await assign(agent.user_id)  # already theirs: nothing happens
    with pytest.raises(Conflict):
        await assign(None, conversation.version)  # stale
    unassigned = await assign(None, assigned.version)
    assert unassigned.assignee_id is None

    assignments = [
        e.payload
        for e in await events_of(sessionmaker, conversation.id)
        if e.type == "conversation.assigned"
    ]
    assert [(p["previous_assignee_id"], p["assignee_id"]) for p in assignments] == [
        (None, str(agent.user_id)),
        (str(agent.user_id), None),
    ]


# -------------------------------------------------------------- who writes which side


async def test_customer_messages_come_only_from_api_keys_with_the_write_scope(
    sessionmaker: Sessions, admin: Actor, agent: Actor, customer: Customer, channel: Actor
) -> None:
    conversation = await start(sessionmaker, agent, customer)
    with pytest.raises(Forbidden):
        await post(sessionmaker, admin, conversation.id)
    reader = await key_actor(sessionmaker, admin, api_keys.CONVERSATIONS_READ)
    with pytest.raises(Forbidden):
        await post(sessionmaker, reader, conversation.id)
    with pytest.raises(Forbidden):
        await send(sessionmaker, channel, conversation.id)  # keys do not speak for agents

    message = await post(sessionmaker, channel, conversation.id, "Where is my order?")
    assert message.author_type is MessageAuthorType.CUSTOMER
    assert message.author_user_id is None and message.seq == 1
    async with sessionmaker() as s:
        audit = await s.scalar(select(AuditLog).where(AuditLog.entity_id == message.id))
    assert audit is not None
    assert (audit.actor_api_key_id, audit.actor_user_id) == (channel.api_key_id, None)


async def test_viewers_cannot_write(
    sessionmaker: Sessions, agent: Actor, viewer: Actor, customer: Customer
) -> None:
    conversation = await start(sessionmaker, agent, customer)
    with pytest.raises(Forbidden):
        await send(sessionmaker, viewer, conversation.id)
    with pytest.raises(Forbidden):
        await start(sessionmaker, viewer, customer)


async def test_messages_reopen_conversations(
    sessionmaker: Sessions, agent: Actor, customer: Customer, channel: Actor
) -> None:
    conversation = await start(sessionmaker, agent, customer)

    async def set_status(status: str) -> None:
        async with sessionmaker() as s, s.begin():
            await conversations.set_conversation_status(agent, s, conversation.id, status)

    async def status() -> ConversationStatus:
        return (await reload(sessionmaker, conversation.id)).status

    await set_status("pending")
    await send(sessionmaker, agent, conversation.id, "Could you send a photo?")
    assert await status() is ConversationStatus.PENDING  # still waiting for the customer
    await post(sessionmaker, channel, conversation.id, "Here it is")
    assert await status() is ConversationStatus.OPEN
    await set_status("closed")
    await post(sessionmaker, channel, conversation.id, "One more thing")
    assert await status() is ConversationStatus.OPEN
    await set_status("closed")
    await send(sessionmaker, agent, conversation.id, "Following up")
    assert await status() is ConversationStatus.OPEN

    changes = [
        (e.payload["previous_status"], e.payload["status"])
        for e in await events_of(sessionmaker, conversation.id)
        if e.type == "conversation.status_changed"
    ]
    assert changes == [
        ("open", "pending"),
        ("pending", "open"),
        ("open", "closed"),
        ("closed", "open"),
        ("open", "closed"),
        ("closed", "open"),
    ]


async def test_a_reopening_message_writes_message_receipt_audit_and_events_together(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    """The message path writes its rows with statements of its own (the hot path of live
    chat): the same rows, audit entries and events as any other change, in order."""
    conversation = await start(sessionmaker, agent, customer, body="Hi")
    async with sessionmaker() as s, s.begin():
        await conversations.set_conversation_status(agent, s, conversation.id, "closed")
    version = (await reload(sessionmaker, conversation.id)).version
    sent = await send(sessionmaker, agent, conversation.id, "Back again", "again-1")

    after = await reload(sessionmaker, conversation.id)
    assert (after.status, after.version, after.last_message_seq) == (
        ConversationStatus.OPEN,
        version + 1,
        2,
    )
    async with sessionmaker() as s:
        stored = await s.get(Message, sent.id)
        assert stored is not None
        assert (stored.seq, stored.body, stored.author_user_id, stored.client_message_id) == (
            2,
            "Back again",
            agent.user_id,
            "again-1",
        )
        assert stored.created_at == stored.updated_at == after.last_message_at
        assert (sent.id, sent.seq, sent.created_at) == (stored.id, 2, stored.created_at)
        entries = (
            await s.scalars(
                select(AuditLog)
                .where(
                    AuditLog.action == "sendMessage", AuditLog.workspace_id == agent.workspace_id
                )
                .order_by(AuditLog.entity_type)  # one transaction: no order among them
            )
        ).all()
    assert [(e.entity_type, e.entity_id) for e in entries] == [
        ("Conversation", conversation.id),
        ("Message", sent.id),
    ]
    assert entries[0].changes == {"status": {"before": "closed", "after": "open"}}
    assert entries[1].changes == {
        "id": {"before": None, "after": str(sent.id)},
        "workspace_id": {"before": None, "after": str(agent.workspace_id)},
        "conversation_id": {"before": None, "after": str(conversation.id)},
        "seq": {"before": None, "after": 2},
        "author_type": {"before": None, "after": "agent"},
        "author_user_id": {"before": None, "after": str(agent.user_id)},
        "body": {"before": None, "after": "Back again"},
        "client_message_id": {"before": None, "after": "again-1"},
    }
    assert {(e.actor_user_id, e.actor_api_key_id) for e in entries} == {(agent.user_id, None)}
    assert await unread(sessionmaker, agent, conversation.id) == 0  # your own message

    created, reopened = (await events_of(sessionmaker, conversation.id))[-2:]
    assert (created.type, reopened.type) == ("message.created", "conversation.status_changed")
    assert created.txid == reopened.txid
    assert created.payload["seq"] == 2 and created.payload["body"] == "Back again"
    assert created.payload["created_at"] == stored.created_at.isoformat()
    assert (reopened.payload["previous_status"], reopened.payload["status"]) == ("closed", "open")
    for event in (created, reopened):
        assert event.payload["version"] == version + 1
        assert event.payload["last_message_seq"] == 2


# ------------------------------------------------------------------------------ events


async def test_every_change_writes_an_event_with_the_payload_contract(
    sessionmaker: Sessions,
    manager: Actor,
    agent: Actor,
    customer: Customer,
    channel: Actor,
) -> None:
    conversation = await start(
        sessionmaker,
        manager,
        customer,
        subject="Refund",
        body="We got your request",
        client_message_id="m1",
    )
    await post(sessionmaker, channel, conversation.id, "Thanks!", "in-1")
    async with sessionmaker() as s, s.begin():
        await conversations.assign_conversation(manager, s, conversation.id, agent.user_id)
    async with sessionmaker() as s, s.begin():
        await conversations.set_conversation_status(agent, s, conversation.id, "closed")
    async with sessionmaker() as s, s.begin():
        await conversations.mark_conversation_read(agent, s, conversation.id)

    events = await events_of(sessionmaker, conversation.id)
    assert [e.type for e in events] == [
        "conversation.started",
        "message.created",
        "message.created",
        "conversation.assigned",
        "conversation.status_changed",
        "conversation.read",
    ]
    assert {(e.topic, e.entity_type, e.workspace_id) for e in events} == {
        ("conversations", "Conversation", manager.workspace_id)
    }
    for event in events:
        assert CONVERSATION_KEYS <= set(event.payload), event.type
        assert event.payload["conversation_id"] == str(conversation.id)
        assert event.payload["customer_id"] == str(customer.id)
        assert event.payload["is_private"] is False
    started, first, inbound, assigned, closed, read = (e.payload for e in events)
    assert started["subject"] == "Refund" and started["status"] == "open"
    assert MESSAGE_KEYS <= set(first) and MESSAGE_KEYS <= set(inbound)
    assert (first["seq"], first["author_type"], first["author_user_id"], first["body"]) == (
        1,
        "agent",
        str(manager.user_id),
        "We got your request",
    )
    assert (inbound["seq"], inbound["author_type"], inbound["author_user_id"]) == (
        2,
        "customer",
        None,
    )
    assert inbound["client_message_id"] == "in-1" and inbound["last_message_seq"] == 2
    assert datetime.fromisoformat(inbound["created_at"]).tzinfo is not None
    assert (assigned["previous_assignee_id"], assigned["assignee_id"]) == (None, str(agent.user_id))
    assert (closed["previous_status"], closed["status"]) == ("open", "closed")
    assert closed["assignee_id"] == str(agent.user_id)
    assert (read["user_id"], read["last_read_seq"]) == (str(agent.user_id), 2)

    async with sessionmaker() as s:
        actions = (
            await s.scalars(
                select(AuditLog.action)
                .where(AuditLog.workspace_id == manager.workspace_id)
                .order_by(AuditLog.created_at, AuditLog.id)
            )
        ).all()
    for action in (
        "startConversation",
        "postCustomerMessage",
        "assignConversation",
        "setConversationStatus",
        "markConversationRead",
    ):
        assert action in actions


async def test_start_conversation_validates_its_customer(
    manager: Actor, sessionmaker: Sessions, agent: Actor, customer: Customer, channel: Actor
) -> None:
    with pytest.raises(Invalid) as error:
        await start(sessionmaker, agent, customer, channel="fax")
    assert error.value.field == "channel"
    async with sessionmaker() as s, s.begin():
        await customers.archive_customer(manager, s, customer.id)
    with pytest.raises(Invalid) as archived:
        await start(sessionmaker, agent, customer)
    assert archived.value.field == "customerId"


async def test_conversation_started_by_a_channel_opens_with_the_customers_message(
    sessionmaker: Sessions, customer: Customer, channel: Actor
) -> None:
    conversation = await start(sessionmaker, channel, customer, body="Hello, anyone?")
    async with sessionmaker() as s:
        first = await s.scalar(select(Message).where(Message.conversation_id == conversation.id))
    assert first is not None
    assert (first.seq, first.author_type, first.body) == (
        1,
        MessageAuthorType.CUSTOMER,
        "Hello, anyone?",
    )
    assert conversation.last_message_seq == 1 and conversation.last_message_at == first.created_at


# ----------------------------------------------------------------------------- API keys


async def test_api_key_token_is_shown_once_and_stored_hashed(
    sessionmaker: Sessions, admin: Actor, agent: Actor
) -> None:
    async with sessionmaker() as s, s.begin():
        key, token = await api_keys.create_api_key(
            admin, s, name="Widget", scopes=["conversations:write", "conversations:write"]
        )
    prefix, secret = token.removeprefix("crm_").split("_", 1)
    assert token.startswith("crm_") and prefix == key.prefix and len(secret) >= 43
    assert key.scopes == ["conversations:write"]
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()  # never the secret

    async with sessionmaker() as s, s.begin():
        actor = await api_keys.authenticate_api_key(s, token, request_id="r1")
    assert actor == Actor(
        workspace_id=admin.workspace_id,
        role=Role.AGENT,
        api_key_id=key.id,
        scopes=frozenset({"conversations:write"}),
        request_id="r1",
    )
    for bad in (f"crm_{prefix}_{secret[:-1]}x", f"crm_{'A' * 10}_{secret}", "crm_short", "crm_"):
        async with sessionmaker() as s, s.begin():
            with pytest.raises(Unauthenticated):
                await api_keys.authenticate_api_key(s, bad)

    for actor_without_right in (agent, actor):
        async with sessionmaker() as s, s.begin():
            with pytest.raises(Forbidden):
                await api_keys.create_api_key(
                    actor_without_right, s, name="Mine", scopes=["deals:read"]
                )
    for scopes in ([], ["deals:delete"]):
        async with sessionmaker() as s, s.begin():
            with pytest.raises(Invalid):
                await api_keys.create_api_key(admin, s, name="Bad", scopes=scopes)


async def test_revoked_and_expired_keys_are_refused(sessionmaker: Sessions, admin: Actor) -> None:
    async with sessionmaker() as s, s.begin():
        revoked, revoked_token = await api_keys.create_api_key(
            admin, s, name="Old", scopes=["deals:read"]
        )
        expiring, expiring_token = await api_keys.create_api_key(
            admin,
            s,
            name="Trial",
            scopes=["deals:read"],
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )
    async with sessionmaker() as s, s.begin():
        await api_keys.revoke_api_key(admin, s, revoked.id)
        await s.execute(
            update(ApiKey)
            .where(ApiKey.id == expiring.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    for token, reason in ((revoked_token, "revoked"), (expiring_token, "expired")):
        async with sessionmaker() as s, s.begin():
            with pytest.raises(Unauthenticated) as error:
                await api_keys.authenticate_api_key(s, token)
        assert reason in error.value.message


async def test_last_used_is_written_at_most_once_a_minute(
    sessionmaker: Sessions, admin: Actor
) -> None:
    async with sessionmaker() as s, s.begin():
        key, token = await api_keys.create_api_key(admin, s, name="Busy", scopes=["deals:read"])

    async def use() -> datetime | None:
        async with sessionmaker() as s, s.begin():
            await api_keys.authenticate_api_key(s, token)
        async with sessionmaker() as s:
            return await s.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key.id))

    first = await use()
    assert first is not None
    assert await use() == first  # within the minute: no write
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id)
            .values(last_used_at=first - timedelta(minutes=2))
        )
    later = await use()
    assert later is not None and later > first - timedelta(minutes=2)


def test_a_messages_write_statement_is_compiled_once() -> None:
    """``sendMessage``'s one write statement (message, read receipt, event, audit row) is
    built once for every usual message, its values bound parameters, so SQLAlchemy
    neither builds nor keys it per message and compiles it once: with a multi-row
    ``values([...])`` it had no cache key and was compiled for every message (decision
    0031, "Capacity"), then built with literal values per message (issue 14, point 4).
    A reopening message (two events, two audit rows, whose order the log keeps) still
    takes the multi-row form."""
    from crm_graphql.models import Role
    from crm_graphql.models.base import uuid7
    from crm_graphql.services import audit

    actor = Actor(workspace_id=uuid.uuid4(), role=Role.AGENT, user_id=uuid.uuid4())

    def statement(body: str, reopened: bool) -> Any:
        now = datetime.now(UTC)
        message = Message(
            id=uuid7(),
            workspace_id=actor.workspace_id,
            conversation_id=uuid.uuid4(),
            seq=7,
            author_type=conversations.MessageAuthorType.AGENT,
            author_user_id=actor.user_id,
            body=body,
            client_message_id=None,
            created_at=now,
            updated_at=now,
        )

        def event(type: str) -> dict[str, Any]:
            return events.event_values(
                actor,
                topic=conversations.TOPIC,
                type=type,
                entity_type="Conversation",
                entity_id=message.conversation_id,
                payload={"body": body},
            )

        def row(entity_type: str) -> dict[str, Any]:
            return audit.values(
                actor, action="send_message", entity_type=entity_type, entity_id=message.id,
                after={"body": body},
            )  # fmt: skip

        kinds = ["message.created", "conversation.status_changed"][: 1 + reopened]
        audits = ["Conversation", "Message"][1 - reopened :]
        return conversations._write_message(
            message, [event(k) for k in kinds], [row(a) for a in audits]
        )

    first, first_values = statement("Hello", False)
    second, second_values = statement("Another body", False)
    # Built once: the same statement (so the same cache key, memoised on it and compiled
    # once); only the parameters differ.
    assert first is second
    assert first._generate_cache_key() is not None
    assert first_values["m_body"] == "Hello" and second_values["m_body"] == "Another body"
    reopening, reopening_values = statement("Back again", True)
    assert reopening is not first and reopening_values == {}
