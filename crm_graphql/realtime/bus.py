"""Publishing after commit. The event rows in PostgreSQL are the truth; Redis only tells
other processes that a topic has new rows, so a lost notification loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable

import redis.asyncio as redis
from redis.exceptions import RedisError

from crm_graphql.logs import RepeatedWarning
from crm_graphql.realtime.batches import Batches

log = logging.getLogger(__name__)


REDIS_TIMEOUT = 2.0  # seconds a best-effort Redis call may take before it is given up

# The channel of a workspace's data changes: the message is the tables a transaction
# wrote, comma-separated (``realtime.dashboards`` listens).
CHANGES = "changes"


def channel_name(workspace_id: uuid.UUID, topic: str) -> str:
    return f"crm:{workspace_id}:{topic}"


class Bus:
    def __init__(
        self,
        client: redis.Redis,
        *,
        warn_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        # While Redis is down every write would log its failure: one line per interval,
        # with how many notifications were lost since the previous one.
        self.publish_failed = RepeatedWarning(log, warn_every, clock)
        # Notices of commits that come while others are being published go out together.
        self._batches: Batches[list[tuple[str, str]]] = Batches(self._publish)

    @classmethod
    def from_url(cls, url: str) -> Bus:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    async def notify(
        self,
        topics: Iterable[tuple[uuid.UUID, str]],
        changes: Iterable[tuple[uuid.UUID, Iterable[str]]] = (),
    ) -> None:
        """Tell subscribers that topics have new events, and live dashboards which tables
        of a workspace changed; returns once they were sent. Failure is logged, not
        raised: the change is committed and subscribers catch up from PostgreSQL
        (dashboards on their next refresh).

        Notices of concurrent commits are sent together (``Batches``: one pipeline while
        the previous one is on its way), and a notice the same batch already holds is sent
        once: a notice only says "read again", so two equal ones wake nobody twice."""
        messages = [(channel_name(w, topic), topic) for w, topic in topics]
        messages += [(channel_name(w, CHANGES), ",".join(sorted(t))) for w, t in changes]
        if messages:
            await self._batches.add(messages)

    async def _publish(self, batch: list[list[tuple[str, str]]]) -> None:
        """One batch's notices in one pipeline, given up after ``REDIS_TIMEOUT``: the
        next batches wait for this one, so a Redis that does not answer must not hold
        every commit's notice (and answer) of the process."""
        messages = list(dict.fromkeys(m for messages in batch for m in messages))
        try:
            async with (
                asyncio.timeout(REDIS_TIMEOUT),
                self.client.pipeline(transaction=False) as pipe,
            ):
                for channel, message in messages:
                    pipe.publish(channel, message)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            self.publish_failed(
                "could not publish %d notifications to Redis%s",
                count=len(messages),
                exc_info=True,
            )

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self.client.aclose()
