"""Logging in: argon2id passwords, short-lived JWT access tokens, rotating refresh tokens."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import RefreshToken, Role, User, Workspace
from crm_graphql.services import audit, credentials, fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import InvalidCredentials, Unauthenticated

JWT_ALGORITHM = "HS256"
_hasher = PasswordHasher()  # argon2id with the library's current recommended cost
# Verified against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True)
class TokenConfig:
    secret_key: str
    access_ttl: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: datetime
    user: User


def use_password_hasher(hasher: PasswordHasher) -> None:
    """Swap the argon2id cost parameters (tests use a cheap one; production keeps the
    library's recommended cost)."""
    global _hasher, _DUMMY_HASH
    _hasher = hasher
    _DUMMY_HASH = hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def issue_access_token(
    config: TokenConfig, user: User, login_id: uuid.UUID | None = None
) -> tuple[str, datetime]:
    """A signed access token of ``user``; ``login_id`` (claim ``sid``) is the login it
    belongs to (its refresh-token family), so that logging out of it can end it."""
    # Whole seconds, as the ``exp`` claim holds it: ``expiresAt`` is exactly the expiry.
    expires = (_now() + config.access_ttl).replace(microsecond=0)
    claims = {
        "sub": str(user.id),
        "ws": str(user.workspace_id),
        "role": user.role.value,
        "exp": expires,
        "iat": _now(),
        "typ": "access",
    }
    if login_id is not None:
        claims["sid"] = str(login_id)
    return jwt.encode(claims, config.secret_key, algorithm=JWT_ALGORITHM), expires


async def _issue_pair(
    session: AsyncSession, config: TokenConfig, user: User, family_id: uuid.UUID
) -> TokenPair:
    refresh = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            workspace_id=user.workspace_id,
            user_id=user.id,
            token_hash=_digest(refresh),
            family_id=family_id,
            expires_at=_now() + config.refresh_ttl,
        )
    )
    access, expires = issue_access_token(config, user, family_id)
    return TokenPair(access, refresh, expires, user)


async def login(
    session: AsyncSession,
    config: TokenConfig,
    *,
    email: str,
    password: str,
    request_id: str | None = None,
    client_ip: str | None = None,
) -> TokenPair:
    """Exchange email and password for tokens. Unknown email, wrong password and disabled
    account all give the same error after the same work."""
    user = await session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None:
        verify_password(_DUMMY_HASH, password)
        raise InvalidCredentials()
    if not verify_password(user.password_hash, password) or not user.is_active or user.archived_at:
        raise InvalidCredentials()
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = _now()
    actor = _user_actor(user, request_id, client_ip)
    audit.record(actor, session, action="login", entity_type="User", entity_id=user.id, changes={})
    return await _issue_pair(session, config, user, uuid.uuid4())


def _user_actor(user: User, request_id: str | None, client_ip: str | None) -> Actor:
    return Actor(
        workspace_id=user.workspace_id,
        role=user.role,
        user_id=user.id,
        request_id=request_id,
        client_ip=client_ip,
    )


async def refresh(
    session: AsyncSession,
    config: TokenConfig,
    *,
    refresh_token: str,
    request_id: str | None = None,
    client_ip: str | None = None,
) -> TokenPair:
    """Rotate a refresh token. A token used twice means it leaked: the whole family is
    revoked and the caller must log in again."""
    row = await session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == _digest(refresh_token))
        .with_for_update()
    )
    if row is None or row.revoked_at is not None or row.expires_at <= _now():
        raise Unauthenticated("Invalid or expired refresh token")
    user = await session.get(User, row.user_id)
    if row.used_at is not None:
        await _revoke_family(session, row.family_id)
        if user is not None:
            actor = _user_actor(user, request_id, client_ip)
            audit.record(
                actor,
                session,
                action="refreshTokenReused",
                entity_type="User",
                entity_id=user.id,
                changes={"family_id": {"before": None, "after": str(row.family_id)}},
            )
            await credentials.revoke(
                actor,
                session,
                credentials.Kind.LOGIN,
                row.family_id,
                credentials.Reason.LOGIN_REVOKED,
            )
        raise Unauthenticated("Refresh token reused; all sessions of this login were revoked")
    if user is None or not user.is_active or user.archived_at is not None:
        raise Unauthenticated("Invalid or expired refresh token")
    row.used_at = _now()
    audit.record(
        _user_actor(user, request_id, client_ip),
        session,
        action="refreshToken",
        entity_type="User",
        entity_id=user.id,
        changes={},
    )
    return await _issue_pair(session, config, user, row.family_id)


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )


