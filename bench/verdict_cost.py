"""CPU of planning and writing a batch of live events to the members of fan-out groups,
without a database: ``python -m bench.verdict_cost`` (docs/decisions/0031).

RT1's shape in one process: 100 agents on one inbox document (one group, rendered as a
stand-in), 300 ``conversationEvents`` sockets (three agents per conversation, one group
whose members follow one conversation each) and 10 managers on the inbox; message events
on random conversations, 30 % of them private. ``--quiet N`` adds RT1X's quiet sockets: N
admins' ``conversationEvents`` members (one group, stand-in free), each following a
conversation no event is sent to (docs/decisions/0031, "Positions of live members").
Renderings are constant bytes (kept by
the group after the first), sockets are in memory: what is measured is the verdicts, the
choice of members and variants, and the writes' bookkeeping (``Stream._deliver_batch``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime
from typing import Any

from crm_graphql.models import Role
from crm_graphql.realtime.groups import reading_actor
from crm_graphql.realtime.hub import Group, Hub, Member, Stream
from crm_graphql.realtime.verdicts import ConversationAccess, audience
from crm_graphql.services.actor import Actor
from crm_graphql.services.events import Position, StoredEvent


class MemorySink:
    """A socket that takes everything."""

    closed = False

    def __init__(self) -> None:
        self.frames = 0

    def write(self, payloads: Sequence[bytes], positions: Sequence[Position] = ()) -> bool:
        self.frames += len(payloads)
        return True

    async def drained(self) -> None:
        return None


async def _render(event: StoredEvent, variant: Hashable) -> bytes:
    return b'{"data":{}}'


def _group(stream: Stream, key: str, ends: bool, example: Actor) -> Group:
    rule, judged_as = ConversationAccess(ends=ends), audience(example)
    group = Group(stream, key, _render, lambda event: rule(event, judged_as))
    stream.groups[key] = group
    return group


def _member(group: Group, actor: Actor, entity: uuid.UUID | None, stand_in: bool) -> Member:
    member = Member(
        Position(0, 0),
        group=group,
        user=actor.user_id,
        own=reading_actor(actor) if stand_in else None,
        entity=entity,
        sink=MemorySink(),
        live=True,
    )
    group.add(member)
    return member


async def measure(events: int, batch: int, seed: int, quiet: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    workspace = uuid.uuid4()
    hub = Hub(None, None, None)  # type: ignore[arg-type]  # no database or Redis is read
    stream = Stream(hub, (workspace, "conversations"))
    agents = [Actor(workspace, Role.AGENT, user_id=uuid.uuid4()) for _ in range(100)]
    managers = [Actor(workspace, Role.MANAGER, user_id=uuid.uuid4()) for _ in range(10)]
    conversations = [uuid.uuid4() for _ in range(100)]
    inbox = _group(stream, "inbox", False, agents[0])
    followed = _group(stream, "conversation", True, agents[0])
    managed = _group(stream, "inbox managers", False, managers[0])
    members = [_member(inbox, a, None, True) for a in agents]
    members += [_member(managed, m, None, False) for m in managers]
    followers: dict[uuid.UUID, list[Actor]] = {}
    for conversation in conversations:
        followers[conversation] = rng.sample(agents, 3)
        members += [_member(followed, a, conversation, True) for a in followers[conversation]]
    if quiet:
        admin = Actor(workspace, Role.ADMIN, user_id=uuid.uuid4())
        watched = _group(stream, "conversation admins", True, admin)
        members += [_member(watched, admin, uuid.uuid4(), False) for _ in range(quiet)]
    now = datetime.now(UTC)
    log = []
    for i in range(events):
        conversation = rng.choice(conversations)
        private = rng.random() < 0.3
        payload = {
            "conversation_id": str(conversation),
            "is_private": private,
            "assignee_id": str(followers[conversation][0].user_id) if private else None,
        }
        log.append(
            StoredEvent(
                Position(1000 + i, i + 1),
                workspace,
                "conversations",
                "message.created",
                "Conversation",
                conversation,
                payload,
                now,
            )
        )
    await stream._deliver_batch(log[:batch])  # warm-up: renderings kept, code paths hot
    started, frames = time.process_time(), 0
    for at in range(batch, events, batch):
        frames += await stream._deliver_batch(log[at : at + batch])
    cpu = time.process_time() - started
    judged = events - batch
    return {
        "members": len(members),
        "quiet": quiet,
        "events": judged,
        "frames": frames,
        "verdicts": hub.verdicts,
        "us_per_event": round(cpu / judged * 1e6, 1),
        "us_per_frame": round(cpu / max(frames, 1) * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quiet", type=int, default=0, help="quiet members (RT1X)")
    args = parser.parse_args(argv)
    print(asyncio.run(measure(args.events, args.batch, args.seed, args.quiet)))


if __name__ == "__main__":
    main()
