"""API keys and the audit log: GraphQL arguments to service calls."""

import enum
import functools
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from sqlalchemy import Enum as SqlEnum

from crm_graphql import models
from crm_graphql.enums import ApiKeyScope
from crm_graphql.global_ids import decode_id, to_global_id
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import Payload, mutate, mutate_payload, user_errors
from crm_graphql.resolvers.nodes import NODE_MODELS
from crm_graphql.services import api_keys, audit
from crm_graphql.storage import querying

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.security import (
        ApiKeyFilter,
        ApiKeyOrder,
        AuditLogFilter,
        AuditLogOrder,
        CreateApiKeyInput,
        RevokeApiKeyInput,
        SetApiKeyBudgetInput,
    )

_security = "crm_graphql.schema.security"


async def api_keys_list(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["ApiKeyFilter", strawberry.lazy(_security)] | None = None,
    order_by: list[Annotated["ApiKeyOrder", strawberry.lazy(_security)]] | None = None,
) -> ConnectionValue:
    return await root_list(info, api_keys.API_KEYS, first, after, last, before, filter, order_by)


async def audit_log(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["AuditLogFilter", strawberry.lazy(_security)] | None = None,
    order_by: list[Annotated["AuditLogOrder", strawberry.lazy(_security)]] | None = None,
) -> ConnectionValue:
    return await root_list(info, audit.AUDIT_LOG, first, after, last, before, filter, order_by)


def api_key_scopes(root: models.ApiKey) -> list[ApiKeyScope]:
    return [ApiKeyScope(scope) for scope in root.scopes]


async def entry_actor(root: models.AuditLog, info: Info) -> models.User | None:
    return await by_id(info, models.User, root.actor_user_id)


async def entry_api_key(root: models.AuditLog, info: Info) -> models.ApiKey | None:
    return await by_id(info, models.ApiKey, root.actor_api_key_id)


def entry_client_ip(root: models.AuditLog) -> str | None:
    return None if root.client_ip is None else str(root.client_ip)


def entity_global_id(root: models.AuditLog) -> strawberry.ID | None:
    if root.entity_id is None:
        return None
    return strawberry.ID(to_global_id(root.entity_type, root.entity_id))


@functools.cache
def _node_of_table() -> dict[str, str]:
    """Node type name of each table whose rows are nodes (a foreign key's target)."""
    return {model.__table__.name: name for name, model in NODE_MODELS.items()}


@functools.cache
def value_translators(entity_type: str) -> dict[str, Any]:
    """How each stored column of ``entity_type`` reads in the API: a foreign key to a
    node as that node's global ID, an enum as the schema spells its value. Derived from
    the model, so a new column needs nothing here."""
    model = NODE_MODELS.get(entity_type)
    if model is None:
        return {}
    translators: dict[str, Any] = {}
    for column in model.__table__.columns:
        targets = [_node_of_table().get(fk.column.table.name) for fk in column.foreign_keys]
        node = next((t for t in targets if t is not None), None)
        enum_class = getattr(column.type, "enum_class", None)
        if node is not None:
            translators[column.key] = functools.partial(reference_id, node)
        elif isinstance(column.type, SqlEnum) and enum_class is not None:
            translators[column.key] = functools.partial(enum_name, enum_class)
    return translators


def reference_id(node: str, value: Any) -> Any:
    """A stored reference to a ``node`` as its global ID (as stored when no UUID)."""
    try:
        return to_global_id(node, uuid.UUID(str(value)))
    except ValueError:  # not a UUID (a redacted value): as stored
        return value


def enum_name(enum_class: type[enum.Enum], value: Any) -> Any:
    """A stored enum value by the schema's name of it (as stored when unknown)."""
    try:
        return enum_class(value).name
    except ValueError:
        return value


def entry_changes(root: models.AuditLog) -> dict[str, Any]:
    """An audit entry's ``changes`` in the API's language: the API's camelCase names,
    references to other objects as their global IDs, enum values as the schema spells
    them. The stored entry is unchanged (append-only); it is read this way, old or new."""
    translators = value_translators(root.entity_type)
    changed: dict[str, Any] = {}
    for key, change in (root.changes or {}).items():
        translate = translators.get(key)
        if translate is not None and isinstance(change, dict):
            change = {k: None if v is None else translate(v) for k, v in change.items()}
        changed[querying.camel_case(key)] = change
    return changed


async def entity(root: models.AuditLog, info: Info) -> Any:
    model = NODE_MODELS.get(root.entity_type)
    if model is None or root.entity_id is None:
        return None
    return await by_id(info, model, root.entity_id)


class CreatedKey:
    """What ``CreateApiKeyPayload`` reads."""

    def __init__(self, key: models.ApiKey | None, token: str | None, errors: list[Any]) -> None:
        self.api_key = key
        self.token = token
        self.errors = errors


async def create_api_key(
    info: Info, input: Annotated["CreateApiKeyInput", strawberry.lazy(_security)]
) -> CreatedKey:
    outcome = await mutate(
        info,
        lambda actor, s: api_keys.create_api_key(
            actor,
            s,
            name=input.name,
            scopes=[scope.value for scope in input.scopes],
            expires_at=input.expires_at,
        ),
    )
    key, token = outcome.value if outcome.value is not None else (None, None)
    return CreatedKey(key, token, user_errors(outcome.errors))


async def revoke_api_key(
    info: Info, input: Annotated["RevokeApiKeyInput", strawberry.lazy(_security)]
) -> Payload:
    id = decode_id(input.id, "ApiKey")
    return await mutate_payload(
        info, "api_key", lambda actor, s: api_keys.revoke_api_key(actor, s, id)
    )


async def set_api_key_budget(
    info: Info, input: Annotated["SetApiKeyBudgetInput", strawberry.lazy(_security)]
) -> Payload:
    id = decode_id(input.id, "ApiKey")
    settings = info.context.app.settings
    return await mutate_payload(
        info,
        "api_key",
        lambda actor, s: api_keys.set_api_key_budget(
            actor,
            s,
            id,
            rate_limit_per_minute=input.rate_limit_per_minute,
            max_query_cost=input.max_query_cost,
            server_rate_limit_per_minute=settings.rate_limit_api_key_per_minute,
            server_max_query_cost=settings.max_query_cost,
        ),
    )
