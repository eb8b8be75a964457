"""Migration 0014 backfills what the reports read: the stage history from the STAGE_CHANGE
activities ``moveDeal`` wrote, and the conversations' service times from their messages
and, for closed ones, the audit log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from alembic import command

from tests import support

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
REVISION = "0014"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def _seed(url: str) -> dict[str, uuid.UUID]:
    """Rows as the code before 0014 wrote them."""
    ids = {name: uuid.uuid4() for name in ("ws", "pl", "s0", "s1", "s2", "deal", "cust")}
    ids.update({f"conv{i}": uuid.uuid4() for i in range(4)})
    conn = await asyncpg.connect(support.asyncpg_dsn(url))
    try:
        ws = ids["ws"]
        await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'W')", ws)
        await conn.execute(
            "INSERT INTO pipelines (id, workspace_id, name, position, version)"
            " VALUES ($1, $2, 'P', 0, 1)",
            ids["pl"],
            ws,
        )
        for position, stage in enumerate(("s0", "s1", "s2")):
            await conn.execute(
                "INSERT INTO stages (id, workspace_id, pipeline_id, name, position, probability,"
                " version) VALUES ($1, $2, $3, $4, $5, 50, 1)",
                ids[stage],
                ws,
                ids["pl"],
                stage,
                position,
            )
        await conn.execute(
            "INSERT INTO deals (id, workspace_id, title, pipeline_id, stage_id, amount, currency,"
            " status, version) VALUES ($1, $2, 'D', $3, $4, 10, 'EUR', 'open', 1)",
            ids["deal"],
            ws,
            ids["pl"],
            ids["s2"],
        )
        moves = (("s0", "s1", at(10)), ("s1", "s2", at(20)))
        for source, target, when in moves:
            await conn.execute(
                "INSERT INTO activities (id, workspace_id, type, subject, occurred_at, version,"
                " deal_id, details, created_at)"
                " VALUES ($1, $2, 'stage_change', 'Moved', $3, 1, $4, $5::jsonb, $3)",
                uuid.uuid4(),
                ws,
                when,
                ids["deal"],
                f'{{"from_stage_id": "{ids[source]}", "to_stage_id": "{ids[target]}"}}',
            )
        # Not a move: a stage change typed by hand without stages.
        await conn.execute(
            "INSERT INTO activities (id, workspace_id, type, subject, occurred_at, version,"
            " deal_id, details) VALUES ($1, $2, 'stage_change', 'Typed', $3, 1, $4, '{}')",
            uuid.uuid4(),
            ws,
            at(30),
            ids["deal"],
        )
        await conn.execute(
            "INSERT INTO customers (id, workspace_id, name, lifecycle_stage, version)"
            " VALUES ($1, $2, 'C', 'lead', 1)",
            ids["cust"],
            ws,
        )
        # conv0: agent first, then customer, then two agent answers, closed (audited).
        # conv1: customer only. conv2: no messages. conv3: closed without an audit row.
        timelines = {
            "conv0": [("agent", 1), ("customer", 5), ("agent", 9), ("agent", 12)],
            "conv1": [("customer", 3)],
            "conv2": [],
            "conv3": [("customer", 2), ("agent", 4)],
        }
        status = {"conv0": "closed", "conv1": "open", "conv2": "pending", "conv3": "closed"}
        for name, timeline in timelines.items():
            await conn.execute(
                "INSERT INTO conversations (id, workspace_id, customer_id, channel, status,"
                " is_private, last_message_seq, version, created_at, updated_at)"
                " VALUES ($1, $2, $3, 'chat', $4, false, $5, 1, $6, $7)",
                ids[name],
                ws,
                ids["cust"],
                status[name],
                len(timeline),
                at(0),
                at(100),
            )
            for seq, (author, minute) in enumerate(timeline, start=1):
                await conn.execute(
                    "INSERT INTO messages (id, workspace_id, conversation_id, seq, author_type,"
                    " body, created_at) VALUES ($1, $2, $3, $4, $5, 'x', $6)",
                    uuid.uuid4(),
                    ws,
                    ids[name],
                    seq,
                    author,
                    at(minute),
                )
        await conn.execute(
            "INSERT INTO audit_log (id, workspace_id, action, entity_type, entity_id, changes,"
            " created_at) VALUES ($1, $2, 'setConversationStatus', 'Conversation', $3,"
            ' \'{"status": {"before": "open", "after": "closed"}}\'::jsonb, $4)',
            uuid.uuid4(),
            ws,
            ids["conv0"],
            at(50),
        )
    finally:
        await conn.close()
    return ids


async def _read(url: str, ids: dict[str, uuid.UUID]) -> tuple[list[asyncpg.Record], dict]:
    conn = await asyncpg.connect(support.asyncpg_dsn(url))
    try:
        changes = await conn.fetch(
            "SELECT from_stage_id, to_stage_id, changed_at FROM deal_stage_changes"
            " WHERE deal_id = $1 ORDER BY changed_at",
            ids["deal"],
        )
        times = {
            name: await conn.fetchrow(
                "SELECT first_customer_message_at, first_response_at, closed_at, rating_score"
                " FROM conversations WHERE id = $1",
                ids[name],
            )
            for name in ("conv0", "conv1", "conv2", "conv3")
        }
        return changes, times
    finally:
        await conn.close()


def test_the_reports_migration_backfills_history_and_service_times(scratch_url: str) -> None:
    config = support.alembic_config(scratch_url)
    command.upgrade(config, f"{REVISION}-1")
    ids = asyncio.run(_seed(scratch_url))
    command.upgrade(config, REVISION)
    changes, times = asyncio.run(_read(scratch_url, ids))
    assert [tuple(c) for c in changes] == [
        (ids["s0"], ids["s1"], at(10)),
        (ids["s1"], ids["s2"], at(20)),
    ]

    def row(name: str) -> tuple[object, ...]:
        return tuple(times[name])

    assert row("conv0") == (at(5), at(9), at(50), None)
    assert row("conv1") == (at(3), None, None, None)
    assert row("conv2") == (None, None, None, None)
    assert row("conv3") == (at(2), at(4), at(100), None)  # no audit row: its last update
