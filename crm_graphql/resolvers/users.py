"""Users: the current user and the workspace's user list."""

from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import Payload, create_payload, mutate_payload
from crm_graphql.services import users as user_service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.users import CreateUserInput, UpdateUserInput, UserFilter, UserOrder

_users = "crm_graphql.schema.users"


async def me(info: Info) -> models.User | None:
    actor = info.context.require_actor()
    return await by_id(info, models.User, actor.user_id)


async def users(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["UserFilter", strawberry.lazy(_users)] | None = None,
    order_by: list[Annotated["UserOrder", strawberry.lazy(_users)]] | None = None,
    include_archived: bool = False,
) -> ConnectionValue:
    return await root_list(
        info, user_service.USERS, first, after, last, before, filter, order_by, include_archived
    )


async def create_user(
    info: Info,
    input: Annotated["CreateUserInput", strawberry.lazy(_users)],
) -> Payload:
    return await create_payload(info, "user", user_service.create_user, input, input_changes)


async def update_user(
    info: Info,
    input: Annotated["UpdateUserInput", strawberry.lazy(_users)],
) -> Payload:
    id = decode_id(input.id, "User")
    changes = input_changes(input)
    return await mutate_payload(
        info, "user", lambda actor, s: user_service.update_user(actor, s, id, changes)
    )
