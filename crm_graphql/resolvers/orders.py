"""Order fields and mutations: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    update_payload,
)
from crm_graphql.services import orders as order_service
from crm_graphql.services.errors import Invalid

ORDER_IDS = {"customer_id": "Customer"}


def order_changes(input: Any) -> dict[str, Any]:
    changes = input_changes(input, ids=ORDER_IDS)
    for index, line in enumerate(changes.get("lines") or []):
        if line.get("product_id") is not None:
            product_id = decode_id(line["product_id"], "Product")
            if product_id is None:
                raise Invalid("No product with this ID", f"lines.{index}.productId")
            line["product_id"] = product_id
    return changes


async def orders(info: Any, *args: Any) -> ConnectionValue:
    return await root_list(info, order_service.ORDERS, *args)


async def customer(info: Any, root: models.Order) -> Any:
    return await by_id(info, models.Customer, root.customer_id)


async def lines(info: Any, root: models.Order) -> list[models.OrderLine]:
    return await info.context.loaders.order_lines.load(root.id)


async def line_product(info: Any, root: models.OrderLine) -> Any:
    return await by_id(info, models.Product, root.product_id)


async def create_order(info: Any, input: Any) -> Payload:
    return await create_payload(info, "order", order_service.create_order, input, order_changes)


async def update_order(info: Any, input: Any) -> Payload:
    return await update_payload(
        info, "order", "Order", order_service.update_order, input, order_changes
    )


async def archive_order(info: Any, input: Any) -> Payload:
    return await archive_payload(info, "order", "Order", order_service.archive_order, input)
