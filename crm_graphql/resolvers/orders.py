"""Order fields and mutations: arguments to service calls."""

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    update_payload,
)
from crm_graphql.services import orders as order_service
from crm_graphql.services.errors import Invalid

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.customers import ArchiveInput
    from crm_graphql.schema.orders import (
        CreateOrderInput,
        OrderFilter,
        OrderOrder,
        UpdateOrderInput,
    )

_customers = "crm_graphql.schema.customers"
_orders = "crm_graphql.schema.orders"


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


async def orders(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["OrderFilter", strawberry.lazy(_orders)] | None = None,
    order_by: list[Annotated["OrderOrder", strawberry.lazy(_orders)]] | None = None,
    include_archived: bool = False,
) -> ConnectionValue:
    return await root_list(
        info, order_service.ORDERS, first, after, last, before, filter, order_by, include_archived
    )


async def lines(root: models.Order, info: Info) -> list[models.OrderLine]:
    return await info.context.loaders.order_lines.load(root.id)


async def line_product(root: models.OrderLine, info: Info) -> Any:
    return await by_id(info, models.Product, root.product_id)


async def create_order(
    info: Info,
    input: Annotated["CreateOrderInput", strawberry.lazy(_orders)],
) -> Payload:
    return await create_payload(info, "order", order_service.create_order, input, order_changes)


async def update_order(
    info: Info,
    input: Annotated["UpdateOrderInput", strawberry.lazy(_orders)],
) -> Payload:
    return await update_payload(
        info, "order", "Order", order_service.update_order, input, order_changes
    )


async def archive_order(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    return await archive_payload(info, "order", "Order", order_service.archive_order, input)
