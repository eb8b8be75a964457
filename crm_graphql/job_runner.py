"""The job runner: a background task of every server process (started by the app's
lifespan, like the webhook dispatcher) that claims queued jobs (``services.jobs``) and
runs them, one at a time per process. Processes share the queue through the database
(``FOR UPDATE SKIP LOCKED``): a job is run by one of them. A run sends a heartbeat while
it works; a job whose process died is claimed again after ``lease`` and resumes from its
last checkpoint (docs/decisions/0033-jobs-and-import.md).

A job kind is a function ``run(context) -> result`` in ``HANDLERS``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.enums import JobStatus
from crm_graphql.models import Job
from crm_graphql.realtime.bus import Bus
from crm_graphql.realtime.outbox import PollingLoop
from crm_graphql.realtime.unit_of_work import publish_after_commit, unit_of_work
from crm_graphql.resolvers.bulk import run_bulk_change_job
from crm_graphql.services import bulk, imports, jobs
from crm_graphql.services.errors import DomainError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerSettings:
    poll_seconds: float = 1.0
    # A run's heartbeat every third of it; a job silent this long is claimed again.
    lease_seconds: float = 60.0
    # Runs of one job (the first and its re-claims) before it is failed.
    max_attempts: int = 3

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)


@dataclass
class JobContext:
    """What a job kind's function is given: the claimed job (its actor, parameters and
    progress so far) and how to open transactions that publish after commit."""

    claimed: jobs.Claimed
    sessionmaker: async_sessionmaker[AsyncSession]
    bus: Bus
    # What the run has reported; the kind replaces it (``progress = ...``) to undo work
    # its rolled-back transaction did not keep.
    progress: jobs.Progress = field(init=False)
    cancel_requested: bool = False
    # Told of every report (the CLI's progress bar).
    on_progress: Callable[[jobs.Progress], None] | None = None

    def __post_init__(self) -> None:
        self.progress = self.claimed.progress

    def check_cancelled(self) -> None:
        """Stop here (``CancelRequested``) if the job was asked to stop: call it before
        each piece of work."""
        if self.cancel_requested:
            raise jobs.CancelRequested(str(self.claimed.id))

    def transaction(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A transaction of its own, publishing its events after commit."""
        return unit_of_work(self.sessionmaker, self.bus, self.claimed.actor.workspace_id)

    async def report(self, session: AsyncSession | None = None, *, committed: bool) -> None:
        """Write the progress: in ``session``'s transaction (with ``committed``, the work
        of that transaction is the new checkpoint), or in one of its own."""
        if session is not None:
            stop = await jobs.report(session, self.claimed, self.progress, committed=committed)
        else:
            async with self.transaction() as own:
                stop = await jobs.report(own, self.claimed, self.progress, committed=committed)
        self.cancel_requested = self.cancel_requested or stop
        if self.on_progress is not None:
            self.on_progress(self.progress)


Handler = Callable[[JobContext], Awaitable[dict[str, Any] | None]]

# Every job kind: what runs it.
HANDLERS: dict[str, Handler] = {
    **{target.job_kind: run_bulk_change_job for target in bulk.TARGETS},
    imports.JOB_KIND: imports.run_import_job,
}


class JobRunner(PollingLoop):
    """Claims queued jobs and runs them to their end, one at a time, in a polling loop of
    the server process (``realtime.outbox.PollingLoop``)."""

    name = "job-runner"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: Bus,
        settings: RunnerSettings,
        handlers: dict[str, Handler] | None = None,
        *,
        on_progress: Callable[[jobs.Progress], None] | None = None,
    ) -> None:
        super().__init__(settings.poll_seconds)
        self._sessionmaker = sessionmaker
        self._bus = bus
        self._settings = settings
        self._handlers = handlers if handlers is not None else HANDLERS
        self._on_progress = on_progress

    async def close(self) -> None:
        """Stop. A run still going is cancelled at once (a job may run for minutes): its
        transaction rolls back, and another process (or this one, restarted) claims the
        job again once its lease runs out."""
        if self._task is not None:
            self._task.cancel()
        await super().close()

    async def run_once(self) -> bool:
        """Claim one job and run it to its end. Whether there was one."""
        async with self._sessionmaker() as session:
            async with session.begin():
                claimed = await jobs.claim_next(
                    session,
                    kinds=sorted(self._handlers),
                    lease=self._settings.lease,
                    max_attempts=self._settings.max_attempts,
                )
            await publish_after_commit(self._bus, session)
        if claimed is None:
            return False
        if isinstance(claimed, Job):  # failed without running (see ``claim_next``)
            return True
        await self.run(claimed)
        return True

    async def run(self, claimed: jobs.Claimed) -> None:
        """Run a claimed job, with its heartbeat, and record how it ended."""
        context = JobContext(claimed, self._sessionmaker, self._bus, on_progress=self._on_progress)
        handler = self._handlers.get(claimed.kind)
        result: dict[str, Any] | None = None
        message: str | None = None
        try:
            async with self._heartbeat(claimed):
                if handler is None:
                    raise DomainError(f"Unknown job kind {claimed.kind!r}")
                result = await handler(context)
            status = JobStatus.SUCCEEDED
        except jobs.LostClaim:
            log.warning("job %s was claimed by another runner; this run stops", claimed.id)
            return
        except jobs.CancelRequested:
            status = JobStatus.CANCELLED
        except DomainError as error:
            status, message = JobStatus.FAILED, error.message
        except asyncio.CancelledError:
            raise  # shutting down: the job is claimed again after its lease
        except Exception:
            log.exception("job %s (%s) failed", claimed.id, claimed.kind)
            status, message = JobStatus.FAILED, "The job failed unexpectedly"
        try:
            async with context.transaction() as session:
                await jobs.finish(
                    session, claimed, status, context.progress, result=result, message=message
                )
        except jobs.LostClaim:
            log.warning("job %s was claimed by another runner before it finished", claimed.id)

    @contextlib.asynccontextmanager
    async def _heartbeat(self, claimed: jobs.Claimed) -> AsyncIterator[None]:
        """Beat every third of the lease while the body runs (a long transaction of the
        run, holding no lock on the job row, does not stop it)."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self._settings.lease_seconds / 3)
                try:
                    async with self._sessionmaker() as session, session.begin():
                        if not await jobs.heartbeat(session, claimed):
                            return
                except Exception:  # a missed beat only risks a re-claim
                    log.warning("job %s: heartbeat failed", claimed.id, exc_info=True)

        task = asyncio.create_task(beat(), name=f"job-heartbeat-{claimed.id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
