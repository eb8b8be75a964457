"""What the webhook and mail dispatchers share: rows written in the change's transaction
(an outbox) are sent after commit by a background task of every server process, which
claims due rows (``SKIP LOCKED`` and a lease), sends them and records the outcome, retrying
with backoff. This is the task's loop and its pacing; what is claimed and how it is sent
is each dispatcher's own (``run_once``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from crm_graphql.realtime import wait_until_set

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


class PollingLoop:
    """A background task of every server process: ``run_once`` again at once while it
    finds work, else after ``poll_seconds`` or a ``wake``; a failed round (the database
    away) is logged and tried again at the next poll. The outbox dispatchers below and
    the job runner (``crm_graphql.job_runner``) are such loops."""

    name = "polling-loop"

    def __init__(self, poll_seconds: float) -> None:
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()  # set between rounds, waiting for a poll or a wake

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stop after the round in progress. A round still running after
        ``CLOSE_GRACE_SECONDS`` (a slow receiver, an unreachable database) is cancelled:
        shutdown stays quick, and what it had leased is taken again by whichever process
        runs next."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, CLOSE_GRACE_SECONDS)

    async def settled(self) -> None:
        """Return once no round is in progress or due: the loop waits for its next poll
        and nothing woke it. (A test process pauses its event loop between tests: a round
        paused in an open transaction that wrote would hold back every live event of the
        database until the loop runs again.)"""
        while self._task is not None and not self._task.done():
            if not self._idle.is_set():
                await self._idle.wait()
            elif self._wake.is_set():  # woken, its round not begun yet: let it begin
                await asyncio.sleep(0.01)
            else:
                return

    async def run_once(self) -> bool:
        """One round; whether to go again at once."""
        raise NotImplementedError

    async def _run(self) -> None:
        while not self._stopping:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away: log, wait, retry
                log.exception("%s round failed", self.name)
                busy = False
            if not busy and not self._stopping:
                self._wake.clear()
                self._idle.set()
                try:
                    await wait_until_set(self._wake, self._poll_seconds)
                finally:
                    self._idle.clear()


class OutboxDispatcher(PollingLoop):
    """An outbox's sender: claims due rows, sends them, records the outcome."""

    name = "outbox-dispatcher"

    def __init__(self, settings: DispatcherSettings) -> None:
        super().__init__(settings.poll_seconds)
        self._settings = settings
