"""Users: the current user and the workspace's user list."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.services import users as user_service


async def me(info: Any) -> models.User | None:
    actor = info.context.require_actor()
    return await by_id(info, models.User, actor.user_id)  # type: ignore[no-any-return]


async def users(info: Any, *args: Any) -> ConnectionValue:
    return await root_list(info, user_service.USERS, *args)
