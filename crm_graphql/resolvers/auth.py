"""Login, token refresh and logout."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import ratelimit
from crm_graphql.realtime.unit_of_work import publish_after_commit
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import UserErrorValue, mutate, user_errors
from crm_graphql.services import auth
from crm_graphql.services.errors import DomainError, InvalidCredentials

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.auth import LoginInput, LogoutInput, RefreshTokenInput

_auth = "crm_graphql.schema.auth"


@dataclass
class AuthResult:
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    user: Any = None
    errors: list[UserErrorValue] = field(default_factory=list)


@dataclass
class LogoutResult:
    ok: bool
    errors: list[UserErrorValue] = field(default_factory=list)


def _result(pair: auth.TokenPair) -> AuthResult:
    return AuthResult(pair.access_token, pair.refresh_token, pair.expires_at, pair.user)


async def login(info: Info, input: Annotated["LoginInput", strawberry.lazy(_auth)]) -> AuthResult:
    context = info.context
    app = context.app
    throttle = ratelimit.LoginThrottle.from_settings(app.settings, app.tokens.secret_key)
    # Raises RateLimited (a top-level RATE_LIMITED error, HTTP 429) before the email or
    # password is looked at: the same answer for every email.
    attempt = (
        await throttle.reserve(app.limiter, client_ip=context.client_ip, email=input.email)
        if throttle is not None
        else None
    )
    try:
        async with context.unit_of_work() as session:
            pair = await auth.login(
                session,
                context.app.tokens,
                email=input.email,
                password=input.password,
                request_id=context.request_id,
                client_ip=context.client_ip,
            )
    except InvalidCredentials as error:  # the reserved failure stays counted
        return AuthResult(errors=user_errors([error]))
    except Exception as error:
        if throttle is not None and attempt is not None:
            await throttle.not_checked(app.limiter, attempt)
        if isinstance(error, DomainError):
            return AuthResult(errors=user_errors([error]))
        raise
    if throttle is not None and attempt is not None:
        await throttle.succeeded(app.limiter, attempt)
    return _result(pair)


async def refresh(
    info: Info,
    input: Annotated["RefreshTokenInput", strawberry.lazy(_auth)],
) -> AuthResult:
    context = info.context
    async with context.own_session() as session:
        try:
            pair = await auth.refresh(
                session,
                context.app.tokens,
                refresh_token=input.refresh_token,
                request_id=context.request_id,
                client_ip=context.client_ip,
            )
        except DomainError as error:
            # Commit anyway: reusing a token revokes its family, and that must stick
            # (and that login's connections close: tell the other processes).
            await session.commit()
            await publish_after_commit(context.app.bus, session)
            return AuthResult(errors=user_errors([error]))
        await session.commit()
    return _result(pair)


async def logout(
    info: Info,
    input: Annotated["LogoutInput", strawberry.lazy(_auth)] | None = None,
) -> LogoutResult:
    token = input.refresh_token if input is not None else None
    outcome = await mutate(info, lambda actor, s: auth.logout(actor, s, refresh_token=token))
    return LogoutResult(ok=not outcome.errors, errors=user_errors(outcome.errors))
