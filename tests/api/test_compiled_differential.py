"""The compiled read path answers byte for byte what the executed path answers.

Two apps share one database: the normal one (compiled reads on) and one with
``compiled_reads=False`` (plain Strawberry). Every query of the API tests plus a generated
set (aliases, fragments, @include/@skip, both paging directions with cursors, filters with
and/or/not, multi-field orderBy, totalCount, nested lists, node/nodes with foreign and
malformed IDs, __typename) goes through both; the bodies must be identical. The data
holds values only direct SQL can store (PostgreSQL's infinities, the ends of the date
range, JSON numbers beyond 64 bits), and a seeded run of random reads over the read
schema (``tests/api/differential.py``) goes through both paths as every identity.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from graphql import OperationDefinitionNode, OperationType, get_named_type, parse
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql import demo
from crm_graphql.compiled import bulk as compiled_bulk
from crm_graphql.compiled.compiler import plain_fields
from crm_graphql.compiled.insight import aggregate_field
from crm_graphql.global_ids import from_global_id, to_global_id
from crm_graphql.models import Customer, Role, User, Workspace
from crm_graphql.resolvers.readmodel import OBJECT_TYPES, ROOT_LISTS
from crm_graphql.schema import schema
from crm_graphql.services import api_keys
from crm_graphql.services.actor import Actor
from crm_graphql.services.segments import BUILT_INS
from tests import support
from tests.api.differential import ReadQueries, Samples, node_type

COMPILED = "compiled"


class Pair:
    """The same request to both apps."""

    def __init__(self, compiled: httpx.AsyncClient, executed: httpx.AsyncClient, token: str):
        self.compiled = compiled
        self.executed = executed
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def both(
        self, query: str, variables: dict[str, Any] | None = None
    ) -> tuple[httpx.Response, httpx.Response]:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        # One request id for both: masked errors quote it.
        headers = {**self.headers, "X-Request-Id": uuid.uuid4().hex}
        fast = await self.compiled.post("/graphql", json=payload, headers=headers)
        slow = await self.executed.post("/graphql", json=payload, headers=headers)
        assert "x-crm-read-path" not in slow.headers
        return fast, slow

    async def same(
        self, query: str, variables: dict[str, Any] | None = None, *, compiled: bool | None = None
    ) -> Any:
        fast, slow = await self.both(query, variables)
        assert fast.status_code == slow.status_code, (query, fast.text, slow.text)
        assert fast.content == slow.content, (query, variables, fast.text, slow.text)
        if compiled is not None:
            taken = fast.headers.get("x-crm-read-path") == COMPILED
            assert taken is compiled, (query, variables, fast.headers)
        return orjson.loads(fast.content)


@pytest.fixture(scope="module")
async def executed_app(settings: Any) -> AsyncIterator[Any]:
    from crm_graphql.app import build_app

    application = build_app(settings.model_copy(update={"compiled_reads": False}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def demo_domain(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    domain = f"diff-{uuid.uuid4().hex[:8]}.example.com"
    async with sessionmaker() as session, session.begin():
        await demo.seed_demo(session, workspace_name=f"Diff {domain}", email_domain=domain)
        # Awkward values: quotes, backslashes, control characters, non-ASCII, nested JSON.
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.name == f"Diff {domain}")
        )
        first = await session.scalar(
            select(Customer.id).where(Customer.workspace_id == workspace_id).limit(1)
        )
        await session.execute(
            update(Customer)
            .where(Customer.id == first)
            .values(
                name='Zoë "Q" \\ O\'Neil\t\u0001\u2028 \U0001f600',
                tags=['a"b', "é"],
                preferences={"z": [1, 2.5, None, True], "a": {"b": "c\n"}, "long_key": -0.0},
                address={"street": '1 "Main" St', "postalCode": "75001", "city": None},
            )
        )
        await _store_edge_values(session, workspace_id)
        await _store_jobs(session, workspace_id, domain)
    return domain


# Jobs as the runner leaves them (kinds no runner knows, so none is picked up), queued by
# users of each role, with stored counts, errors and results; the last one holds values
# the API cannot represent as stored (a fractional count, a line given as text).
JOBS: list[dict[str, Any]] = [
    {
        "status": "succeeded",
        "counts": {"updated": 2, "created": 5, "failed": 1, "B": 3, "é": 4, "_": 0},
        "errors": [
            {"line": 3, "field": "email", "code": "VALIDATION", "message": 'Bad "email"\n'},
            {"line": None, "code": "NOT_FOUND", "message": "Zoë ✓"},
            {"message": "no code, no line"},
            {"line": 2147483647, "field": None, "code": "DUPLICATE"},
        ],
        "result": {"created": 5, "file": "é.csv", "nested": {"b": [1, 2.5, None]}},
        "total": 8,
        "done": 8,
        "error_count": 4,
    },
    {"status": "queued", "counts": {}, "errors": [], "result": None, "total": None, "done": 0},
    {
        "status": "failed",
        "counts": {"failed": 1e2},
        "errors": [{"line": 1, "code": "INTERNAL", "message": "x"}] * 3,
        "result": {"message": "boom"},
        "total": 3,
        "done": 1,
        "error_count": 120,
        "cancel_requested": True,
    },
    {"status": "cancelled", "counts": {"created": 2.5}, "errors": [{"line": "7", "field": 5}]},
]


async def _store_jobs(session: AsyncSession, workspace_id: Any, domain: str) -> None:
    """``JOBS``, each queued by the demo user of the next role in turn."""
    from crm_graphql.enums import JobStatus
    from crm_graphql.models import Job

    users = [
        await session.scalar(select(User.id).where(User.email == email))
        for email, _, _ in demo.demo_logins(domain)
    ]
    now = datetime(2026, 12, 1, 9, 30, 0, 123456).astimezone()
    for index, values in enumerate(JOBS):
        finished = values["status"] != "queued"
        session.add(
            Job(
                workspace_id=workspace_id,
                kind="differential",
                status=JobStatus(values["status"]),
                params={},
                done=values.get("done", 0),
                total=values.get("total"),
                checkpoint=0,
                counts=values["counts"],
                errors=values["errors"],
                error_count=values.get("error_count", len(values["errors"])),
                result=values.get("result"),
                created_by_id=users[index % len(users)],
                cancel_requested=values.get("cancel_requested", False),
                attempts=1,
                created_at=now - timedelta(hours=index),
                started_at=now if finished else None,
                finished_at=now + timedelta(minutes=index) if finished else None,
            )
        )
    await session.flush()


# Values only another client (or direct SQL) can store: PostgreSQL's -infinity/infinity,
# the ends of the accepted range, JSON numbers beyond 64 bits. Each goes to the rows of
# the customer with the most of them, so a filter on that customer pages through them.
EDGE_TIMES = (
    "'infinity'",
    "'-infinity'",
    "'0001-01-02 00:00:00+00'",
    "'9999-12-30 23:59:59.999999+00'",
    "'0001-01-01 00:00:00.5+00'",
)
# Not a finite 0001-01-01 or 9999-12-31: the driver reads those exactly as it reads
# -infinity and infinity, so such a row is indistinguishable from them (README).
EDGE_DATES = ("'infinity'", "'-infinity'", "'0001-01-02'", "'9999-12-30'")
BIG_JSON = """'{"big": 18446744073709551616, "neg": -9223372036854775809, "e": 1e20,
  "u64": 18446744073709551615, "deep": [{"n": 100000000000000000000000}]}'::jsonb"""


async def _store_edge_values(session: AsyncSession, workspace_id: Any) -> None:
    def cases(values: tuple[str, ...], otherwise: str) -> str:
        whens = " ".join(f"WHEN {i + 1} THEN {v}" for i, v in enumerate(values))
        return f"CASE n {whens} ELSE {otherwise} END"

    def rows(table: str) -> str:
        return f"""(SELECT id, row_number() OVER (ORDER BY id) AS n FROM {table}
          WHERE customer_id = (SELECT customer_id FROM {table} WHERE workspace_id = :ws
          GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 1)) picked"""

    statements = [
        f"""UPDATE orders t SET placed_at = {cases(EDGE_TIMES, "placed_at")},
              items = CASE n WHEN 1 THEN {BIG_JSON} ELSE items END
            FROM {rows("orders")} WHERE t.id = picked.id""",
        f"""UPDATE deals t SET expected_close_date = {cases(EDGE_DATES, "expected_close_date")},
              closed_at = CASE n WHEN 1 THEN 'infinity' WHEN 2 THEN '-infinity' ELSE closed_at END
            FROM {rows("deals")} WHERE t.id = picked.id""",
        f"""UPDATE activities t SET occurred_at = {cases(EDGE_TIMES, "occurred_at")},
              due_at = CASE n WHEN 1 THEN '-infinity' WHEN 2 THEN 'infinity' ELSE due_at END,
              details = CASE n WHEN 2 THEN {BIG_JSON} ELSE details END
            FROM {rows("activities")} WHERE t.id = picked.id""",
        """UPDATE customers SET last_activity_at = 'infinity' WHERE id = (SELECT customer_id
             FROM orders WHERE workspace_id = :ws AND placed_at = 'infinity')""",
        """UPDATE customers SET last_activity_at = '-infinity' WHERE id = (SELECT customer_id
             FROM deals WHERE workspace_id = :ws AND expected_close_date = 'infinity')""",
        f"""UPDATE companies SET custom_fields = {BIG_JSON} WHERE id = (SELECT id FROM companies
             WHERE workspace_id = :ws ORDER BY name LIMIT 1)""",
    ]
    for statement in statements:
        await session.execute(text(statement), {"ws": workspace_id})


@pytest.fixture
async def pair(app: Any, executed_app: Any, demo_domain: str) -> AsyncIterator[Pair]:
    login = demo.demo_logins(demo_domain)[0]
    compiled_http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    )
    executed_http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=executed_app), base_url="http://testserver"
    )
    async with compiled_http, executed_http:
        client = await support.GraphQLClient(compiled_http).logged_in(login[0], login[1])
        assert client.token
        yield Pair(compiled_http, executed_http, client.token)


async def _ids(pair: Pair) -> dict[str, str]:
    body = await pair.same(
        """{ customers(first: 3) { nodes { id company { id } } }
             deals(first: 1) { nodes { id stage { id } pipeline { id } } }
             orders(first: 1) { nodes { id } } activities(first: 1) { nodes { id } }
             users(first: 1) { nodes { id } } }""",
        compiled=True,
    )
    data = body["data"]
    return {
        "customer": data["customers"]["nodes"][0]["id"],
        "customer2": data["customers"]["nodes"][1]["id"],
        "company": next(n["company"]["id"] for n in data["customers"]["nodes"] if n["company"]),
        "deal": data["deals"]["nodes"][0]["id"],
        "stage": data["deals"]["nodes"][0]["stage"]["id"],
        "pipeline": data["deals"]["nodes"][0]["pipeline"]["id"],
        "order": data["orders"]["nodes"][0]["id"],
        "activity": data["activities"]["nodes"][0]["id"],
        "user": data["users"]["nodes"][0]["id"],
    }


Q1 = """{ customers(first: 50) { edges { cursor node { id name email lifecycleStage tags
  createdAt lastActivityAt company { id name domain } owner { id name email } } }
  pageInfo { hasNextPage endCursor } } }"""

Q2 = """{ customers(first: 20) { nodes { id name company { name industry employeeCount }
  deals(first: 5) { totalCount nodes { id title amount currency status expectedCloseDate
    stage { id name probability } activities(first: 3) { nodes { type subject occurredAt
    completedAt details author { name } } } } }
  orders(first: 5) { nodes { number status amount currency placedAt items } }
  purchaseSummary { orderCount totals { amount currency } firstOrderAt lastOrderAt } } } }"""

Q4 = """query($f: CustomerFilter, $o: [CustomerOrder!]) { customers(first: 20, filter: $f,
  orderBy: $o) { nodes { id name lifecycleStage createdAt lastActivityAt } pageInfo {
  hasNextPage endCursor } } }"""


async def test_benchmark_shaped_queries_are_compiled_and_identical(pair: Pair) -> None:
    ids = await _ids(pair)
    await pair.same(Q1, compiled=True)
    await pair.same(Q2, compiled=True)
    await pair.same(
        "query($id: ID!) { node(id: $id) { __typename id ... on Customer { name email } } }",
        {"id": ids["customer"]},
        compiled=True,
    )
    body = await pair.same(
        Q4,
        {
            "f": {
                "name": {"contains": "a"},
                "lifecycleStage": {"in": ["LEAD", "CUSTOMER", "OPPORTUNITY"]},
                "createdAt": {"gte": "2000-01-01T00:00:00Z", "lt": "2100-01-01T00:00:00Z"},
            },
            "o": [{"field": "LAST_ACTIVITY_AT", "direction": "DESC"}],
        },
        compiled=True,
    )
    assert body["data"]["customers"]["nodes"], "the filter should match demo customers"
    # The same shapes with other values reuse compiled fragments: the values must follow.
    for term, stages in (("e", ["LEAD"]), ("o", ["CUSTOMER", "LEAD"]), ("zz", ["CHURNED"])):
        for direction in ("ASC", "DESC"):
            await pair.same(
                Q4,
                {
                    "f": {"name": {"contains": term}, "lifecycleStage": {"in": stages}},
                    "o": [{"field": "LAST_ACTIVITY_AT", "direction": direction}],
                },
                compiled=True,
            )


async def test_the_cost_asked_for_is_reported_the_same_on_both_paths(pair: Pair) -> None:
    pair.headers = {**pair.headers, "X-CRM-Cost": "1"}
    for query, variables in ((Q1, None), (Q2, None), (Q4, {"f": {"name": {"contains": "a"}}})):
        body = await pair.same(query, variables, compiled=True)
        assert body["extensions"]["cost"]["requestedQueryCost"] > 0
    # An operation over the cost limit: refused alike.
    body = await pair.same(
        "{ customers(first: 100) { nodes { deals(first: 100) { nodes {"
        " activities(first: 100) { nodes { id } } } } } } }"
    )
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert (
        body["extensions"]["cost"]["requestedQueryCost"] == body["errors"][0]["extensions"]["cost"]
    )


async def test_me_is_compiled_alone_and_beside_lists(pair: Pair) -> None:
    """Every page asks for the caller: ``me`` (the caller's own row; plans are shared by a
    role's users, the id is bound per request) does not send a page to the executed path."""
    await pair.same("{ me { id name email role isActive createdAt __typename } }", compiled=True)
    await pair.same(
        "{ customers(first: 2) { nodes { id name owner { name } } } me { id role } }",
        compiled=True,
    )
    await pair.same("{ a: me { id } b: me { email } }", compiled=True)


async def test_an_inbox_page_is_compiled_with_unread_counts_and_last_messages(
    pair: Pair,
) -> None:
    """Conversations (visible per user: private ones to admins, managers and their
    assignee) with customer, company, assignee, ``unreadCount``, ``lastMessage`` and
    messages: what every identity sees, byte for byte, on the compiled path."""
    inbox = """{ conversations(first: 20) { totalCount pageInfo { hasNextPage endCursor }
      nodes { id subject channel status isPrivate lastMessageAt unreadCount
        rating { score comment ratedAt }
        customer { name company { name } } assignee { name }
        lastMessage { id seq body authorType createdAt author { name }
          conversation { id subject } }
        messages(first: 3) { totalCount nodes { seq body author { email } } } } } }"""
    await pair.same(inbox, compiled=True)
    page = """{ customers(first: 5) { nodes { id conversations(first: 2) { totalCount
      nodes { subject unreadCount lastMessage { body } } } } } }"""
    await pair.same(page, compiled=True)
    # Filtered by the caller's read state: the executed path answers.
    await pair.same("{ conversations(filter: {unread: true}) { totalCount } }", compiled=False)


