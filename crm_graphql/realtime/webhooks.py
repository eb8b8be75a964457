"""The webhook dispatcher: a background task of every server process (started by the
app's lifespan) that turns the event log into signed HTTP deliveries. Processes share the
work through the database (``FOR UPDATE SKIP LOCKED``), so running several is safe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.crypto import Keyring
from crm_graphql.models.events import DeliveryStatus
from crm_graphql.observability import metrics, tracing
from crm_graphql.realtime import wait_until_set
from crm_graphql.services import webhooks

log = logging.getLogger(__name__)
CLOSE_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class DispatcherSettings:
    poll_seconds: float = 1.0
    timeout_seconds: float = 10.0
    max_attempts: int = 12
    retry_base_seconds: float = 10.0
    batch_size: int = 50

    @property
    def lease(self) -> timedelta:
        # Long enough for one attempt to finish; a process dying mid-attempt only delays.
        return timedelta(seconds=self.timeout_seconds * 3 + 5)


@dataclass(frozen=True)
class Attempt:
    """One POST of a delivery: the receiver's status (None: no answer), the error, when
    it started and how long it took."""

    status_code: int | None
    error: str | None
    attempted_at: datetime
    duration_ms: int


# What ``record_outcome`` decided, as counted at /metrics.
_ATTEMPT_OUTCOMES = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.PENDING: "retry",
    DeliveryStatus.FAILED: "failed",
}


class WebhookDispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: Keyring,
        settings: DispatcherSettings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._keyring = keyring
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._client = httpx.AsyncClient(
            timeout=settings.timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": "crm-graphql-webhooks/1"},
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stop after the round in progress (its outcomes are recorded). A round still
        running after ``CLOSE_GRACE_SECONDS`` (a slow receiver, an unreachable database)
        is cancelled: shutdown stays quick, and its leased deliveries are made again by
        whichever process runs next."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, CLOSE_GRACE_SECONDS)
        await self._client.aclose()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away: log, wait, retry
                log.exception("webhook dispatcher round failed")
                busy = False
            if not busy and not self._stopping:
                self._wake.clear()
                await wait_until_set(self._wake, self._settings.poll_seconds)

    async def run_once(self) -> bool:
        """One round: enqueue new events, make the due deliveries. Whether to go again
        at once."""
        with tracing.quiet():  # polled every second: traced are the deliveries
            async with self._sessionmaker() as session, session.begin():
                enqueued = await webhooks.enqueue_deliveries(session)
            async with self._sessionmaker() as session, session.begin():
                jobs = await webhooks.claim_due(
                    session,
                    self._keyring,
                    limit=self._settings.batch_size,
                    lease=self._settings.lease,
                )
        if jobs:
            outcomes = await asyncio.gather(*(self._deliver(job) for job in jobs))
            # One transaction records the whole round's outcomes.
            async with self._sessionmaker() as session, session.begin():
                recorded = [
                    await webhooks.record_outcome(
                        session,
                        job,
                        status_code=outcome.status_code,
                        error=outcome.error,
                        max_attempts=self._settings.max_attempts,
                        retry_base_seconds=self._settings.retry_base_seconds,
                        attempted_at=outcome.attempted_at,
                        duration_ms=outcome.duration_ms,
                    )
                    for job, outcome in zip(jobs, outcomes, strict=True)
                ]
            for outcome in recorded:  # counted once committed
                metrics.WEBHOOK_ATTEMPTS.labels(_ATTEMPT_OUTCOMES[outcome]).inc()
        # Go again at once only with a backlog (a full page of events, or deliveries made).
        # A round per few events would be a write transaction each (the cursor), and every
        # running writer holds the event horizon back for all stream readers.
        return enqueued >= webhooks.ENQUEUE_BATCH or bool(jobs)

    async def _deliver(self, job: webhooks.DeliveryJob) -> Attempt:
        """POST one delivery: how the receiver answered, when and how fast."""
        headers = {
            "Content-Type": "application/json",
            webhooks.DELIVERY_HEADER: job.delivery_key,
            webhooks.EVENT_HEADER: job.event_type,
            webhooks.SIGNATURE_HEADER: webhooks.sign(job.secret, int(time.time()), job.body),
        }
        status: int | None = None
        error: str | None = None
        with tracing.span(
            "webhook delivery",
            **{"crm.event_type": job.event_type, "crm.attempt": job.attempt},
        ) as span:
            attempted_at = datetime.now(UTC)
            started = time.perf_counter()
            try:
                response = await self._client.post(job.url, content=job.body, headers=headers)
                status = response.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            duration_ms = round((time.perf_counter() - started) * 1000)
            if span is not None and status is not None:
                span.set_attribute("http.response.status_code", status)
        return Attempt(status, error, attempted_at, duration_ms)
