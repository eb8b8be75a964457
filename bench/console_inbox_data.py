"""A workspace for measuring the console's inbox at size (``bench.console_load --inbox``):
an agent, 1,000 open conversations over 100 customers, one of them with a 5,000-message
history. Written with bulk inserts (minutes through the API); the console reads it through
the API like any other data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from crm_graphql.enums import Channel, ConversationStatus, MessageAuthorType
from crm_graphql.models import Conversation, Customer, Message, Role
from crm_graphql.models.base import uuid7
from crm_graphql.services import auth

PASSWORD = "console-inbox-bench"
CHANNELS = list(Channel)


@dataclass(frozen=True)
class InboxData:
    email: str
    password: str
    big_conversation_id: uuid.UUID  # the one with the long history
    conversations: int
    history: int


async def seed_inbox(
    sessionmaker: Any, *, conversations: int = 1_000, history: int = 5_000, customers: int = 100
) -> InboxData:
    """Write the workspace; every conversation has 3 messages but the big one."""
    now = datetime.now(UTC)
    async with sessionmaker() as s, s.begin():
        ws = await auth.create_workspace(s, name=f"Inbox bench {uuid.uuid4().hex[:6]}")
        agent = await auth.create_user(
            s,
            workspace=ws,
            email=f"inbox-bench-{uuid.uuid4().hex[:8]}@example.com",
            password=PASSWORD,
            role=Role.AGENT,
            name="Bench Agent",
        )
        people = [
            {"id": uuid7(), "workspace_id": ws.id, "name": f"Customer {n:03d}"}
            for n in range(customers)
        ]
        await s.execute(insert(Customer), people)
        rows: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for n in range(conversations):
            count = history if n == 0 else 3
            last = now - timedelta(minutes=n)  # the big one is the newest
            row = {
                "id": uuid7(),
                "workspace_id": ws.id,
                "customer_id": people[n % customers]["id"],
                "channel": CHANNELS[n % len(CHANNELS)],
                "status": ConversationStatus.OPEN,
                "subject": f"Question {n}",
                "assignee_id": agent.id if n % 3 == 0 else None,
                "is_private": False,
                "last_message_seq": count,
                "last_message_at": last,
                "created_at": last - timedelta(seconds=count),
                "updated_at": last,
            }
            rows.append(row)
            for seq in range(1, count + 1):
                customer_speaks = seq % 2 == 1
                messages.append(
                    {
                        "id": uuid7(),
                        "workspace_id": ws.id,
                        "conversation_id": row["id"],
                        "seq": seq,
                        "author_type": MessageAuthorType.CUSTOMER
                        if customer_speaks
                        else MessageAuthorType.AGENT,
                        "author_user_id": None if customer_speaks else agent.id,
                        "body": f"Message {seq} of conversation {n}: "
                        + ("a question from the customer" if customer_speaks else "our answer"),
                        "created_at": last - timedelta(seconds=count - seq),
                        "updated_at": last - timedelta(seconds=count - seq),
                    }
                )
        await s.execute(insert(Conversation), rows)
        for start in range(0, len(messages), 2_000):
            await s.execute(insert(Message), messages[start : start + 2_000])
    return InboxData(agent.email, PASSWORD, rows[0]["id"], conversations, history)
