"""Bulk changes through the API: ``bulkCustomerChangePreview`` counts and shows the set of
a filter or segment under the change's own permissions (nothing changes), and
``startBulkCustomerChange`` runs the change as a job whose progress, counts and per-record
failures the ``Job`` reports."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id, to_global_id
from crm_graphql.models import (
    Activity,
    ActivityType,
    AuditLog,
    Company,
    Customer,
    Deal,
    DealStageChange,
    Event,
    Role,
)
from crm_graphql.services import api_keys, auth
from crm_graphql.services.actor import Actor
from tests import support
from tests.factories import create_customer

PREVIEW = """query($i: BulkCustomerChangeInput!, $n: Int!) {
  bulkCustomerChangePreview(input: $i, sample: $n) { count customers { id name tags } }
}"""


async def test_preview_counts_a_segment_within_a_filter_and_changes_nothing(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    manager = as_role[Role.MANAGER]
    lin = await create_customer(manager, "Lin", tags=["vip"], email="lin@example.com")
    kim = await create_customer(manager, "Kim", tags=["vip"], email="kim@example.com")
    await create_customer(manager, "Max", tags=["vip"])
    await create_customer(manager, "Ola", email="ola@example.com")
    segment = (
        await manager(
            """mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } } }""",
            {"i": {"name": "VIPs", "filter": {"tags": {"anyOf": ["vip"]}}, "shared": True}},
        )
    ).ok()["createSegment"]["segment"]["id"]
    change = {
        "segmentId": segment,
        "filter": {"email": {"isNull": False}},
        "addTags": ["reviewed"],
        "archive": True,
    }
    found = (await manager(PREVIEW, {"i": change, "n": 1})).ok()["bulkCustomerChangePreview"]
    assert found["count"] == 2
    assert found["customers"] == [{"id": kim, "name": "Kim", "tags": ["vip"]}]
    again = (await manager(PREVIEW, {"i": change, "n": 5})).ok()["bulkCustomerChangePreview"]
    assert [c["id"] for c in again["customers"]] == [kim, lin]  # still as they were

    refused = await as_role[Role.AGENT](PREVIEW, {"i": change, "n": 1})  # agents cannot archive
    assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]
    nothing = await manager(PREVIEW, {"i": {"segmentId": segment}, "n": 1})
    assert [e["extensions"]["code"] for e in nothing.errors] == ["VALIDATION"]


START = """mutation($i: BulkCustomerChangeInput!) {
  startBulkCustomerChange(input: $i) { job { id kind status } errors { code field message } }
}"""
JOB = """query($id: ID!) {
  job(id: $id) { status done total errorCount counts { name count } errors { field message } }
}"""


async def test_a_started_change_runs_as_a_job_and_reports_its_failures(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    manager = as_role[Role.MANAGER]
    tag = "batch-" + uuid.uuid4().hex[:6]
    ids = [await create_customer(manager, f"N{i}", tags=[tag]) for i in range(3)]
    # A customer whose stored tags no write accepts (over 64 characters) fails alone.
    await create_customer(manager, "Odd", tags=[tag])
    odd = (
        await manager(PREVIEW, {"i": {"filter": {"name": {"eq": "Odd"}}, "addTags": ["x"]}, "n": 1})
    ).ok()["bulkCustomerChangePreview"]["customers"][0]
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Customer)
            .where(Customer.id == from_global_id(odd["id"])[1])
            .values(tags=[tag, "t" * 70])
        )
    change = {"filter": {"tags": {"anyOf": [tag]}}, "addTags": ["vip"], "removeTags": [tag],
              "lifecycleStage": "QUALIFIED"}  # fmt: skip
    started = (await manager(START, {"i": change})).ok()["startBulkCustomerChange"]
    assert started["errors"] == [] and started["job"]["kind"] == "bulk_change_customers"
    job_id = started["job"]["id"]
    deadline = time.monotonic() + 60
    while True:
        job = (await manager(JOB, {"id": job_id})).ok()["job"]
        if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.2)
    assert job["status"] == "SUCCEEDED", job
    assert (job["done"], job["total"], job["errorCount"]) == (4, 4, 1)
    assert {c["name"]: c["count"] for c in job["counts"]} == {
        "changed": 3, "unchanged": 0, "failed": 1
    }  # fmt: skip
    assert job["errors"][0]["field"] == "tags" and odd["id"] in job["errors"][0]["message"]
    nodes = (
        await manager(
            "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Customer { tags lifecycleStage } } }",
            {"ids": ids},
        )
    ).ok()["nodes"]
    assert nodes == [{"tags": ["vip"], "lifecycleStage": "QUALIFIED"}] * 3


# ------------------------------------------------------------- companies and deals

COMPANY_PREVIEW = """query($i: BulkCompanyChangeInput!, $n: Int!) {
  bulkCompanyChangePreview(input: $i, sample: $n) { count companies { id name } }
}"""
DEAL_PREVIEW = """query($i: BulkDealChangeInput!, $n: Int!) {
  bulkDealChangePreview(input: $i, sample: $n) { count deals { id title } }
}"""
START_COMPANIES = """mutation($i: BulkCompanyChangeInput!) {
  startBulkCompanyChange(input: $i) { job { id kind status } errors { code field message } }
}"""
START_DEALS = """mutation($i: BulkDealChangeInput!) {
  startBulkDealChange(input: $i) { job { id kind status } errors { code field message } }
}"""
COMPANIES_TOTAL = "query($f: CompanyFilter) { companies(filter: $f) { totalCount } }"
DEALS_TOTAL = "query($f: DealFilter) { deals(filter: $f) { totalCount } }"


async def _finished(client: support.GraphQLClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job = (await client(JOB, {"id": job_id})).ok()["job"]
        if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return dict(job)
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.2)


async def _started(client: support.GraphQLClient, mutation: str, change: dict[str, Any]) -> str:
    body = (await client(mutation, {"i": change})).ok()
    (payload,) = body.values()
    assert payload["errors"] == [], payload
    return str(payload["job"]["id"])


def _codes(result: support.GraphQLResponse) -> list[tuple[str, str | None]]:
    """A preview's errors (GraphQL errors) or a start's (its payload's: a job or errors),
    as (code, field)."""
    if result.errors:
        return [(e["extensions"]["code"], e["extensions"].get("field")) for e in result.errors]
    (payload,) = result.ok().values()
    if "errors" not in payload:
        return []  # a preview
    assert (payload["job"] is None) == bool(payload["errors"]), payload
    return [(e["code"], e["field"]) for e in payload["errors"]]


async def _define(client: support.GraphQLClient, entity: str, key: str, type: str) -> None:
    defined = await client(
        """mutation($i: CreateCustomFieldDefinitionInput!) {
             createCustomFieldDefinition(input: $i) { errors { code } } }""",
        {"i": {"entity": entity, "key": key, "label": key, "type": type}},
    )
    assert defined.ok()["createCustomFieldDefinition"]["errors"] == []


async def _company(client: support.GraphQLClient, name: str, **input: Any) -> str:
    made = await client(
        "mutation($i: CreateCompanyInput!) { createCompany(input: $i) { company { id } } }",
        {"i": {"name": name, **input}},
    )
    return str(made.ok()["createCompany"]["company"]["id"])


async def _pipeline(
    client: support.GraphQLClient, name: str, *stages: str
) -> tuple[str, list[str]]:
    made = await client(
        """mutation($i: CreatePipelineInput!) {
             createPipeline(input: $i) { pipeline { id stages { id } } } }""",
        {"i": {"name": name, "stages": [{"name": s} for s in stages]}},
    )
    pipeline = made.ok()["createPipeline"]["pipeline"]
    return pipeline["id"], [s["id"] for s in pipeline["stages"]]


async def _deal(client: support.GraphQLClient, title: str, stage: str, **input: Any) -> str:
    made = await client(
        "mutation($i: CreateDealInput!) { createDeal(input: $i) { deal { id } } }",
        {"i": {"title": title, "stageId": stage, "currency": "EUR", **input}},
    )
    return str(made.ok()["createDeal"]["deal"]["id"])


async def _other_workspace(
    client: support.GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[support.GraphQLClient, str]:
    """A manager of a second workspace, and the global ID of that user."""
    async with sessionmaker() as session, session.begin():
        workspace = await auth.create_workspace(session, name=f"Other {uuid.uuid4().hex[:8]}")
        user = await auth.create_user(
            session,
            workspace=workspace,
            email=f"other-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=Role.MANAGER,
        )
    return await client.logged_in(user.email, support.PASSWORD), to_global_id("User", user.id)


async def _audited(
    sessionmaker: async_sessionmaker[AsyncSession], action: str, entity_type: str, job_id: str
) -> dict[uuid.UUID, set[str]]:
    """The records the job's run audited as ``action`` (rows with the job's request id),
    each with the fields its rows changed."""
    job = from_global_id(job_id)[1]
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(AuditLog.entity_id, AuditLog.changes).where(
                    AuditLog.action == action,
                    AuditLog.entity_type == entity_type,
                    AuditLog.request_id == f"job:{job}",
                )
            )
        ).all()
    audited: dict[uuid.UUID, set[str]] = {}
    for entity_id, changes in rows:
        audited.setdefault(entity_id, set()).update(changes)
    return audited


def _uuid(global_id: str) -> uuid.UUID:
    return from_global_id(global_id)[1]


async def test_bulk_company_change_goes_over_exactly_the_filtered_companies_audited_each(
    client: support.GraphQLClient,
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    manager = as_role[Role.MANAGER]
    tag = "co-" + uuid.uuid4().hex[:6]
    await _define(manager, "COMPANY", "tier", "TEXT")
    members = [
        await _company(manager, "Acme", tags=[tag, "old"]),
        await _company(manager, "Globex", tags=[tag]),
        await _company(manager, "Initech", tags=[tag], customFields={"tier": "silver"}),
    ]
    outside = await _company(manager, "Umbrella", tags=["other"])
    other, _ = await _other_workspace(client, sessionmaker)
    theirs = await _company(other, "Theirs", tags=[tag])
    agent_id = to_global_id("User", users[Role.AGENT].id)
    filter = {"tags": {"anyOf": [tag]}}
    change = {
        "filter": filter,
        "addTags": ["key"],
        "removeTags": [tag],
        "ownerId": agent_id,
        "customFields": {"tier": "gold"},
        "archive": True,
    }

    found = (await manager(COMPANY_PREVIEW, {"i": change, "n": 2})).ok()
    listed = (await manager(COMPANIES_TOTAL, {"f": filter})).ok()["companies"]["totalCount"]
    assert found["bulkCompanyChangePreview"]["count"] == listed == 3
    assert [c["name"] for c in found["bulkCompanyChangePreview"]["companies"]] == [
        "Acme",
        "Globex",
    ]  # fmt: skip  (the list's order: by name)
    bad = await manager(COMPANY_PREVIEW, {"i": {**change, "customFields": {"nope": 1}}, "n": 0})
    assert _codes(bad) == [("VALIDATION", "customFields.nope")]
    bad_start = await manager(START_COMPANIES, {"i": {**change, "addTags": ["x" * 70]}})
    assert [c for c, _ in _codes(bad_start)] == ["VALIDATION"]

    job_id = await _started(manager, START_COMPANIES, change)
    job = await _finished(manager, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert (job["done"], job["total"], job["errorCount"]) == (3, 3, 0)
    assert {c["name"]: c["count"] for c in job["counts"]}["changed"] == 3

    async with sessionmaker() as session:
        rows = {
            c.id: c
            for c in await session.scalars(
                select(Company).where(
                    Company.id.in_([_uuid(i) for i in [*members, outside, theirs]])
                )
            )
        }
    for member in members:
        row = rows[_uuid(member)]
        assert tag not in row.tags and "key" in row.tags
        assert (row.owner_id, row.custom_fields["tier"]) == (users[Role.AGENT].id, "gold")
        assert row.archived_at is not None
    assert rows[_uuid(members[0])].tags == ["old", "key"]
    for untouched in (outside, theirs):
        row = rows[_uuid(untouched)]
        assert (row.owner_id, row.archived_at, row.custom_fields) == (None, None, {})
    assert rows[_uuid(theirs)].tags == [tag]
    audited = await _audited(sessionmaker, "bulkChangeCompanies", "Company", job_id)
    changed = {"tags", "owner_id", "custom_fields", "archived_at"}
    assert audited == {_uuid(m): changed for m in members}


async def test_bulk_deal_change_moves_within_the_pipeline_as_move_deal_does(
    client: support.GraphQLClient,
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    manager = as_role[Role.MANAGER]
    await _define(manager, "DEAL", "score", "NUMBER")
    await _define(manager, "DEAL", "region", "TEXT")
    sales, (lead, won) = await _pipeline(manager, "Sales", "Lead", "Won")
    _, (elsewhere,) = await _pipeline(manager, "Partners", "Talking")
    deals = [await _deal(manager, f"D{i}", lead) for i in range(3)]
    outside = await _deal(manager, "Partner deal", elsewhere)
    # A deal whose stored value no write accepts any more fails alone.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Deal).where(Deal.id == _uuid(deals[2])).values(custom_fields={"score": "abc"})
        )
    other, other_user = await _other_workspace(client, sessionmaker)
    _, (their_stage,) = await _pipeline(other, "Theirs", "Open")
    theirs = await _deal(other, "Their deal", their_stage)

    filter = {"pipelineId": {"eq": sales}}
    agent_id = to_global_id("User", users[Role.AGENT].id)
    change = {"filter": filter, "stageId": won, "ownerId": agent_id,
              "customFields": {"region": "EU"}}  # fmt: skip
    found = (await manager(DEAL_PREVIEW, {"i": change, "n": 10})).ok()["bulkDealChangePreview"]
    listed = (await manager(DEALS_TOTAL, {"f": filter})).ok()["deals"]["totalCount"]
    assert found["count"] == listed == 3
    assert {d["id"] for d in found["deals"]} == set(deals)

    # Refused before any job: a stage of another pipeline than the set's (or a set that
    # spans two pipelines), another workspace's stage or owner, a bad value.
    for query in (DEAL_PREVIEW, START_DEALS):
        variables: dict[str, Any] = {"n": 0} if query is DEAL_PREVIEW else {}
        for refused, expected in (
            ({**change, "stageId": elsewhere}, ("VALIDATION", "stageId")),
            ({**change, "filter": None}, ("VALIDATION", "stageId")),
            ({**change, "stageId": their_stage}, ("NOT_FOUND", "stageId")),
            ({**change, "ownerId": other_user}, ("NOT_FOUND", "ownerId")),
            ({**change, "customFields": {"score": "many"}}, ("VALIDATION", "customFields.score")),
        ):
            assert _codes(await manager(query, {**variables, "i": refused})) == [expected]

    job_id = await _started(manager, START_DEALS, change)
    job = await _finished(manager, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert (job["done"], job["total"], job["errorCount"]) == (3, 3, 1)
    assert {c["name"]: c["count"] for c in job["counts"]} == {
        "changed": 2, "unchanged": 0, "failed": 1
    }  # fmt: skip
    assert job["errors"][0]["field"] == "customFields.score"
    assert deals[2] in job["errors"][0]["message"]

    moved = {_uuid(d) for d in deals[:2]}
    async with sessionmaker() as session:
        rows = {
            d.id: d
            for d in await session.scalars(
                select(Deal).where(Deal.id.in_([_uuid(i) for i in [*deals, outside, theirs]]))
            )
        }
        history = (
            await session.execute(
                select(DealStageChange.deal_id, DealStageChange.from_stage_id,
                       DealStageChange.to_stage_id)
                .where(DealStageChange.deal_id.in_(rows))
            )
        ).all()  # fmt: skip
        timeline = set(
            await session.scalars(
                select(Activity.deal_id).where(
                    Activity.deal_id.in_(rows), Activity.type == ActivityType.STAGE_CHANGE
                )
            )
        )
        board = set(
            await session.scalars(
                select(Event.entity_id).where(Event.type == "deal.moved", Event.entity_id.in_(rows))
            )
        )
    for deal_id in moved:
        row = rows[deal_id]
        assert (row.stage_id, row.owner_id) == (_uuid(won), users[Role.AGENT].id)
        assert row.custom_fields == {"region": "EU"}
    failed = rows[_uuid(deals[2])]
    assert (failed.stage_id, failed.owner_id, failed.custom_fields) == (
        _uuid(lead), None, {"score": "abc"}
    )  # fmt: skip
    assert (rows[_uuid(outside)].stage_id, rows[_uuid(outside)].owner_id) == (
        _uuid(elsewhere), None
    )  # fmt: skip
    assert rows[_uuid(theirs)].owner_id is None
    assert sorted(history) == sorted((d, _uuid(lead), _uuid(won)) for d in moved)
    assert timeline == moved and board == moved
    audited = await _audited(sessionmaker, "bulkChangeDeals", "Deal", job_id)
    assert audited == {deal_id: {"stage_id", "owner_id", "custom_fields"} for deal_id in moved}


async def test_bulk_changes_of_companies_and_deals_need_the_single_record_rights(
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    manager = as_role[Role.MANAGER]
    tag = "perm-" + uuid.uuid4().hex[:6]
    await _company(manager, "Acme", tags=[tag])
    pipeline, (stage,) = await _pipeline(manager, "Sales", "Lead")
    await _deal(manager, "Big", stage)
    companies = {"filter": {"tags": {"anyOf": [tag]}}, "addTags": ["seen"]}
    deals = {"filter": {"pipelineId": {"eq": pipeline}}, "customFields": {"seen": True}}

    async def codes(who: support.GraphQLClient) -> list[Any]:
        """What ``who`` gets for: company edit, company archive, deal edit, deal archive
        (previews), and starting the edits."""
        return [
            _codes(await who(COMPANY_PREVIEW, {"i": companies, "n": 0})),
            _codes(await who(COMPANY_PREVIEW, {"i": {**companies, "archive": True}, "n": 0})),
            _codes(await who(DEAL_PREVIEW, {"i": deals, "n": 0})),
            _codes(await who(DEAL_PREVIEW, {"i": {**deals, "archive": True}, "n": 0})),
            _codes(await who(START_COMPANIES, {"i": {**companies, "filter": {"id": {"in": []}}}})),
            _codes(await who(START_DEALS, {"i": {**deals, "filter": {"id": {"in": []}}}})),
        ]

    forbidden = [("FORBIDDEN", None)]
    assert await codes(as_role[Role.VIEWER]) == [forbidden] * 6
    # Agents edit companies and deals but do not archive them (as archiveCompany/Deal).
    agent = await codes(as_role[Role.AGENT])
    assert agent == [[], forbidden, [], forbidden, [], []]

    admin = users[Role.ADMIN]
    actor = Actor(workspace_id=admin.workspace_id, role=Role.ADMIN, user_id=admin.id)
    keys = {}
    for scope in (
        api_keys.CUSTOMERS_WRITE, api_keys.DEALS_WRITE, api_keys.DEALS_READ
    ):  # fmt: skip
        async with sessionmaker() as session, session.begin():
            _, token = await api_keys.create_api_key(actor, session, name=scope, scopes=[scope])
        keys[scope] = support.GraphQLClient(manager.http, token)
    # A key needs the write scope of the kind it changes (companies: customers.write).
    assert await codes(keys[api_keys.CUSTOMERS_WRITE]) == [
        [], [], forbidden, forbidden, [], forbidden
    ]  # fmt: skip
    assert await codes(keys[api_keys.DEALS_WRITE]) == [
        forbidden, forbidden, [], [], forbidden, []
    ]  # fmt: skip
    assert await codes(keys[api_keys.DEALS_READ]) == [forbidden] * 6
