"""Jobs in GraphQL: ``job``, ``cancelJob``, the fields of ``Job`` and of the
``jobProgress`` stream's events."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql import models
from crm_graphql.enums import JobStatus
from crm_graphql.global_ids import decode_id, to_global_id
from crm_graphql.realtime import streams, verdicts
from crm_graphql.realtime.groups import EventValue
from crm_graphql.realtime.streams import graphql_error
from crm_graphql.resolvers.context import Context
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.resolvers.realtime import ResumeAfter
from crm_graphql.services import jobs as job_service
from crm_graphql.services.errors import DomainError
from crm_graphql.services.events import ORIGIN

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.jobs import CancelJobInput

_jobs = "crm_graphql.schema.jobs"

LOADER = "node:Job"


@dataclass(frozen=True)
class JobCount:
    """What ``JobCount`` reads."""

    name: str
    count: int


@dataclass(frozen=True)
class JobError:
    """What ``JobError`` reads: one bad row or item of a job."""

    line: int | None
    field: str | None
    code: str
    message: str


def counts_of(counts: dict[str, int]) -> list[JobCount]:
    return [JobCount(name, int(n)) for name, n in sorted(counts.items())]


async def job(
    info: Info,
    id: Annotated[strawberry.ID, strawberry.argument(description="The job's global ID.")],
) -> models.Job | None:
    """The job, or None for an unknown, malformed or invisible ID."""
    info.context.require_actor()
    uuid_ = decode_id(id, "Job")
    if uuid_ is None:
        return None
    loader = info.context.loaders.per_key(LOADER, job_service.get_many_visible)
    found: models.Job | None = await loader.load(uuid_)
    return found


async def cancel_job(
    info: Info, input: Annotated["CancelJobInput", strawberry.lazy(_jobs)]
) -> Payload:
    id = decode_id(input.id, "Job")
    return await mutate_payload(info, "job", lambda actor, s: job_service.cancel_job(actor, s, id))


# Job


def counts(root: models.Job) -> list[JobCount]:
    return counts_of(root.counts)


def errors(
    root: models.Job,
    first: Annotated[
        int,
        strawberry.argument(description=f"How many (at most the {job_service.MAX_ERRORS} kept)."),
    ] = 100,
) -> list[JobError]:
    return [
        JobError(e.get("line"), e.get("field"), e.get("code", "VALIDATION"), e.get("message", ""))
        for e in root.errors[: max(0, first)]
    ]


# jobProgress


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


def event_job_id(root: EventValue) -> strawberry.ID:
    job_id = root.event.entity_id
    assert job_id is not None, "a job's events name their job (services.jobs._record)"
    return strawberry.ID(to_global_id("Job", job_id))


def event_status(root: EventValue) -> JobStatus:
    return JobStatus(root.event.payload["status"])


def event_done(root: EventValue) -> int:
    return int(root.event.payload.get("done") or 0)


def event_total(root: EventValue) -> int | None:
    total = root.event.payload.get("total")
    return None if total is None else int(total)


def event_error_count(root: EventValue) -> int:
    return int(root.event.payload.get("error_count") or 0)


def event_counts(root: EventValue) -> list[JobCount]:
    return counts_of(root.event.payload.get("counts") or {})
