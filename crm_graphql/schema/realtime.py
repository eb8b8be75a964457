"""Subscriptions (over WebSocket on /graphql) and the events they deliver; typing and
presence (ephemeral: Redis only, never stored)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from crm_graphql.realtime import ephemeral
from crm_graphql.resolvers import dashboards as resolve_dashboards
from crm_graphql.resolvers import realtime as resolve
from crm_graphql.schema.dashboards import Dashboard
from crm_graphql.schema.relay import UserError
from crm_graphql.schema.scalars import ActivityType, exposed

if TYPE_CHECKING:
    from crm_graphql.schema.activities import Activity
    from crm_graphql.schema.conversations import Conversation, Message
    from crm_graphql.schema.deals import Deal, Pipeline, Stage
    from crm_graphql.schema.users import User

_activities = "crm_graphql.schema.activities"
_conversations = "crm_graphql.schema.conversations"
_deals = "crm_graphql.schema.deals"
_users = "crm_graphql.schema.users"

CURSOR_DOC = "Position of this event; pass it as `after` to resume right after it."

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


@strawberry.type(description="Something that happened in a conversation.")
class ConversationEvent:
    cursor: str = strawberry.field(description=CURSOR_DOC)
    type: str = strawberry.field(
        description="conversation.started, message.created, conversation.assigned, "
        "conversation.status_changed, conversation.read, conversation.rated or "
        "message.delivery_changed (an email's delivery status: see `message.delivery`)."
    )
    occurred_at: datetime = strawberry.field(description="When the change was committed.")

    @strawberry.field(description="The conversation as it is now.")
    async def conversation(
        self, info: Info
    ) -> Annotated[Conversation, strawberry.lazy(_conversations)] | None:
        return await resolve.event_conversation(info, self)  # type: ignore[arg-type]

    @strawberry.field(
        description="The new message (message.created), or the message whose email "
        "delivery changed (message.delivery_changed)."
    )
    async def message(
        self, info: Info
    ) -> Annotated[Message, strawberry.lazy(_conversations)] | None:
        return await resolve.event_message(info, self)  # type: ignore[arg-type]

    @strawberry.field(description="Who read the conversation (conversation.read).")
    async def read_by(self, info: Info) -> Annotated[User, strawberry.lazy(_users)] | None:
        return await resolve.event_user(info, self, "user_id")  # type: ignore[arg-type]

    @strawberry.field(description="Up to which message it was read (conversation.read).")
    def last_read_seq(self) -> int | None:
        return self.event.payload.get("last_read_seq")  # type: ignore[attr-defined]

    @strawberry.field(description="The assignee before the change (conversation.assigned).")
    async def previous_assignee(
        self, info: Info
    ) -> Annotated[User, strawberry.lazy(_users)] | None:
        return await resolve.event_user(info, self, "previous_assignee_id")  # type: ignore[arg-type]


@strawberry.type(description="An activity logged, changed or archived.")
class ActivityFeedEvent:
    cursor: str = strawberry.field(description=CURSOR_DOC)
    type: str = strawberry.field(
        description="activity.created, activity.updated or activity.archived."
    )
    occurred_at: datetime = strawberry.field(description="When the change was committed.")

    @strawberry.field(description="The activity as it is now.")
    async def activity(
        self, info: Info
    ) -> Annotated[Activity, strawberry.lazy(_activities)] | None:
        return await resolve.event_activity(info, self)  # type: ignore[arg-type]


@strawberry.type(description="A change on a pipeline's deal board.")
class DealBoardEvent:
    cursor: str = strawberry.field(description=CURSOR_DOC)
    type: str = strawberry.field(
        description="deal.created, deal.updated, deal.moved, deal.archived, stage.created, "
        "stage.updated, stage.archived, pipeline.updated or pipeline.archived. Won and lost "
        "deals arrive as deal.updated with their new status."
    )
    occurred_at: datetime = strawberry.field(description="When the change was committed.")

    @strawberry.field(description="The deal as it is now (deal events).")
    async def deal(self, info: Info) -> Annotated[Deal, strawberry.lazy(_deals)] | None:
        return await resolve.event_deal(info, self)  # type: ignore[arg-type]

    @strawberry.field(description="The deal's stage, or the changed stage (stage events).")
    async def stage(self, info: Info) -> Annotated[Stage, strawberry.lazy(_deals)] | None:
        return await resolve.event_stage(info, self)  # type: ignore[arg-type]

    @strawberry.field(description="The pipeline of the board the event belongs to.")
    async def pipeline(self, info: Info) -> Annotated[Pipeline, strawberry.lazy(_deals)] | None:
        return await resolve.event_pipeline(info, self)  # type: ignore[arg-type]


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
    @strawberry.field(
        description="Users of the workspace with the app open now (an open WebSocket "
        "connection on any server), by name."
    )
    async def online_users(self, info: Info) -> list[Annotated[User, strawberry.lazy(_users)]]:
        return await resolve.online_users(info)  # type: ignore[return-value]


@strawberry.type
class RealtimeMutation:
    @strawberry.mutation(
        description="Tell the others in a conversation that you are typing, or stopped. "
        "Changes no data and writes no audit entry. " + TYPING_DOC
    )
    async def set_typing(self, info: Info, input: SetTypingInput) -> SetTypingPayload:
        return await resolve.set_typing(info, input)  # type: ignore[return-value]


@strawberry.type(
    description="Live updates. Each event carries a `cursor`; subscribe with "
    "`after: <cursor>` to receive what you missed first, then live events, in order, once."
)
class Subscription:
    @strawberry.subscription(
        description="Messages, status, assignment and read receipts of a conversation."
    )
    async def conversation_events(
        self, info: Info, conversation_id: ConversationArgument, after: ResumeAfter = None
    ) -> AsyncGenerator[ConversationEvent, None]:
        async for event in resolve.conversation_events(info, conversation_id, after):
            yield event  # type: ignore[misc]

    @strawberry.subscription(
        description="Conversations you may see: new ones, assignments, status changes, "
        "new messages."
    )
    async def inbox(
        self, info: Info, after: ResumeAfter = None
    ) -> AsyncGenerator[ConversationEvent, None]:
        async for event in resolve.inbox(info, after):
            yield event  # type: ignore[misc]

    @strawberry.subscription(description="Activities logged in the workspace.")
    async def activity_feed(
        self, info: Info, filter: ActivityFeedFilter | None = None, after: ResumeAfter = None
    ) -> AsyncGenerator[ActivityFeedEvent, None]:
        async for event in resolve.activity_feed(info, filter, after):
            yield event  # type: ignore[misc]

    @strawberry.subscription(
        description="The deal board of a pipeline: deals created, moved, updated, won or lost."
    )
    async def deal_board(
        self,
        info: Info,
        pipeline_id: Annotated[
            strawberry.ID, strawberry.argument(description="The pipeline whose board to follow.")
        ],
        after: ResumeAfter = None,
    ) -> AsyncGenerator[DealBoardEvent, None]:
        async for event in resolve.deal_board(info, pipeline_id, after):
            yield event  # type: ignore[misc]

    @strawberry.subscription(
        description="A live dashboard: the reports and aggregates you select (with their "
        "arguments, as on `Query`), sent at once and again whenever the data under them "
        "changes, at most once a second. Only changed answers are sent. Computed once per "
        "distinct document, variables and visibility on each server, however many "
        "subscribers watch it."
    )
    async def dashboard(self, info: Info) -> AsyncGenerator[Dashboard, None]:
        async for value in resolve_dashboards.dashboard(info):
            yield value  # type: ignore[misc]

    @strawberry.subscription(
        description="Others typing in a conversation (your own signals are not sent back). "
        "Ends if the conversation stops being visible to you. " + TYPING_DOC
    )
    async def typing(
        self, info: Info, conversation_id: ConversationArgument
    ) -> AsyncGenerator[TypingEvent, None]:
        async for event in resolve.typing(info, conversation_id):
            yield event  # type: ignore[misc]

    @strawberry.subscription(
        description="Users of the workspace coming online and going offline. Ephemeral: "
        "no cursor; read `onlineUsers` first, then follow changes."
    )
    async def presence(self, info: Info) -> AsyncGenerator[PresenceEvent, None]:
        async for event in resolve.presence(info):
            yield event  # type: ignore[misc]
