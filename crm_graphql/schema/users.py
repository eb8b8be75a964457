"""Users (the people who log in) in GraphQL."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

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
    me = strawberry.field(
        resolver=resolve.me,
        graphql_type=User | None,
        description="The logged-in user (null for API keys).",
    )

    users = strawberry.field(
        resolver=resolve.users,
        graphql_type=Connection[User],
        description="Users of the workspace.",
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
    create_user = strawberry.mutation(
        resolver=resolve.create_user,
        graphql_type=UserPayload,
        description="Add a user to the workspace (admins).",
    )

    update_user = strawberry.mutation(
        resolver=resolve.update_user,
        graphql_type=UserPayload,
        description="Rename, change the role of, or disable a user (admins). A new role or "
        "disabling closes the user's WebSocket connections.",
    )
