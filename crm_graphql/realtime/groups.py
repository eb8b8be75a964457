"""Fan-out groups: which subscribers render an event to the same bytes, and how an event
is rendered once for all of them (docs/decisions/0007-fanout.md, 0031).

Members of a group must render every event to the same bytes and receive the same
verdict, so the key holds all that the selection's result and the verdict depend on: the
document, the variables the selection uses, what the services decide from the actor
(workspace, role, API-key scopes, and the user when the selection's result depends on
who reads it), and the subscription's ``verdicts.Rule`` (the root field's arguments that
choose events; the one entity a member follows is an index of the group, not its key).

Conversations and messages are visible per user (``conversations.can_see``). A selection
that reaches conversation data only through the event's conversation and message (no
lists, no read state) is rendered for a group of users who do not see every conversation
with a stand-in actor of their role that is nobody: it sees what every member may see
(public conversations). The assignee of a private conversation gets that event rendered
with its own actor (``verdicts.OWN``: a variant). Lists of conversations or messages, or
read state, make the selection per user: one group per user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    get_nullable_type,
    is_list_type,
    visit,
)
from graphql.language.visitor import SKIP

from crm_graphql.realtime import fanout
from crm_graphql.realtime.connections import LiveContext, Scope
from crm_graphql.realtime.hub import Render
from crm_graphql.realtime.verdicts import NOBODY, Rule, Verdict, audience
from crm_graphql.services import conversations
from crm_graphql.services.actor import Actor
from crm_graphql.services.events import Position, StoredEvent

log = logging.getLogger(__name__)

CONVERSATION_TYPES = frozenset({"Conversation", "Message"})
PER_USER_TYPES = frozenset(
    {"ConversationConnection", "ConversationEdge", "MessageConnection", "MessageEdge"}
)


@dataclass
class EventValue:
    """What the event types read (the root of an event's selection): the stored event.
    The rows an event names are found in it by ``readmodel.EVENT_TYPES``."""

    event: StoredEvent

    @property
    def cursor(self) -> str:
        return self.event.cursor

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def occurred_at(self) -> datetime:
        return self.event.created_at


@dataclass(frozen=True)
class _Shape:
    """What the grouping needs to know about a subscription document."""

    variables: frozenset[str]  # used by the selection (not the root field's arguments)
    conversations: bool  # reaches a conversation or message
    per_user: bool  # lists conversations or messages, or read state


_shapes: dict[tuple[str, str | None], _Shape] = {}


@dataclass(frozen=True)
class Plan:
    """How one subscriber takes part in fan-out: its group's key, how the group renders
    and judges an event (used if it creates the group), and the variant it is rendered
    as when a verdict says ``own`` (None: the group renders as it does)."""

    group_key: Hashable
    render: Render
    judge: Callable[[StoredEvent], Verdict]
    own: Hashable


def event_executor(info: Any) -> Any:
    """graphql-core's executor of this subscription (it renders each event), or None.
    Reaches Strawberry's ``_raw_info`` and the bound ``gather`` of graphql-core's
    executor (``schema/executor.py`` pins the versions; tests/realtime/test_fanout_memory.py
    fails when they change)."""
    raw = getattr(info, "_raw_info", info)
    gather = getattr(getattr(raw, "async_helpers", None), "gather", None)
    executor = getattr(gather, "__self__", None)
    return executor if hasattr(executor, "detached") else None


def _shape(info: Any, executor: Any) -> _Shape:
    operation = executor.operation
    source = operation.loc.source.body if operation.loc is not None else None
    name = operation.name.value if operation.name is not None else None
    cached = _shapes.get((source, name)) if source is not None else None
    if cached is not None:
        return cached
    raw = getattr(info, "_raw_info", info)
    root_arguments = {id(a) for node in raw.field_nodes for a in node.arguments or ()}
    variables: set[str] = set()
    types: set[str] = set()
    lists: set[str] = set()

    class Collect(Visitor):
        def enter_variable_definition(self, node: Any, *_: Any) -> Any:
            return SKIP  # declared is not used

        def enter_argument(self, node: Any, *_: Any) -> Any:
            return SKIP if id(node) in root_arguments else None

        def enter_variable(self, node: Any, *_: Any) -> None:
            variables.add(node.name.value)

        def enter_field(self, node: Any, *_: Any) -> None:
            field_type = type_info.get_type()
            if field_type is not None:
                named = get_named_type(field_type).name
                types.add(named)
                if is_list_type(get_nullable_type(field_type)):
                    lists.add(named)

    type_info = TypeInfo(raw.schema)
    document = DocumentNode(definitions=(operation, *raw.fragments.values()))
    visit(document, TypeInfoVisitor(type_info, Collect()))
    shape = _Shape(
        variables=frozenset(variables),
        conversations=bool(types & CONVERSATION_TYPES),
        per_user=bool(types & PER_USER_TYPES)
        or bool(lists & CONVERSATION_TYPES)
        or "unread" in (source or "").lower(),
    )
    if source is not None:
        if len(_shapes) > 1000:
            _shapes.clear()
        _shapes[(source, name)] = shape
    return shape


def document_key(executor: Any) -> Hashable:
    """The operation a subscription runs: its document's text and operation name."""
    operation = executor.operation
    if operation.loc is None:
        return id(operation)
    return (operation.loc.source.body, operation.name.value if operation.name else None)


def variable_values(executor: Any) -> dict[str, Any]:
    return getattr(executor.variable_values, "coerced", executor.variable_values) or {}


def visibility(actor: Actor, *, per_user: bool) -> Hashable:
    """What the services decide from the actor: workspace, role, API key or user,
    API-key scopes, and the user when the result depends on who reads it."""
    return (
        actor.workspace_id,
        actor.role,
        actor.api_key_id is not None,
        tuple(sorted(actor.scopes)),
        actor.user_id if per_user else None,
    )


def reading_actor(actor: Actor) -> Actor:
    """The actor a shared rendering reads as: renderings only read, so the request's id
    and address (audit) do not matter to them."""
    return dataclasses.replace(actor, request_id=None, client_ip=None)


def plan(info: Any, executor: Any, actor: Actor, rule: Rule) -> Plan:
    """The group of a subscription of ``rule`` by ``actor``, and how it takes part."""
    shape = _shape(info, executor)
    values = variable_values(executor)
    variables = tuple(sorted((n, repr(values.get(n))) for n in shape.variables))
    per_user = shape.per_user or "unread" in repr(variables).lower()
    by_user = actor.user_id is not None and (shape.conversations or per_user)
    stand_in = by_user and not per_user and not conversations.sees_every_conversation(actor)
    reader = reading_actor(actor)
    group_key: Hashable = (
        document_key(executor),
        variables,
        visibility(actor, per_user=per_user),
        rule,
    )
    # One tuple per key, however many members hold it (a member keeps its key).
    group_key = _keys.setdefault(group_key, group_key)
    if len(_keys) > 10_000:
        _keys.clear()
    # A member hands its group's rendering and verdict to the hub, which uses them only
    # when this member creates the group, but keeps them while the member lives: members
    # of one key share them (while one is alive), not one executor per idle socket.
    # By app too: a rendering reads through its app (tests serve several in a process).
    render_key = (id(info.context.app), group_key)
    render = _renders.get(render_key)
    if render is None:
        common = dataclasses.replace(reader, user_id=NOBODY)
        render = _renders[render_key] = _renderer(info, executor, common if stand_in else reader)
    judge = _judges.get(group_key)
    if judge is None:
        judged_as = audience(actor)
        judge = _judges[group_key] = lambda event: rule(event, judged_as)
    return Plan(group_key=group_key, render=render, judge=judge, own=reader if stand_in else None)


_keys: dict[Hashable, Hashable] = {}
# The renderings and verdicts of the group keys some member or group still holds.
_renders: weakref.WeakValueDictionary[Hashable, Render] = weakref.WeakValueDictionary()
_judges: weakref.WeakValueDictionary[Hashable, Callable[[StoredEvent], Verdict]] = (
    weakref.WeakValueDictionary()
)


def _renderer(info: Any, executor: Any, common: Actor) -> Render:
    """Render an event for a group: the subscription's selection executed once (per
    variant: the actor it is rendered for), in a short-lived scope of its own (fresh
    loaders and session), encoded once.

    The group outlives the member whose subscription created it, so the rendering keeps
    nothing of that member's request: not its ``info`` nor its executor (whose context
    holds the member's socket), only an executor of the same validated operation without
    one (``schema.executor.EventExecutor.detached``; each event's copy of it has a memo
    of its own, nothing accumulates there)."""
    context: LiveContext = info.context
    app = context.app
    new_scope = context.rendering_scopes()
    schema = getattr(info, "schema", None)
    production = app.settings.is_production
    operation = executor.detached()
    # The compiled rendering, where the compiled path knows every field selected: one
    # statement per event, its ids as parameters; the executed one is its oracle.
    compiled = app.compiled
    plan = (
        compiled.event_plan(
            executor.operation, executor.fragment_definitions, executor.variable_values, common
        )
        if compiled is not None
        else None
    )

    async def render(event: StoredEvent, variant: Hashable) -> bytes:
        actor = variant if isinstance(variant, Actor) else common
        if plan is not None:
            assert compiled is not None
            body = await compiled.render_event(plan, actor, event, EventValue(event))
            if body is not None:
                return body
        async with _event_scope(app, new_scope, actor, event) as scope:
            data, errors = await execute_detached(operation, EventValue(event), scope, schema)
        return fanout.encode_result(data, errors, production=production)

    return render


async def execute_detached(
    operation: Any, root: Any, scope: Any, schema: Any
) -> tuple[Any, list[GraphQLError] | None]:
    """Execute a detached subscription operation once for ``root`` (an event, a
    dashboard) in ``scope``: its data and errors (an exception is an error result, like
    Strawberry gives, not a dead stream)."""
    run = operation.build_per_event_executor(root)
    try:
        run.context_value = scope
        result = run.execute_operation(False)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        log.exception("rendering a subscription failed")
        return None, [GraphQLError(str(exc), original_error=exc)]
    if result.errors and schema is not None and hasattr(schema, "process_errors"):
        schema.process_errors(result.errors)
    return result.data, result.errors


_scopes: dict[tuple[int, Position, Actor], tuple[Scope, list[int]]] = {}


@contextlib.asynccontextmanager
async def _event_scope(
    app: Any, new_scope: Callable[[Actor], Scope], actor: Actor, event: StoredEvent
) -> AsyncIterator[Scope]:
    """A short-lived scope (loaders, session) for rendering an event as ``actor``.
    Renderings of the same event for the same actor that run at the same time (groups of
    different documents: a conversation's events and the inbox) share it, like the
    fields of one request: each row is read once."""
    key = (id(app), event.position, actor)
    entry = _scopes.get(key)
    if entry is None:
        entry = _scopes[key] = (new_scope(actor), [0])
    scope, users = entry
    users[0] += 1
    try:
        yield scope
    finally:
        users[0] -= 1
        if not users[0]:
            if _scopes.get(key) is entry:
                del _scopes[key]
            with contextlib.suppress(Exception):  # a dead connection is the pool's problem
                await scope.close()
