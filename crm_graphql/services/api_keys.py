"""Partner API keys: scoped, revocable credentials of one workspace.

A token reads ``crm_<prefix>_<secret>``. The prefix (10 letters and digits, never ``_``)
finds the key; only a SHA-256 of the 32-byte random secret is stored. A fast hash is right
here: the secret has 256 bits of entropy, so there is nothing to brute-force, and a slow
hash would cost every API request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import ApiKey, Role
from crm_graphql.services import credentials, fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid, Unauthenticated
from crm_graphql.services.policy import (  # noqa: F401  (re-exported: the scopes of a key)
    CONVERSATIONS_READ,
    CONVERSATIONS_WRITE,
    CUSTOMERS_READ,
    CUSTOMERS_WRITE,
    DEALS_READ,
    DEALS_WRITE,
    SCOPES,
    WEBHOOKS_MANAGE,
    Action,
    authorize,
)
from crm_graphql.storage import querying, records

TOKEN_PREFIX = "crm_"
PREFIX_LENGTH = 10
_PREFIX_ALPHABET = string.ascii_letters + string.digits
# `last_used_at` is a hint for admins ("unused for 90 days"), not an access log: writing
# it at most once a minute keeps a busy integration from costing a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


API_KEYS = querying.ListSpec(
    model=ApiKey,
    filter_fields={
        "id": ApiKey.id,
        "name": ApiKey.name,
        "prefix": ApiKey.prefix,
        "created_at": ApiKey.created_at,
        "last_used_at": ApiKey.last_used_at,
        "revoked_at": ApiKey.revoked_at,
    },
    order_fields={
        "name": ApiKey.name,
        "created_at": ApiKey.created_at,
        "last_used_at": ApiKey.last_used_at,
    },
    default_order=[("created_at", True)],
    archivable=False,
)


def is_api_key_token(token: str) -> bool:
    """Whether a bearer token is an API key (else it is taken for an access token)."""
    return token.startswith(TOKEN_PREFIX)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(token: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed token, else None."""
    if not is_api_key_token(token):
        return None
    prefix, separator, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if (
        not separator
        or not secret
        or len(prefix) != PREFIX_LENGTH
        or any(c not in _PREFIX_ALPHABET for c in prefix)
    ):
        return None
    return prefix, secret


def clean_scopes(scopes: Iterable[str] | None, field: str = "scopes") -> list[str]:
    """Known scopes, de-duplicated and sorted; at least one."""
    cleaned = sorted({scope.strip() for scope in scopes or []})
    if not cleaned:
        raise Invalid("An API key needs at least one scope", field)
    unknown = [scope for scope in cleaned if scope not in SCOPES]
    if unknown:
        raise Invalid(
            f"Unknown scopes: {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}", field
        )
    return cleaned


async def _unused_prefix(session: AsyncSession) -> str:
    while True:  # 62**10 prefixes: a collision is astronomically rare, but cheap to rule out
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
        if await session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            return prefix


async def create_api_key(
    actor: Actor,
    session: AsyncSession,
    *,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key of the actor's workspace (admins only). Returns the key and its token,
    which is shown this once: only its hash is kept."""
    authorize(actor, Action.MANAGE_API_KEYS)
    cleaned_name = fields.required_text(name, "name")
    cleaned_scopes = clean_scopes(scopes)
    if expires_at is not None:
        expires_at = fields.aware_datetime(expires_at, "expiresAt")
        if expires_at <= _now():
            raise Invalid("`expiresAt` must be in the future", "expiresAt")
    prefix = await _unused_prefix(session)
    secret = secrets.token_urlsafe(32)
    key = await records.create(
        actor,
        session,
        ApiKey(
            name=cleaned_name,
            prefix=prefix,
            secret_hash=_digest(secret),
            scopes=cleaned_scopes,
            created_by_id=actor.user_id,
            expires_at=expires_at,
        ),
        action="createApiKey",
    )
    return key, f"{TOKEN_PREFIX}{prefix}_{secret}"


async def revoke_api_key(
    actor: Actor, session: AsyncSession, api_key_id: uuid.UUID | None
) -> ApiKey:
    """Revoke a key for good (admins only); its next request is refused, and its open
    WebSocket connections close (``credentials.revoke``). Idempotent."""
    authorize(actor, Action.MANAGE_API_KEYS)
    key = await records.get(actor, session, ApiKey, api_key_id, for_update=True)
    if key.revoked_at is None:
        await records.update(actor, session, key, {"revoked_at": _now()}, action="revokeApiKey")
        await credentials.revoke(
            actor, session, credentials.Kind.API_KEY, key.id, credentials.Reason.API_KEY_REVOKED
        )
    return key


def _budget(value: int | None, ceiling: int, field: str, what: str) -> int | None:
    """A budget of a key: None (the server's default), or 1 to ``ceiling`` (the server's
    own limit; 0 when the server sets none)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid(f"`{field}` must be a positive whole number (or null)", field)
    if ceiling and value > ceiling:
        raise Invalid(
            f"`{field}` may be at most the server's {what}, {ceiling}: a key's budget can "
            "only be tighter than the server's",
            field,
        )
    return value


async def set_api_key_budget(
    actor: Actor,
    session: AsyncSession,
    api_key_id: uuid.UUID | None,
    *,
    rate_limit_per_minute: int | None,
    max_query_cost: int | None,
    server_rate_limit_per_minute: int,
    server_max_query_cost: int,
) -> ApiKey:
    """Set a key's budgets (admins only): operations a minute and the largest cost of one
    operation, each at most the server's (``server_*``; 0: no ceiling); None gives the
    key the server's default again. Audited; the next request of the key is held to it."""
    authorize(actor, Action.MANAGE_API_KEYS)
    changes = {
        "rate_limit_per_minute": _budget(
            rate_limit_per_minute,
            server_rate_limit_per_minute,
            "rateLimitPerMinute",
            "rate limit for API keys",
        ),
        "max_query_cost": _budget(
            max_query_cost, server_max_query_cost, "maxQueryCost", "largest query cost"
        ),
    }
    key = await records.get(actor, session, ApiKey, api_key_id, for_update=True)
    return await records.update(actor, session, key, changes, action="setApiKeyBudget")


async def authenticate_api_key(
    session: AsyncSession,
    token: str,
    *,
    request_id: str | None = None,
    client_ip: str | None = None,
) -> Actor:
    """The actor an API key token stands for: the agent role limited by the key's scopes.
    ``Unauthenticated`` for a malformed, unknown, revoked or expired key. The caller
    commits (``last_used_at`` is refreshed at most once a minute)."""
    parsed = _parse(token)
    if parsed is None:
        raise Unauthenticated("Invalid API key")
    prefix, secret = parsed
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not hmac.compare_digest(key.secret_hash, _digest(secret)):
        raise Unauthenticated("Invalid API key")
    now = _now()
    # Only the holder of the real secret learns why a key stopped working.
    if key.revoked_at is not None:
        raise Unauthenticated("API key revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthenticated("API key expired")
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        stale = now - LAST_USED_RESOLUTION
        await session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= stale),
            )
            # Use is not a change of the key: `updated_at` stays.
            .values(last_used_at=now, updated_at=ApiKey.updated_at)
            .execution_options(synchronize_session=False)
        )
    return Actor(
        workspace_id=key.workspace_id,
        role=Role.AGENT,
        api_key_id=key.id,
        scopes=frozenset(key.scopes),
        request_id=request_id,
        client_ip=client_ip,
        rate_limit_per_minute=key.rate_limit_per_minute,
        max_query_cost=key.max_query_cost,
    )
