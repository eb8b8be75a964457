"""Service conversations and their messages (read side; live chat comes later)."""

from __future__ import annotations

from crm_graphql.models import Conversation, Message
from crm_graphql.services import querying

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
)

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
