"""The compiled read path (DESIGN.md, Performance): a read operation whose every field this
package knows runs as ONE SQL statement that builds the response JSON in PostgreSQL; the
bytes go to the client as they come. Anything else returns None and takes the executed
path, which gives the same answer, errors included (tests/api/test_compiled_differential.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
    parse,
    specified_rules,
)
from graphql.execution.values import VariableValues, get_variable_values
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry import Schema
from strawberry.schema.schema import validate_document

from crm_graphql.compiled.compiler import Compiled, CompiledEvent, Compiler, Unsupported
from crm_graphql.db.engine import PlanCache, make_read_pool
from crm_graphql.db.replica import Replica
from crm_graphql.jsonbytes import dumps_kept
from crm_graphql.limits import QueryLimits, Shape, input_errors, limit_errors, shape_of
from crm_graphql.observability import tracing
from crm_graphql.services import events, rfm, snapshots
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError
from crm_graphql.services.policy import authorize_read
from crm_graphql.settings import Settings

# The read pools of one database, by plan cache mode.
Pools = dict[PlanCache, asyncpg.Pool]

log = logging.getLogger("crm_graphql.compiled")

__all__ = ["CompiledReads", "EventPlan", "readable"]


def readable(actor: Actor, model: type[Any]) -> bool:
    """May ``actor`` read rows of ``model``? The one check a compiled plan makes per model
    it reads; a refusal sends the request down the executed path for its exact error."""
    try:
        authorize_read(actor, model)
    except DomainError:
        return False
    return True


class _Document:
    """A parsed and validated query operation (or None: the executed path handles it)."""

    __slots__ = ("document", "fragments", "operation", "shape")

    def __init__(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDefinitionNode],
        shape: Shape,
    ) -> None:
        self.document = document
        self.operation = operation
        self.fragments = fragments
        self.shape = shape  # what the query limits measure (``crm_graphql.limits``)


class _Lru(OrderedDict[Any, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key: Any) -> Any:
        value = self.get(key, _MISS)
        if value is not _MISS:
            self.move_to_end(key)
        return value


_MISS = object()

# compiler._unrepresentable: stored data the executed path answers with an error.
_REFUSED = asyncpg.InvalidTextRepresentationError
_FAILED = (
    asyncpg.PostgresError,
    OSError,
    asyncpg.InterfaceError,
    # A pooled connection the server ended mid-statement (PostgreSQL restarting) can be
    # left "another operation is in progress".
    asyncpg.InternalClientError,
)

# ``rfm.snapshot_is_current`` of the workspace ($1), for the read-only pool.
_RFM_SNAPSHOT_IS_CURRENT = str(
    select(rfm.snapshot_is_current(bindparam("workspace", type_=UUID(as_uuid=True)))).compile(
        dialect=asyncpg_dialect.dialect()
    )
)


class CompiledReads:
    """Plans cached by (document, operation name, variables, role), run on a read-only
    asyncpg pool of their own (no ORM in between)."""

    def __init__(
        self,
        schema: Schema,
        settings: Settings,
        pools: Pools,
        engine: AsyncEngine | None = None,
        replica: Replica | None = None,
        replica_pools: Pools | None = None,
    ) -> None:
        self.schema = schema
        # Reads of callers who may lag run on the replica's pools.
        self.replica = replica
        self.replica_pools = replica_pools
        # Writes what a plan needs current before it runs (the RFM snapshot); None: the
        # statements answer from the live computation (exact, slower).
        self.engine = engine
        self.settings = settings
        # A pool per ``plan_cache_mode`` (``Compiled.plan_cache``).
        self.pools = pools
        self.limits = QueryLimits.from_settings(settings)
        self._documents = _Lru(1000)
        self._plans = _Lru(5000)
        # Plans that differ only in their values share one statement text.
        self._statements: dict[str, str] = {}
        # Events rendered by a compiled plan (``render_event``) since the process started.
        self.event_renders = 0

    @classmethod
    async def open(
        cls,
        schema: Schema,
        settings: Settings,
        engine: AsyncEngine | None = None,
        replica: Replica | None = None,
    ) -> CompiledReads:
        name, size = "crm_graphql_compiled", settings.db_pool_size

        async def pools(url: str) -> Pools:
            # Connections open as reads come: a mode no statement asks for holds none.
            return {
                mode: await make_read_pool(
                    url,
                    size if mode is PlanCache.AUTO else max(2, size // 2),
                    name,
                    plan_cache_mode=mode.value,
                )
                for mode in PlanCache
            }

        primary = await pools(settings.database_url or "")
        lagging = await pools(replica.replica_url) if replica is not None else None
        return cls(schema, settings, primary, engine, replica, lagging)

    async def close(self) -> None:
        for pool in {*self.pools.values(), *(self.replica_pools or {}).values()}:
            await pool.close()

    def _document(self, query: str, operation_name: str | None) -> _Document | None:
        key = (query, operation_name)
        found = self._documents.hit(key)
        if found is not _MISS:
            return found
        document: _Document | None = None
        limits = self.limits
        try:
            # The executed path's parser limits; a document over them gets its error there.
            parsed = parse(
                query,
                max_lexical_tokens=limits.max_tokens or None,
                max_comments=limits.max_tokens or None,
            )
            shape = shape_of(self.schema._schema, parsed, limits)
        except (GraphQLError, RecursionError):
            parsed = None
        if parsed is not None and not validate_document(
            self.schema._schema, parsed, tuple(specified_rules)
        ):
            operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
            if operation_name is not None:
                operations = [
                    o for o in operations if o.name is not None and o.name.value == operation_name
                ]
            if len(operations) == 1 and operations[0].operation == OperationType.QUERY:
                fragments = {
                    d.name.value: d
                    for d in parsed.definitions
                    if isinstance(d, FragmentDefinitionNode)
                }
                document = _Document(parsed, operations[0], fragments, shape)
        return self._documents.put(key, document)

    def plan(
        self,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        actor: Actor,
    ) -> Compiled | None:
        """The compiled statement for this request, or None for the executed path."""
        document = self._document(query, operation_name)
        if document is None:
            return None
        if variables and input_errors(document.shape, self.limits, variables):
            return None  # the executed path answers with the error, before keying on them
        key = (
            document,  # the query and operation name, its text held once (``_documents``)
            # A key of the plan cache: right-sized (``jsonbytes``).
            dumps_kept(variables, option=orjson.OPT_SORT_KEYS) if variables else b"",
            actor.role,
            actor.api_key_id is not None,
            actor.scopes,
            actor.max_query_cost,
        )
        found = self._plans.hit(key)
        if found is not _MISS:
            return found
        compiled: Compiled | None = None
        limits = self.limits.for_actor(actor)
        if limit_errors(self.schema._schema, document.document, document.shape, limits, variables):
            return self._plans.put(key, None)
        coerced = get_variable_values(
            self.schema._schema, document.operation.variable_definitions or (), variables or {}
        )
        if not isinstance(coerced, list):
            compiler = Compiler(self.schema, self.settings, actor, document.fragments, coerced)
            try:
                compiled = compiler.operation(document.operation)
                if len(self._statements) > 5000:
                    self._statements.clear()
                compiled.sql = self._statements.setdefault(compiled.sql, compiled.sql)
            except Unsupported as reason:
                log.debug("executed path: %s", reason)
            except Exception:  # a compiler defect must cost speed, not the answer
                log.exception("cannot compile, executing instead: %s", query)
        return self._plans.put(key, compiled)

    async def _current_rfm_snapshot(self, actor: Actor) -> None:
        """``rfm.ensure_snapshot`` for a compiled read: checked on the read pool, refreshed
        through the engine (in a transaction of its own) when the order history moved. A
        failure here costs speed only: the statement then reads the live scores."""
        assert self.engine is not None
        try:
            pool = self.pools[PlanCache.AUTO]
            if not await pool.fetchval(_RFM_SNAPSHOT_IS_CURRENT, actor.workspace_id):
                await rfm.refresh_snapshot(actor, snapshots.refresh_engine(self.engine))
        except (
            asyncpg.PostgresError,
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            DBAPIError,
        ) as error:
            log.warning("RFM snapshot not refreshed: %s", error)

    def _pool(self, compiled: Compiled, lagging: bool) -> asyncpg.Pool:
        """Where the statement runs: the pool of its plan cache mode, the replica's for a
        read that may lag."""
        pools = self.replica_pools if lagging and self.replica_pools is not None else self.pools
        return pools[compiled.plan_cache]

    async def execute(
        self,
        actor: Actor | None,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        *,
        primary: bool = False,
    ) -> bytes | None:
        """The response body (``{"data": ...}``) or None when the executed path must answer.
        ``primary``: never on the replica (a live dashboard renders what a write changed)."""
        if actor is None:
            return None
        compiled = self.plan(query, operation_name, variables, actor)
        if compiled is None or not all(readable(actor, m) for m in compiled.models):
            return None
        if compiled.reads_rfm_scores and self.engine is not None:
            await self._current_rfm_snapshot(actor)
        # The change feed reads the primary: its horizon is the primary's transactions.
        lagging = (
            not primary
            and not compiled.horizon_params
            and self.replica is not None
            and await self.replica.may_lag(actor)
        )
        try:
            params = _actor_params(compiled, actor)
            if compiled.horizon_params:
                # In its own statement, before the read: the read's snapshot is then
                # newer (``services.sync.read_changes``).
                below = await events.horizon(self._pool(compiled, False))
                for index in compiled.horizon_params:
                    params[index - 1] = below
            try:
                with tracing.span("compiled statement", **{"crm.replica": lagging}):
                    row = await self._pool(compiled, lagging).fetchrow(
                        compiled.sql, actor.workspace_id, *params
                    )
            except _FAILED as error:
                if not lagging or self.replica is None or isinstance(error, _REFUSED):
                    raise
                # The replica stopped, or cancelled the statement (a recovery conflict):
                # the same statement on the primary (docs/decisions/0024).
                self.replica.failed(error)
                row = await self._pool(compiled, False).fetchrow(
                    compiled.sql, actor.workspace_id, *params
                )
        except _REFUSED as error:
            # compiler._unrepresentable: stored data the executed path answers with an error.
            log.debug("compiled read refused a stored value: %s", error)
            return None
        except _FAILED as error:
            # The executed path answers the same request with its own (coded) error.
            log.warning("compiled read failed, executing instead: %s\n%s", error, compiled.sql)
            return None
        if row is None or any(value is None for value in row):
            log.error("compiled read returned NULL, executing instead: %s", compiled.sql)
            return None
        parts = [f'"{key}":{value}' for key, value in zip(compiled.keys, row, strict=True)]
        body = ('{"data":{' + ",".join(parts) + "}}").encode()
        if compiled.reencode:
            try:
                body = orjson.dumps(orjson.loads(body))
            except orjson.JSONDecodeError:  # numbers orjson cannot hold (ints over 64 bits)
                return None
        return body

    # ------------------------------------------------------------------ live events

    def event_plan(
        self,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues,
        actor: Actor,
    ) -> EventPlan | None:
        """How the events of a subscription (its validated operation, fragments and
        coerced variables) render for readers like ``actor`` (the same role, API key or
        not, scopes): compiled once, run per event with its ids (``render_event``); None
        when the executed path must render them."""
        selections = operation.selection_set.selections
        if len(selections) != 1 or not isinstance(selections[0], FieldNode):
            return None
        root = selections[0]
        subscription = self.schema._schema.subscription_type
        if root.directives or root.selection_set is None or subscription is None:
            return None
        field = subscription.fields.get(root.name.value)
        if field is None:
            return None
        event_type = get_named_type(field.type)
        compiler = Compiler(self.schema, self.settings, actor, fragments, variables)
        try:
            compiled = compiler.event(event_type.name, [root.selection_set])
        except Unsupported as reason:
            log.debug("executed renderings: %s", str(reason))
            return None
        except Exception:  # a compiler defect must cost speed, not the rendering
            log.exception("cannot compile a subscription's events, executing them instead")
            return None
        key = root.alias.value if root.alias else root.name.value
        return EventPlan(orjson.dumps(key), compiled)

    async def render_event(
        self, plan: EventPlan, actor: Actor, event: events.StoredEvent, root: Any
    ) -> bytes | None:
        """The payload of ``event`` (whose root value is ``root``) rendered by ``plan`` for
        ``actor``, as one statement on the primary (a live event renders what was just
        written), byte for byte what the executed rendering encodes; None: the executed
        path must render it (a row it cannot represent, a statement that failed, a value
        the executed path answers with an error)."""
        compiled = plan.event.compiled
        row: Any = ()
        if compiled is not None:
            if not all(readable(actor, m) for m in compiled.models):
                return None
            params = _actor_params(compiled, actor)
            for index, id_of in plan.event.id_params:
                params[index - 1] = id_of(event)
            try:
                row = await self.pools[compiled.plan_cache].fetchrow(
                    compiled.sql, actor.workspace_id, *params
                )
            except _FAILED as error:  # _REFUSED included: a stored value it cannot show
                log.debug("compiled rendering failed, executing instead: %s", error)
                return None
            if row is None or any(value is None for value in row):
                log.error("compiled rendering returned NULL, executing instead: %s", compiled.sql)
                return None
        parts = [b'{"data":{', plan.key, b":{"]
        for head, member in plan.event.members:
            parts.append(head)
            if isinstance(member, int):
                parts.append(row[member].encode())
            else:
                value = member(root)
                if value is None:
                    return None
                parts.append(value)
        parts.append(b"}}}")
        body = b"".join(parts)  # a join: an allocation of its own length (``jsonbytes.kept``)
        if compiled is not None and compiled.reencode:
            try:
                body = dumps_kept(orjson.loads(body))
            except orjson.JSONDecodeError:  # numbers orjson cannot hold (ints over 64 bits)
                return None
        self.event_renders += 1
        return body


@dataclass(frozen=True)
class EventPlan:
    """A subscription's events as compiled (``CompiledReads.event_plan``)."""

    key: bytes  # the JSON text of the subscription field's response key
    event: CompiledEvent


def _actor_params(compiled: Compiled, actor: Actor) -> list[Any]:
    """The statement's parameters after the workspace, with the actor's user and API key
    ids where the plan, shared by the actors of its key, left a place for them."""
    params = list(compiled.params[1:])
    for index in compiled.user_params:
        params[index - 1] = actor.user_id
    for index in compiled.api_key_params:
        params[index - 1] = actor.api_key_id
    return params
