"""Logging in and out."""

from __future__ import annotations

from datetime import datetime

import strawberry

from crm_graphql.resolvers import auth as resolve
from crm_graphql.schema.relay import UserError
from crm_graphql.schema.users import User


@strawberry.input(description="Credentials of a user.")
class LoginInput:
    email: str = strawberry.field(description="The user's email (case is ignored).")
    password: str = strawberry.field(description="The user's password.")


@strawberry.input(description="A refresh token from `login` or an earlier `refreshToken`.")
class RefreshTokenInput:
    refresh_token: str = strawberry.field(
        description="The refresh token; it is used up by this call."
    )


@strawberry.input(description="Ends a login; without a token, every login of the user.")
class LogoutInput:
    refresh_token: str | None = strawberry.field(
        default=None,
        description="The refresh token of the login to end; left out: every login of the user.",
    )


@strawberry.type(description="Tokens of a login. Send `Authorization: Bearer <accessToken>`.")
class AuthPayload:
    access_token: str | None = strawberry.field(description="Short-lived JWT (15 minutes).")
    refresh_token: str | None = strawberry.field(
        description="Exchange with `refreshToken` for new tokens; each works once."
    )
    expires_at: datetime | None = strawberry.field(description="When the access token expires.")
    user: User | None = strawberry.field(
        description="The signed-in user (null when the login failed)."
    )
    errors: list[UserError] = strawberry.field(
        description="Why no tokens were issued (empty on success)."
    )


@strawberry.type(description="Result of `logout`.")
class LogoutPayload:
    ok: bool = strawberry.field(description="The login (or every login) was ended.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing was ended (empty on success)."
    )


@strawberry.type
class AuthMutation:
    login = strawberry.mutation(
        resolver=resolve.login,
        graphql_type=AuthPayload,
        description="Exchange email and password for tokens.",
    )

    refresh_token = strawberry.mutation(
        resolver=resolve.refresh,
        graphql_type=AuthPayload,
        description="Exchange a refresh token for new tokens (rotation).",
    )

    logout = strawberry.mutation(
        resolver=resolve.logout,
        graphql_type=LogoutPayload,
        description="End a login (without a refresh token, every login of the user): its "
        "refresh tokens are revoked and its WebSocket connections close.",
    )
