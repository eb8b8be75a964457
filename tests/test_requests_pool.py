"""The requests' pool (``db.engine.requests_engine``) against a real PostgreSQL: a load
above ``CRM_DB_POOL_SIZE`` waits for the pool's connections, which stay open, instead of
opening overflow connections that are closed the moment they are returned (under M1 that
opened and closed a PostgreSQL backend every few requests)."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import text

from crm_graphql.db.engine import requests_engine
from tests import support

SIZE = 3


async def _alive(database_url: str, pids: set[int]) -> set[int]:
    """Which of these backends the server still runs."""
    conn = await asyncpg.connect(support.asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE pid = any($1)", pids)
    finally:
        await conn.close()
    return {row["pid"] for row in rows}


async def test_a_load_above_the_pool_size_reuses_the_same_connections(database_url: str) -> None:
    engine = requests_engine(database_url, SIZE)
    used: list[int] = []

    async def hold() -> None:
        async with engine.connect() as conn:
            used.append(await conn.scalar(text("SELECT pg_backend_pid() FROM pg_sleep(0.02)")))

    try:
        # Five at a time, six times over, each holding its connection for a moment; the
        # load drops to nothing between rounds. (With SQLAlchemy's default overflow, the
        # two above the pool's size were new backends in every round: 15 in all.)
        for _ in range(6):
            await asyncio.gather(*(hold() for _ in range(5)))
        assert len(used) == 30
        backends = set(used)
        assert len(backends) == SIZE, used
        assert await _alive(database_url, backends) == backends
        assert engine.sync_engine.pool.checkedin() == SIZE
    finally:
        await engine.dispose()
    assert await _alive(database_url, backends) == set()
