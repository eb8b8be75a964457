"""Who is acting, and the one place where tenant scoping and permissions are enforced."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, declared_attr

from crm_graphql.models import Role
from crm_graphql.services.policy import authorize_read


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller: a user, or a partner API key, inside one workspace."""

    workspace_id: uuid.UUID
    role: Role
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None
    client_ip: str | None = None
    # An API key's own budgets (``api_keys.set_api_key_budget``); None: the server's.
    rate_limit_per_minute: int | None = None
    max_query_cost: int | None = None


class Tenanted(Protocol):
    """A model of a workspace's rows: its ``workspace_id`` column scopes every read."""

    # Declared as the models declare it (``WorkspaceScoped``): on the class, the column.
    @declared_attr
    def workspace_id(cls) -> Mapped[uuid.UUID]: ...


M = TypeVar("M", bound=Tenanted)


def scoped(model: type[M], actor: Actor) -> Select[M]:
    """``SELECT model`` limited to the actor's workspace, after checking that the actor
    may read that model at all (``policy``): every read starts here."""
    authorize_read(actor, model)
    return in_workspace(model, actor)


def in_workspace(model: type[M], actor: Actor) -> Select[M]:
    """``SELECT model`` limited to the actor's workspace *without* the read check: only for
    rows an input refers to (a conversation's customer), which the caller may use by
    holding the write permission of the referring entity; never to return data."""
    return select(model).where(model.workspace_id == actor.workspace_id)


def workspace_condition(model: Any) -> Any:
    """The tenant predicate with the workspace as the parameter ``workspace``: for a
    statement built once and run for any actor with ``{"workspace": actor.workspace_id}``
    (the caller checks reading first, as ``scoped`` does: ``authorize_read``)."""
    return model.workspace_id == bindparam("workspace", type_=UUID(as_uuid=True))


def scope_condition(model: Any, actor: Actor) -> Any:
    """The tenant predicate alone (after the same read check as ``scoped``), for
    statements that are not a plain ``scoped`` select. ``model`` may be an alias
    (``aliased(Customer)``): it is checked as its class."""
    found = sa_inspect(model, raiseerr=False)
    authorize_read(actor, getattr(found, "class_", model))
    return model.workspace_id == actor.workspace_id
