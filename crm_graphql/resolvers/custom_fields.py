"""Custom field definitions: arguments to service calls."""

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    update_payload,
)
from crm_graphql.services import custom_fields as service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.custom_fields import (
        ArchiveCustomFieldDefinitionInput,
        CreateCustomFieldDefinitionInput,
        CustomFieldEntity,
        UpdateCustomFieldDefinitionInput,
    )

_custom_fields = "crm_graphql.schema.custom_fields"


NAME = "custom_field_definition"
TYPE = "CustomFieldDefinition"


async def definitions(
    info: Info,
    entity: Annotated[
        "CustomFieldEntity",
        strawberry.lazy(_custom_fields),
        strawberry.argument(description="Whose custom fields to list."),
    ],
    include_archived: bool = False,
) -> list[models.CustomFieldDefinition]:
    context = info.context
    actor = context.require_actor()
    async with context.read() as session:
        return await service.list_definitions(
            actor,
            session,
            models.CustomFieldEntity[entity.name],
            include_archived=include_archived,
        )


def _changes(input: Any) -> dict[str, Any]:
    changes = input_changes(input)
    for key in ("entity", "type"):
        if changes.get(key) is not None:
            changes[key] = changes[key].value
    return changes


async def create_definition(
    info: Info,
    input: Annotated["CreateCustomFieldDefinitionInput", strawberry.lazy(_custom_fields)],
) -> Payload:
    return await create_payload(info, NAME, service.create_definition, input, _changes)


async def update_definition(
    info: Info,
    input: Annotated["UpdateCustomFieldDefinitionInput", strawberry.lazy(_custom_fields)],
) -> Payload:
    return await update_payload(info, NAME, TYPE, service.update_definition, input, _changes)


async def archive_definition(
    info: Info,
    input: Annotated["ArchiveCustomFieldDefinitionInput", strawberry.lazy(_custom_fields)],
) -> Payload:
    return await archive_payload(info, NAME, TYPE, service.archive_definition, input)
