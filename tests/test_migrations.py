"""Alembic migrations and the SQLAlchemy models describe the same database."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from crm_graphql.models import Base
from tests import support


async def _diff(url: str) -> list[object]:
    from crm_graphql.db.engine import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    from sqlalchemy import text

    from crm_graphql.db.engine import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            )
            return {r[0] for r in rows}
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade_and_models_match(scratch_url: str) -> None:
    import asyncio

    config = support.alembic_config(scratch_url)
    command.upgrade(config, "head")
    assert set(Base.metadata.tables) <= asyncio.run(_tables(scratch_url))
    command.downgrade(config, "base")
    assert asyncio.run(_tables(scratch_url)) <= {"alembic_version"}
    command.upgrade(config, "head")
    assert asyncio.run(_diff(scratch_url)) == []


def test_no_extension_is_needed() -> None:
    """The embedded server has no contrib modules: migrations must not create extensions."""
    from pathlib import Path

    for path in (Path(support.ROOT) / "migrations" / "versions").glob("*.py"):
        assert "CREATE EXTENSION" not in path.read_text().upper(), path
