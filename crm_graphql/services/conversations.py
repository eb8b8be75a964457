"""Service conversations and their messages: who may see them, starting one, agent and
customer messages (gap-free ``seq``, idempotent retries), assignment, status and read
receipts. Every change writes its audit row and an event on the ``conversations`` topic
in the same transaction.

Visibility (one rule, here): admins and managers see every conversation of the
workspace; agents and viewers see the non-private ones and the private ones assigned to
them; an API key with a ``conversations:*`` scope sees the non-private ones. A
conversation the actor may not see does not exist for it (``NOT_FOUND``), and neither do
its messages.

Event payload contract (``topic="conversations"``, ``entity_type="Conversation"``,
values after the change, IDs as strings, enums as their lower-case values, times ISO 8601
UTC). Every event carries ``conversation_id, customer_id, assignee_id, is_private,
status, channel, last_message_seq, version``; and

- ``conversation.started``: ``subject``;
- ``message.created``: ``message_id, seq, author_type, author_user_id, body,
  client_message_id, created_at``;
- ``conversation.assigned``: ``previous_assignee_id``;
- ``conversation.status_changed``: ``previous_status``;
- ``conversation.read``: ``user_id, last_read_seq``;
- ``conversation.rated``: ``rating_score``;
- ``message.delivery_changed`` (written by ``services/email.py``, for an agent's message
  sent as email): ``message_id, delivery_status, attempts, error``.

Service times (the service report): ``first_customer_message_at`` (the customer's first
message), ``first_response_at`` (the first agent message after it) and ``closed_at`` (set
when the conversation is closed, cleared when it reopens) are kept by the writers below
in the statement that changes the conversation anyway, never by an extra one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    insert,
    inspect,
    literal_column,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from crm_graphql.models import (
    AuditLog,
    Channel,
    Conversation,
    ConversationRead,
    ConversationStatus,
    Customer,
    Event,
    Message,
    MessageAuthorType,
    Role,
    User,
)
from crm_graphql.models.base import uuid7
from crm_graphql.services import audit, changes, email, events, fields
from crm_graphql.services.actor import Actor, scoped
from crm_graphql.services.errors import Conflict, Invalid, NotFound
from crm_graphql.services.policy import Action, allows, authorize, authorize_read
from crm_graphql.storage import bound, querying, records

TOPIC = "conversations"
MAX_BODY_LENGTH = 10_000
MAX_RATING_COMMENT_LENGTH = 2_000
RATING_SCORES = range(1, 6)
SATISFIED_SCORES = (4, 5)  # CSAT: the share of ratings that are 4 or 5
MAX_CLIENT_MESSAGE_ID_LENGTH = 100  # the column's width
ASSIGNABLE_ROLES = frozenset({Role.AGENT, Role.MANAGER, Role.ADMIN})
START_FIELDS = (
    "customer_id",
    "channel",
    "subject",
    "is_private",
    "assignee_id",
    "body",
    "client_message_id",
)

# ------------------------------------------------------------------------ visibility


def sees_every_conversation(actor: Actor) -> bool:
    """Admins and managers (as users) see private conversations of anyone."""
    return actor.user_id is not None and actor.role in (Role.ADMIN, Role.MANAGER)


@dataclass(frozen=True)
class Seen:
    """Which conversations an actor sees (beyond the workspace), decided once per actor
    and read two ways: on a row's values (``can_see``, every live event) and as SQL
    (``visible_condition``, every list and lookup). ``every``: all of them (admins and
    managers); otherwise the non-private ones when ``public``, and those assigned to
    ``assignee``."""

    every: bool
    public: bool
    assignee: uuid.UUID | None


def seen_by(actor: Actor) -> Seen:
    if actor.user_id is None:  # an API key: its scope, never private conversations
        return Seen(every=False, public=allows(actor, Action.READ_CONVERSATIONS), assignee=None)
    if sees_every_conversation(actor):
        return Seen(every=True, public=True, assignee=None)
    return Seen(every=False, public=True, assignee=actor.user_id)


def can_see(actor: Actor, *, is_private: bool, assignee_id: uuid.UUID | None) -> bool:
    """Whether ``actor`` may see a conversation with these values (the real-time layer
    checks every event with it; the workspace is checked by whoever holds the row or
    the event)."""
    seen = seen_by(actor)
    return (
        seen.every
        or (seen.public and not is_private)
        or (seen.assignee is not None and assignee_id == seen.assignee)
    )


def visible_condition(actor: Actor, *, viewer: Any = None) -> ColumnElement[bool]:
    """``can_see`` as an SQL condition on ``Conversation`` (tenant scope not included).
    ``viewer``: an SQL expression standing for the actor's user id, for a statement built
    once and run for many actors of the same kind (bound to their ids)."""
    seen = seen_by(actor)
    if seen.every:
        return true()
    terms: list[ColumnElement[bool]] = []
    if seen.public:
        terms.append(Conversation.is_private.is_(False))
    if seen.assignee is not None:
        terms.append(Conversation.assignee_id == (seen.assignee if viewer is None else viewer))
    return or_(*terms) if terms else false()


def unread_condition(actor: Actor) -> ColumnElement[bool]:
    """A conversation has messages past the actor's read receipt (never, for API keys)."""
    if actor.user_id is None:
        return false()
    read_up_to_last = exists().where(
        ConversationRead.conversation_id == Conversation.id,
        ConversationRead.user_id == actor.user_id,
        ConversationRead.last_read_seq >= Conversation.last_message_seq,
    )
    return and_(Conversation.last_message_seq > 0, ~read_up_to_last)


