"""Product fields and mutations: arguments to service calls."""

from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    update_payload,
)
from crm_graphql.services import products as product_service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.customers import ArchiveInput
    from crm_graphql.schema.products import (
        CreateProductInput,
        ProductFilter,
        ProductOrder,
        UpdateProductInput,
    )

_customers = "crm_graphql.schema.customers"
_products = "crm_graphql.schema.products"


async def products(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["ProductFilter", strawberry.lazy(_products)] | None = None,
    order_by: list[Annotated["ProductOrder", strawberry.lazy(_products)]] | None = None,
    include_archived: bool = False,
) -> ConnectionValue:
    return await root_list(
        info,
        product_service.PRODUCTS,
        first,
        after,
        last,
        before,
        filter,
        order_by,
        include_archived,
    )


async def create_product(
    info: Info,
    input: Annotated["CreateProductInput", strawberry.lazy(_products)],
) -> Payload:
    return await create_payload(
        info, "product", product_service.create_product, input, input_changes
    )


async def update_product(
    info: Info,
    input: Annotated["UpdateProductInput", strawberry.lazy(_products)],
) -> Payload:
    return await update_payload(info, "product", "Product", product_service.update_product, input)


async def archive_product(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    return await archive_payload(info, "product", "Product", product_service.archive_product, input)
