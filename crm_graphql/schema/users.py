"""Users (the people who log in) in GraphQL."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry
from strawberry.types import Info

from crm_graphql import models
from crm_graphql.resolvers import users as resolve
from crm_graphql.schema.filters import DateTimeFilter, EnumFilter, IDFilter, StringFilter
from crm_graphql.schema.relay import Connection, Node, OrderDirection, of_model
from crm_graphql.schema.scalars import Role


@strawberry.type(description="A person who logs in to the workspace.")
class User(Node):
    is_type_of = of_model(models.User)

    email: str = strawberry.field(description="Login email.")
    name: str = strawberry.field(description="Display name.")
    role: Role = strawberry.field(description="What the user may do.")
    is_active: bool = strawberry.field(description="False once the account is disabled.")
    last_login_at: datetime | None = strawberry.field(description="Time of the latest login.")
    created_at: datetime = strawberry.field(description="When the account was created.")


@strawberry.input(description="Conditions on users; fields combine with AND.")
class UserFilter:
    and_: list[UserFilter] | None = strawberry.field(default=None, name="and")
    or_: list[UserFilter] | None = strawberry.field(default=None, name="or")
    not_: UserFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    email: StringFilter | None = None
    name: StringFilter | None = None
    role: EnumFilter[Role] | None = None
    created_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields users can be ordered by.")
class UserOrderField(enum.Enum):
    NAME = "name"
    EMAIL = "email"
    CREATED_AT = "created_at"


@strawberry.input(description="One sort key for users.")
class UserOrder:
    field: UserOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.type
class UserQuery:
    @strawberry.field(description="The logged-in user (null for API keys).")
    async def me(self, info: Info) -> User | None:
        return await resolve.me(info)  # type: ignore[return-value]

    @strawberry.field(description="Users of the workspace.")
    async def users(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: UserFilter | None = None,
        order_by: list[UserOrder] | None = None,
        include_archived: bool = False,
    ) -> Connection[User]:
        return await resolve.users(  # type: ignore[return-value]
            info, first, after, last, before, filter, order_by, include_archived
        )
