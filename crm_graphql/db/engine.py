"""The async engine and session factory; one of each per process."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from crm_graphql.models.base import load_json


def async_url(url: str) -> str:
    """Normalise ``postgres://`` / ``postgresql://`` URLs to the asyncpg dialect."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername != "postgresql+asyncpg":
        raise ValueError(f"only PostgreSQL is supported, got {parsed.drivername!r}")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """Create the process-wide engine. JIT is off: CRM queries are short and JIT only adds
    planning latency to them."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout (a round trip per session): a disconnect error invalidates
        # the whole pool, so after a PostgreSQL restart one request answers UNAVAILABLE
        # and the next ones get new connections (docs/decisions/0005, M1).
        pool_pre_ping=False,
        echo=echo,
        json_deserializer=load_json,
        connect_args={"server_settings": {"jit": "off", "application_name": "crm_graphql"}},
    )


def make_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (payloads read them);
    ``info``: what every session's ``info`` starts with."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info)


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    return None


async def make_read_pool(
    url: str, size: int, application_name: str, **settings: str
) -> asyncpg.Pool:
    """A pool of plain asyncpg connections for hot read paths that skip the ORM (compiled
    reads, the real-time hub's log reads): read-only, UTC, JIT off, prepared statements
    cached per text. Connections open as reads come (an idle app holds none), and are not
    reset between uses: they only ever run read-only SELECTs (no SET, LISTEN, cursors,
    locks), so asyncpg's per-release ``RESET ALL`` round trip is saved."""
    dsn = (
        make_url(async_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    return await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=size,
        statement_cache_size=1000,
        reset=_nothing_to_reset,
        server_settings={
            "jit": "off",
            "application_name": application_name,
            "default_transaction_read_only": "on",
            "TimeZone": "UTC",
            **settings,
        },
    )