async def test_a_deal_board_is_compiled_with_its_stages(pair: Pair) -> None:
    """``Pipeline.stages``: every live stage, by position, as the executed path lists them.
    A column's ``totalCount`` comes from the deals' summary when unfiltered and from the
    rows when filtered; both agree with the executed path's count of rows, also after a
    deal was archived (the summary leaves it out in the same transaction)."""
    board = """query($f: DealFilter) { pipelines(first: 5) { nodes { id name stages { id name
      position probability pipeline { name }
      deals(first: 3, filter: $f) { totalCount nodes { id title amount } } } } } }"""
    answer = await pair.same(board, compiled=True)
    await pair.same(board, {"f": {"title": {"contains": "a"}}}, compiled=True)
    stage = next(
        s for p in answer["data"]["pipelines"]["nodes"] for s in p["stages"] if s["deals"]["nodes"]
    )
    archived = await pair.compiled.post(
        "/graphql",
        json={
            "query": "mutation($i: ArchiveInput!) { archiveDeal(input: $i) { errors { code } } }",
            "variables": {"i": {"id": stage["deals"]["nodes"][0]["id"]}},
        },
        headers=pair.headers,
    )
    assert archived.json()["data"]["archiveDeal"]["errors"] == [], archived.text
    after = await pair.same(board, compiled=True)
    counts = {
        s["id"]: s["deals"]["totalCount"]
        for p in after["data"]["pipelines"]["nodes"]
        for s in p["stages"]
    }
    assert counts[stage["id"]] == stage["deals"]["totalCount"] - 1


def test_an_unfiltered_column_is_counted_from_the_summary() -> None:
    """The compiled deal board reads ``deal_stage_totals`` for an unfiltered column's
    count (a sum over its summary rows) instead of counting the stage's deals; with a
    filter it counts the rows. (Before, every column counted its deals.)"""
    from crm_graphql.compiled import CompiledReads
    from crm_graphql.enums import Role
    from crm_graphql.models import DealStageTotal
    from crm_graphql.services.actor import Actor
    from crm_graphql.settings import Settings

    reads = CompiledReads(schema, Settings(database_url="postgresql://unused@127.0.0.1/x"), {})
    actor = Actor(workspace_id=uuid.uuid4(), role=Role.ADMIN, user_id=uuid.uuid4())
    query = """query($f: DealFilter) { pipelines(first: 2) { nodes { stages {
      deals(first: 20, filter: $f) { totalCount nodes { title } } } } } }"""
    whole = reads.plan(query, None, None, actor)
    assert whole is not None and DealStageTotal in whole.models
    assert "deal_stage_totals" in whole.sql and "count(*) FROM deals" not in whole.sql
    filtered = reads.plan(query, None, {"f": {"title": {"contains": "x"}}}, actor)
    assert filtered is not None and "deal_stage_totals" not in filtered.sql
    assert "count(*) FROM deals" in filtered.sql


def _aggregate_selection(field: str) -> str:
    """Every field of an aggregate and of its groups but the drill-downs (relations with
    their name): what a dashboard asks for."""
    query = schema._schema.query_type
    assert query is not None
    totals = get_named_type(query.fields[field].type)
    group = get_named_type(totals.fields["groups"].type)

    def fields_of(named: Any) -> str:
        parts = []
        for name, definition in named.fields.items():
            inner = get_named_type(definition.type)
            if name == "groups":
                continue
            if name == "drillDown":
                parts.append("drillDown { list filter __typename }")
                continue
            if name in ("amount",) or inner.name == "NumberAggregate":
                parts.append(
                    f"{name} {{ sum {{ amount currency }} avg {{ amount currency }} "
                    "min { amount currency } max { amount currency } }"
                    if inner.name == "MoneyAggregate"
                    else f"{name} {{ sum avg min max __typename }}"
                )
            elif hasattr(inner, "fields"):
                parts.append(f"{name} {{ id __typename }}")
            else:
                parts.append(name)
        return " ".join(parts)

    return f"{fields_of(totals)} groups {{ {fields_of(group)} }}"


async def test_aggregates_are_compiled_and_identical(pair: Pair) -> None:
    """Every list's aggregate, alone and grouped by each of its dimensions and by two of
    them, time fields in every interval and in zones with odd offsets (+05:45, -03:30),
    sums only (orders read their monthly totals then) and with extremes."""
    query = schema._schema.query_type
    assert query is not None
    compiled = 0
    for field in [n for n in query.fields if aggregate_field(n) is not None]:
        spec = aggregate_field(field)
        assert spec is not None
        group_type = get_named_type(query.fields[field].args["groupBy"].type)
        enum = get_named_type(group_type.fields["field"].type)  # type: ignore[attr-defined]
        selection = _aggregate_selection(field)
        filter_type = get_named_type(query.fields[field].args["filter"].type).name
        text = (
            f"query($g: [{group_type.name}!], $z: String, $f: {filter_type}) "
            f"{{ {field}(groupBy: $g, timeZone: $z, filter: $f) {{ {selection} }} }}"
        )
        groupings: list[list[dict[str, Any]]] = [[]]
        names = list(enum.values)  # type: ignore[attr-defined]
        for name in names:
            dimension = spec.dimensions[enum.values[name].value]  # type: ignore[attr-defined]
            intervals = (
                ["DAY", "WEEK", "MONTH", "QUARTER", "YEAR"] if dimension.bucketed else [None]
            )
            for interval in intervals:
                groupings.append([{"field": name, "interval": interval}])
        pair_of = [enum.values[n].value for n in names[:2]]  # type: ignore[attr-defined]
        groupings.append(
            [
                {"field": n, "interval": "MONTH" if spec.dimensions[d].bucketed else None}
                for n, d in zip(names[:2], pair_of, strict=True)
            ]
        )
        filter_type_fields = schema._schema.type_map[filter_type].fields  # type: ignore[attr-defined]
        since = {"createdAt": {"gte": "2000-01-01T00:00:00Z"}}
        for index, grouping in enumerate(groupings):
            zone = ("UTC", "Asia/Kathmandu", "America/St_Johns", None)[index % 4]
            f = since if index % 2 and "createdAt" in filter_type_fields else None
            body = await pair.same(text, {"g": grouping, "z": zone, "f": f}, compiled=True)
            assert "errors" not in body, body
            compiled += 1
    # The orders' monthly totals (sums only, a period of whole months) and a filtered list.
    orders = """query($f: OrderFilter, $z: String) { ordersAggregate(filter: $f, timeZone: $z,
      groupBy: [{field: PLACED_AT, interval: MONTH}, {field: OWNER}]) {
      count amount { sum { amount currency } avg { amount } } groups { placedAt count
      owner { name } amount { sum { amount currency } } } } }"""
    period = {
        "status": {"in": ["PAID", "FULFILLED"]},
        "placedAt": {"gte": "2020-01-01T00:00:00Z", "lt": "2030-01-01T00:00:00Z"},
    }
    for zone in ("UTC", "Europe/Berlin", "America/New_York"):
        body = await pair.same(orders, {"f": period, "z": zone}, compiled=True)
        assert body["data"]["ordersAggregate"]["count"] > 0, body
    await pair.same(
        '{ dealsAggregate(filter: {title: {contains: "a"}}) { count amount { max { amount } } } }',
        compiled=True,
    )
    # Bad arguments: the executed path answers its error.
    for bad in ('timeZone: "Mars/Olympus"', "groupBy: [{field: STATUS, interval: DAY}]"):
        body = await pair.same(f"{{ dealsAggregate({bad}) {{ count }} }}", compiled=False)
        assert body["errors"][0]["extensions"]["code"] == "VALIDATION", body
    assert compiled > 30


TIME_SERIES = """query($m: TimeSeriesMetric!, $i: TimeInterval!, $from: DateTime!,
  $to: DateTime!, $z: String) {
  timeSeries(metric: $m, interval: $i, from: $from, to: $to, timeZone: $z) {
    start end count amount { amount currency } drillDown { list filter __typename } } }"""


async def test_time_series_are_compiled_and_identical(pair: Pair) -> None:
    """Every metric in every interval and odd zones, the period's ends inside buckets;
    bad periods take the executed path (its VALIDATION errors)."""
    nonempty = 0
    for metric in ("NEW_CUSTOMERS", "REVENUE", "DEALS_WON"):
        for index, interval in enumerate(("DAY", "WEEK", "MONTH", "QUARTER", "YEAR")):
            zone = ("UTC", "Asia/Kathmandu", "America/St_Johns", None, "Europe/Berlin")[index]
            start = "2023-03-15T10:00:00Z" if interval != "DAY" else "2026-09-01T00:00:00Z"
            variables = {"m": metric, "i": interval, "from": start,
                         "to": "2027-01-01T00:00:00Z", "z": zone}  # fmt: skip
            body = await pair.same(TIME_SERIES, variables, compiled=True)
            nonempty += sum(1 for point in body["data"]["timeSeries"] if point["count"])
    assert nonempty > 10
    base = {"m": "REVENUE", "i": "DAY", "from": "2026-01-01T00:00:00Z"}
    for bad in ({"to": "2025-01-01T00:00:00Z"}, {"to": "2099-01-01T00:00:00Z"},
                {"to": "2027-01-01T00:00:00Z", "z": "Mars/Olympus"}):  # fmt: skip
        body = await pair.same(TIME_SERIES, {**base, **bad}, compiled=False)
        assert body["errors"][0]["extensions"]["code"] == "VALIDATION", body


SERVICE_REPORT = Path("bench/queries/s4_service_report.graphql").read_text()
SERVICE_REPORT_PERIOD = """query($from: Date!, $to: Date!, $tz: String, $channels: [Channel!],
  $f: ConversationFilter) {
  serviceReport(from: $from, to: $to, timeZone: $tz, channels: $channels, filter: $f) {
    from to timeZone __typename
    volume { channel status count drillDown { list filter } }
    firstResponse { overall { count p90Seconds agent { name } drillDown { filter } }
      byAgent { agent { id } drillDown { filter } }
      byChannel { channel p50Seconds drillDown { list filter } } }
    resolution { byAgent { count drillDown { filter } } }
    csat { overall { csat averageScore satisfied satisfiedDrillDown { filter } }
      byAgent { agent { id } count drillDown { filter } satisfiedDrillDown { filter } }
      byChannel { channel drillDown { filter } satisfiedDrillDown { filter } } } } }"""
BACKLOG = """query($f: ConversationFilter) {
  serviceReport(from: "2025-01-01", to: "2025-01-31", filter: $f) {
    asOf backlog { label minAgeHours maxAgeHours count drillDown { list filter } } } }"""


async def test_service_reports_are_compiled_and_identical(pair: Pair) -> None:
    """The bench's service report and variants (zones, channels, a filter, an empty period),
    drill-downs included; the backlog's drill-downs are instants before each answer's asOf
    (the instant of each answer): compared with asOf put in."""
    counted = 0
    for start, end in (("2020-01-01", "2026-12-31"), ("2025-01-01", "2025-03-31")):
        for tz in ("UTC", "Asia/Kathmandu", None):
            body = await pair.same(
                SERVICE_REPORT, {"from": start, "to": end, "tz": tz}, compiled=True
            )
            counted += sum(cell["count"] for cell in body["data"]["serviceReport"]["volume"])
    assert counted > 0
    for variables in (
        {},
        {"channels": ["CHAT", "EMAIL"]},
        {"f": {"status": {"eq": "OPEN"}}},
        {"f": {"createdAt": {"gte": "2099-01-01T00:00:00Z"}}},
    ):
        await pair.same(
            SERVICE_REPORT_PERIOD,
            {"from": "2020-01-01", "to": "2026-12-31", "tz": "Europe/Berlin", **variables},
            compiled=True,
        )
    for variables in ({}, {"f": {"channel": {"eq": "CHAT"}}}):
        fast, slow = await pair.both(BACKLOG, variables)
        assert fast.headers.get("x-crm-read-path") == COMPILED
        answers = [orjson.loads(r.content)["data"]["serviceReport"] for r in (fast, slow)]
        for answer in answers:  # each band's bounds are its ages before the answer's asOf
            as_of = datetime.fromisoformat(answer["asOf"])
            for band in answer["backlog"]:
                text = orjson.dumps(band["drillDown"]["filter"]).decode()
                for hours in (band["minAgeHours"], band["maxAgeHours"]):
                    if hours:
                        instant = (as_of - timedelta(hours=hours)).isoformat()
                        assert instant in text, (instant, text)
                        text = text.replace(instant, f"asOf-{hours}h")
                band["drillDown"]["filter"] = orjson.loads(text)
            answer["asOf"] = None
        assert answers[0] == answers[1]
    body = await pair.same(
        '{ serviceReport(from: "2025-02-01", to: "2025-01-31") { volume { count } } }',
        compiled=False,
    )
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION", body


SALES_REPORT = """query($p: ID!, $from: Date!, $to: Date!, $tz: String, $owners: [ID!],
    $f: DealFilter) {
  salesReport(pipelineId: $p, from: $from, to: $to, timeZone: $tz, ownerIds: $owners, filter: $f) {
    __typename from to timeZone pipeline { id name }
    stages { stage { id name probability } openCount reachedCount conversionToNext
      openValue { currency amount count drillDown { list filter } }
      weightedValue { amount drillDown { filter } }
      drillDown { list filter } reachedDrillDown { filter } }
    winRate { won lost rate drillDown { list filter } wonDrillDown { filter }
      lostDrillDown { filter } }
    averageDealSize { currency amount count drillDown { filter } }
    averageCycleTime { averageDays count drillDown { filter } }
    weightedPipeline { currency amount count drillDown { filter } }
    forecast { month owner { id name } currency count amount weightedAmount
      drillDown { list filter } } } }"""


async def test_sales_reports_are_compiled_and_identical(pair: Pair) -> None:
    """The sales report, drill-downs included, from the summaries (whole months or not,
    zones east and west of UTC) and from the rows (a filter of the caller's, owners);
    a pipeline not seen and a bad period take the executed path."""
    ids = await _ids(pair)
    pipeline = ids["pipeline"]
    seen = 0
    for start, end in (
        ("2020-01-01", "2026-12-31"),
        ("2025-01-01", "2025-03-31"),
        ("2024-11-17", "2026-02-03"),
    ):
        for tz in ("UTC", "Asia/Kathmandu", "America/St_Johns", None):
            variables = {"p": pipeline, "from": start, "to": end, "tz": tz}
            body = await pair.same(SALES_REPORT, variables, compiled=True)
            report = body["data"]["salesReport"]
            seen += sum(s["openCount"] + s["reachedCount"] for s in report["stages"])
            seen += len(report["forecast"]) + report["winRate"]["won"]
    assert seen > 0
    for variables in (
        {"owners": [ids["user"]]},
        {"f": {"amount": {"gte": "1000"}}},
        {"f": {"status": {"in": ["WON", "LOST"]}}, "owners": [ids["user"]]},
        {"f": {"createdAt": {"gte": "2099-01-01T00:00:00Z"}}},
    ):
        await pair.same(
            SALES_REPORT,
            {
                "p": pipeline,
                "from": "2020-01-01",
                "to": "2026-12-31",
                "tz": "Europe/Berlin",
                **variables,
            },
            compiled=True,
        )
    for p, start, end in (
        (ids["stage"], "2025-01-01", "2025-01-31"),
        (pipeline, "2025-02-01", "2025-01-31"),
    ):
        body = await pair.same(SALES_REPORT, {"p": p, "from": start, "to": end}, compiled=False)
        assert body["errors"], body


