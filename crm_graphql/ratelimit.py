"""Rate limits kept in Redis, shared by every server process.

The algorithm is GCRA (the generic cell rate algorithm, a leaky bucket that stores one
timestamp per key): a limit of ``limit`` requests per ``period`` lets a burst of
``limit`` through and then one every ``period / limit``. One Lua script decides and
updates atomically, with Redis's own clock unless a clock is injected (tests), so
processes whose clocks disagree still share one bucket.

Buckets:
- ``user:<id>`` / ``key:<id>``: every request (and WebSocket operation) of a logged-in
  user or a partner API key (at the key's own budget when an admin set one); an HTTP
  batch counts one per operation;
- ``ip:<address>``: requests without credentials (they can only log in or refresh);
- ``login:<address>``: ``login`` attempts per client address;
- failed logins: ``login-fail-ip:<address>`` per address, ``login-fail-pair:<hmac of
  email and address>`` per email from one address, and ``login-fail-email:<hmac of the
  email>`` per email from the addresses it has never logged in from (a success from an
  address sets ``login-known:<hmac of email and address>`` for
  ``login_known_address_days``). An attempt reserves a failure in each of its budgets
  *before* the email is looked up or the password verified, in one atomic script with
  its attempt, so concurrent attempts never check more than a budget; a right password
  gives the reservation back. While a budget is spent, ``login`` answers
  ``RATE_LIMITED``: the same answer whether or not the account exists, and a correct
  password guessed while blocked is not confirmed. Guessing one account from many
  addresses spends its email budget, which addresses its owner logged in from do not
  need: a third party can slow new devices, not lock the owner out.

When Redis cannot be reached the limiter fails open: requests are served and a warning
is logged (at most once a minute). Rate limiting protects capacity; refusing every
request because Redis restarted would turn a small outage into a full one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError

from crm_graphql.logs import RepeatedWarning
from crm_graphql.observability.metrics import RATE_LIMIT_REFUSALS
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError

if TYPE_CHECKING:
    import redis.asyncio as redis

    from crm_graphql.settings import Settings

log = logging.getLogger(__name__)

MINUTE = 60.0

# ARGV[1]: now in ms, or negative for Redis's own clock (shared by every process).
_NOW = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: buckets. ARGV: now in ms (negative: Redis TIME), write (1 to record the hits, 0
# to only ask), then period ms, limit and cost of each bucket. All buckets allow their
# hits or none is recorded. Returns {allowed, retry_after_ms, remaining, reset_ms, index}
# of the first bucket when all allow, else of the bucket that refuses longest (index
# from 1).
_GCRA = (
    _NOW
    + """
local first = nil
local refused = nil
local writes = {}
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[3 * i])
  local limit = tonumber(ARGV[3 * i + 1])
  local cost = tonumber(ARGV[3 * i + 2])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - period
  if allow_at > now then
    local retry = math.ceil(allow_at - now)
    if refused == nil or retry > refused[2] then
      local remaining = math.floor((period - (tat - now)) / interval)
      refused = {0, retry, remaining, math.ceil(tat - now), i}
    end
  else
    writes[i] = new_tat
    if first == nil then
      local remaining = math.floor((period - (new_tat - now)) / interval)
      first = {1, 0, remaining, math.ceil(new_tat - now), i}
    end
  end
end
if refused ~= nil then return refused end
if ARGV[2] == '1' then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, tostring(writes[i]), 'PX', math.ceil(writes[i] - now) + 1)
  end
end
return first
"""
)

# KEYS: buckets. ARGV: now in ms (negative: Redis TIME), then period ms, limit and cost
# of each bucket: give the hits back (a reserved attempt that did not use them up).
_GCRA_RELEASE = (
    _NOW
    + """
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key))
  if tat ~= nil then
    local interval = tonumber(ARGV[3 * i - 1]) / tonumber(ARGV[3 * i])
    local new_tat = tat - interval * tonumber(ARGV[3 * i + 1])
    if new_tat <= now then
      redis.call('DEL', key)
    else
      redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
    end
  end
