"""Per-type filter operators shared by every list's filter input."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

E = TypeVar("E")


@strawberry.input(
    description="Operators on a text field. Matching ignores case for contains/startsWith."
)
class StringFilter:
    eq: str | None = None
    ne: str | None = None
    in_: list[str] | None = strawberry.field(default=None, name="in")
    not_in: list[str] | None = None
    contains: str | None = None
    starts_with: str | None = None
    is_null: bool | None = None


@strawberry.input(description="Operators on a reference to another object (global IDs).")
class IDFilter:
    eq: strawberry.ID | None = None
    ne: strawberry.ID | None = None
    in_: list[strawberry.ID] | None = strawberry.field(default=None, name="in")
    not_in: list[strawberry.ID] | None = None
    is_null: bool | None = None


@strawberry.input(description="Operators on a point in time (ISO 8601).")
class DateTimeFilter:
    eq: datetime | None = None
    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None
    is_null: bool | None = None


@strawberry.input(description="Operators on a calendar date.")
class DateFilter:
    eq: date | None = None
    gt: date | None = None
    gte: date | None = None
    lt: date | None = None
    lte: date | None = None
    is_null: bool | None = None


@strawberry.input(description="Operators on a decimal amount.")
class DecimalFilter:
    eq: Decimal | None = None
    ne: Decimal | None = None
    gt: Decimal | None = None
    gte: Decimal | None = None
    lt: Decimal | None = None
    lte: Decimal | None = None


@strawberry.input(description="Operators on a whole number.")
class IntFilter:
    eq: int | None = None
    ne: int | None = None
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None
    is_null: bool | None = None


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
    eq: JSON | None = None
    in_: list[JSON] | None = strawberry.field(default=None, name="in")
    contains: str | None = strawberry.field(default=None, description="Text, ignoring case.")
    starts_with: str | None = strawberry.field(default=None, description="Text, ignoring case.")
    gt: JSON | None = None
    gte: JSON | None = None
    lt: JSON | None = None
    lte: JSON | None = None
    is_null: bool | None = strawberry.field(default=None, description="True: no value.")
    contains_all: list[str] | None = strawberry.field(
        default=None, description="Multi select: has every one of these options."
    )
    contains_any: list[str] | None = strawberry.field(
        default=None, description="Multi select: has at least one of these options."
    )


@strawberry.input(description="Operators on an enumerated field.")
class EnumFilter(Generic[E]):
    eq: E | None = None
    ne: E | None = None
    in_: list[E] | None = strawberry.field(default=None, name="in")
    not_in: list[E] | None = None
