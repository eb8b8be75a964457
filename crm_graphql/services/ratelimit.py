"""Rate limits kept in Redis, shared by every server process.

The algorithm is GCRA (the generic cell rate algorithm, a leaky bucket that stores one
timestamp per key): a limit of ``limit`` requests per ``period`` lets a burst of
``limit`` through and then one every ``period / limit``. One Lua script decides and
updates atomically, with Redis's own clock unless a clock is injected (tests), so
processes whose clocks disagree still share one bucket.

Buckets:
- ``user:<id>`` / ``key:<id>``: every request (and WebSocket operation) of a logged-in
  user or a partner API key; an HTTP batch counts one per operation;
- ``ip:<address>``: requests without credentials (they can only log in or refresh);
- ``login:<address>``: ``login`` attempts per client address;
- ``login-fail-ip:<address>`` and ``login-fail-email:<hmac of the email>``: failed logins.
  While either is exhausted, ``login`` answers ``RATE_LIMITED`` before looking at the
  email or the password, so the answer is the same whether or not the account exists,
  and a correct password guessed while blocked is not confirmed.

When Redis cannot be reached the limiter fails open: requests are served and a warning
is logged (at most once a minute). Rate limiting protects capacity; refusing every
request because Redis restarted would turn a small outage into a full one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import NoScriptError, RedisError

from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError

if TYPE_CHECKING:
    import redis.asyncio as redis

    from crm_graphql.settings import Settings

log = logging.getLogger(__name__)

MINUTE = 60.0

# KEYS[1] bucket. ARGV: now in ms (negative: Redis TIME), period ms, limit, cost,
# write (1 to record the hit, 0 to only ask). Returns
# {allowed, retry_after_ms, remaining, reset_ms}.
_GCRA = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local period = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - period
if allow_at > now then
  local remaining = math.floor((period - (tat - now)) / interval)
  return {0, math.ceil(allow_at - now), remaining, math.ceil(tat - now)}
end
if ARGV[5] == '1' then
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
end
return {1, 0, math.floor((period - (new_tat - now)) / interval), math.ceil(new_tat - now)}
"""


@dataclass(frozen=True)
class Bucket:
    """A named limit: ``limit`` hits per ``period`` seconds."""

    key: str
    limit: int
    period: float = MINUTE


@dataclass(frozen=True)
class Decision:
    """The answer for one hit, with what the ``RateLimit-*`` headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until a refused hit would be allowed (0 when allowed)
    period: float = MINUTE
    enforced: bool = True  # False when Redis could not be asked (failed open)

    def headers(self) -> dict[str, str]:
        """``RateLimit-Limit/Remaining/Reset`` (IETF httpapi draft), ``RateLimit-Policy``
        and, when refused, ``Retry-After``."""
        if not self.enforced:
            return {}
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{self.limit};w={int(self.period)}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimited(DomainError):
    """Too many requests: retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(
            message or f"Too many requests; retry in {retry_after} s", None, "RATE_LIMITED"
        )
        self.retry_after = retry_after


