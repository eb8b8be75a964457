"""Users: the current user and the workspace's user list."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import Payload, create_payload, mutate_payload
from crm_graphql.services import users as user_service


async def me(info: Any) -> models.User | None:
    actor = info.context.require_actor()
    return await by_id(info, models.User, actor.user_id)


async def users(info: Any, *args: Any) -> ConnectionValue:
    return await root_list(info, user_service.USERS, *args)


async def create_user(info: Any, input: Any) -> Payload:
    return await create_payload(info, "user", user_service.create_user, input, input_changes)


async def update_user(info: Any, input: Any) -> Payload:
    id = decode_id(input.id, "User")
    changes = input_changes(input)
    return await mutate_payload(
        info, "user", lambda actor, s: user_service.update_user(actor, s, id, changes)
    )