SEARCH = """query($q: String!, $types: [SearchType!], $first: Int, $after: String) {
  search(query: $q, types: $types, first: $first, after: $after) {
    edges { cursor score node { __typename ... on Customer { id name email company { name } }
      ... on Company { id name domain } ... on Deal { id title amount }
      ... on Conversation { id subject unreadCount } ... on Activity { id what: subject } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


async def test_search_is_compiled_and_identical(pair: Pair) -> None:
    """As you type (one word, two to four letters), several words, kinds, pages by cursor;
    highlights (computed in Python) and bad arguments take the executed path."""
    pages = 0
    for q in ("a", "an", "ann", "jo", "smi", "example.com", "ann smi", "sales call", "zzzz"):
        for types in (None, ["CUSTOMER"], ["DEAL", "CONVERSATION", "ACTIVITY"]):
            variables: dict[str, Any] = {"q": q, "types": types, "first": 5}
            body = await pair.same(SEARCH, variables, compiled=True)
            found = body["data"]["search"]
            if found["pageInfo"]["hasNextPage"]:
                after = found["pageInfo"]["endCursor"]
                await pair.same(SEARCH, {**variables, "after": after}, compiled=True)
                pages += 1
    assert pages >= 3
    body = await pair.same('{ search(query: "a") { edges { score } } }', compiled=True)
    assert body["data"]["search"]["edges"]
    await pair.same(
        '{ search(query: "an") { edges { highlights { field snippet } } } }', compiled=False
    )
    for bad in ('query: "a", after: "nonsense"', 'query: "a", first: -1', 'query: "x" * 0'):
        await pair.same(f"{{ search({bad}) {{ edges {{ score }} }} }}", compiled=False)


SEGMENT_PAGE = Path("bench/queries/s2_segment_page.graphql").read_text()
RFM_LIST = """query($f: CustomerFilter, $n: Int) { customers(first: $n, filter: $f) {
  totalCount pageInfo { hasNextPage endCursor }
  nodes { name rfm { segment rScore fScore mScore fmScore frequency firstOrderAt lastOrderAt
                     __typename } } } }"""


async def test_segment_pages_with_rfm_scores_are_compiled_and_identical(
    pair: Pair, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sizes = {}
    for built_in in BUILT_INS:
        body = await pair.same(
            SEGMENT_PAGE, {"segment": to_global_id("Segment", built_in.id)}, compiled=True
        )
        sizes[built_in.rfm_segment] = body["data"]["customers"]["totalCount"]
    assert sum(sizes.values()) > 0 and len([n for n in sizes.values() if n]) >= 3, sizes
    for f in (
        {"rfmSegment": {"in": ["CHAMPIONS", "LOYAL", "LOST"]}},
        {"rfmSegment": {"ne": "HIBERNATING"}, "name": {"contains": "a"}},
        {"or": [{"rfmSegment": {"notIn": ["LOST", "LOYAL"]}}, {"rfmSegment": {"eq": "AT_RISK"}}]},
        None,
    ):
        await pair.same(RFM_LIST, {"f": f, "n": 40}, compiled=True)
    # A committed order change: the next read (either path) follows it.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE orders SET status = 'refunded' WHERE id IN (SELECT id FROM orders "
                "WHERE status IN ('paid', 'fulfilled') AND archived_at IS NULL "
                "ORDER BY amount DESC LIMIT 5)"
            )
        )
    await pair.same(RFM_LIST, {"f": None, "n": 40}, compiled=True)
    for built_in in BUILT_INS:
        await pair.same(
            SEGMENT_PAGE, {"segment": to_global_id("Segment", built_in.id)}, compiled=True
        )
    # Fields computed in Python, saved segments and bad IDs: the executed path answers.
    await pair.same(
        "{ customers(first: 3) { nodes { rfm { recency monetary { amount } } } } }",
        compiled=False,
    )
    await pair.same(
        SEGMENT_PAGE, {"segment": to_global_id("Segment", uuid.uuid4())}, compiled=False
    )
    await pair.same(SEGMENT_PAGE, {"segment": "nope"}, compiled=False)
    await pair.same(
        SEGMENT_PAGE, {"segment": to_global_id("Customer", BUILT_INS[0].id)}, compiled=False
    )


BENCH_PAGES = Path(__file__).resolve().parents[2] / "bench" / "queries"


async def test_the_bench_pages_are_compiled(pair: Pair, demo_domain: str) -> None:
    """Issue 14's page-shaped bench documents (``bench/queries/p*.graphql``: a list page
    with ``me``, an inbox, a customer page, a deal board) are answered on the compiled
    path, as the executed path answers them, for the callers the bench sends them as (the
    inbox as an agent too)."""
    ids = await _ids(pair)
    variables = {
        "p1_list_page": None,
        "p2_inbox_page": None,
        "p3_customer_page": {"id": ids["customer"]},
        "p4_deal_board": {"id": ids["pipeline"]},
    }
    documents = {path.stem: path.read_text() for path in BENCH_PAGES.glob("p*.graphql")}
    assert sorted(documents) == sorted(variables)
    agent = next(login for login in demo.demo_logins(demo_domain) if login[2] == Role.AGENT)
    client = await support.GraphQLClient(pair.compiled).logged_in(agent[0], agent[1])
    as_agent = Pair(pair.compiled, pair.executed, client.token or "")
    for name, document in sorted(documents.items()):
        body = await pair.same(document, variables[name], compiled=True)
        assert "errors" not in body and all(body["data"].values()), (name, body)
    body = await as_agent.same(documents["p2_inbox_page"], compiled=True)
    assert body["data"]["conversations"]["nodes"], body


async def test_unknown_fields_and_mutations_take_the_executed_path(pair: Pair) -> None:
    # A customer's custom fields are decrypted and filtered per role by a resolver.
    await pair.same("{ customers(first: 3) { nodes { customFields } } }", compiled=False)
    await pair.same("{ __schema { queryType { name } } }", compiled=False)
    fast, _ = await pair.both(
        'mutation { createCompany(input: {name: "Diff Co"}) { company { name } errors { code } } }'
    )
    assert "x-crm-read-path" not in fast.headers
    # Errors the executed path raises are its own: page cap, bad cursor, malformed filter ID.
    await pair.same("{ customers(first: 1000) { nodes { id } } }", compiled=False)
    await pair.same('{ customers(first: 2, after: "nope") { nodes { id } } }', compiled=False)
    await pair.same(
        '{ customers(filter: {ownerId: {eq: "bad"}}) { nodes { id } } }', compiled=False
    )
    await pair.same("{ customers(first: 2, last: 2) { nodes { id } } }", compiled=False)
    await pair.same(
        "{ customers(first: 2) { nodes { id deals(last: 1) { totalCount } } } }", compiled=False
    )
    # The query limits answer before any SQL: too many aliases, too costly, too deep.
    aliases = " ".join(f"a{i}: customers(first: 1) {{ totalCount }}" for i in range(60))
    await pair.same("{ " + aliases + " }", compiled=False)
    costly = """{ customers(first: 100) { nodes { deals(first: 100) { nodes {
      activities(first: 100) { nodes { id } } } } } } }"""
    await pair.same(costly, compiled=False)
    hop = "deals(first: 1) { nodes { customer { "
    deep = "{ customers(first: 1) { nodes { " + hop * 4 + "name" + " } } }" * 4 + " } } }"
    await pair.same(deep, compiled=False)
    # Invalid documents and variables: identical errors.
    await pair.same("{ customers { nodes { nope } } }", compiled=False)
    await pair.same("query($n: Int!) { customers(first: $n) { totalCount } }", {}, compiled=False)
    await pair.same("{ customers(first: 1) { nodes { id } }", compiled=False)


async def test_anonymous_requests_take_the_executed_path(pair: Pair) -> None:
    payload = {"query": "{ customers(first: 1) { totalCount } }"}
    fast = await pair.compiled.post("/graphql", json=payload)
    slow = await pair.executed.post("/graphql", json=payload)
    assert "x-crm-read-path" not in fast.headers
    assert fast.status_code == slow.status_code
    assert orjson.loads(fast.content)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


GENERATED = [
    # aliases, __typename, field order, repeated and merged fields
    """{ a: customers(first: 3) { __typename total: totalCount edges { __typename cursor
       n: node { __typename name id name } } } b: customers(first: 2, orderBy: [{field: NAME}])
       { nodes { name } pageInfo { __typename startCursor endCursor hasNextPage hasPreviousPage } } }""",
    # fragments, inline and named, on interface and object types, nested
    """query { customers(first: 4) { nodes { ...C ... on Customer { email company { ...Co } } } } }
       fragment C on Customer { id name ... on Node { id } address { city postalCode country } }
       fragment Co on Company { name ... on Company { owner { name role } } }""",
    # every scalar kind
    """{ customers(first: 10, orderBy: [{field: UPDATED_AT, direction: DESC}]) { nodes { id name email
       phone lifecycleStage tags needs preferences lastActivityAt createdAt updatedAt
       archivedAt version address { __typename street city region postalCode country } } } }""",
    """{ deals(first: 10) { nodes { id title amount currency status expectedCloseDate closedAt
       lostReason createdAt version customer { name } company { name } owner { email isActive
       lastLoginAt } pipeline { name position } stage { name position probability pipeline { name } } } } }""",
    """{ orders(first: 10, orderBy: [{field: AMOUNT, direction: DESC}, {field: NUMBER}]) {
       edges { cursor node { number status amount currency placedAt items customer { name } } } } }""",
    """{ activities(first: 10) { edges { cursor node { type subject body occurredAt dueAt
       completedAt details customer { name } deal { title } author { name } } } } }""",
    """{ companies(first: 5) { totalCount nodes { name domain industry employeeCount phone website
       tags customFields customers(first: 2) { totalCount nodes { name } pageInfo { hasNextPage
       endCursor } } deals(first: 2, orderBy: [{field: AMOUNT, direction: DESC}]) { edges { cursor
       node { title amount } } } } } }""",
    """{ pipelines(first: 5) { nodes { name deals(first: 3) { totalCount nodes { title } } } } }""",
    """{ users(first: 10, orderBy: [{field: NAME}]) { nodes { id name email role isActive } } }""",
    # filters with and / or / not and every operator family
    """{ customers(first: 50, filter: {or: [{lifecycleStage: {eq: LEAD}}, {and: [{name:
       {startsWith: "a"}}, {not: {email: {isNull: true}}}]}]}) { totalCount nodes { name } } }""",
    """{ customers(filter: {tags: {anyOf: ["vip", "newsletter"]}, lifecycleStage: {notIn: [CHURNED]}})
       { totalCount nodes { name tags } } }""",
    """{ customers(filter: {name: {contains: "%_\\\\"}, email: {ne: "x@example.com"}}) { totalCount } }""",
    """{ deals(first: 20, filter: {amount: {gt: "1000", lte: "90000.50"}, status: {in: [OPEN, WON]}})
       { totalCount nodes { title amount status } } }""",
    """{ deals(filter: {expectedCloseDate: {gte: "2020-01-01"}, currency: {in: []}}) { totalCount } }""",
    """{ activities(first: 5, filter: {type: {eq: TASK}, completedAt: {isNull: true}}) { totalCount
       nodes { subject dueAt } } }""",
    """{ companies(filter: {employeeCount: {gte: 10}}, orderBy: [{field: EMPLOYEE_COUNT,
       direction: DESC}]) { nodes { name employeeCount } } }""",
    # nested lists with their own filter, order, page sizes (0 included)
    """{ customers(first: 15) { nodes { name deals(first: 0) { totalCount pageInfo { hasNextPage
       hasPreviousPage startCursor endCursor } edges { cursor } } orders(first: 2, filter: {status:
       {in: [PAID, FULFILLED]}}, orderBy: [{field: PLACED_AT}]) { totalCount edges { cursor node {
       number placedAt } } pageInfo { hasNextPage endCursor } } activities(first: 3, filter: {type:
       {ne: SYSTEM}}) { nodes { type occurredAt } } purchaseSummary { __typename orderCount totals
       { __typename currency amount } lastOrderAt firstOrderAt } } } }""",
    "{ customers(first: 0) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }",
    "{ customers(last: 0) { totalCount pageInfo { hasNextPage hasPreviousPage } nodes { id } } }",
    "{ customers(includeArchived: true, first: 100) { totalCount nodes { name archivedAt } } }",
    "{ __typename customers(first: 1) { __typename } }",
    # explicit nulls are the same as leaving an argument or input field out
    """{ customers(first: null, after: null, filter: {name: null, or: null, lifecycleStage:
       {in: null, eq: LEAD}}, orderBy: null) { totalCount nodes { name } } }""",
]


@pytest.mark.parametrize("query", GENERATED)
async def test_generated_queries_are_identical(pair: Pair, query: str) -> None:
    await pair.same(query, compiled=True)


async def test_pages_both_ways_with_cursors(pair: Pair) -> None:
    orders = [
        None,
        [{"field": "NAME"}],
        [{"field": "LAST_ACTIVITY_AT", "direction": "DESC"}],
        [{"field": "LIFECYCLE_STAGE"}, {"field": "CREATED_AT", "direction": "DESC"}],
        [{"field": "EMAIL", "direction": "DESC"}, {"field": "NAME"}],
    ]
    query = """query($first: Int, $after: String, $last: Int, $before: String, $o: [CustomerOrder!])
      { customers(first: $first, after: $after, last: $last, before: $before, orderBy: $o) {
        totalCount edges { cursor node { name email lastActivityAt } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
    for order in orders:
        after = None
        seen = 0
        while True:
            body = await pair.same(query, {"first": 7, "after": after, "o": order}, compiled=True)
            page = body["data"]["customers"]
            seen += len(page["edges"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert seen == page["totalCount"]
        before = None
        while True:
            body = await pair.same(query, {"last": 9, "before": before, "o": order}, compiled=True)
            page = body["data"]["customers"]["pageInfo"]
            if not page["hasPreviousPage"]:
                break
            before = page["startCursor"]
    # A nested page after a cursor.
    nested = """query($a: String) { customers(first: 100) { nodes { deals(first: 1, after: $a) {
      edges { cursor } pageInfo { hasNextPage hasPreviousPage } } } } }"""
    body = await pair.same(nested, {"a": None}, compiled=True)
    cursors = [
        n["deals"]["edges"][0]["cursor"]
        for n in body["data"]["customers"]["nodes"]
        if n["deals"]["edges"]
    ]
    assert cursors
    await pair.same(nested, {"a": cursors[0]}, compiled=True)


async def test_include_skip_and_variables(pair: Pair) -> None:
    query = """query($yes: Boolean!, $no: Boolean!, $n: Int) { customers(first: $n) {
      nodes { id name @include(if: $yes) email @skip(if: $yes) ... on Customer @include(if: $no)
      { phone } company @skip(if: $no) { name } } totalCount @include(if: $no) } }"""
    for yes in (True, False):
        for no in (True, False):
            await pair.same(query, {"yes": yes, "no": no, "n": 4}, compiled=True)


async def test_node_and_nodes_with_foreign_and_malformed_ids(pair: Pair) -> None:
    ids = await _ids(pair)
    foreign = base64.urlsafe_b64encode(f"Customer:{uuid.uuid4()}".encode()).decode().rstrip("=")
    unknown_type = base64.urlsafe_b64encode(f"Widget:{uuid.uuid4()}".encode()).decode()
    query = """query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Customer { name
      company { name } } ... on Company { name domain } ... on Deal { title stage { name } }
      ... on Stage { name } ... on Pipeline { name } ... on Order { number } ... on Activity
      { subject } ... on User { email } } }"""
    await pair.same(query, {"ids": list(ids.values())}, compiled=True)
    await pair.same(
        query, {"ids": [foreign, "not-an-id", unknown_type, ids["deal"]]}, compiled=True
    )
    await pair.same(query, {"ids": []}, compiled=True)
    for value in (ids["company"], foreign, "%%%", ids["order"]):
        await pair.same(
            "query($id: ID!) { node(id: $id) { id ... on Company { name } } }",
            {"id": value},
            compiled=True,
        )


def _test_queries() -> list[str]:
    """Every read operation written in the API tests (string constants that parse as one
    query operation)."""
    found: list[str] = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            text = node.value.strip()
            if not text.startswith(("{", "query")):
                continue
            try:
                document = parse(text)
            except Exception:
                continue
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) == 1 and operations[0].operation == OperationType.QUERY:
                found.append(text)
    return sorted(set(found))


async def test_every_read_query_of_the_api_tests_is_identical(pair: Pair) -> None:
    ids = await _ids(pair)
    samples = {"ID": ids["customer"], "Int": 3, "Boolean": True, "String": None}
    queries = _test_queries()
    assert len(queries) > 10
    compiled = 0
    for query in queries:
        operation = next(
            d for d in parse(query).definitions if isinstance(d, OperationDefinitionNode)
        )
        variables: dict[str, Any] = {}
        for definition in operation.variable_definitions or ():
            type_text = _type_name(definition.type)
            if type_text in samples and samples[type_text] is not None:
                variables[definition.variable.name.value] = samples[type_text]
        fast, slow = await pair.both(query, variables)
        assert fast.content == slow.content, (query, fast.text, slow.text)
        compiled += fast.headers.get("x-crm-read-path") == COMPILED
    assert compiled >= 5, compiled


def _type_name(node: Any) -> str:
    while hasattr(node, "type"):
        node = node.type
    return str(node.name.value)


async def test_api_keys_get_the_answers_their_scopes_allow(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        user = await session.scalar(
            select(User).where(User.email == demo.demo_logins(demo_domain)[0][0])
        )
        assert user is not None
        admin = Actor(workspace_id=user.workspace_id, role=Role.ADMIN, user_id=user.id)
        tokens = {}
        for scopes in (("customers:read",), ("deals:read",), ("customers:read", "deals:read")):
            _, tokens[scopes] = await api_keys.create_api_key(
                admin, session, name=f"Diff {'+'.join(scopes)}", scopes=scopes
            )
    customers = "{ customers(first: 5) { nodes { name company { name } owner { name } } } }"
    with_deals = "{ customers(first: 5) { nodes { name deals(first: 2) { totalCount } } } }"
    deals = "{ deals(first: 3) { nodes { title stage { name } customer { name } } } }"
    expected = {
        ("customers:read",): {customers: True, with_deals: False, deals: False},
        ("deals:read",): {customers: False, with_deals: False, deals: False},
        ("customers:read", "deals:read"): {customers: True, with_deals: True, deals: True},
    }
    for scopes, token in tokens.items():
        keyed = Pair(pair.compiled, pair.executed, token)
        for query, compiled in expected[scopes].items():
            await keyed.same(query, compiled=compiled)


@pytest.mark.parametrize(
    ("stored", "compiled"),
    [
        (["a list"], False),  # the executed path fails on it (masked INTERNAL error)
        ({"city": 75001}, False),  # not text: str() in Python, ->> in SQL would differ
        ({"city": "Paris", "extra": [1]}, True),
        ([], True),  # falsy: null
        ("", True),
        ({}, True),
    ],
)
async def test_stored_addresses_the_api_cannot_represent_take_the_executed_path(
    pair: Pair,
    demo_domain: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    stored: Any,
    compiled: bool,
) -> None:
    async with sessionmaker() as session, session.begin():
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.name == f"Diff {demo_domain}")
        )
        customer = await session.scalar(
            select(Customer).where(Customer.workspace_id == workspace_id).limit(1)
        )
        assert customer is not None
        kept = customer.address
        await session.execute(
            update(Customer).where(Customer.id == customer.id).values(address=stored)
        )
    try:
        query = "query($id: ID!) { node(id: $id) { ... on Customer { name address { city } } } }"
        global_id = base64.urlsafe_b64encode(f"Customer:{customer.id}".encode()).decode()
        await pair.same(query, {"id": global_id.rstrip("=")}, compiled=compiled)
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(Customer).where(Customer.id == customer.id).values(address=kept)
            )


# ------------------------------------------------- edge values (issue 12, point 8)

FIRST_INSTANT = "0001-01-01T00:00:00+00:00"  # how -infinity reads
LAST_INSTANT = "9999-12-31T23:59:59.999999+00:00"  # how infinity reads


async def _edge_customer(pair: Pair, root: str, order: str) -> str:
    """The customer whose rows of ``root`` hold the edge values (the first row in
    ``order`` descending is the one stored as infinity)."""
    body = await pair.same(
        f"{{ {root}(first: 1, orderBy: [{{field: {order}, direction: DESC}}]) "
        "{ nodes { customer { id } } } }",
        compiled=True,
    )
    return body["data"][root]["nodes"][0]["customer"]["id"]  # type: ignore[no-any-return]


async def _walk(
    pair: Pair, root: str, order: str, customer: str, *, forward: bool, size: int = 2
) -> list[str]:
    """The ids of ``root`` filtered to ``customer`` page by page with cursors, on both
    paths (identical bodies, compiled)."""
    query = f"""query($f: Int, $a: String, $l: Int, $b: String, $d: OrderDirection,
      $c: ID) {{ {root}(first: $f, after: $a, last: $l, before: $b, orderBy: [{{field:
      {order}, direction: $d}}], filter: {{customerId: {{eq: $c}}}}) {{ totalCount
      edges {{ cursor node {{ id }} }} pageInfo {{ hasNextPage hasPreviousPage startCursor
      endCursor }} }} }}"""
    ids: list[str] = []
    cursor = None
    for direction in ("ASC", "DESC"):
        seen: list[str] = []
        cursor = None
        while True:
            variables = {"d": direction, "c": customer}
            if forward:
                variables |= {"f": size, "a": cursor}
            else:
                variables |= {"l": size, "b": cursor}
            page = (await pair.same(query, variables, compiled=True))["data"][root]
            assert all(e["cursor"] for e in page["edges"]), page
            batch = [e["node"]["id"] for e in page["edges"]]
            seen = seen + batch if forward else batch + seen
            info = page["pageInfo"]
            if not (info["hasNextPage"] if forward else info["hasPreviousPage"]):
                break
            cursor = info["endCursor"] if forward else info["startCursor"]
        assert len(seen) == len(set(seen)) == page["totalCount"], (root, order, direction)
        ids = ids or seen
        assert sorted(seen) == sorted(ids)
    return ids


async def test_stored_infinities_and_range_ends_read_the_same_on_both_paths(pair: Pair) -> None:
    customer = await _edge_customer(pair, "orders", "PLACED_AT")
    query = """query($c: ID!, $d: OrderDirection) { orders(first: 50, filter: {customerId:
      {eq: $c}}, orderBy: [{field: PLACED_AT, direction: $d}]) { totalCount edges { cursor
      node { id number placedAt items customer { lastActivityAt purchaseSummary {
      firstOrderAt lastOrderAt } } } } } }"""
    for direction in ("ASC", "DESC"):
        body = await pair.same(query, {"c": customer, "d": direction}, compiled=True)
        orders = body["data"]["orders"]
        assert len(orders["edges"]) == orders["totalCount"] >= 5  # no row dropped
        placed = [e["node"]["placedAt"] for e in orders["edges"]]
        assert {FIRST_INSTANT, LAST_INSTANT, "0001-01-02T00:00:00+00:00"} <= set(placed)
        assert "9999-12-30T23:59:59.999999+00:00" in placed
        assert "0001-01-01T00:00:00.500000+00:00" in placed
        assert (placed[0] == FIRST_INSTANT) is (direction == "ASC")
        assert all(e["cursor"] for e in orders["edges"])
        summary = orders["edges"][0]["node"]["customer"]
        assert summary["lastActivityAt"] == LAST_INSTANT
    ids = [e["node"]["id"] for e in orders["edges"]]
    node = """query($ids: [ID!]!) { nodes(ids: $ids) { ... on Order { placedAt items } } }"""
    body = await pair.same(node, {"ids": ids}, compiled=True)
    assert all(n is not None for n in body["data"]["nodes"])
    deals = """query($c: ID!) { deals(first: 50, filter: {customerId: {eq: $c}}, orderBy:
      [{field: EXPECTED_CLOSE_DATE}]) { totalCount nodes { expectedCloseDate closedAt
      customer { lastActivityAt } } } }"""
    body = await pair.same(
        deals, {"c": await _edge_customer(pair, "deals", "EXPECTED_CLOSE_DATE")}, compiled=True
    )
    dates = [n["expectedCloseDate"] for n in body["data"]["deals"]["nodes"]]
    assert dates[:2] == ["0001-01-01", "0001-01-02"]  # -infinity first
    assert dates[-2:] == ["9999-12-30", "9999-12-31"]
    assert body["data"]["deals"]["nodes"][0]["customer"]["lastActivityAt"] == FIRST_INSTANT
    activities = """query($c: ID!) { activities(first: 50, filter: {customerId: {eq: $c}},
      orderBy: [{field: DUE_AT, direction: DESC}]) { nodes { occurredAt dueAt details } } }"""
    await pair.same(
        activities, {"c": await _edge_customer(pair, "activities", "OCCURRED_AT")}, compiled=True
    )


@pytest.mark.parametrize(
    ("root", "order"),
    [("orders", "PLACED_AT"), ("deals", "EXPECTED_CLOSE_DATE"), ("activities", "OCCURRED_AT")],
)
async def test_paging_through_edge_values_visits_every_row_once(
    pair: Pair, root: str, order: str
) -> None:
    customer = await _edge_customer(pair, root, order)
    forward = await _walk(pair, root, order, customer, forward=True)
    backward = await _walk(pair, root, order, customer, forward=False)
    assert sorted(forward) == sorted(backward)


async def test_json_numbers_beyond_64_bits_read_the_same_on_both_paths(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    query = "{ companies(first: 1, orderBy: [{field: NAME}]) { nodes { customFields } } }"
    body = await pair.same(query, compiled=True)
    assert body["data"]["companies"]["nodes"][0]["customFields"] == {
        "big": 1.8446744073709552e19,
        "neg": -9.223372036854776e18,
        "e": 1e20,
        "u64": 18446744073709551615,
        "deep": [{"n": 1e23}],
    }
    # Beyond a float's range: null, on the executed path (orjson cannot re-encode it).
    async with sessionmaker() as session, session.begin():
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.name == f"Diff {demo_domain}")
        )
        kept = await session.scalar(
            text(
                "SELECT custom_fields FROM companies WHERE workspace_id = :ws ORDER BY name LIMIT 1"
            ),
            {"ws": workspace_id},
        )
        huge = '{"huge": 1e400, "ok": 1}'
        await session.execute(
            text(f"""UPDATE companies SET custom_fields = '{huge}'::jsonb WHERE id = (SELECT id
              FROM companies WHERE workspace_id = :ws ORDER BY name LIMIT 1)"""),
            {"ws": workspace_id},
        )
    try:
        body = await pair.same(query, compiled=False)
        assert body["data"]["companies"]["nodes"][0]["customFields"] == {"huge": None, "ok": 1}
        written = """mutation { createCompany(input: {name: "Floats", customFields: {f: 1e20,
          u: 18446744073709551615}}) { company { id customFields } errors { code } } }"""
        created = (
            await pair.compiled.post("/graphql", json={"query": written}, headers=pair.headers)
        ).json()
        company = created["data"]["createCompany"]["company"]
        assert company["customFields"] == {"f": 1e20, "u": 18446744073709551615}
        read = "query($id: ID!) { node(id: $id) { ... on Company { customFields } } }"
        body = await pair.same(read, {"id": company["id"]}, compiled=True)
        assert body["data"]["node"]["customFields"] == company["customFields"]
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                text("""UPDATE companies SET custom_fields = CAST(:kept AS jsonb) WHERE id = (SELECT
                  id FROM companies WHERE workspace_id = :ws ORDER BY name LIMIT 1)"""),
                {"ws": workspace_id, "kept": orjson.dumps(kept).decode()},
            )


