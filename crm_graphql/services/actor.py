"""Who is acting, and the one place where tenant scoping and permissions are enforced."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select, select

from crm_graphql.models import Role
from crm_graphql.services.errors import Forbidden, Unauthenticated


class Permission(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    MANAGE_PIPELINES = "manage_pipelines"
    MANAGE_USERS = "manage_users"


# Which role may do what. Finer rules (per-mutation matrix, API-key scopes) build on this.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.MANAGER: frozenset({Permission.READ, Permission.WRITE, Permission.MANAGE_PIPELINES}),
    Role.AGENT: frozenset({Permission.READ, Permission.WRITE}),
    Role.VIEWER: frozenset({Permission.READ}),
}


@dataclass(frozen=True)
class Actor:
    """The authenticated caller: a user, or a partner API key, inside one workspace."""

    workspace_id: uuid.UUID
    role: Role
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None
    client_ip: str | None = None

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


def require(actor: Actor | None, permission: Permission) -> Actor:
    """Return the actor if it holds ``permission``; raise ``Unauthenticated``/``Forbidden``."""
    if actor is None:
        raise Unauthenticated()
    if not actor.can(permission):
        raise Forbidden(f"The {actor.role.value} role cannot {permission.value.replace('_', ' ')}")
    return actor


M = TypeVar("M")


def scoped(model: type[M], actor: Actor) -> Select[M]:
    """``SELECT model`` limited to the actor's workspace: every read starts here."""
    return select(model).where(model.workspace_id == actor.workspace_id)  # type: ignore[attr-defined]


def scope_condition(model: Any, actor: Actor) -> Any:
    """The tenant predicate alone, for statements that are not a plain ``scoped`` select."""
    return model.workspace_id == actor.workspace_id