class RateLimiter:
    """GCRA buckets in Redis (module docstring). ``clock`` (seconds) replaces Redis's
    clock in tests."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "crm:rl:",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self._sha = hashlib.sha1(_GCRA.encode()).hexdigest()
        self._last_warning = -math.inf

    async def hit(self, bucket: Bucket, cost: int = 1) -> Decision:
        """Count ``cost`` hits if the bucket allows them all; refuse them all otherwise."""
        return await self._run(bucket, cost, write=True)

    async def peek(self, bucket: Bucket) -> Decision:
        """Would one more hit be allowed? Records nothing."""
        return await self._run(bucket, 1, write=False)

    async def _run(self, bucket: Bucket, cost: int, *, write: bool) -> Decision:
        if bucket.limit <= 0:
            return Decision(True, 0, 0, 0, 0, bucket.period, enforced=False)
        now = -1 if self.clock is None else int(self.clock() * 1000)
        args = (now, int(bucket.period * 1000), bucket.limit, cost, 1 if write else 0)
        try:
            try:
                reply = await self.client.evalsha(self._sha, 1, self.prefix + bucket.key, *args)
            except NoScriptError:  # first use on this Redis (or after a restart)
                self._sha = await self.client.script_load(_GCRA)
                reply = await self.client.evalsha(self._sha, 1, self.prefix + bucket.key, *args)
            allowed, retry_ms, remaining, reset_ms = reply
        except (RedisError, OSError):
            self._warn()
            return Decision(True, bucket.limit, bucket.limit, 0, 0, bucket.period, enforced=False)
        return Decision(
            allowed=bool(allowed),
            limit=bucket.limit,
            remaining=int(remaining),
            reset=math.ceil(int(reset_ms) / 1000),
            retry_after=max(1, math.ceil(int(retry_ms) / 1000)) if not allowed else 0,
            period=bucket.period,
        )

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._last_warning >= MINUTE:
            self._last_warning = now
            log.warning("rate limits not enforced: Redis is unreachable", exc_info=True)


def actor_bucket(actor: Actor | None, client_ip: str | None, settings: Settings) -> Bucket | None:
    """The bucket a request counts against: its API key, its user, or (no credentials)
    its client address. None when rate limits are off."""
    if not settings.rate_limits:
        return None
    if actor is not None and actor.api_key_id is not None:
        return Bucket(f"key:{actor.api_key_id}", settings.rate_limit_api_key_per_minute)
    if actor is not None and actor.user_id is not None:
        return Bucket(f"user:{actor.user_id}", settings.rate_limit_user_per_minute)
    return Bucket(f"ip:{client_ip or 'unknown'}", settings.rate_limit_anonymous_per_minute)


# ------------------------------------------------------------------------------ logins


@dataclass(frozen=True)
class LoginThrottle:
    """Attempts per client address, and failures per address and per email."""

    attempts_per_minute: int
    failures_per_ip: int
    failures_per_email: int
    failure_window: float
    secret: str

    @classmethod
    def from_settings(cls, settings: Settings, secret: str) -> LoginThrottle | None:
        if not settings.rate_limits:
            return None
        return cls(
            attempts_per_minute=settings.login_attempts_per_minute,
            failures_per_ip=settings.login_failures_per_ip,
            failures_per_email=settings.login_failures_per_email,
            failure_window=float(settings.login_failure_window_seconds),
            secret=secret,
        )

    def _email_key(self, email: str) -> str:
        # Keyed hash: Redis never holds emails, nor hashes one could look emails up by.
        digest = hmac.new(self.secret.encode(), email.strip().lower().encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def _failure_buckets(self, client_ip: str | None, email: str) -> list[Bucket]:
        return [
            Bucket(
                f"login-fail-ip:{client_ip or 'unknown'}", self.failures_per_ip, self.failure_window
            ),
            Bucket(
                f"login-fail-email:{self._email_key(email)}",
                self.failures_per_email,
                self.failure_window,
            ),
        ]

    async def before_attempt(
        self, limiter: RateLimiter, *, client_ip: str | None, email: str
    ) -> None:
        """Raise ``RateLimited`` when this address tries too often, or when it or the
        email has failed too often; the same whether or not the account exists."""
        attempts = await limiter.hit(
            Bucket(f"login:{client_ip or 'unknown'}", self.attempts_per_minute)
        )
        if not attempts.allowed:
            raise RateLimited(attempts.retry_after, "Too many login attempts; retry later")
        for bucket in self._failure_buckets(client_ip, email):
            decision = await limiter.peek(bucket)
            if not decision.allowed:
                raise RateLimited(decision.retry_after, "Too many failed logins; retry later")

    async def failed(self, limiter: RateLimiter, *, client_ip: str | None, email: str) -> None:
        """Count a failed login against the address and the email."""
        for bucket in self._failure_buckets(client_ip, email):
            await limiter.hit(bucket)
