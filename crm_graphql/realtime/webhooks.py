"""The webhook dispatcher: a background task of every server process (started by the
app's lifespan) that turns the event log into signed HTTP deliveries. Processes share the
work through the database (``FOR UPDATE SKIP LOCKED``), so running several is safe."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.crypto import Keyring
from crm_graphql.models.events import DeliveryStatus
from crm_graphql.observability import metrics, tracing
from crm_graphql.realtime.outbox import DispatcherSettings, OutboxDispatcher
from crm_graphql.services import webhooks

__all__ = ["DispatcherSettings", "WebhookDispatcher"]


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


class WebhookDispatcher(OutboxDispatcher):
    name = "webhook-dispatcher"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: Keyring,
        settings: DispatcherSettings,
    ) -> None:
        super().__init__(settings)
        self._sessionmaker = sessionmaker
        self._keyring = keyring
        self._client = httpx.AsyncClient(
            timeout=settings.timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": "crm-graphql-webhooks/1"},
        )

    async def close(self) -> None:
        await super().close()
        await self._client.aclose()

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
