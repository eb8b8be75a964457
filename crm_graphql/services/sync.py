"""The change feed for partners who pull: every create, update, archive and erase of the
synced types, in commit order, from a resumable cursor (docs/decisions/0032).

The changes are rows of the event log (topic ``changes``) written by database triggers
in the writing transaction (migration 0022), whatever statement wrote the row. They are
read the way live streams read the log (``services.events``): in ``(txid, id)`` order and
only below the horizon, the oldest transaction of this database still running, so a
change that commits late always sorts after every cursor already handed out. Resuming
after a cursor never skips a change and never repeats one, across any number of writers
and server processes.

Scoped like every read: the workspace, the read permission of each type (a type the
caller may not read is left out, or refused when asked for by name), and a conversation's
(or its message's) change only for callers who may see the conversation as it is now.
A change names its columns, never their values."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, or_, select, text, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm_graphql import models
from crm_graphql.enums import ChangeKind, SyncedType
from crm_graphql.models import Conversation, Event, Message
from crm_graphql.services import conversations
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Forbidden, Invalid
from crm_graphql.services.events import CHANGES_TOPIC, HORIZON_SQL, LAST_ID, ORIGIN, Position
from crm_graphql.services.policy import READ_ACTIONS, allows, authorize_read

EVENT_PREFIX = "change."
MODELS: dict[SyncedType, type[Any]] = {
    SyncedType.CUSTOMER: models.Customer,
    SyncedType.COMPANY: models.Company,
    SyncedType.DEAL: models.Deal,
    SyncedType.PIPELINE: models.Pipeline,
    SyncedType.STAGE: models.Stage,
    SyncedType.ACTIVITY: models.Activity,
    SyncedType.ORDER: models.Order,
    SyncedType.PRODUCT: models.Product,
    SyncedType.CONVERSATION: models.Conversation,
    SyncedType.MESSAGE: models.Message,
}
# Seen only by those who may see their conversation (``conversations.visible_condition``).
_IN_CONVERSATIONS = (SyncedType.CONVERSATION, SyncedType.MESSAGE)


@dataclass(frozen=True)
class Change:
    """One change of one row: its position in the log, the row's type and id, what kind
    of change, the columns it changed (for a creation, those given a value) and when."""

    position: Position
    type: SyncedType
    entity_id: uuid.UUID
    kind: ChangeKind
    columns: list[str]
    at: datetime

    @property
    def cursor(self) -> str:
        return self.position.encode()


@dataclass(frozen=True)
class ChangePage:
    """Changes after a cursor, and where to resume: after the last change when
    ``has_more``, else past everything final when the page was read (changes that
    commit later sort after it)."""

    changes: list[Change]
    cursor: str
    has_more: bool


def readable_types(actor: Actor, types: Sequence[SyncedType] | None) -> list[SyncedType]:
    """The types asked for (all when None) that the actor may read; a type asked for by
    name that the actor may not read is ``Forbidden``, as its list would be, and so is a
    caller who may read none."""
    if types is not None:
        wanted = list(dict.fromkeys(types))
        for type in wanted:
            authorize_read(actor, MODELS[type])
        return wanted
    found = [t for t, model in MODELS.items() if allows(actor, READ_ACTIONS[model])]
    if not found:
        raise Forbidden("This caller may read none of the types the change feed carries")
    return found


def decode_cursor(after: str | None) -> Position:
    """The position a cursor of this feed names (the log's origin for None)."""
    if after is None:
        return ORIGIN
    try:
        return Position.decode(after)
    except Invalid as error:
        raise Invalid("Invalid cursor: pass the `cursor` of a page of changes", "after") from error


def _visible(actor: Actor, types: list[SyncedType]) -> tuple[Any, list[tuple[Any, Any]]]:
    """The condition on a change row that leaves out conversations (and their messages)
    the actor may not see, with the outer joins it reads: the conversation as it is now."""
    if conversations.sees_every_conversation(actor) or not any(
        t in _IN_CONVERSATIONS for t in types
    ):
        return true(), []
    condition = conversations.visible_condition(actor)
    message = aliased(Message)
    joins = [
        (
            message,
            and_(
                Event.entity_type == SyncedType.MESSAGE.value,
                message.id == Event.entity_id,
                message.workspace_id == actor.workspace_id,
            ),
        ),
        (
            Conversation,
            and_(
                Conversation.workspace_id == actor.workspace_id,
                Conversation.id
                == func.coalesce(
                    message.conversation_id,
                    case(
                        (Event.entity_type == SyncedType.CONVERSATION.value, Event.entity_id),
                    ),
                ),
            ),
        ),
    ]
    outside = Event.entity_type.not_in([t.value for t in _IN_CONVERSATIONS])
    # A conversation that no longer exists (deleted with its workspace's rows) is seen
    # only by those who see every conversation: ``condition`` is then NULL, not true.
    return or_(outside, func.coalesce(condition, False)), joins


async def read_changes(
    actor: Actor,
    session: AsyncSession,
    *,
    after: str | None,
    types: Sequence[SyncedType] | None,
    first: int,
) -> ChangePage:
    """At most ``first`` changes after the cursor ``after`` (from the start of the log
    when None), of ``types`` (every type the actor may read when None), in commit order.
    Read on the primary: the horizon is the primary's running transactions."""
    wanted = readable_types(actor, types)
    position = decode_cursor(after)
    # The horizon in its own statement, before the read: the read's snapshot is newer,
    # so every change below the horizon that will ever commit is in it.
    below = int(await session.scalar(text(HORIZON_SQL)))
    rows = (await session.execute(changes_statement(actor, wanted, position, below, first))).all()
    has_more = len(rows) > first
    changes = [
        Change(
            Position(row.txid, row.id),
            SyncedType(row.entity_type),
            row.entity_id,
            ChangeKind(row.type.removeprefix(EVENT_PREFIX)),
            list(row.fields or ()),
            row.created_at,
        )
        for row in rows[:first]
    ]
    if has_more:
        # ``first: 0`` reads nothing and stays where it was.
        resume = changes[-1].position if changes else position
    else:
        # Everything below the horizon was read: resume past it (not just past the last
        # change shown), so the next read does not walk again what it left out.
        resume = max(position, Position(below - 1, LAST_ID))
        if changes:
            resume = max(resume, changes[-1].position)
    return ChangePage(changes, resume.encode(), has_more)


def changes_statement(
    actor: Actor, wanted: list[SyncedType], position: Position, below: Any, first: int
) -> Select[Any]:
    """The change rows of ``wanted`` after ``position`` and below the horizon ``below``
    (a value, or a bind the compiled read path fills in), in commit order: ``first`` and
    one more, to tell whether there are more. The executed and the compiled path both
    read this statement."""
    condition, joins = _visible(actor, wanted)
    stmt = select(
        Event.id,
        Event.txid,
        Event.type,
        Event.entity_type,
        Event.entity_id,
        Event.payload["fields"].label("fields"),
        Event.created_at,
    ).select_from(Event)
    for target, on in joins:
        stmt = stmt.outerjoin(target, on)
    stmt = (
        stmt.where(
            Event.workspace_id == actor.workspace_id,
            Event.topic == CHANGES_TOPIC,
            tuple_(Event.txid, Event.id) > tuple_(literal(position.txid), literal(position.id)),
            Event.txid < below,
            Event.entity_type.in_([t.value for t in wanted]),
            condition,
        )
        .order_by(Event.txid, Event.id)
        .limit(first + 1)
    )
    return stmt
