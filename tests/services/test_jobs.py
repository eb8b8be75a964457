"""Background jobs: claimed by one runner only, resumed after a dead process, cancelled,
seen by their creator and managers only (docs/decisions/0033-jobs-and-import.md)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.enums import JobStatus
from crm_graphql.job_runner import JobContext, JobRunner, RunnerSettings
from crm_graphql.models import Job
from crm_graphql.realtime.bus import Bus
from crm_graphql.services import jobs
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Conflict, Forbidden, NotFound

# A kind of its own per test: the shared app's runner (and the live server's) know
# nothing of it and leave its jobs alone.


def _kind() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def _queue(
    sessionmaker: async_sessionmaker[AsyncSession], actor: Actor, kind: str, n: int
) -> list[uuid.UUID]:
    async with sessionmaker() as session, session.begin():
        return [
            (await jobs.create_job(actor, session, kind=kind, params={"n": i}, action="testJob")).id
            for i in range(n)
        ]


async def _job(sessionmaker: async_sessionmaker[AsyncSession], id: uuid.UUID) -> Job:
    async with sessionmaker() as session:
        job = await session.get(Job, id)
        assert job is not None
        return job


@pytest.fixture
async def bus(redis_url: str) -> Any:
    bus = Bus.from_url(redis_url)
    yield bus
    await bus.close()


async def test_two_runners_run_each_job_once(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor, bus: Bus
) -> None:
    kind = _kind()
    ids = await _queue(sessionmaker, agent, kind, 24)
    ran: Counter[uuid.UUID] = Counter()

    async def handler(context: JobContext) -> dict[str, Any]:
        ran[context.claimed.id] += 1
        await asyncio.sleep(0.01)  # let the other runner try to take it meanwhile
        context.progress.done = context.progress.total = 1
        await context.report(committed=True)
        return {"n": context.claimed.params["n"]}

    settings = RunnerSettings(poll_seconds=0.05)
    runners = [JobRunner(sessionmaker, bus, settings, {kind: handler}) for _ in range(2)]

    async def drain(runner: JobRunner) -> int:
        count = 0
        while await runner.run_once():
            count += 1
        return count

    counts = await asyncio.gather(*(drain(r) for r in runners))
    assert sum(counts) == 24 and all(counts), counts  # both took part
    assert ran == Counter({id: 1 for id in ids})
    for id in ids:
        job = await _job(sessionmaker, id)
        assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
        assert job.result == {"n": job.params["n"]} and job.done == 1


async def test_a_job_left_running_by_a_dead_process_resumes_from_its_checkpoint(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor, bus: Bus
) -> None:
    kind = _kind()
    [id] = await _queue(sessionmaker, agent, kind, 1)
    starts: list[int] = []

    async def handler(context: JobContext) -> None:
        starts.append(context.progress.checkpoint)
        for step in range(context.progress.checkpoint, 4):
            context.progress.done = step + 1
            await context.report(committed=True)
            if len(starts) == 1 and step == 1:
                raise asyncio.CancelledError  # the process dies after two steps

    runner = JobRunner(sessionmaker, bus, RunnerSettings(lease_seconds=30), {kind: handler})
    with pytest.raises(asyncio.CancelledError):
        await runner.run_once()
    job = await _job(sessionmaker, id)
    assert job.status == JobStatus.RUNNING and job.checkpoint == 2
    # Its heartbeat is fresh: nobody takes it over yet.
    assert not await runner.run_once()
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Job)
            .where(Job.id == id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=31))
        )
    assert await runner.run_once()
    job = await _job(sessionmaker, id)
    assert starts == [0, 2]
    assert job.status == JobStatus.SUCCEEDED and job.done == 4 and job.attempts == 2


async def test_a_run_whose_job_was_taken_over_changes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor
) -> None:
    kind = _kind()
    [id] = await _queue(sessionmaker, agent, kind, 1)
    lease = timedelta(seconds=30)
    async with sessionmaker() as session, session.begin():
        first = await jobs.claim_next(session, kinds=[kind], lease=lease, max_attempts=3)
    assert isinstance(first, jobs.Claimed)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Job).where(Job.id == id).values(heartbeat_at=datetime.now(UTC) - lease * 2)
        )
    async with sessionmaker() as session, session.begin():
        second = await jobs.claim_next(session, kinds=[kind], lease=lease, max_attempts=3)
    assert isinstance(second, jobs.Claimed) and second.claim != first.claim
    first.progress.done = 99
    with pytest.raises(jobs.LostClaim):
        async with sessionmaker() as session, session.begin():
            await jobs.report(session, first, first.progress, committed=True)
    async with sessionmaker() as session, session.begin():
        assert not await jobs.heartbeat(session, first)
        assert await jobs.heartbeat(session, second)
    assert (await _job(sessionmaker, id)).done == 0


async def test_a_job_interrupted_too_often_fails(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor
) -> None:
    kind = _kind()
    [id] = await _queue(sessionmaker, agent, kind, 1)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Job)
            .where(Job.id == id)
            .values(
                status=JobStatus.RUNNING,
                attempts=3,
                heartbeat_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
    async with sessionmaker() as session, session.begin():
        failed = await jobs.claim_next(
            session, kinds=[kind], lease=timedelta(seconds=60), max_attempts=3
        )
    assert isinstance(failed, Job)
    job = await _job(sessionmaker, id)
    assert job.status == JobStatus.FAILED and "Interrupted 3 times" in job.result["message"]


async def test_cancelling_a_queued_job_and_a_running_one(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor, bus: Bus
) -> None:
    kind = _kind()
    queued, running = await _queue(sessionmaker, agent, kind, 2)
    async with sessionmaker() as session, session.begin():
        await jobs.cancel_job(agent, session, queued)
    assert (await _job(sessionmaker, queued)).status == JobStatus.CANCELLED
    with pytest.raises(Conflict):
        async with sessionmaker() as session, session.begin():
            await jobs.cancel_job(agent, session, queued)

    steps: list[int] = []

    async def handler(context: JobContext) -> None:
        for step in range(100):
            context.check_cancelled()
            steps.append(step)
            if step == 2:
                async with sessionmaker() as session, session.begin():
                    await jobs.cancel_job(agent, session, running)
            context.progress.done = step + 1
            await context.report(committed=True)

    runner = JobRunner(sessionmaker, bus, RunnerSettings(), {kind: handler})
    assert await runner.run_once()
    job = await _job(sessionmaker, running)
    assert steps == [0, 1, 2] and job.status == JobStatus.CANCELLED and job.done == 3


async def test_jobs_are_seen_by_their_creator_and_managers_only(
    sessionmaker: async_sessionmaker[AsyncSession], actors: dict[Any, Actor]
) -> None:
    from crm_graphql.models import Role

    agent, manager, viewer = actors[Role.AGENT], actors[Role.MANAGER], actors[Role.VIEWER]
    [id] = await _queue(sessionmaker, agent, _kind(), 1)
    async with sessionmaker() as session:
        assert (await jobs.get_visible(agent, session, id)).id == id
        assert (await jobs.get_visible(manager, session, id)).id == id
        with pytest.raises(NotFound):
            await jobs.get_visible(viewer, session, id)
    with pytest.raises(Forbidden):
        async with sessionmaker() as session, session.begin():
            await jobs.cancel_job(viewer, session, id)
    async with sessionmaker() as session, session.begin():
        assert (await jobs.cancel_job(manager, session, id)).status == JobStatus.CANCELLED
