"""Background jobs (docs/decisions/0033-jobs-and-import.md): work a service queues (an
import, a bulk action) and a runner of any server process carries out
(``crm_graphql/job_runner.py``), as the actor who queued it, reporting its progress.

Seen and cancelled by whoever queued it (a user, or an API key), and by admins and
managers (``Action.MANAGE_JOBS``); anyone else gets ``NOT_FOUND``, as for an unknown id.

Runs are fenced: claiming a job gives it a new ``claim``, and every write of a run names
it (``report``, ``finish``), so a run whose job was taken over, its process presumed dead
after ``lease`` without a heartbeat, changes nothing any more (``LostClaim``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.enums import JobStatus, Role
from crm_graphql.models import Job, JobFile
from crm_graphql.services import credentials, events
from crm_graphql.services.actor import Actor, in_workspace, scope_condition
from crm_graphql.services.errors import Conflict, DomainError, NotFound
from crm_graphql.services.policy import Action, allows, authorize
from crm_graphql.storage import records

FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# Errors kept on a job (``error_count`` counts them all): enough to fix a file by.
MAX_ERRORS = 1000
PROGRESS = "job.progress"
FINISHED = "job.finished"


def topic(job_id: uuid.UUID) -> str:
    """The stream of one job's progress (``jobProgress``)."""
    return f"job:{job_id}"


def visible_condition(actor: Actor) -> ColumnElement[bool]:
    """The jobs ``actor`` may see: its own; every job of the workspace for admins and
    managers (after the read check of every read)."""
    workspace = scope_condition(Job, actor)
    if allows(actor, Action.MANAGE_JOBS):
        return and_(workspace, true())
    if actor.api_key_id is not None:
        return and_(workspace, Job.created_by_api_key_id == actor.api_key_id)
    return and_(workspace, Job.created_by_id == actor.user_id)


async def get_many_visible(
    actor: Actor, session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Job]:
    """Jobs by id that the caller may see."""
    rows = await session.scalars(select(Job).where(visible_condition(actor), Job.id.in_(ids)))
    return {row.id: row for row in rows}


async def get_visible(
    actor: Actor,
    session: AsyncSession,
    id: uuid.UUID | None,
    *,
    field: str = "id",
    for_update: bool = False,
) -> Job:
    """One job the caller may see, else ``NotFound``."""
    if id is None:
        raise NotFound("Job not found", field)
    stmt = select(Job).where(visible_condition(actor), Job.id == id)
    job = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if job is None:
        raise NotFound("Job not found", field)
    return job


async def create_job(
    actor: Actor,
    session: AsyncSession,
    *,
    kind: str,
    params: dict[str, Any],
    action: str,
    file_name: str | None = None,
    content: bytes | None = None,
) -> Job:
    """Queue a job of ``kind`` (with the file it reads, if any), audited as ``action``;
    the caller has checked that the actor may do what the job will do. A runner starts
    it once the transaction commits."""
    job = Job(
        kind=kind,
        status=JobStatus.QUEUED,
        params=params,
        done=0,
        checkpoint=0,
        counts={},
        errors=[],
        error_count=0,
        created_by_id=actor.user_id,
        created_by_api_key_id=actor.api_key_id,
        cancel_requested=False,
        attempts=0,
    )
    await records.create(actor, session, job, action=action)
    if content is not None:
        session.add(
            JobFile(
                job_id=job.id,
                workspace_id=actor.workspace_id,
                name=(file_name or "upload")[:500],
                content=content,
            )
        )
        await session.flush()
    return job


async def cancel_job(actor: Actor, session: AsyncSession, id: uuid.UUID | None) -> Job:
    """Cancel a job: a queued one at once; a running one at its next step (what it
    committed stays, see its kind). One's own jobs; another's takes
    ``Action.MANAGE_JOBS`` (``FORBIDDEN`` otherwise). ``CONFLICT`` once it has finished."""
    authorize(actor, Action.READ_JOBS)
    if id is None:
        raise NotFound("Job not found", "id")
    job = await session.scalar(in_workspace(Job, actor).where(Job.id == id).with_for_update())
    if job is None:
        raise NotFound("Job not found", "id")
    own = (
        job.created_by_api_key_id == actor.api_key_id
        if actor.api_key_id is not None
        else job.created_by_id == actor.user_id
    )
    if not own:
        authorize(actor, Action.MANAGE_JOBS)
    if job.status in FINAL:
        raise Conflict(f"The job has already finished ({job.status.name})", "id")
    if job.status == JobStatus.QUEUED:
        changes: dict[str, Any] = {
            "status": JobStatus.CANCELLED,
            "cancel_requested": True,
            "finished_at": datetime.now(UTC),
        }
        await records.update(actor, session, job, changes, action="cancelJob")
        _record(session, job, FINISHED)
    else:
        await records.update(actor, session, job, {"cancel_requested": True}, action="cancelJob")
    return job


