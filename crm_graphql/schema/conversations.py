"""Conversations in GraphQL: conversations and their messages, filters, orders, and the
mutations of live chat (start, send, customer messages, assign, status, read receipts)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.file_uploads import Upload

from crm_graphql.resolvers import conversations as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import DateTimeFilter, EnumFilter, IDFilter, IntFilter
from crm_graphql.schema.relay import Connection, Node, OrderDirection, UserError, read_model
from crm_graphql.schema.scalars import (
    Channel,
    ConversationStatus,
    EmailDeliveryStatus,
    EmailDirection,
    MessageAuthorType,
)

if TYPE_CHECKING:
    pass

_customers = "crm_graphql.schema.customers"
_users = "crm_graphql.schema.users"


@strawberry.type(description="A service conversation with a customer over one channel.")
@read_model("Conversation")
class Conversation(Node):
    is_type_of = rows_of("Conversation")

    channel: Channel = strawberry.field(description="How the conversation reaches us.")
    status: ConversationStatus = strawberry.field(description="Open, pending or closed.")
    subject: str | None = strawberry.field(description="Topic, when the channel has one.")
    is_private: bool = strawberry.field(
        description="Whether the conversation is private (restricted visibility)."
    )
    last_message_seq: int = strawberry.field(
        description="`seq` of the latest message (0 before the first one)."
    )
    last_message_at: datetime | None = strawberry.field(description="Time of the latest message.")
    created_at: datetime = strawberry.field(description="When the conversation started.")
    updated_at: datetime = strawberry.field(description="Last change.")
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")
    first_customer_message_at: datetime | None = strawberry.field(
        description="When the customer wrote for the first time."
    )
    first_response_at: datetime | None = strawberry.field(
        description="When an agent first answered after the customer's first message."
    )
    closed_at: datetime | None = strawberry.field(
        description="When the conversation was closed (null while open or pending)."
    )

    rating = strawberry.field(
        resolver=resolve.rating,
        graphql_type=Annotated["ConversationRating", strawberry.lazy(__name__)] | None,
        description="The customer's satisfaction rating (`rateConversation`), null before one.",
    )

    last_message = strawberry.field(
        resolver=resolve.last_message,
        graphql_type=Annotated["Message", strawberry.lazy(__name__)] | None,
        description="The latest message (null before the first one).",
    )

    unread_count = strawberry.field(
        resolver=resolve.unread_count,
        graphql_type=int | None,
        description="Messages after the caller's read receipt (`markConversationRead`); "
        "the caller's own messages count as read. Null for API keys, which have no receipts.",
    )


@strawberry.type(description="A customer's satisfaction rating of a conversation (CSAT).")
class ConversationRating:
    score: int = strawberry.field(description="1 (very unsatisfied) to 5 (very satisfied).")
    comment: str | None = strawberry.field(description="What the customer added, if anything.")
    rated_at: datetime = strawberry.field(description="When the (latest) rating was given.")


@strawberry.type(description="One message of a conversation.")
@read_model("Message")
class Message(Node):
    is_type_of = rows_of("Message")

    seq: int = strawberry.field(
        description="Position in the conversation: 1, 2, 3 ... without gaps."
    )
    author_type: MessageAuthorType = strawberry.field(description="Agent, customer or system.")
    body: str = strawberry.field(description="Message text.")
    client_message_id: str | None = strawberry.field(
        description="The sender's own ID, which makes retried sends idempotent."
    )
    created_at: datetime = strawberry.field(description="When the message was received.")

    delivery = strawberry.field(
        resolver=resolve.delivery,
        graphql_type=Annotated["EmailDelivery", strawberry.lazy(__name__)] | None,
        description="How the message travelled by email: for an agent's message in an "
        "EMAIL conversation, its delivery status; for a customer's mail, what it came "
        "with. Null for messages of other channels.",
    )

    attachments = strawberry.field(
        resolver=resolve.attachments,
        graphql_type=list[Annotated["MessageAttachment", strawberry.lazy(__name__)]],
        description="Files of the message, in their order: those a customer's mail came "
        "with, or those the agent attached.",
    )


@strawberry.type(description="The email of a message: sent to the customer, or received.")
class EmailDelivery:
    direction: EmailDirection = strawberry.field(
        description="Outbound: the agent's message, sent; inbound: the customer's mail."
    )
    status: EmailDeliveryStatus | None = strawberry.field(
        description="Sent mail: pending, retrying, sent or failed. Null for received mail."
    )
    attempts: int = strawberry.field(description="Attempts made to hand it to the relay.")
    last_error: str | None = strawberry.field(
        name="error",
        description="Why the last attempt failed (retrying) or why it was given up (failed).",
    )
    next_attempt_at: datetime | None = strawberry.field(
        description="When the next attempt is made (pending and retrying)."
    )
    sent_at: datetime | None = strawberry.field(description="When the relay accepted it.")
    bounced_at: datetime | None = strawberry.field(
        description="When a delivery status notification (a bounce) reported it failed; "
        "`error` then holds the status code and the receiving server's words."
    )
    rfc_message_id: str = strawberry.field(
        description="Its Message-ID header (without angle brackets), which replies name."
    )
    sender: str = strawberry.field(description="The From address.")
    recipients: list[str] = strawberry.field(description="The To addresses.")
    subject: str | None = strawberry.field(description="The Subject line.")


@strawberry.type(description="A file of a message: received with a mail, or attached.")
class MessageAttachment(Node):
    is_type_of = rows_of("MessageAttachment")

    filename: str = strawberry.field(description="Its name, as the sender gave it.")
    content_type: str = strawberry.field(
        description="Its MIME type, as the sender gave it (an upload without one: by its "
        "name's extension)."
    )
    size: int = strawberry.field(description="Its size in bytes.")
    url = strawberry.field(
        resolver=resolve.attachment_url,
        graphql_type=str,
        description="Where to download it (`GET`, with the same `Authorization: Bearer` "
        "header as the API; whoever may see the conversation may download it).",
    )


@strawberry.input(description="Conditions on conversations; fields combine with AND.")
class ConversationFilter:
    and_: list[ConversationFilter] | None = strawberry.field(default=None, name="and")
    or_: list[ConversationFilter] | None = strawberry.field(default=None, name="or")
    not_: ConversationFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    customer_id: IDFilter | None = None
    channel: EnumFilter[Channel] | None = None
    status: EnumFilter[ConversationStatus] | None = None
    assignee_id: IDFilter | None = None
    last_message_at: DateTimeFilter | None = None
    created_at: DateTimeFilter | None = None
    first_response_at: DateTimeFilter | None = None
    closed_at: DateTimeFilter | None = None
    rated_at: DateTimeFilter | None = strawberry.field(
        default=None,
        description="When the customer's latest rating was given (no rating: no value).",
    )
    rating_score: IntFilter | None = strawberry.field(
        default=None,
        description="The score of the customer's rating, 1 to 5 (no rating: no value).",
    )
    unread: bool | None = strawberry.field(
        default=None,
        description="true: conversations with messages after the caller's read receipt; "
        "false: the ones read to the end.",
    )


@strawberry.enum(description="Fields conversations can be ordered by.")
class ConversationOrderField(enum.Enum):
    LAST_MESSAGE_AT = "last_message_at"
    CREATED_AT = "created_at"


@strawberry.input(description="One sort key for conversations.")
class ConversationOrder:
    field: ConversationOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Conditions on messages; fields combine with AND.")
class MessageFilter:
    and_: list[MessageFilter] | None = strawberry.field(default=None, name="and")
    or_: list[MessageFilter] | None = strawberry.field(default=None, name="or")
    not_: MessageFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    seq: IntFilter | None = None
    author_type: EnumFilter[MessageAuthorType] | None = None
    author_user_id: IDFilter | None = strawberry.field(
        default=None,
        description="The user who wrote the message (customers' and system messages have none).",
    )
    created_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields messages can be ordered by.")
class MessageOrderField(enum.Enum):
    SEQ = "seq"
    CREATED_AT = "created_at"


@strawberry.input(description="One sort key for messages.")
class MessageOrder:
    field: MessageOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.type
class ConversationQuery:
    conversations = strawberry.field(
        resolver=resolve.conversations,
        graphql_type=Connection[Conversation],
        description="Conversations of the workspace, latest message first unless ordered.",
    )


@strawberry.input(
    description="A new conversation with a customer, optionally with its first message."
)
class StartConversationInput:
    customer_id: strawberry.ID = strawberry.field(
        description="The customer the conversation is with."
    )
    channel: Channel = strawberry.field(description="How the conversation takes place.")
    subject: str | None = strawberry.field(
        default=strawberry.UNSET, description="A short summary shown in inboxes."
    )
    is_private: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Only admins, managers and the assignee see a private conversation.",
    )
    assignee_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="An agent, manager or admin of the workspace."
    )
    body: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="First message: the agent's when a user starts the conversation, the "
        "customer's when a channel integration (API key) does.",
    )
    client_message_id: str | None = strawberry.field(
        default=strawberry.UNSET, description="The sender's own ID of the first message."
    )


@strawberry.input(description="An agent's message.")
class SendMessageInput:
    conversation_id: strawberry.ID = strawberry.field(description="The conversation to write in.")
    body: str = strawberry.field(description="Message text, at most 10,000 characters.")
    client_message_id: str | None = strawberry.field(
        default=None,
        description="Your own unique ID of the message (a UUID): sending again with it "
        "returns the first message instead of a duplicate.",
    )
    attachments: list[Upload] | None = strawberry.field(
        default=None,
        description="Files to attach, uploaded in a GraphQL multipart request "
        "(github.com/jaydenseric/graphql-multipart-request-spec): listed in the message's "
        "`attachments`, and sent with its mail in an EMAIL conversation. At most 10 files, "
        "10 MB each and 15 MB together unless the server says otherwise "
        "(CRM_MESSAGE_ATTACHMENTS_*); over a limit, nothing is sent (VALIDATION).",
    )


@strawberry.input(description="A message from the customer, brought by a channel integration.")
class PostCustomerMessageInput:
    conversation_id: strawberry.ID = strawberry.field(
        description="The conversation the customer wrote in."
    )
    body: str = strawberry.field(description="Message text, at most 10,000 characters.")
    client_message_id: str | None = strawberry.field(
        default=None,
        description="The channel's own unique ID of the message: posting again with it "
        "returns the first message instead of a duplicate.",
    )


@strawberry.input(description="Who handles a conversation.")
class AssignConversationInput:
    id: strawberry.ID = strawberry.field(description="The conversation to assign.")
    assignee_id: strawberry.ID | None = strawberry.field(
        default=None, description="An agent, manager or admin; null: unassign."
    )
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the conversation's version differs."
    )


@strawberry.input(description="A conversation's new status.")
class SetConversationStatusInput:
    id: strawberry.ID = strawberry.field(description="The conversation to change.")
    status: ConversationStatus = strawberry.field(description="The new status.")
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the conversation's version differs."
    )


@strawberry.input(description="The customer's rating of a conversation.")
class RateConversationInput:
    conversation_id: strawberry.ID = strawberry.field(description="The conversation being rated.")
    score: int = strawberry.field(description="1 (very unsatisfied) to 5 (very satisfied).")
    comment: str | None = strawberry.field(default=None, description="The customer's words.")


@strawberry.input(description="How far the caller has read a conversation.")
class MarkConversationReadInput:
    id: strawberry.ID = strawberry.field(description="The conversation the caller has read.")
    up_to_seq: int | None = strawberry.field(
        default=None, description="`seq` of the last message read; left out: the latest."
    )


@strawberry.type(description="Result of a conversation mutation.")
class ConversationPayload:
    conversation: Conversation | None = strawberry.field(
        description="The conversation after the change."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type(description="Result of sending a message.")
class MessagePayload:
    message: Message | None = strawberry.field(
        description="The message: the one created, or the first one on a retry."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )

    conversation = strawberry.field(
        resolver=resolve.message_payload_conversation,
        graphql_type=Conversation | None,
        description="The conversation after the message.",
    )


@strawberry.type
class ConversationMutation:
    start_conversation = strawberry.mutation(
        resolver=resolve.start_conversation,
        graphql_type=ConversationPayload,
        description="Start a conversation with a customer, optionally with its first message.",
    )

    send_message = strawberry.mutation(
        resolver=resolve.send_message,
        graphql_type=MessagePayload,
        description="Send an agent's message. Idempotent by `clientMessageId`; writing into a "
        "closed conversation reopens it.",
    )

    post_customer_message = strawberry.mutation(
        resolver=resolve.post_customer_message,
        graphql_type=MessagePayload,
        description="Post a message as the customer: for channel integrations, with an API key "
        "holding the `conversations:write` scope. Idempotent by `clientMessageId`; a pending or "
        "closed conversation opens again.",
    )

    assign_conversation = strawberry.mutation(
        resolver=resolve.assign_conversation,
        graphql_type=ConversationPayload,
        description="Assign a conversation to a user, or unassign it.",
    )

    set_conversation_status = strawberry.mutation(
        resolver=resolve.set_conversation_status,
        graphql_type=ConversationPayload,
        description="Open, set pending or close a conversation.",
    )

    mark_conversation_read = strawberry.mutation(
        resolver=resolve.mark_conversation_read,
        graphql_type=ConversationPayload,
        description="Move the caller's read receipt forward (never back); users only.",
    )

    rate_conversation = strawberry.mutation(
        resolver=resolve.rate_conversation,
        graphql_type=ConversationPayload,
        description="The customer's satisfaction with a conversation (score 1 to 5 and a "
        "comment), posted by a channel integration with its API key (`conversations:write`); "
        "rating again replaces the rating (audited). Users may not rate.",
    )
