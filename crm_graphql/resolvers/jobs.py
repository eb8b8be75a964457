"""Jobs in GraphQL: ``job``, ``cancelJob`` and the ``jobProgress`` stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.realtime import streams, verdicts
from crm_graphql.realtime.groups import EventValue
from crm_graphql.realtime.streams import graphql_error
from crm_graphql.resolvers.context import Context
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import by_id
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.resolvers.realtime import ResumeAfter
from crm_graphql.services import jobs as job_service
from crm_graphql.services.errors import DomainError
from crm_graphql.services.events import ORIGIN

LOADER = "node:Job"


async def job(info: Info, id: str) -> models.Job | None:
    """The job, or None for an unknown, malformed or invisible ID."""
    info.context.require_actor()
    uuid_ = decode_id(id, "Job")
    if uuid_ is None:
        return None
    loader = info.context.loaders.per_key(LOADER, job_service.get_many_visible)
    return await loader.load(uuid_)  # type: ignore[no-any-return]


async def cancel_job(info: Info, input: Any) -> Payload:
    id = decode_id(input.id, "Job")
    return await mutate_payload(info, "job", lambda actor, s: job_service.cancel_job(actor, s, id))


@dataclass(frozen=True)
class JobError:
    """What ``JobError`` reads: one bad row or item of a job."""

    line: int | None
    field: str | None
    code: str
    message: str


def errors(root: models.Job, first: int) -> list[JobError]:
    return [
        JobError(e.get("line"), e.get("field"), e.get("code", "VALIDATION"), e.get("message", ""))
        for e in root.errors[: max(0, first)]
    ]


async def created_by(info: Info, root: models.Job) -> Any:
    return await by_id(info, models.User, root.created_by_id)


async def job_progress(
    info: Info,
    job_id: Annotated[strawberry.ID, strawberry.argument(description="The job to follow.")],
    after: ResumeAfter = None,
) -> AsyncIterator[EventValue]:
    """The job's progress events: those written so far (or after ``after``), then live
    ones, ending with its ``job.finished``."""
    context: Context = info.context
    actor = context.require_actor()
    id = decode_id(job_id, "Job")
    try:
        async with context.app.sessionmaker() as session:
            await job_service.get_visible(actor, session, id, field="jobId")
    except DomainError as error:
        raise graphql_error(error) from error
    assert id is not None
    # A job's stream is short (a report per chunk): from its start unless told otherwise,
    # so a subscriber that comes late still learns how it ended.
    start = after or ORIGIN.encode()
    rule = verdicts.UntilFinished(job_service.FINISHED)
    async for value in streams.subscribe(info, job_service.topic(id), start, rule):
        yield value


def event_counts(value: EventValue) -> list[JobCount]:
    return counts_of(value.event.payload.get("counts") or {})


@dataclass(frozen=True)
class JobCount:
    """What ``JobCount`` reads."""

    name: str
    count: int


def counts_of(counts: dict[str, int]) -> list[JobCount]:
    return [JobCount(name, int(n)) for name, n in sorted(counts.items())]
