"""Customer fields and mutations: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers import segments as segment_resolvers
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.lists import ConnectionValue, by_id, child_list, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    UpsertPayload,
    archive_payload,
    create_payload,
    mutate_payload,
    update_payload,
    upsert_payload,
)
from crm_graphql.services import activities as activity_service
from crm_graphql.services import conversations as conversation_service
from crm_graphql.services import customers as customer_service
from crm_graphql.services import deals as deal_service
from crm_graphql.services import orders as order_service

CUSTOMER_IDS = {"owner_id": "User", "company_id": "Company"}


def address_data(value: Any) -> dict[str, Any] | None:
    """An ``AddressInput`` (already a dict) stored with the camelCase keys of the API."""
    if value is None:
        return None
    keys = {"postal_code": "postalCode"}
    return {keys.get(k, k): v for k, v in value.items() if v is not None}


def customer_changes(input: Any) -> dict[str, Any]:
    changes = input_changes(input, ids=CUSTOMER_IDS)
    if "address" in changes:
        changes["address"] = address_data(changes["address"])
    return changes


async def customers(info: Any, *args: Any, segment_id: str | None = None) -> ConnectionValue:
    if segment_id is not None:
        return await segment_resolvers.customers_in_segment(info, segment_id, *args)
    return await root_list(info, customer_service.CUSTOMERS, *args)


async def company(info: Any, root: models.Customer) -> Any:
    return await by_id(info, models.Company, root.company_id)


async def owner(info: Any, root: models.Customer) -> Any:
    return await by_id(info, models.User, root.owner_id)


async def merged_into(info: Any, root: models.Customer) -> Any:
    return await by_id(info, models.Customer, root.merged_into_id)


async def deals(info: Any, root: models.Customer, *args: Any) -> ConnectionValue:
    return await child_list(info, deal_service.DEALS, "customer_id", root.id, *args)


async def activities(info: Any, root: models.Customer, *args: Any) -> ConnectionValue:
    return await child_list(info, activity_service.ACTIVITIES, "customer_id", root.id, *args)


async def orders(info: Any, root: models.Customer, *args: Any) -> ConnectionValue:
    return await child_list(info, order_service.ORDERS, "customer_id", root.id, *args)


async def conversations(info: Any, root: models.Customer, *args: Any) -> ConnectionValue:
    return await child_list(info, conversation_service.CONVERSATIONS, "customer_id", root.id, *args)


async def purchase_summary(info: Any, root: models.Customer) -> customer_service.PurchaseSummary:
    return await info.context.loaders.purchase_summary.load(root.id)  # type: ignore[no-any-return]


async def rfm(info: Any, root: models.Customer) -> Any:
    return await segment_resolvers.rfm_of(info, root)


async def create_customer(info: Any, input: Any) -> Payload:
    return await create_payload(
        info, "customer", customer_service.create_customer, input, customer_changes
    )


async def update_customer(info: Any, input: Any) -> Payload:
    return await update_payload(
        info, "customer", "Customer", customer_service.update_customer, input, customer_changes
    )


async def archive_customer(info: Any, input: Any) -> Payload:
    return await archive_payload(
        info, "customer", "Customer", customer_service.archive_customer, input
    )


async def merge_customers(info: Any, input: Any) -> Payload:
    survivor = decode_id(input.survivor_id, "Customer")
    merged = [decode_id(i, "Customer") for i in input.merged_ids]
    return await mutate_payload(
        info,
        "customer",
        lambda actor, s: customer_service.merge_customers(actor, s, survivor, merged),
    )


async def upsert_customers(info: Any, input: Any) -> UpsertPayload:
    return await upsert_payload(
        info, "customer", input.records, customer_changes, customer_service.upsert_customers
    )
