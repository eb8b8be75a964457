"""Drill-down filters as clients write them: the inverse of ``arguments.filter_spec``."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from strawberry.scalars import JSON
from strawberry.types.base import has_object_definition
from strawberry.types.unset import UNSET
from strawberry.utils.str_converters import to_camel_case

from crm_graphql.global_ids import to_global_id
from crm_graphql.services import drilldown
from crm_graphql.storage.querying import camel_case

if TYPE_CHECKING:  # the schema imports this module: its types are imported when called
    from crm_graphql.schema.insight import DrillDown


def _scalar(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def input_json(value: Any) -> Any:
    """A Strawberry input value (a filter as the client sent it) back in its JSON form:
    GraphQL field names, enum names, ISO dates, decimals as strings; unset fields left out."""
    if isinstance(value, list | tuple):
        return [input_json(v) for v in value]
    if has_object_definition(value):
        out: dict[str, Any] = {}
        for f in value.__strawberry_definition__.fields:
            raw = getattr(value, f.python_name)
            if raw is None or raw is UNSET:
                continue
            out[f.graphql_name or to_camel_case(f.python_name)] = input_json(raw)
        return out
    return _scalar(value)


def spec_json(spec: Any) -> Any:
    """A service-level filter mapping (snake_case, ``Ref``s) in the client's JSON form."""
    if isinstance(spec, drilldown.Ref):
        return to_global_id(spec.type_name, spec.id)
    if isinstance(spec, Mapping):
        return {camel_case(str(k)): spec_json(v) for k, v in spec.items()}
    if isinstance(spec, list | tuple):
        return [spec_json(v) for v in spec]
    return _scalar(spec)


def drill_down(value: drilldown.DrillDown, caller_filter: Any = None) -> DrillDown:
    """The GraphQL ``DrillDown`` of a service's one, within the filter the caller applied
    to the numbers (``caller_filter``: the Strawberry input object, or None)."""
    from crm_graphql.schema.insight import DrillDown

    own = spec_json(value.filter)
    caller = input_json(caller_filter) if caller_filter is not None else None
    if caller and own:
        combined: dict[str, Any] = {"and": [caller, own]}
    else:
        combined = caller or own or {}
    return DrillDown(list=value.list, filter=JSON(combined))


__all__ = ["drill_down", "input_json", "spec_json"]


def selected_names(selections: Sequence[Any]) -> set[str]:
    """Every field name a selection names, fragments included (``info.selected_fields``):
    what a resolver loads in one batch before completion instead of per object."""
    names: set[str] = set()
    for selection in selections:
        name = getattr(selection, "name", None)
        if name:
            names.add(name)
        names |= selected_names(getattr(selection, "selections", None) or ())
    return names
