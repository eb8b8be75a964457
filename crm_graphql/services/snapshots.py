"""Per-workspace summaries of the order history kept exact (docs/decisions/0020).

A summary (the RFM scores, the products' co-purchase counts) is a set of rows per
workspace plus a snapshot row recording the ``order_history_versions`` value it was
computed from. Triggers raise that counter in the transaction of every write the
summaries read (migration 0018). Reads:

- take the stored rows only while the snapshot's version equals the counter as the
  statement sees it, and compute from the orders otherwise, chosen once per statement
  (``is_current`` is uncorrelated: PostgreSQL runs one branch of the union and skips the
  other). So a read is always what the read-time definition gives, own uncommitted
  writes included;
- call ``ensure`` first, which refreshes a stale summary in a transaction of its own, so
  the fast branch is the one taken.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, exists, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from crm_graphql.models import OrderHistoryVersion

log = logging.getLogger("crm_graphql.snapshots")

# (connection, workspace id): replace the workspace's summary rows, computed from the
# orders as the connection's next statements see them; returns the values of the
# snapshot row's own columns besides the version, if it has any.
Fill = Callable[[AsyncConnection, uuid.UUID], Awaitable[dict[str, Any]]]


def history_version(workspace_id: Any) -> Any:
    """The workspace's order-history version (0 before any change was counted);
    ``workspace_id``: a value or a bound parameter."""
    return func.coalesce(
        select(OrderHistoryVersion.version)
        .where(OrderHistoryVersion.workspace_id == workspace_id)
        .scalar_subquery(),
        literal_column("0", BigInteger),
    )


def is_current(snapshot: Any, workspace_id: Any) -> ColumnElement[bool]:
    """Was the workspace's summary (``snapshot``: its model, with ``workspace_id`` and
    ``version``) computed from the order history as the statement sees it?"""
    return exists(
        select(snapshot.workspace_id).where(
            snapshot.workspace_id == workspace_id,
            snapshot.version == history_version(workspace_id),
        )
    )


async def refresh(engine: AsyncEngine, snapshot: Any, workspace_id: uuid.UUID, fill: Fill) -> bool:
    """Make the workspace's summary current, in a transaction of its own (committed, so
    every reader gains), under an advisory lock per summary and workspace (a concurrent
    reader waits, then finds it current): read the version, then ``fill`` from what is
    committed by then, and record the version read first. Rows computed from more than
    that version are used only while the counter still equals it, which it then does
    not. Returns whether it recomputed."""
    key = f"{snapshot.__tablename__}:{workspace_id}"
    async with engine.begin() as connection:
        await connection.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
        version = await connection.scalar(select(history_version(workspace_id)))
        recorded = await connection.scalar(
            select(snapshot.version).where(snapshot.workspace_id == workspace_id)
        )
        if recorded == version:
            return False
        values = {**await fill(connection, workspace_id), "version": version}
        upsert = pg_insert(snapshot).values(workspace_id=workspace_id, **values)
        await connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[snapshot.workspace_id],
                set_={**values, "refreshed_at": func.now()},
            )
        )
    return True


_REFRESH_ENGINES: dict[str, AsyncEngine] = {}


def refresh_engine(engine: AsyncEngine) -> AsyncEngine:
    """Where refreshes connect: the same database as ``engine``, one connection per
    refresh, opened and closed (rare: once per change of a workspace's order history).
    Not the requests' pool: a request holding its connection while it waits for another
    from a pool its peers hold could wait forever; these connections wait only for the
    advisory lock."""
    url = engine.url.render_as_string(hide_password=False)
    found = _REFRESH_ENGINES.get(url)
    if found is None:
        found = _REFRESH_ENGINES[url] = create_async_engine(
            url,
            poolclass=NullPool,
            connect_args={"server_settings": {"jit": "off", "application_name": "crm_refresh"}},
        )
    return found


async def ensure(
    session: AsyncSession,
    snapshot: Any,
    workspace_id: uuid.UUID,
    refresh_with: Callable[[AsyncEngine], Awaitable[bool]],
) -> None:
    """Before a read of a summary: refresh it (``refresh_with`` an engine on the
    session's database) when the order history changed since it was computed. Checked
    once per session (a request's reads): a change committed later in the request is
    still exact, through the live branch; so is every read when the refresh fails."""
    checked: set[tuple[str, uuid.UUID]] = session.info.setdefault("current_summaries", set())
    if (snapshot.__tablename__, workspace_id) in checked:
        return
    checked.add((snapshot.__tablename__, workspace_id))
    if await session.scalar(select(is_current(snapshot, workspace_id))):
        return
    bind = session.bind
    engine = bind if isinstance(bind, AsyncEngine) else getattr(bind, "engine", None)
    # A session on a read replica names the primary's engine: refreshes write there.
    engine = session.info.get("primary_engine", engine)
    if not isinstance(engine, AsyncEngine):
        return
    try:
        await refresh_with(refresh_engine(engine))
    except (DBAPIError, OSError, TimeoutError) as error:
        log.warning(
            "%s of workspace %s not refreshed: %s", snapshot.__tablename__, workspace_id, error
        )
