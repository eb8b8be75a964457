"""A conversation's events arrive in ``seq`` order, live and replayed (issue 12, point 2):
concurrent senders spread over two server processes; a live ``conversationEvents`` and a
live ``inbox`` subscriber, and a subscriber resuming from an early cursor, all receive
every message once, ``seq`` strictly increasing without gaps."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import pytest

from crm_graphql.models import Role
from crm_graphql.realtime.bus import channel_name
from crm_graphql.services import conversations
from tests import support
from tests.realtime.processes import Cluster, RedisServer, wait_for
from tests.realtime.streams import subscribed

CONVERSATION_EVENTS = """subscription($c: ID!, $after: String) {
  conversationEvents(conversationId: $c, after: $after) { cursor type message { seq } }
}"""
INBOX = "subscription { inbox { cursor type message { seq } } }"
MESSAGES = 200


async def _messages(
    ws: support.WSClient,
    field: str,
    count: int,
    timeout: float = 30,  # noqa: ASYNC109
) -> list[dict[str, Any]]:
    """The next ``count`` ``message.created`` events of the subscription."""
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while len(found) < count:
        event = (await ws.next_data(max(deadline - time.monotonic(), 0.01)))[field]
        if event["type"] == "message.created":
            found.append(event)
    return found


def _out_of_order(seqs: list[int]) -> int:
    return sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)


@pytest.mark.parametrize("senders", [10, 50])
async def test_concurrent_messages_arrive_in_seq_order_live_and_replayed(
    servers: Cluster,
    private_redis: RedisServer,
    api: Any,
    tokens: dict[Role, str],
    workspace_id: uuid.UUID,
    senders: int,
) -> None:
    a, b = servers.a, servers.b
    token = tokens[Role.AGENT]
    async with api(a) as on_a, api(b) as on_b:
        customer = await on_a.customer("In order")
        chat = await on_a.conversation(customer)
        live = [
            await subscribed(a.url, token, CONVERSATION_EVENTS, {"c": chat}),
            await subscribed(b.url, token, INBOX, {}),
        ]
        try:
            # Both processes follow the stream once they know where their subscription
            # starts: what commits from then on is for it.
            channel = channel_name(workspace_id, conversations.TOPIC)
            await wait_for(lambda: private_redis.numsub_is(channel, 2), what="both subscribed")
            await on_a.send(chat, "first")
            first = [
                (await _messages(live[0], "conversationEvents", 1))[0],
                (await _messages(live[1], "inbox", 1))[0],
            ]
            assert [e["message"]["seq"] for e in first] == [1, 1]

            async def sender(number: int) -> None:
                on = on_a if number % 2 == 0 else on_b
                for n in range(number, MESSAGES, senders):
                    await on.send(chat, f"message {n}")

            await asyncio.gather(*(sender(i) for i in range(senders)))
            expected = list(range(2, MESSAGES + 2))
            for ws, field in ((live[0], "conversationEvents"), (live[1], "inbox")):
                seqs = [e["message"]["seq"] for e in await _messages(ws, field, MESSAGES)]
                assert seqs == expected, (
                    f"{field}: {_out_of_order(seqs)} of {len(seqs)} deliveries out of order: {seqs}"
                )
        finally:
            for ws in live:
                await ws.close()

        # Resumed from the first message's cursor: the same order again.
        resumed = await subscribed(
            b.url, token, CONVERSATION_EVENTS, {"c": chat, "after": first[0]["cursor"]}
        )
        try:
            seqs = [
                e["message"]["seq"]
                for e in await _messages(resumed, "conversationEvents", MESSAGES)
            ]
        finally:
            await resumed.close()
        assert seqs == expected, f"replayed: {_out_of_order(seqs)} out of order: {seqs}"
