"""Typed custom fields wherever a list is read (issue 13): aggregates, the sales report,
saved segments (membership, totals, ``customers(segmentId:)``) filtered by custom fields,
each checked against a Python computation over a small generated data set; and search
over the values of fields marked ``searchable``, kept current at commit when values or
definitions change."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from crm_graphql.models import Role
from crm_graphql.services import customers as customer_service
from crm_graphql.services.actor import Actor
from crm_graphql.storage import querying
from tests import support
from tests.api.conftest import StatementCounter
from tests.documents import ARCHIVE_CUSTOM_FIELD_DEFINITION, CREATE_CUSTOMER, UPDATE_CUSTOMER

Clients = dict[Role, support.GraphQLClient]

DEFINE = """mutation($i: CreateCustomFieldDefinitionInput!) {
  createCustomFieldDefinition(input: $i) {
    customFieldDefinition { id key version } errors { code field message }
  }
}"""
CHANGE = """mutation($i: UpdateCustomFieldDefinitionInput!) {
  updateCustomFieldDefinition(input: $i) {
    customFieldDefinition { id searchable version } errors { code field message }
  }
}"""
PIPELINE = """mutation($i: CreatePipelineInput!) {
  createPipeline(input: $i) {
    pipeline { id stages { id name position } } errors { code field message }
  }
}"""
CREATE_DEAL = """mutation($i: CreateDealInput!) {
  createDeal(input: $i) { deal { id } errors { code field message } }
}"""
CREATE_COMPANY = """mutation($i: CreateCompanyInput!) {
  createCompany(input: $i) { company { id } errors { code field message } }
}"""
AGGREGATE = """query($f: DealFilter) {
  dealsAggregate(filter: $f, groupBy: [{field: STAGE}]) {
    count amount { sum { currency amount } }
    groups { stage { id } count amount { sum { currency amount } } }
  }
}"""
CUSTOMERS_AGGREGATE = """query($f: CustomerFilter) {
  customersAggregate(filter: $f, groupBy: [{field: LIFECYCLE_STAGE}]) {
    count groups { lifecycleStage count }
  }
}"""
SALES = """query($p: ID!, $from: Date!, $to: Date!, $f: DealFilter) {
  salesReport(pipelineId: $p, from: $from, to: $to, timeZone: "UTC", filter: $f) {
    stages { stage { id } openCount openValue { currency amount count } reachedCount }
    winRate { won lost }
  }
}"""
CREATE_SEGMENT = """mutation($i: CreateSegmentInput!) {
  createSegment(input: $i) { segment { id filter } errors { code field message } }
}"""
SEGMENT_MEMBERS = """query($id: ID!, $f: CustomerFilter) {
  node(id: $id) { ... on Segment {
    customers(first: 100, filter: $f) { totalCount nodes { id } }
  } }
}"""
SEGMENTS_MEMBERS = """query {
  segments(first: 50, filter: {builtIn: false}) { nodes { id filter
    customers(first: 100) { totalCount nodes { id } } } }
}"""
MEMBERS = """query($id: ID!, $f: CustomerFilter) {
  customers(segmentId: $id, filter: $f, first: 100) { totalCount nodes { id } }
}"""
SEARCH = """query($q: String!) {
  search(query: $q, first: 50) {
    edges { highlights { field snippet } node { __typename ... on Node { id } } }
  }
}"""

REGIONS = ["north", "south", "east"]
LIFECYCLE = ["LEAD", "CUSTOMER", "CHURNED"]


def ok(result: support.GraphQLResponse, name: str) -> dict[str, Any]:
    payload = result.ok()[name]
    assert payload["errors"] == [], payload
    return payload  # type: ignore[no-any-return]


async def define(client: support.GraphQLClient, **spec: Any) -> dict[str, Any]:
    return ok(await client(DEFINE, {"i": spec}), "createCustomFieldDefinition")[
        "customFieldDefinition"
    ]


async def a_pipeline(client: support.GraphQLClient) -> str:
    result = await client(PIPELINE, {"i": {"name": "Sales", "stages": [{"name": "New"}]}})
    return ok(result, "createPipeline")["pipeline"]["id"]  # type: ignore[no-any-return]


def money(cells: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {c["currency"]: Decimal(c["amount"]) for c in cells}


# ------------------------------------------------------------------------- deals


@pytest.fixture
async def deals_data(as_role: Clients) -> dict[str, Any]:
    """A pipeline of three stages and 40 deals with random stage, status, currency,
    amount and custom fields ``region`` (single select, sometimes absent) and ``size``
    (number, sometimes absent), as (id, stage, status, currency, amount, values)."""
    admin = as_role[Role.ADMIN]
    await define(
        admin, entity="DEAL", key="region", label="Region", type="SINGLE_SELECT", options=REGIONS
    )
    await define(admin, entity="DEAL", key="size", label="Size", type="NUMBER")
    pipeline = ok(
        await admin(
            PIPELINE,
            {
                "i": {
                    "name": "Custom pipeline",
                    "stages": [
                        {"name": "Qualify", "probability": 10},
                        {"name": "Propose", "probability": 50},
                        {"name": "Commit", "probability": 90},
                    ],
                }
            },
        ),
        "createPipeline",
    )["pipeline"]
    stages = sorted(pipeline["stages"], key=lambda s: s["position"])
    rng = random.Random(1613)
    deals = []
    for i in range(40):
        stage = rng.choice(stages)
        status = rng.choice(["OPEN", "OPEN", "OPEN", "WON", "LOST"])
        currency = rng.choice(["EUR", "USD"])
        amount = Decimal(rng.randint(100, 100_000)) / 100
        values: dict[str, Any] = {}
        if rng.random() < 0.8:
            values["region"] = rng.choice(REGIONS)
        if rng.random() < 0.8:
            values["size"] = rng.randint(0, 10)
        made = ok(
            await admin(
                CREATE_DEAL,
                {
                    "i": {
                        "title": f"Deal {i}",
                        "currency": currency,
                        "amount": str(amount),
                        "pipelineId": pipeline["id"],
                        "stageId": stage["id"],
                        "status": status,
                        "customFields": values,
                    }
                },
            ),
            "createDeal",
        )["deal"]
        deals.append(
            {
                "id": made["id"],
                "stage": stage,
                "status": status,
                "currency": currency,
                "amount": amount,
                "values": values,
            }
        )
    return {"pipeline": pipeline, "stages": stages, "deals": deals}


def north_and_big(deal: dict[str, Any]) -> bool:
    values = deal["values"]
    return values.get("region") == "north" and values.get("size", -1) >= 5


NORTH_AND_BIG = {
    "customFields": [{"key": "region", "eq": "north"}, {"key": "size", "gte": 5}],
}


async def test_a_deals_aggregate_grouped_by_stage_with_a_custom_field_filter(
    as_role: Clients, deals_data: dict[str, Any]
) -> None:
    kept = [d for d in deals_data["deals"] if north_and_big(d)]
    assert 0 < len(kept) < len(deals_data["deals"])
    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for deal in kept:
        counts[deal["stage"]["id"]] += 1
        sums[deal["stage"]["id"]][deal["currency"]] += deal["amount"]
    for role in (Role.ADMIN, Role.VIEWER):
        result = (await as_role[role](AGGREGATE, {"f": NORTH_AND_BIG})).ok()["dealsAggregate"]
        assert result["count"] == len(kept)
        groups = {g["stage"]["id"]: g for g in result["groups"]}
        assert {k: g["count"] for k, g in groups.items()} == dict(counts)
        assert {k: money(g["amount"]["sum"]) for k, g in groups.items()} == {
            k: dict(v) for k, v in sums.items()
        }
    # Inside and/or/not too: the deals that are not north.
    result = (
        await as_role[Role.ADMIN](
            AGGREGATE, {"f": {"not": {"customFields": [{"key": "region", "eq": "north"}]}}}
        )
    ).ok()["dealsAggregate"]
    assert result["count"] == len(
        [d for d in deals_data["deals"] if d["values"].get("region") != "north"]
    )
    # A field of another entity (or unknown) is the user's error, not the server's.
    result = await as_role[Role.ADMIN](
        AGGREGATE, {"f": {"customFields": [{"key": "nope", "eq": "x"}]}}
    )
    assert [e["extensions"]["code"] for e in result.errors] == ["VALIDATION"]


async def test_a_customers_aggregate_with_a_custom_field_filter(as_role: Clients) -> None:
    admin = as_role[Role.ADMIN]
    await define(admin, entity="CUSTOMER", key="score", label="Score", type="NUMBER")
    rng = random.Random(7)
    expected: dict[str, int] = defaultdict(int)
    for i in range(15):
        stage = rng.choice(LIFECYCLE)
        score = rng.randint(0, 9)
        ok(
            await admin(
                CREATE_CUSTOMER,
                {
                    "i": {
                        "name": f"Agg {i}",
                        "lifecycleStage": stage,
                        "customFields": {"score": score},
                    }
                },
            ),
            "createCustomer",
        )
        if score > 4:
            expected[stage] += 1
    result = (
        await admin(CUSTOMERS_AGGREGATE, {"f": {"customFields": [{"key": "score", "gt": 4}]}})
    ).ok()["customersAggregate"]
    assert result["count"] == sum(expected.values())
    assert {g["lifecycleStage"]: g["count"] for g in result["groups"]} == dict(expected)


async def test_a_companies_aggregate_with_a_custom_field_filter(as_role: Clients) -> None:
    admin = as_role[Role.ADMIN]
    await define(admin, entity="COMPANY", key="listed", label="Listed", type="BOOLEAN")
    rng = random.Random(11)
    kept = []
    for i in range(12):
        listed = rng.random() < 0.5
        employees = rng.randint(1, 500)
        ok(
            await admin(
                CREATE_COMPANY,
                {
                    "i": {
                        "name": f"Co {i}",
                        "employeeCount": employees,
                        "customFields": {"listed": listed},
                    }
                },
            ),
            "createCompany",
        )
        if listed:
            kept.append(employees)
    result = (
        await admin(
            """query($f: CompanyFilter) { companiesAggregate(filter: $f) {
              count employeeCount { sum min max } } }""",
            {"f": {"customFields": [{"key": "listed", "eq": True}]}},
        )
    ).ok()["companiesAggregate"]
    assert result["count"] == len(kept)
    numbers = result["employeeCount"]
    assert (Decimal(numbers["sum"]), Decimal(numbers["min"]), Decimal(numbers["max"])) == (
        sum(kept),
        min(kept),
        max(kept),
    )


async def test_a_sales_report_with_a_custom_field_filter(
    as_role: Clients, deals_data: dict[str, Any]
) -> None:
    today = datetime.now(UTC).date()
    period = {
        "p": deals_data["pipeline"]["id"],
        "from": (today - timedelta(days=1)).isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
    }
    kept = [d for d in deals_data["deals"] if north_and_big(d)]
    report = (await as_role[Role.MANAGER](SALES, {**period, "f": NORTH_AND_BIG})).ok()[
        "salesReport"
    ]
    stages = {s["stage"]["id"]: s for s in report["stages"]}
    assert list(stages) == [s["id"] for s in deals_data["stages"]]
    for stage in deals_data["stages"]:
        open_here = [d for d in kept if d["status"] == "OPEN" and d["stage"]["id"] == stage["id"]]
        got = stages[stage["id"]]
        assert got["openCount"] == len(open_here)
        value: dict[str, Decimal] = defaultdict(Decimal)
        for deal in open_here:
            value[deal["currency"]] += deal["amount"]
        assert money(got["openValue"]) == dict(value)
        # Created today, never moved: the furthest stage is the current one.
        assert got["reachedCount"] == len(
            [d for d in kept if d["stage"]["position"] >= stage["position"]]
        )
    assert report["winRate"] == {
        "won": len([d for d in kept if d["status"] == "WON"]),
        "lost": len([d for d in kept if d["status"] == "LOST"]),
    }


# ---------------------------------------------------------------------- segments


@pytest.fixture
async def customers_data(as_role: Clients) -> list[dict[str, Any]]:
    """30 customers with a random ``tier`` (single select, sometimes absent) and
    ``topics`` (multi select) and lifecycle stage."""
    admin = as_role[Role.ADMIN]
    await define(
        admin,
        entity="CUSTOMER",
        key="tier",
        label="Tier",
        type="SINGLE_SELECT",
        options=["gold", "silver"],
    )
    await define(
        admin,
        entity="CUSTOMER",
        key="topics",
        label="Topics",
        type="MULTI_SELECT",
        options=["billing", "api", "returns"],
    )
    rng = random.Random(2713)
    rows = []
    for i in range(30):
        values: dict[str, Any] = {}
        if rng.random() < 0.75:
            values["tier"] = rng.choice(["gold", "silver"])
        topics = [t for t in ("billing", "api", "returns") if rng.random() < 0.4]
        if topics:
            values["topics"] = topics
        stage = rng.choice(LIFECYCLE)
        made = ok(
            await admin(
                CREATE_CUSTOMER,
                {"i": {"name": f"Member {i:02d}", "lifecycleStage": stage, "customFields": values}},
            ),
            "createCustomer",
        )["customer"]
        rows.append({"id": made["id"], "stage": stage, "values": values})
    return rows


def gold(row: dict[str, Any]) -> bool:
    return row["values"].get("tier") == "gold"


def about_api(row: dict[str, Any]) -> bool:
    return "api" in row["values"].get("topics", [])


async def test_a_saved_segment_with_a_custom_field_filter(
    as_role: Clients, customers_data: list[dict[str, Any]]
) -> None:
    admin = as_role[Role.ADMIN]
    segment = ok(
        await admin(
            CREATE_SEGMENT,
            {
                "i": {
                    "name": "Gold customers",
                    "filter": {"customFields": [{"key": "tier", "eq": "gold"}]},
                    "shared": True,
                }
            },
        ),
        "createSegment",
    )["segment"]
    members = {r["id"] for r in customers_data if gold(r)}
    assert 0 < len(members) < len(customers_data)

    # Its members and totalCount, through the segment (batched) and through the list.
    through_node = (await admin(SEGMENT_MEMBERS, {"id": segment["id"]})).ok()["node"]["customers"]
    assert through_node["totalCount"] == len(members)
    assert {n["id"] for n in through_node["nodes"]} == members
    listed = (await as_role[Role.AGENT](SEGMENTS_MEMBERS)).ok()["segments"]["nodes"]
    mine = next(s for s in listed if s["id"] == segment["id"])
    assert mine["customers"]["totalCount"] == len(members)
    assert {n["id"] for n in mine["customers"]["nodes"]} == members

    # customers(segmentId:, filter: {customFields}) and segment.customers(filter:): both.
    both = {r["id"] for r in customers_data if gold(r) and about_api(r)}
    within = {"customFields": [{"key": "topics", "containsAny": ["api"]}]}
    for query, path in ((MEMBERS, ("customers",)), (SEGMENT_MEMBERS, ("node", "customers"))):
        found: Any = (await admin(query, {"id": segment["id"], "f": within})).ok()
        for step in path:
            found = found[step]
        assert found["totalCount"] == len(both)
        assert {n["id"] for n in found["nodes"]} == both


async def test_segments_members_cost_the_same_statements_for_2_or_6_segments(
    app: Any, as_role: Clients, customers_data: list[dict[str, Any]]
) -> None:
    admin = as_role[Role.ADMIN]
    engine = app.state.crm.sessionmaker.kw["bind"].sync_engine
    counts = {}
    made = 0
    for total in (2, 6):
        while made < total:
            tier = "gold" if made % 2 else "silver"
            ok(
                await admin(
                    CREATE_SEGMENT,
                    {
                        "i": {
                            "name": f"Tier {made}",
                            "filter": {"customFields": [{"key": "tier", "eq": tier}]},
                        }
                    },
                ),
                "createSegment",
            )
            made += 1
        counter = StatementCounter()
        event.listen(engine, "before_cursor_execute", counter)
        try:
            listed = (await admin(SEGMENTS_MEMBERS)).ok()["segments"]["nodes"]
        finally:
            event.remove(engine, "before_cursor_execute", counter)
        assert len(listed) == total
        for segment in listed:
            want = {
                r["id"] for r in customers_data if r["values"].get("tier") in segment_tier(segment)
            }
            assert {n["id"] for n in segment["customers"]["nodes"]} == want
            assert segment["customers"]["totalCount"] == len(want)
        counts[total] = counter.statements
    assert len(counts[2]) == len(counts[6]), counts


def segment_tier(segment: dict[str, Any]) -> set[str]:
    return {segment["filter"]["customFields"][0]["eq"]}


async def test_a_segment_whose_custom_field_filter_is_wrong_is_refused(
    as_role: Clients, customers_data: list[dict[str, Any]]
) -> None:
    admin = as_role[Role.ADMIN]
    for wrong, field in (
        ({"key": "nope", "eq": "x"}, "filter.customFields.nope"),
        ({"key": "tier", "eq": "platinum"}, "filter.customFields.tier"),
        ({"key": "tier", "gt": "gold"}, "filter.customFields.tier"),
    ):
        result = (
            await admin(CREATE_SEGMENT, {"i": {"name": "Bad", "filter": {"customFields": [wrong]}}})
        ).ok()["createSegment"]
        assert result["segment"] is None
        assert [(e["code"], e["field"]) for e in result["errors"]] == [("VALIDATION", field)]


async def test_a_custom_field_filter_without_its_definitions_is_a_programming_error(
    admin: Actor,
) -> None:
    """Building a list statement for a filter naming custom fields without loading the
    definitions is refused loudly (not as the user's mistake), so no call site forgets."""
    spec = customer_service.CUSTOMERS
    filter = {"and": [{querying.CUSTOM_FIELDS: [{"key": "tier", "eq": "gold"}]}]}
    with pytest.raises(querying.CustomTermsNotLoaded):
        spec.statement(admin, filter)
    spec.statement(admin, {"name": {"eq": "x"}})  # no custom field: no definitions needed


# ------------------------------------------------------------------------- search


async def hits(client: support.GraphQLClient, q: str) -> dict[str, list[dict[str, Any]]]:
    edges = (await client(SEARCH, {"q": q})).ok()["search"]["edges"]
    return {e["node"]["id"]: e["highlights"] for e in edges}


async def test_search_finds_searchable_custom_field_values_only(as_role: Clients) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    codename = await define(
        admin, entity="CUSTOMER", key="codename", label="Code name", type="TEXT", searchable=True
    )
    await define(admin, entity="CUSTOMER", key="password", label="Hint", type="TEXT")
    await define(
        admin,
        entity="DEAL",
        key="products",
        label="Products",
        type="MULTI_SELECT",
        options=["Zanzibar Router", "Quokka Switch"],
        searchable=True,
    )
    await define(
        admin, entity="COMPANY", key="registry", label="Registry", type="NUMBER", searchable=True
    )
    customer = ok(
        await admin(
            CREATE_CUSTOMER,
            {
                "i": {
                    "name": "Plain Person",
                    "customFields": {"codename": "Bluefalcon", "password": "Xylophonic"},
                }
            },
        ),
        "createCustomer",
    )["customer"]
    deal = ok(
        await admin(
            CREATE_DEAL,
            {
                "i": {
                    "title": "Plain deal",
                    "currency": "EUR",
                    "pipelineId": await a_pipeline(admin),
                    "customFields": {"products": ["Quokka Switch", "Zanzibar Router"]},
                }
            },
        ),
        "createDeal",
    )["deal"]
    company = ok(
        await admin(
            CREATE_COMPANY, {"i": {"name": "Plain Co", "customFields": {"registry": 90210417}}}
        ),
        "createCompany",
    )["company"]

    found = await hits(agent, "bluefal")
    assert list(found) == [customer["id"]]
    assert found[customer["id"]] == [
        {"field": "customFields.codename", "snippet": "<mark>Bluefal</mark>con"}
    ]
    assert await hits(agent, "xylophonic") == {}  # not searchable
    assert list(await hits(agent, "quokka")) == [deal["id"]]
    assert list(await hits(agent, "zanzibar route")) == [deal["id"]]
    assert list(await hits(agent, "90210417")) == [company["id"]]

    # A new value is found at commit, the old one no more.
    ok(
        await admin(
            UPDATE_CUSTOMER, {"i": {"id": customer["id"], "customFields": {"codename": "Redkite"}}}
        ),
        "updateCustomer",
    )
    assert list(await hits(agent, "redkite")) == [customer["id"]]
    assert await hits(agent, "bluefalcon") == {}

    # The flag off: the value leaves the documents; archived: likewise.
    changed = ok(
        await admin(CHANGE, {"i": {"id": codename["id"], "searchable": False}}),
        "updateCustomFieldDefinition",
    )["customFieldDefinition"]
    assert changed["searchable"] is False
    assert await hits(agent, "redkite") == {}
    ok(
        await admin(CHANGE, {"i": {"id": codename["id"], "searchable": True}}),
        "updateCustomFieldDefinition",
    )
    assert list(await hits(agent, "redkite")) == [customer["id"]]
    ok(
        await admin(ARCHIVE_CUSTOM_FIELD_DEFINITION, {"i": {"id": codename["id"]}}),
        "archiveCustomFieldDefinition",
    )
    assert await hits(agent, "redkite") == {}
    assert list(await hits(agent, "plain person")) == [customer["id"]]  # the rest stays


async def test_making_a_field_searchable_indexes_the_values_already_stored(
    as_role: Clients,
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    hint = await define(admin, entity="CUSTOMER", key="hint", label="Hint", type="TEXT")
    made = []
    for name, value in (("First Holder", "Wombatish"), ("Second Holder", "Wombatery")):
        made.append(
            ok(
                await admin(
                    CREATE_CUSTOMER, {"i": {"name": name, "customFields": {"hint": value}}}
                ),
                "createCustomer",
            )["customer"]["id"]
        )
    assert await hits(agent, "wombat") == {}
    ok(
        await admin(CHANGE, {"i": {"id": hint["id"], "searchable": True}}),
        "updateCustomFieldDefinition",
    )
    assert set(await hits(agent, "wombat")) == set(made)
    assert list(await hits(agent, "wombatery")) == [made[1]]
    # A definition created searchable over values stored while the key was free-form
    # (another entity: deals had no definitions yet).
    deal = ok(
        await admin(
            CREATE_DEAL,
            {
                "i": {
                    "title": "Old deal",
                    "currency": "EUR",
                    "pipelineId": await a_pipeline(admin),
                    "customFields": {"ref": "Okapi-77"},
                }
            },
        ),
        "createDeal",
    )["deal"]
    assert await hits(agent, "okapi") == {}
    await define(admin, entity="DEAL", key="ref", label="Ref", type="TEXT", searchable=True)
    assert list(await hits(agent, "okapi 77")) == [deal["id"]]
