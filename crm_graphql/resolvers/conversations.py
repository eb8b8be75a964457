"""Conversation and message fields: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.lists import ConnectionValue, by_id, child_list, root_list
from crm_graphql.services import conversations as conversation_service


async def conversations(info: Any, *args: Any) -> ConnectionValue:
    # Conversations are closed, never archived: the list has no `includeArchived`.
    return await root_list(info, conversation_service.CONVERSATIONS, *args)


async def customer(info: Any, root: models.Conversation) -> Any:
    return await by_id(info, models.Customer, root.customer_id)


async def assignee(info: Any, root: models.Conversation) -> Any:
    return await by_id(info, models.User, root.assignee_id)


async def messages(info: Any, root: models.Conversation, *args: Any) -> ConnectionValue:
    return await child_list(info, conversation_service.MESSAGES, "conversation_id", root.id, *args)


async def author(info: Any, root: models.Message) -> Any:
    return await by_id(info, models.User, root.author_user_id)


async def conversation(info: Any, root: models.Message) -> Any:
    return await by_id(info, models.Conversation, root.conversation_id)
