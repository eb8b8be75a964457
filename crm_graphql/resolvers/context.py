"""The per-request GraphQL context: who is asking, database access, dataloaders."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from crm_graphql.db.engine import PlanCache
from crm_graphql.db.replica import database_failure
from crm_graphql.realtime.unit_of_work import unit_of_work
from crm_graphql.services.actor import Actor
from crm_graphql.services.auth import TokenConfig

# Set by a subscription while one of its events is being resolved (per task).
EVENT_SCOPE: ContextVar[Context | None] = ContextVar("crm_event_scope", default=None)

if TYPE_CHECKING:
    from crm_graphql.compiled import CompiledReads
    from crm_graphql.crypto import Keyring
    from crm_graphql.db.replica import Replica
    from crm_graphql.job_runner import JobRunner
    from crm_graphql.persisted_queries import PersistedQueries
    from crm_graphql.ratelimit import Decision, RateLimiter
    from crm_graphql.realtime.bus import Bus
    from crm_graphql.realtime.credentials import Credential
    from crm_graphql.realtime.ephemeral import Ephemeral
    from crm_graphql.realtime.hub import Hub
    from crm_graphql.realtime.sse import EventStream
    from crm_graphql.realtime.webhooks import WebhookDispatcher
    from crm_graphql.resolvers.loaders import Loaders
    from crm_graphql.settings import Settings


@dataclass
class AppState:
    """Process-wide resources opened by the app's lifespan."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    tokens: TokenConfig
    bus: Bus
    hub: Hub
    ephemeral: Ephemeral
    limiter: RateLimiter
    keyring: Keyring  # encrypts sensitive values; also on every session (crypto.attach)
    webhooks: WebhookDispatcher
    # Documents named by hash (automatic persisted queries, trusted documents).
    persisted: PersistedQueries
    # The compiled read path (None when ``settings.compiled_reads`` is off).
    compiled: CompiledReads | None = None
    # Reads that may lag go here (``CRM_DATABASE_REPLICA_URL``; docs/decisions/0024).
    replica: Replica | None = None
    # Runs queued jobs (None when ``settings.job_runner`` is off: another process does).
    jobs: JobRunner | None = None


