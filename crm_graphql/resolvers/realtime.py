"""Subscriptions: follow an event stream of the hub, check permission per event, and
resolve each delivered event in a scope of its own. Also the ephemeral ones (typing,
presence) and ``setTyping``/``onlineUsers``, over ``realtime.ephemeral``."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
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
from redis.exceptions import RedisError

from crm_graphql import models
from crm_graphql.realtime import ephemeral, fanout
from crm_graphql.realtime.hub import Render
from crm_graphql.realtime.ws import PROTOCOL_KEY, close_slow_consumer
from crm_graphql.resolvers.context import EVENT_SCOPE, Context
from crm_graphql.resolvers.ids import decode_id, to_global_id
from crm_graphql.resolvers.lists import by_id
from crm_graphql.resolvers.mutations import UserErrorValue, user_errors
from crm_graphql.services import activities, conversations, deals
from crm_graphql.services.actor import Actor, scoped
from crm_graphql.services.errors import DomainError, NotFound
from crm_graphql.services.events import Position, StoredEvent
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import records

log = logging.getLogger(__name__)


@dataclass
class EventValue:
    """What the event types read: the stored event plus helpers for its payload."""

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

    def payload_id(self, key: str) -> uuid.UUID | None:
        value = self.event.payload.get(key)
        return uuid.UUID(value) if value else None


def graphql_error(error: DomainError) -> GraphQLError:
    extensions: dict[str, Any] = {"code": error.code}
    if error.field:
        extensions["field"] = error.field
    return GraphQLError(error.message, extensions=extensions)


def _after(after: str | None) -> Position | None:
    try:
        return Position.decode(after) if after else None
    except DomainError as error:
        raise graphql_error(error) from error


async def _stream(
    info: Any,
    topic: str,
    after: str | None,
    deliver: Callable[[Actor, StoredEvent], bool | None],
    *,
    entity: uuid.UUID | None = None,
) -> AsyncIterator[EventValue]:
    """Events of ``topic`` for which ``deliver`` says True; None ends the subscription
    (after the event that ended access, if it was delivered). With ``entity``, only that
    entity's events can be for this subscriber (an index for fan-out; ``deliver`` still
    checks).

    On our WebSocket server the events are pushed (``Hub.push``): rendered once per group
    of subscribers with the same document, variables and visibility class, and written
    to each socket directly. Elsewhere each event is yielded and resolved per subscriber."""
    context: Context = info.context
    actor = context.require_actor()
    websocket = context.websocket
    event_stream = context.event_stream  # over SSE: Last-Event-ID resumes like `after`
    position = _after(event_stream.resume_after if event_stream else None) or _after(after)

    async def on_slow() -> None:
        if websocket is not None:
            await close_slow_consumer(websocket)
        elif event_stream is not None:
            event_stream.slow()

    executor = event_executor(info)
    protocol = websocket.scope.get(PROTOCOL_KEY) if websocket is not None else None
    # A WebSocket of our server, or an event stream (realtime/sse.py): frames pushed.
    sink = fanout.SocketSink.attach(protocol, fanout.OPERATION.get()) or context.event_stream
    if sink is not None and executor is not None:
        plan = _fanout(info, executor, actor)
        await context.app.hub.push(
            actor.workspace_id,
            topic,
            position,
            group_key=plan.group_key,
            render=plan.render,
            accepts=lambda event: deliver(actor, event),
            variant=plan.variant,
            entity=entity,
            sink=sink,
            on_slow=on_slow,
            credential=context.credential,
        )
        return

    async for event in context.app.hub.follow(
        actor.workspace_id, topic, position, on_slow=on_slow, credential=context.credential
    ):
        verdict = deliver(actor, event)
        if verdict is False:
            continue
        scope = context.event_scope()
        EVENT_SCOPE.set(scope)
        if event_stream is not None:
            event_stream.cursor = event.cursor
        try:
            # Resumed once the event's selection is resolved and sent: hand the
            # connection back before waiting for the next event.
            yield EventValue(event)
        finally:
            with contextlib.suppress(Exception):  # a dead connection is the pool's problem
                await scope.close()
        if verdict is None:
            return


# --------------------------------------------------------------- fan-out groups
# Members of a group must render every event to the same bytes, so the key holds all
# that the selection's result depends on: the document, the variables it uses (the root
# field's own arguments only choose events, which each member checks itself), and what
# the services decide from the actor: workspace, role, API-key scopes, and the user when
# the selection's result depends on who reads it.
#
# Conversations and messages are visible per user (conversations.can_see). Each member
# checks the event's own conversation per event. A selection that reaches conversation
# data only through the event's conversation and message (no lists, no read state) is
# rendered for a group of users who do not see every conversation with a stand-in actor
# of their role that is nobody: it sees what every member may see (public
# conversations). The assignee of a private conversation gets that event rendered with
# its own actor (a variant). Lists of conversations or messages, or read state, make the
# selection per user: one group per user.

NOBODY = uuid.UUID(int=0)  # the user id of the stand-in actor: no user, no assignments
CONVERSATION_TYPES = frozenset({"Conversation", "Message"})
PER_USER_TYPES = frozenset(
    {"ConversationConnection", "ConversationEdge", "MessageConnection", "MessageEdge"}
)


@dataclass(frozen=True)
class _Shape:
    """What the grouping needs to know about a subscription document."""

    variables: frozenset[str]  # used by the selection (not the root field's arguments)
    conversations: bool  # reaches a conversation or message
    per_user: bool  # lists conversations or messages, or read state


_shapes: dict[tuple[str, str | None], _Shape] = {}


@dataclass(frozen=True)
class _Fanout:
    """How one subscriber takes part in fan-out."""

    group_key: Hashable
    render: Render
    variant: Callable[[StoredEvent], Hashable] | None


def event_executor(info: Any) -> Any:
    """graphql-core's executor of this subscription (it renders each event), or None."""
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


