"""Per-type filter operators shared by every list's filter input."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

E = TypeVar("E")

# What each operator means, on every type it is offered for (storage.querying applies them).
OPERATORS = {
    "eq": "Equal to this value.",
    "ne": "Not equal to this value; records without a value match too.",
    "in": "Equal to one of these values (an empty list matches nothing).",
    "not_in": "Equal to none of these values; records without a value match too.",
    "contains": "Contains this text, ignoring case.",
    "starts_with": "Starts with this text, ignoring case.",
    "gt": "Greater than (for times and dates: after) this value.",
    "gte": "Greater than or equal to (for times and dates: at or after) this value.",
    "lt": "Less than (for times and dates: before) this value.",
    "lte": "Less than or equal to (for times and dates: at or before) this value.",
    "is_null": "True: has no value; false: has one.",
}


def operator(name: str) -> Any:
    """The input field of the operator ``name``, described by ``OPERATORS``."""
    graphql_name = "in" if name == "in" else None
    return strawberry.field(default=None, name=graphql_name, description=OPERATORS[name])


@strawberry.input(
    description="Operators on a text field. Matching ignores case for contains/startsWith."
)
class StringFilter:
    eq: str | None = operator("eq")
    ne: str | None = operator("ne")
    in_: list[str] | None = operator("in")
    not_in: list[str] | None = operator("not_in")
    contains: str | None = operator("contains")
    starts_with: str | None = operator("starts_with")
    is_null: bool | None = operator("is_null")


@strawberry.input(description="Operators on a reference to another object (global IDs).")
class IDFilter:
    eq: strawberry.ID | None = operator("eq")
    ne: strawberry.ID | None = operator("ne")
    in_: list[strawberry.ID] | None = operator("in")
    not_in: list[strawberry.ID] | None = operator("not_in")
    is_null: bool | None = operator("is_null")


@strawberry.input(description="Operators on a point in time (ISO 8601).")
class DateTimeFilter:
    eq: datetime | None = operator("eq")
    gt: datetime | None = operator("gt")
    gte: datetime | None = operator("gte")
    lt: datetime | None = operator("lt")
    lte: datetime | None = operator("lte")
    is_null: bool | None = operator("is_null")


@strawberry.input(description="Operators on a calendar date.")
class DateFilter:
    eq: date | None = operator("eq")
    gt: date | None = operator("gt")
    gte: date | None = operator("gte")
    lt: date | None = operator("lt")
    lte: date | None = operator("lte")
    is_null: bool | None = operator("is_null")


@strawberry.input(description="Operators on a decimal amount.")
class DecimalFilter:
    eq: Decimal | None = operator("eq")
    ne: Decimal | None = operator("ne")
    gt: Decimal | None = operator("gt")
    gte: Decimal | None = operator("gte")
    lt: Decimal | None = operator("lt")
    lte: Decimal | None = operator("lte")


@strawberry.input(description="Operators on a whole number.")
class IntFilter:
    eq: int | None = operator("eq")
    ne: int | None = operator("ne")
    gt: int | None = operator("gt")
    gte: int | None = operator("gte")
    lt: int | None = operator("lt")
    lte: int | None = operator("lte")
    is_null: bool | None = operator("is_null")


@strawberry.input(description="Operators on a list of tags.")
class TagsFilter:
    contains: list[str] | None = strawberry.field(
        default=None, description="Has every one of these tags."
    )
    any_of: list[str] | None = strawberry.field(default=None, description="Has at least one.")


@strawberry.input(
    description="Operators on one typed custom field, named by `key`. Operands are JSON "
    "values of the field's type (numbers, `YYYY-MM-DD` dates, booleans, option names); "
    "each type takes: TEXT eq, in, contains, startsWith, isNull; NUMBER and DATE eq, gt, "
    "gte, lt, lte, isNull; BOOLEAN eq, isNull; SINGLE_SELECT eq, in, isNull; MULTI_SELECT "
    "eq (exactly these options), containsAll, containsAny, isNull. Anything else is a "
    "VALIDATION error on `customFields.<key>`."
)
class CustomFieldFilter:
    key: str = strawberry.field(description="The field's key.")
    eq: JSON | None = operator("eq")
    in_: list[JSON] | None = operator("in")
    contains: str | None = strawberry.field(default=None, description="Text, ignoring case.")
    starts_with: str | None = strawberry.field(default=None, description="Text, ignoring case.")
    gt: JSON | None = operator("gt")
    gte: JSON | None = operator("gte")
    lt: JSON | None = operator("lt")
    lte: JSON | None = operator("lte")
    is_null: bool | None = strawberry.field(default=None, description="True: no value.")
    contains_all: list[str] | None = strawberry.field(
        default=None, description="Multi select: has every one of these options."
    )
    contains_any: list[str] | None = strawberry.field(
        default=None, description="Multi select: has at least one of these options."
    )


@strawberry.input(description="Operators on an enumerated field.")
class EnumFilter(Generic[E]):
    eq: E | None = operator("eq")
    ne: E | None = operator("ne")
    in_: list[E] | None = operator("in")
    not_in: list[E] | None = operator("not_in")
