"""Imports run side by side (docs/decisions/0033-jobs-and-import.md): two jobs writing
customers into one workspace at once, with upsert keys in common."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.enums import ImportMode, ImportType, JobStatus
from crm_graphql.job_runner import JobRunner, RunnerSettings
from crm_graphql.models import AuditLog, Customer, Job
from crm_graphql.realtime.bus import Bus
from crm_graphql.services import imports, jobs
from crm_graphql.services.actor import Actor


@pytest.fixture
async def bus(redis_url: str) -> Any:
    bus = Bus.from_url(redis_url)
    yield bus
    await bus.close()


def _csv(numbers: range, name: str) -> str:
    return "name,email,externalId\n" + "".join(
        f"{name} {i},person{i}@example.com,EXT-{i}\n" for i in numbers
    )


async def _claimed(
    sessionmaker: async_sessionmaker[AsyncSession], actor: Actor, content: str
) -> jobs.Claimed:
    async with sessionmaker() as session, session.begin():
        options = imports.ImportOptions(
            type=ImportType.CUSTOMERS, format="csv", key="externalId", mode=ImportMode.GOOD_ROWS
        )
        job = await imports.start_import(
            actor, session, options, file_name="people.csv", content=content.encode()
        )
        return await jobs.claim_new(session, job, actor)


async def test_two_imports_into_one_workspace_at_once_lose_and_duplicate_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor, bus: Bus
) -> None:
    # 3,000 rows each (three chunks), 1,500 keys in common. The first file runs its keys
    # downwards and the second upwards, so their first chunks both create EXT-2000 to
    # EXT-2499 at the same moment: without the import's lock one of them waited on the
    # other's new rows and then failed its chunk on the unique external id.
    first = _csv(range(2999, -1, -1), "First")
    second = _csv(range(1500, 4500), "Second")
    claims = [await _claimed(sessionmaker, admin, content) for content in (first, second)]
    runners = [JobRunner(sessionmaker, bus, RunnerSettings()) for _ in claims]
    await asyncio.wait_for(
        asyncio.gather(*(runner.run(claim) for runner, claim in zip(runners, claims, strict=True))),
        timeout=300,
    )
    async with sessionmaker() as session:
        done = [await session.get(Job, claim.id) for claim in claims]
        stored = (
            await session.execute(
                select(func.count(), func.count(func.distinct(Customer.external_id))).where(
                    Customer.workspace_id == admin.workspace_id
                )
            )
        ).one()
        audited = await session.scalar(
            select(func.count()).where(
                AuditLog.workspace_id == admin.workspace_id, AuditLog.entity_type == "Customer"
            )
        )
        names = dict(
            (
                await session.execute(
                    select(Customer.external_id, Customer.name).where(
                        Customer.workspace_id == admin.workspace_id
                    )
                )
            )
            .tuples()
            .all()
        )
    for job in done:
        assert job is not None and job.status is JobStatus.SUCCEEDED, job and job.result
        assert job.counts["failed"] == 0 and job.done == 3000, job.counts
    counts = [job.counts for job in done if job is not None]
    # Each common key was created by one import and updated by the other (its name differs).
    assert sum(c["created"] for c in counts) == 4500
    assert sum(c["updated"] for c in counts) == 1500
    assert sum(c["unchanged"] for c in counts) == 0
    assert tuple(stored) == (4500, 4500)
    assert audited == 6000  # one audit row per write, none lost
    assert {names[f"EXT-{i}"].split()[0] for i in range(1500)} == {"First"}
    assert {names[f"EXT-{i}"].split()[0] for i in range(3000, 4500)} == {"Second"}
    assert {names[f"EXT-{i}"] for i in range(1500, 3000)} <= {
        f"{who} {i}" for i in range(1500, 3000) for who in ("First", "Second")
    }


async def _run(
    sessionmaker: async_sessionmaker[AsyncSession], bus: Bus, actor: Actor, content: str
) -> Job:
    claim = await _claimed(sessionmaker, actor, content)
    await JobRunner(sessionmaker, bus, RunnerSettings()).run(claim)
    async with sessionmaker() as session:
        job = await session.get(Job, claim.id)
    assert job is not None
    return job


async def test_a_re_import_audits_exactly_what_it_changed(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor, bus: Bus
) -> None:
    await _run(
        sessionmaker, bus, admin, "name,email,externalId,tags\nAda,ada@example.com,X-1,a;b\n"
    )
    job = await _run(
        sessionmaker,
        bus,
        admin,
        "name,email,externalId,tags\nAda Lovelace,ada@example.com,X-1,a;b\n"
        "Grace,grace@example.com,X-2,\n",
    )
    assert job.counts == {"created": 1, "updated": 1, "unchanged": 0, "failed": 0}
    job = await _run(sessionmaker, bus, admin, "externalId,tags\nX-1,a;b\n")
    assert job.counts == {"created": 0, "updated": 0, "unchanged": 1, "failed": 0}
    async with sessionmaker() as session:
        ada = await session.scalar(
            select(Customer).where(
                Customer.workspace_id == admin.workspace_id, Customer.external_id == "X-1"
            )
        )
        assert ada is not None and ada.version == 2 and ada.tags == ["a", "b"]
        audits = list(
            await session.scalars(
                select(AuditLog.changes)
                .where(AuditLog.entity_id == ada.id)
                .order_by(AuditLog.created_at, AuditLog.id)
            )
        )
    assert len(audits) == 2
    assert audits[1] == {"name": {"before": "Ada", "after": "Ada Lovelace"}}
