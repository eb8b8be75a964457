"""The mail dispatcher: a background task of every server process (started by the
app's lifespan when a relay is configured) that sends the outbox (``email_messages``
rows written in their message's transaction) over SMTP. Processes share the work through
the database (``FOR UPDATE SKIP LOCKED`` and a lease), the loop is the webhook
dispatcher's (``realtime/outbox.py``), so a restart loses nothing: a claimed mail whose
process died is sent again when its lease ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.realtime.outbox import DispatcherSettings, OutboxDispatcher
from crm_graphql.services import email


@dataclass(frozen=True)
class RelaySettings:
    """The SMTP relay mail is handed to; ``pacing``: polls, timeout, attempts, backoff."""

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    # None: STARTTLS when the server offers it; True: required; False: never.
    starttls: bool | None = None
    use_tls: bool = False  # implicit TLS (port 465)
    pacing: DispatcherSettings = field(
        default_factory=lambda: DispatcherSettings(
            timeout_seconds=30.0, max_attempts=8, retry_base_seconds=30.0, batch_size=20
        )
    )


@dataclass(frozen=True)
class SendResult:
    """How the relay took a mail: no error, or why not (and whether for good)."""

    error: str | None
    permanent: bool = False


class MailDispatcher(OutboxDispatcher):
    name = "mail-dispatcher"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        config: email.EmailConfig,
        relay: RelaySettings,
    ) -> None:
        super().__init__(relay.pacing)
        self._sessionmaker = sessionmaker
        self._config = config
        self._relay = relay

    async def run_once(self) -> bool:
        """One round: claim the due mails, send them, record each outcome. Whether any
        mail was claimed (then go again at once)."""
        pacing = self._settings
        async with self._sessionmaker() as session, session.begin():
            jobs = await email.claim_due(
                session, self._config, limit=pacing.batch_size, lease=pacing.lease
            )
        if not jobs:
            return False
        results = await asyncio.gather(*(self._send(job) for job in jobs))
        for job, result in zip(jobs, results, strict=True):
            # One transaction per outcome: each takes its conversation's event lock.
            async with self._sessionmaker() as session, session.begin():
                await email.record_outcome(
                    session,
                    job,
                    error=result.error,
                    permanent=result.permanent,
                    max_attempts=pacing.max_attempts,
                    retry_base_seconds=pacing.retry_base_seconds,
                )
        return True

    async def _send(self, job: email.OutboundJob) -> SendResult:
        relay = self._relay
        try:
            await aiosmtplib.send(
                job.content,
                sender=job.sender,
                recipients=job.recipients,
                hostname=relay.host,
                port=relay.port,
                username=relay.username,
                password=relay.password,
                start_tls=relay.starttls,
                use_tls=relay.use_tls,
                timeout=self._settings.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            reasons = "; ".join(f"{r.message} ({r.code})" for r in exc.recipients)
            permanent = all(r.code >= 500 for r in exc.recipients)
            return SendResult(f"Recipient refused: {reasons}", permanent)
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx: the relay will never take it; 4xx: try again later.
            return SendResult(f"SMTP {exc.code}: {exc.message}", exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return SendResult(None)
