"""The unit of work: one transaction, and after it commits, the notices of what it wrote.

A service writes its event rows (``services.events.record_event``) and its changes in the
caller's transaction; only once that transaction committed are the topics of its events
published (the doorbells of realtime/hub.py's streams, docs/decisions/0002-realtime.md)
and the tables it wrote (live dashboards, 0018). A rollback publishes nothing. Requests
(``Context.unit_of_work``), the CLI, jobs and tests all commit through here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.realtime.bus import Bus
from crm_graphql.services.changes import take_written
from crm_graphql.services.events import take_committed_topics


async def publish_after_commit(
    bus: Bus, session: AsyncSession, workspace_id: uuid.UUID | None = None
) -> None:
    """Publish what the transaction that just committed on ``session`` wrote: the topics
    of its events, and (for ``workspace_id``) the tables it changed."""
    written = take_written(session)
    changes = [(workspace_id, written)] if workspace_id is not None and written else []
    await bus.notify(take_committed_topics(session), changes)


@contextlib.asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
    bus: Bus,
    workspace_id: uuid.UUID | None = None,
) -> AsyncIterator[AsyncSession]:
    """A transaction of its own: commits on success, then publishes what it wrote."""
    async with sessionmaker() as session:
        async with session.begin():
            yield session
        await publish_after_commit(bus, session, workspace_id)
