"""Credentials that end, and what a live connection stands on.

An HTTP request presents its credentials every time; a WebSocket presents them once, in
``connection_init``, and may stay open for hours. So a connection keeps a ``Grant``: the
identities its credentials stand on, when they expire, and the workspace's credentials
counter as its check saw it. Every change that ends credentials calls ``revoke`` in the
change's own transaction: it moves the workspace's counter by one (an upsert of
``workspace_credentials``: the row lock orders the moves as their transactions commit,
with no gaps) and records what ended (``credential_revocations``).

The real-time hub reads the counter in the same statement, hence the same snapshot, as
the events it delivers (``COUNTER_SQL`` in ``events.read_events``). An event committed
after a revocation can only be read in a snapshot that also holds the revocation, so the
hub sees the counter move with (or before) the first such event and ends the
connections concerned before it sends anything of that read. A Redis notice on
``crm:<workspace>:credentials`` (and a poll) makes idle connections close promptly too.

Identities: an API key is ``(API_KEY, key id)``; an access token is ``(USER, user id)``
and, when it names its login (claim ``sid``), ``(LOGIN, refresh-token family id)``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, false, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import (
    ApiKey,
    CredentialRevocation,
    RefreshToken,
    Role,
    User,
    WorkspaceCredentials,
)
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from crm_graphql.services.auth import AccessToken
    from crm_graphql.services.events import LogReader

TOPIC = "credentials"  # Redis channel crm:<workspace>:credentials: "the counter moved"
KEPT = timedelta(days=1)  # revocations are read seconds after they commit; older go


class Kind(enum.StrEnum):
    API_KEY = "api_key"
    USER = "user"  # every login of the user
    LOGIN = "login"  # one login: a refresh-token family


Identity = tuple[Kind, uuid.UUID]


class Reason(enum.StrEnum):
    """Why credentials ended. A connection is told (its close reason), and whether a
    fresh access token would be accepted (``renewable``)."""

    TOKEN_EXPIRED = "token_expired"
    ROLE_CHANGED = "role_changed"
    API_KEY_REVOKED = "api_key_revoked"
    API_KEY_EXPIRED = "api_key_expired"
    USER_DISABLED = "user_disabled"
    LOGGED_OUT = "logged_out"
    LOGIN_REVOKED = "login_revoked"  # a refresh token was replayed

    @property
    def renewable(self) -> bool:
        """A fresh access token (``refreshToken``) connects again."""
        return self in (Reason.TOKEN_EXPIRED, Reason.ROLE_CHANGED)

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Reason.TOKEN_EXPIRED: "access token expired: reconnect with a fresh token",
    Reason.ROLE_CHANGED: "role changed: reconnect with a fresh token",
    Reason.API_KEY_REVOKED: "API key revoked",
    Reason.API_KEY_EXPIRED: "API key expired",
    Reason.USER_DISABLED: "user disabled",
    Reason.LOGGED_OUT: "logged out",
    Reason.LOGIN_REVOKED: "login revoked",
}


@dataclass(frozen=True, slots=True)
class Grant:
    """What a live connection's credentials stand on, as checked at counter ``seq``:
    revocations up to ``seq`` were seen by the check, later ones apply to it."""

    workspace_id: uuid.UUID
    identities: frozenset[Identity]
    seq: int
    expires_at: float | None  # Unix time
    expiry: Reason  # why it ends at ``expires_at``


@dataclass(frozen=True)
class Revocation:
    seq: int
    identity: Identity
    reason: Reason

    def ends(self, grant: Grant) -> bool:
        """Whether this revocation ends a connection holding ``grant``."""
        return self.seq > grant.seq and self.identity in grant.identities


# ------------------------------------------------------------------------- writing


async def revoke(
    actor: Actor, session: AsyncSession, kind: Kind, subject_id: uuid.UUID, reason: Reason
) -> None:
    """Record, in the caller's transaction, that credentials of ``(kind, subject_id)``
    ended: the workspace's counter moves by one and every live connection holding them
    closes, in every server process, before it is sent any event committed afterwards."""
    from crm_graphql.services.events import announce

    workspace_id = actor.workspace_id
    seq = await session.scalar(
        pg_insert(WorkspaceCredentials)
        .values(workspace_id=workspace_id, seq=1)
        .on_conflict_do_update(
            index_elements=[WorkspaceCredentials.workspace_id],
            set_={"seq": WorkspaceCredentials.seq + 1},
        )
        .returning(WorkspaceCredentials.seq)
    )
    await session.execute(
        insert(CredentialRevocation).values(
            workspace_id=workspace_id,
            seq=seq,
            kind=kind.value,
            subject_id=subject_id,
            reason=reason.value,
        )
    )
    await session.execute(
        delete(CredentialRevocation).where(
            CredentialRevocation.workspace_id == workspace_id,
            CredentialRevocation.created_at < datetime.now(UTC) - KEPT,
        )
    )
    announce(actor, session, TOPIC)


# ---------------------------------------------------------- checking a connection


def _counter(workspace_id: uuid.UUID) -> Any:
    return func.coalesce(
        select(WorkspaceCredentials.seq)
        .where(WorkspaceCredentials.workspace_id == workspace_id)
        .scalar_subquery(),
        0,
    )


async def api_key_grant(session: AsyncSession, actor: Actor) -> Grant:
    """The grant of a connection opened with an API key (already authenticated): the key
    checked again in one statement with the counter. ``Unauthenticated`` if it ended."""
    assert actor.api_key_id is not None
    row = (
        await session.execute(
            select(_counter(actor.workspace_id), ApiKey.revoked_at, ApiKey.expires_at).where(
                ApiKey.id == actor.api_key_id, ApiKey.workspace_id == actor.workspace_id
            )
        )
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("API key revoked")
    expires_at = row.expires_at.timestamp() if row.expires_at is not None else None
    if expires_at is not None and expires_at <= datetime.now(UTC).timestamp():
        raise Unauthenticated("API key expired")
    return Grant(
        actor.workspace_id,
        frozenset({(Kind.API_KEY, actor.api_key_id)}),
        int(row[0]),
        expires_at,
        Reason.API_KEY_EXPIRED,
    )


async def access_token_grant(session: AsyncSession, token: AccessToken) -> Grant:
    """The grant of a connection opened with an access token (signature verified): the
    user still active with the token's role, and its login not ended, checked in one
    statement with the counter. ``Unauthenticated`` otherwise."""
    actor = token.actor
    assert actor.user_id is not None
    logged_out = (
        exists().where(
            RefreshToken.family_id == token.login_id, RefreshToken.revoked_at.is_not(None)
        )
        if token.login_id is not None
        else false()
    )
    row = (
        await session.execute(
            select(
                _counter(actor.workspace_id),
                User.is_active,
                User.archived_at,
                User.role,
                logged_out.label("logged_out"),
            ).where(User.id == actor.user_id, User.workspace_id == actor.workspace_id)
        )
    ).one_or_none()
    if row is None or not row.is_active or row.archived_at is not None:
        raise Unauthenticated("User disabled")
    if row.logged_out:
        raise Unauthenticated("Logged out: log in again")
    if row.role != actor.role:
        raise Unauthenticated("Role changed: refresh your access token")
    identities: set[Identity] = {(Kind.USER, actor.user_id)}
    if token.login_id is not None:
        identities.add((Kind.LOGIN, token.login_id))
    return Grant(
        actor.workspace_id,
        frozenset(identities),
        int(row[0]),
        token.expires_at,
        Reason.TOKEN_EXPIRED,
    )


async def standing_actor(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    user_id: uuid.UUID | None,
    api_key_id: uuid.UUID | None,
    what: str,
    request_id: str | None = None,
) -> Actor:
    """The actor of whoever did ``what`` earlier (``"started the job"``, ``"made this
    link"``) as they stand now: a user still active, with their current role, or an API
    key neither revoked nor expired, with its current scopes. ``Forbidden`` otherwise: work
    done later on someone's behalf outlives none of their credentials."""
    if api_key_id is not None:
        key = await session.get(ApiKey, api_key_id)
        if key is None or key.workspace_id != workspace_id or key.revoked_at is not None:
            raise Forbidden(f"The API key that {what} was revoked")
        if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
            raise Forbidden(f"The API key that {what} has expired")
        return Actor(
            workspace_id=key.workspace_id,
            role=Role.AGENT,
            api_key_id=key.id,
            scopes=frozenset(key.scopes),
            request_id=request_id,
        )
    user = await session.get(User, user_id) if user_id is not None else None
    if (
        user is None
        or user.workspace_id != workspace_id
        or not user.is_active
        or user.archived_at is not None
    ):
        raise Forbidden(f"The user who {what} can no longer act")
    return Actor(
        workspace_id=user.workspace_id, role=user.role, user_id=user.id, request_id=request_id
    )


# ------------------------------------------------------- reading (the real-time hub)
# Plain statements on the hub's asyncpg connections, like the event log's.

# The workspace's counter as a column of another statement whose $1 is the workspace:
# read in that statement's snapshot (``events.read_events``).
COUNTER_SQL = "coalesce((SELECT seq FROM workspace_credentials WHERE workspace_id = $1), 0)"
_COUNTERS_SQL = "SELECT workspace_id, seq FROM workspace_credentials WHERE workspace_id = ANY($1)"
_SINCE_SQL = """
    SELECT seq, kind, subject_id, reason FROM credential_revocations
    WHERE workspace_id = $1 AND seq > $2 ORDER BY seq
"""


async def counters(conn: LogReader, workspace_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The counters of these workspaces (0 for a workspace that never revoked anything)."""
    ids = list(workspace_ids)
    found = {row["workspace_id"]: int(row["seq"]) for row in await conn.fetch(_COUNTERS_SQL, ids)}
    return {workspace_id: found.get(workspace_id, 0) for workspace_id in ids}


async def revocations_since(
    conn: LogReader, workspace_id: uuid.UUID, after: int
) -> list[Revocation]:
    """The workspace's revocations after counter ``after``, in order."""
    rows = await conn.fetch(_SINCE_SQL, workspace_id, after)
    return [
        Revocation(int(r["seq"]), (Kind(r["kind"]), r["subject_id"]), Reason(r["reason"]))
        for r in rows
    ]