def _errors(body: Any) -> list[tuple[Any, ...]]:
    return [
        (e["extensions"]["code"], e["extensions"].get("field"), tuple(e.get("path") or ()))
        for e in body.get("errors") or []
    ]


@pytest.mark.parametrize(
    ("filter", "field"),
    [
        ({"amount": {"gt": "Infinity"}}, "amount"),
        ({"amount": {"lt": "-Infinity"}}, "amount"),
        ({"amount": {"eq": "NaN"}}, "amount"),
        ({"amount": {"gte": "1e999999"}}, "amount"),
        ({"amount": {"lte": "1e20"}}, "amount"),
        ({"amount": {"ne": "999999999999.995"}}, "amount"),
        (
            {"or": [{"amount": {"gt": "1"}}, {"expectedCloseDate": {"lt": "9999-12-31"}}]},
            "expectedCloseDate",
        ),
        ({"not": {"closedAt": {"gte": "0001-01-01T00:00:00Z"}}}, "closedAt"),
        ({"createdAt": {"lt": "9999-12-31T23:00:00-05:00"}}, "createdAt"),
        ({"ownerId": {"in": ["x"]}}, "ownerId"),
    ],
)
async def test_filter_values_the_database_cannot_compare_are_validation(
    pair: Pair, filter: dict[str, Any], field: str
) -> None:
    query = "query($f: DealFilter) { deals(first: 5, filter: $f) { totalCount nodes { id } } }"
    body = await pair.same(query, {"f": filter})
    assert _errors(body) == [("VALIDATION", field, ("deals",))], body
    # Tiny decimals round to the column's scale, as PostgreSQL's cast does: no error.
    body = await pair.same(query, {"f": {"amount": {"gt": "1e-999999"}}}, compiled=True)
    assert "errors" not in body


