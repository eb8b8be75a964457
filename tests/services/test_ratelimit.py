"""The Redis rate limiter (GCRA): bursts, refusals with retry hints, batches counted as
several hits, buckets shared by processes, and failing open when Redis is away."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from crm_graphql.ratelimit import Bucket, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    await connection.aclose()


@pytest.fixture
def prefix() -> str:
    return f"crm:rl-test:{uuid.uuid4().hex}:"


async def test_burst_then_one_hit_per_interval(client: redis.Redis, prefix: str) -> None:
    clock = FakeClock()
    limiter = RateLimiter(client, prefix=prefix, clock=clock)
    bucket = Bucket("user:a", limit=3, period=60)
    remaining = [(await limiter.hit(bucket)).remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    refused = await limiter.hit(bucket)
    assert not refused.allowed and refused.retry_after == 20 and refused.reset == 60
    assert refused.headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "60",
        "RateLimit-Policy": "3;w=60",
        "Retry-After": "20",
    }
    clock.now += 19.5
    assert not (await limiter.hit(bucket)).allowed
    clock.now += 0.5
    again = await limiter.hit(bucket)
    assert again.allowed and again.remaining == 0 and "Retry-After" not in again.headers()
    clock.now += 60
    assert (await limiter.hit(bucket)).remaining == 2  # full again after a quiet minute


async def test_a_batch_counts_all_its_operations_or_none(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, prefix=prefix, clock=FakeClock())
    bucket = Bucket("key:b", limit=5)
    assert (await limiter.hit(bucket, 3)).remaining == 2
    refused = await limiter.hit(bucket, 3)
    assert not refused.allowed and refused.remaining == 2
    assert (await limiter.hit(bucket, 2)).remaining == 0


async def test_peek_records_nothing(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, prefix=prefix, clock=FakeClock())
    bucket = Bucket("login-fail-ip:x", limit=1, period=900)
    for _ in range(3):
        assert (await limiter.peek(bucket)).allowed
    await limiter.hit(bucket)
    peeked = await limiter.peek(bucket)
    assert not peeked.allowed and peeked.retry_after == 900


async def test_processes_share_one_bucket_on_redis_time(redis_url: str, prefix: str) -> None:
    # Two clients (as two server processes would have), no injected clock: Redis's own.
    first = redis.Redis.from_url(redis_url, decode_responses=True)
    second = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        bucket = Bucket("user:shared", limit=4)
        limiters = [RateLimiter(first, prefix=prefix), RateLimiter(second, prefix=prefix)]
        decisions = [await limiters[i % 2].hit(bucket) for i in range(5)]
        assert [d.allowed for d in decisions] == [True, True, True, True, False]
        assert 1 <= decisions[-1].retry_after <= 15
        assert await first.pttl(prefix + "user:shared") > 0  # buckets expire by themselves
    finally:
        await first.aclose()
        await second.aclose()


async def test_unreachable_redis_fails_open_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        limiter = RateLimiter(down)
        with caplog.at_level(logging.WARNING, logger="crm_graphql.ratelimit"):
            decisions = [await limiter.hit(Bucket("user:c", limit=1)) for _ in range(3)]
        assert all(d.allowed and not d.enforced for d in decisions)
        assert decisions[0].headers() == {}
        warnings = [r for r in caplog.records if "not enforced" in r.getMessage()]
        assert len(warnings) == 1  # once a minute, not once a request
    finally:
        await down.aclose()


async def test_hit_all_counts_in_every_bucket_or_in_none(client: redis.Redis, prefix: str) -> None:
    clock = FakeClock()
    limiter = RateLimiter(client, prefix=prefix, clock=clock)
    wide, narrow = Bucket("wide", limit=5, period=60), Bucket("narrow", limit=2, period=60)
    assert (await limiter.hit_all([wide, narrow])).allowed
    assert (await limiter.hit_all([wide, narrow])).allowed
    refused = await limiter.hit_all([wide, narrow])
    assert not refused.allowed and refused.key == "narrow" and refused.retry_after == 30
    # Refused whole: the wide bucket still has its three hits.
    assert (await limiter.hit(wide, 3)).remaining == 0


async def test_release_gives_reserved_hits_back(client: redis.Redis, prefix: str) -> None:
    clock = FakeClock()
    limiter = RateLimiter(client, prefix=prefix, clock=clock)
    bucket = Bucket("login-fail-pair:x", limit=2, period=900)
    await limiter.hit_all([bucket])
    await limiter.hit_all([bucket])
    assert not (await limiter.peek(bucket)).allowed
    await limiter.release([bucket])
    assert (await limiter.peek(bucket)).allowed
    await limiter.release([bucket, bucket])  # never below an empty bucket
    assert await client.exists(prefix + bucket.key) == 0
    assert (await limiter.hit(bucket)).remaining == 1
