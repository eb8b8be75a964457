"""Shared value types: money, addresses, JSON, and the domain enums exposed to GraphQL."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import strawberry
from strawberry.scalars import JSON
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

from crm_graphql import enums
from crm_graphql.services import rfm
from crm_graphql.services.fields import stored_instant

if TYPE_CHECKING:
    # strawberry.enum registers and returns the domain's own enum class; say so to mypy.
    from crm_graphql.enums import (
        ActivityType,
        ChangeKind,
        Channel,
        ConversationStatus,
        DealStatus,
        DuplicateField,
        LifecycleStage,
        MessageAuthorType,
        OrderStatus,
        Role,
        SyncedType,
    )
    from crm_graphql.services.rfm import RfmSegment
else:
    LifecycleStage = strawberry.enum(
        enums.LifecycleStage, description="Where a customer is in the funnel."
    )
    Role = strawberry.enum(enums.Role, description="What a user may do in the workspace.")
    DealStatus = strawberry.enum(enums.DealStatus, description="Open, or closed as won or lost.")
    ActivityType = strawberry.enum(enums.ActivityType, description="Kind of timeline entry.")
    OrderStatus = strawberry.enum(enums.OrderStatus, description="Where an order stands.")
    Channel = strawberry.enum(enums.Channel, description="How a conversation reaches us.")
    ConversationStatus = strawberry.enum(
        enums.ConversationStatus, description="Open, pending or closed."
    )
    MessageAuthorType = strawberry.enum(enums.MessageAuthorType, description="Who wrote a message.")
    ChangeKind = strawberry.enum(
        enums.ChangeKind,
        description="What a change did: created, updated, archived (merged duplicates too) "
        "or erased (a customer's personal data removed).",
    )
    DuplicateField = strawberry.enum(
        enums.DuplicateField,
        description="What two likely duplicate customers agree on: the same mailbox (EMAIL), "
        "the same phone number (PHONE), similar names within the same company (NAME).",
    )
    SyncedType = strawberry.enum(
        enums.SyncedType, description="The types whose changes `changes` carries."
    )
    RfmSegment = strawberry.enum(
        rfm.RfmSegment,
        description="Built-in customer segments by recency, frequency and monetary scores "
        "(README, Segments).",
    )

__all__ = ["JSON", "SCALAR_OVERRIDES"]


def _instant(value: datetime) -> str:
    return stored_instant(value).isoformat()


# Strawberry's DateTime, answering every value with its offset: the database driver reads
# -infinity / infinity as naive values, which the compiled path answers in UTC as well.
SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {
    datetime: dataclasses.replace(DateTimeDefinition, serialize=_instant)
}


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