def _cursor_of(payload: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


async def test_cursors_with_values_of_the_wrong_kind_are_validation(pair: Pair) -> None:
    some = str(uuid.uuid4())
    cases = {
        "deals": [
            {"s": "created_at-,id-", "v": [5, some]},
            {"s": "created_at-,id-", "v": ["2020-01-01T00:00:00+00:00", 5]},
            {"s": "created_at-,id-", "v": [["2020"], {"id": 1}]},
            {"s": "created_at-,id-", "v": ["9999-12-31T23:00:00-05:00", some]},
            {"s": "created_at-,id-", "v": [True, some]},
            {"s": "created_at-,id-", "v": "ab"},
            {"s": "amount+,id+", "v": ["Infinity", some]},
            {"s": "amount+,id+", "v": ["1e30", some]},
            {"s": "amount+,id+", "v": [12, some]},
            {"s": "title+,id+", "v": [12, some]},
            {"s": "title+,id+", "v": ["a\u0000b", some]},
            {"s": "expected_close_date+,id+", "v": ["2020-13-01", some]},
            [1, 2],
            "text",
        ],
        "companies": [
            {"s": "employee_count+,id+", "v": [2**40, some]},
            {"s": "employee_count+,id+", "v": ["12", some]},
            {"s": "employee_count+,id+", "v": [1.5, some]},
        ],
    }
    orders = {
        "amount+,id+": "[{field: AMOUNT}]",
        "title+,id+": "[{field: TITLE}]",
        "expected_close_date+,id+": "[{field: EXPECTED_CLOSE_DATE}]",
        "employee_count+,id+": "[{field: EMPLOYEE_COUNT}]",
    }
    for root, payloads in cases.items():
        for payload in payloads:
            signature = payload.get("s") if isinstance(payload, dict) else None
            order = orders.get(signature or "", "null")
            for argument, size in (("after", "first"), ("before", "last")):
                query = f"""query($c: String) {{ {root}({size}: 2, {argument}: $c, orderBy:
                  {order}) {{ nodes {{ id }} }} }}"""
                body = await pair.same(query, {"c": _cursor_of(payload)})
                assert _errors(body) == [("VALIDATION", argument, (root,))], (payload, body)


async def test_variables_nested_beyond_the_encoders_limit_answer_input_too_deep(
    pair: Pair,
) -> None:
    query = """query($ids: [ID!], $f: CustomerFilter) { a: customers(first: 1, filter: {ownerId:
      {in: $ids}}) { totalCount } b: customers(first: 1, filter: $f) { totalCount } }"""
    for depth in (254, 300, 1000):
        for name, opener, closer in (("ids", "[", "]"), ("f", '{"or":[', "]}")):
            raw = orjson.dumps({"query": query}).decode()[:-1]
            body = f'{raw},"variables":{{"{name}":{opener * depth}{{}}{closer * depth}}}}}'
            headers = {
                **pair.headers,
                "X-Request-Id": uuid.uuid4().hex,
                "Content-Type": "application/json",
            }
            fast = await pair.compiled.post("/graphql", content=body, headers=headers)
            slow = await pair.executed.post("/graphql", content=body, headers=headers)
            # Within orjson's nesting limit (1024, the body's own two levels included) the
            # variables are refused: a request error, answered 200 to an `Accept:
            # application/json` client. Beyond it the body itself cannot be read: 400.
            nesting = depth * (opener.count("[") + opener.count("{")) + 2
            expected = 200 if nesting <= 1024 else 400
            assert fast.status_code == slow.status_code == expected, (depth, name, fast.text)
            assert fast.content == slow.content
            assert fast.json()["errors"][0]["extensions"]["code"] == "INPUT_TOO_DEEP"


NESTED_ERRORS = [
    # the issue's shape: a VALIDATION error deep inside a backward page, siblings loading
    """{ deals(last: 2) { nodes { title customer { name company { name } deals(first: -100)
      { totalCount } orders(first: 2) { nodes { number } } } company { name customers(first:
      2) { nodes { name owner { name } } } } owner { name } } } }""",
    """{ a: deals(last: 3) { nodes { customer { deals(first: 3) { nodes { customer { deals(
      first: 1000) { totalCount } } owner { name } } } } stage { name } } }
      b: customers(first: 3) { nodes { name orders(first: -1) { totalCount } company { name } } }
      c: orders(first: 2, after: "nope") { totalCount } d: companies(first: 2) { nodes { name } } }""",
    """{ customers(first: 4) { nodes { a: deals(first: 2, filter: {amount: {gt: "NaN"}}) {
      totalCount } b: activities(first: 101) { totalCount } c: orders(first: 2) { nodes {
      number customer { name } } } company { deals(first: 2, filter: {ownerId: {eq: "x"}}) {
      totalCount } owner { name } } } } }""",
]


@pytest.mark.parametrize("query", NESTED_ERRORS)
async def test_a_nested_error_stays_in_its_field_and_the_answer_never_changes(
    pair: Pair, query: str
) -> None:
    bodies: set[bytes] = set()
    headers = {**pair.headers, "X-Request-Id": "same-request"}
    for _ in range(24):
        for client in (pair.compiled, pair.executed):
            response = await client.post("/graphql", json={"query": query}, headers=headers)
            assert response.status_code == 200
            bodies.add(response.content)
    assert len(bodies) == 1, [b[:600] for b in bodies]
    body = orjson.loads(bodies.pop())
    codes = {code for code, _, _ in _errors(body)}
    assert codes == {"VALIDATION"}, body
    paths = [path for _, _, path in _errors(body)]
    assert paths == sorted(paths, key=lambda p: [str(s).zfill(8) for s in p])


async def test_a_failing_field_does_not_cancel_loads_its_siblings_share(
    pair: Pair, demo_domain: str
) -> None:
    viewer = next(login for login in demo.demo_logins(demo_domain) if login[2] is Role.VIEWER)
    client = await support.GraphQLClient(pair.compiled).logged_in(viewer[0], viewer[1])
    as_viewer = Pair(pair.compiled, pair.executed, client.token or "")
    query = """{ companies { edges { node { owner { isActive } } } nodes { owner { role }
      deals(filter: {ownerId: {in: ["x"]}}) { totalCount } } } }"""
    for _ in range(5):
        body = await as_viewer.same(query)
        assert _errors(body) == [("VALIDATION", "ownerId", ("companies", "nodes", 0, "deals"))]
    # A nullable sibling of the failing field keeps its answer.
    query = """{ customers(first: 10) { nodes { company { owner { role } deals(filter:
      {ownerId: {in: ["x"]}}) { totalCount } } owner { role isActive } } } }"""
    body = await as_viewer.same(query)
    nodes = body["data"]["customers"]["nodes"]
    assert all(n["owner"] is None or n["owner"]["role"] for n in nodes)
    assert {code for code, _, _ in _errors(body)} == {"VALIDATION"}


# ------------------------------------------------------------------- generated run
# Random reads over the read schema (tests/api/differential.py) as every role and as API
# keys with partial scopes, on both paths: identical bytes, never a 5xx or INTERNAL.
# `make test` runs a bounded, seeded set; a longer run (README, "Fast reads"):
#   CRM_DIFFERENTIAL_QUERIES=5000 CRM_DIFFERENTIAL_SEED=1 .venv/bin/python -m pytest \
#     tests/api/test_compiled_differential.py -k generated_reads -s
GENERATED_QUERIES = int(os.environ.get("CRM_DIFFERENTIAL_QUERIES", "300"))
GENERATED_SEED = int(os.environ.get("CRM_DIFFERENTIAL_SEED", "12"))
KEY_SCOPES = [
    ("customers:read",),
    ("deals:read",),
    ("customers:read", "deals:read"),
    ("conversations:read", "customers:read"),
    ("webhooks:manage",),
]


async def _identities(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> list[tuple[str, Pair]]:
    """A pair per role (demo logins) and per API key of ``KEY_SCOPES``."""
    found: list[tuple[str, Pair]] = []
    roles: set[Role] = set()
    for email, password, role in demo.demo_logins(demo_domain):
        if role in roles:
            continue
        roles.add(role)
        client = await support.GraphQLClient(pair.compiled).logged_in(email, password)
        found.append((role.value, Pair(pair.compiled, pair.executed, client.token or "")))
    async with sessionmaker() as session, session.begin():
        user = await session.scalar(
            select(User).where(User.email == demo.demo_logins(demo_domain)[0][0])
        )
        assert user is not None
        admin = Actor(workspace_id=user.workspace_id, role=Role.ADMIN, user_id=user.id)
        for scopes in KEY_SCOPES:
            key, token = await api_keys.create_api_key(
                admin, session, name=f"Generated {'+'.join(scopes)}", scopes=scopes
            )
            # A job of the key's own: visible to it and to admins and managers only.
            session.add(_key_job(user.workspace_id, key.id))
            found.append(("key " + "+".join(scopes), Pair(pair.compiled, pair.executed, token)))
    return found


def _key_job(workspace_id: Any, key_id: Any) -> Any:
    from crm_graphql.enums import JobStatus
    from crm_graphql.models import Job

    return Job(
        workspace_id=workspace_id,
        kind="differential",
        status=JobStatus.RUNNING,
        params={},
        done=3,
        total=None,
        checkpoint=0,
        counts={"created": 3},
        errors=[],
        error_count=0,
        created_by_api_key_id=key_id,
        cancel_requested=False,
        attempts=1,
    )


async def _job_ids(sessionmaker: async_sessionmaker[AsyncSession], domain: str) -> list[str]:
    """Global IDs of the jobs of the demo workspace, newest first."""
    from crm_graphql.models import Job

    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Job.id)
            .join(Workspace, Workspace.id == Job.workspace_id)
            .where(Workspace.name == f"Diff {domain}")
            .order_by(Job.created_at.desc(), Job.id)
        )
        return [to_global_id("Job", id) for id in rows]


JOB_FIELDS = """id __typename kind status done total errorCount cancelRequested result
  createdAt startedAt finishedAt counts { name count } errors { line field code message }
  e1: errors(first: 1) { code line } none: errors(first: -3) { code }
  createdBy { id name role }"""


async def test_jobs_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``job(id)`` and a job by ``node(id)`` as every identity: their own jobs, others'
    (null but for admins and managers), malformed and foreign IDs; stored values the API
    cannot represent as they are take the executed path."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    ids = await _job_ids(sessionmaker, demo_domain)
    # The keys' jobs are the newest (each call of ``_identities`` makes keys), then JOBS.
    assert len(ids) >= len(JOBS) + len(KEY_SCOPES)
    unrepresentable = ids[-1]
    others = ["x", to_global_id("Customer", uuid.uuid4()), to_global_id("Job", uuid.uuid4())]
    query = f"""query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} }}
      node(id: $id) {{ id ... on Job {{ kind counts {{ count }} createdBy {{ email }} }} }} }}"""
    seen: Counter[str] = Counter()
    compiled = 0
    for who, identity in identities:
        for id in [*ids, *others]:
            fast, slow = await identity.both(query, {"id": id})
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (
                who,
                id,
                fast.text,
                slow.text,
            )
            body = orjson.loads(slow.content)  # a key may not read a customer's node
            taken = fast.headers.get("x-crm-read-path") == COMPILED
            compiled += taken
            if body["data"]["job"] is not None:
                seen[who] += 1
                assert taken is (id != unrepresentable), (who, id)
    # Admins and managers see every job; an agent its own; a key only its own.
    assert seen["admin"] == seen["manager"] == len(ids), seen
    assert seen["agent"] == 1 and seen["viewer"] == 0, seen
    assert all(seen[f"key {'+'.join(scopes)}"] == 1 for scopes in KEY_SCOPES), seen
    assert compiled > len(identities) * len(others), compiled
    # The stored errors and counts read as the resolver reads them.
    admin = identities[0][1]
    job = (await admin.same(query, {"id": ids[-len(JOBS)]}, compiled=True))["data"]["job"]
    assert [c["name"] for c in job["counts"]] == ["B", "_", "created", "failed", "updated", "é"]
    assert job["errors"][2] == {
        "line": None,
        "field": None,
        "code": "VALIDATION",
        "message": "no code, no line",
    }
    assert job["e1"] == [{"code": "VALIDATION", "line": 3}] and job["none"] == []


ORDER_LINES = """{ orders(first: 30) { nodes { number lines { position sku name quantity
  unitPrice currency product { id name sku price currency } __typename } } }
  customers(first: 5) { nodes { orders(first: 3) { nodes { l: lines { quantity } } } } } }"""


async def test_order_lines_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``Order.lines`` (with each line's product) as every identity."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    lines = 0
    for who, identity in identities:
        fast, slow = await identity.both(ORDER_LINES)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), who
        body = orjson.loads(fast.content)
        if body.get("data"):
            assert fast.headers.get("x-crm-read-path") == COMPILED, who
            lines += sum(len(o["lines"]) for o in body["data"]["orders"]["nodes"])
    assert lines > 0


DEFINITIONS = """query($e: CustomFieldEntity!, $a: Boolean!) {
  customFieldDefinitions(entity: $e, includeArchived: $a) { id __typename entity key label
    type options required searchable exportable archivedAt createdAt updatedAt version } }"""


async def _store_webhooks(session: AsyncSession, workspace_id: Any) -> list[str]:
    """Webhooks, one inactive, one on payload version 1, the first two with deliveries
    (pending, delivered, failed, some at the same instant) and their attempts; the
    webhooks' global IDs."""
    from crm_graphql.enums import DeliveryStatus
    from crm_graphql.models import Event, Webhook, WebhookDelivery, WebhookDeliveryAttempt

    rows = [
        Webhook(
            workspace_id=workspace_id,
            url=f'https://example.com/hook/{index}?q="x"',
            event_types=types,
            secret_encrypted="not read by reads",
            is_active=index != 1,
            payload_version=1 + index % 2,
        )
        for index, types in enumerate([[], ["message.created", "deal.é"], ["customer.updated"]])
    ]
    session.add_all(rows)
    await session.flush()
    events = (
        await session.scalars(
            select(Event.id).where(Event.workspace_id == workspace_id).order_by(Event.id).limit(5)
        )
    ).all()
    assert len(events) == 5
    moment = datetime(2026, 12, 1, 10, 0, 0, 5).astimezone()
    statuses = [DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED]
    for number, event_id in enumerate(events):
        status = statuses[number % 3]
        delivery = WebhookDelivery(
            workspace_id=workspace_id,
            webhook_id=rows[number % 2].id,
            event_id=event_id,
            status=status,
            attempts=number,
            last_status_code=None if number % 2 else 500 + number,
            last_error=None if status == DeliveryStatus.DELIVERED else 'timed out "é"\n',
            next_attempt_at=moment + timedelta(minutes=number),
            delivered_at=moment if status == DeliveryStatus.DELIVERED else None,
            # Two deliveries at one instant: the id orders them.
            created_at=moment - timedelta(hours=min(number, 3)),
        )
        session.add(delivery)
        await session.flush()
        for attempt in range(number, 0, -1):
            session.add(
                WebhookDeliveryAttempt(
                    workspace_id=workspace_id,
                    delivery_id=delivery.id,
                    attempt=attempt,
                    status_code=None if attempt == 2 else 200 + attempt,
                    error="refused" if attempt == 2 else None,
                    duration_ms=None if attempt == 1 else 15 * attempt,
                    attempted_at=moment + timedelta(seconds=attempt),
                )
            )
    await session.flush()
    return [to_global_id("Webhook", row.id) for row in rows]


