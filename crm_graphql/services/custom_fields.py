"""Typed custom fields: per-workspace definitions of the keys of ``custom_fields`` on
customers, companies and deals, the validation of every value written, and their filters
and sort keys as SQL (docs/decisions/0012-custom-fields.md).

Values live in the record's ``custom_fields`` JSONB as JSON: text, single select and dates
(``YYYY-MM-DD``) as strings, numbers as numbers, booleans as booleans, multi selects as
arrays of distinct options. A null (or an empty multi select) removes the key, so "is
null" is "the key is absent". Keys without a definition stay free-form while the entity
has no definition in the workspace; once it has one, they are kept as they are
(read-only: a write may keep or drop them, not add or change them).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    Integer,
    Numeric,
    Select,
    and_,
    case,
    cast,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import (
    Company,
    Customer,
    CustomFieldDefinition,
    CustomFieldEntity,
    CustomFieldType,
    Deal,
    Workspace,
)
from crm_graphql.services import fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid
from crm_graphql.services.policy import Action, allows, authorize
from crm_graphql.storage import querying, records

MODELS: dict[CustomFieldEntity, type[Any]] = {
    CustomFieldEntity.CUSTOMER: Customer,
    CustomFieldEntity.COMPANY: Company,
    CustomFieldEntity.DEAL: Deal,
}
SELECTS = (CustomFieldType.SINGLE_SELECT, CustomFieldType.MULTI_SELECT)
MAX_DEFINITIONS = 100  # per entity and workspace
MAX_OPTIONS = 200
MAX_OPTION_LENGTH = 100
MAX_TEXT_LENGTH = 5000
_KEY = re.compile(r"^[a-z][A-Za-z0-9_]{0,63}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Operators each type accepts in a filter (snake_case, as ``querying`` names them).
OPERATORS: dict[CustomFieldType, frozenset[str]] = {
    CustomFieldType.TEXT: frozenset({"eq", "in", "contains", "starts_with", "is_null"}),
    CustomFieldType.NUMBER: frozenset({"eq", "gt", "gte", "lt", "lte", "is_null"}),
    CustomFieldType.DATE: frozenset({"eq", "gt", "gte", "lt", "lte", "is_null"}),
    CustomFieldType.BOOLEAN: frozenset({"eq", "is_null"}),
    CustomFieldType.SINGLE_SELECT: frozenset({"eq", "in", "is_null"}),
    CustomFieldType.MULTI_SELECT: frozenset({"eq", "contains_all", "contains_any", "is_null"}),
}
SORTABLE = frozenset(CustomFieldType) - {CustomFieldType.MULTI_SELECT}


def field_name(key: str) -> str:
    """Where an error about one custom field points: ``customFields.<key>``."""
    return f"customFields.{key}"


# --------------------------------------------------------------------------- values


def _date(value: Any, name: str) -> date:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise Invalid(f"`{name}` must be a date as text (YYYY-MM-DD)", name)
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise Invalid(f"`{name}` must be a date as text (YYYY-MM-DD)", name)
    return fields.calendar_date(parsed, name)


def _number(value: Any, name: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"`{name}` must be a number", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid(f"`{name}` must be a finite number", name)
    fields.json_value(value, name)
    return value


def _option(definition: CustomFieldDefinition, value: Any, name: str) -> str:
    if not isinstance(value, str) or value not in definition.options:
        allowed = ", ".join(definition.options)
        raise Invalid(f"`{name}` must be one of the field's options: {allowed}", name)
    return value


def clean_value(definition: CustomFieldDefinition, value: Any) -> Any:
    """The stored form of one value of ``definition`` (None: remove the key), or
    ``Invalid`` naming ``customFields.<key>``."""
    name = field_name(definition.key)
    if value is None:
        return None
    kind = definition.type
    if kind is CustomFieldType.TEXT:
        if not isinstance(value, str):
            raise Invalid(f"`{name}` must be text", name)
        text = value.strip()
        if len(text) > MAX_TEXT_LENGTH:
            raise Invalid(f"`{name}` is longer than {MAX_TEXT_LENGTH} characters", name)
        if "\x00" in text:
            raise Invalid(f"`{name}` must not contain NUL characters", name)
        return text or None
    if kind is CustomFieldType.NUMBER:
        return _number(value, name)
    if kind is CustomFieldType.DATE:
        return _date(value, name).isoformat()
    if kind is CustomFieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise Invalid(f"`{name}` must be true or false", name)
        return value
    if kind is CustomFieldType.SINGLE_SELECT:
        return _option(definition, value, name)
    if not isinstance(value, list):
        raise Invalid(f"`{name}` must be a list of options", name)
    chosen = list(dict.fromkeys(_option(definition, v, name) for v in value))
    return chosen or None


def value_from_text(definition: CustomFieldDefinition, text: str) -> Any:
    """A value of ``definition`` written as text (a CSV cell) in the form ``clean_value``
    takes: numbers, true/false, options separated by ``;``. What cannot be read stays
    text, for ``clean_value`` to refuse with its own message."""
    kind = definition.type
    stripped = text.strip()
    if kind is CustomFieldType.NUMBER:
        try:
            return int(stripped)
        except ValueError:
            try:
                return float(stripped)
            except ValueError:
                return text
    if kind is CustomFieldType.BOOLEAN:
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
            stripped.lower(), text
        )
    if kind is CustomFieldType.MULTI_SELECT:
        return [part.strip() for part in stripped.split(";") if part.strip()]
    return text


@dataclass(frozen=True)
class Definitions:
    """The definitions of one entity in one workspace (archived ones included: their keys
    stay reserved), with the workspace's sensitive (encrypted) customer keys."""

    entity: CustomFieldEntity
    items: tuple[CustomFieldDefinition, ...]
    sensitive: frozenset[str] = frozenset()

    @property
    def active(self) -> dict[str, CustomFieldDefinition]:
        return {d.key: d for d in self.items if d.archived_at is None}

    @property
    def all_keys(self) -> frozenset[str]:
        return frozenset(d.key for d in self.items)


