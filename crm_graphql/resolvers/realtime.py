"""Subscriptions: turn a subscription's arguments into a stream of ``realtime.streams``
(its topic, cursor, ``realtime.verdicts`` rule and followed entity) after checking the
object it names; resolve the fields of its events. Also the ephemeral ones (typing,
presence) and ``setTyping``/``onlineUsers``, over ``realtime.ephemeral``."""

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from graphql import GraphQLError
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql import models
from crm_graphql.global_ids import decode_id, to_global_id
from crm_graphql.realtime import ephemeral, streams, verdicts
from crm_graphql.realtime.groups import EventValue
from crm_graphql.realtime.streams import graphql_error
from crm_graphql.resolvers.context import Context
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import UserErrorValue, user_errors
from crm_graphql.services import activities, conversations, deals
from crm_graphql.services.actor import Actor, scoped
from crm_graphql.services.errors import DomainError, NotFound
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import records

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the subscriptions' arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.realtime import ActivityFeedFilter, SetTypingInput

_realtime = "crm_graphql.schema.realtime"

log = logging.getLogger(__name__)

# The resume argument of every subscription with a durable stream.
ResumeAfter = Annotated[
    str | None,
    strawberry.argument(
        description="The `cursor` of the last event you received: what happened since comes "
        "first, then live events, in order and once. Left out: live events from now."
    ),
]
ConversationArgument = Annotated[
    strawberry.ID, strawberry.argument(description="The conversation to follow.")
]
PipelineArgument = Annotated[
    strawberry.ID, strawberry.argument(description="The pipeline whose board to follow.")
]

# A service check that the caller may see an object (``conversations.get_visible``).
Visible = Callable[[Actor, AsyncSession, uuid.UUID | None], Awaitable[object]]


async def _check(
    info: Info, model: type[Any], id: uuid.UUID | None, *, visible: Visible | None = None
) -> None:
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


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


async def conversation_events(
    info: Info, conversation_id: ConversationArgument, after: ResumeAfter = None
) -> AsyncIterator[EventValue]:
    """Messages, status changes, assignments and read receipts of one conversation."""
    id = decode_id(conversation_id, "Conversation")
    await _check(info, models.Conversation, id, visible=conversations.get_visible)
    rule = verdicts.ConversationAccess(ends=True)
    async for value in streams.subscribe(info, conversations.TOPIC, after, rule, entity=id):
        yield value


async def inbox(info: Info, after: ResumeAfter = None) -> AsyncIterator[EventValue]:
    """Every conversation event the agent may see: new conversations, assignments,
    status changes, new messages."""
    rule = verdicts.ConversationAccess(ends=False)
    async for value in streams.subscribe(info, conversations.TOPIC, after, rule):
        yield value


async def activity_feed(
    info: Info,
    filter: Annotated["ActivityFeedFilter", strawberry.lazy(_realtime)] | None = None,
    after: ResumeAfter = None,
) -> AsyncIterator[EventValue]:
    """Activities logged in the workspace, optionally for one customer, deal or type."""
    customer_id = (
        decode_id(filter.customer_id, "Customer") if filter and filter.customer_id else None
    )
    deal_id = decode_id(filter.deal_id, "Deal") if filter and filter.deal_id else None
    types = frozenset(t.value for t in filter.types) if filter and filter.types else None
    if filter and (
        (filter.customer_id and customer_id is None) or (filter.deal_id and deal_id is None)
    ):
        raise graphql_error(NotFound("Customer or deal not found", "filter"))
    # Like the other subscriptions: an object of another workspace is NOT_FOUND.
    if customer_id is not None:
        await _check(info, models.Customer, customer_id)
    if deal_id is not None:
        await _check(info, models.Deal, deal_id)
    chosen = verdicts.ActivityFilter(customer_id, deal_id, types)
    rule = verdicts.Everything()
    async for value in streams.subscribe(info, activities.TOPIC, after, rule, selects=chosen):
        yield value


async def deal_board(
    info: Info, pipeline_id: PipelineArgument, after: ResumeAfter = None
) -> AsyncIterator[EventValue]:
    """Deals created, moved, updated, won or lost in one pipeline (and its stages)."""
    id = decode_id(pipeline_id, "Pipeline")
    await _check(info, models.Pipeline, id)
    assert id is not None
    rule = verdicts.Everything()
    async for value in streams.subscribe(info, deals.pipeline_topic(id), after, rule):
        yield value


# ------------------------------------------------------------------ event fields


def event_last_read_seq(root: EventValue) -> int | None:
    value = root.event.payload.get("last_read_seq")
    return None if value is None else int(value)


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


async def set_typing(
    info: Info, input: Annotated["SetTypingInput", strawberry.lazy(_realtime)]
) -> SetTypingValue:
    """Tell the others in a conversation that the caller is (or stopped) typing. Users
    who may write only; the conversation must be visible to them."""
    context: Context = info.context
    actor = context.require_actor()
    id = decode_id(input.conversation_id, "Conversation")
    try:
        authorize(actor, Action.SEND_AGENT_MESSAGES)
        async with context.own_session() as session:
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


async def typing(info: Info, conversation_id: ConversationArgument) -> AsyncIterator[TypingValue]:
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


async def presence(info: Info) -> AsyncIterator[PresenceValue]:
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


async def online_users(info: Info) -> list[models.User]:
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
