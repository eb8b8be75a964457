"""API keys and the audit log: GraphQL arguments to service calls."""

from __future__ import annotations

import uuid
from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.ids import decode_id, to_global_id
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import Payload, mutate, mutate_payload, user_errors
from crm_graphql.resolvers.nodes import NODE_MODELS
from crm_graphql.services import api_keys, audit


async def api_keys_list(info: Info, *args: Any) -> ConnectionValue:
    return await root_list(info, api_keys.API_KEYS, *args)


async def audit_log(info: Info, *args: Any) -> ConnectionValue:
    return await root_list(info, audit.AUDIT_LOG, *args)


async def user(info: Info, id: uuid.UUID | None) -> models.User | None:
    return await by_id(info, models.User, id)


async def api_key(info: Info, id: uuid.UUID | None) -> models.ApiKey | None:
    return await by_id(info, models.ApiKey, id)


def entity_global_id(entry: models.AuditLog) -> str | None:
    if entry.entity_id is None:
        return None
    return to_global_id(entry.entity_type, entry.entity_id)


async def entity(info: Info, entry: models.AuditLog) -> Any:
    model = NODE_MODELS.get(entry.entity_type)
    if model is None or entry.entity_id is None:
        return None
    return await by_id(info, model, entry.entity_id)


class CreatedKey:
    """What ``CreateApiKeyPayload`` reads."""

    def __init__(self, key: models.ApiKey | None, token: str | None, errors: list[Any]) -> None:
        self.api_key = key
        self.token = token
        self.errors = errors


async def create_api_key(info: Info, input: Any) -> CreatedKey:
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


async def revoke_api_key(info: Info, input: Any) -> Payload:
    id = decode_id(input.id, "ApiKey")
    return await mutate_payload(
        info, "api_key", lambda actor, s: api_keys.revoke_api_key(actor, s, id)
    )