async def revoke_all_refresh_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    """End every login of a user (logout everywhere, or the account disabled)."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )


async def logout(actor: Actor, session: AsyncSession, *, refresh_token: str | None) -> None:
    """End a login: revoke the refresh token's family, or every refresh token of the user
    when none is given. WebSocket connections opened with the access tokens of that login
    (of every login, without a refresh token) close."""
    if actor.user_id is None:
        raise Unauthenticated("Only a user can log out")
    if refresh_token:
        row = await session.scalar(
            select(RefreshToken).where(
                RefreshToken.token_hash == _digest(refresh_token),
                RefreshToken.user_id == actor.user_id,
            )
        )
        if row is not None:
            await _revoke_family(session, row.family_id)
            await credentials.revoke(
                actor, session, credentials.Kind.LOGIN, row.family_id, credentials.Reason.LOGGED_OUT
            )
    else:
        await revoke_all_refresh_tokens(session, actor.user_id)
        await credentials.revoke(
            actor, session, credentials.Kind.USER, actor.user_id, credentials.Reason.LOGGED_OUT
        )
    audit.record(
        actor, session, action="logout", entity_type="User", entity_id=actor.user_id, changes={}
    )


@dataclass(frozen=True)
class AccessToken:
    """What a verified access token says: its actor (without request fields), when it
    expires (Unix time) and the login it belongs to (None for tokens without one)."""

    actor: Actor
    expires_at: float
    login_id: uuid.UUID | None


# Verified access tokens: (secret, token) -> AccessToken. A client sends the same token
# for up to its 15 minutes; verifying its signature and claims again on every request is
# a good part of a small read's CPU. Expiry is still checked.
_VERIFIED: dict[tuple[str, str], AccessToken] = {}
_VERIFIED_MAX = 10_000


def verify_access_token(config: TokenConfig, token: str) -> AccessToken:
    """Verify a bearer JWT by its signature and claims alone (no database round trip:
    access tokens are short-lived). ``Unauthenticated`` when it does not hold."""
    key = (config.secret_key, token)
    cached = _VERIFIED.get(key)
    if cached is not None:
        if time.time() < cached.expires_at:
            return cached
        del _VERIFIED[key]
    try:
        claims = jwt.decode(token, config.secret_key, algorithms=[JWT_ALGORITHM])
        if claims.get("typ") != "access":
            raise jwt.InvalidTokenError("not an access token")
        actor = Actor(
            workspace_id=uuid.UUID(claims["ws"]),
            role=Role(claims["role"]),
            user_id=uuid.UUID(claims["sub"]),
        )
        login_id = uuid.UUID(claims["sid"]) if "sid" in claims else None
        expires_at = float(claims["exp"])
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("Access token expired; use refreshToken") from exc
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
        raise Unauthenticated("Invalid access token") from exc
    verified = AccessToken(actor, expires_at, login_id)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[key] = verified
    return verified


def actor_from_access_token(
    config: TokenConfig, token: str, *, request_id: str | None = None, client_ip: str | None = None
) -> Actor:
    """The actor a bearer JWT stands for (``verify_access_token``)."""
    actor = verify_access_token(config, token).actor
    return dataclasses.replace(actor, request_id=request_id, client_ip=client_ip)


async def create_workspace(session: AsyncSession, *, name: str) -> Workspace:
    """Create a tenant (CLI and tests; no actor owns a server-wide operation)."""
    workspace = Workspace(name=fields.required_text(name, "name", max_length=200))
    session.add(workspace)
    await session.flush()
    return workspace


async def create_user(
    session: AsyncSession,
    *,
    workspace: Workspace,
    email: str,
    password: str,
    role: Role,
    name: str | None = None,
) -> User:
    """Create a login in a workspace (CLI, seed data and admins)."""
    user = User(
        workspace_id=workspace.id,
        email=email.strip().lower(),
        name=name or email.split("@")[0],
        password_hash=hash_password(password),
        role=role,
    )
    session.add(user)
    await session.flush()
    return user