@contextlib.asynccontextmanager
async def _settings_rows(
    sessionmaker: async_sessionmaker[AsyncSession], domain: str
) -> AsyncIterator[dict[str, list[str]]]:
    """Custom-field definitions, webhooks, segments and mail in the demo workspace while the block
    runs (they change what other tests of the module read: custom-field filters,
    deliveries), their global IDs by type."""
    async with sessionmaker() as session, session.begin():
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.name == f"Diff {domain}")
        )
        stored = {
            "CustomFieldDefinition": await _store_definitions(session, workspace_id),
            "Webhook": await _store_webhooks(session, workspace_id),
            "Segment": await _store_segments(session, workspace_id),
            "Message": [
                to_global_id("Message", m) for _, m in await _store_mail(session, workspace_id)
            ],
        }
    try:
        yield stored
    finally:
        async with sessionmaker() as session, session.begin():
            tables = ("custom_field_definitions", "webhooks", "segments", "message_attachments")
            for table in (*tables, "email_messages"):
                await session.execute(
                    text(f"DELETE FROM {table} WHERE workspace_id = :w"), {"w": workspace_id}
                )


async def _store_definitions(session: AsyncSession, workspace_id: Any) -> list[str]:
    """Custom-field definitions of customers (one archived, a select with awkward options)
    and of deals; their global IDs."""
    from crm_graphql.models import CustomFieldDefinition, CustomFieldEntity, CustomFieldType

    created = datetime(2026, 11, 30, 8, 0, 0).astimezone()
    rows = [
        CustomFieldDefinition(
            workspace_id=workspace_id,
            entity=entity,
            key=key,
            label=label,
            type=kind,
            options=options,
            required=index == 1,
            searchable=index == 2,
            exportable=index != 0,
            archived_at=created if index == 3 else None,
            created_at=created + timedelta(seconds=index // 2),
        )
        for index, (entity, key, label, kind, options) in enumerate(
            [
                (
                    CustomFieldEntity.CUSTOMER,
                    "tier",
                    'Tier "A"',
                    CustomFieldType.SINGLE_SELECT,
                    ["gold", 'é "q"', "\u2028"],
                ),
                (CustomFieldEntity.CUSTOMER, "since", "Since", CustomFieldType.DATE, []),
                (CustomFieldEntity.CUSTOMER, "code", "Code \\", CustomFieldType.TEXT, []),
                (CustomFieldEntity.CUSTOMER, "old", "Old", CustomFieldType.NUMBER, []),
                (CustomFieldEntity.DEAL, "source", "Source", CustomFieldType.TEXT, []),
            ]
        )
    ]
    session.add_all(rows)
    await session.flush()
    return [to_global_id("CustomFieldDefinition", row.id) for row in rows]


async def test_custom_field_definitions_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``customFieldDefinitions`` of each entity, with and without the archived ones, as
    every identity, and a definition by ``node(id)``."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    async with _settings_rows(sessionmaker, demo_domain) as stored:
        ids = stored["CustomFieldDefinition"]
        listed = Counter[str]()
        for who, identity in identities:
            for entity in ("CUSTOMER", "COMPANY", "DEAL"):
                for archived in (False, True):
                    fast, slow = await identity.both(DEFINITIONS, {"e": entity, "a": archived})
                    assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
                    body = orjson.loads(fast.content)
                    if body.get("data"):
                        assert fast.headers.get("x-crm-read-path") == COMPILED, who
                        listed[who] += len(body["data"]["customFieldDefinitions"])
            for id in ids:
                await identity.same(
                    "query($id: ID!) { node(id: $id) { id ... on "
                    "CustomFieldDefinition { key options } } }",
                    {"id": id},
                )
        assert listed["admin"] == 4 + 5, listed


API_KEYS = """query($after: String, $o: [ApiKeyOrder!]) {
  apiKeys(first: 3, after: $after, orderBy: $o) { totalCount pageInfo { hasNextPage
    endCursor } edges { cursor node { id __typename name prefix createdAt expiresAt
    revokedAt rateLimitPerMinute maxQueryCost scopes createdBy { id email } } } } }"""


async def test_api_keys_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``apiKeys`` paged to the end in two orders as an admin (the keys' scopes in their
    stored order, their creator); everyone else is refused by the executed path."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    admin = dict(identities)["admin"]
    seen = 0
    for order in (None, [{"field": "NAME", "direction": "DESC"}]):
        after = None
        while True:
            body = await admin.same(API_KEYS, {"after": after, "o": order}, compiled=True)
            page = body["data"]["apiKeys"]
            seen += len(page["edges"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
    assert seen >= 2 * len(KEY_SCOPES), seen
    for who, identity in identities:
        if who != "admin":
            fast, slow = await identity.both(API_KEYS, {"after": None, "o": None})
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), who
            assert b"FORBIDDEN" in slow.content and "x-crm-read-path" not in fast.headers


WEBHOOKS = """query($o: [WebhookOrder!]) { webhooks(first: 10, orderBy: $o) { totalCount
  edges { cursor node { id __typename url eventTypes isActive createdAt updatedAt version
  payloadVersion } } } }"""
DELIVERIES = """query($n: Int!) { webhooks(first: 10) { nodes { url deliveries { id
  status } recent: deliveries(first: $n) { id __typename eventId attempts lastStatusCode
  lastError deliveredAt createdAt deliveryId status nextAttemptAt attemptHistory {
  __typename attempt statusCode error durationMs attemptedAt } } } } }"""


async def test_webhooks_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``webhooks``, a webhook by ``node(id)`` and each webhook's newest deliveries with
    their attempts, as every identity (admins read them; the others are refused by the
    executed path)."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    async with _settings_rows(sessionmaker, demo_domain) as stored:
        ids = stored["Webhook"]
        compiled = 0
        for who, identity in identities:
            for order in (None, [{"field": "CREATED_AT", "direction": "DESC"}]):
                fast, slow = await identity.both(WEBHOOKS, {"o": order})
                assert (fast.status_code, fast.content) == (slow.status_code, slow.content), who
                compiled += fast.headers.get("x-crm-read-path") == COMPILED
            for first in (2, 0, -3, 1000):
                fast, slow = await identity.both(DELIVERIES, {"n": first})
                assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (
                    who,
                    fast.text,
                    slow.text,
                )
                compiled += fast.headers.get("x-crm-read-path") == COMPILED
            for id in ids:
                node = """query($id: ID!) { node(id: $id) { ... on Webhook { url eventTypes
                  deliveries(first: 2) { eventId attemptHistory { attempt } } } } }"""
                fast, slow = await identity.both(node, {"id": id})
                assert (fast.status_code, fast.content) == (slow.status_code, slow.content), who
        assert compiled >= 6, compiled
        body = await dict(identities)["admin"].same(WEBHOOKS, {"o": None}, compiled=True)
        assert body["data"]["webhooks"]["totalCount"] == 3, body
        body = await dict(identities)["admin"].same(DELIVERIES, {"n": 1000}, compiled=True)
        hooks = {hook["url"]: hook for hook in body["data"]["webhooks"]["nodes"]}
        listed = [len(hook["recent"]) for _, hook in sorted(hooks.items())]
        attempts = sum(len(d["attemptHistory"]) for h in hooks.values() for d in h["recent"])
        assert listed == [3, 2, 0] and attempts == 1 + 2 + 3 + 4, (listed, attempts)


SEGMENTS = """query($n: Int, $a: String, $f: SegmentFilter, $o: [SegmentOrder!], $x: Boolean,
  $cf: CustomerFilter) {
  segments(first: $n, after: $a, filter: $f, orderBy: $o, includeArchived: $x) { totalCount
  edges { cursor node { id __typename name description filter shared builtIn rfmSegment
  archivedAt createdAt updatedAt version owner { id name } drillDown { list filter }
  within: drillDown(filter: $cf) { __typename filter list } } }
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


async def _store_segments(session: AsyncSession, workspace_id: Any) -> list[str]:
    """Saved segments: shared, private to the first admin and to another user, archived,
    two of one name; their global IDs."""
    from crm_graphql.models import Segment

    users = (
        await session.scalars(
            select(User).where(User.workspace_id == workspace_id).order_by(User.created_at)
        )
    ).all()
    admin = next(u for u in users if u.role == Role.ADMIN)
    other = next(u for u in users if u.role == Role.AGENT)
    rows = [
        Segment(
            workspace_id=workspace_id,
            name=name,
            description=description,
            filter=filter,
            shared=shared,
            owner_id=owner,
            archived_at=archived,
        )
        for name, description, filter, shared, owner, archived in [
            ("Big spenders", None, {"lifecycleStage": {"eq": "CUSTOMER"}}, True, admin.id, None),
            ("Mine", 'my "own" é', {"name": {"contains": "a"}}, False, admin.id, None),
            ("Theirs", None, {}, False, other.id, None),
            ("Everyone", None, {}, True, None, None),
            (
                "Old",
                None,
                {"email": {"isNull": True}},
                True,
                None,
                datetime(2026, 1, 1, 0, 0, 1).astimezone(),
            ),
            (
                "Big spenders",
                "twin",
                {"and": [{}, {"tags": {"contains": "x"}}]},
                True,
                other.id,
                None,
            ),
        ]
    ]
    session.add_all(rows)
    await session.flush()
    return [to_global_id("Segment", row.id) for row in rows]


async def test_segments_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``segments`` (built-in RFM segments, then the saved ones the caller sees) as every
    identity: every page size around the built-ins' count, both kinds of cursor walked to
    the end, filters that hide the built-ins, orders, archived ones, bad arguments."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    async with sessionmaker() as session, session.begin():
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.name == f"Diff {demo_domain}")
        )
        await _store_segments(session, workspace_id)
    built_ins = len(BUILT_INS)
    arguments: list[dict[str, Any]] = [
        {},
        {"n": 0},
        {"n": built_ins - 1},
        {"n": built_ins},
        {"n": built_ins + 1},
        {"n": 100},
        {"n": 101},
        {"n": 3, "f": {"builtIn": True}},
        {"n": 3, "f": {"builtIn": False}, "o": [{"field": "NAME", "direction": "DESC"}]},
        {"f": {"name": {"startsWith": "Big"}}, "o": [{"field": "CREATED_AT"}]},
        {"f": {"builtIn": True, "shared": True}},
        {"x": True, "o": [{"field": "UPDATED_AT", "direction": "DESC"}]},
        {"cf": {"name": {"contains": 'a "b"'}}, "n": 30},
        {"cf": {}, "n": 30, "x": True},
        {"cf": {"or": [{"tags": {"contains": "vip"}}, {"rfmSegment": {"eq": "LOST"}}]}},
        {"a": "not a cursor"},
        {"f": {"id": {"eq": "bad"}}},
    ]
    try:
        seen: Counter[str] = Counter()
        for who, identity in identities:
            for variables in arguments:
                fast, slow = await identity.both(SEGMENTS, variables)
                assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (
                    who,
                    variables,
                    fast.text,
                    slow.text,
                )
                seen[who] += fast.headers.get("x-crm-read-path") == COMPILED
            for size in (1, 4, built_ins):
                after = None
                for _ in range(40):
                    variables = {"n": size, "a": after, "x": True}
                    fast, slow = await identity.both(SEGMENTS, variables)
                    assert fast.content == slow.content, (who, variables, fast.text, slow.text)
                    page = (orjson.loads(fast.content).get("data") or {}).get("segments")
                    if not page or not page["pageInfo"]["hasNextPage"]:
                        break
                    after = page["pageInfo"]["endCursor"]
                else:
                    raise AssertionError("the pages never end")
        # Everyone who may read customers is compiled but for the three errors (a page over
        # the cap, a cursor and an ID that are not); the others are refused.
        assert seen["admin"] == seen["key customers:read"] == len(arguments) - 3, seen
        assert seen["key deals:read"] == 0, seen
        admin = dict(identities)["admin"]
        body = await admin.same(SEGMENTS, {"n": 100, "x": True}, compiled=True)
        names = [e["node"]["name"] for e in body["data"]["segments"]["edges"]]
        assert names[built_ins:] == ["Big spenders", "Big spenders", "Everyone", "Mine", "Old"]
        assert body["data"]["segments"]["totalCount"] == built_ins + 5, body
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                text("DELETE FROM segments WHERE workspace_id = :w"), {"w": workspace_id}
            )


COHORTS = """query($from: Date!, $to: Date!, $tz: String!) {
  customerCohorts(from: $from, to: $to, timeZone: $tz) { month customers __typename
    drillDown { list filter } cells { monthsSince customers share drillDown { filter list } }
  } again: customerCohorts(from: $from, to: $to, timeZone: $tz) { customers } }"""


async def test_customer_cohorts_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``customerCohorts`` as every identity over periods in several zones (months cut
    at local midnight, a zone a day ahead, one off the hour), and the periods the
    executed path refuses."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    periods = [
        ("2017-01-01", "2026-12-31", "UTC"),
        ("2024-03-15", "2026-11-02", "Europe/Amsterdam"),
        ("2025-01-01", "2025-12-31", "Pacific/Kiritimati"),
        ("2023-06-30", "2026-06-01", "America/St_Johns"),
        ("2026-12-01", "2026-12-31", "UTC"),
        ("2026-02-01", "2026-01-01", "UTC"),
        ("2000-01-01", "2026-12-31", "UTC"),
        ("2026-01-01", "2026-02-01", "Mars/Olympus"),
    ]
    compiled: Counter[str] = Counter()
    for who, identity in identities:
        for start, end, zone in periods:
            variables = {"from": start, "to": end, "tz": zone}
            fast, slow = await identity.both(COHORTS, variables)
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (
                who,
                variables,
                fast.text[:2000],
                slow.text[:2000],
            )
            compiled[who] += fast.headers.get("x-crm-read-path") == COMPILED
    # The last three periods are errors; those who may not read customers are refused.
    assert compiled["admin"] == compiled["key customers:read"] == len(periods) - 3, compiled
    assert compiled["key deals:read"] == 0, compiled
    body = await dict(identities)["admin"].same(
        COHORTS, {"from": "2017-01-01", "to": "2026-12-31", "tz": "UTC"}, compiled=True
    )
    cohorts = body["data"]["customerCohorts"]
    assert len(cohorts) > 2 and sum(c["customers"] for c in cohorts) > 10, cohorts


AUDIT_LOG = """query($n: Int, $a: String, $f: AuditLogFilter, $o: [AuditLogOrder!]) {
  auditLog(first: $n, after: $a, filter: $f, orderBy: $o) { totalCount
  edges { cursor node { id __typename action entityType entityId changes requestId createdAt
    clientIp actor { id name } apiKey { id name } entity { __typename id
      ... on Customer { name } ... on Deal { title stage { name } } } } }
  pageInfo { hasNextPage endCursor } } }"""


async def _store_audit_entries(session: AsyncSession, workspace_id: Any) -> dict[str, str]:
    """Audit entries the writers make (references, enums, nulls, a gone entity) and ones
    only old or odd data holds (a key that is no column, a reference that is no UUID or
    not in its canonical text, an IPv6 client); their actions by kind."""
    from crm_graphql.models import AuditLog, Deal

    customer = await session.scalar(
        select(Customer).where(Customer.workspace_id == workspace_id).limit(1)
    )
    deal = await session.scalar(select(Deal).where(Deal.workspace_id == workspace_id).limit(1))
    user = await session.scalar(select(User).where(User.workspace_id == workspace_id).limit(1))
    assert customer is not None and deal is not None and user is not None
    # The log is append-only: they stay, dated long before the rest (newest-first pages
    # of the other tests end before them).
    moment = datetime(2001, 1, 1, 0, 0, 0, 5).astimezone()
    plain = {
        "owner_id": {"before": None, "after": str(user.id).upper()},
        "lifecycle_stage": {"before": "lead", "after": "customer"},
        "status": {"before": "open", "after": "not an enum value"},
        "name": {"before": 'Zoë "Z"', "after": None},
        "tags": {"before": [], "after": ["a", "b"]},
        "company_id": "not a change object",
        "custom_fields": {"before": {"x": 1.5}, "after": {"x": None}},
    }
    kinds = {
        "plain": ("Customer", customer.id, plain, "203.0.113.9"),
        "deal": (
            "Deal",
            deal.id,
            {"stage_id": {"before": str(deal.stage_id), "after": None}, "status": {"after": "won"}},
            "10.1.0.0/16",
        ),
        "gone": ("Customer", uuid.uuid4(), {}, None),
        "none": ("Workspace", None, {"name": {"after": "x"}}, None),
        "odd key": ("Customer", customer.id, {"weird key": {"after": 1}}, None),
        "odd id": (
            "Customer",
            customer.id,
            {"owner_id": {"after": "{" + str(user.id) + "}"}},
            None,
        ),
        "ipv6": ("Deal", deal.id, {}, "::ffff:1.2.3.4"),
        "delivery": ("WebhookDelivery", uuid.uuid4(), {}, None),
    }
    for number, (kind, (entity_type, entity_id, changes, ip)) in enumerate(kinds.items()):
        session.add(
            AuditLog(
                workspace_id=workspace_id,
                actor_user_id=user.id if number % 2 else None,
                action=f"differential {kind}",
                entity_type=entity_type,
                entity_id=entity_id,
                changes=changes,
                request_id=None if number % 3 else f"req-{number}",
                client_ip=ip,
                created_at=moment + timedelta(seconds=number),
            )
        )
    await session.flush()
    return {kind: f"differential {kind}" for kind in kinds}


async def test_the_audit_log_is_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``auditLog`` as every identity (admins read it): entries as the writers make them
    are compiled (changes in the API's names), odd ones take the executed path; pages
    walked with cursors, filtered and ordered."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    async with sessionmaker() as session, session.begin():
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.name == f"Diff {demo_domain}")
        )
        actions = await _store_audit_entries(session, workspace_id)
    compiled: Counter[str] = Counter()
    for who, identity in identities:
        for kind, action in actions.items():
            variables = {"f": {"action": {"eq": action}}}
            fast, slow = await identity.both(AUDIT_LOG, variables)
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (
                who,
                kind,
                fast.text,
                slow.text,
            )
            if fast.headers.get("x-crm-read-path") == COMPILED:
                compiled[kind] += 1
        for variables in (
            {"n": 7},
            {"n": 0},
            {"o": [{"field": "CREATED_AT", "direction": "ASC"}], "n": 3},
            {"f": {"action": {"startsWith": "differential"}}},
        ):
            fast, slow = await identity.both(AUDIT_LOG, variables)
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), who
    # Only admins read the audit log; odd entries take the executed path.
    assert set(compiled) == {"plain", "deal", "gone", "none"}, compiled
    assert all(n == 1 for n in compiled.values()), compiled
    admin = dict(identities)["admin"]
    # A field the compiler refuses under an entity's type refuses the page.
    refused = "{ auditLog(first: 20) { nodes { entity { ... on Customer { customFields } } } } }"
    await admin.same(refused, compiled=False)
    body = await admin.same(AUDIT_LOG, {"f": {"action": {"eq": actions["plain"]}}})
    changes = body["data"]["auditLog"]["edges"][0]["node"]["changes"]
    assert changes["lifecycleStage"] == {"before": "LEAD", "after": "CUSTOMER"}, changes
    seen = 0
    after = None
    while True:
        fast, slow = await admin.both(AUDIT_LOG, {"n": 25, "a": after})
        assert fast.content == slow.content, (fast.text, slow.text)
        page = orjson.loads(fast.content)["data"]["auditLog"]
        seen += len(page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == page["totalCount"], (seen, page["totalCount"])


MAIL = """query($m: ID!) { node(id: $m) { id ... on Message { body delivery { direction
  status attempts error nextAttemptAt sentAt bouncedAt rfcMessageId sender recipients
  subject __typename } attachments { id __typename filename contentType size url } } } }"""
INBOX_MAIL = """{ conversations(first: 40) { nodes { messages(first: 20) { nodes { id
  delivery { direction status } attachments { filename url } } } } } }"""


async def _store_mail(session: AsyncSession, workspace_id: Any) -> list[tuple[Any, Any]]:
    """Mail of three messages of three conversations: received with files, sent and
    failed, received without a subject; their (conversation id, message id)."""
    from crm_graphql.enums import EmailDeliveryStatus, EmailDirection
    from crm_graphql.models import Conversation, EmailMessage, Message, MessageAttachment

    picked = (
        await session.execute(
            select(Message.id, Message.conversation_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.workspace_id == workspace_id)
            .order_by(Conversation.last_message_at.desc().nulls_last(), Message.seq)
            .limit(60)
        )
    ).all()
    by_conversation = list({c: m for m, c in reversed(picked)}.items())[:3]
    assert len(by_conversation) == 3
    moment = datetime(2026, 12, 1, 10, 0, 0, 5).astimezone()
    for index, (conversation_id, message_id) in enumerate(by_conversation):
        session.add(
            EmailMessage(
                workspace_id=workspace_id,
                message_id=message_id,
                conversation_id=conversation_id,
                direction=EmailDirection.INBOUND if index != 1 else EmailDirection.OUTBOUND,
                rfc_message_id=f"<{uuid.uuid4()}@example.com>",
                sender='"Zoë" <zoe@example.com>',
                recipients=["a@example.com", 'b"c@example.com'][: index + 1],
                subject=None if index == 2 else 'Re: "order" ✓',
                references=[],
                status=EmailDeliveryStatus.FAILED if index == 1 else None,
                attempts=3 if index == 1 else 0,
                last_error="relay said no\n" if index == 1 else None,
                next_attempt_at=moment if index == 1 else None,
                sent_at=None,
            )
        )
    for position, name in enumerate(["invoice.pdf", 'a "b".txt', "Zoë.png"]):
        session.add(
            MessageAttachment(
                workspace_id=workspace_id,
                message_id=by_conversation[0][1],
                position=2 - position,
                filename=name,
                content_type="application/octet-stream",
                size=10 * position,
                content=b"x" * (10 * position),
            )
        )
    await session.flush()
    return by_conversation


async def test_email_deliveries_and_attachments_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A message's ``delivery`` and ``attachments`` (the email channel) as every identity:
    a received mail with files, a sent one that failed, and one in a private conversation
    (its mail seen only by those who see the conversation)."""
    from crm_graphql.models import Conversation

    identities = await _identities(pair, demo_domain, sessionmaker)
    async with sessionmaker() as session, session.begin():
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.name == f"Diff {demo_domain}")
        )
        by_conversation = await _store_mail(session, workspace_id)
        private = by_conversation[2][0]
        await session.execute(
            update(Conversation)
            .where(Conversation.id == private)
            .values(is_private=True, assignee_id=None)
        )
    messages = [to_global_id("Message", m) for _, m in by_conversation]
    try:
        seen = Counter[str]()
        for who, identity in identities:
            for message in messages:
                fast, slow = await identity.both(MAIL, {"m": message})
                assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (
                    who,
                    fast.text,
                    slow.text,
                )
                node = (orjson.loads(fast.content).get("data") or {}).get("node")
                if node is not None:
                    assert fast.headers.get("x-crm-read-path") == COMPILED, who
                    seen[who] += bool(node["delivery"]) + len(node["attachments"])
            fast, slow = await identity.both(INBOX_MAIL)
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), who
        # Three mails and three files; agents and viewers miss the private conversation's.
        assert seen["admin"] == seen["manager"] == 6 and seen["agent"] == 5, seen
    finally:
        async with sessionmaker() as session, session.begin():
            for table in ("message_attachments", "email_messages"):
                await session.execute(
                    text(f"DELETE FROM {table} WHERE workspace_id = :w"), {"w": workspace_id}
                )
            await session.execute(
                update(Conversation).where(Conversation.id == private).values(is_private=False)
            )


