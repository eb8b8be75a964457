"""Background jobs in GraphQL (imports, bulk actions): their status and progress, and
cancelling them (docs/decisions/0033)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from crm_graphql.resolvers import jobs as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.relay import Node, UserError, read_model
from crm_graphql.schema.scalars import JSON, JobStatus
from crm_graphql.services.jobs import MAX_ERRORS


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
@read_model("Job")
class Job(Node):
    is_type_of = rows_of("Job")

    kind: str = strawberry.field(description="What the job does: `import` ...")
    status: JobStatus = strawberry.field(description="Where it stands.")
    done: int = strawberry.field(description="Items (rows) processed so far.")
    total: int | None = strawberry.field(
        description="Items it has in all (null until it knows: a file is read first)."
    )
    error_count: int = strawberry.field(
        description=f"Bad items in all (`errors` lists the first {MAX_ERRORS})."
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

    counts = strawberry.field(
        resolver=resolve.counts,
        graphql_type=list[JobCount],
        description="Items by outcome (`created`, `updated`, `failed` ...).",
    )

    errors = strawberry.field(
        resolver=resolve.errors,
        graphql_type=list[JobError],
        description="The first bad items, in file order.",
    )


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

    job_id = strawberry.field(
        resolver=resolve.event_job_id, graphql_type=strawberry.ID, description="The job."
    )

    status = strawberry.field(
        resolver=resolve.event_status, graphql_type=JobStatus, description="Its status then."
    )

    done = strawberry.field(
        resolver=resolve.event_done, graphql_type=int, description="Items processed then."
    )

    total = strawberry.field(
        resolver=resolve.event_total,
        graphql_type=int | None,
        description="Items in all (null while unknown).",
    )

    error_count = strawberry.field(
        resolver=resolve.event_error_count, graphql_type=int, description="Bad items then."
    )

    counts = strawberry.field(
        resolver=resolve.event_counts,
        graphql_type=list[JobCount],
        description="Items by outcome then.",
    )


@strawberry.type
class JobQuery:
    job = strawberry.field(
        resolver=resolve.job,
        graphql_type=Job | None,
        description="A background job by ID (null when unknown or not yours to see).",
    )


@strawberry.type
class JobMutation:
    cancel_job = strawberry.mutation(
        resolver=resolve.cancel_job,
        graphql_type=JobPayload,
        description="Stop a job: a queued one at once, a running one at its next step (what "
        "it committed by then stays: see its kind). CONFLICT once it has finished.",
    )
