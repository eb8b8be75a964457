"""Orders: a customer's purchase history (created by staff, imports or integrations)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import Customer, Order, OrderStatus
from crm_graphql.services import fields, querying, records
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Duplicate, Invalid
from crm_graphql.services.policy import Action, authorize

ORDERS = querying.ListSpec(
    model=Order,
    filter_fields={
        "id": Order.id,
        "customer_id": Order.customer_id,
        # The owner of the order's customer (orders have none of their own): what
        # revenue per owner drills down to.
        "customer_owner_id": select(Customer.owner_id)
        .where(Customer.id == Order.customer_id)
        .scalar_subquery(),
        "number": Order.number,
        "status": Order.status,
        "amount": Order.amount,
        "currency": Order.currency,
        "placed_at": Order.placed_at,
        "created_at": Order.created_at,
    },
    order_fields={
        "placed_at": Order.placed_at,
        "amount": Order.amount,
        "created_at": Order.created_at,
        "number": Order.number,
    },
    default_order=[("placed_at", True)],
    parent_fields={"customer_id": Order.customer_id},
)

EDITABLE = ("customer_id", "number", "status", "amount", "currency", "placed_at", "items")

NUMBER_PREFIX = "ORD-"
NUMBER_DIGITS = 5  # zero-padded: ORD-00001; longer once a workspace passes 99,999 orders
_GENERATED_NUMBER = rf"^{NUMBER_PREFIX}([0-9]{{1,18}})$"


async def _lock_numbers(actor: Actor, session: AsyncSession) -> None:
    """Serialise order numbering in one workspace until this transaction ends, so a
    generated number and the duplicate check both see every committed order."""
    key = func.hashtextextended(f"orders.number:{actor.workspace_id}", 0)
    await session.execute(select(func.pg_advisory_xact_lock(key)))


async def _next_number(actor: Actor, session: AsyncSession) -> str:
    """One past the highest ``ORD-<digits>`` number of the workspace."""
    highest = await session.scalar(
        select(func.max(cast(func.substring(Order.number, _GENERATED_NUMBER), BigInteger))).where(
            Order.workspace_id == actor.workspace_id, Order.number.like(f"{NUMBER_PREFIX}%")
        )
    )
    return f"{NUMBER_PREFIX}{(highest or 0) + 1:0{NUMBER_DIGITS}d}"


async def _ensure_number_free(
    actor: Actor, session: AsyncSession, number: str, current: Order | None
) -> None:
    taken = await session.scalar(
        select(Order.id).where(
            Order.workspace_id == actor.workspace_id,
            Order.number == number,
            Order.id != (current.id if current else None),
        )
    )
    if taken is not None:
        raise Duplicate(f"Another order in this workspace has number {number}", "number")


def _items(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid("`items` must be a list of objects", "items")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise Invalid(f"`items` must be a list of objects (item {index} is not)", "items")
    return list(fields.json_value(value, "items"))


async def _clean(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any], *, current: Order | None
) -> dict[str, Any]:
    """Validate and normalise the provided fields; unknown keys are a programming error."""
    unknown = set(data) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    cleaned = dict(data)
    creating = current is None
    if "customer_id" in data or creating:
        if data.get("customer_id") is None:
            raise Invalid("An order needs a customer", "customerId")
        await records.ensure_in_workspace(
            actor, session, [(Customer, data["customer_id"], "customerId")]
        )
    if "amount" in data or creating:
        if data.get("amount") is None:
            raise Invalid("`amount` is required", "amount")
        cleaned["amount"] = fields.amount(data["amount"])
    if "currency" in data or creating:
        cleaned["currency"] = fields.currency(data.get("currency"))
    if data.get("status") is not None:
        cleaned["status"] = fields.choice(OrderStatus, data["status"], "status")
    elif "status" in data:
        if not creating:
            raise Invalid("`status` must not be empty", "status")
        cleaned["status"] = OrderStatus.PAID
    if "placed_at" in data or creating:
        placed_at = data.get("placed_at")
        if placed_at is None and not creating:
            raise Invalid("`placedAt` must not be empty", "placedAt")
        cleaned["placed_at"] = (
            datetime.now(UTC) if placed_at is None else fields.aware_datetime(placed_at, "placedAt")
        )
    if "items" in data:
        cleaned["items"] = _items(data["items"])
    if "number" in data or creating:
        await _lock_numbers(actor, session)
        if data.get("number") is None:
            if creating:
                cleaned["number"] = await _next_number(actor, session)
            else:
                raise Invalid("`number` must not be empty", "number")
        else:
            cleaned["number"] = fields.required_text(data["number"], "number", max_length=64)
            await _ensure_number_free(actor, session, cleaned["number"], current)
    return cleaned


async def create_order(actor: Actor, session: AsyncSession, data: Mapping[str, Any]) -> Order:
    """Record a purchase; without a ``number`` the next ``ORD-00042`` of the workspace is
    used."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    cleaned = await _clean(actor, session, data, current=None)
    return await records.create(actor, session, Order(**cleaned), action="createOrder")


async def update_order(
    actor: Actor,
    session: AsyncSession,
    order_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> Order:
    """Change the given fields of an order (fields left out stay as they are)."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    order = await records.get_for_change(actor, session, Order, order_id, expected_version)
    cleaned = await _clean(actor, session, data, current=order)
    return await records.update(actor, session, order, cleaned, action="updateOrder")


async def archive_order(
    actor: Actor,
    session: AsyncSession,
    order_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> Order:
    """Hide an order from lists and purchase summaries; it stays readable by ID."""
    authorize(actor, Action.ARCHIVE_CUSTOMERS)
    return await records.archive(
        actor, session, Order, order_id, expected_version, action="archiveOrder"
    )
