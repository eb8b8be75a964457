"""Products: the catalogue (create, change, archive, list) and how order lines find the
product they sold, by product or by SKU (case-insensitive, like the unique index)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import OrderLine, Product
from crm_graphql.services import fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Duplicate, Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying, records

PRODUCTS = querying.ListSpec(
    model=Product,
    filter_fields={
        "id": Product.id,
        "sku": Product.sku,
        "name": Product.name,
        "category": Product.category,
        "price": Product.price,
        "currency": Product.currency,
        "created_at": Product.created_at,
        "updated_at": Product.updated_at,
        "archived_at": Product.archived_at,
    },
    order_fields={
        "name": Product.name,
        "sku": Product.sku,
        "category": Product.category,
        "price": Product.price,
        "created_at": Product.created_at,
        "updated_at": Product.updated_at,
    },
    default_order=[("name", False)],
)

EDITABLE = ("sku", "name", "category", "price", "currency")
SKU_LENGTH = 64
CENT = Decimal("0.01")


def clean_sku(value: Any, field: str = "sku") -> str:
    """A trimmed SKU: printable, without spaces inside, at most 64 characters."""
    sku = fields.required_text(value, field, max_length=SKU_LENGTH)
    if any(c.isspace() or not c.isprintable() for c in sku):
        raise Invalid(f"`{field}` must not contain spaces or control characters", field)
    return sku


async def _ensure_sku_free(
    actor: Actor, session: AsyncSession, sku: str, current: Product | None
) -> None:
    taken = await session.scalar(
        select(Product.id).where(
            Product.workspace_id == actor.workspace_id,
            func.lower(Product.sku) == sku.lower(),
            Product.id != (current.id if current else None),
        )
    )
    if taken is not None:
        raise Duplicate(f"Another product in this workspace has SKU {sku}", "sku")


async def _clean(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any], *, current: Product | None
) -> dict[str, Any]:
    unknown = set(data) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    creating = current is None
    cleaned: dict[str, Any] = {}
    if "sku" in data or creating:
        cleaned["sku"] = clean_sku(data.get("sku"))
        await _ensure_sku_free(actor, session, cleaned["sku"], current)
    if "name" in data or creating:
        cleaned["name"] = fields.required_text(data.get("name"), "name")
    if "category" in data:
        cleaned["category"] = fields.optional_text(data["category"], "category", max_length=100)
    if "price" in data or creating:
        if data.get("price") is None:
            raise Invalid("`price` is required", "price")
        cleaned["price"] = fields.amount(data["price"], "price").quantize(CENT)
    if "currency" in data or creating:
        cleaned["currency"] = fields.currency(data.get("currency"))
    return cleaned


async def link_free_lines(actor: Actor, session: AsyncSession, product: Product) -> None:
    """Order lines recorded before ``product`` was in the catalogue (free lines) with its
    SKU now refer to it."""
    await session.execute(
        update(OrderLine)
        .where(
            OrderLine.workspace_id == actor.workspace_id,
            OrderLine.product_id.is_(None),
            func.lower(OrderLine.sku) == product.sku.lower(),
        )
        .values(product_id=product.id)
    )


async def create_product(actor: Actor, session: AsyncSession, data: Mapping[str, Any]) -> Product:
    """Add a product to the catalogue; past free order lines with its SKU link to it."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    cleaned = await _clean(actor, session, data, current=None)
    product = await records.create(actor, session, Product(**cleaned), action="createProduct")
    await link_free_lines(actor, session, product)
    return product


async def update_product(
    actor: Actor,
    session: AsyncSession,
    product_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> Product:
    """Change the given fields of a product. Lines already sold keep their SKU and name."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    product = await records.get_for_change(actor, session, Product, product_id, expected_version)
    cleaned = await _clean(actor, session, data, current=product)
    product = await records.update(actor, session, product, cleaned, action="updateProduct")
    if "sku" in cleaned:
        await link_free_lines(actor, session, product)
    return product


async def archive_product(
    actor: Actor,
    session: AsyncSession,
    product_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> Product:
    """Take a product out of the catalogue: no new order lines, no recommendations; past
    lines keep referring to it."""
    authorize(actor, Action.ARCHIVE_CUSTOMERS)
    return await records.archive(
        actor, session, Product, product_id, expected_version, action="archiveProduct"
    )


# ----------------------------------------------------------- order lines from items

# Order lines for orders that have none, from their ``items`` JSON: one line per item
# object, in item order, linked to the workspace's product whose SKU matches the item's
# (case-insensitive), else kept as a free line with the item's SKU and name. Quantities
# that are not positive numbers count as 1; unit prices that are not numbers are unknown.
# The upgrade to order lines (migration 0015) runs it over every order, the demo data over
# its workspace, ``createOrder`` / ``updateOrder`` over the order given ``items``.
ORDER_LINES_FROM_ITEMS = r"""
INSERT INTO order_lines (
    id, workspace_id, order_id, position, product_id, sku, name, quantity, unit_price,
    currency, created_at, updated_at
)
SELECT
    gen_random_uuid(), o.workspace_id, o.id, (item.ordinality - 1)::integer, p.id,
    left(NULLIF(btrim(item.value ->> 'sku'), ''), 64),
    left(COALESCE(NULLIF(btrim(item.value ->> 'name'), ''), p.name), 300),
    CASE WHEN (item.value ->> 'quantity') ~ '^\s*[0-9]{1,9}(\.[0-9]{1,3})?\s*$'
         THEN CASE WHEN (item.value ->> 'quantity')::numeric > 0
                   THEN (item.value ->> 'quantity')::numeric ELSE 1 END
         ELSE 1 END,
    CASE WHEN (item.value ->> 'unitPrice') ~ '^\s*[0-9]{1,12}(\.[0-9]+)?\s*$'
         THEN round((item.value ->> 'unitPrice')::numeric, 2) END,
    o.currency, o.created_at, o.updated_at
FROM orders o
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(o.items) = 'array' THEN o.items ELSE '[]'::jsonb END
) WITH ORDINALITY AS item(value, ordinality)
LEFT JOIN products p
    ON p.workspace_id = o.workspace_id
    AND jsonb_typeof(item.value) = 'object'
    AND lower(p.sku) = lower(btrim(item.value ->> 'sku'))
WHERE jsonb_typeof(item.value) = 'object'
    AND (CAST(:workspace_id AS uuid) IS NULL OR o.workspace_id = CAST(:workspace_id AS uuid))
    AND (CAST(:order_id AS uuid) IS NULL OR o.id = CAST(:order_id AS uuid))
    AND NOT EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id)
"""


def order_lines_from_items(
    *, workspace_id: uuid.UUID | None = None, order_id: uuid.UUID | None = None
) -> Any:
    """The statement of ``ORDER_LINES_FROM_ITEMS`` for every order, a workspace's orders,
    or one order."""
    return text(ORDER_LINES_FROM_ITEMS).bindparams(workspace_id=workspace_id, order_id=order_id)


async def lines_from_items(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
) -> None:
    """Run ``ORDER_LINES_FROM_ITEMS`` (see there)."""
    await session.execute(order_lines_from_items(workspace_id=workspace_id, order_id=order_id))
