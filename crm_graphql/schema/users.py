"""Users (the people who log in) in GraphQL."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry
from strawberry.types import Info

from crm_graphql.resolvers import users as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import DateTimeFilter, EnumFilter, IDFilter, StringFilter
from crm_graphql.schema.relay import Connection, Node, OrderDirection, UserError
from crm_graphql.schema.scalars import Role


@strawberry.type(description="A person who logs in to the workspace.")
class User(Node):
    is_type_of = rows_of("User")

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


@strawberry.input(description="A new login of the workspace.")
class CreateUserInput:
    email: str = strawberry.field(description="Login email, unique across the server.")
    name: str
    role: Role
    password: str = strawberry.field(
        description="First password (12 to 256 characters), handed over by the admin."
    )


@strawberry.input(description="Changes to a user; only the fields sent change.")
class UpdateUserInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    role: Role | None = strawberry.UNSET
    is_active: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="False disables the login and revokes its refresh tokens.",
    )


@strawberry.type(description="Result of a change to a user.")
class UserPayload:
    user: User | None = strawberry.field(description="The user after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type
class UserMutation:
    @strawberry.mutation(description="Add a user to the workspace (admins).")
    async def create_user(self, info: Info, input: CreateUserInput) -> UserPayload:
        return await resolve.create_user(info, input)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Rename, change the role of, or disable a user (admins). A new role or "
        "disabling closes the user's WebSocket connections."
    )
    async def update_user(self, info: Info, input: UpdateUserInput) -> UserPayload:
        return await resolve.update_user(info, input)  # type: ignore[return-value]