def _fanout(info: Any, executor: Any, actor: Actor) -> _Fanout:
    shape = _shape(info, executor)
    values = variable_values(executor)
    variables = tuple(sorted((n, repr(values.get(n))) for n in shape.variables))
    per_user = shape.per_user or "unread" in repr(variables).lower()
    by_user = actor.user_id is not None and (shape.conversations or per_user)
    stand_in = by_user and not per_user and not conversations.sees_every_conversation(actor)
    reader = reading_actor(actor)
    common = dataclasses.replace(reader, user_id=NOBODY)
    variant = None
    if stand_in:

        def variant(event: StoredEvent) -> Hashable:
            payload = event.payload
            mine = payload.get("is_private") and _uuid(payload.get("assignee_id")) == actor.user_id
            return reader if mine else None

    return _Fanout(
        group_key=(document_key(executor), variables, visibility(actor, per_user=per_user)),
        render=_renderer(info, executor, common if stand_in else reader),
        variant=variant,
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
    app = info.context.app
    schema = getattr(info, "schema", None)
    production = app.settings.is_production
    operation = executor.detached()

    async def render(event: StoredEvent, variant: Hashable) -> bytes:
        actor = variant if isinstance(variant, Actor) else common
        async with _event_scope(app, actor, event) as scope:
            data, errors = await execute_detached(operation, EventValue(event), scope, schema)
        return fanout.encode_result(data, errors, production=production)

    return render


async def execute_detached(
    operation: Any, root: Any, scope: Context, schema: Any
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


_scopes: dict[tuple[int, Position, Actor], tuple[Context, list[int]]] = {}


@contextlib.asynccontextmanager
async def _event_scope(app: Any, actor: Actor, event: StoredEvent) -> AsyncIterator[Context]:
    """A short-lived scope (loaders, session) for rendering an event as ``actor``.
    Renderings of the same event for the same actor that run at the same time (groups of
    different documents: a conversation's events and the inbox) share it, like the
    fields of one request: each row is read once."""
    key = (id(app), event.position, actor)
    entry = _scopes.get(key)
    if entry is None:
        # Renderings read through the hub's own pool, like its stream readers.
        scope = Context(
            app=app,
            actor=actor,
            request_id=uuid.uuid4().hex,
            sessions=app.hub.sessionmaker,
            plain_reads=app.hub.pool,
        )
        entry = _scopes[key] = (scope, [0])
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


async def _check(info: Any, model: type[Any], id: uuid.UUID | None, *, visible: Any = None) -> None:
    """The object must exist in the actor's workspace (and be visible) at subscribe time."""
    context: Context = info.context
    actor = context.require_actor()
    try:
        async with context.app.sessionmaker() as session:
            if visible is not None:
                await visible(actor, session, id)
            else:
                await records.get(actor, session, model, id)
    except DomainError as error:
        raise graphql_error(error) from error


def _conversation_verdict(actor: Actor, event: StoredEvent, *, ends: bool) -> bool | None:
    payload = event.payload
    visible = conversations.can_see(
        actor,
        is_private=bool(payload.get("is_private")),
        assignee_id=_uuid(payload.get("assignee_id")),
    )
    if visible:
        return True
    lost_it = (
        event.type == "conversation.assigned"
        and _uuid(payload.get("previous_assignee_id")) == actor.user_id
    )
    if lost_it:  # tell the agent who lost the conversation, then stop (if following it)
        return None if ends else True
    return False


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


async def conversation_events(
    info: Any, conversation_id: str, after: str | None
) -> AsyncIterator[EventValue]:
    """Messages, status changes, assignments and read receipts of one conversation."""
    id = decode_id(conversation_id, "Conversation")
    await _check(info, models.Conversation, id, visible=conversations.get_visible)

    def deliver(actor: Actor, event: StoredEvent) -> bool | None:
        if event.entity_id != id:
            return False
        return _conversation_verdict(actor, event, ends=True)

    async for value in _stream(info, conversations.TOPIC, after, deliver, entity=id):
        yield value


async def inbox(info: Any, after: str | None) -> AsyncIterator[EventValue]:
    """Every conversation event the agent may see: new conversations, assignments,
    status changes, new messages."""

    def deliver(actor: Actor, event: StoredEvent) -> bool | None:
        return _conversation_verdict(actor, event, ends=False)

    async for value in _stream(info, conversations.TOPIC, after, deliver):
        yield value


async def activity_feed(info: Any, filter: Any, after: str | None) -> AsyncIterator[EventValue]:
    """Activities logged in the workspace, optionally for one customer, deal or type."""
    customer_id = (
        decode_id(filter.customer_id, "Customer") if filter and filter.customer_id else None
    )
    deal_id = decode_id(filter.deal_id, "Deal") if filter and filter.deal_id else None
    types = {t.value for t in filter.types} if filter and filter.types else None
    if filter and (
        (filter.customer_id and customer_id is None) or (filter.deal_id and deal_id is None)
    ):
        raise graphql_error(NotFound("Customer or deal not found", "filter"))
    # Like the other subscriptions: an object of another workspace is NOT_FOUND.
    if customer_id is not None:
        await _check(info, models.Customer, customer_id)
    if deal_id is not None:
        await _check(info, models.Deal, deal_id)

    def deliver(actor: Actor, event: StoredEvent) -> bool:
        payload = event.payload
        if customer_id and _uuid(payload.get("customer_id")) != customer_id:
            return False
        if deal_id and _uuid(payload.get("deal_id")) != deal_id:
            return False
        return not (types and payload.get("type") not in types)

    async for value in _stream(info, activities.TOPIC, after, deliver):
        yield value


async def deal_board(info: Any, pipeline_id: str, after: str | None) -> AsyncIterator[EventValue]:
    """Deals created, moved, updated, won or lost in one pipeline (and its stages)."""
    id = decode_id(pipeline_id, "Pipeline")
    await _check(info, models.Pipeline, id)
    assert id is not None

    def deliver(actor: Actor, event: StoredEvent) -> bool:
        return True

    async for value in _stream(info, deals.pipeline_topic(id), after, deliver):
        yield value


# ------------------------------------------------------------------ event fields


async def event_conversation(info: Any, value: EventValue) -> Any:
    return await by_id(
        info, models.Conversation, value.payload_id("conversation_id") or value.event.entity_id
    )


async def event_message(info: Any, value: EventValue) -> Any:
    return await by_id(info, models.Message, value.payload_id("message_id"))


async def event_user(info: Any, value: EventValue, key: str) -> Any:
    return await by_id(info, models.User, value.payload_id(key))


async def event_activity(info: Any, value: EventValue) -> Any:
    return await by_id(
        info,
        models.Activity,
        value.event.entity_id if value.event.entity_type == "Activity" else None,
    )


async def event_deal(info: Any, value: EventValue) -> Any:
    deal_id = (
        value.event.entity_id if value.event.entity_type == "Deal" else value.payload_id("deal_id")
    )
    return await by_id(info, models.Deal, deal_id)


async def event_stage(info: Any, value: EventValue) -> Any:
    stage_id = (
        value.event.entity_id
        if value.event.entity_type == "Stage"
        else value.payload_id("stage_id")
    )
    return await by_id(info, models.Stage, stage_id)


async def event_pipeline(info: Any, value: EventValue) -> Any:
    return await by_id(info, models.Pipeline, value.payload_id("pipeline_id"))


# ------------------------------------------------- ephemeral: typing and presence
# Redis only (realtime/ephemeral.py): nothing here reads or writes the event log, and
# setTyping writes no audit row: it changes no data.

CACHE_SECONDS = 5.0  # how long a subscription trusts a visibility answer or a user row


@dataclass
class TypingValue:
    conversation_id: str
    user: models.User | None
    is_typing: bool
    at: datetime


@dataclass
class PresenceValue:
    user: models.User | None
    status: ephemeral.PresenceStatus
    at: datetime


@dataclass
class SetTypingValue:
    ok: bool
    errors: list[UserErrorValue]


class _Cached:
    """A subscription's short-lived memory of database answers, so that a burst of
    typing events costs no query per event: users by id, and whether the conversation
    is still visible (asked again after ``CACHE_SECONDS``)."""

    def __init__(self, context: Context, actor: Actor) -> None:
        self.context = context
        self.actor = actor
        self.users: dict[uuid.UUID, tuple[float, models.User | None]] = {}
        self.visible_at = time.monotonic()  # checked when subscribing

    async def user(self, user_id: uuid.UUID | None) -> models.User | None:
        if user_id is None:
            return None
        now = time.monotonic()
        cached = self.users.get(user_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        async with self.context.app.sessionmaker() as session:
            user = await session.scalar(
                scoped(models.User, self.actor).where(models.User.id == user_id)
            )
        if len(self.users) > 1000:
            self.users.clear()
        self.users[user_id] = (now, user)
        return user

    async def still_visible(self, conversation_id: uuid.UUID) -> bool | None:
        """True or False; None when it cannot be told now (the database is down)."""
        if time.monotonic() - self.visible_at < CACHE_SECONDS:
            return True
        try:
            async with self.context.app.sessionmaker() as session:
                await conversations.get_visible(self.actor, session, conversation_id)
        except DomainError:
            return False
        except Exception:
            log.warning("re-checking a typing subscription failed", exc_info=True)
            return None
        self.visible_at = time.monotonic()
        return True


def _at(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return datetime.now(UTC)


async def set_typing(info: Any, input: Any) -> SetTypingValue:
    """Tell the others in a conversation that the caller is (or stopped) typing. Users
    who may write only; the conversation must be visible to them."""
    context: Context = info.context
    actor = context.require_actor()
    id = decode_id(input.conversation_id, "Conversation")
    try:
        authorize(actor, Action.SEND_AGENT_MESSAGES)
        async with context.app.sessionmaker() as session:
            await conversations.get_visible(actor, session, id, field="conversationId")
            user = await session.scalar(
                scoped(models.User, actor).where(models.User.id == actor.user_id)
            )
    except DomainError as error:
        return SetTypingValue(ok=False, errors=user_errors([error]))
    assert id is not None
    payload = {
        "user_id": str(actor.user_id),
        "user_name": user.name if user is not None else None,
        "is_typing": bool(input.is_typing),
        "at": ephemeral.now_iso(),
    }
    try:
        channel = ephemeral.typing_channel(actor.workspace_id, id)
        await ephemeral.of(context.app).fanout.publish(channel, payload)
    except (RedisError, OSError, TimeoutError):
        log.warning("could not publish a typing signal", exc_info=True)
        unavailable = UserErrorValue("UNAVAILABLE", None, "Typing could not be sent; try again")
        return SetTypingValue(ok=False, errors=[unavailable])
    return SetTypingValue(ok=True, errors=[])


async def typing(info: Any, conversation_id: str) -> AsyncIterator[TypingValue]:
    """Typing signals of the others in a conversation (not the caller's own). Ends when
    the conversation stops being visible to the caller (checked every few seconds)."""
    context: Context = info.context
    actor = context.require_actor()
    id = decode_id(conversation_id, "Conversation")
    await _check(info, models.Conversation, id, visible=conversations.get_visible)
    assert id is not None
    cached = _Cached(context, actor)
    global_id = to_global_id("Conversation", id)
    channel = ephemeral.typing_channel(actor.workspace_id, id)
    async with ephemeral.of(context.app).fanout.listen(channel) as listener:
        async for payload in listener:
            user_id = _uuid(payload.get("user_id"))
            if user_id is not None and user_id == actor.user_id:
                continue
            visible = await cached.still_visible(id)
            if visible is False:
                return
            if visible is None:
                continue
            yield TypingValue(
                conversation_id=global_id,
                user=await cached.user(user_id),
                is_typing=bool(payload.get("is_typing")),
                at=_at(payload.get("at")),
            )


async def presence(info: Any) -> AsyncIterator[PresenceValue]:
    """Users of the workspace coming online (first connection) and going offline (last
    connection closed, or their server gone for 45 s)."""
    context: Context = info.context
    actor = context.require_actor()
    try:
        authorize(actor, Action.READ_USERS)
    except DomainError as error:
        raise graphql_error(error) from error
    cached = _Cached(context, actor)
    channel = ephemeral.presence_channel(actor.workspace_id)
    async with ephemeral.of(context.app).fanout.listen(channel) as listener:
        async for payload in listener:
            try:
                status = ephemeral.PresenceStatus(payload.get("status"))
            except ValueError:
                continue
            yield PresenceValue(
                user=await cached.user(_uuid(payload.get("user_id"))),
                status=status,
                at=_at(payload.get("at")),
            )


async def online_users(info: Any) -> list[models.User]:
    """Users with an open WebSocket connection in the workspace, by name."""
    context: Context = info.context
    actor = context.require_actor()
    try:
        authorize(actor, Action.READ_USERS)
        ids = await ephemeral.of(context.app).presence.online_user_ids(actor.workspace_id)
    except DomainError as error:
        raise graphql_error(error) from error
    except (RedisError, OSError, TimeoutError) as exc:
        raise GraphQLError(
            "Presence is unavailable right now; try again",
            extensions={"code": "UNAVAILABLE"},
        ) from exc
    users = await context.loaders.by_id(models.User).load_many(ids)
    return sorted((u for u in users if u is not None), key=lambda u: (u.name, str(u.id)))