end
return 1
"""
)
_SCRIPTS = (_GCRA, _GCRA_RELEASE)


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
    key: str = ""  # the bucket that decided

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

    def throttle_status(self) -> dict[str, Any] | None:
        """What ``extensions.cost.throttleStatus`` reports (the ``RateLimit-*`` headers in
        the names Shopify's clients read): the bucket's size, what is left of it, how
        many operations it gets back a second and in how many seconds it is full. None
        when nothing was enforced."""
        if not self.enforced:
            return None
        return {
            "maximumAvailable": self.limit,
            "currentlyAvailable": max(0, self.remaining),
            "restoreRate": round(self.limit / self.period, 3),
            "resetSeconds": self.reset,
            "windowSeconds": int(self.period),
        }


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
        self._shas = {source: hashlib.sha1(source.encode()).hexdigest() for source in _SCRIPTS}
        self._warning = RepeatedWarning(log, interval=MINUTE)

    async def hit(self, bucket: Bucket, cost: int = 1) -> Decision:
        """Count ``cost`` hits if the bucket allows them all; refuse them all otherwise."""
        return await self._run([bucket], cost, write=True)

    async def peek(self, bucket: Bucket) -> Decision:
        """Would one more hit be allowed? Records nothing."""
        return await self._run([bucket], 1, write=False)

    async def hit_all(self, buckets: Sequence[Bucket]) -> Decision:
        """One hit in every bucket if each allows it, in none otherwise: decided and
        recorded atomically, so concurrent callers can never all pass. The decision is
        the first bucket's, or that of the bucket refusing longest (``Decision.key``)."""
        return await self._run(buckets, 1, write=True)

    async def release(self, buckets: Sequence[Bucket]) -> None:
        """Give one hit back to each bucket (reserved by ``hit_all`` for something that
        turned out not to count)."""
        active = [b for b in buckets if b.limit > 0]
        if not active:
            return
        args = [self._now(), *(a for b in active for a in (int(b.period * 1000), b.limit, 1))]
        try:
            await self._eval(_GCRA_RELEASE, [self.prefix + b.key for b in active], args)
        except (RedisError, OSError):
            self._warn()

    async def remember(self, key: str, seconds: float) -> None:
        """Keep a flag ``key`` for ``seconds``."""
        try:
            await self.client.set(self.prefix + key, "1", px=int(seconds * 1000))
        except (RedisError, OSError):
            self._warn()

    async def remembers(self, key: str) -> bool:
        """Whether the flag ``key`` is kept (False when Redis cannot say)."""
        try:
            return bool(await self.client.exists(self.prefix + key))
        except (RedisError, OSError):
            self._warn()
            return False

    def _now(self) -> int:
        return -1 if self.clock is None else int(self.clock() * 1000)

    async def _eval(self, source: str, keys: list[str], args: list[int]) -> Any:
        try:
            return await self.client.evalsha(self._shas[source], len(keys), *keys, *args)
        except NoScriptError:  # first use on this Redis (or after a restart)
            self._shas[source] = await self.client.script_load(source)
            return await self.client.evalsha(self._shas[source], len(keys), *keys, *args)

    async def _run(self, buckets: Sequence[Bucket], cost: int, *, write: bool) -> Decision:
        active = [b for b in buckets if b.limit > 0]
        if not active:
            return Decision(True, 0, 0, 0, 0, MINUTE, enforced=False)
        args = [self._now(), 1 if write else 0]
        args += [a for b in active for a in (int(b.period * 1000), b.limit, cost)]
        try:
            reply = await self._eval(_GCRA, [self.prefix + b.key for b in active], args)
            allowed, retry_ms, remaining, reset_ms, index = reply
        except (RedisError, OSError):
            self._warn()
            first = active[0]
            return Decision(True, first.limit, first.limit, 0, 0, first.period, enforced=False)
        bucket = active[int(index) - 1]
        if write and not allowed:
            RATE_LIMIT_REFUSALS.labels(bucket.key.partition(":")[0]).inc()
        return Decision(
            allowed=bool(allowed),
            limit=bucket.limit,
            remaining=int(remaining),
            reset=math.ceil(int(reset_ms) / 1000),
            retry_after=max(1, math.ceil(int(retry_ms) / 1000)) if not allowed else 0,
            period=bucket.period,
            key=bucket.key,
        )

    def _warn(self) -> None:
        self._warning(
            "rate limits not enforced: Redis is unreachable (%d time(s)%s)", exc_info=True
        )


def actor_bucket(actor: Actor | None, client_ip: str | None, settings: Settings) -> Bucket | None:
    """The bucket a request counts against: its API key, its user, or (no credentials)
    its client address. None when rate limits are off."""
    if not settings.rate_limits:
        return None
    if actor is not None and actor.api_key_id is not None:
        # A key's own budget (set by an admin) or the server's for every key.
        limit = actor.rate_limit_per_minute or settings.rate_limit_api_key_per_minute
        return Bucket(f"key:{actor.api_key_id}", limit)
    if actor is not None and actor.user_id is not None:
        return Bucket(f"user:{actor.user_id}", settings.rate_limit_user_per_minute)
    return Bucket(f"ip:{client_ip or 'unknown'}", settings.rate_limit_anonymous_per_minute)


# ------------------------------------------------------------------------------ logins


@dataclass(frozen=True)
class LoginAttempt:
    """The failure budget a login attempt reserved before the password was looked at:
    kept when the password turns out wrong, given back otherwise."""

    failures: tuple[Bucket, ...]
    known_address: str  # the flag of this email and address, set by a success


@dataclass(frozen=True)
class LoginThrottle:
    """Login attempts per address; failures per address, per email and address, and per
    email from addresses it has never logged in from (module docstring, decision 0003)."""

    attempts_per_minute: int
    failures_per_ip: int
    failures_per_email: int
    failure_window: float
    known_address_seconds: float
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
            known_address_seconds=settings.login_known_address_days * 86400.0,
            secret=secret,
        )

    def _digest(self, *parts: str) -> str:
        # Keyed hash: Redis never holds emails, nor hashes one could look emails up by.
        message = "\n".join(parts).encode()
        return hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()[:32]

    async def reserve(
        self, limiter: RateLimiter, *, client_ip: str | None, email: str
    ) -> LoginAttempt:
        """Count this attempt, and a failure in each failure budget, before the email is
        looked up or the password verified: all at once and atomically, so however many
        attempts run concurrently, no more than a budget's worth are ever checked. Raise
        ``RateLimited`` when a budget is spent: the same answer whether or not the
        account exists, and a correct password is not confirmed."""
        address = client_ip or "unknown"
        normalized = email.strip().lower()
        pair = self._digest(normalized, address)
        failures = [
            Bucket(f"login-fail-ip:{address}", self.failures_per_ip, self.failure_window),
            Bucket(f"login-fail-pair:{pair}", self.failures_per_email, self.failure_window),
        ]
        known = f"login-known:{pair}"
        if not await limiter.remembers(known):
            # Guessing one account from many addresses is slowed by the email's budget;
            # addresses it has logged in from keep their own (a third party cannot
            # lock its owner out).
            email_key = f"login-fail-email:{self._digest(normalized)}"
            failures.append(Bucket(email_key, self.failures_per_email, self.failure_window))
        attempts = Bucket(f"login:{address}", self.attempts_per_minute)
        decision = await limiter.hit_all([attempts, *failures])
        if not decision.allowed:
            what = "login attempts" if decision.key == attempts.key else "failed logins"
            raise RateLimited(decision.retry_after, f"Too many {what}; retry later")
        return LoginAttempt(tuple(failures), known)

    async def succeeded(self, limiter: RateLimiter, attempt: LoginAttempt) -> None:
        """The password was right: the failures reserved are given back, and the address
        is known for this email from now on."""
        await limiter.release(attempt.failures)
        await limiter.remember(attempt.known_address, self.known_address_seconds)

    async def not_checked(self, limiter: RateLimiter, attempt: LoginAttempt) -> None:
        """The attempt ended before a verdict on the password (PostgreSQL unavailable):
        the failures reserved are given back."""
        await limiter.release(attempt.failures)