CONVERSATIONS = querying.ListSpec(
    model=Conversation,
    filter_fields={
        "id": Conversation.id,
        "customer_id": Conversation.customer_id,
        "channel": Conversation.channel,
        "status": Conversation.status,
        "assignee_id": Conversation.assignee_id,
        "last_message_at": Conversation.last_message_at,
        "created_at": Conversation.created_at,
        "first_response_at": Conversation.first_response_at,
        "closed_at": Conversation.closed_at,
        "rated_at": Conversation.rated_at,
        "rating_score": Conversation.rating_score,
    },
    order_fields={
        "last_message_at": Conversation.last_message_at,
        "created_at": Conversation.created_at,
    },
    default_order=[("last_message_at", True)],
    parent_fields={
        "customer_id": Conversation.customer_id,
        "assignee_id": Conversation.assignee_id,
    },
    archivable=False,
    extra_condition=visible_condition,
    actor_filter_fields=lambda actor: {"unread": unread_condition(actor)},
)

# Messages are listed only under a conversation the actor can see (Conversation.messages);
# there is deliberately no root-level list of messages.
MESSAGES = querying.ListSpec(
    model=Message,
    filter_fields={
        "id": Message.id,
        "conversation_id": Message.conversation_id,
        "seq": Message.seq,
        "author_type": Message.author_type,
        "author_user_id": Message.author_user_id,
        "created_at": Message.created_at,
    },
    order_fields={
        "seq": Message.seq,
        "created_at": Message.created_at,
    },
    default_order=[("seq", False)],
    parent_fields={"conversation_id": Message.conversation_id},
    archivable=False,
)


async def get_visible(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    *,
    field: str = "id",
    for_update: bool = False,
) -> Conversation:
    """A conversation the actor may see, or ``NotFound`` (also when it exists but is
    private to someone else). ``for_update`` locks the row for this transaction."""
    authorize(actor, Action.READ_CONVERSATIONS)
    if conversation_id is None:
        raise NotFound("Conversation not found", field)
    stmt = scoped(Conversation, actor).where(
        Conversation.id == conversation_id, visible_condition(actor)
    )
    if for_update:
        # Re-read the locked row even if this session loaded it before.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    conversation = await session.scalar(stmt)
    if conversation is None:
        raise NotFound("Conversation not found", field)
    return conversation


async def get_many_visible(
    actor: Actor, session: AsyncSession, model: type[Any], ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """Conversations or messages by id, limited to what the actor may see: the rule of
    ``records.get_many`` plus visibility, for by-id loading (``node``, ``Message.conversation``).
    """
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    stmt: Select[Any]
    if model is Conversation:
        stmt = scoped(Conversation, actor).where(
            Conversation.id.in_(wanted), visible_condition(actor)
        )
    elif model is Message:
        stmt = (
            scoped(Message, actor)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.id.in_(wanted), visible_condition(actor))
        )
    else:
        raise ValueError(f"{model.__name__} is not a conversation or message")
    return {row.id: row for row in await session.scalars(stmt)}


def _plain_by_id(model: type[Any]) -> str:
    """Rows of ``model`` (conversations or messages) by id, with the visibility values of
    their conversation (``visible_private``, ``visible_assignee``)."""
    columns = records.plain_columns(model).sql
    if model is Conversation:
        source, conversation = "conversations t", "t"
    else:
        source, conversation = "messages t JOIN conversations c ON c.id = t.conversation_id", "c"
    return (
        f"SELECT {columns}, {conversation}.is_private AS visible_private, "
        f"{conversation}.assignee_id AS visible_assignee FROM {source} "
        "WHERE t.workspace_id = $1 AND t.id = ANY($2::uuid[])"
    )


_PLAIN_BY_ID = {model: _plain_by_id(model) for model in (Conversation, Message)}


