"""Typed custom fields through GraphQL: definitions (roles, tenants, changes), validation of
every value written, filters and sorts checked against a Python computation over the
created rows, keyset cursors across pages, backward compatibility of free-form values."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id
from crm_graphql.models import Customer, CustomFieldEntity, Role, User, Workspace
from crm_graphql.services import auth, custom_fields
from crm_graphql.services.actor import Actor
from tests import support
from tests.api.conftest import StatementCounter
from tests.documents import ARCHIVE_CUSTOM_FIELD_DEFINITION, UPDATE_CUSTOMER

DEFINE = """mutation($i: CreateCustomFieldDefinitionInput!) {
  createCustomFieldDefinition(input: $i) {
    customFieldDefinition { id key label type options required searchable exportable version }
    errors { code field message }
  }
}"""
CHANGE = """mutation($i: UpdateCustomFieldDefinitionInput!) {
  updateCustomFieldDefinition(input: $i) {
    customFieldDefinition { id type options label version }
    errors { code field message }
  }
}"""
DEFINITIONS = """query($e: CustomFieldEntity!, $a: Boolean) {
  customFieldDefinitions(entity: $e, includeArchived: $a) { id key type options archivedAt }
}"""
CREATE_CUSTOMER = """mutation($i: CreateCustomerInput!) {
  createCustomer(input: $i) { customer { id customFields } errors { code field message } }
}"""
CREATE_COMPANY = """mutation($i: CreateCompanyInput!) {
  createCompany(input: $i) { company { id customFields } errors { code field message } }
}"""
CREATE_PIPELINE = """mutation($i: CreatePipelineInput!) {
  createPipeline(input: $i) { pipeline { id } errors { code field message } }
}"""
CREATE_DEAL = """mutation($i: CreateDealInput!) {
  createDeal(input: $i) { deal { id customFields } errors { code field message } }
}"""
CUSTOMERS = """query($f: CustomerFilter, $o: [CustomerOrder!], $first: Int, $after: String,
  $last: Int, $before: String) {
  customers(filter: $f, orderBy: $o, first: $first, after: $after, last: $last, before: $before) {
    totalCount
    edges { cursor node { id name customFields } }
    pageInfo { hasNextPage hasPreviousPage endCursor startCursor }
  }
}"""
DEALS = """query($f: DealFilter, $o: [DealOrder!]) {
  deals(filter: $f, orderBy: $o, first: 100) { edges { node { title customFields } } }
}"""
COMPANY_CUSTOMERS = """query($f: CustomerFilter) {
  companies(first: 10) { edges { node { name customers(first: 10, filter: $f) {
    totalCount edges { node { name } } } } } }
}"""

FIELDS: list[dict[str, Any]] = [
    {"key": "score", "label": "Score", "type": "NUMBER"},
    {"key": "renewal", "label": "Renewal", "type": "DATE"},
    {"key": "nickname", "label": "Nickname", "type": "TEXT"},
    {"key": "vip", "label": "VIP", "type": "BOOLEAN"},
    {"key": "tier", "label": "Tier", "type": "SINGLE_SELECT", "options": ["gold", "silver", "bronze"]},
    {
        "key": "topics",
        "label": "Topics",
        "type": "MULTI_SELECT",
        "options": ["billing", "shipping", "returns", "api"],
    },
]


async def define(client: support.GraphQLClient, entity: str = "CUSTOMER", **spec: Any) -> dict[str, Any]:
    payload = (await client(DEFINE, {"i": {"entity": entity, **spec}})).ok()
    result = payload["createCustomFieldDefinition"]
    assert result["errors"] == [], result
    return result["customFieldDefinition"]  # type: ignore[no-any-return]


async def define_all(client: support.GraphQLClient) -> None:
    for spec in FIELDS:
        await define(client, **spec)


async def create_customer(
    client: support.GraphQLClient, name: str, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    result = (await client(CREATE_CUSTOMER, {"i": {"name": name, "customFields": values}})).ok()
    payload = result["createCustomer"]
    assert payload["errors"] == [], payload
    return payload["customer"]  # type: ignore[no-any-return]


def error_of(result: support.GraphQLResponse, name: str) -> dict[str, Any]:
    errors = result.ok()[name]["errors"]
    assert len(errors) == 1, errors
    return errors[0]  # type: ignore[no-any-return]


def query_error(result: support.GraphQLResponse) -> dict[str, Any]:
    assert result.status == 200, result.body
    assert len(result.errors) == 1, result.body
    return result.errors[0]["extensions"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- definitions


async def test_only_admins_and_managers_define_fields_and_everyone_reads_them(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    made = await define(as_role[Role.MANAGER], key="tier", label="Tier", type="SINGLE_SELECT", options=["a"])
    assert made["type"] == "SINGLE_SELECT" and made["options"] == ["a"] and made["exportable"]
    for role in (Role.AGENT, Role.VIEWER):
        result = await as_role[role](DEFINE, {"i": {"entity": "CUSTOMER", "key": "x", "label": "X", "type": "TEXT"}})
        assert error_of(result, "createCustomFieldDefinition")["code"] == "FORBIDDEN"
    listed = (await as_role[Role.VIEWER](DEFINITIONS, {"e": "CUSTOMER"})).ok()
    assert [d["key"] for d in listed["customFieldDefinitions"]] == ["tier"]
    assert (await as_role[Role.VIEWER](DEFINITIONS, {"e": "DEAL"})).ok() == {
        "customFieldDefinitions": []
    }


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"key": "Tier", "label": "T", "type": "TEXT"}, "key"),
        ({"key": "has space", "label": "T", "type": "TEXT"}, "key"),
        ({"key": "x" * 65, "label": "T", "type": "TEXT"}, "key"),
        ({"key": "tier", "label": " ", "type": "TEXT"}, "label"),
        ({"key": "tier", "label": "T", "type": "SINGLE_SELECT"}, "options"),
        ({"key": "tier", "label": "T", "type": "MULTI_SELECT", "options": []}, "options"),
        ({"key": "tier", "label": "T", "type": "TEXT", "options": ["a"]}, "options"),
        ({"key": "tier", "label": "T", "type": "SINGLE_SELECT", "options": ["a", "a"]}, "options.1"),
        ({"key": "tier", "label": "T", "type": "SINGLE_SELECT", "options": ["a", " "]}, "options.1"),
    ],
)
async def test_a_definition_is_validated(
    as_role: dict[Role, support.GraphQLClient], spec: dict[str, Any], field: str
) -> None:
    result = await as_role[Role.ADMIN](DEFINE, {"i": {"entity": "CUSTOMER", **spec}})
    error = error_of(result, "createCustomFieldDefinition")
    assert (error["code"], error["field"]) == ("VALIDATION", field), error


async def test_a_key_is_defined_once_per_entity(as_role: dict[Role, support.GraphQLClient]) -> None:
    admin = as_role[Role.ADMIN]
    await define(admin, key="region", label="Region", type="TEXT")
    await define(admin, "DEAL", key="region", label="Region", type="TEXT")
    again = await admin(DEFINE, {"i": {"entity": "CUSTOMER", "key": "region", "label": "R", "type": "NUMBER"}})
    assert error_of(again, "createCustomFieldDefinition")["field"] == "key"


async def test_definitions_are_isolated_between_workspaces(
    as_role: dict[Role, support.GraphQLClient],
    client: support.GraphQLClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ours = await define(as_role[Role.ADMIN], key="tier", label="Tier", type="SINGLE_SELECT", options=["gold"])
    other = await other_workspace_admin(client, sessionmaker)
    assert (await other(DEFINITIONS, {"e": "CUSTOMER"})).ok() == {"customFieldDefinitions": []}
    stolen = await other(CHANGE, {"i": {"id": ours["id"], "label": "Mine"}})
    assert error_of(stolen, "updateCustomFieldDefinition")["code"] == "NOT_FOUND"
    archived = await other(ARCHIVE_CUSTOM_FIELD_DEFINITION, {"i": {"id": ours["id"]}})
    assert error_of(archived, "archiveCustomFieldDefinition")["code"] == "NOT_FOUND"
    node = await other("query($id: ID!) { node(id: $id) { id } }", {"id": ours["id"]})
    assert node.ok() == {"node": None}
    # The other workspace has no `tier`: free-form there, and not a filter.
    await create_customer(other, "Free", {"tier": "anything"})
    refused = await other(CUSTOMERS, {"f": {"customFields": [{"key": "tier", "eq": "gold"}]}})
    assert query_error(refused) == {"code": "VALIDATION", "field": "customFields.tier"}


async def other_workspace_admin(
    client: support.GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> support.GraphQLClient:
    email = f"other-{uuid.uuid4().hex[:10]}@example.com"
    async with sessionmaker() as session, session.begin():
        workspace = await auth.create_workspace(session, name=f"Other {uuid.uuid4().hex[:8]}")
        await auth.create_user(
            session,
            workspace=workspace,
            email=email,
            password=support.PASSWORD,
            role=Role.ADMIN,
            name="Other Admin",
        )
    return await client.logged_in(email, support.PASSWORD)


# --------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("key", "given", "stored"),
    [
        ("score", 42, 42),
        ("score", -1.5, -1.5),
        ("renewal", "2026-03-01", "2026-03-01"),
        ("nickname", "  Ada  ", "Ada"),
        ("vip", False, False),
        ("tier", "gold", "gold"),
        ("topics", ["api", "billing", "api"], ["api", "billing"]),
        ("topics", [], None),
        ("score", None, None),
    ],
)
async def test_valid_values_are_stored_in_their_normal_form(
    as_role: dict[Role, support.GraphQLClient], key: str, given: Any, stored: Any
) -> None:
    await define_all(as_role[Role.ADMIN])
    customer = await create_customer(as_role[Role.AGENT], "Ada", {key: given})
    assert customer["customFields"] == ({} if stored is None else {key: stored})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("score", "42"),
        ("score", True),
        ("renewal", "2026-02-30"),
        ("renewal", "01/03/2026"),
        ("renewal", "2026-03-01T10:00:00Z"),
        ("renewal", 20260301),
        ("nickname", 7),
        ("nickname", "x" * 5001),
        ("vip", "yes"),
        ("tier", "platinum"),
        ("tier", ["gold"]),
        ("topics", "api"),
        ("topics", ["api", "legal"]),
        ("undefinedKey", "x"),
    ],
)
async def test_invalid_values_are_refused_naming_the_field(
    as_role: dict[Role, support.GraphQLClient], key: str, value: Any
) -> None:
    await define_all(as_role[Role.ADMIN])
    result = await as_role[Role.AGENT](
        CREATE_CUSTOMER, {"i": {"name": "Ada", "customFields": {key: value}}}
    )
    error = error_of(result, "createCustomer")
    assert (error["code"], error["field"]) == ("VALIDATION", f"customFields.{key}"), error
    assert result.ok()["createCustomer"]["customer"] is None


async def test_a_required_field_is_needed_on_create_and_on_every_write(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    await define(admin, key="source", label="Source", type="TEXT", required=True)
    missing = await agent(CREATE_CUSTOMER, {"i": {"name": "No source"}})
    assert error_of(missing, "createCustomer")["field"] == "customFields.source"
    customer = await create_customer(agent, "Sourced", {"source": "fair"})
    cleared = await agent(UPDATE_CUSTOMER, {"i": {"id": customer["id"], "customFields": {"source": None}}})
    assert error_of(cleared, "updateCustomer")["field"] == "customFields.source"
    renamed = await agent(UPDATE_CUSTOMER, {"i": {"id": customer["id"], "name": "Renamed"}})
    assert renamed.ok()["updateCustomer"]["errors"] == []  # custom fields left alone


async def test_companies_and_deals_validate_their_own_fields(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    await define(admin, "COMPANY", key="employees", label="Employees", type="NUMBER")
    await define(admin, "DEAL", key="channel", label="Channel", type="SINGLE_SELECT", options=["web", "partner"])
    bad = await agent(CREATE_COMPANY, {"i": {"name": "Acme", "customFields": {"employees": "many"}}})
    assert error_of(bad, "createCompany")["field"] == "customFields.employees"
    good = (await agent(CREATE_COMPANY, {"i": {"name": "Acme", "customFields": {"employees": 12}}})).ok()
    assert good["createCompany"]["company"]["customFields"] == {"employees": 12}
    pipeline = (
        await admin(CREATE_PIPELINE, {"i": {"name": "Sales", "stages": [{"name": "Lead"}]}})
    ).ok()["createPipeline"]["pipeline"]["id"]
    deal = {"title": "Big", "pipelineId": pipeline, "currency": "EUR"}
    refused = await agent(CREATE_DEAL, {"i": {**deal, "customFields": {"channel": "fax"}}})
    assert error_of(refused, "createDeal")["field"] == "customFields.channel"
    made = (await agent(CREATE_DEAL, {"i": {**deal, "customFields": {"channel": "web"}}})).ok()
    assert made["createDeal"]["deal"]["customFields"] == {"channel": "web"}
    # The customer's fields are another entity's: not a deal field.
    wrong = await agent(CREATE_DEAL, {"i": {**deal, "customFields": {"employees": 3}}})
    assert error_of(wrong, "createDeal")["field"] == "customFields.employees"
    listed = (
        await agent(DEALS, {"f": {"customFields": [{"key": "channel", "eq": "web"}]}})
    ).ok()
    assert [e["node"]["customFields"] for e in listed["deals"]["edges"]] == [{"channel": "web"}]


async def test_free_form_values_keep_working_until_the_first_definition_then_stay_read_only(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    legacy = await create_customer(agent, "Legacy", {"color": "blue", "nested": {"a": [1, 2]}})
    assert legacy["customFields"] == {"color": "blue", "nested": {"a": [1, 2]}}
    await define(admin, key="tier", label="Tier", type="SINGLE_SELECT", options=["gold"])
    # Kept as they are, next to a typed value: allowed.
    kept = await agent(
        UPDATE_CUSTOMER,
        {"i": {"id": legacy["id"], "customFields": {**legacy["customFields"], "tier": "gold"}}},
    )
    assert kept.ok()["updateCustomer"]["customer"]["customFields"] == {
        "color": "blue",
        "nested": {"a": [1, 2]},
        "tier": "gold",
    }
    changed = await agent(
        UPDATE_CUSTOMER, {"i": {"id": legacy["id"], "customFields": {"color": "red"}}}
    )
    assert error_of(changed, "updateCustomer")["field"] == "customFields.color"
    added = await agent(CREATE_CUSTOMER, {"i": {"name": "New", "customFields": {"color": "red"}}})
    assert error_of(added, "createCustomer")["field"] == "customFields.color"
    dropped = await agent(UPDATE_CUSTOMER, {"i": {"id": legacy["id"], "customFields": {"tier": "gold"}}})
    assert dropped.ok()["updateCustomer"]["customer"]["customFields"] == {"tier": "gold"}


async def test_a_field_over_existing_invalid_values_cannot_be_defined(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    await create_customer(as_role[Role.AGENT], "Legacy", {"score": "high"})
    refused = await admin(DEFINE, {"i": {"entity": "CUSTOMER", "key": "score", "label": "S", "type": "NUMBER"}})
    assert error_of(refused, "createCustomFieldDefinition")["field"] == "type"
    made = await define(admin, key="score", label="Score", type="TEXT")
    assert made["type"] == "TEXT"


async def test_the_type_changes_only_while_no_value_exists_and_renamed_options_follow(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    tier = await define(admin, key="tier", label="Tier", type="SINGLE_SELECT", options=["gold", "silver"])
    topics = await define(admin, key="topics", label="Topics", type="MULTI_SELECT", options=["a", "b"])
    changed = (await admin(CHANGE, {"i": {"id": tier["id"], "type": "TEXT"}})).ok()
    assert changed["updateCustomFieldDefinition"]["customFieldDefinition"]["options"] == []
    back = await admin(CHANGE, {"i": {"id": tier["id"], "type": "SINGLE_SELECT", "addOptions": ["gold", "silver"]}})
    assert back.ok()["updateCustomFieldDefinition"]["errors"] == []
    customer = await create_customer(agent, "Ada", {"tier": "gold", "topics": ["a", "b"]})
    other = await create_customer(agent, "Bob", {"tier": "silver"})
    refused = await admin(CHANGE, {"i": {"id": tier["id"], "type": "NUMBER"}})
    error = error_of(refused, "updateCustomFieldDefinition")
    assert (error["code"], error["field"]) == ("VALIDATION", "type")
    renamed = await admin(
        CHANGE,
        {"i": {"id": tier["id"], "renameOptions": [{"from": "gold", "to": "Gold"}], "addOptions": ["bronze"]}},
    )
    assert renamed.ok()["updateCustomFieldDefinition"]["customFieldDefinition"]["options"] == [
        "Gold",
        "silver",
        "bronze",
    ]
    await admin(CHANGE, {"i": {"id": topics["id"], "renameOptions": [{"from": "b", "to": "c"}]}})
    page = (await agent(CUSTOMERS, {"o": [{"field": "NAME"}]})).ok()["customers"]["edges"]
    assert [e["node"]["customFields"] for e in page] == [
        {"tier": "Gold", "topics": ["a", "c"]},
        {"tier": "silver"},
    ]
    clash = await admin(CHANGE, {"i": {"id": tier["id"], "renameOptions": [{"from": "Gold", "to": "silver"}]}})
    assert error_of(clash, "updateCustomFieldDefinition")["field"] == "renameOptions.0"
    assert customer["id"] != other["id"]


async def test_an_archived_field_no_longer_validates_or_filters_and_keeps_its_values(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    tier = await define(admin, key="tier", label="Tier", type="SINGLE_SELECT", options=["gold"])
    customer = await create_customer(agent, "Ada", {"tier": "gold"})
    (await admin(ARCHIVE_CUSTOM_FIELD_DEFINITION, {"i": {"id": tier["id"]}})).ok()
    listed = (await admin(DEFINITIONS, {"e": "CUSTOMER", "a": True})).ok()["customFieldDefinitions"]
    assert listed[0]["archivedAt"] is not None
    assert (await admin(DEFINITIONS, {"e": "CUSTOMER"})).ok() == {"customFieldDefinitions": []}
    refused = await agent(CUSTOMERS, {"f": {"customFields": [{"key": "tier", "eq": "gold"}]}})
    assert query_error(refused)["field"] == "customFields.tier"
    kept = await agent(UPDATE_CUSTOMER, {"i": {"id": customer["id"], "customFields": {"tier": "gold"}}})
    assert kept.ok()["updateCustomer"]["errors"] == []
    changed = await agent(UPDATE_CUSTOMER, {"i": {"id": customer["id"], "customFields": {"tier": "x"}}})
    assert error_of(changed, "updateCustomer")["field"] == "customFields.tier"


# ---------------------------------------------------------- filters and sorts


def generated_values(rng: random.Random) -> dict[str, Any]:
    """Random values of FIELDS, each absent now and then."""
    values: dict[str, Any] = {}
    if rng.random() < 0.8:
        values["score"] = rng.choice([rng.randint(-5, 30), rng.randint(0, 20) / 4])
    if rng.random() < 0.8:
        values["renewal"] = date(2025, rng.randint(1, 12), rng.randint(1, 28)).isoformat()
    if rng.random() < 0.8:
        values["nickname"] = rng.choice(["Ace", "ace of spades", "Bolt", "bolt_100%", "Zed", "ém"])
    if rng.random() < 0.7:
        values["vip"] = rng.random() < 0.5
    if rng.random() < 0.8:
        values["tier"] = rng.choice(["gold", "silver", "bronze"])
    if rng.random() < 0.8:
        chosen = rng.sample(["billing", "shipping", "returns", "api"], rng.randint(1, 3))
        values["topics"] = chosen
    return values


Row = dict[str, Any]
FILTERS: list[tuple[dict[str, Any], Callable[[Row], bool]]] = [
    ({"key": "score", "eq": 5}, lambda v: v.get("score") == 5),
    ({"key": "score", "gt": 3.5}, lambda v: "score" in v and v["score"] > 3.5),
    ({"key": "score", "gte": 0, "lt": 10}, lambda v: "score" in v and 0 <= v["score"] < 10),
    ({"key": "score", "lte": -1}, lambda v: "score" in v and v["score"] <= -1),
    ({"key": "score", "isNull": True}, lambda v: "score" not in v),
    ({"key": "renewal", "gte": "2025-06-01"}, lambda v: v.get("renewal", "") >= "2025-06-01"),
    ({"key": "renewal", "lt": "2025-03-15", "isNull": False}, lambda v: "renewal" in v and v["renewal"] < "2025-03-15"),
    ({"key": "renewal", "eq": "2025-01-01"}, lambda v: v.get("renewal") == "2025-01-01"),
    ({"key": "nickname", "eq": "Ace"}, lambda v: v.get("nickname") == "Ace"),
    ({"key": "nickname", "in": ["Bolt", "Zed"]}, lambda v: v.get("nickname") in ("Bolt", "Zed")),
    ({"key": "nickname", "contains": "ACE"}, lambda v: "ace" in v.get("nickname", "").lower()),
    ({"key": "nickname", "contains": "_100%"}, lambda v: "_100%" in v.get("nickname", "")),
    ({"key": "nickname", "startsWith": "b"}, lambda v: v.get("nickname", "").lower().startswith("b")),
    ({"key": "nickname", "isNull": True}, lambda v: "nickname" not in v),
    ({"key": "vip", "eq": True}, lambda v: v.get("vip") is True),
    ({"key": "vip", "eq": False}, lambda v: v.get("vip") is False),
    ({"key": "vip", "isNull": True}, lambda v: "vip" not in v),
    ({"key": "tier", "eq": "gold"}, lambda v: v.get("tier") == "gold"),
    ({"key": "tier", "in": ["silver", "bronze"]}, lambda v: v.get("tier") in ("silver", "bronze")),
    ({"key": "tier", "in": []}, lambda v: False),
    ({"key": "topics", "containsAll": ["billing", "api"]}, lambda v: {"billing", "api"} <= set(v.get("topics", []))),
    ({"key": "topics", "containsAny": ["returns", "api"]}, lambda v: bool({"returns", "api"} & set(v.get("topics", [])))),
    ({"key": "topics", "eq": ["shipping", "billing"]}, lambda v: set(v.get("topics", [])) == {"billing", "shipping"} and len(v["topics"]) == 2),
    ({"key": "topics", "isNull": False}, lambda v: "topics" in v),
]


@pytest.fixture
async def populated(as_role: dict[Role, support.GraphQLClient]) -> dict[str, Row]:
    """40 customers with random values of every type: name -> values."""
    await define_all(as_role[Role.ADMIN])
    rng = random.Random(13)
    rows: dict[str, Row] = {}
    for index in range(40):
        values = generated_values(rng)
        name = f"C{index:02d}"
        await create_customer(as_role[Role.AGENT], name, values)
        rows[name] = values
    return rows


async def all_pages(
    client: support.GraphQLClient, variables: dict[str, Any], size: int = 100
) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    for _ in range(MAX_PAGES):  # a cursor that does not move on fails, not loops
        page = (await client(CUSTOMERS, {**variables, "first": size, "after": after})).ok()["customers"]
        nodes.extend(e["node"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]
    raise AssertionError(f"more than {MAX_PAGES} pages: the cursors do not advance")


MAX_PAGES = 20


@pytest.mark.parametrize("case", range(len(FILTERS)))
async def test_each_operator_matches_a_python_computation(
    as_role: dict[Role, support.GraphQLClient], populated: dict[str, Row], case: int
) -> None:
    term, predicate = FILTERS[case]
    expected = sorted(name for name, values in populated.items() if predicate(values))
    nodes = await all_pages(as_role[Role.VIEWER], {"f": {"customFields": [term]}})
    assert sorted(n["name"] for n in nodes) == expected, term
    count = (await as_role[Role.VIEWER](CUSTOMERS, {"f": {"customFields": [term]}, "first": 0})).ok()
    assert count["customers"]["totalCount"] == len(expected)


async def test_terms_combine_with_and_or_not_and_built_in_fields(
    as_role: dict[Role, support.GraphQLClient], populated: dict[str, Row]
) -> None:
    gold = {"customFields": [{"key": "tier", "eq": "gold"}]}
    high = {"customFields": [{"key": "score", "gte": 10}]}
    spec = {"or": [gold, high], "not": {"customFields": [{"key": "vip", "eq": True}]}, "name": {"startsWith": "C1"}}
    nodes = await all_pages(as_role[Role.AGENT], {"f": spec})
    expected = sorted(
        n
        for n, v in populated.items()
        if (v.get("tier") == "gold" or ("score" in v and v["score"] >= 10))
        and v.get("vip") is not True
        and n.startswith("C1")
    )
    assert sorted(n["name"] for n in nodes) == expected


def sort_value(key: str, values: Row) -> Any:
    value = values.get(key)
    if value is None:
        return None
    if key == "score":
        return Decimal(str(value))
    if key == "renewal":
        return date.fromisoformat(value)
    return value


@pytest.mark.parametrize(
    ("key", "descending"),
    [("score", False), ("score", True), ("renewal", False), ("vip", True), ("tier", False)],
)
async def test_sorting_by_a_field_pages_with_cursors_in_typed_order(
    as_role: dict[Role, support.GraphQLClient], populated: dict[str, Row], key: str, descending: bool
) -> None:
    order = [{"customField": key, "direction": "DESC" if descending else "ASC"}]
    nodes = await all_pages(as_role[Role.AGENT], {"o": order}, size=7)
    assert len(nodes) == len(populated)
    ids = {n["name"]: from_global_id(n["id"])[1] for n in nodes}
    present = [n for n in populated if sort_value(key, populated[n]) is not None]
    absent = [n for n in populated if sort_value(key, populated[n]) is None]
    # Values in their type's order, the id breaking ties in the same direction; the rows
    # without a value last in both directions (then by id, in the same direction).
    present.sort(key=lambda n: (sort_value(key, populated[n]), ids[n]), reverse=descending)
    absent.sort(key=lambda n: ids[n], reverse=descending)
    assert [n["name"] for n in nodes] == present + absent
    if key == "score":  # numbers as numbers: 10 after 9.5, not before it as text would
        scores = [populated[n]["score"] for n in present]
        assert scores == sorted(scores, reverse=descending)


async def test_backward_paging_by_a_field_gives_the_same_rows(
    as_role: dict[Role, support.GraphQLClient], populated: dict[str, Row]
) -> None:
    order = [{"customField": "renewal"}, {"field": "NAME", "direction": "DESC"}]
    agent = as_role[Role.AGENT]
    forward = await all_pages(agent, {"o": order}, size=6)
    backward: list[dict[str, Any]] = []
    before = None
    for _ in range(MAX_PAGES):
        page = (await agent(CUSTOMERS, {"o": order, "last": 6, "before": before})).ok()["customers"]
        backward[:0] = [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert [n["name"] for n in backward] == [n["name"] for n in forward]


async def test_a_cursor_of_another_order_is_refused(
    as_role: dict[Role, support.GraphQLClient], populated: dict[str, Row]
) -> None:
    agent = as_role[Role.AGENT]
    page = (await agent(CUSTOMERS, {"o": [{"customField": "score"}], "first": 2})).ok()
    cursor = page["customers"]["pageInfo"]["endCursor"]
    other = await agent(CUSTOMERS, {"o": [{"customField": "tier"}], "first": 2, "after": cursor})
    assert query_error(other) == {"code": "VALIDATION", "field": "after"}


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"f": {"customFields": [{"key": "unknown", "eq": 1}]}}, "customFields.unknown"),
        ({"f": {"customFields": [{"key": "vip", "gt": 1}]}}, "customFields.vip"),
        ({"f": {"customFields": [{"key": "score", "contains": "1"}]}}, "customFields.score"),
        ({"f": {"customFields": [{"key": "tier", "containsAll": ["gold"]}]}}, "customFields.tier"),
        ({"f": {"customFields": [{"key": "score", "gt": "ten"}]}}, "customFields.score"),
        ({"f": {"customFields": [{"key": "renewal", "gt": "soon"}]}}, "customFields.renewal"),
        ({"f": {"customFields": [{"key": "tier", "eq": "platinum"}]}}, "customFields.tier"),
        ({"f": {"customFields": [{"key": "vip", "eq": "yes"}]}}, "customFields.vip"),
        ({"f": {"customFields": [{"key": "renewal", "lt": "0001-01-01"}]}}, "customFields.renewal"),
        ({"f": {"customFields": [{"key": "renewal", "lt": "2025-W01-1"}]}}, "customFields.renewal"),
        ({"f": {"or": [{"customFields": [{"key": "nope", "isNull": True}]}]}}, "customFields.nope"),
        ({"o": [{"customField": "topics"}]}, "orderBy"),
        ({"o": [{"customField": "unknown"}]}, "orderBy"),
        ({"o": [{"direction": "ASC"}]}, "orderBy"),
        ({"o": [{"field": "NAME", "customField": "score"}]}, "orderBy"),
    ],
)
async def test_filters_and_sorts_the_type_lacks_are_validation_errors(
    as_role: dict[Role, support.GraphQLClient], variables: dict[str, Any], field: str
) -> None:
    await define_all(as_role[Role.ADMIN])
    result = await as_role[Role.AGENT](CUSTOMERS, {**variables, "first": 5})
    assert query_error(result) == {"code": "VALIDATION", "field": field}


async def test_nested_lists_filter_by_custom_fields(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    await define(admin, key="vip", label="VIP", type="BOOLEAN")
    company = (await agent(CREATE_COMPANY, {"i": {"name": "Acme"}})).ok()["createCompany"]["company"]
    for name, vip in (("Ann", True), ("Ben", False), ("Cy", True)):
        result = await agent(
            CREATE_CUSTOMER,
            {"i": {"name": name, "companyId": company["id"], "customFields": {"vip": vip}}},
        )
        assert result.ok()["createCustomer"]["errors"] == []
    data = (await agent(COMPANY_CUSTOMERS, {"f": {"customFields": [{"key": "vip", "eq": True}]}})).ok()
    customers = data["companies"]["edges"][0]["node"]["customers"]
    assert customers["totalCount"] == 2
    assert sorted(e["node"]["name"] for e in customers["edges"]) == ["Ann", "Cy"]


# -------------------------------------------------- sensitivity, search, export


async def test_a_sensitive_field_is_validated_but_neither_filtered_nor_searchable(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    birth = await define(admin, key="birthDate", label="Birth date", type="DATE", searchable=True)
    refused = await admin(
        "mutation { setSensitiveCustomFields(input: {keys: [\"birthDate\"]}) { errors { code field } } }"
    )
    assert refused.ok()["setSensitiveCustomFields"]["errors"] == [{"code": "VALIDATION", "field": "keys"}]
    (await admin(CHANGE, {"i": {"id": birth["id"], "searchable": False}})).ok()
    marked = await admin(
        "mutation { setSensitiveCustomFields(input: {keys: [\"birthDate\"]}) { errors { code } } }"
    )
    assert marked.ok()["setSensitiveCustomFields"]["errors"] == []
    bad = await agent(CREATE_CUSTOMER, {"i": {"name": "Ada", "customFields": {"birthDate": "soon"}}})
    assert error_of(bad, "createCustomer")["field"] == "customFields.birthDate"
    ada = await create_customer(agent, "Ada", {"birthDate": "1815-12-10"})
    assert ada["customFields"] == {"birthDate": "1815-12-10"}
    filtered = await agent(CUSTOMERS, {"f": {"customFields": [{"key": "birthDate", "isNull": False}]}})
    assert query_error(filtered) == {"code": "VALIDATION", "field": "customFields.birthDate"}
    again = await admin(CHANGE, {"i": {"id": birth["id"], "searchable": True}})
    assert error_of(again, "updateCustomFieldDefinition")["field"] == "searchable"


async def test_searchable_keys_and_text_for_search_documents(
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, User],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = as_role[Role.ADMIN]
    await define(admin, key="nickname", label="Nickname", type="TEXT", searchable=True)
    await define(
        admin, key="topics", label="Topics", type="MULTI_SELECT", options=["api", "b"], searchable=True
    )
    await define(admin, key="score", label="Score", type="NUMBER")
    await define(admin, "DEAL", key="code", label="Code", type="TEXT", searchable=True)
    actor = Actor(workspace_id=users[Role.AGENT].workspace_id, role=Role.AGENT)
    async with sessionmaker() as session:
        keys = await custom_fields.searchable_keys(actor, session, CustomFieldEntity.CUSTOMER)
        deal_keys = await custom_fields.searchable_keys(actor, session, CustomFieldEntity.DEAL)
    assert (keys, deal_keys) == (["nickname", "topics"], ["code"])
    values = {"nickname": "Ace", "topics": ["api", "b"], "score": 3}
    assert custom_fields.searchable_text(keys, values) == "Ace api b"


async def test_the_customer_export_describes_the_custom_fields(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    await define(admin, key="tier", label="Tier", type="SINGLE_SELECT", options=["gold"])
    await define(admin, key="notes", label="Notes", type="TEXT", exportable=False)
    customer = await create_customer(admin, "Ada", {"tier": "gold", "notes": "calm"})
    result = await admin(
        "mutation($i: CustomerDataInput!) { exportCustomerData(input: $i) { data errors { code } } }",
        {"i": {"customerId": customer["id"]}},
    )
    document = result.ok()["exportCustomerData"]["data"]
    described = document["custom_field_definitions"]["customer"]
    assert [(d["key"], d["label"], d["type"], d["exportable"]) for d in described] == [
        ("tier", "Tier", "single_select", True),
        ("notes", "Notes", "text", False),
    ]
    assert document["customer"]["custom_fields"] == {"tier": "gold", "notes": "calm"}


# ------------------------------------------------------------ cost of a read


async def test_a_filtered_and_sorted_page_costs_the_same_statements_at_any_size(
    app: Any, as_role: dict[Role, support.GraphQLClient], populated: dict[str, Row]
) -> None:
    engine = app.state.crm.sessionmaker.kw["bind"].sync_engine
    counter = StatementCounter()
    statements = counter.statements

    variables = {
        "f": {"customFields": [{"key": "score", "isNull": False}]},
        "o": [{"customField": "score", "direction": "DESC"}],
    }
    counts = {}
    event.listen(engine, "before_cursor_execute", counter)
    try:
        for size in (2, 30):
            statements.clear()
            page = (await as_role[Role.AGENT](CUSTOMERS, {**variables, "first": size})).ok()
            assert len(page["customers"]["edges"]) == min(size, sum("score" in v for v in populated.values()))
            counts[size] = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", counter)
    assert counts[2] == counts[30], counts


async def test_stored_values_match_the_database_rows(
    as_role: dict[Role, support.GraphQLClient],
    populated: dict[str, Row],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Customer.name, Customer.custom_fields).where(Customer.workspace_id == workspace.id)
        )
        stored = {name: values for name, values in rows.all()}
    assert stored == {name: {k: v for k, v in values.items()} for name, values in populated.items()}
