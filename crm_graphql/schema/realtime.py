"""Subscriptions (over WebSocket on /graphql) and the events they deliver; typing and
presence (ephemeral: Redis only, never stored)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.realtime import ephemeral
from crm_graphql.resolvers import dashboards as resolve_dashboards
from crm_graphql.resolvers import jobs as resolve_jobs
from crm_graphql.resolvers import realtime as resolve
from crm_graphql.schema.dashboards import Dashboard
from crm_graphql.schema.jobs import JobProgressEvent
from crm_graphql.schema.relay import UserError, declared_event
from crm_graphql.schema.scalars import ActivityType, exposed

if TYPE_CHECKING:
    from crm_graphql.schema.users import User

_users = "crm_graphql.schema.users"

CURSOR_DOC = "Position of this event; pass it as `after` to resume right after it."


@strawberry.type(description="Something that happened in a conversation.")
class ConversationEvent:
    cursor: str = strawberry.field(description=CURSOR_DOC)
    type: str = strawberry.field(
        description="conversation.started, message.created, conversation.assigned, "
        "conversation.status_changed, conversation.read, conversation.rated or "
        "message.delivery_changed (an email's delivery status: see `message.delivery`)."
    )
    occurred_at: datetime = strawberry.field(description="When the change was committed.")

    conversation = declared_event("ConversationEvent", "conversation")

    message = declared_event("ConversationEvent", "message")

    read_by = declared_event("ConversationEvent", "readBy")

    last_read_seq = strawberry.field(
        resolver=resolve.event_last_read_seq,
        graphql_type=int | None,
        description="Up to which message it was read (conversation.read).",
    )

    previous_assignee = declared_event("ConversationEvent", "previousAssignee")


@strawberry.type(description="An activity logged, changed or archived.")
class ActivityFeedEvent:
    cursor: str = strawberry.field(description=CURSOR_DOC)
    type: str = strawberry.field(
        description="activity.created, activity.updated or activity.archived."
    )
    occurred_at: datetime = strawberry.field(description="When the change was committed.")

    activity = declared_event("ActivityFeedEvent", "activity")


@strawberry.type(description="A change on a pipeline's deal board.")
class DealBoardEvent:
    cursor: str = strawberry.field(description=CURSOR_DOC)
    type: str = strawberry.field(
        description="deal.created, deal.updated, deal.moved, deal.archived, stage.created, "
        "stage.updated, stage.archived, pipeline.updated or pipeline.archived. Won and lost "
        "deals arrive as deal.updated with their new status."
    )
    occurred_at: datetime = strawberry.field(description="When the change was committed.")

    deal = declared_event("DealBoardEvent", "deal")

    stage = declared_event("DealBoardEvent", "stage")

    pipeline = declared_event("DealBoardEvent", "pipeline")


@strawberry.input(description="Which activities to follow; fields combine with AND.")
class ActivityFeedFilter:
    customer_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only activities on this customer's timeline."
    )
    deal_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only activities about this deal."
    )
    types: list[ActivityType] | None = strawberry.field(
        default=None, description="Only activities of these kinds."
    )


# ------------------------------------------------------ ephemeral: typing, presence

if TYPE_CHECKING:
    from crm_graphql.realtime.ephemeral import PresenceStatus
else:
    PresenceStatus = exposed(
        ephemeral.PresenceStatus,
        "Whether a user has the app open.",
        ONLINE="Has at least one live connection (WebSocket) open.",
        OFFLINE="Has no live connection left open.",
    )

TYPING_DOC = (
    "Typing signals are ephemeral: none is stored, one may be lost. Treat `isTyping: true` "
    "as expiring after about 6 seconds unless repeated; clients send `setTyping` every few "
    "seconds while typing and `isTyping: false` when they stop or send."
)


@strawberry.type(description="Someone started or stopped typing in a conversation.")
class TypingEvent:
    conversation_id: strawberry.ID = strawberry.field(description="The conversation.")
    user: Annotated[User, strawberry.lazy(_users)] | None = strawberry.field(
        description="Who is typing."
    )
    is_typing: bool = strawberry.field(description="False: they stopped.")
    at: datetime = strawberry.field(description="When the signal was sent.")


@strawberry.type(description="A user came online (first open connection) or went offline.")
class PresenceEvent:
    user: Annotated[User, strawberry.lazy(_users)] | None = strawberry.field(
        description="The user who came online or went offline."
    )
    status: PresenceStatus = strawberry.field(description="Online or offline now.")
    at: datetime = strawberry.field(description="When it changed.")


@strawberry.input(description="The caller is typing in a conversation, or stopped.")
class SetTypingInput:
    conversation_id: strawberry.ID = strawberry.field(
        description="The conversation the caller is typing in."
    )
    is_typing: bool = strawberry.field(default=True, description="False: stopped typing.")


@strawberry.type(description="Result of setTyping.")
class SetTypingPayload:
    ok: bool = strawberry.field(description="The signal was sent.")
    errors: list[UserError] = strawberry.field(
        description="Why it was not (empty on success); UNAVAILABLE when it could not be "
        "sent right now."
    )


@strawberry.type
class RealtimeQuery:
    online_users = strawberry.field(
        resolver=resolve.online_users,
        graphql_type=list[Annotated["User", strawberry.lazy(_users)]],
        description="Users of the workspace with the app open now (an open WebSocket "
        "connection on any server), by name.",
    )


@strawberry.type
class RealtimeMutation:
    set_typing = strawberry.mutation(
        resolver=resolve.set_typing,
        graphql_type=SetTypingPayload,
        description="Tell the others in a conversation that you are typing, or stopped. "
        "Changes no data and writes no audit entry. " + TYPING_DOC,
    )


@strawberry.type(
    description="Live updates. Each event carries a `cursor`; subscribe with "
    "`after: <cursor>` to receive what you missed first, then live events, in order, once."
)
class Subscription:
    conversation_events = strawberry.subscription(
        resolver=resolve.conversation_events,
        graphql_type=ConversationEvent,
        description="Messages, status, assignment and read receipts of a conversation.",
    )

    inbox = strawberry.subscription(
        resolver=resolve.inbox,
        graphql_type=ConversationEvent,
        description="Conversations you may see: new ones, assignments, status changes, "
        "new messages.",
    )

    activity_feed = strawberry.subscription(
        resolver=resolve.activity_feed,
        graphql_type=ActivityFeedEvent,
        description="Activities logged in the workspace.",
    )

    deal_board = strawberry.subscription(
        resolver=resolve.deal_board,
        graphql_type=DealBoardEvent,
        description="The deal board of a pipeline: deals created, moved, updated, won or lost.",
    )

    dashboard = strawberry.subscription(
        resolver=resolve_dashboards.dashboard,
        graphql_type=Dashboard,
        description="A live dashboard: the reports and aggregates you select (with their "
        "arguments, as on `Query`), sent at once and again whenever the data under them "
        "changes, at most once a second. Only changed answers are sent. Computed once per "
        "distinct document, variables and visibility on each server, however many "
        "subscribers watch it.",
    )

    job_progress = strawberry.subscription(
        resolver=resolve_jobs.job_progress,
        graphql_type=JobProgressEvent,
        description="A background job's progress: its events so far (from the start, or "
        "after `after`), then live ones, ending after `job.finished`.",
    )

    typing = strawberry.subscription(
        resolver=resolve.typing,
        graphql_type=TypingEvent,
        description="Others typing in a conversation (your own signals are not sent back). "
        "Ends if the conversation stops being visible to you. " + TYPING_DOC,
    )

    presence = strawberry.subscription(
        resolver=resolve.presence,
        graphql_type=PresenceEvent,
        description="Users of the workspace coming online and going offline. Ephemeral: "
        "no cursor; read `onlineUsers` first, then follow changes.",
    )
