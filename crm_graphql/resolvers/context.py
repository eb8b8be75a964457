"""The per-request GraphQL context: who is asking, database access, dataloaders."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.services.actor import Actor
from crm_graphql.services.auth import TokenConfig

if TYPE_CHECKING:
    from crm_graphql.realtime.bus import Bus
    from crm_graphql.resolvers.loaders import Loaders
    from crm_graphql.settings import Settings


@dataclass
class AppState:
    """Process-wide resources opened by the app's lifespan."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    tokens: TokenConfig
    bus: Bus


@dataclass
class Context:
    """One request's context. Reads share one session (and connection), serialised by a
    lock because GraphQL resolves sibling fields concurrently and a session is not
    concurrency-safe; every mutation gets its own transaction."""

    app: AppState
    actor: Actor | None
    request_id: str
    client_ip: str | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _session: AsyncSession | None = None

    @cached_property
    def loaders(self) -> Loaders:
        from crm_graphql.resolvers.loaders import Loaders

        return Loaders(self)

    def require_actor(self) -> Actor:
        """The caller, or a GraphQL error with code UNAUTHENTICATED."""
        if self.actor is None:
            raise GraphQLError(
                "Authentication required: log in and send `Authorization: Bearer <token>`",
                extensions={"code": "UNAUTHENTICATED"},
            )
        return self.actor

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._lock:
            if self._session is None:
                self._session = self.app.sessionmaker()
            yield self._session

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """A transaction of its own; commits on success, then announces its events."""
        from crm_graphql.services.events import take_committed_topics

        async with self.app.sessionmaker() as session:
            async with session.begin():
                yield session
            await self.app.bus.notify(take_committed_topics(session))
        # Reads after a mutation (its payload) must see the committed change.
        await self.reset_reads()

    async def reset_reads(self) -> None:
        async with self._lock:
            if self._session is not None:
                await self._session.close()
                self._session = None
        self.__dict__.pop("loaders", None)

    async def close(self) -> None:
        await self.reset_reads()

    def extra(self) -> dict[str, Any]:
        return {"request_id": self.request_id}