async def file_of(session: AsyncSession, job: Job) -> JobFile | None:
    """The file a job reads (None if it was given none)."""
    return await session.get(JobFile, job.id)


def _record(session: AsyncSession, job: Job, type: str) -> None:
    """The job's progress event, in the transaction that changed it."""
    events.record_event(
        _owner(job),
        session,
        topic=topic(job.id),
        type=type,
        entity_type="Job",
        entity_id=job.id,
        payload={
            "job_id": job.id,
            "status": job.status.value,
            "done": job.done,
            "total": job.total,
            "counts": dict(job.counts),
            "error_count": job.error_count,
        },
    )


def _owner(job: Job) -> Actor:
    """The job's workspace as an actor for writing its events (no permission is asked)."""
    return Actor(
        workspace_id=job.workspace_id,
        role=Role.VIEWER,
        user_id=job.created_by_id,
        api_key_id=job.created_by_api_key_id,
    )


# ------------------------------------------------------------------ the runner's side


class LostClaim(Exception):
    """The job is no longer this run's: another process re-claimed it (this one was
    presumed dead), or it was finished meanwhile. The run stops; its transaction rolls
    back."""


class CancelRequested(Exception):
    """The job's creator (or a manager) asked it to stop."""


@dataclass
class Progress:
    """A run's account of its job, written by ``report``: rows done, work committed for
    good (where a re-claimed run resumes), counts and the first errors."""

    done: int = 0
    checkpoint: int = 0
    total: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0

    def copy(self) -> Progress:
        return Progress(
            self.done,
            self.checkpoint,
            self.total,
            dict(self.counts),
            list(self.errors),
            self.error_count,
        )

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def fail(self, line: int | None, error: DomainError) -> None:
        """Note a bad row (kept among the first ``MAX_ERRORS``)."""
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(
                {"line": line, "field": error.field, "code": error.code, "message": error.message}
            )

    @staticmethod
    def of(job: Job) -> Progress:
        return Progress(
            job.done, job.checkpoint, job.total, dict(job.counts), list(job.errors), job.error_count
        )


@dataclass(frozen=True)
class Claimed:
    """A job this run holds: its id, fencing token, kind, parameters and where it left off."""

    id: uuid.UUID
    claim: uuid.UUID
    kind: str
    params: dict[str, Any]
    progress: Progress
    actor: Actor


