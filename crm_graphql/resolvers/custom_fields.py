"""Custom field definitions: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    update_payload,
)
from crm_graphql.services import custom_fields as service

NAME = "custom_field_definition"
TYPE = "CustomFieldDefinition"


async def definitions(
    info: Any, entity: str, include_archived: bool
) -> list[models.CustomFieldDefinition]:
    context = info.context
    actor = context.require_actor()
    async with context.read() as session:
        return await service.list_definitions(
            actor, session, models.CustomFieldEntity(entity), include_archived=include_archived
        )


def _changes(input: Any) -> dict[str, Any]:
    changes = input_changes(input)
    for key in ("entity", "type"):
        if changes.get(key) is not None:
            changes[key] = changes[key].value
    return changes


async def create_definition(info: Any, input: Any) -> Payload:
    return await create_payload(info, NAME, service.create_definition, input, _changes)


async def update_definition(info: Any, input: Any) -> Payload:
    return await update_payload(info, NAME, TYPE, service.update_definition, input, _changes)


async def archive_definition(info: Any, input: Any) -> Payload:
    return await archive_payload(info, NAME, TYPE, service.archive_definition, input)