@dataclass(slots=True)
class Context:
    """One request's context. Reads share one session (and connection), serialised by a
    lock because GraphQL resolves sibling fields concurrently and a session is not
    concurrency-safe; every mutation gets its own transaction.

    A request holds at most one connection of the requests' pool at a time: a session
    keeps its connection from its first statement to its close, and the pool is fixed
    (``db.engine.requests_engine``), so a request that held the reads' connection while
    it waited for a second one would, at a full pool of such requests, wait for the
    others until the pool's timeout. So a session of its own (``unit_of_work``,
    ``own_session``) is opened only once the reads gave their connection back, and a
    field that must read the primary reads on the reads' session (``primary_read``)."""

    app: AppState
    actor: Actor | None
    request_id: str
    client_ip: str | None = None
    # The URL the request reached the API at (``/`` of it), for links it hands out.
    base_url: str | None = None
    # WebSocket connections: the connection_init payload, the socket itself, and what
    # its credentials stand on (ended once they expire or are revoked).
    connection_params: dict[str, Any] | None = None
    websocket: Any = None
    credential: Credential | None = None
    # A GraphQL-over-SSE response (realtime/sse.py): where its subscription resumes, and
    # the cursor of the event being resolved (written as the event's id).
    event_stream: EventStream | None = None
    # The connection (WebSocket: its ``connection_init``; event stream: its request)
    # asked for ``extensions.cost`` with its answers; an event stream's rate decision,
    # made by its request (a WebSocket's operations are counted one by one).
    cost_wanted: bool = False
    rate_decision: Decision | None = None
    parent: Context | None = None
    # Where reads get their session; None: the app's (requests') pool.
    sessions: async_sessionmaker[AsyncSession] | None = None
    # Plain asyncpg connections for the loaders that have a path without the ORM
    # (renderings of live events: the hub's pool); None: every read takes a session.
    plain_reads: asyncpg.Pool | None = None
    # What the database answered a read on the replica with, if it failed there (the
    # request is then executed again on the primary: ``LaggingReads``).
    replica_failure: BaseException | None = None
    _lock: asyncio.Lock | None = None  # made when first needed (``_reads``)
    _session: AsyncSession | None = None
    _abandoned: list[AsyncSession] = field(default_factory=list)
    _loaders: Loaders | None = None

    def _active(self) -> Context:
        """Inside a subscription event, the event's own scope; else this context."""
        scope = EVENT_SCOPE.get()
        return scope if scope is not None and scope.parent is self else self

    @property
    def loaders(self) -> Loaders:
        from crm_graphql.resolvers.loaders import Loaders

        active = self._active()
        if active._loaders is None:
            active._loaders = Loaders(active)
        return active._loaders

    def enter_event_scope(self) -> Context:
        """A scope for resolving one subscription event, in force for this task from now
        on: fresh loaders and a short-lived session, so a long-lived socket neither holds
        a connection nor serves stale rows."""
        scope = Context(
            app=self.app,
            actor=self.actor,
            request_id=self.request_id,
            client_ip=self.client_ip,
            websocket=self.websocket,
            credential=self.credential,
            parent=self,
        )
        EVENT_SCOPE.set(scope)
        return scope

    def rendering_scopes(self) -> Callable[[Actor], Context]:
        """Makes scopes for renderings shared by a fan-out group (realtime/groups.py): as
        an actor, reading through the hub's own pool like its stream readers. Keeps the
        app, nothing of this request (the group outlives it)."""
        return functools.partial(_rendering_scope, self.app)

    def require_actor(self) -> Actor:
        """The caller, or a GraphQL error with code UNAUTHENTICATED (also on a WebSocket
        whose credentials ended: it is closing)."""
        if self.actor is None:
            raise GraphQLError(
                "Authentication required: log in and send `Authorization: Bearer <token>`",
                extensions={"code": "UNAUTHENTICATED"},
            )
        if self.credential is not None and self.credential.ended is not None:
            raise GraphQLError(
                self.credential.ended.message, extensions={"code": "UNAUTHENTICATED"}
            )
        return self.actor

    @contextlib.asynccontextmanager
    async def plain_read(self) -> AsyncIterator[Any]:
        """A plain asyncpg connection if this scope has them (``plain_reads``), else None."""
        pool = self._active().plain_reads
        if pool is None:
            yield None
            return
        async with pool.acquire() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        from crm_graphql.masking import unavailable_service

        active = self._active()
        async with active._reads():
            if active._session is None:
                active._session = (active.sessions or self.app.sessionmaker)()
            session = active._session
            try:
                yield session
            except Exception as error:
                if unavailable_service(error) is not None:
                    # The connection is gone (PostgreSQL restarting) and the session's
                    # transaction with it: the sibling fields would get
                    # PendingRollbackError instead of their own answer. They read on a
                    # new session; this one (whose loaded rows they may still use) is
                    # closed with the request.
                    active._session = None
                    active._abandoned.append(session)
                raise

    @contextlib.asynccontextmanager
    async def primary_read(self) -> AsyncIterator[AsyncSession]:
        """``read``, but on the primary even when this request's reads go to the replica
        (``LaggingReads``): then a session of its own, on the primary's pool (the
        replica's session holds a connection of another pool)."""
        if reads_on_replica(self._active()):
            async with self.app.sessionmaker() as session:
                yield session
            return
        async with self.read() as session:
            yield session

    @contextlib.asynccontextmanager
    async def own_session(self) -> AsyncIterator[AsyncSession]:
        """A session of its own on the primary, for a mutation that ends its transaction
        itself; opened once the reads (an earlier mutation's payload) gave their
        connection back."""
        await self.reset_reads()
        async with self.app.sessionmaker() as session:
            yield session

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """A transaction of its own; commits on success, then announces its events and
        the tables it wrote (``realtime.unit_of_work``). Opened once the reads (an
        earlier mutation's payload, another operation on the socket) gave their
        connection back."""
        await self.reset_reads()
        workspace_id = self.actor.workspace_id if self.actor else None
        async with unit_of_work(self.app.sessionmaker, self.app.bus, workspace_id) as session:
            yield session
        if self.app.replica is not None:
            # The caller reads their own writes: not from a standby behind this commit.
            await self.app.replica.wrote(self.actor)
        # Reads after a mutation (its payload) must see the committed change.
        await self.reset_reads()
        if self.plain_reads is None and self.app.compiled is not None:
            # Its rows by id (a moved deal's stage) load on plain connections of the
            # primary's read pool, as live renderings do: one statement, no transaction
            # (BEGIN, SELECT, ROLLBACK) and no ORM around it (issue 14, point 4).
            self.plain_reads = self.app.compiled.pools[PlanCache.AUTO]

    def _reads(self) -> asyncio.Lock:
        """The lock serialising reads on the session (a socket's context that never
        reads itself keeps none)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def reset_reads(self) -> None:
        async with self._reads():
            if self._session is not None:
                await self._session.close()
                self._session = None
            while self._abandoned:
                with contextlib.suppress(Exception):  # its connection is already gone
                    await self._abandoned.pop().close()
        if self._loaders is not None:
            self._loaders.clear()  # freed now, not by a garbage collection (they hold it)
        self._loaders = None

    async def close(self) -> None:
        await self.reset_reads()

    def extra(self) -> dict[str, Any]:
        return {"request_id": self.request_id}


def _rendering_scope(app: AppState, actor: Actor) -> Context:
    return Context(
        app=app,
        actor=actor,
        request_id=uuid.uuid4().hex,
        sessions=app.hub.sessionmaker,
        plain_reads=app.hub.pool,
    )


class LaggingReads(SchemaExtension):
    """A query operation sent over HTTP reads on the replica when its caller may read
    there now (``crm_graphql.db.replica``: not just written, replica close enough).
    Mutations, their payloads and everything on a WebSocket read the primary."""

    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        context = ec.context
        replica = context.app.replica if isinstance(context, Context) else None
        if (
            replica is not None
            and context.sessions is None
            and context.websocket is None
            and ec.operation_type is OperationType.QUERY
            and await replica.may_lag(context.actor)
        ):
            context.sessions = replica.sessionmaker
        yield
        if replica is not None and reads_on_replica(context):
            for error in getattr(ec.result, "errors", None) or ():
                if database_failure(error.original_error):
                    context.replica_failure = error.original_error
                    break


def reads_on_replica(context: Context) -> bool:
    """Did this request's reads go to the replica (``LaggingReads``)?"""
    replica = context.app.replica
    return replica is not None and context.sessions is replica.sessionmaker
