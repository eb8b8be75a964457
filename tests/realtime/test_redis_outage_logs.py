"""During a Redis outage writes keep succeeding (the event rows are the truth) and their
lost notifications are logged once per interval with a count, not once per write
(issue 12, point 7). A real redis-server of these tests alone is killed."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from crm_graphql.app import build_app
from crm_graphql.models import Role
from crm_graphql.realtime.bus import REDIS_TIMEOUT, Bus
from tests import support
from tests.realtime.processes import RedisServer

LOGGER = "crm_graphql.realtime.bus"
ACTIVITY = """mutation($c: ID!, $s: String!) {
  createActivity(input: {type: NOTE, subject: $s, customerId: $c}) {
    activity { id } errors { code message } } }"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis-outage")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def bus(own_redis: RedisServer) -> AsyncIterator[tuple[Bus, FakeClock]]:
    clock = FakeClock()
    client = redis.Redis.from_url(own_redis.url, decode_responses=True, socket_connect_timeout=2)
    bus = Bus(client, warn_every=10.0, clock=clock)
    yield bus, clock
    await bus.close()


def _publish_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and "could not publish" in r.getMessage()
    ]


def _count(line: str) -> int:
    match = re.search(r"could not publish (\d+) notifications", line)
    assert match, line
    return int(match.group(1))


async def test_lost_notifications_are_logged_once_per_interval_with_a_count(
    bus: tuple[Bus, FakeClock], own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    publisher, clock = bus
    topics = [(uuid.uuid4(), "activities"), (uuid.uuid4(), "conversations")]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await publisher.notify(topics)  # Redis up: nothing to say
        assert _publish_lines(caplog) == []
        own_redis.kill()
        for _ in range(30):  # 30 writes in 3 s
            await publisher.notify(topics)
            clock.now += 0.1
        assert [_count(line) for line in _publish_lines(caplog)] == [2]  # at once
        clock.now += 9.0  # 12 s after the first line
        await publisher.notify(topics)
        lines = _publish_lines(caplog)
        assert [_count(line) for line in lines] == [2, 60], lines
        assert "in the last 12 s" in lines[-1]
        own_redis.start()
        await publisher.notify(topics)  # delivered again: no line
        assert len(_publish_lines(caplog)) == 2


async def test_a_redis_that_does_not_answer_holds_no_notice_for_long(
    bus: tuple[Bus, FakeClock], own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Notices go out in batches, each waiting for the one before (``Batches``): a Redis
    that stops answering (here: stopped, not killed, so the socket stays open) gives a
    batch up after ``REDIS_TIMEOUT`` rather than holding every later commit's answer."""
    publisher, _ = bus
    topics = [(uuid.uuid4(), "activities")]
    await publisher.notify(topics)  # connected
    assert own_redis.proc is not None
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            async with asyncio.timeout(10):  # fail, not hang, without the bound
                await asyncio.gather(*(publisher.notify(topics) for _ in range(5)))
        elapsed = time.monotonic() - started
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    assert elapsed < 3 * REDIS_TIMEOUT, elapsed
    assert _publish_lines(caplog), "the lost notices are logged"


async def test_writes_during_a_redis_outage_succeed_and_log_little(
    settings: Any,
    own_redis: RedisServer,
    users: dict[Role, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    application = build_app(settings.model_copy(update={"redis_url": own_redis.url}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            gql = await support.GraphQLClient(http).logged_in(
                users[Role.MANAGER].email, support.PASSWORD
            )
            customer = (
                await gql(
                    'mutation { createCustomer(input: {name: "Outage"}) { customer { id } } }'
                )
            ).ok()["createCustomer"]["customer"]["id"]
            own_redis.kill()
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                for i in range(40):
                    result = await gql(ACTIVITY, {"c": customer, "s": f"note {i}"})
                    assert not result.ok()["createActivity"]["errors"], result.body
            elapsed = time.monotonic() - started
    lines = _publish_lines(caplog)
    # One line, then at most one more per 10 s: not one per write.
    assert 1 <= len(lines) <= 1 + int(elapsed // 10), (elapsed, lines)
    # The first write's: its event's doorbell and its change notice (live dashboards).
    assert _count(lines[0]) == 2
