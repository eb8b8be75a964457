"""The async engine and session factory; one of each per process."""

from __future__ import annotations

import enum
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


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int | None = None, echo: bool = False
) -> AsyncEngine:
    """An engine keeping up to ``pool_size`` connections, opened as sessions need them;
    under load it opens ``max_overflow`` more (default: as many again), each closed the
    moment it is returned to a full pool. JIT is off: CRM queries are short and JIT only
    adds planning latency to them."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        # No ping per checkout (a round trip per session): a disconnect error invalidates
        # the whole pool, so after a PostgreSQL restart one request answers UNAVAILABLE
        # and the next ones get new connections (docs/decisions/0005, M1).
        pool_pre_ping=False,
        echo=echo,
        json_deserializer=load_json,
        connect_args={"server_settings": {"jit": "off", "application_name": "crm_graphql"}},
    )


def requests_engine(url: str, pool_size: int, *, echo: bool = False) -> AsyncEngine:
    """The engine of a process's requests (``CRM_DB_POOL_SIZE``): ``pool_size``
    connections, opened as requests need them and kept, and no overflow. SQLAlchemy
    closes an overflow connection the moment it is returned to a full pool, so a steady
    load a little above the pool's size (M1's 16 writers on 10 + 10: a request holds its
    connection for a part of its time only, so the number held swings around 10) opened
    and closed a PostgreSQL backend every few requests, and cost 11 % more server CPU per
    mutation than a fixed pool (docs/decisions/0005). A request beyond the pool waits for
    a connection (``pool_timeout``, 30 s), as the raw floor's asyncpg pool of 10 does."""
    return make_engine(url, pool_size=pool_size, max_overflow=0, echo=echo)


def make_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (payloads read them);
    ``info``: what every session's ``info`` starts with."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info)


class PlanCache(enum.StrEnum):
    """PostgreSQL's ``plan_cache_mode`` for a prepared statement of the compiled read path,
    which runs it on the read pool of that mode (``CompiledReads``)."""

    # PostgreSQL's choice: custom plans for five runs, then the generic plan when it is
    # not dearer than their average.
    AUTO = "auto"
    # Planned for its values every time: a list filtered or paged by the client's values
    # (a generic plan of ``name ILIKE $n`` cannot know how selective the value is).
    CUSTOM = "force_custom_plan"
    # Planned once per connection: a large statement whose best plan does not depend on
    # its values, where planning costs more than running (search: 5 to 7 ms of planning
    # for a statement that runs in under 1 ms; decision 0006), and which PostgreSQL's
    # estimate of the generic plan's cost would keep re-planning.
    GENERIC = "force_generic_plan"


# When parts of one statement ask for different modes: custom wins (safe for any value),
# then generic, then PostgreSQL's choice.
PLAN_CACHE_PRECEDENCE = (PlanCache.AUTO, PlanCache.GENERIC, PlanCache.CUSTOM)


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    return None


MAX_CACHED_STATEMENT_BYTES = 128 * 1024


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
        # asyncpg's default (15 KiB) leaves larger statements unprepared, so planned on
        # every run: the search statement is 17 KiB (5 to 7 ms of planning each time).
        # Statements unused for asyncpg's lifetime (300 s) are still released.
        max_cacheable_statement_size=MAX_CACHED_STATEMENT_BYTES,
        reset=_nothing_to_reset,
        server_settings={
            "jit": "off",
            "application_name": application_name,
            "default_transaction_read_only": "on",
            "TimeZone": "UTC",
            **settings,
        },
    )