async def fetch_many_visible(
    actor: Actor, conn: Any, model: type[Any], ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """``get_many_visible`` on a plain asyncpg connection (``db.engine.make_read_pool``),
    for the hot path of rendering live events: rows of the actor's workspace, kept where
    ``can_see`` allows (the rule in Python, on the row's own values), as detached
    objects."""
    authorize_read(actor, model)
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    if model not in _PLAIN_BY_ID:
        raise ValueError(f"{model.__name__} is not a conversation or message")
    columns = records.plain_columns(model)
    found: dict[uuid.UUID, Any] = {}
    for row in await conn.fetch(_PLAIN_BY_ID[model], actor.workspace_id, wanted):
        if can_see(actor, is_private=row["visible_private"], assignee_id=row["visible_assignee"]):
            found[row["id"]] = columns.load(row)
    return found


# The order rule of a conversation's events (docs/decisions/0002-realtime.md). Streams are
# read in (txid, id) order, while ``seq`` (and every value an event carries) is taken
# under the conversation's lock: the two orders agree only if each writer gets its
# transaction id while it holds that lock. A transaction-level advisory lock taken while
# the transaction has no id yet does it (taking it assigns none; any write or ``SELECT ...
# FOR UPDATE`` does): the next holder waits until this one commits, then gets a larger id.
# The same statement checks that nothing was written before. The key names the workspace
# too: a caller guessing another workspace's conversation id never waits for its writers.
def _event_lock() -> Select[Any]:
    """Taking the event lock of conversation ``:conversation`` of workspace ``:workspace``:
    ``first`` says whether the transaction had written nothing before."""
    key = func.hashtextextended(
        "conversation:"
        + sql_cast(bindparam("workspace", type_=UUID(as_uuid=True)), Text)
        + ":"
        + sql_cast(bindparam("conversation", type_=UUID(as_uuid=True)), Text),
        0,
    )
    return select(
        func.pg_current_xact_id_if_assigned().is_(None).label("first"),
        func.pg_advisory_xact_lock(key).label("locked"),
    )


_LOCK_FOR_EVENTS = _event_lock()


class WrittenBeforeLock(RuntimeError):
    """A writer of a conversation's events wrote before taking the conversation's lock:
    its events could be delivered out of ``seq`` order. A bug, never a user's error."""


async def lock_for_events(
    actor: Actor, session: AsyncSession, conversation_id: uuid.UUID | None
) -> None:
    """Serialise the writers of a conversation's events until this transaction ends:
    every service that writes an event of an existing conversation calls it first, before
    anything in its transaction writes (``WrittenBeforeLock`` otherwise). A conversation
    being started needs none: nobody else can write to it before it commits, and whoever
    writes to it then gets a larger transaction id."""
    if conversation_id is None:  # nothing to lock: the caller answers NOT_FOUND
        return
    values = {"workspace": actor.workspace_id, "conversation": conversation_id}
    first = (await session.execute(_LOCK_FOR_EVENTS, values)).scalar()
    if not first:
        raise WrittenBeforeLock(
            "lock_for_events must come before the transaction's first write "
            f"(conversation {conversation_id})"
        )


async def _get_for_change(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    expected_version: int | None,
) -> Conversation:
    await lock_for_events(actor, session, conversation_id)
    conversation = await get_visible(actor, session, conversation_id, for_update=True)
    if expected_version is not None and conversation.version != expected_version:
        raise Conflict(
            f"Conversation was changed by someone else (version {conversation.version}, "
            f"expected {expected_version}); reload and retry"
        )
    return conversation


# ------------------------------------------------------------------------- batching


# The conversation's columns by name (as in ``deals._furthest_stage_position``): a subquery
# over them is correlated to whichever statement reads ``conversations``, whether built
# whole (the executed path) or compiled alone and put over an alias (the compiled path).
_THIS = {
    "id": literal_column("conversations.id", type_=UUID(as_uuid=True)),
    "last_message_seq": literal_column("conversations.last_message_seq", type_=Integer()),
}


def unread_count(actor: Actor) -> ColumnElement[Any]:
    """The actor's unread messages of a conversation (those past its read receipt), as an
    SQL value over ``conversations``; NULL for API keys, which have no receipts."""
    if actor.user_id is None:
        return null()
    read_up_to = (
        select(ConversationRead.last_read_seq)
        .where(
            ConversationRead.conversation_id == _THIS["id"],
            ConversationRead.user_id == actor.user_id,
        )
        .scalar_subquery()
    )
    return func.greatest(Conversation.last_message_seq - func.coalesce(read_up_to, 0), 0)


def is_last_message() -> ColumnElement[bool]:
    """A message is its conversation's latest: its ``seq`` is the conversation's
    ``last_message_seq`` (a condition on ``messages`` and ``conversations``)."""
    return and_(Message.conversation_id == _THIS["id"], Message.seq == _THIS["last_message_seq"])


@dataclass(frozen=True)
class Rating:
    """A customer's rating of a conversation (``rate_conversation``)."""

    score: int
    comment: str | None
    rated_at: datetime


# Where a rating is stored: each field of ``Rating`` and its column. A conversation has a
# rating when the ``RATING_REQUIRED`` ones are set.
RATING_COLUMNS = {
    "score": Conversation.rating_score,
    "comment": Conversation.rating_comment,
    "rated_at": Conversation.rated_at,
}
RATING_REQUIRED = ("score", "rated_at")


def rating_of(conversation: Any) -> Rating | None:
    """The conversation's rating, from its columns (``RATING_COLUMNS``), or None."""
    values = {name: getattr(conversation, column.key) for name, column in RATING_COLUMNS.items()}
    if any(values[name] is None for name in RATING_REQUIRED):
        return None
    return Rating(**values)


async def unread_counts(
    actor: Actor, session: AsyncSession, conversation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """``unread_count`` per conversation, in one statement (empty for API keys)."""
    if actor.user_id is None or not conversation_ids:
        return {}
    rows = await session.execute(
        select(Conversation.id, unread_count(actor)).where(
            Conversation.workspace_id == actor.workspace_id,
            Conversation.id.in_(list(conversation_ids)),
            visible_condition(actor),
        )
    )
    return {id: int(count) for id, count in rows.all()}


async def last_messages(
    actor: Actor, session: AsyncSession, conversation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Message]:
    """The latest message of each conversation (``is_last_message``), in one statement."""
    if not conversation_ids:
        return {}
    rows = await session.scalars(
        scoped(Message, actor)
        .join(Conversation, is_last_message())
        .where(
            Message.conversation_id.in_(list(conversation_ids)),
            Conversation.workspace_id == actor.workspace_id,
            visible_condition(actor),
        )
    )
    return {message.conversation_id: message for message in rows}


# --------------------------------------------------------------------------- events


def event_payload(conversation: Any) -> dict[str, Any]:
    """The values every conversation event carries, from the ORM object or a row."""
    return {
        "conversation_id": conversation.id,
        "customer_id": conversation.customer_id,
        "assignee_id": conversation.assignee_id,
        "is_private": conversation.is_private,
        "status": conversation.status,
        "channel": conversation.channel,
        "last_message_seq": conversation.last_message_seq,
        "version": conversation.version,
    }


def _record(
    actor: Actor,
    session: AsyncSession,
    conversation: Conversation,
    event_type: str,
    **extra: Any,
) -> None:
    events.record_event(
        actor,
        session,
        topic=TOPIC,
        type=event_type,
        entity_type="Conversation",
        entity_id=conversation.id,
        payload={**event_payload(conversation), **extra},
    )


def _message_payload(conversation: dict[str, Any], message: Message) -> dict[str, Any]:
    return {
        **conversation,
        "message_id": message.id,
        "seq": message.seq,
        "author_type": message.author_type,
        "author_user_id": message.author_user_id,
        "body": message.body,
        "client_message_id": message.client_message_id,
        "created_at": message.created_at,
    }


# ------------------------------------------------------------------------ permissions


async def _assignable(actor: Actor, session: AsyncSession, user_id: uuid.UUID) -> User:
    """An active, non-viewer user of the actor's workspace."""
    user = await session.scalar(scoped(User, actor).where(User.id == user_id))
    if user is None:
        raise NotFound("User not found", "assigneeId")
    if not user.is_active or user.archived_at is not None:
        raise Invalid("That user is deactivated", "assigneeId")
    if user.role not in ASSIGNABLE_ROLES:
        raise Invalid(
            f"A {user.role.value} cannot be assigned conversations; pick an agent, "
            "manager or admin",
            "assigneeId",
        )
    return user


# ------------------------------------------------------------------------- messages


def _body(value: Any) -> str:
    body = str(value or "").strip()
    if not body:
        raise Invalid("A message needs a body", "body")
    if len(body) > MAX_BODY_LENGTH:
        raise Invalid(f"A message is at most {MAX_BODY_LENGTH:,} characters", "body")
    return body


def _client_message_id(value: Any) -> str | None:
    if value is None:
        return None
    cleaned = str(value).strip()
    if not cleaned:
        raise Invalid("`clientMessageId` must not be blank", "clientMessageId")
    if len(cleaned) > MAX_CLIENT_MESSAGE_ID_LENGTH:
        raise Invalid(
            f"`clientMessageId` is at most {MAX_CLIENT_MESSAGE_ID_LENGTH} characters",
            "clientMessageId",
        )
    return cleaned


# The row an ``INSERT ... ON CONFLICT`` proposed. ``Insert.excluded`` builds a new alias of
# the table (columns, foreign keys and their events: ~100 objects in reference cycles)
# on every access; one alias serves every statement (decision 0010, garbage per request).
_PROPOSED_READ = pg_insert(ConversationRead).excluded


def _read_receipt(workspace_id: Any, conversation_id: Any, user_id: Any, seq: Any) -> Any:
    """``INSERT ... ON CONFLICT`` moving a user's read receipt forward to ``seq`` (never
    back), returning its new position."""
    insert = pg_insert(ConversationRead).values(
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        user_id=user_id,
        last_read_seq=seq,
        read_at=func.now(),
    )
    return insert.on_conflict_do_update(
        index_elements=[ConversationRead.conversation_id, ConversationRead.user_id],
        set_={
            "last_read_seq": func.greatest(
                ConversationRead.last_read_seq, _PROPOSED_READ.last_read_seq
            ),
            "read_at": func.now(),
        },
    ).returning(ConversationRead.last_read_seq)


async def _upsert_read(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    seq: int,
) -> int:
    """Move a user's read receipt forward to ``seq`` (never back); its new position."""
    upsert = _read_receipt(actor.workspace_id, conversation_id, user_id, seq)
    return int((await session.execute(upsert)).scalar_one())


# Posting a message is the hot path of live chat: two statements besides BEGIN/COMMIT.
# ``_advance_statement`` takes the conversation's event lock (``_event_lock``, which orders
# its writers; a retry's path takes it apart, before its reads), locks the conversation
# (when visible), takes the next ``seq`` and reopens it if needed, returning the row and
# its status before; ``_write_message`` inserts the message, moves the author's read
# receipt (``_read_receipt``), and writes the event and audit rows, whose values are
# built by the same functions as every other change's (``events.event_values``,
# ``audit.values``).
def _write_message(
    message: Message,
    event_rows: list[dict[str, Any]],
    audit_rows: list[dict[str, Any]],
) -> tuple[Any, dict[str, Any]]:
    """One statement and its parameters: the message, its author's read receipt, the
    events and the audit rows (data-modifying CTEs, in the order given).

    The usual message (one event, one audit row) takes a statement built once with
    bound parameters (``_usual_write``): a statement built per message with its values
    as literals cost SQLAlchemy about a fifth of ``sendMessage``'s CPU to build, key and
    coerce (issue 14, point 4); before that, a multi-row ``values([...])`` had no cache
    key at all and was compiled for every message (decision 0031, "Capacity"). A
    reopening message (two events, two audit rows, one INSERT each, rows in the order
    given: an event's position is the order the log assigns) takes the multi-row form,
    built for it."""
    table = cast(Table, Message.__table__)
    # The attributes the message was made with (the other columns keep their defaults).
    values = {k: v for k, v in inspect(message).dict.items() if k in table.c}
    if len(event_rows) == 1 and len(audit_rows) == 1 and set(values) == set(_MESSAGE_COLUMNS):
        parameters = {
            **bound.params("m", values),
            **bound.params("e", event_rows[0]),
            **bound.params("au", audit_rows[0]),
        }
        return _usual_write(message.author_user_id is not None), parameters
    ctes = [insert(table).values(values).cte("message")]
    if message.author_user_id is not None:
        receipt = _read_receipt(
            message.workspace_id, message.conversation_id, message.author_user_id, message.seq
        )
        ctes.append(receipt.cte("receipt"))
    ctes.append(_rows(insert(cast(Table, Event.__table__)), event_rows).cte("event"))
    statement = _rows(insert(cast(Table, AuditLog.__table__)), audit_rows).add_cte(*ctes)
    return changes.writing(statement), {}


# The columns ``_append_message`` makes a message with (the others keep their defaults).
_MESSAGE_COLUMNS = (
    "id",
    "workspace_id",
    "conversation_id",
    "seq",
    "author_type",
    "author_user_id",
    "body",
    "client_message_id",
    "created_at",
    "updated_at",
)
_usual_writes: dict[bool, Any] = {}


def _usual_write(receipt: bool) -> Any:
    """``_write_message``'s statement for a message with one event and one audit row,
    built once per shape (with the author's read receipt or without). Parameters: the
    message's columns (``m_``), the event's (``e_``) and the audit row's (``au_``)."""
    found = _usual_writes.get(receipt)
    if found is not None:
        return found
    table = cast(Table, Message.__table__)
    ctes = [
        insert(table)
        .values({name: bound.param("m", table.c[name]) for name in _MESSAGE_COLUMNS})
        .cte("message")
    ]
    if receipt:
        ctes.append(
            _read_receipt(
                bound.param("m", table.c.workspace_id),
                bound.param("m", table.c.conversation_id),
                bound.param("m", table.c.author_user_id),
                bound.param("m", table.c.seq),
            ).cte("receipt")
        )
    ctes.append(events.insert_statement("e").cte("event"))
    statement = _usual_writes[receipt] = changes.writing(
        audit.insert_statement("au").add_cte(*ctes)
    )
    return statement


def _rows(statement: Any, rows: list[dict[str, Any]]) -> Any:
    """``statement`` inserting ``rows`` in order: one row as a cacheable ``values(row)``."""
    return statement.values(rows[0]) if len(rows) == 1 else statement.values(rows)


_advance_statements: dict[tuple[Any, ...], Any] = {}


def _advance_statement(
    actor: Actor, author_type: MessageAuthorType, *, visible: bool, lock: bool
) -> Any:
    """``UPDATE conversations`` taking the next ``seq`` (and reopening) of the conversation
    ``:conversation`` of workspace ``:workspace`` if ``visible_condition`` lets ``:viewer``
    see it, returning the row and its status before. Built once per kind of actor.

    ``lock``: the statement takes the conversation's event lock itself (``_event_lock``,
    returning its ``first``), saving ``lock_for_events``' round trip. The lock is a
    relation of the row lock's query, so it is held before the row is locked, which is
    what gives the transaction its id: the order rule above holds."""
    key = (
        author_type,
        visible,
        lock,
        actor.user_id is None,
        sees_every_conversation(actor),
        allows(actor, Action.READ_CONVERSATIONS),
    )
    statement = _advance_statements.get(key)
    if statement is not None:
        return statement
    table = cast(Table, Conversation.__table__)
    locked = select(table.c.id, table.c.status.label("previous_status")).where(
        table.c.id == bindparam("conversation", type_=UUID(as_uuid=True)),
        table.c.workspace_id == bindparam("workspace", type_=UUID(as_uuid=True)),
    )
    if lock:
        event_lock = _event_lock().cte("event_lock")
        locked = locked.add_columns(event_lock.c.first).join_from(table, event_lock, true())
    locked = locked.with_for_update(of=table)
    if visible:
        viewer = bindparam("viewer", type_=UUID(as_uuid=True))
        locked = locked.where(visible_condition(actor, viewer=viewer))
    old = locked.subquery("locked")
    service_times: dict[str, Any]
    if author_type is MessageAuthorType.CUSTOMER:
        reopen = old.c.previous_status != ConversationStatus.OPEN.value
        service_times = {
            "first_customer_message_at": func.coalesce(
                table.c.first_customer_message_at, func.now()
            )
        }
    else:
        reopen = old.c.previous_status == ConversationStatus.CLOSED.value
        # The first agent message after the customer's first one is the first response.
        answers = and_(
            table.c.first_response_at.is_(None), table.c.first_customer_message_at.is_not(None)
        )
        service_times = {
            "first_response_at": case((answers, func.now()), else_=table.c.first_response_at)
        }
    statement = _advance_statements[key] = (
        update(table)
        .where(table.c.id == old.c.id)
        .values(
            last_message_seq=table.c.last_message_seq + 1,
            last_message_at=func.now(),
            status=case((reopen, ConversationStatus.OPEN.value), else_=table.c.status),
            closed_at=case((reopen, None), else_=table.c.closed_at),
            version=table.c.version + case((reopen, 1), else_=0),
            **service_times,
        )
        .returning(*table.c, old.c.previous_status, *([old.c.first] if lock else []))
    )
    return statement


async def _append_message(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID,
    *,
    author_type: MessageAuthorType,
    body: str,
    client_message_id: str | None,
    action: str,
    visible: bool = True,
    attachments: Sequence[email.NewAttachment] = (),
    lock: bool = False,
) -> tuple[Any, Message]:
    """Add a message to a conversation: ``NotFound`` unless it exists (and, with
    ``visible``, the actor may see it). Returns the conversation's row after the change
    and the new message.

    The next ``seq`` comes from the conversation row itself, under its row lock, so
    concurrent senders get 1, 2, 3 ... without gaps or repeats; the conversation's event
    lock is taken first, by the caller (``lock_for_events``) or with ``lock`` by the
    statement itself (none when starting the conversation), so the events are read in
    that order too. A message does not bump the conversation's ``version``:
    that guards edits of the conversation's own fields (assignee, status), which a busy
    chat must not turn into conflicts; reopening a conversation (``_reopens``) is such an
    edit and does.

    ``attachments`` (checked by ``email.new_attachments``) are stored with the message,
    before its mail is queued: the mail carries them."""
    # Both statements are built once: on the session's connection (``bound.run``).
    row = await bound.first(
        session,
        _advance_statement(actor, author_type, visible=visible, lock=lock),
        {
            "conversation": conversation_id,
            "workspace": actor.workspace_id,
            "viewer": actor.user_id,
        },
    )
    if row is None:
        raise NotFound("Conversation not found", "conversationId")
    if lock and not row.first:
        raise WrittenBeforeLock(
            f"a message's event lock must come before its transaction's first write "
            f"(conversation {conversation_id})"
        )
    previous = ConversationStatus(row.previous_status)
    author_user_id = actor.user_id if author_type is MessageAuthorType.AGENT else None
    message = Message(
        id=uuid7(),
        workspace_id=actor.workspace_id,
        conversation_id=row.id,
        seq=row.last_message_seq,
        author_type=author_type,
        author_user_id=author_user_id,
        body=body,
        client_message_id=client_message_id,
        created_at=row.last_message_at,
        updated_at=row.last_message_at,
    )
    conversation = event_payload(row)

    def event(type: str, payload: dict[str, Any]) -> dict[str, Any]:
        return events.event_values(
            actor,
            topic=TOPIC,
            type=type,
            entity_type="Conversation",
            entity_id=row.id,
            payload=payload,
        )

    event_rows = [event("message.created", _message_payload(conversation, message))]
    audit_rows = []
    if previous is not row.status:
        event_rows.append(
            event("conversation.status_changed", {**conversation, "previous_status": previous})
        )
        audit_rows.append(
            audit.values(
                actor,
                action=action,
                entity_type="Conversation",
                entity_id=row.id,
                before={"status": previous},
                after={"status": row.status},
            )
        )
    after = audit.snapshot(message)
    if attachments:
        after["attachments"] = [file.filename for file in attachments]
    audit_rows.append(
        audit.values(
            actor,
            action=action,
            entity_type="Message",
            entity_id=message.id,
            after=after,
        )
    )
    statement, parameters = _write_message(message, event_rows, audit_rows)
    if parameters:  # the usual message's statement, built once
        await bound.run(session, statement, parameters)
    else:  # built for this message, its values in it
        await session.execute(statement)
    events.announce(actor, session, TOPIC)
    if attachments:
        await email.store_attachments(actor, session, message, attachments)
    if email.mailed(row.channel, author_type):
        await email.queue_outbound(actor, session, row, message)
    return row, message


async def _existing_message(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    client_message_id: str,
    *,
    visible: bool = True,
) -> Message | None:
    """The message a retry already created, if the conversation is visible (or, without
    ``visible``, exists in the workspace)."""
    return await session.scalar(
        scoped(Message, actor)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.conversation_id == conversation_id,
            Message.client_message_id == client_message_id,
            visible_condition(actor) if visible else true(),
        )
    )


def _same_message(
    message: Message, actor: Actor, author_type: MessageAuthorType, body: str
) -> Message:
    """A retry must repeat the original; reusing an ID for another message is a bug the
    client must hear about rather than silently lose the new text."""
    author_user_id = actor.user_id if author_type is MessageAuthorType.AGENT else None
    if (
        message.author_type is not author_type
        or message.author_user_id != author_user_id
        or message.body != body
    ):
        raise Conflict(
            "This clientMessageId was already used for another message of the conversation",
            "clientMessageId",
        )
    return message


def _reopens(status: ConversationStatus, author_type: MessageAuthorType) -> bool:
    """A customer writing wakes a pending or closed conversation up; an agent writing
    into a closed one takes it up again. An agent's message keeps a pending conversation
    pending (it usually asks the customer something)."""
    if author_type is MessageAuthorType.CUSTOMER:
        return status is not ConversationStatus.OPEN
    return status is ConversationStatus.CLOSED


async def _post(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    *,
    author_type: MessageAuthorType,
    body: Any,
    client_message_id: Any,
    action: str,
    visible: bool = True,
    attachments: Sequence[email.NewAttachment] = (),
) -> Message:
    body_text = _body(body)
    client_id = _client_message_id(client_message_id)
    files = email.new_attachments(email.config_of(session), attachments) if attachments else []
    if client_id is not None:
        # A retry of a message that made it: answer without locking or writing anything.
        existing = await _existing_message(
            actor, session, conversation_id, client_id, visible=visible
        )
        if existing is not None:
            return _same_message(existing, actor, author_type, body_text)
    authorize(actor, Action.READ_CONVERSATIONS)
    if conversation_id is None:
        raise NotFound("Conversation not found", "conversationId")
    if client_id is not None:
        await lock_for_events(actor, session, conversation_id)
        # Two identical retries racing: the second waits for the first's locks (above
        # and here), and this new statement sees the first's committed message (READ
        # COMMITTED takes a snapshot per statement). Every insert of a message holds
        # these locks, so the unique (conversation_id, client_message_id) constraint is
        # only a backstop.
        if visible:
            await get_visible(
                actor, session, conversation_id, field="conversationId", for_update=True
            )
        existing = await _existing_message(
            actor, session, conversation_id, client_id, visible=visible
        )
        if existing is not None:
            return _same_message(existing, actor, author_type, body_text)
    _, message = await _append_message(
        actor,
        session,
        conversation_id,
        author_type=author_type,
        body=body_text,
        client_message_id=client_id,
        action=action,
        visible=visible,
        attachments=files,
        lock=client_id is None,  # else taken above, before the retry's reads
    )
    return message


async def send_message(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    *,
    body: str,
    client_message_id: str | None = None,
    attachments: Sequence[email.NewAttachment] = (),
) -> Message:
    """An agent's message (users who may write), with its files (``attachments``, within
    the limits of ``email.new_attachments``; in an EMAIL conversation its mail carries
    them). A retry with the same ``client_message_id`` returns the first message (and
    its files) and writes nothing. Writing into a closed conversation reopens it."""
    authorize(actor, Action.SEND_AGENT_MESSAGES)
    return await _post(
        actor,
        session,
        conversation_id,
        author_type=MessageAuthorType.AGENT,
        body=body,
        client_message_id=client_message_id,
        action="sendMessage",
        attachments=attachments,
    )


async def post_customer_message(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    *,
    body: str,
    client_message_id: str | None = None,
    routed: bool = False,
    action: str = "postCustomerMessage",
) -> Message:
    """An inbound message from the customer, brought by a channel integration: only an
    API key with the ``conversations:write`` scope posts as the customer. A pending or
    closed conversation becomes open again. Retries are idempotent as for agents.

    ``routed``: the channel chose the conversation itself (the email channel, by a signed
    reply address or the customer's own thread), so the message goes in even if the
    conversation is private, which a key cannot read: the route is what proves the
    customer may write there. Never for a conversation id a caller chose."""
    authorize(actor, Action.POST_CUSTOMER_MESSAGES)
    return await _post(
        actor,
        session,
        conversation_id,
        author_type=MessageAuthorType.CUSTOMER,
        body=body,
        client_message_id=client_message_id,
        action=action,
        visible=not routed,
    )


# -------------------------------------------------------------------- conversations


def _reject_unknown(data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = set(data) - set(allowed)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")


async def start_conversation(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any]
) -> Conversation:
    """Open a conversation with a customer (``customer_id``, ``channel``, ``subject``,
    ``is_private``, ``assignee_id``), optionally with its first message (``body``,
    ``client_message_id``): written by the agent when a user starts it, by the customer
    when a channel integration (API key) does."""
    authorize(actor, Action.WRITE_CONVERSATIONS)
    _reject_unknown(data, START_FIELDS)
    customer_id = data.get("customer_id")
    if customer_id is None:
        raise Invalid("A conversation needs a customer", "customerId")
    customer = await records.referenced(actor, session, Customer, customer_id, field="customerId")
    if customer.archived_at is not None:
        raise Invalid("That customer is archived", "customerId")
    if data.get("channel") is None:
        raise Invalid("A conversation needs a channel", "channel")
    channel = fields.choice(Channel, data["channel"], "channel")
    subject = fields.optional_text(data.get("subject"), "subject", max_length=300)
    is_private = data.get("is_private") or False
    if not isinstance(is_private, bool):
        raise Invalid("`isPrivate` must be true or false", "isPrivate")
    if is_private and actor.user_id is None:
        # A key could not even see the conversation it made.
        raise Invalid("An API key cannot start a private conversation", "isPrivate")
    assignee_id = data.get("assignee_id")
    if assignee_id is not None:
        await _assignable(actor, session, assignee_id)
    body = client_id = None
    if data.get("body") is not None:
        body = _body(data["body"])
        client_id = _client_message_id(data.get("client_message_id"))
    elif data.get("client_message_id") is not None:
        raise Invalid("`clientMessageId` names the first message: send a `body`", "body")
    conversation = await records.create(
        actor,
        session,
        Conversation(
            customer_id=customer.id,
            channel=channel,
            status=ConversationStatus.OPEN,
            subject=subject,
            assignee_id=assignee_id,
            is_private=is_private,
            last_message_seq=0,
        ),
        action="startConversation",
    )
    _record(actor, session, conversation, "conversation.started", subject=conversation.subject)
    if body is not None:
        # The first message's event and audit row come after the conversation's.
        await session.flush()
        author = MessageAuthorType.AGENT if actor.user_id else MessageAuthorType.CUSTOMER
        row, _ = await _append_message(
            actor,
            session,
            conversation.id,
            author_type=author,
            body=body,
            client_message_id=client_id,
            action="startConversation",
            visible=False,  # its starter may open a private one for someone else
        )
        # The row changed behind the ORM's back: tell the loaded object, without marking
        # it dirty (a flush would then bump the version).
        for key in ("last_message_seq", "last_message_at", "updated_at"):
            set_committed_value(conversation, key, getattr(row, key))
    return conversation


async def assign_conversation(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    assignee_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> Conversation:
    """Hand a conversation to an active agent, manager or admin of the workspace, or
    unassign it (``None``). Assigning the current assignee changes nothing."""
    authorize(actor, Action.WRITE_CONVERSATIONS)
    conversation = await _get_for_change(actor, session, conversation_id, expected_version)
    if assignee_id is not None:
        await _assignable(actor, session, assignee_id)
    if conversation.assignee_id == assignee_id:
        return conversation
    previous = conversation.assignee_id
    await records.update(
        actor, session, conversation, {"assignee_id": assignee_id}, action="assignConversation"
    )
    _record(
        actor,
        session,
        conversation,
        "conversation.assigned",
        previous_assignee_id=previous,
    )
    return conversation


async def set_conversation_status(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    status: Any,
    *,
    expected_version: int | None = None,
) -> Conversation:
    """Open, set pending (waiting for the customer) or close a conversation. Setting the
    status it has changes nothing."""
    authorize(actor, Action.WRITE_CONVERSATIONS)
    if status is None:
        raise Invalid("`status` is required", "status")
    new_status = fields.choice(ConversationStatus, status, "status")
    conversation = await _get_for_change(actor, session, conversation_id, expected_version)
    previous = conversation.status
    if previous is new_status:
        return conversation
    closed_at = datetime.now(UTC) if new_status is ConversationStatus.CLOSED else None
    await records.update(
        actor,
        session,
        conversation,
        {"status": new_status, "closed_at": closed_at},
        action="setConversationStatus",
    )
    _record(
        actor,
        session,
        conversation,
        "conversation.status_changed",
        previous_status=previous,
    )
    return conversation


async def mark_conversation_read(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    up_to_seq: int | None = None,
) -> Conversation:
    """Move the user's read receipt to ``up_to_seq`` (default: the latest message). A
    receipt never moves back: marking what was already read changes nothing."""
    authorize(actor, Action.KEEP_READ_RECEIPTS)
    user_id = actor.user_id
    if user_id is None:  # an operator at the command line is no user
        raise Invalid("Read receipts belong to users")
    await lock_for_events(actor, session, conversation_id)
    conversation = await get_visible(actor, session, conversation_id)
    last = conversation.last_message_seq
    seq = last if up_to_seq is None else up_to_seq
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= last:
        raise Invalid(f"`upToSeq` must be between 0 and {last}", "upToSeq")
    previous = await session.scalar(
        select(ConversationRead.last_read_seq).where(
            ConversationRead.conversation_id == conversation.id,
            ConversationRead.user_id == user_id,
        )
    )
    before = int(previous or 0)
    if seq <= before:
        return conversation
    position = await _upsert_read(actor, session, conversation.id, user_id, seq)
    audit.record(
        actor,
        session,
        action="markConversationRead",
        entity_type="Conversation",
        entity_id=conversation.id,
        changes={"last_read_seq": {"before": before, "after": position}},
    )
    _record(
        actor,
        session,
        conversation,
        "conversation.read",
        user_id=actor.user_id,
        last_read_seq=position,
    )
    return conversation


async def rate_conversation(
    actor: Actor,
    session: AsyncSession,
    conversation_id: uuid.UUID | None,
    score: Any,
    comment: Any = None,
) -> Conversation:
    """The customer's satisfaction with a conversation (``score`` 1 to 5, an optional
    ``comment``), brought in by a channel integration's API key (``RATE_CONVERSATIONS``;
    users may not rate). One rating per conversation: rating again replaces it, and the
    audit log keeps what it replaced."""
    authorize(actor, Action.RATE_CONVERSATIONS)
    if isinstance(score, bool) or not isinstance(score, int) or score not in RATING_SCORES:
        raise Invalid(
            f"`score` must be a whole number from {RATING_SCORES[0]} to {RATING_SCORES[-1]}",
            "score",
        )
    text = fields.optional_text(comment, "comment", max_length=MAX_RATING_COMMENT_LENGTH)
    if text is not None and "\x00" in text:
        raise Invalid("`comment` must not contain NUL characters", "comment")
    conversation = await _get_for_change(actor, session, conversation_id, None)
    await records.update(
        actor,
        session,
        conversation,
        {"rating_score": score, "rating_comment": text, "rated_at": datetime.now(UTC)},
        action="rateConversation",
    )
    _record(actor, session, conversation, "conversation.rated", rating_score=score)
    return conversation
