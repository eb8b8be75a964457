"""``changes``: every create, update, archive and erase in commit order from a resumable
cursor, scoped like every read, and exactly once under concurrent writers in two server
processes (issue 17, point 4)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Role, User
from crm_graphql.services import customers
from crm_graphql.services.actor import Actor
from crm_graphql.services.events import Position
from tests import support
from tests.api.scenarios import Env
from tests.factories import create_customer

CHANGES = """query($after: String, $types: [SyncedType!], $first: Int) {
  changes(after: $after, types: $types, first: $first) {
    cursor hasMore
    changes { cursor nodeId type kind fields at }
  }
}"""
UPDATE = """mutation($i: UpdateCustomerInput!) {
  updateCustomer(input: $i) { customer { id } errors { code message } } }"""
ARCHIVE = """mutation($i: ArchiveInput!) {
  archiveCustomer(input: $i) { customer { id } errors { code message } } }"""


async def read_all(
    client: support.GraphQLClient,
    after: str | None = None,
    *,
    types: list[str] | None = None,
    first: int = 100,
) -> tuple[list[dict[str, Any]], str]:
    """Every change after ``after`` that is ready now, and the cursor to resume from."""
    seen: list[dict[str, Any]] = []
    while True:
        result = await client(CHANGES, {"after": after, "types": types, "first": first})
        page = result.ok()["changes"]
        seen.extend(page["changes"])
        after = page["cursor"]
        if not page["hasMore"]:
            return seen, after


def of_node(changes: list[dict[str, Any]], node_id: str) -> list[tuple[str, list[str]]]:
    return [(c["kind"], c["fields"]) for c in changes if c["nodeId"] == node_id]


async def test_create_update_archive_and_erase_are_changes_with_their_fields(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    _, start = await read_all(admin)
    ada = await create_customer(admin, "Ada", email="ada@example.com")
    updated = await admin(UPDATE, {"i": {"id": ada, "phone": "+1 202 555 0100"}})
    assert updated.ok()["updateCustomer"]["errors"] == []
    archived = await admin(ARCHIVE, {"i": {"id": ada}})
    assert archived.ok()["archiveCustomer"]["errors"] == []
    erased = await admin(
        "mutation($i: CustomerDataInput!) { eraseCustomer(input: $i) { errors { code } } }",
        {"i": {"customerId": ada}},
    )
    assert erased.ok()["eraseCustomer"]["errors"] == []

    changes, _ = await read_all(admin, start)
    assert of_node(changes, ada) == [
        ("CREATED", ["email", "lifecycleStage", "name"]),
        ("UPDATED", ["phone"]),
        ("ARCHIVED", ["archivedAt"]),
        ("ERASED", ["email", "erasedAt", "name", "phone"]),
    ]
    assert {c["type"] for c in changes if c["nodeId"] == ada} == {"CUSTOMER"}
    positions = [Position.decode(c["cursor"]) for c in changes]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_a_merge_updates_the_survivor_and_archives_the_duplicate_into_it(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    survivor = await create_customer(admin, "Grace")
    duplicate = await create_customer(admin, "Grace H.", phone="+44 20 7946 0000")
    _, start = await read_all(admin)
    merged = await admin(
        "mutation($i: MergeCustomersInput!) { mergeCustomers(input: $i) { errors { code } } }",
        {"i": {"survivorId": survivor, "mergedIds": [duplicate]}},
    )
    assert merged.ok()["mergeCustomers"]["errors"] == []
    changes, _ = await read_all(admin, start, types=["CUSTOMER"])
    assert of_node(changes, duplicate) == [("ARCHIVED", ["archivedAt", "mergedInto"])]
    assert of_node(changes, survivor) == [("UPDATED", ["phone"])]


async def test_the_node_is_the_object_now_and_types_narrow_the_feed(
    as_role: dict[Role, support.GraphQLClient], env: Env
) -> None:
    admin = as_role[Role.ADMIN]
    _, start = await read_all(admin)
    deal = await env.deal()
    customer = await create_customer(admin, "Linus")
    result = await admin(
        """query($after: String) { changes(after: $after, types: [DEAL]) {
            changes { type kind node { __typename id ... on Deal { title } } } } }""",
        {"after": start},
    )
    page = result.ok()["changes"]["changes"]
    assert [(c["type"], c["kind"], c["node"]["id"]) for c in page] == [("DEAL", "CREATED", deal)]
    everything, _ = await read_all(admin, start)
    assert [c["type"] for c in everything] == ["PIPELINE", "STAGE", "DEAL", "CUSTOMER"]
    assert everything[-1]["nodeId"] == customer


async def test_changes_are_scoped_by_workspace_role_scope_and_private_conversations(
    as_role: dict[Role, support.GraphQLClient],
    env: Env,
    users: dict[Role, User],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    _, start = await read_all(admin)
    customer = await create_customer(admin, "Private Person")
    private = await admin(
        """mutation($i: StartConversationInput!) {
            startConversation(input: $i) { conversation { id } errors { code } } }""",
        {"i": {"customerId": customer, "channel": "CHAT", "isPrivate": True, "body": "Psst"}},
    )
    conversation = private.ok()["startConversation"]["conversation"]["id"]
    deal = await env.deal()

    # Another workspace's writes never show.
    other = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        from crm_graphql.services import auth

        workspace = await auth.create_workspace(session, name=f"Other {other.hex[:8]}")
    stranger = Actor(workspace_id=workspace.id, role=Role.ADMIN)
    async with sessionmaker() as session, session.begin():
        foreign = await customers.create_customer(stranger, session, {"name": "Foreign"})
    foreign_id = to_global_id("Customer", foreign.id)

    seen_by_admin, _ = await read_all(admin, start)
    ids_by_admin = {c["nodeId"] for c in seen_by_admin}
    assert {customer, conversation, deal} <= ids_by_admin and foreign_id not in ids_by_admin
    assert {c["type"] for c in seen_by_admin} >= {"CONVERSATION", "MESSAGE"}

    # An agent neither assigned nor a manager sees neither the conversation nor its message.
    seen_by_agent, _ = await read_all(agent, start)
    assert {c["type"] for c in seen_by_agent} & {"CONVERSATION", "MESSAGE"} == set()
    assert {customer, deal} <= {c["nodeId"] for c in seen_by_agent}
    # Assigned to them, it and its message appear (judged on the conversation as it is now).
    assigned = await admin(
        """mutation($i: AssignConversationInput!) {
            assignConversation(input: $i) { errors { code } } }""",
        {"i": {"id": conversation, "assigneeId": to_global_id("User", users[Role.AGENT].id)}},
    )
    assert assigned.ok()["assignConversation"]["errors"] == []
    seen_by_agent, _ = await read_all(agent, start)
    assert {"CONVERSATION", "MESSAGE"} <= {c["type"] for c in seen_by_agent}

    # A key sees the types its scopes read; naming another is FORBIDDEN, as its list is.
    deals_key, _ = await env.api_key("deals:read")
    seen_by_key, _ = await read_all(deals_key, start)
    assert {c["type"] for c in seen_by_key} == {"PIPELINE", "STAGE", "DEAL"}
    refused = await deals_key(CHANGES, {"types": ["CUSTOMER"]})
    assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]
    webhooks_key, _ = await env.api_key("webhooks:manage")
    refused = await webhooks_key(CHANGES)
    assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]
    # Keys never see private conversations.
    conversations_key, _ = await env.api_key("conversations:read")
    seen_by_key, _ = await read_all(conversations_key, start)
    assert conversation not in {c["nodeId"] for c in seen_by_key}


async def test_bad_cursor_and_page_size_are_validation_errors(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    for variables, field in (
        ({"after": "not-a-cursor"}, "after"),
        ({"after": to_global_id("Customer", uuid.uuid4())}, "after"),
        ({"first": 101}, "first"),
        ({"first": -1}, "first"),
    ):
        result = await admin(CHANGES, variables)
        assert result.status == 200, result.body
        assert [(e["extensions"]["code"], e["extensions"].get("field")) for e in result.errors] == [
            ("VALIDATION", field)
        ], variables


async def test_a_change_committed_late_is_not_skipped_by_a_reader_that_read_past_it(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    actors: dict[Role, Actor],
) -> None:
    """The writer that started first commits last: a reader going by id order would have
    read past its change; the feed holds later changes back until it commits."""
    admin = as_role[Role.ADMIN]
    _, start = await read_all(admin)
    async with sessionmaker() as slow, slow.begin():
        late = await customers.create_customer(actors[Role.ADMIN], slow, {"name": "Late"})
        early = await create_customer(admin, "Early")  # commits while ``slow`` is open
        held, cursor = await read_all(admin, start)
        assert held == []  # the early commit waits behind the open transaction
    changes, _ = await read_all(admin, cursor)
    assert [c["nodeId"] for c in changes] == [to_global_id("Customer", late.id), early]


async def test_concurrent_writers_on_two_processes_are_seen_once_each_in_commit_order(
    settings: Any,
    tokens: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    actors: dict[Role, Actor],
) -> None:
    """Sixteen clients write through two server processes while a third client pages the
    feed, alternating between the processes, resuming by cursor; slow transactions that
    started early commit late in between. Every change is seen exactly once, each
    object's changes in the order they were made, and the pages read on the way add up to
    the log read afterwards in one go."""
    writers, rounds = 16, 6
    with support.run_uvicorn(settings) as first, support.run_uvicorn(settings) as second:
        async with (
            httpx.AsyncClient(base_url=first, timeout=30) as one,
            httpx.AsyncClient(base_url=second, timeout=30) as two,
        ):
            servers = [
                support.GraphQLClient(one, tokens[Role.ADMIN]),
                support.GraphQLClient(two, tokens[Role.ADMIN]),
            ]
            _, start = await read_all(servers[0])
            made: dict[str, list[str]] = {}
            done = asyncio.Event()

            async def write(n: int) -> None:
                client = servers[n % 2]
                node = await create_customer(client, f"Writer {n}")
                made[node] = ["CREATED"]
                for r in range(rounds):
                    result = await client(UPDATE, {"i": {"id": node, "tags": [f"r{r}"]}})
                    assert result.ok()["updateCustomer"]["errors"] == []
                    made[node].append("UPDATED")
                result = await client(ARCHIVE, {"i": {"id": node}})
                assert result.ok()["archiveCustomer"]["errors"] == []
                made[node].append("ARCHIVED")

            async def slow_writer(n: int) -> None:
                async with sessionmaker() as session, session.begin():
                    row = await customers.create_customer(
                        actors[Role.ADMIN], session, {"name": f"Slow {n}"}
                    )
                    await asyncio.sleep(0.3)
                made[to_global_id("Customer", row.id)] = ["CREATED"]

            seen: list[dict[str, Any]] = []

            def expected() -> int:
                return sum(len(kinds) for kinds in made.values())

            async def follow() -> None:
                after, turn = start, 0
                deadline = None
                # Until every write has returned and been seen (a change of a transaction
                # of someone else still running may be held back a little longer).
                while not (done.is_set() and len(seen) >= expected()):
                    if done.is_set():
                        deadline = deadline or asyncio.get_running_loop().time() + 30
                        assert asyncio.get_running_loop().time() < deadline, (len(seen), expected())
                    page, after = await read_all(servers[turn % 2], after, first=7)
                    seen.extend(page)
                    turn += 1
                    await asyncio.sleep(0.02)

            reader = asyncio.create_task(follow())
            await asyncio.gather(
                *(write(n) for n in range(writers)), *(slow_writer(n) for n in range(4))
            )
            done.set()
            await reader
            everything, _ = await read_all(servers[1], start)

    mine = [c for c in seen if c["nodeId"] in made]
    assert len({c["cursor"] for c in seen}) == len(seen), "a change was delivered twice"
    assert len(mine) == len(seen) == expected()
    for node, kinds in made.items():
        assert [k for k, _ in of_node(mine, node)] == kinds, node
    positions = [Position.decode(c["cursor"]) for c in seen]
    assert positions == sorted(positions)
    assert [c["cursor"] for c in everything] == [c["cursor"] for c in seen]


async def test_a_page_of_none_reads_nothing_and_keeps_the_cursor(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    """``first: 0`` (found by the generated reads of the differential test)."""
    admin = as_role[Role.ADMIN]
    _, start = await read_all(admin)
    await create_customer(admin, "Someone")
    page = (await admin(CHANGES, {"after": start, "first": 0})).ok()["changes"]
    assert page == {"cursor": start, "hasMore": True, "changes": []}
