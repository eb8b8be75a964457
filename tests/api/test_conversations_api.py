"""Conversations through GraphQL over HTTP: chat between agents and a channel integration
(API key), retries, unread, assignment, status, and the filters of the inbox."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Role, User, Workspace
from crm_graphql.services import api_keys
from crm_graphql.services.actor import Actor
from tests import support
from tests.api.conftest import StatementCounter
from tests.factories import create_customer

Sessions = async_sessionmaker[AsyncSession]
Clients = dict[Role, support.GraphQLClient]

CONVERSATION_FIELDS = """
  id status channel subject isPrivate version lastMessageSeq unreadCount
  assignee { id }
  lastMessage { seq body authorType author { id } }
"""
START = f"""mutation($i: StartConversationInput!) {{
  startConversation(input: $i) {{ conversation {{ {CONVERSATION_FIELDS} }} errors {{ code field }} }}
}}"""
SEND = f"""mutation($i: SendMessageInput!) {{
  sendMessage(input: $i) {{
    message {{ id seq body authorType clientMessageId author {{ id }} }}
    conversation {{ {CONVERSATION_FIELDS} }}
    errors {{ code field }}
  }}
}}"""
POST = """mutation($i: PostCustomerMessageInput!) {
  postCustomerMessage(input: $i) {
    message { id seq body authorType author { id } }
    conversation { id status lastMessageSeq }
    errors { code field }
  }
}"""
ASSIGN = """mutation($i: AssignConversationInput!) {
  assignConversation(input: $i) { conversation { id version assignee { id } } errors { code field } }
}"""
SET_STATUS = """mutation($i: SetConversationStatusInput!) {
  setConversationStatus(input: $i) { conversation { id status version } errors { code field } }
}"""
MARK_READ = """mutation($i: MarkConversationReadInput!) {
  markConversationRead(input: $i) { conversation { id unreadCount } errors { code field } }
}"""
LIST = """query($f: ConversationFilter) {
  conversations(filter: $f, first: 50) { totalCount nodes { id unreadCount } }
}"""
MESSAGES = """query($id: ID!, $after: String) {
  node(id: $id) {
    ... on Conversation {
      messages(first: 2, after: $after) {
        totalCount
        edges { cursor node { seq body authorType } }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}"""


def payload(result: support.GraphQLResponse, field: str) -> dict[str, Any]:
    body = result.ok()[field]
    assert body["errors"] == [], body
    return body  # type: ignore[no-any-return]


def error_of(result: support.GraphQLResponse, field: str) -> tuple[str, str | None]:
    errors = result.ok()[field]["errors"]
    assert len(errors) == 1, errors
    return errors[0]["code"], errors[0]["field"]


async def start(client: support.GraphQLClient, **input: Any) -> dict[str, Any]:
    return payload(await client(START, {"i": {"channel": "CHAT", **input}}), "startConversation")[
        "conversation"
    ]


async def listed(client: support.GraphQLClient, filter: dict[str, Any] | None = None) -> set[str]:
    nodes = (await client(LIST, {"f": filter})).ok()["conversations"]["nodes"]
    return {n["id"] for n in nodes}


async def channel_client(
    sessionmaker: Sessions, client: support.GraphQLClient, admin: Actor, *scopes: str
) -> tuple[support.GraphQLClient, str]:
    """A client sending ``Authorization: Bearer crm_...`` of a new key; and the key's id."""
    async with sessionmaker() as s, s.begin():
        key, token = await api_keys.create_api_key(
            admin, s, name="Chat widget", scopes=scopes or (api_keys.CONVERSATIONS_WRITE,)
        )
    return support.GraphQLClient(client.http, token), str(key.id)


def gid(user: User) -> str:
    return to_global_id("User", user.id)


async def test_agent_chat_with_idempotent_retries_and_ordered_messages(
    as_role: Clients, users: dict[Role, User]
) -> None:
    agent = as_role[Role.AGENT]
    customer = await create_customer(agent)
    conversation = await start(
        agent, customerId=customer, subject="Order 42", body="Hello Ada", clientMessageId="c-0"
    )
    assert conversation["status"] == "OPEN" and conversation["lastMessageSeq"] == 1
    assert conversation["lastMessage"] == {
        "seq": 1,
        "body": "Hello Ada",
        "authorType": "AGENT",
        "author": {"id": gid(users[Role.AGENT])},
    }
    assert conversation["unreadCount"] == 0  # your own message is read

    message = {"conversationId": conversation["id"], "body": "Any news?", "clientMessageId": "c-1"}
    sent = payload(await agent(SEND, {"i": message}), "sendMessage")
    retried = payload(await agent(SEND, {"i": message}), "sendMessage")
    assert retried["message"] == sent["message"]
    assert sent["message"]["seq"] == 2 and sent["message"]["clientMessageId"] == "c-1"
    assert retried["conversation"]["lastMessageSeq"] == 2
    assert retried["conversation"]["version"] == conversation["version"]
    third = payload(
        await agent(SEND, {"i": {"conversationId": conversation["id"], "body": "Third"}}),
        "sendMessage",
    )
    assert third["message"]["seq"] == 3

    first_page = (await agent(MESSAGES, {"id": conversation["id"]})).ok()["node"]["messages"]
    assert first_page["totalCount"] == 3
    assert [e["node"]["seq"] for e in first_page["edges"]] == [1, 2]
    assert first_page["pageInfo"]["hasNextPage"] is True
    rest = (
        await agent(
            MESSAGES, {"id": conversation["id"], "after": first_page["pageInfo"]["endCursor"]}
        )
    ).ok()["node"]["messages"]
    assert [e["node"]["body"] for e in rest["edges"]] == ["Third"]

    conflict = await agent(SEND, {"i": {**message, "body": "Different text"}})
    assert error_of(conflict, "sendMessage") == ("CONFLICT", "clientMessageId")
    blank = await agent(SEND, {"i": {"conversationId": conversation["id"], "body": " "}})
    assert error_of(blank, "sendMessage") == ("VALIDATION", "body")
    unknown = await agent(SEND, {"i": {"conversationId": customer, "body": "Hi"}})
    assert error_of(unknown, "sendMessage") == ("NOT_FOUND", "conversationId")


async def test_channel_integration_posts_as_the_customer_with_an_api_key(
    as_role: Clients,
    client: support.GraphQLClient,
    sessionmaker: Sessions,
    admin: Actor,
) -> None:
    agent = as_role[Role.AGENT]
    channel, _ = await channel_client(sessionmaker, client, admin)
    customer = await create_customer(agent)
    conversation = await start(channel, customerId=customer, body="My parcel is late")
    assert conversation["lastMessage"]["authorType"] == "CUSTOMER"
    assert conversation["lastMessage"]["author"] is None
    assert conversation["unreadCount"] is None  # a key has no read receipts

    closed = payload(
        await agent(SET_STATUS, {"i": {"id": conversation["id"], "status": "CLOSED"}}),
        "setConversationStatus",
    )
    assert closed["conversation"]["status"] == "CLOSED"
    inbound = {
        "conversationId": conversation["id"],
        "body": "Still late!",
        "clientMessageId": "wa-1",
    }
    posted = payload(await channel(POST, {"i": inbound}), "postCustomerMessage")
    assert posted["message"]["authorType"] == "CUSTOMER" and posted["message"]["seq"] == 2
    assert posted["conversation"]["status"] == "OPEN"  # the customer reopened it
    again = payload(await channel(POST, {"i": inbound}), "postCustomerMessage")
    assert again["message"]["id"] == posted["message"]["id"]

    # The inbox of the agent: unread until read.
    assert await listed(agent, {"unread": True}) == {conversation["id"]}
    unread = (await agent(LIST, {"f": {"unread": True}})).ok()["conversations"]["nodes"]
    assert unread == [{"id": conversation["id"], "unreadCount": 2}]
    read = payload(
        await agent(MARK_READ, {"i": {"id": conversation["id"]}}), "markConversationRead"
    )
    assert read["conversation"]["unreadCount"] == 0
    assert await listed(agent, {"unread": True}) == set()
    assert await listed(agent, {"unread": False}) == {conversation["id"]}

    # Users do not post as the customer; keys do not speak for agents or read receipts.
    by_user = await agent(POST, {"i": {"conversationId": conversation["id"], "body": "Fake"}})
    assert error_of(by_user, "postCustomerMessage") == ("FORBIDDEN", None)
    by_key = await channel(SEND, {"i": {"conversationId": conversation["id"], "body": "Agent?"}})
    assert error_of(by_key, "sendMessage") == ("FORBIDDEN", None)
    key_read = await channel(MARK_READ, {"i": {"id": conversation["id"]}})
    assert error_of(key_read, "markConversationRead") == ("FORBIDDEN", None)


async def test_api_key_without_the_write_scope_cannot_post(
    as_role: Clients, client: support.GraphQLClient, sessionmaker: Sessions, admin: Actor
) -> None:
    conversation = await start(
        as_role[Role.AGENT], customerId=await create_customer(as_role[Role.AGENT])
    )
    reader, _ = await channel_client(sessionmaker, client, admin, api_keys.CONVERSATIONS_READ)
    assert await listed(reader) == {conversation["id"]}
    refused = await reader(POST, {"i": {"conversationId": conversation["id"], "body": "Hi"}})
    assert error_of(refused, "postCustomerMessage") == ("FORBIDDEN", None)


async def test_revoked_or_unknown_api_key_is_401(
    as_role: Clients, client: support.GraphQLClient, sessionmaker: Sessions, admin: Actor
) -> None:
    channel, key_id = await channel_client(sessionmaker, client, admin)
    assert (await channel("{ conversations { totalCount } }")).status == 200
    async with sessionmaker() as s, s.begin():
        await api_keys.revoke_api_key(admin, s, uuid.UUID(key_id))
    refused = await channel("{ conversations { totalCount } }")
    assert refused.status == 401
    assert refused.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "invalid_token" in refused.headers["WWW-Authenticate"]
    assert "data" not in refused.body
    assert channel.token is not None
    forged = support.GraphQLClient(client.http, channel.token[:-2] + "zz")
    assert (await forged("{ conversations { totalCount } }")).status == 401


async def test_private_conversations_are_hidden_from_other_agents(
    as_role: Clients, users: dict[Role, User]
) -> None:
    manager, agent = as_role[Role.MANAGER], as_role[Role.AGENT]
    customer = await create_customer(manager)
    private = await start(
        manager, customerId=customer, isPrivate=True, assigneeId=gid(users[Role.MANAGER]), body="Hi"
    )
    public = await start(manager, customerId=customer)
    assert await listed(agent) == {public["id"]}
    assert await listed(manager) == {private["id"], public["id"]}
    nested = (
        await agent(
            "query($id: ID!) { node(id: $id) { ... on Customer { conversations { totalCount nodes { id } } } } }",
            {"id": customer},
        )
    ).ok()["node"]["conversations"]
    assert nested == {"totalCount": 1, "nodes": [{"id": public["id"]}]}
    for document, input, field in (
        (SEND, {"conversationId": private["id"], "body": "Let me in"}, "sendMessage"),
        (ASSIGN, {"id": private["id"], "assigneeId": gid(users[Role.AGENT])}, "assignConversation"),
        (SET_STATUS, {"id": private["id"], "status": "CLOSED"}, "setConversationStatus"),
        (MARK_READ, {"id": private["id"]}, "markConversationRead"),
    ):
        assert error_of(await agent(document, {"i": input}), field)[0] == "NOT_FOUND"
    # Nor can the agent fetch it, or its messages, by ID.
    first = (
        await manager(
            "query($id: ID!) { node(id: $id) { ... on Conversation { messages { nodes { id } } } } }",
            {"id": private["id"]},
        )
    ).ok()["node"]["messages"]["nodes"][0]["id"]
    peek = (
        await agent(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": [private["id"], first]}
        )
    ).ok()
    assert peek["nodes"] == [None, None]
    # Assigned to the agent, it appears in their list.
    payload(
        await manager(ASSIGN, {"i": {"id": private["id"], "assigneeId": gid(users[Role.AGENT])}}),
        "assignConversation",
    )
    assert await listed(agent) == {private["id"], public["id"]}


async def test_assign_and_set_status_check_versions_and_assignees(
    as_role: Clients, users: dict[Role, User]
) -> None:
    agent = as_role[Role.AGENT]
    conversation = await start(agent, customerId=await create_customer(agent))
    version = conversation["version"]
    viewer = await agent(
        ASSIGN, {"i": {"id": conversation["id"], "assigneeId": gid(users[Role.VIEWER])}}
    )
    assert error_of(viewer, "assignConversation") == ("VALIDATION", "assigneeId")
    malformed = await agent(ASSIGN, {"i": {"id": conversation["id"], "assigneeId": "nope"}})
    assert error_of(malformed, "assignConversation") == ("NOT_FOUND", "assigneeId")
    assigned = payload(
        await agent(
            ASSIGN,
            {
                "i": {
                    "id": conversation["id"],
                    "assigneeId": gid(users[Role.AGENT]),
                    "expectedVersion": version,
                }
            },
        ),
        "assignConversation",
    )["conversation"]
    assert assigned["assignee"] == {"id": gid(users[Role.AGENT])}
    assert assigned["version"] == version + 1
    stale = await agent(
        SET_STATUS,
        {"i": {"id": conversation["id"], "status": "PENDING", "expectedVersion": version}},
    )
    assert error_of(stale, "setConversationStatus") == ("CONFLICT", "expectedVersion")
    pending = payload(
        await agent(
            SET_STATUS,
            {"i": {"id": conversation["id"], "status": "PENDING", "expectedVersion": version + 1}},
        ),
        "setConversationStatus",
    )["conversation"]
    assert pending == {"id": conversation["id"], "status": "PENDING", "version": version + 2}
    unassigned = payload(
        await agent(ASSIGN, {"i": {"id": conversation["id"], "assigneeId": None}}),
        "assignConversation",
    )["conversation"]
    assert unassigned["assignee"] is None


async def test_conversations_filter_by_status_channel_assignee_and_unread(
    as_role: Clients, users: dict[Role, User]
) -> None:
    agent, manager = as_role[Role.AGENT], as_role[Role.MANAGER]
    customer = await create_customer(agent)
    mine = await start(agent, customerId=customer, assigneeId=gid(users[Role.AGENT]))
    email = await start(manager, customerId=customer, channel="EMAIL", body="Dear Ada")
    closed = await start(manager, customerId=customer, channel="PHONE")
    payload(
        await manager(SET_STATUS, {"i": {"id": closed["id"], "status": "CLOSED"}}),
        "setConversationStatus",
    )
    assert await listed(agent, {"status": {"eq": "CLOSED"}}) == {closed["id"]}
    assert await listed(agent, {"channel": {"in": ["EMAIL", "PHONE"]}}) == {
        email["id"],
        closed["id"],
    }
    assert await listed(agent, {"assigneeId": {"eq": gid(users[Role.AGENT])}}) == {mine["id"]}
    assert await listed(agent, {"assigneeId": {"isNull": True}}) == {email["id"], closed["id"]}
    # The manager wrote the email: unread for the agent only.
    assert await listed(agent, {"unread": True}) == {email["id"]}
    assert await listed(manager, {"unread": True}) == set()
    assert await listed(agent, {"unread": True, "channel": {"eq": "CHAT"}}) == set()
    assert await listed(agent, {"not": {"unread": True}}) == {mine["id"], closed["id"]}


INBOX = """query($n: Int!) {
  conversations(first: $n, filter: {unread: true}) {
    nodes {
      id unreadCount status
      customer { name }
      assignee { name }
      lastMessage { seq body author { name } }
      messages(first: 3) { nodes { seq body } }
    }
  }
}"""


async def test_inbox_page_loads_in_a_constant_number_of_statements(
    as_role: Clients, client: support.GraphQLClient, sessionmaker: Sessions, admin: Actor, app: Any
) -> None:
    agent = as_role[Role.AGENT]
    channel, _ = await channel_client(sessionmaker, client, admin)
    customer = await create_customer(agent)
    for i in range(12):
        await start(channel, customerId=customer, body=f"Question {i}")
    counter = StatementCounter()
    statements = counter.statements

    engine = app.state.crm.sessionmaker.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", counter)
    try:
        counts = {}
        for n in (2, 12):
            statements.clear()
            nodes = (await agent(INBOX, {"n": n})).ok()["conversations"]["nodes"]
            assert len(nodes) == n
            assert all(c["unreadCount"] == 1 and c["lastMessage"]["seq"] == 1 for c in nodes)
            counts[n] = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", counter)
    assert counts[2] == counts[12], counts


async def create_api_key_command(settings: Any, workspace: str, *args: str) -> tuple[int, str, str]:
    """Run ``crm-graphql create-api-key`` as a child process against the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update({"CRM_DATABASE_URL": settings.database_url, "CRM_DATA_DIR": str(settings.data_dir)})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crm_graphql.cli",
        "create-api-key",
        "--workspace",
        workspace,
        *args,
        cwd=support.ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def test_create_api_key_command_gives_a_working_token(
    as_role: Clients,
    client: support.GraphQLClient,
    settings: Any,
    workspace: Workspace,
) -> None:
    code, stdout, stderr = await create_api_key_command(
        settings,
        workspace.name,
        "--name",
        "WhatsApp",
        "--scope",
        "conversations:write",
        "--scope",
        "customers:read",
    )
    assert code == 0, stdout + stderr
    assert "Created API key 'WhatsApp'" in stdout
    assert "conversations:write, customers:read" in stdout
    token = stdout.strip().splitlines()[-1]
    assert token.startswith("crm_")

    conversation = await start(
        as_role[Role.AGENT], customerId=await create_customer(as_role[Role.AGENT])
    )
    channel = support.GraphQLClient(client.http, token)
    posted = payload(
        await channel(
            POST, {"i": {"conversationId": conversation["id"], "body": "Hi from WhatsApp"}}
        ),
        "postCustomerMessage",
    )
    assert posted["message"]["authorType"] == "CUSTOMER"

    code, _, stderr = await create_api_key_command(
        settings, workspace.name, "--name", "Bad", "--scope", "everything"
    )
    assert code == 2 and "invalid choice" in stderr
    code, stdout, _ = await create_api_key_command(
        settings, "No such workspace", "--name", "Lost", "--scope", "deals:read"
    )
    assert code == 1 and "error: no workspace named 'No such workspace'" in stdout


@pytest.mark.parametrize("header", ["crm_abc", "Basic crm_abc", "Bearer"])
async def test_malformed_credentials_are_401(client: support.GraphQLClient, header: str) -> None:
    response = await client.http.post(
        "/graphql",
        json={"query": "{ conversations { totalCount } }"},
        headers={"Authorization": header},
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
