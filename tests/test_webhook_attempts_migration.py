"""Migration 0021 keeps old webhook data readable: a delivery made before attempts were
recorded gets its last outcome as its one recorded attempt, and webhooks that existed
keep the body they were written against (payload version 1); new ones get version 2."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from alembic import command

from tests import support

REVISION = "0021"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _seed(url: str) -> dict[str, Any]:
    """A webhook and three deliveries as the code before 0021 stored them."""
    ids: dict[str, Any] = {name: uuid.uuid4() for name in ("ws", "hook", "ok", "down", "new")}
    conn = await asyncpg.connect(support.asyncpg_dsn(url))
    try:
        await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'W')", ids["ws"])
        await conn.execute(
            "INSERT INTO webhooks (id, workspace_id, url, secret_encrypted, is_active, version)"
            " VALUES ($1, $2, 'http://127.0.0.1:9/in', 'x', true, 1)",
            ids["hook"],
            ids["ws"],
        )
        event = await conn.fetchval(
            "INSERT INTO events (workspace_id, topic, type, entity_type, payload)"
            " VALUES ($1, 'workspace', 'pipeline.created', 'Pipeline', '{}') RETURNING id",
            ids["ws"],
        )
        ids["event"] = event
        rows = (
            ("ok", "delivered", 2, 200, None, T0),
            ("down", "failed", 12, None, "ConnectError: refused", None),
            ("new", "pending", 0, None, None, None),
        )
        for index, (name, status, attempts, code, error, delivered) in enumerate(rows):
            event_id = (
                event
                if index == 0
                else await conn.fetchval(
                    "INSERT INTO events (workspace_id, topic, type, entity_type, payload)"
                    " VALUES ($1, 'workspace', 'pipeline.created', 'Pipeline', '{}') RETURNING id",
                    ids["ws"],
                )
            )
            await conn.execute(
                "INSERT INTO webhook_deliveries (id, workspace_id, webhook_id, event_id, status,"
                " attempts, last_status_code, last_error, delivered_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                ids[name],
                ids["ws"],
                ids["hook"],
                event_id,
                status,
                attempts,
                code,
                error,
                delivered,
                T0,
            )
    finally:
        await conn.close()
    return ids


async def _read(url: str, ids: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    conn = await asyncpg.connect(support.asyncpg_dsn(url))
    try:
        attempts = await conn.fetch(
            "SELECT delivery_id, attempt, status_code, error, duration_ms, attempted_at"
            " FROM webhook_delivery_attempts ORDER BY attempt"
        )
        await conn.execute(
            "INSERT INTO webhooks (id, workspace_id, url, secret_encrypted, is_active, version)"
            " VALUES ($1, $2, 'http://127.0.0.1:9/new', 'x', true, 1)",
            uuid.uuid4(),
            ids["ws"],
        )
        versions = await conn.fetch("SELECT url, payload_version FROM webhooks ORDER BY url")
        return list(attempts), list(versions)
    finally:
        await conn.close()


def test_old_deliveries_keep_their_outcome_and_old_webhooks_their_body(scratch_url: str) -> None:
    config = support.alembic_config(scratch_url)
    command.upgrade(config, "0020")
    ids = asyncio.run(_seed(scratch_url))
    command.upgrade(config, REVISION)
    attempts, versions = asyncio.run(_read(scratch_url, ids))
    assert [tuple(a) for a in attempts] == [
        (ids["ok"], 2, 200, None, None, T0),
        (ids["down"], 12, None, "ConnectError: refused", None, T0),
    ]
    assert [tuple(v) for v in versions] == [
        ("http://127.0.0.1:9/in", 1),
        ("http://127.0.0.1:9/new", 2),
    ]
    command.downgrade(config, "0020")
