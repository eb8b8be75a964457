"""Conversations in GraphQL (read side): conversations, their messages, filters, orders."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from crm_graphql import models
from crm_graphql.resolvers import conversations as resolve
from crm_graphql.schema.filters import DateTimeFilter, EnumFilter, IDFilter, IntFilter
from crm_graphql.schema.relay import Connection, Node, OrderDirection, of_model
from crm_graphql.schema.scalars import Channel, ConversationStatus, MessageAuthorType

if TYPE_CHECKING:
    from crm_graphql.schema.customers import Customer
    from crm_graphql.schema.users import User

_customers = "crm_graphql.schema.customers"
_users = "crm_graphql.schema.users"


@strawberry.type(description="A service conversation with a customer over one channel.")
class Conversation(Node):
    is_type_of = of_model(models.Conversation)

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

    @strawberry.field(description="The customer the conversation is with.")
    async def customer(self, info: Info) -> Annotated[Customer, strawberry.lazy(_customers)] | None:
        return await resolve.customer(info, self)  # type: ignore[arg-type]

    @strawberry.field(description="The agent handling the conversation.")
    async def assignee(self, info: Info) -> Annotated[User, strawberry.lazy(_users)] | None:
        return await resolve.assignee(info, self)  # type: ignore[arg-type]

    @strawberry.field(description="Messages, oldest first (by `seq`) unless ordered.")
    async def messages(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: MessageFilter | None = None,
        order_by: list[MessageOrder] | None = None,
    ) -> Connection[Message]:
        return await resolve.messages(info, self, first, after, filter, order_by)  # type: ignore[arg-type, return-value]


@strawberry.type(description="One message of a conversation.")
class Message(Node):
    is_type_of = of_model(models.Message)

    seq: int = strawberry.field(
        description="Position in the conversation: 1, 2, 3 ... without gaps."
    )
    author_type: MessageAuthorType = strawberry.field(description="Agent, customer or system.")
    body: str = strawberry.field(description="Message text.")
    client_message_id: str | None = strawberry.field(
        description="The sender's own ID, which makes retried sends idempotent."
    )
    created_at: datetime = strawberry.field(description="When the message was received.")

    @strawberry.field(description="The agent who wrote the message (null for customer and system).")
    async def author(self, info: Info) -> Annotated[User, strawberry.lazy(_users)] | None:
        return await resolve.author(info, self)  # type: ignore[arg-type]

    @strawberry.field(description="The conversation the message belongs to.")
    async def conversation(self, info: Info) -> Conversation | None:
        return await resolve.conversation(info, self)  # type: ignore[arg-type]


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
    author_user_id: IDFilter | None = None
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
    @strawberry.field(
        description="Conversations of the workspace, latest message first unless ordered."
    )
    async def conversations(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: ConversationFilter | None = None,
        order_by: list[ConversationOrder] | None = None,
    ) -> Connection[Conversation]:
        return await resolve.conversations(  # type: ignore[return-value]
            info, first, after, last, before, filter, order_by
        )
