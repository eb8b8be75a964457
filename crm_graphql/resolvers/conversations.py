"""Conversation and message fields and mutations: arguments to service calls."""

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql import models
from crm_graphql.global_ids import decode_id, to_global_id
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import Payload, create_payload, mutate_payload
from crm_graphql.services import conversations as conversation_service
from crm_graphql.services import email as email_service
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid, NotFound

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.conversations import (
        AssignConversationInput,
        ConversationFilter,
        ConversationOrder,
        MarkConversationReadInput,
        PostCustomerMessageInput,
        RateConversationInput,
        SendMessageInput,
        SetConversationStatusInput,
        StartConversationInput,
    )

_conversations = "crm_graphql.schema.conversations"


START_IDS = {"customer_id": "Customer", "assignee_id": "User"}

# ------------------------------------------------------------------------------ lists


async def conversations(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["ConversationFilter", strawberry.lazy(_conversations)] | None = None,
    order_by: list[Annotated["ConversationOrder", strawberry.lazy(_conversations)]] | None = None,
) -> ConnectionValue:
    return await root_list(
        info, conversation_service.CONVERSATIONS, first, after, last, before, filter, order_by
    )


# -------------------------------------------------------------------------- relations


async def delivery(root: models.Message, info: Info) -> Any:
    loader = info.context.loaders.per_key("email_delivery", email_service.deliveries)
    return await loader.load(root.id)


async def attachments(root: models.Message, info: Info) -> list[Any]:
    loader = info.context.loaders.per_key("attachments", email_service.attachments_of)
    return list(await loader.load(root.id) or [])


def attachment_url(root: models.MessageAttachment) -> str:
    return f"/attachments/{to_global_id('MessageAttachment', root.id)}"


async def unread_count(root: models.Conversation, info: Info) -> int | None:
    loader = info.context.loaders.per_key("unread_count", conversation_service.unread_counts)
    return await loader.load(root.id)


async def last_message(root: models.Conversation, info: Info) -> Any:
    if root.last_message_seq == 0:
        return None
    loader = info.context.loaders.per_key("last_message", conversation_service.last_messages)
    return await loader.load(root.id)


# -------------------------------------------------------------------------- mutations
# Arguments are converted inside the mutation so that a bad ID becomes a payload error.


async def start_conversation(
    info: Info,
    input: Annotated["StartConversationInput", strawberry.lazy(_conversations)],
) -> Payload:
    return await create_payload(
        info,
        "conversation",
        conversation_service.start_conversation,
        input,
        partial(input_changes, ids=START_IDS),
    )


async def _post(info: Info, post: Callable[..., Awaitable[Any]], input: Any) -> Payload:
    id = decode_id(input.conversation_id, "Conversation")
    return await mutate_payload(
        info,
        "message",
        lambda actor, s: post(
            actor, s, id, body=input.body, client_message_id=input.client_message_id
        ),
    )


async def _uploaded(info: Info, uploads: list[Any] | None) -> list[email_service.NewAttachment]:
    """The files of a multipart request, each read up to one byte past the largest file
    allowed (the service says which is too large; a huge file is never read whole)."""
    limit = info.context.app.settings.message_attachment_max_bytes
    files = []
    for upload in uploads or []:
        if not hasattr(upload, "read"):
            raise Invalid(
                "`attachments` must be uploads (a GraphQL multipart request)", "attachments"
            )
        files.append(
            email_service.NewAttachment(
                getattr(upload, "filename", None),
                getattr(upload, "content_type", None),
                await upload.read(limit + 1),
            )
        )
    return files


async def send_message(
    info: Info,
    input: Annotated["SendMessageInput", strawberry.lazy(_conversations)],
) -> Payload:
    id = decode_id(input.conversation_id, "Conversation")

    async def send(actor: Actor, session: AsyncSession) -> models.Message:
        return await conversation_service.send_message(
            actor,
            session,
            id,
            body=input.body,
            client_message_id=input.client_message_id,
            attachments=await _uploaded(info, input.attachments),
        )

    return await mutate_payload(info, "message", send)


async def post_customer_message(
    info: Info,
    input: Annotated["PostCustomerMessageInput", strawberry.lazy(_conversations)],
) -> Payload:
    return await _post(info, conversation_service.post_customer_message, input)


async def message_payload_conversation(root: Payload, info: Info) -> Any:
    """The conversation of a message mutation's result, as it is after the commit."""
    message: models.Message | None = getattr(root, "message", None)
    if message is None:
        return None
    return await by_id(info, models.Conversation, message.conversation_id)


async def assign_conversation(
    info: Info,
    input: Annotated["AssignConversationInput", strawberry.lazy(_conversations)],
) -> Payload:
    id = decode_id(input.id, "Conversation")
    given = input.assignee_id
    assignee_id = decode_id(given, "User")

    async def assign(actor: Actor, session: Any) -> Any:
        if given is not None and assignee_id is None:  # never read a bad ID as "unassign"
            raise NotFound("User not found", "assigneeId")
        return await conversation_service.assign_conversation(
            actor, session, id, assignee_id, expected_version=input.expected_version
        )

    return await mutate_payload(info, "conversation", assign)


async def set_conversation_status(
    info: Info,
    input: Annotated["SetConversationStatusInput", strawberry.lazy(_conversations)],
) -> Payload:
    id = decode_id(input.id, "Conversation")
    return await mutate_payload(
        info,
        "conversation",
        lambda actor, s: conversation_service.set_conversation_status(
            actor, s, id, input.status, expected_version=input.expected_version
        ),
    )


async def mark_conversation_read(
    info: Info,
    input: Annotated["MarkConversationReadInput", strawberry.lazy(_conversations)],
) -> Payload:
    id = decode_id(input.id, "Conversation")
    return await mutate_payload(
        info,
        "conversation",
        lambda actor, s: conversation_service.mark_conversation_read(actor, s, id, input.up_to_seq),
    )


async def rate_conversation(
    info: Info,
    input: Annotated["RateConversationInput", strawberry.lazy(_conversations)],
) -> Payload:
    id = decode_id(input.conversation_id, "Conversation")
    return await mutate_payload(
        info,
        "conversation",
        lambda actor, s: conversation_service.rate_conversation(
            actor, s, id, input.score, input.comment
        ),
    )


def rating(root: models.Conversation) -> conversation_service.Rating | None:
    """The conversation's CSAT rating, from its own columns."""
    return conversation_service.rating_of(root)
