"""The notices of concurrent commits go out in batches (``realtime.batches``; issue 14,
point 4): one pipeline while the previous one is on its way, an equal notice once per
batch, every different notice delivered, and each caller returns after its own notice
was sent."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as redis

from crm_graphql.realtime.batches import Batches
from crm_graphql.realtime.bus import Bus, channel_name


async def test_concurrent_notices_are_batched_deduplicated_and_all_delivered(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    bus = Bus(client)
    workspace = uuid.uuid4()
    own = [f"topic-{i}" for i in range(40)]
    listener = client.pubsub()
    await listener.psubscribe(f"crm:{workspace}:*")
    try:
        # 40 commits at once, each with a topic of its own and the one all of them share.
        await asyncio.gather(
            *(bus.notify([(workspace, topic), (workspace, "shared")]) for topic in own)
        )
        # The first commit's batch went alone; the 39 others waited for it and went as
        # one batch, where the shared notice is sent once: 1 + 1 + 39 + 1 notices.
        expected = len(own) + 2
        received: list[str] = []
        async with asyncio.timeout(10):
            while len(received) < expected:
                message = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    received.append(message["channel"])
        assert await listener.get_message(ignore_subscribe_messages=True, timeout=0.3) is None
        assert sorted(received) == sorted(
            [channel_name(workspace, t) for t in own] + [channel_name(workspace, "shared")] * 2
        )
    finally:
        await listener.aclose()
        await bus.close()


async def test_a_caller_returns_after_its_own_batch_went_out() -> None:
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(items: list[int]) -> None:
        if not sent:
            await gate.wait()  # the first batch is slow
        sent.append(list(items))

    batches: Batches[int] = Batches(send)
    first = asyncio.create_task(batches.add(0))
    await asyncio.sleep(0)
    later = [asyncio.create_task(batches.add(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    assert not first.done() and not any(t.done() for t in later)
    gate.set()
    await asyncio.gather(first, *later)
    assert sent == [[0], [1, 2, 3]]  # in the order they came, the waiting ones together


async def test_a_batch_holds_at_most_its_limit_and_the_rest_follow_in_order() -> None:
    """Thousands at once (a reconnect storm) go out as several bounded round trips, each
    well inside the Redis timeout on a busy machine, not one that outgrows it."""
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(items: list[int]) -> None:
        if not sent:
            await gate.wait()
        sent.append(list(items))

    batches: Batches[int] = Batches(send, limit=3)
    first = asyncio.create_task(batches.add(0))
    await asyncio.sleep(0)
    later = [asyncio.create_task(batches.add(i)) for i in range(1, 9)]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *later)
    assert sent == [[0], [1, 2, 3], [4, 5, 6], [7, 8]]
