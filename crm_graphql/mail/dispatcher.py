"""The mail dispatcher: a background task of every server process (started by the
app's lifespan when a relay is configured) that sends the outbox (``email_messages``
rows written in their message's transaction) over SMTP. Processes share the work through
the database (``FOR UPDATE SKIP LOCKED`` and a lease), as webhook deliveries do, so a
restart loses nothing: a claimed mail whose process died is sent again when its lease
ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.realtime import wait_until_set
from crm_graphql.services import email

log = logging.getLogger(__name__)
CLOSE_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class RelaySettings:
    """The SMTP relay mail is handed to, and how the dispatcher paces itself."""

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    # None: STARTTLS when the server offers it; True: required; False: never.
    starttls: bool | None = None
    use_tls: bool = False  # implicit TLS (port 465)
    timeout_seconds: float = 30.0
    poll_seconds: float = 1.0
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    batch_size: int = 20

    @property
    def lease(self) -> timedelta:
        # Long enough for one attempt; a process dying mid-send only delays the mail.
        return timedelta(seconds=self.timeout_seconds * 3 + 5)


@dataclass(frozen=True)
class SendResult:
    """How the relay took a mail: no error, or why not (and whether for good)."""

    error: str | None
    permanent: bool = False


class MailDispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        config: email.EmailConfig,
        relay: RelaySettings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._config = config
        self._relay = relay
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mail-dispatcher")

    def wake(self) -> None:
        """Look for mail now instead of at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stop after the round in progress; one still running after
        ``CLOSE_GRACE_SECONDS`` is cancelled (its leased mails are sent by whichever
        process runs next)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, CLOSE_GRACE_SECONDS)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away: log, wait, retry
                log.exception("mail dispatcher round failed")
                busy = False
            if not busy and not self._stopping:
                self._wake.clear()
                await wait_until_set(self._wake, self._relay.poll_seconds)

    async def run_once(self) -> bool:
        """One round: claim the due mails, send them, record each outcome. Whether any
        mail was claimed (then go again at once)."""
        async with self._sessionmaker() as session, session.begin():
            jobs = await email.claim_due(
                session, self._config, limit=self._relay.batch_size, lease=self._relay.lease
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
                    max_attempts=self._relay.max_attempts,
                    retry_base_seconds=self._relay.retry_base_seconds,
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
                timeout=relay.timeout_seconds,
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
