"""``changes``: arguments to the change feed, its columns to this API's field names."""

from dataclasses import dataclass
from typing import Annotated, Any

import strawberry

from crm_graphql.enums import ChangeKind, SyncedType
from crm_graphql.global_ids import to_global_id
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.readmodel import OBJECT_TYPES
from crm_graphql.services import sync as sync_service
from crm_graphql.services.errors import Invalid
from crm_graphql.services.sync import Change

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's enum (the domain's SyncedType,
# exposed by schema.scalars) by lazy reference.
_scalars = "crm_graphql.schema.scalars"

# Columns a field of another name shows (sensitive custom fields, encrypted; the
# conversation's rating, an object).
_STORED_AS = {
    "custom_fields_encrypted": "custom_fields",
    "rating_score": "rating",
    "rating_comment": "rating",
    "rated_at": "rating",
}
_FIELD_NAMES: dict[str, dict[str, str]] = {}


def field_names(schema: Any, type_name: str) -> dict[str, str]:
    """Column -> the name of the field of ``type_name`` that shows it: a field of the
    same Python name (plain or resolved), else the relation the catalog reads through
    that foreign key. Columns no field shows (bookkeeping) are absent."""
    found = _FIELD_NAMES.get(type_name)
    if found is None:
        definition = schema.get_type_by_name(type_name)
        convert = schema.config.name_converter.get_graphql_name
        found = {f.python_name: convert(f) for f in definition.fields if f.python_name != "id"}
        for name, relation in OBJECT_TYPES[type_name].relations.items():
            found.setdefault(relation.foreign_key, name)
        for column, shown in _STORED_AS.items():
            if shown in found:
                found[column] = found[shown]
        _FIELD_NAMES[type_name] = found
    return found


@dataclass
class ChangeValue:
    """What the ``Change`` type reads."""

    change: Change
    fields: list[str]

    @property
    def cursor(self) -> str:
        return self.change.cursor

    @property
    def node_id(self) -> str:
        return to_global_id(self.change.type.value, self.change.entity_id)

    @property
    def type(self) -> SyncedType:
        return self.change.type

    @property
    def kind(self) -> ChangeKind:
        return self.change.kind

    @property
    def at(self) -> Any:
        return self.change.at


@dataclass
class ChangePageValue:
    changes: list[ChangeValue]
    cursor: str
    has_more: bool


async def changes(
    info: Info,
    after: Annotated[
        str | None,
        strawberry.argument(
            description="The `cursor` of the previous page; omitted: from the start of the feed."
        ),
    ] = None,
    types: Annotated[
        list[Annotated["SyncedType", strawberry.lazy(_scalars)]] | None,
        strawberry.argument(
            description="Only changes of these types (each needs its read permission); "
            "omitted: every type the caller may read."
        ),
    ] = None,
    first: Annotated[
        int | None,
        strawberry.argument(description="How many changes at most (the page size limit)."),
    ] = None,
) -> ChangePageValue:
    context = info.context
    actor = context.require_actor()
    most = context.app.settings.max_page_size
    size = most if first is None else first
    if not 0 <= size <= most:
        raise Invalid(f"`first` must be between 0 and {most}", "first")
    # The primary, always: the horizon is its running transactions (a replica's would
    # let a late commit slip behind a cursor already handed out).
    async with context.primary_read() as session:
        page = await sync_service.read_changes(actor, session, after=after, types=types, first=size)
    values = []
    for change in page.changes:
        names = field_names(info.schema, change.type.value)
        shown = dict.fromkeys(names[c] for c in change.columns if c in names)
        values.append(ChangeValue(change, list(shown)))
    return ChangePageValue(values, page.cursor, page.has_more)


async def node(root: ChangeValue, info: Info) -> Any:
    """The changed object as it is now, through the request's loaders (null when not
    visible)."""
    model = sync_service.MODELS[root.change.type]
    return await info.context.loaders.by_id(model).load(root.change.entity_id)
