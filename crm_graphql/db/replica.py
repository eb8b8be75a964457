"""Reads that may lag, served by a PostgreSQL streaming replica (docs/decisions/0024).

With ``CRM_DATABASE_REPLICA_URL`` set, a query operation sent over HTTP by a caller who
has not just written runs on the standby: the compiled statement on the standby's pools
(``crm_graphql.compiled``), an executed query (reports, search, aggregates, introspection
mixed in) on sessions of the standby (``Context.read``). Everything else stays on the
primary: mutations (their payloads included), subscriptions and the live-event stream,
credential checks, rate limits, audit and snapshot refreshes.

The rule, per caller (a user, or an API key):

- after a unit of work of the caller commits, the primary's WAL position
  (``pg_current_wal_insert_lsn()``, taken after the commit, so past its commit record) is
  kept in Redis under the caller for ``max_lag`` + 1 seconds (only ever raised);
- a read goes to the standby only when the standby is up, in recovery, at most
  ``max_lag`` seconds behind, and has replayed past the caller's kept position; else to
  the primary. A key that expired is older than ``max_lag``: a standby no further behind
  than that has replayed the write it stood for;
- a read that fails on the standby (it stopped, a recovery conflict cancelled it) is run
  again on the primary: never an error to the client.

How far behind: a monitor samples the primary's WAL position and then the standby's
replay position every ``poll`` seconds. The standby holds everything committed before
the latest sample it has replayed past, so "behind" is the time since that sample: an
upper bound, which grows when replay stops or the monitor cannot reach the standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncpg
import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_graphql.db.engine import make_read_pool, make_sessionmaker, requests_engine

if TYPE_CHECKING:
    from crm_graphql.services.actor import Actor

log = logging.getLogger("crm_graphql.replica")

# WAL positions as numbers of bytes (``pg_lsn`` compares as that). A write's: the insert
# position, past the commit record whatever ``synchronous_commit`` says (at worst by a
# page header: the writer then reads the primary a little longer). The monitor's: the
# write position, which an idle standby reaches (the insert position may stay a page
# header ahead of anything it can replay).
_WRITTEN_POSITION = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"
_PRIMARY_POSITION = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
_STANDBY_POSITION = (
    "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint"
)
# Keep the highest position written: two mutations of one caller may record out of order.
_KEEP_HIGHEST = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""
# Errors that mean "this server cannot answer now" (not a defect of the statement).
UNREACHABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def database_failure(error: BaseException | None) -> bool:
    """Did ``error`` (or an error it was raised from) come from the database or the way
    to it? What a read on the replica answered with is then asked of the primary."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (DBAPIError, SQLAlchemyTimeoutError, *UNREACHABLE)):
            return True
        error = error.__cause__ or error.__context__
    return False


def caller_key(actor: Actor) -> str:
    """The Redis key of a caller's last write: per API key, else per user."""
    who = f"key:{actor.api_key_id}" if actor.api_key_id is not None else f"user:{actor.user_id}"
    return f"crm:replica:written:{actor.workspace_id}:{who}"