async def claim_next(
    session: AsyncSession, *, kinds: Sequence[str], lease: timedelta, max_attempts: int
) -> Claimed | Job | None:
    """Take the oldest runnable job of ``kinds`` (those the runner knows): a queued one,
    or a running one whose run has not sent a heartbeat for ``lease`` (its process
    died). A job interrupted ``max_attempts`` times, or whose creator can no longer act
    (disabled user, revoked key), is failed instead and returned as the ``Job`` (the
    caller commits and goes on).
    Rows locked by another runner are skipped, so each job is claimed by one runner."""
    now = datetime.now(UTC)
    job = await session.scalar(
        select(Job)
        .where(
            Job.kind.in_(list(kinds)),
            or_(
                Job.status == JobStatus.QUEUED,
                and_(Job.status == JobStatus.RUNNING, Job.heartbeat_at < now - lease),
            ),
        )
        .order_by(Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if job is None:
        return None
    if job.status == JobStatus.RUNNING and job.attempts >= max_attempts:
        _finish(session, job, JobStatus.FAILED, f"Interrupted {job.attempts} times; given up")
        return job
    try:
        actor = await actor_of(session, job)
    except DomainError as error:
        _finish(session, job, JobStatus.FAILED, error.message)
        return job
    job.status = JobStatus.RUNNING
    job.claim = uuid.uuid4()
    job.attempts += 1
    job.heartbeat_at = now
    job.started_at = job.started_at or now
    # A re-claimed job resumes from its checkpoint: what its last run reported beyond it
    # was rolled back with that run.
    job.done = job.checkpoint
    await session.flush()
    _record(session, job, PROGRESS)
    return Claimed(job.id, job.claim, job.kind, dict(job.params), Progress.of(job), actor)


async def claim_new(session: AsyncSession, job: Job, actor: Actor) -> Claimed:
    """Claim a job just created in this transaction, to run it here (the CLI): no runner
    ever sees it queued. Run as ``actor``."""
    now = datetime.now(UTC)
    job.status = JobStatus.RUNNING
    job.claim = uuid.uuid4()
    job.attempts = 1
    job.heartbeat_at = job.started_at = now
    await session.flush()
    _record(session, job, PROGRESS)
    return Claimed(job.id, job.claim, job.kind, dict(job.params), Progress.of(job), actor)


async def actor_of(session: AsyncSession, job: Job) -> Actor:
    """The actor a job runs as: its creator with the role or scopes it has now.
    ``Forbidden`` when the creator can no longer act (a user disabled or removed, a key
    revoked, expired or deleted)."""
    return await credentials.standing_actor(
        session,
        workspace_id=job.workspace_id,
        user_id=job.created_by_id,
        api_key_id=job.created_by_api_key_id,
        what="started the job",
        request_id=f"job:{job.id}",
    )


async def heartbeat(session: AsyncSession, claimed: Claimed) -> bool:
    """Tell other runners the run is alive; whether the job is still this run's."""
    found = await session.scalar(
        update(Job)
        .where(Job.id == claimed.id, Job.claim == claimed.claim, Job.status == JobStatus.RUNNING)
        .values(heartbeat_at=func.now(), updated_at=Job.updated_at)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return found is not None


async def report(
    session: AsyncSession, claimed: Claimed, progress: Progress, *, committed: bool
) -> bool:
    """Write the run's progress (and its event) in ``session``'s transaction; with
    ``committed``, the work done so far commits with it (``checkpoint``). Whether the job
    was asked to stop (the run stops before its next piece of work); ``LostClaim`` if the
    job is no longer this run's."""
    if committed:
        progress.checkpoint = progress.done
    values: dict[str, Any] = {
        "done": progress.done,
        "total": progress.total,
        "counts": progress.counts,
        "errors": progress.errors,
        "error_count": progress.error_count,
        "heartbeat_at": func.now(),
    }
    if committed:
        values["checkpoint"] = progress.checkpoint
    row = (
        await session.execute(
            update(Job)
            .where(
                Job.id == claimed.id, Job.claim == claimed.claim, Job.status == JobStatus.RUNNING
            )
            .values(**values)
            .returning(Job.cancel_requested)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if row is None:
        raise LostClaim(str(claimed.id))
    job = await session.get(Job, claimed.id, populate_existing=True)
    assert job is not None
    _record(session, job, PROGRESS)
    return bool(row.cancel_requested)


async def finish(
    session: AsyncSession,
    claimed: Claimed,
    status: JobStatus,
    progress: Progress,
    *,
    result: dict[str, Any] | None = None,
    message: str | None = None,
) -> Job:
    """End the run: the job's final status, counts and result (``LostClaim`` if the job is
    no longer this run's)."""
    job = await session.scalar(
        select(Job)
        .where(Job.id == claimed.id, Job.claim == claimed.claim, Job.status == JobStatus.RUNNING)
        .with_for_update()
    )
    if job is None:
        raise LostClaim(str(claimed.id))
    job.done = progress.done
    job.total = progress.total
    job.counts = progress.counts
    job.errors = progress.errors
    job.error_count = progress.error_count
    if status == JobStatus.SUCCEEDED:
        job.checkpoint = progress.done
    _finish(session, job, status, message, result)
    await session.flush()
    return job


def _finish(
    session: AsyncSession,
    job: Job,
    status: JobStatus,
    message: str | None,
    result: dict[str, Any] | None = None,
) -> None:
    job.status = status
    job.finished_at = datetime.now(UTC)
    job.claim = None
    if message is not None or result is not None:
        job.result = {**(result or {}), **({"message": message} if message else {})}
    _record(session, job, FINISHED)
