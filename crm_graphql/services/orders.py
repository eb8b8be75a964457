"""Orders: a customer's purchase history (created by staff, imports or integrations)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, cast, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import Customer, Order, OrderLine, OrderStatus, Product
from crm_graphql.services import fields, products
from crm_graphql.services.actor import Actor, in_workspace, scope_condition
from crm_graphql.services.errors import Duplicate, Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying, records

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

EDITABLE = (
    "customer_id",
    "number",
    "status",
    "amount",
    "currency",
    "placed_at",
    "items",
    "lines",
)
MAX_QUANTITY = Decimal("999999999")
CENT = Decimal("0.01")

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
        if data.get("amount") is not None:
            cleaned["amount"] = fields.amount(data["amount"])
        elif not (creating and data.get("lines") is not None):  # else: the lines' total
            raise Invalid("`amount` is required (or give `lines`)", "amount")
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
    if data.get("lines") is not None and data.get("items") is not None:
        raise Invalid("Pass either `lines` or `items`, not both", "lines")
    if "items" in data:
        cleaned["items"] = _items(data["items"])
    cleaned.pop("lines", None)
    if data.get("lines") is not None:
        currency = cleaned.get("currency") or (current.currency if current else None)
        lines = await _lines(actor, session, data["lines"], currency)
        cleaned["lines"] = lines
        cleaned["items"] = [_item_of(line) for line in lines]
        if creating and data.get("amount") is None:
            total = sum((line.quantity * (line.unit_price or 0) for line in lines), Decimal(0))
            cleaned["amount"] = fields.amount(total.quantize(CENT, ROUND_HALF_UP), "amount")
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
    used. Its lines come from ``lines`` (products by ID or SKU) or else from ``items``."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    cleaned = await _clean(actor, session, data, current=None)
    lines = cleaned.pop("lines", None)
    order = await records.create(actor, session, Order(**cleaned), action="createOrder")
    await _write_lines(session, order, lines)
    return order


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
    lines = cleaned.pop("lines", None)
    order = await records.update(actor, session, order, cleaned, action="updateOrder")
    if lines is not None or {"items", "currency"} & set(cleaned):
        await session.execute(
            delete(OrderLine).where(
                OrderLine.workspace_id == order.workspace_id, OrderLine.order_id == order.id
            )
        )
        await _write_lines(session, order, lines)
    return order


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


# ------------------------------------------------------------------------ order lines


def _line_quantity(value: Any, field: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise Invalid(f"`{field}` must be a number", field) from exc
    if not number.is_finite() or number <= 0 or number > MAX_QUANTITY:
        raise Invalid(f"`{field}` must be more than 0 and at most {MAX_QUANTITY}", field)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite number's
    if exponent < -3:
        raise Invalid(f"`{field}` allows at most 3 decimals", field)
    return number


async def _lines(
    actor: Actor, session: AsyncSession, raw: Any, currency: str | None
) -> list[OrderLine]:
    """The lines of a ``lines`` input: each names a product by ``product_id`` or ``sku``
    (unknown, archived or contradicting ones are ``Invalid`` naming ``lines.<i>.<field>``),
    its quantity (1 when left out) and unit price (the product's when left out, if the
    product is priced in the order's currency)."""
    if not isinstance(raw, list):
        raise Invalid("`lines` must be a list", "lines")
    ids = [line.get("product_id") for line in raw if line.get("product_id") is not None]
    skus = [str(line["sku"]).strip().lower() for line in raw if line.get("sku") is not None]
    by_id: dict[Any, Product] = {}
    by_sku: dict[str, Product] = {}
    if ids or skus:
        found = await session.scalars(
            in_workspace(Product, actor).where(
                Product.id.in_(ids) | func.lower(Product.sku).in_(skus)
            )
        )
        for row in found:
            by_id[row.id] = row
            by_sku[row.sku.lower()] = row
    lines: list[OrderLine] = []
    for index, line in enumerate(raw):
        path = f"lines.{index}"
        product: Product | None = None
        if line.get("product_id") is not None:
            product = by_id.get(line["product_id"])
            if product is None:
                raise Invalid("No product with this ID", f"{path}.productId")
        if line.get("sku") is not None:
            sku = products.clean_sku(line["sku"], f"{path}.sku")
            named = by_sku.get(sku.lower())
            if named is None:
                raise Invalid(f"No product with SKU {sku}", f"{path}.sku")
            if product is not None and named.id != product.id:
                raise Invalid(f"SKU {sku} is another product than `productId`", f"{path}.sku")
            product = named
        if product is None:
            raise Invalid("A line needs `productId` or `sku`", f"{path}.productId")
        if product.archived_at is not None:
            raise Invalid(f"Product {product.sku} is archived", f"{path}.productId")
        quantity = Decimal(1)
        if line.get("quantity") is not None:
            quantity = _line_quantity(line["quantity"], f"{path}.quantity")
        if line.get("unit_price") is not None:
            unit_price = fields.amount(line["unit_price"], f"{path}.unitPrice")
        elif currency is None or product.currency.strip() == currency:
            unit_price = product.price
        else:
            raise Invalid(
                f"{product.sku} is priced in {product.currency}: give `unitPrice` in {currency}",
                f"{path}.unitPrice",
            )
        name = fields.optional_text(line.get("name"), f"{path}.name", max_length=300)
        lines.append(
            OrderLine(
                position=index,
                product_id=product.id,
                sku=product.sku,
                name=name or product.name,
                quantity=quantity,
                unit_price=unit_price,
            )
        )
    return lines


def _item_of(line: OrderLine) -> dict[str, Any]:
    """The ``items`` entry of a line, as clients of ``items`` have always read them."""
    quantity = line.quantity
    return {
        "sku": line.sku,
        "name": line.name,
        "quantity": int(quantity) if quantity == quantity.to_integral_value() else str(quantity),
        "unitPrice": str(line.unit_price),
    }


async def _write_lines(session: AsyncSession, order: Order, lines: list[OrderLine] | None) -> None:
    """Store ``lines`` for ``order``; without them, its lines from its ``items``."""
    if lines is None:
        if order.items:
            await products.lines_from_items(session, order_id=order.id)
        return
    for line in lines:
        line.workspace_id = order.workspace_id
        line.order_id = order.id
        line.currency = order.currency
    session.add_all(lines)
    await session.flush()


async def lines_by_order(
    actor: Actor, session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[OrderLine]]:
    """The lines of many orders in one statement, in their order."""
    rows = await session.scalars(
        select(OrderLine)
        .where(scope_condition(OrderLine, actor), OrderLine.order_id.in_(list(order_ids)))
        .order_by(OrderLine.order_id, OrderLine.position)
    )
    found: dict[uuid.UUID, list[OrderLine]] = {i: [] for i in order_ids}
    for line in rows:
        found.setdefault(line.order_id, []).append(line)
    return found
