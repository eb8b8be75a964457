"""Product fields and mutations: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.lists import ConnectionValue, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    update_payload,
)
from crm_graphql.services import products as product_service


async def products(info: Any, *args: Any) -> ConnectionValue:
    return await root_list(info, product_service.PRODUCTS, *args)


async def create_product(info: Any, input: Any) -> Payload:
    return await create_payload(
        info, "product", product_service.create_product, input, input_changes
    )


async def update_product(info: Any, input: Any) -> Payload:
    return await update_payload(info, "product", "Product", product_service.update_product, input)


async def archive_product(info: Any, input: Any) -> Payload:
    return await archive_payload(info, "product", "Product", product_service.archive_product, input)
