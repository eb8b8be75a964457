"""Imports (issue 17, point 1): ``startImport`` with a file uploaded in a GraphQL
multipart request or given as ``content``, run as a job by a server process; bad rows
in both modes, dry run, mapping, upsert keys, permissions, coalesced events."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id, to_global_id
from crm_graphql.models import AuditLog, Customer, Event, Role, Workspace
from crm_graphql.services import api_keys
from crm_graphql.services.actor import Actor
from tests import support
from tests.factories import create_customer

START = """mutation($i: StartImportInput!) {
  startImport(input: $i) { job { id status } errors { code field message } }
}"""
JOB = """query($id: ID!) {
  job(id: $id) {
    id kind status done total errorCount result
    counts { name count }
    errors { line field code message }
  }
}"""
PROGRESS = """subscription($id: ID!) {
  jobProgress(jobId: $id) { type status done total errorCount counts { name count } }
}"""


async def start(client: support.GraphQLClient, **input: Any) -> str:
    payload = (await client(START, {"i": input})).ok()["startImport"]
    assert payload["errors"] == [], payload
    return payload["job"]["id"]  # type: ignore[no-any-return]


async def finished(client: support.GraphQLClient, job: str, timeout: float = 60) -> dict[str, Any]:  # noqa: ASYNC109
    """The job once it has ended (polled)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        data = (await client(JOB, {"id": job})).ok()["job"]
        if data["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            data["counts"] = {c["name"]: c["count"] for c in data["counts"]}
            return data  # type: ignore[no-any-return]
        assert asyncio.get_running_loop().time() < deadline, data
        await asyncio.sleep(0.1)


async def imported(client: support.GraphQLClient, content: str, **input: Any) -> dict[str, Any]:
    return await finished(client, await start(client, content=content, **input))


async def customers_of(
    sessionmaker: async_sessionmaker[AsyncSession], workspace: Workspace
) -> dict[str, Customer]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Customer).where(Customer.workspace_id == workspace.id))
        return {c.name: c for c in rows}


CSV = (
    "name,email,phone,tags,lifecycleStage\n"
    "Ada Lovelace,ADA@example.com,+44 20 7946 0000,math;poetry,customer\n"
    "Grace Hopper,grace@example.com,,navy,LEAD\n"
    "Broken,not-an-email,,,\n"
    "Alan Turing,alan@example.com,,,\n"
    ",nameless@example.com,,,\n"
)


