"""Segments over GraphQL: saving (validated like `customers(filter:)`), sharing and privacy,
roles, versions, archiving, membership at read time with paging, built-in RFM segments
checked against a plain-Python computation, drill-downs, cohorts, statement counts."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Role, Segment, User, Workspace
from crm_graphql.services import api_keys
from crm_graphql.services.rfm import RfmSegment
from crm_graphql.services.segments import BUILT_INS
from tests import rfm_reference, support
from tests.api.conftest import StatementCounter
from tests.api.scenarios import Env

Clients = dict[Role, support.GraphQLClient]

SEGMENT_FIELDS = (
    "id name description filter shared builtIn rfmSegment version archivedAt owner { id }"
)
CREATE = f"""mutation($i: CreateSegmentInput!) {{
  createSegment(input: $i) {{ segment {{ {SEGMENT_FIELDS} }} errors {{ code field message }} }}
}}"""
UPDATE = f"""mutation($i: UpdateSegmentInput!) {{
  updateSegment(input: $i) {{ segment {{ {SEGMENT_FIELDS} }} errors {{ code field message }} }}
}}"""
ARCHIVE = """mutation($i: ArchiveInput!) {
  archiveSegment(input: $i) { segment { id archivedAt } errors { code field message } }
}"""
LIST = """query($first: Int, $after: String, $filter: SegmentFilter, $all: Boolean! = false) {
  segments(first: $first, after: $after, filter: $filter, includeArchived: $all) {
    totalCount pageInfo { hasNextPage endCursor } nodes { id name builtIn shared }
  }
}"""
NODE = "query($id: ID!) { node(id: $id) { ... on Segment { id name filter } } }"
MEMBERS = """query($id: ID!, $first: Int, $after: String, $filter: CustomerFilter) {
  customers(segmentId: $id, first: $first, after: $after, filter: $filter,
            orderBy: [{field: NAME}]) {
    totalCount pageInfo { hasNextPage endCursor } nodes { id name }
  }
}"""


def built_in_id(segment: RfmSegment) -> str:
    return to_global_id("Segment", next(b.id for b in BUILT_INS if b.rfm_segment == segment))


async def create(client: support.GraphQLClient, **input: Any) -> dict[str, Any]:
    result = (await client(CREATE, {"i": input})).ok()["createSegment"]
    assert result["errors"] == [], result
    return result["segment"]  # type: ignore[no-any-return]


async def add_customers(client: support.GraphQLClient, names: list[str]) -> list[str]:
    ids = []
    for name in names:
        result = await client(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
            {"i": {"name": name, "lifecycleStage": "CUSTOMER" if "VIP" in name else "LEAD"}},
        )
        ids.append(result.ok()["createCustomer"]["customer"]["id"])
    return ids


async def segment_rows(sessionmaker: async_sessionmaker[AsyncSession], ws: uuid.UUID) -> int:
    async with sessionmaker() as s:
        return int(await s.scalar(select(func.count()).where(Segment.workspace_id == ws)) or 0)


async def test_a_saved_segment_keeps_its_filter_as_the_client_wrote_it(
    as_role: Clients, users: dict[Role, User]
) -> None:
    filter = {
        "or": [{"name": {"startsWith": "Ada"}}, {"tags": {"anyOf": ["vip"]}}],
        "lifecycleStage": {"in": ["LEAD", "CUSTOMER"]},
        "ownerId": {"eq": to_global_id("User", users[Role.AGENT].id)},
        "createdAt": {"gte": "2026-01-01T00:00:00Z"},
    }
    saved = await create(as_role[Role.AGENT], name="Mine", description="Leads", filter=filter)
    assert saved["filter"] == filter
    assert (saved["shared"], saved["builtIn"], saved["version"]) == (False, False, 1)
    assert saved["owner"] == {"id": to_global_id("User", users[Role.AGENT].id)}
    again = (await as_role[Role.AGENT](NODE, {"id": saved["id"]})).ok()["node"]
    assert again == {"id": saved["id"], "name": "Mine", "filter": filter}


@pytest.mark.parametrize(
    ("filter", "field"),
    [
        ({"nmae": {"eq": "x"}}, "filter"),
        ({"name": {"contans": "x"}}, "filter.name"),
        ({"name": {"eq": 5}}, "filter.name.eq"),
        ({"lifecycleStage": {"eq": "NOPE"}}, "filter.lifecycleStage.eq"),
        ({"and": [{"email": {"gt": "a"}}]}, "filter.and.0.email"),
        ({"ownerId": {"eq": "not an id"}}, "filter.ownerId"),
        ({"createdAt": {"gte": "0001-01-01T00:00:00Z"}}, "filter.createdAt"),
        ({"createdAt": {"gte": "yesterday"}}, "filter.createdAt.gte"),
        ({"rfmSegment": {"eq": "CHAMPIONS"}, "orderedAt": {"isNull": True}}, "filter.orderedAt"),
        ([{"name": {"eq": "x"}}], "filter"),
        ("name", "filter"),
    ],
)
async def test_a_bad_filter_is_refused_with_the_part_at_fault_and_nothing_saved(
    as_role: Clients,
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
    filter: Any,
    field: str,
) -> None:
    result = (await as_role[Role.AGENT](CREATE, {"i": {"name": "Bad", "filter": filter}})).ok()
    errors = result["createSegment"]["errors"]
    assert [(e["code"], e["field"]) for e in errors] == [("VALIDATION", field)], errors
    assert result["createSegment"]["segment"] is None
    assert await segment_rows(sessionmaker, workspace.id) == 0
    # The same filter is refused by the customers list itself (when it is an object).
    if isinstance(filter, dict):
        listed = await as_role[Role.AGENT](
            "query($f: CustomerFilter) { customers(filter: $f) { totalCount } }", {"f": filter}
        )
        assert listed.errors, listed.body


async def test_private_segments_are_their_owners_alone(
    as_role: Clients, env: Env, users: dict[Role, User]
) -> None:
    agent, manager = as_role[Role.AGENT], as_role[Role.MANAGER]
    private = await create(agent, name="Private", filter={"name": {"contains": "x"}})
    shared = await create(agent, name="Shared", filter={"name": {"contains": "y"}}, shared=True)
    key, _ = await env.api_key(api_keys.CUSTOMERS_READ)
    for other in (manager, as_role[Role.ADMIN], key):
        assert (await other(NODE, {"id": private["id"]})).ok() == {"node": None}
        assert (await other(NODE, {"id": shared["id"]})).ok()["node"]["name"] == "Shared"
        listed = (await other(LIST, {"filter": {"builtIn": False}})).ok()["segments"]
        assert [n["name"] for n in listed["nodes"]] == ["Shared"] and listed["totalCount"] == 1
        members = await other(MEMBERS, {"id": private["id"]})
        assert [e["extensions"]["code"] for e in members.errors] == ["NOT_FOUND"]
        assert members.errors[0]["path"] == ["customers"]
    for mutation, input in ((UPDATE, {"name": "Mine now"}), (ARCHIVE, {})):
        result = (await manager(mutation, {"i": {"id": private["id"], **input}})).ok()
        [payload] = result.values()
        assert [e["code"] for e in payload["errors"]] == ["NOT_FOUND"]
    mine = (await agent(LIST, {"filter": {"builtIn": False}})).ok()["segments"]
    assert sorted(n["name"] for n in mine["nodes"]) == ["Private", "Shared"]


async def test_who_may_save_change_and_archive(as_role: Clients, env: Env) -> None:
    agent, manager, viewer = as_role[Role.AGENT], as_role[Role.MANAGER], as_role[Role.VIEWER]
    refused = (await viewer(CREATE, {"i": {"name": "V", "filter": {}}})).ok()["createSegment"]
    assert [e["code"] for e in refused["errors"]] == ["FORBIDDEN"]
    shared = await create(manager, name="Team", filter={}, shared=True)
    own = await create(agent, name="Own", filter={})
    by_agent = (await agent(UPDATE, {"i": {"id": shared["id"], "name": "X"}})).ok()
    assert [e["code"] for e in by_agent["updateSegment"]["errors"]] == ["FORBIDDEN"]
    by_agent = (await agent(UPDATE, {"i": {"id": own["id"], "shared": True}})).ok()
    assert by_agent["updateSegment"]["segment"]["shared"] is True
    by_manager = (await manager(UPDATE, {"i": {"id": own["id"], "name": "Renamed"}})).ok()
    assert by_manager["updateSegment"]["segment"]["name"] == "Renamed"
    champions = built_in_id(RfmSegment.CHAMPIONS)
    for client in (agent, manager):
        result = (await client(UPDATE, {"i": {"id": champions, "name": "Mine"}})).ok()
        assert [e["code"] for e in result["updateSegment"]["errors"]] == ["VALIDATION"]
    key, _ = await env.api_key(api_keys.CUSTOMERS_WRITE)
    result = (await key(CREATE, {"i": {"name": "K", "filter": {}}})).ok()["createSegment"]
    assert [e["code"] for e in result["errors"]] == ["FORBIDDEN"]


async def test_updates_check_the_version_and_archived_segments_leave_the_list(
    as_role: Clients,
) -> None:
    agent = as_role[Role.AGENT]
    saved = await create(agent, name="V1", filter={"name": {"eq": "a"}})
    stale = (
        await agent(UPDATE, {"i": {"id": saved["id"], "expectedVersion": 7, "name": "x"}})
    ).ok()
    assert [e["code"] for e in stale["updateSegment"]["errors"]] == ["CONFLICT"]
    changed = (
        await agent(
            UPDATE,
            {"i": {"id": saved["id"], "expectedVersion": 1, "filter": {"name": {"eq": "b"}}}},
        )
    ).ok()["updateSegment"]["segment"]
    assert (changed["version"], changed["filter"], changed["name"]) == (
        2,
        {"name": {"eq": "b"}},
        "V1",
    )
    bad = (await agent(UPDATE, {"i": {"id": saved["id"], "filter": {"x": 1}}})).ok()
    assert [e["field"] for e in bad["updateSegment"]["errors"]] == ["filter"]
    archived = (await agent(ARCHIVE, {"i": {"id": saved["id"]}})).ok()["archiveSegment"]
    assert archived["segment"]["archivedAt"] is not None
    listed = (await agent(LIST, {"filter": {"builtIn": False}})).ok()["segments"]
    assert listed["nodes"] == []
    listed = (await agent(LIST, {"filter": {"builtIn": False}, "all": True})).ok()["segments"]
    assert [n["id"] for n in listed["nodes"]] == [saved["id"]]
    assert (await agent(NODE, {"id": saved["id"]})).ok()["node"]["name"] == "V1"


async def test_segments_lists_built_ins_first_then_saved_ones_page_by_page(
    as_role: Clients,
) -> None:
    agent = as_role[Role.AGENT]
    for name in ("Delta", "Alpha", "Charlie", "Bravo"):
        await create(agent, name=name, filter={})
    seen, after, pages = [], None, 0
    while True:
        page = (await agent(LIST, {"first": 4, "after": after})).ok()["segments"]
        assert page["totalCount"] == len(BUILT_INS) + 4
        seen.extend(page["nodes"])
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 4
    assert [n["name"] for n in seen] == [b.name for b in BUILT_INS] + [
        "Alpha",
        "Bravo",
        "Charlie",
        "Delta",
    ]
    assert all(n["builtIn"] and n["shared"] for n in seen[: len(BUILT_INS)])
    assert seen[0]["id"] == built_in_id(RfmSegment.CHAMPIONS)
    only_built_in = (await agent(LIST, {"filter": {"builtIn": True}})).ok()["segments"]
    assert only_built_in["totalCount"] == len(BUILT_INS)
    named = (await agent(LIST, {"filter": {"name": {"startsWith": "b"}}})).ok()["segments"]
    assert [n["name"] for n in named["nodes"]] == ["Bravo"]
    bad = await agent(LIST, {"after": "bm90IGEgY3Vyc29y"})
    assert [e["extensions"]["code"] for e in bad.errors] == ["VALIDATION"]


async def test_membership_is_read_at_query_time_and_pages_like_customers(
    as_role: Clients,
) -> None:
    agent = as_role[Role.AGENT]
    names = [f"Seg {n:02d}" + (" VIP" if n % 3 == 0 else "") for n in range(23)]
    await add_customers(agent, [*names, "Other 1", "Other 2"])
    saved = await create(agent, name="Seg", filter={"name": {"startsWith": "seg"}}, shared=True)
    collected, after = [], None
    while True:
        page = (await agent(MEMBERS, {"id": saved["id"], "first": 5, "after": after})).ok()
        collected.extend(n["name"] for n in page["customers"]["nodes"])
        assert page["customers"]["totalCount"] == 23
        if not page["customers"]["pageInfo"]["hasNextPage"]:
            break
        after = page["customers"]["pageInfo"]["endCursor"]
    assert collected == sorted(names)
    # A further filter narrows the segment; the segment's own connection says the same.
    vip = {"lifecycleStage": {"eq": "CUSTOMER"}}
    combined = (await agent(MEMBERS, {"id": saved["id"], "first": 50, "filter": vip})).ok()
    expected = sorted(n for n in names if "VIP" in n)
    assert [n["name"] for n in combined["customers"]["nodes"]] == expected
    nested = (
        await agent(
            """query($id: ID!, $f: CustomerFilter) { node(id: $id) { ... on Segment {
                customers(first: 3, filter: $f, orderBy: [{field: NAME, direction: DESC}]) {
                  totalCount nodes { name } }
                drillDown(filter: $f) { list filter } } } }""",
            {"id": saved["id"], "f": vip},
        )
    ).ok()["node"]
    assert nested["customers"]["totalCount"] == len(expected)
    assert [n["name"] for n in nested["customers"]["nodes"]] == expected[::-1][:3]
    drill = nested["drillDown"]
    assert drill["list"] == "customers"
    assert drill["filter"] == {"and": [vip, {"name": {"startsWith": "seg"}}]}
    again = await agent(
        "query($f: CustomerFilter) { customers(filter: $f, first: 50) { totalCount } }",
        {"f": drill["filter"]},
    )
    assert again.ok()["customers"]["totalCount"] == len(expected)
    # Evaluated when read: a new matching customer is a member at once.
    await add_customers(agent, ["Seg 99"])
    page = (await agent(MEMBERS, {"id": saved["id"], "first": 1})).ok()["customers"]
    assert page["totalCount"] == 24
    backwards = await agent(
        """query($id: ID!) { customers(segmentId: $id, last: 2, orderBy: [{field: NAME}]) {
             nodes { name } pageInfo { hasPreviousPage } } }""",
        {"id": saved["id"]},
    )
    assert [n["name"] for n in backwards.ok()["customers"]["nodes"]] == ["Seg 22", "Seg 99"]
    unknown = await agent(MEMBERS, {"id": to_global_id("Segment", uuid.uuid4())})
    assert [e["extensions"]["code"] for e in unknown.errors] == ["NOT_FOUND"]
    malformed = await agent(MEMBERS, {"id": "nope"})
    assert [e["extensions"]["code"] for e in malformed.errors] == ["NOT_FOUND"]


RFM_PAGE = """query($id: ID!, $first: Int, $after: String) {
  customers(segmentId: $id, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id rfm { recency frequency monetary { amount currency } rScore fScore mScore
                     fmScore segment lifetimeValue { amount currency }
                     drillDown { list filter } } }
  }
}"""


async def test_built_in_segments_hold_exactly_the_customers_python_scores_into_them(
    as_role: Clients,
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    history = await rfm_reference.generate(sessionmaker, workspace.id, seed=21, customers=70)
    expected = rfm_reference.expected_rfm(history)
    viewer = as_role[Role.VIEWER]
    seen: set[str] = set()
    for segment in RfmSegment:
        members: dict[str, Any] = {}
        after = None
        while True:
            page = (
                await viewer(RFM_PAGE, {"id": built_in_id(segment), "first": 7, "after": after})
            ).ok()["customers"]
            members.update({n["id"]: n["rfm"] for n in page["nodes"]})
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        want = {
            to_global_id("Customer", c): e
            for c, e in expected.items()
            if e.segment == segment.value
        }
        assert set(members) == set(want), segment
        assert page["totalCount"] == len(want)
        for gid, got in members.items():
            e = want[gid]
            assert got["segment"] == segment.name
            assert (got["rScore"], got["fScore"], got["mScore"], got["fmScore"]) == (
                e.r,
                e.f,
                e.m,
                e.fm,
            )
            assert got["frequency"] == e.order_count
            assert Decimal(got["monetary"]["amount"]) == e.total
            assert got["lifetimeValue"] == {"amount": str(e.clv), "currency": e.currency}
            assert got["monetary"]["currency"] == e.currency
            assert got["drillDown"] == {
                "list": "customers",
                "filter": {"rfmSegment": {"eq": segment.name}},
            }
        seen |= set(members)
        # The segment's drill-down filter lists the same customers on `customers`.
        drilled = await viewer(
            "query($f: CustomerFilter) { customers(filter: $f, first: 100) { nodes { id } } }",
            {"f": {"rfmSegment": {"eq": segment.name}}},
        )
        assert {n["id"] for n in drilled.ok()["customers"]["nodes"]} == set(want)
    assert seen == {to_global_id("Customer", c) for c in expected}
    without = [c for c in history.customers if c not in expected]
    no_orders = await viewer(
        "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Customer { rfm { segment } } } }",
        {"ids": [to_global_id("Customer", c) for c in without]},
    )
    assert all(n is None or n["rfm"] is None for n in no_orders.ok()["nodes"])


COHORTS = """query($from: Date!, $to: Date!, $tz: String!) {
  customerCohorts(from: $from, to: $to, timeZone: $tz) {
    month customers drillDown { list filter }
    cells { monthsSince customers share drillDown { list filter } }
  }
}"""


async def test_cohort_table_matches_python_and_each_cell_drills_down(
    as_role: Clients,
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    history = await rfm_reference.generate(sessionmaker, workspace.id, seed=5, customers=50)
    zone = ZoneInfo("America/New_York")
    today = datetime.now(UTC).astimezone(zone).date()
    first, last = date(today.year - 1, 1, 1), today
    expected = rfm_reference.expected_cohorts(history, first, last, zone)
    client = as_role[Role.MANAGER]
    table = (
        await client(COHORTS, {"from": first.isoformat(), "to": last.isoformat(), "tz": zone.key})
    ).ok()["customerCohorts"]
    got = {
        date.fromisoformat(c["month"]): (c["customers"], [x["customers"] for x in c["cells"]])
        for c in table
    }
    assert got == expected and len(got) >= 5
    for cohort in table[:3]:
        for cell in cohort["cells"][:4]:
            assert cell["share"] == pytest.approx(cell["customers"] / cohort["customers"])
            listed = await client(
                "query($f: CustomerFilter) { customers(filter: $f) { totalCount } }",
                {"f": cell["drillDown"]["filter"]},
            )
            assert listed.ok()["customers"]["totalCount"] == cell["customers"]
    bad = await client(COHORTS, {"from": "2026-01-01", "to": "2026-02-01", "tz": "Nowhere/X"})
    assert [e["extensions"]["code"] for e in bad.errors] == ["VALIDATION"]


async def test_a_segment_page_with_scores_costs_the_same_statements_at_any_size(
    as_role: Clients,
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
    counter: StatementCounter,
) -> None:
    await rfm_reference.generate(sessionmaker, workspace.id, seed=3, customers=80)
    viewer = as_role[Role.VIEWER]
    saved = await create(as_role[Role.AGENT], name="All", filter={}, shared=True)
    # The first read after the orders changed stores the workspace's scores (a few
    # statements, once per change of the order history: docs/decisions/0020).
    (await viewer(RFM_PAGE, {"id": saved["id"], "first": 1})).ok()
    for segment_id in (saved["id"], built_in_id(RfmSegment.HIBERNATING)):
        counts = []
        for n in (3, 30):
            counter.statements.clear()
            page = (await viewer(RFM_PAGE, {"id": segment_id, "first": n})).ok()["customers"]
            assert len(page["nodes"]) == min(n, page["totalCount"]) and page["totalCount"] > 3
            counts.append(len(counter.statements))
        assert counts[0] == counts[1] <= 5, counter.statements


NESTED = """query($n: Int!, $f: CustomerFilter, $last: Int) {
  segments(first: $n, filter: {builtIn: false}) { nodes { id name
    customers(first: 3, filter: $f, orderBy: [{field: NAME}]) {
      totalCount pageInfo { hasNextPage endCursor } nodes { name } }
    tail: customers(last: $last, orderBy: [{field: NAME}]) {
      pageInfo { hasPreviousPage } nodes { name } }
  } }
}"""


async def test_segments_with_their_customers_cost_the_same_statements_for_any_count(
    as_role: Clients, counter: StatementCounter
) -> None:
    agent = as_role[Role.AGENT]
    await add_customers(agent, [f"Seg {n:02d}" + (" VIP" if n % 4 == 0 else "") for n in range(40)])
    for digit in range(8):
        await create(agent, name=f"S{digit}", filter={"name": {"startsWith": f"Seg {digit % 4}"}})
    vip = {"lifecycleStage": {"eq": "CUSTOMER"}}
    counts = []
    for n in (2, 8):
        counter.statements.clear()
        listed = (await agent(NESTED, {"n": n, "f": vip, "last": 2})).ok()["segments"]["nodes"]
        counts.append(len(counter.statements))
        assert len(listed) == n
        for segment in listed:
            alone = (await agent(MEMBERS, {"id": segment["id"], "first": 3, "filter": vip})).ok()[
                "customers"
            ]
            alone["nodes"] = [{"name": c["name"]} for c in alone["nodes"]]
            assert segment["customers"] == alone, segment["name"]
            prefix = f"Seg {int(segment['name'][1]) % 4}"
            names = sorted(
                f"Seg {k:02d}" + (" VIP" if k % 4 == 0 else "")
                for k in range(40)
                if f"Seg {k:02d}".startswith(prefix)
            )
            assert [c["name"] for c in segment["tail"]["nodes"]] == names[-2:]
            assert segment["tail"]["pageInfo"]["hasPreviousPage"] is True
    assert counts[0] == counts[1], counter.statements
