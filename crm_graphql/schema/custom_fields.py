"""Typed custom fields in GraphQL: definitions, their query and mutations."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from crm_graphql.resolvers import custom_fields as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.relay import Node, UserError


@strawberry.enum(description="The records that carry custom fields.")
class CustomFieldEntity(enum.Enum):
    CUSTOMER = strawberry.enum_value("customer", description="Custom fields of customers.")
    COMPANY = strawberry.enum_value("company", description="Custom fields of companies.")
    DEAL = strawberry.enum_value("deal", description="Custom fields of deals.")


@strawberry.enum(description="The type of a custom field's values.")
class CustomFieldType(enum.Enum):
    TEXT = strawberry.enum_value("text", description="Any text.")
    NUMBER = strawberry.enum_value("number", description="A number (JSON number).")
    DATE = strawberry.enum_value("date", description="A calendar date, `YYYY-MM-DD`.")
    BOOLEAN = strawberry.enum_value("boolean", description="True or false.")
    SINGLE_SELECT = strawberry.enum_value(
        "single_select", description="One of the field's `options`."
    )
    MULTI_SELECT = strawberry.enum_value(
        "multi_select", description="A list of the field's `options`, each at most once."
    )


@strawberry.type(
    description="A typed field of customers, companies or deals: values under `key` in "
    "their `customFields` are validated on every write and can be filtered and sorted."
)
class CustomFieldDefinition(Node):
    is_type_of = rows_of("CustomFieldDefinition")

    entity: CustomFieldEntity = strawberry.field(description="What records carry it.")
    key: str = strawberry.field(description="Stable API name: the key in `customFields`.")
    label: str = strawberry.field(description="What forms show.")
    type: CustomFieldType = strawberry.field(description="The type of its values.")
    options: list[str] = strawberry.field(description="The choices of a select field.")
    required: bool = strawberry.field(description="Every create and write must give a value.")
    searchable: bool = strawberry.field(description="Its values are found by search.")
    exportable: bool = strawberry.field(description="Its values are included in exports.")
    archived_at: datetime | None = strawberry.field(
        description="Set when archived: the field no longer validates, filters or sorts."
    )
    created_at: datetime = strawberry.field(description="When it was defined.")
    updated_at: datetime = strawberry.field(description="Last change.")
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")


@strawberry.input(description="A new custom field.")
class CreateCustomFieldDefinitionInput:
    entity: CustomFieldEntity
    key: str = strawberry.field(
        description="1-64 letters, digits or _, starting with a lower-case letter."
    )
    label: str
    type: CustomFieldType
    options: list[str] | None = strawberry.field(
        default=None, description="The choices of a select field (required for selects)."
    )
    required: bool = False
    searchable: bool = False
    exportable: bool = True


@strawberry.input(description="One option renamed: stored values follow.")
class CustomFieldOptionRename:
    from_: str = strawberry.field(name="from", description="The option's current name.")
    to: str = strawberry.field(description="Its new name; stored values are renamed with it.")


@strawberry.input(description="Changes to a custom field; fields left out stay as they are.")
class UpdateCustomFieldDefinitionInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the definition's version differs."
    )
    label: str | None = strawberry.UNSET
    type: CustomFieldType | None = strawberry.field(
        default=strawberry.UNSET,
        description="Only while no record holds a value of the field.",
    )
    add_options: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Options to add to a select field (existing ones stay).",
    )
    rename_options: list[CustomFieldOptionRename] | None = strawberry.field(
        default=strawberry.UNSET, description="Options to rename; values already stored follow."
    )
    required: bool | None = strawberry.UNSET
    searchable: bool | None = strawberry.UNSET
    exportable: bool | None = strawberry.UNSET


@strawberry.input(description="A custom field, by ID.")
class ArchiveCustomFieldDefinitionInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the definition's version differs."
    )


@strawberry.type(description="Result of a custom field mutation.")
class CustomFieldDefinitionPayload:
    custom_field_definition: CustomFieldDefinition | None = strawberry.field(
        description="The definition after the change."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type
class CustomFieldQuery:
    custom_field_definitions = strawberry.field(
        resolver=resolve.definitions,
        graphql_type=list[CustomFieldDefinition],
        description="The custom fields of customers, companies or deals.",
    )


@strawberry.type
class CustomFieldMutation:
    create_custom_field_definition = strawberry.mutation(
        resolver=resolve.create_definition,
        graphql_type=CustomFieldDefinitionPayload,
        description="Define a custom field (admins and managers).",
    )

    update_custom_field_definition = strawberry.mutation(
        resolver=resolve.update_definition,
        graphql_type=CustomFieldDefinitionPayload,
        description="Change a custom field's label, flags or options (admins and managers).",
    )

    archive_custom_field_definition = strawberry.mutation(
        resolver=resolve.archive_definition,
        graphql_type=CustomFieldDefinitionPayload,
        description="Retire a custom field; stored values stay (admins and managers).",
    )