class Replica:
    """The standby's pools and sessions, and whether a caller's read may use them now."""

    def __init__(
        self,
        primary_url: str,
        replica_url: str,
        redis_client: redis.Redis,
        *,
        pool_size: int,
        max_lag: float,
        poll: float,
        primary_engine: AsyncEngine | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary_url = primary_url
        self.replica_url = replica_url
        self.redis = redis_client
        self.pool_size = pool_size
        self.max_lag = max_lag
        self.poll = poll
        self.clock = clock
        self.engine: AsyncEngine = requests_engine(replica_url, pool_size)
        # Summaries refreshed from a read on the standby are written to the primary
        # (``services.snapshots.ensure``).
        self.sessionmaker: async_sessionmaker[AsyncSession] = make_sessionmaker(
            self.engine,
            {"primary_engine": primary_engine} if primary_engine is not None else None,
        )
        self._keep_highest = redis_client.register_script(_KEEP_HIGHEST)
        self._primary: asyncpg.Pool | None = None  # WAL positions of the primary
        self._standby: asyncpg.Pool | None = None  # the replay position of the replica
        self._task: asyncio.Task[None] | None = None
        # (clock, primary position) samples, oldest first, kept for ``max_lag``.
        self._samples: deque[tuple[float, int]] = deque()
        self.replayed: int | None = None  # None: not usable (down, promoted, unknown)
        self.caught_up_at: float | None = None  # the standby holds what committed before
        self._primary_only_until = 0.0

    async def start(self) -> Replica:
        """Take the first sample, then sample every ``poll`` seconds until ``close``."""
        name = "crm_graphql_replica_monitor"
        self._primary = await make_read_pool(self.primary_url, max(2, self.pool_size // 2), name)
        self._standby = await make_read_pool(self.replica_url, 1, name)
        await self.sample()
        self._task = asyncio.create_task(self._monitor(), name="crm-replica-monitor")
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pool in (self._standby, self._primary):
            if pool is not None:
                await pool.close()
        await self.engine.dispose()

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            await self.sample()

    async def sample(self) -> None:
        """One sample of the primary's position, then of the standby's replay."""
        assert self._primary is not None and self._standby is not None
        now = self.clock()
        try:
            position = await self._primary.fetchval(_PRIMARY_POSITION)
        except UNREACHABLE as error:
            log.debug("primary position unknown: %s", error)
        else:
            self._samples.append((now, int(position)))
        try:
            async with asyncio.timeout(max(1.0, self.poll * 5)):
                in_recovery, replayed = await self._standby.fetchrow(_STANDBY_POSITION)
        except UNREACHABLE as error:
            if self.replayed is not None:
                log.warning("replica unusable, reading from the primary: %s", error)
            self.replayed = None
            return
        if not in_recovery or replayed is None:
            # Promoted (or not a standby at all): its positions are not the primary's.
            self.replayed = None
            return
        self.replayed = int(replayed)
        caught_up = [t for t, p in self._samples if p <= self.replayed]
        if caught_up:
            self.caught_up_at = max(caught_up)
        # Needed: the last sample replayed and the newer ones, within the lag bound
        # (a standby further behind is not used whatever it has replayed).
        horizon = max(self.caught_up_at or 0.0, now - self.max_lag - self.poll)
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def lag(self) -> float | None:
        """Seconds the standby may be behind the primary now (None: not usable)."""
        if self.replayed is None or self.caught_up_at is None:
            return None
        return max(0.0, self.clock() - self.caught_up_at)

    def usable(self) -> bool:
        """Up, in recovery, and at most ``max_lag`` behind."""
        lag = self.lag()
        return lag is not None and lag <= self.max_lag and self.clock() >= self._primary_only_until

    async def may_lag(self, actor: Actor | None) -> bool:
        """May this caller's read go to the standby now (the module's rule)? Anonymous
        callers read the primary (they cannot have read-your-writes tracked)."""
        if actor is None or not self.usable():
            return False
        try:
            written = await self.redis.get(caller_key(actor))
        except RedisError:
            return False  # whether the caller just wrote is unknown
        replayed = self.replayed
        return replayed is not None and (written is None or int(written) <= replayed)

    async def wrote(self, actor: Actor | None) -> None:
        """Called after a unit of work of ``actor`` committed: keep the primary's position
        under the caller, so that their next reads wait for the standby to replay it."""
        if actor is None:
            return
        assert self._primary is not None
        try:
            position = await self._primary.fetchval(_WRITTEN_POSITION)
            await self._keep_highest(
                keys=[caller_key(actor)], args=[int(position), int((self.max_lag + 1) * 1000)]
            )
        except (RedisError, *UNREACHABLE) as error:
            # Not kept: this process reads from the primary for as long as the kept
            # position would have mattered (other processes find Redis down or the key).
            log.warning(
                "write position not kept, primary reads for %.0f s: %s", self.max_lag, error
            )
            self._primary_only_until = self.clock() + self.max_lag + 1

    def failed(self, error: BaseException) -> None:
        """A read on the standby failed: not used again until the monitor sees it answer."""
        log.warning("read on the replica failed, reading from the primary: %s", error)
        self.replayed = None
