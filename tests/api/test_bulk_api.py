"""Bulk changes through the API: ``bulkCustomerChangePreview`` counts and shows the set of
a filter or segment under the change's own permissions (nothing changes), and
``startBulkCustomerChange`` runs the change as a job whose progress, counts and per-record
failures the ``Job`` reports."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id
from crm_graphql.models import Customer, Role
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