async def test_good_rows_are_written_and_bad_ones_reported_by_line_and_field(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    job = await imported(as_role[Role.AGENT], CSV, type="CUSTOMERS", fileName="people.csv")
    assert job["status"] == "SUCCEEDED", job
    assert job["counts"] == {"created": 3, "failed": 2, "unchanged": 0, "updated": 0}
    assert job["done"] == job["total"] == 5 and job["errorCount"] == 2
    assert [(e["line"], e["field"], e["code"]) for e in job["errors"]] == [
        (4, "email", "VALIDATION"),
        (6, "name", "VALIDATION"),
    ]
    assert job["result"]["written"] is True and job["result"]["created"] == 3
    people = await customers_of(sessionmaker, workspace)
    assert sorted(people) == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    ada = people["Ada Lovelace"]
    assert (ada.email, ada.phone, ada.tags) == (
        "ada@example.com",
        "+442079460000",
        ["math", "poetry"],
    )
    assert ada.lifecycle_stage.value == "customer" and people["Grace Hopper"].phone is None
    # Each written row has its audit row, in the job's name; one coalesced event.
    async with sessionmaker() as session:
        audits = await session.scalars(
            select(AuditLog).where(
                AuditLog.workspace_id == workspace.id, AuditLog.entity_type == "Customer"
            )
        )
        assert sorted(a.entity_id for a in audits) == sorted(c.id for c in people.values())
        events = list(
            await session.scalars(
                select(Event).where(
                    Event.workspace_id == workspace.id, Event.type == "customer.imported"
                )
            )
        )
    assert len(events) == 1 and len(events[0].payload["created_ids"]) == 3
    assert events[0].payload["job_id"] == str(from_global_id(job["id"])[1])


async def test_all_or_nothing_writes_nothing_when_a_row_is_bad(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    agent = as_role[Role.AGENT]
    job = await imported(agent, CSV, type="CUSTOMERS", mode="ALL_OR_NOTHING")
    assert job["status"] == "SUCCEEDED" and job["result"]["written"] is False
    assert job["counts"]["failed"] == 2 and [e["line"] for e in job["errors"]] == [4, 6]
    assert await customers_of(sessionmaker, workspace) == {}
    good = "".join(line for i, line in enumerate(CSV.splitlines(True)) if i not in (3, 5))
    job = await imported(agent, good, type="CUSTOMERS", mode="ALL_OR_NOTHING")
    assert job["result"]["written"] is True and job["counts"]["created"] == 3
    assert len(await customers_of(sessionmaker, workspace)) == 3


async def test_a_dry_run_checks_everything_and_writes_nothing(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    agent = as_role[Role.AGENT]
    await create_customer(agent, "Ada", email="ada@example.com")
    before = await support_rows(sessionmaker, workspace)
    job = await imported(agent, CSV, type="CUSTOMERS", dryRun=True)
    assert job["status"] == "SUCCEEDED" and job["result"]["written"] is False
    assert job["counts"] == {"created": 2, "updated": 1, "unchanged": 0, "failed": 2}
    after = await support_rows(sessionmaker, workspace)
    assert after == before


async def support_rows(
    sessionmaker: async_sessionmaker[AsyncSession], workspace: Workspace
) -> tuple[int, int, int]:
    """Customers, their audit rows and the workspace's non-job events."""
    async with sessionmaker() as session:
        customers = await session.scalar(
            select(func.count()).where(Customer.workspace_id == workspace.id)
        )
        audits = await session.scalar(
            select(func.count()).where(
                AuditLog.workspace_id == workspace.id, AuditLog.entity_type == "Customer"
            )
        )
        events = await session.scalar(
            select(func.count()).where(
                Event.workspace_id == workspace.id, ~Event.topic.startswith("job:")
            )
        )
    return customers or 0, audits or 0, events or 0


async def test_columns_map_by_header_or_as_given_and_custom_fields_are_checked(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    manager = as_role[Role.MANAGER]
    (
        await manager(
            """mutation { createCustomFieldDefinition(input: {entity: CUSTOMER, key: "tier",
                label: "Tier", type: SINGLE_SELECT, options: ["gold", "silver"]}) { errors { code } } }"""
        )
    ).ok()
    content = (
        "Full Name,E-Mail,External ID,custom.tier,Address.City,Notes\n"
        "Ada,ada@example.com,A-1,gold,London,skip me\n"
        "Grace,grace@example.com,A-2,platinum,Arlington,\n"
    )
    mapping = [{"column": "Full Name", "field": "name"}, {"column": "Notes", "field": ""}]
    job = await imported(manager, content, type="CUSTOMERS", mapping=mapping)
    assert job["counts"]["created"] == 1, job
    assert [(e["line"], e["field"]) for e in job["errors"]] == [(3, "customFields.tier")]
    ada = (await customers_of(sessionmaker, workspace))["Ada"]
    assert (ada.email, ada.external_id, ada.custom_fields) == (
        "ada@example.com",
        "A-1",
        {"tier": "gold"},
    )
    assert ada.address == {"city": "London"}
    # A column that matches no field fails the whole import before any row.
    job = await imported(manager, "name,shoe size\nAda,42\n", type="CUSTOMERS")
    assert job["status"] == "FAILED" and "shoe size" in job["result"]["message"]


async def test_customers_are_upserted_by_email_external_id_or_a_custom_field(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    manager = as_role[Role.MANAGER]
    (
        await manager(
            """mutation { createCustomFieldDefinition(input: {entity: CUSTOMER, key: "crm_no",
                label: "Old CRM number", type: TEXT}) { errors { code } } }"""
        )
    ).ok()
    first = (
        "name,email,externalId,custom.crm_no,tags\n"
        "Ada,ada@example.com,X-1,100,a\n"
        "Grace,grace@example.com,X-2,200,b\n"
    )
    assert (await imported(manager, first, type="CUSTOMERS"))["counts"]["created"] == 2
    by_email = "name,email\nAda Lovelace,ADA@EXAMPLE.COM\nAlan,alan@example.com\n"
    job = await imported(manager, by_email, type="CUSTOMERS", key="email")
    assert (job["counts"]["updated"], job["counts"]["created"]) == (1, 1)
    by_external = "externalId,phone\nX-2,+1 202 555 0100\nX-9,+1 202 555 0199\n"
    job = await imported(manager, by_external, type="CUSTOMERS", key="externalId")
    # X-9 is new and has no name: a creation needs one.
    assert job["counts"]["updated"] == 1 and [e["field"] for e in job["errors"]] == ["name"]
    by_custom = '{"custom": {"crm_no": "100"}, "tags": ["vip"]}\n{"custom": {"crm_no": "300"}, "name": "Linus"}\n'
    job = await imported(manager, by_custom, type="CUSTOMERS", key="custom:crm_no", format="JSONL")
    assert (job["counts"]["updated"], job["counts"]["created"]) == (1, 1), job
    people = await customers_of(sessionmaker, workspace)
    assert sorted(people) == ["Ada Lovelace", "Alan", "Grace", "Linus"]
    ada = people["Ada Lovelace"]
    assert ada.tags == ["vip"] and ada.custom_fields == {"crm_no": "100"} and ada.version == 3
    assert people["Grace"].phone == "+12025550100"
    # The same key twice in one file: the second row is bad, not a second write.
    job = await imported(
        manager, "name,email\nA,dup@example.com\nB,dup@example.com\n", type="CUSTOMERS"
    )
    assert job["counts"]["created"] == 1
    assert [(e["line"], e["code"]) for e in job["errors"]] == [(3, "DUPLICATE")]


async def test_deals_orders_and_activities_find_their_customers_by_email(
    as_role: dict[Role, support.GraphQLClient], workspace: Workspace
) -> None:
    manager = as_role[Role.MANAGER]
    await create_customer(manager, "Ada", email="ada@example.com", externalId="X-1")
    stage = (
        await manager(
            """mutation { createPipeline(input: {name: "Sales", stages: [{name: "New"}]}) {
                 pipeline { stages { id } } } }"""
        )
    ).ok()["createPipeline"]["pipeline"]["stages"][0]["id"]
    deals = "\n".join(
        json.dumps(r)
        for r in (
            {
                "title": "Big",
                "currency": "EUR",
                "amount": "1000.50",
                "stageId": stage,
                "customerEmail": "ada@example.com",
            },
            {
                "title": "Lost",
                "currency": "EUR",
                "stageId": stage,
                "customerEmail": "nobody@example.com",
            },
        )
    )
    job = await imported(manager, deals, type="DEALS", format="JSONL")
    assert job["counts"]["created"] == 1, job
    assert [(e["line"], e["field"], e["code"]) for e in job["errors"]] == [
        (2, "customerEmail", "NOT_FOUND")
    ]
    orders = "customerExternalId,amount,currency,placedAt\nX-1,20.00,EUR,2026-01-31T09:00:00Z\nX-1,-5,EUR,\n"
    job = await imported(manager, orders, type="ORDERS")
    assert job["counts"]["created"] == 1 and [e["field"] for e in job["errors"]] == ["amount"]
    activities = (
        "type,subject,customerEmail\nNOTE,Called,ada@example.com\nSTAGE_CHANGE,No,ada@example.com\n"
    )
    job = await imported(manager, activities, type="ACTIVITIES")
    assert job["counts"]["created"] == 1 and [e["field"] for e in job["errors"]] == ["type"]
    data = (
        await manager(
            "{ customers(first: 1) { nodes { deals(first: 5) { totalCount } activities(first: 5) { totalCount } purchaseSummary { orderCount } } } }"
        )
    ).ok()["customers"]["nodes"][0]
    assert data["deals"]["totalCount"] == 1 and data["purchaseSummary"]["orderCount"] == 1
    assert data["activities"]["totalCount"] == 1


async def test_who_may_import_what(
    as_role: dict[Role, support.GraphQLClient], users: dict[Role, Any], sessionmaker: Any
) -> None:
    content = "name\nAda\n"
    viewer = await as_role[Role.VIEWER](START, {"i": {"type": "CUSTOMERS", "content": content}})
    assert [e["code"] for e in viewer.ok()["startImport"]["errors"]] == ["FORBIDDEN"]
    admin = users[Role.ADMIN]
    actor = Actor(workspace_id=admin.workspace_id, role=Role.ADMIN, user_id=admin.id)
    keys = {}
    for scope in (api_keys.CUSTOMERS_READ, api_keys.CUSTOMERS_WRITE):
        async with sessionmaker() as session, session.begin():
            _, token = await api_keys.create_api_key(actor, session, name=scope, scopes=[scope])
        keys[scope] = support.GraphQLClient(as_role[Role.ADMIN].http, token)
    reader = await keys[api_keys.CUSTOMERS_READ](
        START, {"i": {"type": "CUSTOMERS", "content": content}}
    )
    assert [e["code"] for e in reader.ok()["startImport"]["errors"]] == ["FORBIDDEN"]
    writer = keys[api_keys.CUSTOMERS_WRITE]
    job = await imported(writer, content, type="CUSTOMERS")
    assert job["counts"]["created"] == 1
    deals = await writer(START, {"i": {"type": "DEALS", "content": "title\nBig\n"}})
    assert [e["code"] for e in deals.ok()["startImport"]["errors"]] == ["FORBIDDEN"]
    # The key's job is its own: an agent does not see it, a manager does.
    assert (await as_role[Role.AGENT](JOB, {"id": job["id"]})).ok()["job"] is None
    assert (await as_role[Role.MANAGER](JOB, {"id": job["id"]})).ok()["job"]["id"] == job["id"]


async def test_two_thousand_customers_in_two_chunks(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    last_analyze = text(
        "SELECT coalesce(last_analyze, '-infinity') FROM pg_stat_user_tables "
        "WHERE relname = 'customers'"
    )
    async with sessionmaker() as session:
        before = await session.scalar(text("SELECT clock_timestamp()"))
    rows = "".join(f"Person {i},p{i}@example.com,E-{i}\n" for i in range(2000))
    job = await imported(as_role[Role.AGENT], "name,email,externalId\n" + rows, type="CUSTOMERS")
    assert job["counts"] == {"created": 2000, "updated": 0, "unchanged": 0, "failed": 0}
    # The table's statistics were refreshed as the import grew it (decision 0033: stale
    # ones made the chunks' lookups scan the whole workspace).
    async with sessionmaker() as session:
        assert await session.scalar(last_analyze) > before
    counts = await support_rows(sessionmaker, workspace)
    assert counts[:2] == (2000, 2000)
    async with sessionmaker() as session:
        events = list(
            await session.scalars(
                select(Event).where(Event.workspace_id == workspace.id, Event.topic == "imports")
            )
        )
    assert sorted(len(e.payload["created_ids"]) for e in events) == [1000, 1000]


async def test_a_multipart_upload_to_the_live_server_reports_progress_live(
    live_server: str,
    tokens: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    rows = "".join(f"Person {i},p{i}@example.com\n" for i in range(1500))
    rows += "Broken,broken\n"
    operations = {"query": START, "variables": {"i": {"type": "CUSTOMERS", "file": None}}}
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        response = await http.post(
            "/graphql",
            headers={"Authorization": f"Bearer {tokens[Role.AGENT]}"},
            data={
                "operations": json.dumps(operations),
                "map": json.dumps({"0": ["variables.i.file"]}),
            },
            files={"0": ("people.csv", ("name,email\n" + rows).encode(), "text/csv")},
        )
        assert response.status_code == 200, response.text
        payload = response.json()["data"]["startImport"]
        assert payload["errors"] == [], payload
        job = payload["job"]["id"]
        ws = await support.WSClient.connect(live_server, tokens[Role.AGENT])
        try:
            await ws.acknowledged()
            await ws.subscribe(PROGRESS, {"id": job})
            seen = []
            while not seen or seen[-1]["type"] != "job.finished":
                seen.append((await ws.next_data(timeout=60))["jobProgress"])
            complete = await ws.receive()
            assert complete["type"] == "complete", complete
        finally:
            await ws.close()
        last = seen[-1]
        assert last["status"] == "SUCCEEDED" and last["done"] == last["total"] == 1501
        assert {c["name"]: c["count"] for c in last["counts"]}["created"] == 1500
        assert last["errorCount"] == 1
        assert [e["done"] for e in seen if e["type"] == "job.progress"][-2:] == [1000, 1501]
        client = support.GraphQLClient(http, tokens[Role.AGENT])
        data = await finished(client, job)
        assert data["errors"] == [
            {
                "line": 1502,
                "field": "email",
                "code": "VALIDATION",
                "message": data["errors"][0]["message"],
            }
        ]
        # Without credentials a multipart request is refused before it is read.
        refused = await http.post(
            "/graphql",
            data={
                "operations": json.dumps(operations),
                "map": json.dumps({"0": ["variables.i.file"]}),
            },
            files={"0": ("people.csv", b"name\nX\n", "text/csv")},
        )
        assert refused.status_code == 400 and "Authorization" in refused.text
    assert len(await customers_of(sessionmaker, workspace)) == 1500


async def test_cancelling_a_finished_import_conflicts(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    job = await imported(client, "name\nAda\n", type="CUSTOMERS")
    result = await client(
        "mutation($i: CancelJobInput!) { cancelJob(input: $i) { errors { code } } }",
        {"i": {"id": job["id"]}},
    )
    assert [e["code"] for e in result.ok()["cancelJob"]["errors"]] == ["CONFLICT"]
    unknown = await client(JOB, {"id": to_global_id("Job", uuid.uuid4())})
    assert unknown.ok()["job"] is None
