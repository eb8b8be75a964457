"""People who log in to a workspace: the user list, and admins managing accounts."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import Role, User
from crm_graphql.services import auth, credentials, fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Duplicate, Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying, records

USERS = querying.ListSpec(
    model=User,
    filter_fields={
        "id": User.id,
        "email": User.email,
        "name": User.name,
        "role": User.role,
        "created_at": User.created_at,
    },
    order_fields={
        "name": User.name,
        "email": User.email,
        "created_at": User.created_at,
    },
    default_order=[("name", False)],
    archivable=True,
)


MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
USER_CHANGES = ("name", "role", "is_active")


def _password(value: Any) -> str:
    if not isinstance(value, str) or not MIN_PASSWORD_LENGTH <= len(value) <= MAX_PASSWORD_LENGTH:
        raise Invalid(
            f"A password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            "password",
        )
    return value


async def create_user(actor: Actor, session: AsyncSession, data: Mapping[str, Any]) -> User:
    """Add a login to the actor's workspace (admins), with a first password the admin
    hands over; emails are unique across the server."""
    authorize(actor, Action.MANAGE_USERS)
    email = fields.email(data.get("email"))
    if email is None:
        raise Invalid("A user needs an email", "email")
    name = fields.required_text(data.get("name"), "name")
    role = fields.choice(Role, data.get("role"), "role")
    password = _password(data.get("password"))
    taken = await session.scalar(select(User.id).where(func.lower(User.email) == email))
    if taken is not None:
        raise Duplicate("A user with this email already exists", "email")
    user = User(email=email, name=name, role=role, password_hash=auth.hash_password(password))
    return await records.create(actor, session, user, action="createUser")


async def update_user(
    actor: Actor, session: AsyncSession, id: uuid.UUID | None, data: Mapping[str, Any]
) -> User:
    """Rename a user, change their role, or disable / re-enable their login (admins).
    Disabling revokes their refresh tokens at once, and disabling or a new role closes
    their WebSocket connections (an access token already issued still works over HTTP
    until it expires). The workspace always keeps an active admin, and admins cannot
    demote or disable themselves."""
    authorize(actor, Action.MANAGE_USERS)
    unknown = set(data) - set(USER_CHANGES)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    user = await records.get(actor, session, User, id, for_update=True)
    changes: dict[str, Any] = {}
    if "name" in data:
        changes["name"] = fields.required_text(data["name"], "name")
    if "role" in data:
        changes["role"] = fields.choice(Role, data["role"], "role")
    if "is_active" in data:
        if not isinstance(data["is_active"], bool):
            raise Invalid("`isActive` must be true or false", "isActive")
        changes["is_active"] = data["is_active"]
    stays_admin = changes.get("role", user.role) is Role.ADMIN and changes.get(
        "is_active", user.is_active
    )
    if user.role is Role.ADMIN and user.is_active and not stays_admin:
        if user.id == actor.user_id:
            raise Invalid("Admins cannot demote or disable themselves", "role")
        others = await session.scalar(
            select(func.count())
            .select_from(User)
            .where(
                User.workspace_id == actor.workspace_id,
                User.role == Role.ADMIN,
                User.is_active.is_(True),
                User.archived_at.is_(None),
                User.id != user.id,
            )
        )
        if not others:
            raise Invalid("The workspace needs at least one active admin", "role")
    disabled = user.is_active and changes.get("is_active") is False
    role_changed = "role" in changes and changes["role"] is not user.role
    await records.update(actor, session, user, changes, action="updateUser")
    if disabled:
        await auth.revoke_all_refresh_tokens(session, user.id)
    if disabled or role_changed:
        # Access tokens carry the role: connections opened with them close (a fresh
        # token, which refreshToken gives an enabled user, holds the new role).
        reason = credentials.Reason.USER_DISABLED if disabled else credentials.Reason.ROLE_CHANGED
        await credentials.revoke(actor, session, credentials.Kind.USER, user.id, reason)
    return user
