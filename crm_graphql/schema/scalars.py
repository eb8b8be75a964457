"""Shared value types: money, addresses, JSON, and the domain enums exposed to GraphQL."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import strawberry
from graphql import GraphQLError, GraphQLString, ValueNode, value_from_ast_untyped
from strawberry.scalars import JSON
from strawberry.schema.types.scalar import DEFAULT_SCALAR_REGISTRY

from crm_graphql import models

if TYPE_CHECKING:
    # strawberry.enum registers and returns the model's own enum class; say so to mypy.
    from crm_graphql.models import (
        ActivityType,
        Channel,
        ConversationStatus,
        DealStatus,
        LifecycleStage,
        MessageAuthorType,
        OrderStatus,
        Role,
    )
else:
    LifecycleStage = strawberry.enum(
        models.LifecycleStage, description="Where a customer is in the funnel."
    )
    Role = strawberry.enum(models.Role, description="What a user may do in the workspace.")
    DealStatus = strawberry.enum(models.DealStatus, description="Open, or closed as won or lost.")
    ActivityType = strawberry.enum(models.ActivityType, description="Kind of timeline entry.")
    OrderStatus = strawberry.enum(models.OrderStatus, description="Where an order stands.")
    Channel = strawberry.enum(models.Channel, description="How a conversation reaches us.")
    ConversationStatus = strawberry.enum(
        models.ConversationStatus, description="Open, pending or closed."
    )
    MessageAuthorType = strawberry.enum(
        models.MessageAuthorType, description="Who wrote a message."
    )

__all__ = ["JSON"]


@strawberry.type(description="An amount of money in one currency.")
class Money:
    amount: Decimal = strawberry.field(description="Decimal amount, as a string.")
    currency: str = strawberry.field(description="ISO 4217 currency code.")


@strawberry.type(description="A postal address.")
class Address:
    street: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None


@strawberry.input(description="A postal address.")
class AddressInput:
    street: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None


ADDRESS_KEYS = ("street", "city", "region", "postal_code", "country")


def address_of(value: dict[str, object] | None) -> Address | None:
    """Stored address JSON (camelCase keys) as an ``Address``."""
    if not value:
        return None
    return Address(
        street=_s(value.get("street")),
        city=_s(value.get("city")),
        region=_s(value.get("region")),
        postal_code=_s(value.get("postalCode")),
        country=_s(value.get("country")),
    )


def _s(value: object) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------- text the database takes


def checked_text(value: str) -> str:
    """Text PostgreSQL can store: no NUL character, no lone UTF-16 surrogate (both are
    refused by the database, which would otherwise turn bad input into a 500)."""
    if "\x00" in value:
        raise GraphQLError(
            "Text must not contain the NUL character (U+0000)", extensions={"code": "VALIDATION"}
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise GraphQLError(
            "Text must be valid Unicode (no lone surrogate code points)",
            extensions={"code": "VALIDATION"},
        ) from None
    return value


def _checked_json(value: Any) -> Any:
    stack = [value]
    while stack:  # iterative: nesting is limited elsewhere, but never trust it here
        item = stack.pop()
        if isinstance(item, str):
            checked_text(item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                checked_text(str(key))
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return value


def _parse_string(value: Any) -> str:
    return checked_text(GraphQLString.parse_value(value))


def _parse_string_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> str:
    return checked_text(GraphQLString.parse_literal(node, variables))


def _parse_json_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    return _checked_json(value_from_ast_untyped(node, variables))


# The built-in String and JSON scalars with the checks above on input; the schema uses
# them in place of the originals (``scalar_overrides``), so the SDL does not change.
SCALAR_OVERRIDES: dict[object, Any] = {
    str: dataclasses.replace(
        DEFAULT_SCALAR_REGISTRY[str],
        parse_value=_parse_string,
        parse_literal=_parse_string_literal,
    ),
    JSON: dataclasses.replace(
        DEFAULT_SCALAR_REGISTRY[JSON],
        parse_value=_checked_json,
        parse_literal=_parse_json_literal,
    ),
}
