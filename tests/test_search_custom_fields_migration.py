"""Migration 0016 indexes the values of searchable custom fields already stored, and its
downgrade takes them out of the search documents again."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from alembic import command

from tests import support

REVISION = "0016"


async def _seed(url: str) -> dict[str, uuid.UUID]:
    """A customer with a searchable and a non-searchable value, one with an archived
    searchable field's value, and a company with a searchable number, as stored before."""
    ids = {name: uuid.uuid4() for name in ("ws", "c1", "c2", "co")}
    conn = await asyncpg.connect(support.asyncpg_dsn(url))
    try:
        ws = ids["ws"]
        await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'W')", ws)
        for key, entity, searchable, archived in (
            ("codename", "customer", True, False),
            ("hint", "customer", False, False),
            ("oldcode", "customer", True, True),
            ("registry", "company", True, False),
        ):
            await conn.execute(
                "INSERT INTO custom_field_definitions (id, workspace_id, entity, key, label, type,"
                " required, searchable, exportable, version, archived_at)"
                " VALUES ($1, $2, $3, $4, $4, $5, false, $6, true, 1,"
                " CASE WHEN $7 THEN now() END)",
                uuid.uuid4(),
                ws,
                entity,
                key,
                "number" if key == "registry" else "text",
                searchable,
                archived,
            )
        await conn.execute(
            "INSERT INTO customers (id, workspace_id, name, lifecycle_stage, version, custom_fields)"
            ' VALUES ($1, $3, \'Ann\', \'lead\', 1, \'{"codename": "Bluefalcon", "hint": "Xylo"}\'),'
            " ($2, $3, 'Bob', 'lead', 1, '{\"oldcode\": \"Redkite\"}')",
            ids["c1"],
            ids["c2"],
            ws,
        )
        await conn.execute(
            "INSERT INTO companies (id, workspace_id, name, version, custom_fields)"
            " VALUES ($1, $2, 'Co', 1, '{\"registry\": 90210}')",
            ids["co"],
            ws,
        )
    finally:
        await conn.close()
    return ids


async def _found(url: str, word: str) -> set[uuid.UUID]:
    conn = await asyncpg.connect(support.asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT id FROM search_documents WHERE names @@ to_tsquery('simple', $1)", word
        )
    finally:
        await conn.close()
    return {r["id"] for r in rows}


def test_the_migration_indexes_stored_searchable_values_and_the_downgrade_removes_them(
    scratch_url: str,
) -> None:
    config = support.alembic_config(scratch_url)
    command.upgrade(config, f"{REVISION}-1")
    ids = asyncio.run(_seed(scratch_url))
    assert asyncio.run(_found(scratch_url, "bluefalcon")) == set()
    command.upgrade(config, REVISION)
    assert asyncio.run(_found(scratch_url, "bluefalcon")) == {ids["c1"]}
    assert asyncio.run(_found(scratch_url, "90210")) == {ids["co"]}
    assert asyncio.run(_found(scratch_url, "ann")) == {ids["c1"]}
    assert asyncio.run(_found(scratch_url, "xylo")) == set()  # not searchable
    assert asyncio.run(_found(scratch_url, "redkite")) == set()  # archived
    command.downgrade(config, f"{REVISION}-1")
    assert asyncio.run(_found(scratch_url, "bluefalcon")) == set()
    assert asyncio.run(_found(scratch_url, "ann")) == {ids["c1"]}