# Definitions are listed oldest first.
DEFINITIONS_ORDER = (CustomFieldDefinition.created_at, CustomFieldDefinition.id)


def definitions_statement(actor: Actor, entity: CustomFieldEntity) -> Select[Any]:
    """Every definition of ``entity`` in the actor's workspace, in ``DEFINITIONS_ORDER``
    (what ``definitions_of`` reads, and the compiled read path lists)."""
    return (
        select(CustomFieldDefinition)
        .where(
            CustomFieldDefinition.workspace_id == actor.workspace_id,
            CustomFieldDefinition.entity == entity,
        )
        .order_by(*DEFINITIONS_ORDER)
    )


def listed(definition: CustomFieldDefinition, include_archived: bool) -> bool:
    """Whether ``list_definitions`` lists the definition (``listed_condition`` in SQL)."""
    return include_archived or definition.archived_at is None


def listed_condition(include_archived: bool) -> ColumnElement[bool]:
    """``listed`` as SQL, for the compiled read path (the differential test holds the two
    to each other)."""
    return true() if include_archived else CustomFieldDefinition.archived_at.is_(None)


async def definitions_of(
    actor: Actor, session: AsyncSession, entity: CustomFieldEntity
) -> Definitions:
    """Every definition of ``entity`` in the actor's workspace (one statement) and, for
    customers with definitions, the workspace's sensitive keys (a second one)."""
    rows = await session.scalars(definitions_statement(actor, entity))
    items = tuple(rows.all())
    sensitive: frozenset[str] = frozenset()
    if entity is CustomFieldEntity.CUSTOMER and items:
        keys = await session.scalar(
            select(Workspace.sensitive_custom_fields).where(Workspace.id == actor.workspace_id)
        )
        sensitive = frozenset(keys or ())
    return Definitions(entity, items, sensitive)


def _entity_label(entity: CustomFieldEntity) -> str:
    return {"customer": "customers", "company": "companies", "deal": "deals"}[entity.value]