async def test_sensitive_custom_field_keys_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``sensitiveCustomFields`` as every identity: none, then keys with awkward texts."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    query = "{ sensitiveCustomFields a: sensitiveCustomFields me { id } }"
    for who, identity in identities:
        body = await identity.same(query, compiled=True)
        assert body["data"]["sensitiveCustomFields"] == [], (who, body)
    keys = ["ssn", 'é "q" \\ \u2028', "x" * 100]
    set_keys = text("UPDATE workspaces SET sensitive_custom_fields = :k WHERE name = :w")
    async with sessionmaker() as session, session.begin():
        await session.execute(set_keys, {"k": keys, "w": f"Diff {demo_domain}"})
    try:
        for who, identity in identities:
            body = await identity.same(query, compiled=True)
            assert body["data"]["a"] == keys, (who, body)
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(set_keys, {"k": [], "w": f"Diff {demo_domain}"})


async def test_the_workspace_and_its_from_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``workspace`` as every identity: its id and name compiled for all; ``emailFrom``
    (admins only) compiled for admins, unset and then with awkward texts, and the
    executed path's FORBIDDEN for the others, byte for byte."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    plain = "{ workspace { __typename id n: name } me { id } }"
    settings_query = (
        "{ workspace { id emailFrom { __typename address name } again: emailFrom { name } } }"
    )
    set_from = text(
        "UPDATE workspaces SET email_from_address = :a, email_from_name = :n WHERE name = :w"
    )
    values = [
        (None, None),
        ("help@acme.example", None),
        ("o'hara+x@acme.example", 'Zoë "Support" \\ \u2028'),
    ]
    try:
        for address, name in values:
            async with sessionmaker() as session, session.begin():
                await session.execute(
                    set_from, {"a": address, "n": name, "w": f"Diff {demo_domain}"}
                )
            for who, identity in identities:
                body = await identity.same(plain, compiled=True)
                assert body["data"]["workspace"]["n"] == f"Diff {demo_domain}", (who, body)
                body = await identity.same(settings_query, compiled=who == "admin")
                if who == "admin":
                    expected = address and {
                        "__typename": "EmailSender",
                        "address": address,
                        "name": name,
                    }
                    assert body["data"]["workspace"]["emailFrom"] == expected, body
                else:
                    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (who, body)
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(set_from, {"a": None, "n": None, "w": f"Diff {demo_domain}"})


async def _samples(pair: Pair) -> Samples:
    """IDs of every node type and cursors of every list in every single-field order."""
    samples = Samples()
    query_type = schema._schema.query_type
    assert query_type is not None
    for name, definition in query_type.fields.items():
        node = node_type(definition.type)
        if node is None:
            continue
        order_type = get_named_type(definition.args["orderBy"].type)
        fields = get_named_type(order_type.fields["field"].type)  # type: ignore[union-attr]
        orders: list[tuple[tuple[str, str], ...]] = [()]
        orders += [((f, d),) for f in fields.values for d in ("ASC", "DESC")]  # type: ignore[union-attr]
        parts = []
        for index, order in enumerate(orders):
            order_by = ", ".join(f"{{field: {f}, direction: {d}}}" for f, d in order)
            parts.append(
                f"o{index}: {name}(first: 4, orderBy: [{order_by}]) "
                "{ edges { cursor node { __typename id } } }"
            )
        data = (await pair.same("{ " + " ".join(parts) + " }"))["data"]
        for index, order in enumerate(orders):
            for edge in data[f"o{index}"]["edges"]:
                samples.cursors[(node.name, order)].append(edge["cursor"])
                if edge["node"]["id"] not in samples.ids[edge["node"]["__typename"]]:
                    samples.ids[edge["node"]["__typename"]].append(edge["node"]["id"])
    nested = """{ pipelines(first: 5) { nodes { stages { id } } } conversations(first: 5) {
      nodes { messages(first: 3) { nodes { id } } } } }"""
    data = (await pair.same(nested))["data"]
    for pipeline in data["pipelines"]["nodes"]:
        samples.ids["Stage"].extend(s["id"] for s in pipeline["stages"][:3])
    for conversation in data["conversations"]["nodes"]:
        samples.ids["Message"].extend(m["id"] for m in conversation["messages"]["nodes"])
    return samples


def _compilable() -> dict[str, set[str]]:
    """The root fields and the fields per object type the compiled path knows."""
    known = {"Query": {*ROOT_LISTS, "me", "node", "nodes"}}
    for name, info in OBJECT_TYPES.items():
        plain = plain_fields(schema, name)
        known[name] = {"id", *plain, *info.relations, *info.lists, *info.computed}
    query = schema._schema.query_type
    assert query is not None
    for name in [n for n in query.fields if aggregate_field(n) is not None]:
        known["Query"].add(name)
        totals = get_named_type(query.fields[name].type)
        known[totals.name] = set(totals.fields)
        group = get_named_type(totals.fields["groups"].type)
        known[group.name] = set(group.fields)
    known["Query"] |= {"search", "timeSeries", "serviceReport", "salesReport", "job", "changes"}
    known["Query"] |= {"sensitiveCustomFields", "customFieldDefinitions", "segments"}
    known["Query"] |= {"customerCohorts", "auditLog"}
    # The bulk-change previews (those whose change reads no data: decision 0006).
    known["Query"] |= set(compiled_bulk.PREVIEWS)
    for name in ("BulkChangePreview", "BulkCompanyChangePreview", "BulkDealChangePreview"):
        known[name] = set(schema._schema.type_map[name].fields)  # type: ignore[attr-defined]
    audit_fields = schema._schema.type_map["AuditLogEntry"].fields  # type: ignore[attr-defined]
    known["AuditLogEntry"] = set(audit_fields)
    known["Cohort"] = {"month", "customers", "cells", "drillDown"}
    known["CohortCell"] = {"monthsSince", "customers", "share", "drillDown"}
    # A segment's members stay executed (decision 0006).
    segment_fields = schema._schema.type_map["Segment"].fields  # type: ignore[attr-defined]
    known["Segment"] = set(segment_fields) - {"customers"}
    for name in ("EmailDelivery", "MessageAttachment", "WebhookDelivery", "WebhookDeliveryAttempt"):
        known[name] = set(schema._schema.type_map[name].fields)  # type: ignore[attr-defined]
    known["OrderLine"] = set(schema._schema.type_map["OrderLine"].fields)  # type: ignore[attr-defined]
    for name in ("ChangePage", "Change"):
        known[name] = set(schema._schema.type_map[name].fields)  # type: ignore[attr-defined]
    known["JobCount"] = {"name", "count"}
    known["JobError"] = {"line", "field", "code", "message"}
    for name in ("SalesReport", "SalesStage", "WinRate", "CycleTime", "ForecastCell"):
        known[name] = set(schema._schema.type_map[name].fields)  # type: ignore[attr-defined]
    known["MoneyCell"] = {"currency", "amount", "count", "drillDown"}
    known["DrillDown"] = {"list", "filter"}
    known["ServiceReport"] = {"from", "to", "timeZone", "volume", "firstResponse"}
    known["ServiceReport"] |= {"resolution", "backlog", "csat"}
    known["VolumeCell"] = {"channel", "status", "count", "drillDown"}
    known["ServiceTimes"] = known["Csat"] = {"overall", "byAgent", "byChannel"}
    known["TimeStats"] = {"agent", "channel", "count", "p50Seconds", "p90Seconds", "drillDown"}
    known["BacklogBand"] = {"label", "minAgeHours", "maxAgeHours", "openCount", "pendingCount"}
    known["CsatStats"] = {"agent", "channel", "count", "satisfied", "csat", "averageScore"}
    known["CsatStats"] |= {"drillDown", "satisfiedDrillDown"}
    known["TimeSeriesPoint"] = {"start", "end", "count", "amount", "drillDown"}
    known["SearchResults"] = {"edges", "pageInfo"}
    known["SearchHit"] = {"cursor", "node", "score"}
    for name in ("MoneyAggregate", "NumberAggregate", "Money"):
        known[name] = set(schema._schema.type_map[name].fields)  # type: ignore[attr-defined]
    return known


