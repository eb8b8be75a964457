"""Turning GraphQL list arguments (filter, orderBy, paging) into service values."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Sequence
from typing import Any, cast

from strawberry.types.unset import UNSET

from crm_graphql.global_ids import MalformedId, decode_id, from_global_id
from crm_graphql.resolvers.info import Info
from crm_graphql.services.errors import Invalid, NotFound
from crm_graphql.storage.querying import (
    CUSTOM_FIELDS,
    CUSTOM_ORDER_PREFIX,
    PageRequest,
    camel_case,
)

_ID_FILTER = "IDFilter"


def plain_value(member: enum.Enum) -> str:
    """The string value of a schema enum's member declared with ``strawberry.enum_value``
    (``ImportFormat``, ``ExportType`` ...): mypy reads such a member's value as its
    ``EnumValueDefinition``, but ``strawberry.enum`` has made it the plain value."""
    return cast(str, member.value)


def _decode_ids(field_name: str, ops: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for op, value in ops.items():
        if op == "is_null" or value is None:
            decoded[op] = value
            continue
        try:
            if isinstance(value, list):
                decoded[op] = [from_global_id(v)[1] for v in value]
            else:
                decoded[op] = from_global_id(value)[1]
        except MalformedId as exc:
            raise Invalid(str(exc), camel_case(field_name)) from exc
    return decoded


def typed_ids(values: Sequence[str] | None, type_name: str, field: str) -> list[uuid.UUID] | None:
    """Global IDs of one type; an ID that is malformed or of another type is a VALIDATION
    error naming the argument (an unknown one simply matches nothing)."""
    if not values:
        return None
    ids = []
    for value in values:
        id = decode_id(value, type_name)
        if id is None:
            raise Invalid(f"`{field}` takes {type_name} IDs", field)
        ids.append(id)
    return ids


def filter_spec(value: Any) -> dict[str, Any] | None:
    """A filter input object as the plain mapping ``storage.querying`` understands:
    unset operators dropped, ``in_``/``and_`` renamed, global IDs decoded to UUIDs."""
    if value is None or value is UNSET:
        return None
    spec: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        raw = getattr(value, f.name)
        if raw is None or raw is UNSET:
            continue
        name = f.name.rstrip("_")
        if name in ("and", "or"):
            spec[name] = [filter_spec(v) for v in raw]
        elif name == "not":
            spec[name] = filter_spec(raw)
        elif name == CUSTOM_FIELDS:
            spec[name] = [_set_fields(term) for term in raw]
        elif dataclasses.is_dataclass(raw):
            ops = {
                g.name.rstrip("_"): getattr(raw, g.name)
                for g in dataclasses.fields(raw)
                if getattr(raw, g.name) is not None and getattr(raw, g.name) is not UNSET
            }
            if type(raw).__name__ == _ID_FILTER:
                ops = _decode_ids(name, ops)
            spec[name] = ops
        else:
            spec[name] = raw
    return spec


def _set_fields(value: Any) -> dict[str, Any]:
    """An input object's set fields by snake_case name (``in_`` as ``in``)."""
    return {
        f.name.rstrip("_"): getattr(value, f.name)
        for f in dataclasses.fields(value)
        if getattr(value, f.name) is not None and getattr(value, f.name) is not UNSET
    }


def order_spec(values: Sequence[Any] | None) -> list[tuple[str, bool]] | None:
    """``[CustomerOrder]`` -> ``[("created_at", True)]`` (field value, descending); a
    ``customField`` entry -> ``("custom_fields.<key>", descending)``."""
    if not values:
        return None
    spec: list[tuple[str, bool]] = []
    for v in values:
        field, custom = getattr(v, "field", None), getattr(v, "custom_field", None)
        if (field is None) == (custom is None):
            raise Invalid("Give each orderBy entry either `field` or `customField`", "orderBy")
        name = field.value if field is not None else CUSTOM_ORDER_PREFIX + str(custom)
        spec.append((name, v.direction.value == "desc"))
    return spec


def page_request(
    info: Info,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> PageRequest:
    settings = info.context.app.settings
    return PageRequest(
        first=first,
        after=after,
        last=last,
        before=before,
        max_size=settings.max_page_size,
        default_size=settings.default_page_size,
    )


def input_changes(value: Any, *, ids: dict[str, str] | None = None) -> dict[str, Any]:
    """The fields a client actually sent in a create/update input (unset ones left out),
    with ID fields decoded (``ids`` maps input field -> expected type name)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        raw = getattr(value, f.name)
        if raw is UNSET or f.name in ("id", "expected_version"):
            continue
        if ids and f.name in ids:
            if raw is not None:
                decoded = decode_id(raw, ids[f.name])
                if decoded is None:
                    raise NotFound(f"{ids[f.name]} not found", camel_case(f.name))
                raw = decoded
        elif dataclasses.is_dataclass(raw) and not isinstance(raw, type):
            raw = {k: v for k, v in dataclasses.asdict(raw).items() if v is not UNSET}
        elif isinstance(raw, list) and raw and dataclasses.is_dataclass(raw[0]):
            raw = [{k: v for k, v in dataclasses.asdict(i).items() if v is not UNSET} for i in raw]
        changes[f.name] = raw
    return changes
