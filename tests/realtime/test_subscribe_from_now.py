"""A subscription without a cursor starts at "now" (issue 12, point 1): under many
concurrent writers it receives nothing that committed before it subscribed (before, the
event horizon could come out an epoch too low and the stream replayed the workspace's
history), and nothing that commits after it is missing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import decode_id
from crm_graphql.models import Role
from crm_graphql.realtime.bus import channel_name
from crm_graphql.services import conversations
from crm_graphql.services.actor import Actor
from tests import support
from tests.realtime.processes import Cluster, RedisServer, wait_for
from tests.realtime.streams import nothing_more, subscribed, take

INBOX = "subscription { inbox { cursor type message { id } } }"
INBOX_BODIES = "subscription { inbox { type message { body } } }"
WRITERS = 24
CONVERSATIONS = 6
ATTEMPTS = 6


@dataclass
class Sent:
    started: float  # when the request went out
    answered: float  # when its answer came back (it had committed)


async def _events_until(
    ws: support.WSClient, sent: dict[str, Sent], deadline: float
) -> list[dict[str, Any]]:
    """The subscription's events until every message sent after its first event (and
    answered shortly after) has arrived: those committed after it started, for sure."""
    received: list[dict[str, Any]] = []
    ids: set[str] = set()
    first: float | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"missing events after {len(received)} received")
        event = (await ws.next_data(remaining))["inbox"]
        received.append(event)
        if event["type"] != "message.created":
            return received  # history: the caller reports it
        ids.add(event["message"]["id"])
        if first is None:
            first = time.monotonic()
        if time.monotonic() < first + 0.5:
            continue
        due = {id for id, s in list(sent.items()) if first < s.started and s.answered < first + 0.3}
        if due <= ids:
            return received


async def test_a_subscription_without_cursor_gets_only_what_commits_after_it(
    servers: Cluster, api: Any, tokens: dict[Role, str]
) -> None:
    """24 clients send messages as fast as they go through A; again and again, a fresh
    ``inbox`` subscription on B (no other inbox subscriber there: its stream starts with
    it) must receive no message answered before it subscribed, and every message sent
    after its first event."""
    a, b = servers.a, servers.b
    async with api(a) as on_a:
        customer = await on_a.customer("From now on")
        chats = [await on_a.conversation(customer) for _ in range(CONVERSATIONS)]
        sent: dict[str, Sent] = {}
        stop = asyncio.Event()

        async def writer(number: int) -> None:
            for n in itertools.count():
                if stop.is_set():
                    return
                started = time.monotonic()
                message = await on_a.send(chats[(number + n) % CONVERSATIONS], f"{number}.{n}")
                sent[message["id"]] = Sent(started, time.monotonic())

        writers = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
        try:
            # A history worth replaying, and the writers in full swing.
            await wait_for(lambda: len(sent) >= 300, timeout=30, what="300 messages sent")
            for attempt in range(ATTEMPTS):
                assert not any(w.done() for w in writers), [w for w in writers if w.done()]
                before = set(sent)  # answered, so committed, before subscribing
                ws = await subscribed(b.url, tokens[Role.AGENT], INBOX, {})
                try:
                    received = await _events_until(ws, sent, time.monotonic() + 15)
                finally:
                    await ws.close()
                old = [
                    e
                    for e in received
                    if e["type"] != "message.created" or e["message"]["id"] in before
                ]
                assert not old, (
                    f"attempt {attempt}: {len(old)} of {len(received)} events committed "
                    f"before subscribing (of {len(before)} then), e.g. {old[:3]}"
                )
        finally:
            stop.set()
            done, pending = await asyncio.wait(writers, timeout=20)
            for task in pending:
                task.cancel()
            for task in done:
                with contextlib.suppress(asyncio.CancelledError):
                    task.result()


async def test_what_committed_before_subscribing_stays_out_even_above_the_horizon(
    servers: Cluster,
    private_redis: RedisServer,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    manager: Actor,
) -> None:
    """An older writer holds the horizon back; a younger message commits before the
    subscription starts, the older one after it. Both sort after the subscription's
    start (just below the horizon): it receives the older, new one and not the younger."""
    b = servers.b
    async with api(servers.a) as on_a:
        customer = await on_a.customer("Behind an older writer")
        first, second = [await on_a.conversation(customer) for _ in range(2)]
        async with sessionmaker() as older:
            await conversations.send_message(
                manager, older, decode_id(first, "Conversation"), body="older"
            )  # written, not committed: its xid holds the horizon back
            await on_a.send(second, "younger")  # committed before subscribing
            ws = await subscribed(b.url, tokens[Role.AGENT], INBOX_BODIES, {})
            try:
                # B follows the inbox once it knows where the subscription starts.
                channel = channel_name(manager.workspace_id, conversations.TOPIC)
                await wait_for(lambda: private_redis.numsub_is(channel, 1), what="subscribed")
                await older.commit()  # after subscribing
                await on_a.send(second, "later")  # and its doorbell
                got = await take(ws, "inbox", 2)
                assert [e["message"]["body"] for e in got] == ["older", "later"]
                await nothing_more(ws)
            finally:
                await ws.close()
