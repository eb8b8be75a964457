"""Order fields and mutations: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.services import orders as order_service

ORDER_IDS = {"customer_id": "Customer"}


def order_changes(input: Any) -> dict[str, Any]:
    return input_changes(input, ids=ORDER_IDS)


async def orders(info: Any, *args: Any) -> ConnectionValue:
    first, after, last, before, filter, order_by, include_archived = args
    return await root_list(
        info,
        order_service.ORDERS,
        filter=filter,
        order_by=order_by,
        first=first,
        after=after,
        last=last,
        before=before,
        include_archived=include_archived,
    )


async def customer(info: Any, root: models.Order) -> Any:
    return await by_id(info, models.Customer, root.customer_id)


async def create_order(info: Any, input: Any) -> Payload:
    # Arguments are converted inside the mutation so a bad ID becomes a payload error.
    return await mutate_payload(
        info, "order", lambda actor, s: order_service.create_order(actor, s, order_changes(input))
    )


async def update_order(info: Any, input: Any) -> Payload:
    id = decode_id(input.id, "Order")
    return await mutate_payload(
        info,
        "order",
        lambda actor, s: order_service.update_order(
            actor, s, id, order_changes(input), expected_version=input.expected_version
        ),
    )


async def archive_order(info: Any, input: Any) -> Payload:
    id = decode_id(input.id, "Order")
    return await mutate_payload(
        info,
        "order",
        lambda actor, s: order_service.archive_order(
            actor, s, id, expected_version=input.expected_version
        ),
    )
