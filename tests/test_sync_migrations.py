"""Migrations 0020 and 0021 on rows written before them: every existing row gets its
``created`` change (and ``archived`` / ``erased`` when it is), later writes add theirs by
trigger; existing phone numbers become E.164 and emails lower case, each as an
``updated`` change. Both downgrade."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from alembic import command

from tests import support


async def _execute(url: str, *statements: tuple[str, ...]) -> None:
    conn = await asyncpg.connect(support.asyncpg_dsn(url))
    try:
        for sql, *args in statements:
            await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _fetch(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(support.asyncpg_dsn(url))
    try:
        return [tuple(row) for row in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


CHANGES = """SELECT entity_id, type, payload->'fields' FROM events
             WHERE topic = 'changes' ORDER BY txid, id"""


async def test_existing_rows_get_their_changes_and_normalised_contacts(scratch_url: str) -> None:
    config = support.alembic_config(scratch_url)
    await asyncio.to_thread(command.upgrade, config, "0021")
    ws, ada, bob, acme = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _execute(
        scratch_url,
        ("INSERT INTO workspaces (id, name) VALUES ($1, 'W')", ws),
        (
            "INSERT INTO companies (id, workspace_id, name, phone, tags, custom_fields, version)"
            " VALUES ($1, $2, 'Acme', '0049 30 2312 5000', '{}', '{}', 1)",
            acme,
            ws,
        ),
        (
            "INSERT INTO customers (id, workspace_id, name, email, phone, lifecycle_stage, tags,"
            " needs, preferences, custom_fields, version, archived_at)"
            " VALUES ($1, $2, 'Ada', ' Ada@Example.com', '+44 20 7946 0000', 'lead', '{}', '{}',"
            " '{}', '{}', 1, NULL),"
            " ($3, $2, 'Bob', NULL, '555-0100', 'lead', '{}', '{}', '{}', '{}', 1, now())",
            ada,
            ws,
            bob,
        ),
    )
    await asyncio.to_thread(command.upgrade, config, "0022")
    backfilled = await _fetch(scratch_url, CHANGES)
    assert sorted((str(e), t) for e, t, _ in backfilled) == sorted(
        [
            (str(acme), "change.created"),
            (str(ada), "change.created"),
            (str(bob), "change.created"),
            (str(bob), "change.archived"),
        ]
    )
    created = {e: f for e, t, f in backfilled if t == "change.created"}
    assert created[ada] == '["email", "lifecycle_stage", "name", "phone"]'

    await asyncio.to_thread(command.upgrade, config, "head")
    contacts = await _fetch(
        scratch_url, "SELECT id, email, phone FROM customers ORDER BY name"
    )
    assert contacts == [(ada, "ada@example.com", "+442079460000"), (bob, None, "555-0100")]
    assert await _fetch(scratch_url, "SELECT phone FROM companies") == [("+493023125000",)]
    after = (await _fetch(scratch_url, CHANGES))[len(backfilled) :]
    assert sorted((str(e), t, f) for e, t, f in after) == sorted(
        [
            (str(ada), "change.updated", '["email"]'),
            (str(ada), "change.updated", '["phone"]'),
            (str(acme), "change.updated", '["phone"]'),
        ]
    )

    # Later writes add their changes by trigger; an update that changes nothing adds none.
    await _execute(
        scratch_url,
        ("UPDATE customers SET name = 'Ada L.', version = version + 1 WHERE id = $1", ada),
        ("UPDATE customers SET updated_at = now() WHERE id = $1", ada),
    )
    assert (await _fetch(scratch_url, CHANGES))[-1] == (ada, "change.updated", '["name"]')
    count = len(await _fetch(scratch_url, CHANGES))
    assert count == len(backfilled) + len(after) + 1

    await asyncio.to_thread(command.downgrade, config, "0021")
    assert await _fetch(scratch_url, CHANGES) == []
    await _execute(scratch_url, ("UPDATE customers SET name = 'Ada' WHERE id = $1", ada))
    assert await _fetch(scratch_url, CHANGES) == []
    await asyncio.to_thread(command.upgrade, config, "head")