async def clean_custom_fields(
    actor: Actor,
    session: AsyncSession,
    entity: CustomFieldEntity,
    data: Mapping[str, Any],
    *,
    current: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The ``custom_fields`` a create (``current`` None) or update writes, validated
    against the workspace's definitions: None when the write leaves them alone. A value
    of an unknown key, of the wrong type, an option not in the list or a required field
    missing is ``Invalid`` with ``customFields.<key>``. Without any definition of the
    entity, values stay free-form JSON (as before definitions existed)."""
    if "custom_fields" not in data and current is not None:
        return None
    definitions = await definitions_of(actor, session, entity)
    return clean_with(definitions, actor, data, current=current)


def clean_with(
    definitions: Definitions,
    actor: Actor,
    data: Mapping[str, Any],
    *,
    current: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """``clean_custom_fields`` with the definitions already read (``definitions_of``):
    writers of many rows (imports) read them once."""
    given = data.get("custom_fields") if "custom_fields" in data else None
    if "custom_fields" not in data and current is not None:
        return None
    if given is not None and not isinstance(given, Mapping):
        raise Invalid("`customFields` must be a JSON object", "customFields")
    given = dict(given or {})
    fields.json_value(given, "customFields")
    if not definitions.items:
        return given if "custom_fields" in data else None
    cleaned = clean_given(definitions, given, stored=dict(current or {}))
    active = definitions.active
    hidden = definitions.sensitive if not _reads_sensitive(actor) else frozenset()
    for key, definition in active.items():
        if definition.required and key not in cleaned and key not in hidden:
            raise Invalid(f"`{field_name(key)}` is required", field_name(key))
    return cleaned


def clean_given(
    definitions: Definitions, given: Mapping[str, Any], *, stored: Mapping[str, Any]
) -> dict[str, Any]:
    """The values ``given`` validated against the definitions (``Invalid`` naming the
    key), nulls dropped; a key defined nowhere may only keep its ``stored`` value. A bulk
    change checks its values with it before it touches any record."""
    active = definitions.active
    cleaned: dict[str, Any] = {}
    for key, value in given.items():
        definition = active.get(key)
        if definition is not None:
            value = clean_value(definition, value)
        elif key in definitions.sensitive:
            pass  # an undefined sensitive key: encrypted, free-form (privacy.py)
        elif value is not None and stored.get(key, _ABSENT) != value:
            name = field_name(key)
            if key in definitions.all_keys:
                raise Invalid(f"`{name}` is archived: its value can be kept or removed", name)
            raise Invalid(
                f"`{name}` is not a custom field of {_entity_label(definitions.entity)}: define "
                "it first (values of keys defined nowhere are kept, not changed or added)",
                name,
            )
        if value is not None:
            cleaned[key] = value
    return cleaned


_ABSENT = object()


def _reads_sensitive(actor: Actor) -> bool:
    return allows(actor, Action.READ_SENSITIVE_FIELDS)


# ----------------------------------------------------------------- filters and sorts


def _json_type(raw: Any, kind: str, value: Any) -> Any:
    return case((func.jsonb_typeof(raw) == kind, value), else_=None)


class Terms:
    """One entity's definitions in one workspace as SQL over its ``custom_fields``
    column: what ``querying`` asks for a ``custom_fields`` filter term or sort key."""

    def __init__(self, definitions: Definitions, column: Any) -> None:
        self.definitions = definitions
        self.column = column

    def _definition(self, key: Any, at: str | None) -> CustomFieldDefinition:
        """The active definition of ``key``; errors name ``at`` (the sort) or, for a
        filter (``at`` None), ``customFields.<key>``."""
        if not isinstance(key, str):
            raise Invalid("Name the custom field with `key`", at or "customFields")
        where = at or field_name(key)
        definition = self.definitions.active.get(key)
        if definition is None:
            raise Invalid(
                f"`{key}` is not a custom field of {_entity_label(self.definitions.entity)}",
                where,
            )
        if key in self.definitions.sensitive:
            raise Invalid(
                f"`{key}` is sensitive: its values are encrypted at rest and cannot be "
                "filtered or sorted",
                where,
            )
        return definition

    def typed(self, definition: CustomFieldDefinition) -> Any:
        """The SQL value of a field, of its type (NULL when absent)."""
        raw = self.column[definition.key]
        text = raw.astext
        kind = definition.type
        if kind is CustomFieldType.NUMBER:
            return _json_type(raw, "number", cast(text, Numeric))
        if kind is CustomFieldType.DATE:
            return _json_type(raw, "string", cast(text, Date))
        if kind is CustomFieldType.BOOLEAN:
            return _json_type(raw, "boolean", cast(text, Boolean))
        return _json_type(raw, "string", text)

    def _has(self, key: str, value: Any) -> ColumnElement[bool]:
        # ``custom_fields @> {"key": value}``: served by the jsonb_path_ops GIN index.
        return self.column.contains({key: value})

    def _operand(self, definition: CustomFieldDefinition, value: Any, name: str) -> Any:
        kind = definition.type
        if kind is CustomFieldType.TEXT:
            if not isinstance(value, str):
                raise Invalid(f"`{name}` compares with text", name)
            if "\x00" in value:  # stored text never holds one (nor can PostgreSQL text)
                raise Invalid(f"`{name}` must not contain NUL characters", name)
            return value
        if kind is CustomFieldType.NUMBER:
            return _number(value, name)
        if kind is CustomFieldType.DATE:
            return _date(value, name).isoformat()
        if kind is CustomFieldType.BOOLEAN:
            if not isinstance(value, bool):
                raise Invalid(f"`{name}` compares with true or false", name)
            return value
        return _option(definition, value, name)

    def condition(self, term: Mapping[str, Any]) -> ColumnElement[bool]:
        definition = self._definition(term.get("key"), None)
        key, name = definition.key, field_name(definition.key)
        allowed = OPERATORS[definition.type]
        terms: list[ColumnElement[bool]] = []
        for op, value in term.items():
            if op == "key" or (value is None and op != "is_null"):
                continue
            if op not in allowed:
                usable = ", ".join(sorted(querying.camel_case(o) for o in allowed))
                raise Invalid(
                    f"`{querying.camel_case(op)}` does not apply to the "
                    f"{definition.type.value} field `{key}` (use {usable})",
                    name,
                )
            terms.append(self._operator(definition, op, value, name))
        return and_(true(), *terms)

    def _operator(
        self, definition: CustomFieldDefinition, op: str, value: Any, name: str
    ) -> ColumnElement[bool]:
        key = definition.key
        if op == "is_null":
            if not isinstance(value, bool):
                raise Invalid(f"`{name}` isNull takes true or false", name)
            present = self.column.has_key(key)
            return not_(present) if value else present
        if definition.type is CustomFieldType.MULTI_SELECT:
            if not isinstance(value, list):
                raise Invalid(f"`{name}` compares with a list of options", name)
            chosen = list(dict.fromkeys(_option(definition, v, name) for v in value))
            if op == "contains_all":
                return self._has(key, chosen) if chosen else true()
            if op == "contains_any":
                return or_(*(self._has(key, [v]) for v in chosen)) if chosen else false()
            if not chosen:  # eq []: no option chosen, which is stored as no value
                return not_(self.column.has_key(key))
            return and_(
                self._has(key, chosen),
                func.jsonb_array_length(self.column[key]) == len(chosen),
            )
        if op == "in":
            if not isinstance(value, list):
                raise Invalid(f"`{name}` in takes a list", name)
            values = [self._operand(definition, v, name) for v in value]
            return or_(*(self._has(key, v) for v in values)) if values else false()
        operand = self._operand(definition, value, name)
        if op == "eq":
            return self._has(key, operand)
        if op == "contains":
            return self.typed(definition).icontains(operand, autoescape=True)
        if op == "starts_with":
            return self.typed(definition).istartswith(operand, autoescape=True)
        typed = self.typed(definition)
        bound = Decimal(str(operand)) if definition.type is CustomFieldType.NUMBER else operand
        if definition.type is CustomFieldType.DATE:
            bound = date.fromisoformat(operand)
        comparisons: dict[str, Callable[[Any], ColumnElement[bool]]] = {
            "gt": typed.__gt__,
            "gte": typed.__ge__,
            "lt": typed.__lt__,
            "lte": typed.__le__,
        }
        return comparisons[op](bound)

    def sort_key(self, key: str, descending: bool) -> querying.SortKey:
        definition = self._definition(key, "orderBy")
        if definition.type not in SORTABLE:
            raise Invalid(f"The multi select field `{key}` cannot be sorted", "orderBy")
        expression = self.typed(definition)
        if definition.type is CustomFieldType.BOOLEAN:
            # false < true as 0 < 1: keyset conditions cannot compare with a Python bool.
            expression = cast(expression, Integer)
        return querying.SortKey(
            expression,
            descending,
            name=f"customFields.{key}",
            read=lambda row: python_value(definition, row.custom_fields.get(key)),
        )


def python_value(definition: CustomFieldDefinition, value: Any) -> Any:
    """A stored value as its sort key reads it in SQL (None when absent or of
    another JSON type): what a cursor carries."""
    kind = definition.type
    if kind is CustomFieldType.NUMBER:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return Decimal(str(value)) if is_number else None
    if kind is CustomFieldType.DATE:
        return date.fromisoformat(value) if isinstance(value, str) else None
    if kind is CustomFieldType.BOOLEAN:  # sorted as 0 and 1
        return int(value) if isinstance(value, bool) else None
    return value if isinstance(value, str) else None


def terms_loader(
    entity: CustomFieldEntity,
) -> Callable[[Actor, AsyncSession], Awaitable[Terms]]:
    """What a ``ListSpec`` of ``entity`` loads when a filter or order names a custom field."""

    async def load(actor: Actor, session: AsyncSession) -> Terms:
        definitions = await definitions_of(actor, session, entity)
        return Terms(definitions, MODELS[entity].custom_fields)

    return load


# ----------------------------------------------------------------- search and export


async def searchable_keys(
    actor: Actor, session: AsyncSession, entity: CustomFieldEntity
) -> list[str]:
    """Keys of the active definitions marked ``searchable`` (never a sensitive key: a
    search document would hold its value in clear)."""
    definitions = await definitions_of(actor, session, entity)
    return [
        d.key
        for d in definitions.active.values()
        if d.searchable and d.key not in definitions.sensitive
    ]


def searchable_text(keys: Iterable[str], values: Mapping[str, Any]) -> str:
    """The text a search document takes from a record's custom fields: the values of
    ``keys`` (``searchable_keys``), options of multi selects one by one."""
    parts: list[str] = []
    for key in keys:
        value = values.get(key)
        items = value if isinstance(value, list) else [value]
        parts.extend(str(v) for v in items if v is not None and not isinstance(v, bool))
    return " ".join(parts)


async def workspace_definitions(actor: Actor, session: AsyncSession) -> list[CustomFieldDefinition]:
    """Every definition of the workspace (archived ones too), by entity then age."""
    rows = await session.scalars(
        select(CustomFieldDefinition)
        .where(CustomFieldDefinition.workspace_id == actor.workspace_id)
        .order_by(
            CustomFieldDefinition.entity,
            CustomFieldDefinition.created_at,
            CustomFieldDefinition.id,
        )
    )
    return list(rows.all())


def export_description(definitions: Iterable[CustomFieldDefinition]) -> list[dict[str, Any]]:
    """The definitions as an export lists them next to the values: key, label, type,
    options and whether the field is marked ``exportable``."""
    return [
        {
            "key": d.key,
            "label": d.label,
            "type": d.type.value,
            "options": list(d.options),
            "exportable": d.exportable,
            "archived": d.archived_at is not None,
        }
        for d in definitions
    ]


# ------------------------------------------------------------------- definitions


async def list_definitions(
    actor: Actor,
    session: AsyncSession,
    entity: CustomFieldEntity,
    *,
    include_archived: bool = False,
) -> list[CustomFieldDefinition]:
    """The definitions of ``entity``, oldest first (anyone who may read the workspace's
    custom fields: forms need them)."""
    authorize(actor, Action.READ_CUSTOM_FIELDS)
    definitions = await definitions_of(actor, session, entity)
    return [d for d in definitions.items if listed(d, include_archived)]


def _options(values: Any, field: str) -> list[str]:
    if values is None:
        return []
    if not isinstance(values, list | tuple):
        raise Invalid(f"`{field}` must be a list", field)
    result: list[str] = []
    for index, value in enumerate(values):
        option = fields.required_text(value, f"{field}.{index}", max_length=MAX_OPTION_LENGTH)
        if option in result:
            raise Invalid(f"The option `{option}` is listed twice", f"{field}.{index}")
        result.append(option)
    return result


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"`{field}` must be true or false", field)
    return value


def _check_options(kind: CustomFieldType, options: list[str], field: str) -> None:
    if kind in SELECTS and not options:
        raise Invalid("A select field needs at least one option", field)
    if kind not in SELECTS and options:
        raise Invalid("Only select fields have options", field)
    if len(options) > MAX_OPTIONS:
        raise Invalid(f"A field has at most {MAX_OPTIONS} options", field)


async def _stored_values(
    actor: Actor, session: AsyncSession, entity: CustomFieldEntity, key: str, *, limit: int | None
) -> list[tuple[uuid.UUID, Any]]:
    model = MODELS[entity]
    statement = select(model.id, model.custom_fields[key]).where(
        model.workspace_id == actor.workspace_id, model.custom_fields.has_key(key)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def _has_encrypted_values(actor: Actor, session: AsyncSession) -> bool:
    found = await session.scalar(
        select(Customer.id)
        .where(
            Customer.workspace_id == actor.workspace_id,
            Customer.custom_fields_encrypted.is_not(None),
        )
        .limit(1)
    )
    return found is not None


async def create_definition(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any]
) -> CustomFieldDefinition:
    """Define a custom field of customers, companies or deals (admins and managers).
    Values already stored under the key must be valid values of the new field."""
    authorize(actor, Action.MANAGE_CUSTOM_FIELDS)
    entity = fields.choice(CustomFieldEntity, data.get("entity"), "entity")
    key = data.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        raise Invalid(
            "`key` is 1-64 letters, digits or _, starting with a lower-case letter "
            "(e.g. `tier` or `renewalDate`)",
            "key",
        )
    kind = fields.choice(CustomFieldType, data.get("type"), "type")
    options = _options(data.get("options"), "options")
    _check_options(kind, options, "options")
    definition = CustomFieldDefinition(
        entity=entity,
        key=key,
        label=fields.required_text(data.get("label"), "label"),
        type=kind,
        options=options,
        required=_flag(data.get("required", False), "required"),
        searchable=_flag(data.get("searchable", False), "searchable"),
        exportable=_flag(data.get("exportable", True), "exportable"),
    )
    # One definer at a time per workspace: the count and the key check hold at commit.
    await session.execute(
        select(Workspace.id).where(Workspace.id == actor.workspace_id).with_for_update()
    )
    existing = await definitions_of(actor, session, entity)
    if key in existing.all_keys:
        raise Invalid(f"`{key}` is already a custom field of {_entity_label(entity)}", "key")
    if len(existing.items) >= MAX_DEFINITIONS:
        raise Invalid(f"At most {MAX_DEFINITIONS} custom fields per kind of record", "key")
    if definition.searchable and key in existing.sensitive:
        raise Invalid(
            f"`{key}` is sensitive (encrypted at rest): it cannot be searchable", "searchable"
        )
    for record_id, value in await _stored_values(actor, session, entity, key, limit=None):
        try:
            valid = clean_value(definition, value) == value
        except Invalid:
            valid = False
        if not valid:
            raise Invalid(
                f"A stored value of `{key}` ({str(value)[:50]!r} on {record_id}) is not a "
                f"valid {kind.value} value: change or remove it first",
                "type",
            )
    return await records.create(actor, session, definition, action="createCustomFieldDefinition")


UPDATABLE = (
    "label",
    "type",
    "add_options",
    "rename_options",
    "required",
    "searchable",
    "exportable",
)


async def update_definition(
    actor: Actor,
    session: AsyncSession,
    definition_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> CustomFieldDefinition:
    """Change a definition's label, flags or options (added, or renamed: stored values
    follow the new name). Its type changes only while no record holds a value."""
    authorize(actor, Action.MANAGE_CUSTOM_FIELDS)
    unknown = set(data) - set(UPDATABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    definition = await records.get_for_change(
        actor, session, CustomFieldDefinition, definition_id, expected_version
    )
    if definition.archived_at is not None:
        raise Invalid("This custom field is archived", "id")
    key, entity = definition.key, definition.entity
    sensitive = (await definitions_of(actor, session, entity)).sensitive
    changes: dict[str, Any] = {}
    if data.get("label") is not None:
        changes["label"] = fields.required_text(data["label"], "label")
    for flag in ("required", "searchable", "exportable"):
        if data.get(flag) is not None:
            changes[flag] = _flag(data[flag], flag)
    if changes.get("searchable") and key in sensitive:
        raise Invalid(
            f"`{key}` is sensitive (encrypted at rest): it cannot be searchable", "searchable"
        )
    kind = definition.type
    options = list(definition.options)
    if data.get("type") is not None:
        new_kind = fields.choice(CustomFieldType, data["type"], "type")
        if new_kind is not kind:
            held = await _stored_values(actor, session, entity, key, limit=1)
            if held or (key in sensitive and await _has_encrypted_values(actor, session)):
                raise Invalid(
                    f"`{key}` has values: its type cannot change (define a new field, copy "
                    "the values, archive this one)",
                    "type",
                )
            if (new_kind in SELECTS) != (kind in SELECTS):
                options = []
            kind = changes["type"] = new_kind
    renames: dict[str, str] = {}
    for index, rename in enumerate(data.get("rename_options") or []):
        name = f"renameOptions.{index}"
        old, new = rename.get("from_"), rename.get("to")
        if old not in options:
            raise Invalid(f"`{old}` is not an option of `{key}`", name)
        new = fields.required_text(new, name, max_length=MAX_OPTION_LENGTH)
        if new in options or new in renames.values():
            raise Invalid(f"`{new}` is already an option of `{key}`", name)
        renames[old] = new
    options = [renames.get(o, o) for o in options]
    for index, option in enumerate(_options(data.get("add_options"), "addOptions")):
        if option in options:
            raise Invalid(f"`{option}` is already an option of `{key}`", f"addOptions.{index}")
        options.append(option)
    _check_options(kind, options, "addOptions")
    if options != list(definition.options):
        changes["options"] = options
    if renames:
        if key in sensitive:
            raise Invalid(
                f"`{key}` is sensitive: its encrypted values cannot be renamed", "renameOptions"
            )
        await _rename_values(actor, session, definition, renames)
    return await records.update(
        actor, session, definition, changes, action="updateCustomFieldDefinition"
    )


async def _rename_values(
    actor: Actor,
    session: AsyncSession,
    definition: CustomFieldDefinition,
    renames: Mapping[str, str],
) -> None:
    """Stored values follow renamed options, in the same transaction (one statement to
    find and lock the records holding an old name, one update per record)."""
    model = MODELS[definition.entity]
    key = definition.key
    multi = definition.type is CustomFieldType.MULTI_SELECT
    holding = [model.custom_fields.contains({key: [old] if multi else old}) for old in renames]
    rows = await session.scalars(
        select(model)
        .where(model.workspace_id == actor.workspace_id, or_(*holding))
        .with_for_update()
    )
    for row in rows.all():
        values = dict(row.custom_fields)
        value = values[key]
        if isinstance(value, list):
            values[key] = [renames.get(v, v) for v in value]
        else:
            values[key] = renames.get(value, value)
        row.custom_fields = values
    await session.flush()


async def archive_definition(
    actor: Actor,
    session: AsyncSession,
    definition_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> CustomFieldDefinition:
    """Retire a custom field: it no longer validates, filters or sorts; stored values stay
    (they can be kept or removed) and its key stays reserved."""
    authorize(actor, Action.MANAGE_CUSTOM_FIELDS)
    return await records.archive(
        actor,
        session,
        CustomFieldDefinition,
        definition_id,
        expected_version,
        action="archiveCustomFieldDefinition",
    )
