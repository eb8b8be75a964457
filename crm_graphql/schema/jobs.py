"""Background jobs in GraphQL (imports, bulk actions): their status and progress, and
cancelling them (docs/decisions/0033)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from crm_graphql.global_ids import to_global_id
from crm_graphql.resolvers import jobs as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.relay import Node, UserError
from crm_graphql.schema.scalars import JSON, JobStatus

if TYPE_CHECKING:
    from crm_graphql.schema.users import User

_users = "crm_graphql.schema.users"
MAX_JOB_ERRORS = 1000


@strawberry.type(description="How many items of a job ended one way (`created`, `updated` ...).")
class JobCount:
    name: str = strawberry.field(
        description="What happened to them: `created`, `updated`, `failed`, `skipped` ..."
    )
    count: int = strawberry.field(description="How many.")


@strawberry.type(description="One bad row (or item) of a job, and why.")
class JobError:
    line: int | None = strawberry.field(
        description="The row's line in the file (1 is the first line; a CSV's header is "
        "line 1); null when the error is not about one row."
    )
    field: str | None = strawberry.field(description="The field at fault, if one is.")
    code: str = strawberry.field(description="VALIDATION, NOT_FOUND, DUPLICATE ...")
    message: str = strawberry.field(description="A sentence for humans.")


@strawberry.type(
    description="Work the server does in the background (an import, a bulk action): "
    "queued, then run by one server process, with its progress. Seen by whoever started "
    "it, and by admins and managers."
)
class Job(Node):
    is_type_of = rows_of("Job")

    kind: str = strawberry.field(description="What the job does: `import` ...")
    status: JobStatus = strawberry.field(description="Where it stands.")
    done: int = strawberry.field(description="Items (rows) processed so far.")
    total: int | None = strawberry.field(
        description="Items it has in all (null until it knows: a file is read first)."
    )
    error_count: int = strawberry.field(
        description=f"Bad items in all (`errors` lists the first {MAX_JOB_ERRORS})."
    )
    cancel_requested: bool = strawberry.field(
        description="`cancelJob` was called; a running job stops at its next step."
    )
    result: JSON | None = strawberry.field(
        description="What it produced once finished (its kind says what), with `message` "
        "when it failed."
    )
    created_at: datetime = strawberry.field(description="When it was queued.")
    started_at: datetime | None = strawberry.field(description="When a process first ran it.")
    finished_at: datetime | None = strawberry.field(description="When it ended.")

    @strawberry.field(description="Items by outcome (`created`, `updated`, `failed` ...).")
    def counts(self) -> list[JobCount]:
        return resolve.counts_of(self.counts)  # type: ignore[arg-type,return-value]

    @strawberry.field(description="The first bad items, in file order.")
    def errors(
        self,
        first: Annotated[
            int,
            strawberry.argument(description=f"How many (at most the {MAX_JOB_ERRORS} kept)."),
        ] = 100,
    ) -> list[JobError]:
        return resolve.errors(self, first)  # type: ignore[arg-type,return-value]

    @strawberry.field(description="Who started it (null for an API key).")
    async def created_by(self, info: Info) -> Annotated[User, strawberry.lazy(_users)] | None:
        return await resolve.created_by(info, self)  # type: ignore[arg-type]


@strawberry.input(description="A job, by ID.")
class CancelJobInput:
    id: strawberry.ID = strawberry.field(description="The job (`Job.id`).")


@strawberry.type(description="Result of a job mutation.")
class JobPayload:
    job: Job | None = strawberry.field(description="The job after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type(description="A job's progress: sent at each step, and when it ends.")
class JobProgressEvent:
    cursor: str = strawberry.field(
        description="Position of this event; pass it as `after` to resume right after it."
    )
    type: str = strawberry.field(
        description="job.progress (it started or went on) or job.finished (the last event)."
    )
    occurred_at: datetime = strawberry.field(description="When it was committed.")

    @strawberry.field(description="The job.")
    def job_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Job", self.event.entity_id))  # type: ignore[attr-defined]

    @strawberry.field(description="Its status then.")
    def status(self) -> JobStatus:
        return JobStatus(self.event.payload["status"])  # type: ignore[attr-defined,no-any-return]

    @strawberry.field(description="Items processed then.")
    def done(self) -> int:
        return int(self.event.payload.get("done") or 0)  # type: ignore[attr-defined]

    @strawberry.field(description="Items in all (null while unknown).")
    def total(self) -> int | None:
        return self.event.payload.get("total")  # type: ignore[attr-defined,no-any-return]

    @strawberry.field(description="Bad items then.")
    def error_count(self) -> int:
        return int(self.event.payload.get("error_count") or 0)  # type: ignore[attr-defined]

    @strawberry.field(description="Items by outcome then.")
    def counts(self) -> list[JobCount]:
        return resolve.event_counts(self)  # type: ignore[arg-type,return-value]


@strawberry.type
class JobQuery:
    @strawberry.field(description="A background job by ID (null when unknown or not yours to see).")
    async def job(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The job's global ID.")],
    ) -> Job | None:
        return await resolve.job(info, id)  # type: ignore[return-value]


@strawberry.type
class JobMutation:
    @strawberry.mutation(
        description="Stop a job: a queued one at once, a running one at its next step (what "
        "it committed by then stays: see its kind). CONFLICT once it has finished."
    )
    async def cancel_job(self, info: Info, input: CancelJobInput) -> JobPayload:
        return await resolve.cancel_job(info, input)  # type: ignore[return-value]