async def test_generated_reads_are_identical_on_both_paths_for_every_identity(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    identities = await _identities(pair, demo_domain, sessionmaker)
    async with _settings_rows(sessionmaker, demo_domain) as stored:
        await _generated_reads(pair, demo_domain, sessionmaker, identities, stored)


async def _generated_reads(
    pair: Pair,
    demo_domain: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    identities: list[tuple[str, Pair]],
    stored: dict[str, list[str]],
) -> None:
    rng = random.Random(GENERATED_SEED)
    samples = await _samples(pair)
    samples.ids["Job"] = await _job_ids(sessionmaker, demo_domain)
    for type_name, ids in stored.items():
        samples.ids[type_name] = list(dict.fromkeys([*samples.ids[type_name], *ids]))
    # The change feed's cursors (its `after` takes no list's cursor).
    feed = await pair.same("{ changes(first: 60) { changes { cursor } } }", compiled=True)
    samples.cursors[("", ())] += [c["cursor"] for c in feed["data"]["changes"]["changes"][::7]]
    generator = ReadQueries(schema._schema, samples, rng, _compilable())
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    failures: list[str] = []
    compiled = 0
    started = time.monotonic()
    for number in range(GENERATED_QUERIES):
        document, variables = generator.operation()
        who, identity = rng.choice(identities)
        fast, slow = await identity.both(document, variables or None)
        statuses[slow.status_code] += 1
        compiled += fast.headers.get("x-crm-read-path") == COMPILED
        body = orjson.loads(slow.content)
        found = {(e.get("extensions") or {}).get("code") for e in (body.get("errors") or [])}
        codes.update(found)
        problem = None
        if fast.status_code != slow.status_code or fast.content != slow.content:
            problem = f"paths differ: {fast.status_code} {fast.text[:800]}\n  vs {slow.text[:800]}"
        elif slow.status_code >= 500 or "INTERNAL" in found:
            problem = f"{slow.status_code} {slow.text[:800]}"
        if problem:
            failures.append(f"#{number} as {who}: {document}\n  {variables}\n  {problem}")
    report = (
        f"{GENERATED_QUERIES} generated reads (seed {GENERATED_SEED}) in "
        f"{time.monotonic() - started:.1f} s: {compiled} compiled, statuses "
        f"{dict(sorted(statuses.items()))}, error codes {dict(codes.most_common())}, "
        f"{len(failures)} failures"
    )
    print(report)
    assert not failures, report + "\n" + "\n".join(failures[:5])
    # The run must exercise both paths and both kinds of answer.
    assert compiled > GENERATED_QUERIES // 10 and statuses[200] > GENERATED_QUERIES // 2, report


async def test_a_customer_with_orders_at_the_ends_of_time_has_scores_not_errors(
    pair: Pair, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Orders placed at -infinity / infinity (direct SQL can store them): the customer's RFM
    scores, lifetime value and churn risk are answered, as numbers, never INTERNAL."""
    customer = await _edge_customer(pair, "orders", "PLACED_AT")
    query = """query($c: ID!) { node(id: $c) { ... on Customer { rfm { recency frequency
      segment firstOrderAt lastOrderAt lifetimeValue { amount currency } }
      churnRisk { score level reasons daysSinceLastOrder } } } }"""
    body = await pair.same(query, {"c": customer})
    assert "errors" not in body, body
    scored = body["data"]["node"]
    # The latest counted order is at the end of time (other tests may refund some).
    assert scored["rfm"]["lastOrderAt"] >= "9999-12-30", scored
    assert scored["rfm"]["recency"] == 0 and scored["churnRisk"]["level"], scored
    # Two orders at the same infinity: PostgreSQL cannot subtract them (no gap is taken).
    _, raw_id = from_global_id(customer)
    async with sessionmaker() as session, session.begin():
        again = (
            await session.scalars(
                text(
                    "INSERT INTO orders (id, workspace_id, customer_id, number, status, "
                    "amount, currency, items, placed_at, version) SELECT gen_random_uuid(), "
                    "o.workspace_id, o.customer_id, o.number || '-again-' || i, 'paid', "
                    "o.amount, o.currency, o.items, 'infinity', 1 FROM (SELECT * FROM orders "
                    "WHERE customer_id = :c LIMIT 1) o, generate_series(1, 2) i RETURNING id"
                ),
                {"c": raw_id},
            )
        ).all()
    assert len(again) == 2
    try:
        body = await pair.same(query, {"c": customer})
        assert "errors" not in body, body
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(text("DELETE FROM orders WHERE id = ANY(:i)"), {"i": list(again)})


CHANGES = """query($first: Int, $after: String, $types: [SyncedType!]) {
  changes(first: $first, after: $after, types: $types) { hasMore cursor __typename
    changes { cursor nodeId type kind fields at
      node { __typename id ... on Customer { name email } ... on Conversation { subject
        status } ... on Message { body } ... on Deal { title stage { name } } } } } }"""


def _without_resume(body: bytes) -> Any:
    """The answer with the page's resume cursor taken out when it points past the
    horizon (``hasMore`` false): every transaction of the database server moves that."""
    parsed = orjson.loads(body)
    page = (parsed.get("data") or {}).get("changes")
    if page is not None and page["hasMore"] is False:
        page["cursor"] = "past the horizon"
    return parsed


async def test_the_change_feed_is_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``changes`` as every identity, walked to its end by cursor in pages of 0, 7 and the
    largest size, and narrowed by type; refusals (a type a key may not read, a malformed
    cursor, a page size over the cap) take the executed path and answer its errors."""
    identities = await _identities(pair, demo_domain, sessionmaker)
    # One private conversation nobody is assigned: admins and managers see its changes.
    async with sessionmaker() as session, session.begin():
        private = await session.scalar(
            text(
                """UPDATE conversations SET is_private = true, assignee_id = NULL
                   WHERE id = (SELECT c.id FROM conversations c JOIN workspaces w
                     ON w.id = c.workspace_id WHERE w.name = :w ORDER BY c.id LIMIT 1)
                   RETURNING id"""
            ),
            {"w": f"Diff {demo_domain}"},
        )
    try:
        await _walk_the_change_feed(pair, identities)
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE conversations SET is_private = false WHERE id = :c"), {"c": private}
            )


async def _walk_the_change_feed(pair: Pair, identities: list[tuple[str, Pair]]) -> None:
    compiled = 0
    walked: dict[str, int] = {}
    for who, identity in identities:
        walks = ((100, None, 100), (7, None, 4), (0, None, 1), (11, ["CONVERSATION", "MESSAGE"], 4))
        for size, types, pages in walks:
            after = None
            total = 0
            for _ in range(pages):
                variables = {"first": size, "after": after, "types": types}
                fast, slow = await identity.both(CHANGES, variables)
                assert fast.status_code == slow.status_code, (who, fast.text, slow.text)
                assert _without_resume(fast.content) == _without_resume(slow.content), (
                    who,
                    variables,
                    fast.text[:2000],
                    slow.text[:2000],
                )
                taken = fast.headers.get("x-crm-read-path") == COMPILED
                compiled += taken
                page = orjson.loads(fast.content)["data"]
                if page is None:  # refused (a key without conversations:read)
                    assert not taken
                    break
                assert taken, (who, variables)
                total += len(page["changes"]["changes"])
                if not page["changes"]["hasMore"] or size == 0:
                    break
                after = page["changes"]["cursor"]
            walked[f"{who} {size} {types}"] = total
    # Private conversations (and their messages) are left out for agents and viewers.
    assert walked["admin 100 None"] == walked["manager 100 None"], walked
    assert walked["admin 100 None"] > walked["agent 100 None"] > 0, walked
    assert walked["agent 11 ['CONVERSATION', 'MESSAGE']"] > 0, walked
    for variables in (
        {"first": 101},
        {"first": -1},
        {"after": "nope"},
        {"after": base64.urlsafe_b64encode(b"ev:99999999999999999999:1").decode()},
        {"types": ["USER"]},
    ):
        fast, slow = await pair.both(CHANGES, variables)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), variables
        assert fast.headers.get("x-crm-read-path") != COMPILED, variables
        assert b"INTERNAL" not in slow.content, slow.text


async def test_the_change_feed_is_compiled_beside_a_page(pair: Pair) -> None:
    """The feed and a list in one operation: one compiled statement (after the horizon's)."""
    body = await pair.same(
        """{ changes(first: 5) { hasMore changes { nodeId type kind fields } }
             customers(first: 2) { nodes { id name } } }""",
        compiled=True,
    )
    assert len(body["data"]["changes"]["changes"]) == 5


BULK_PREVIEWS = {
    "Customer": """query($i: BulkCustomerChangeInput!, $n: Int) {
  bulkCustomerChangePreview(input: $i, sample: $n) { count __typename
    customers { id __typename name email tags lifecycleStage owner { id name } company { name } } }
  again: bulkCustomerChangePreview(input: $i, sample: 0) { customers { id } count } }""",
    "Company": """query($i: BulkCompanyChangeInput!, $n: Int) {
  bulkCompanyChangePreview(input: $i, sample: $n) { count
    companies { id name tags owner { id } } } }""",
    "Deal": """query($i: BulkDealChangeInput!, $n: Int) {
  bulkDealChangePreview(input: $i, sample: $n) { __typename count
    deals { id title amount currency status stage { name } owner { id name } } } }""",
}


async def test_bulk_change_previews_are_compiled_and_identical(
    pair: Pair, demo_domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The three bulk-change previews as every identity: changes each permission refuses
    or allows, owners of the workspace, unknown and unassigning, filters, built-in and
    unknown segments, sample sizes around the cap, and the checks that read data (a
    deal's stage, custom fields), which take the executed path."""
    from crm_graphql.models import Pipeline, Stage

    identities = await _identities(pair, demo_domain, sessionmaker)
    async with sessionmaker() as session:
        workspace_id = await session.scalar(
            select(Workspace.id).where(Workspace.name == f"Diff {demo_domain}")
        )
        owner = await session.scalar(
            select(User.id).where(User.workspace_id == workspace_id).order_by(User.id).limit(1)
        )
        pipeline = await session.scalar(
            select(Pipeline.id).where(Pipeline.workspace_id == workspace_id).limit(1)
        )
        stage = await session.scalar(select(Stage.id).where(Stage.pipeline_id == pipeline))
        # A key that may make the changes (the generated keys only read).
        writes = ("customers:read", "customers:write", "deals:read", "deals:write")
        admin = Actor(workspace_id=workspace_id, role=Role.ADMIN, user_id=owner)
        _, token = await api_keys.create_api_key(admin, session, name="Bulk", scopes=writes)
        await session.commit()
    identities.append(("key writes", Pair(pair.compiled, pair.executed, token)))
    owner_id = to_global_id("User", owner)
    stranger = to_global_id("User", uuid.uuid4())
    built_in = to_global_id("Segment", BUILT_INS[0].id)
    cases: list[tuple[str, dict[str, Any], bool]] = [
        # (kind, variables, compiled for those who may make the change)
        ("Customer", {"i": {"addTags": ["bulk"]}}, True),
        ("Customer", {"i": {"removeTags": ["vip"], "filter": {"tags": {"contains": "vip"}}}}, True),
        (
            "Customer",
            {"i": {"lifecycleStage": "CUSTOMER", "filter": {"name": {"contains": "a"}}}, "n": 100},
            True,
        ),
        ("Customer", {"i": {"ownerId": owner_id}, "n": 3}, True),
        ("Customer", {"i": {"ownerId": None, "archive": True}, "n": 0}, True),
        ("Customer", {"i": {"archive": True, "segmentId": built_in}}, True),
        ("Customer", {"i": {"ownerId": stranger}}, False),
        ("Customer", {"i": {"ownerId": "not an id"}}, False),
        (
            "Customer",
            {"i": {"addTags": ["x"], "segmentId": to_global_id("Segment", uuid.uuid4())}},
            False,
        ),
        ("Customer", {"i": {"customFields": {"tier": "gold"}}}, False),
        ("Customer", {"i": {}}, False),
        ("Customer", {"i": {"addTags": ["x"], "removeTags": ["x"]}}, False),
        ("Customer", {"i": {"addTags": ["x"], "filter": {"nope": 1}}}, False),
        ("Customer", {"i": {"addTags": ["x"]}, "n": 101}, False),
        ("Company", {"i": {"addTags": ["bulk"], "filter": {"name": {"startsWith": "A"}}}}, True),
        ("Company", {"i": {"ownerId": owner_id, "archive": True}, "n": 100}, True),
        ("Company", {"i": {"ownerId": stranger}}, False),
        ("Deal", {"i": {"ownerId": owner_id}}, True),
        (
            "Deal",
            {
                "i": {
                    "archive": True,
                    "filter": {"pipelineId": {"eq": to_global_id("Pipeline", pipeline)}},
                },
                "n": 5,
            },
            True,
        ),
        ("Deal", {"i": {"stageId": to_global_id("Stage", stage)}}, False),
        ("Deal", {"i": {"ownerId": stranger, "archive": True}}, False),
    ]
    compiled: Counter[str] = Counter()
    for who, identity in identities:
        for kind, variables, plain in cases:
            fast, slow = await identity.both(BULK_PREVIEWS[kind], variables)
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (
                who,
                variables,
                fast.text[:2000],
                slow.text[:2000],
            )
            if fast.headers.get("x-crm-read-path") == COMPILED:
                compiled[who] += 1
                assert "errors" not in orjson.loads(fast.content), (who, variables)
            elif who == "admin":
                assert not plain, (variables, fast.text[:500])
    # Admins may make every change: each case that reads nothing more is compiled.
    assert compiled["admin"] == sum(1 for *_, plain in cases if plain), compiled
    # Keys without write scopes are refused by the change's permission check; a key
    # with them is compiled as an admin is.
    assert compiled["key customers:read"] == 0, compiled
    assert compiled["key writes"] == compiled["admin"], compiled
    body = await dict(identities)["admin"].same(
        BULK_PREVIEWS["Customer"], {"i": {"addTags": ["bulk"]}, "n": 100}, compiled=True
    )
    found = body["data"]["bulkCustomerChangePreview"]
    assert found["count"] > 10 and len(found["customers"]) == min(found["count"], 100), found
