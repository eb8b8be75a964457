"""Customer fields and mutations: arguments to service calls."""

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers import segments as segment_resolvers
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    UpsertPayload,
    archive_payload,
    create_payload,
    mutate_payload,
    update_payload,
    upsert_payload,
)
from crm_graphql.services import customers as customer_service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.customers import (
        ArchiveInput,
        CreateCustomerInput,
        CustomerFilter,
        CustomerOrder,
        MergeCustomersInput,
        UpdateCustomerInput,
        UpsertCustomersInput,
    )

_activities = "crm_graphql.schema.activities"
_conversations = "crm_graphql.schema.conversations"
_customers = "crm_graphql.schema.customers"
_deals = "crm_graphql.schema.deals"
_orders = "crm_graphql.schema.orders"


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


async def customers(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["CustomerFilter", strawberry.lazy(_customers)] | None = None,
    order_by: list[Annotated["CustomerOrder", strawberry.lazy(_customers)]] | None = None,
    include_archived: bool = False,
    segment_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(
            description="Only the members of this segment (saved or built-in), within `filter`."
        ),
    ] = None,
) -> ConnectionValue:
    if segment_id is not None:
        return await segment_resolvers.customers_in_segment(
            info,
            segment_id,
            first,
            after,
            last,
            before,
            filter,
            order_by,
            include_archived,
        )
    return await root_list(
        info,
        customer_service.CUSTOMERS,
        first,
        after,
        last,
        before,
        filter,
        order_by,
        include_archived,
    )


async def purchase_summary(root: models.Customer, info: Info) -> customer_service.PurchaseSummary:
    return await info.context.loaders.purchase_summary.load(root.id)


async def rfm(root: models.Customer, info: Info) -> Any:
    return await segment_resolvers.rfm_of(info, root)


async def create_customer(
    info: Info,
    input: Annotated["CreateCustomerInput", strawberry.lazy(_customers)],
) -> Payload:
    return await create_payload(
        info, "customer", customer_service.create_customer, input, customer_changes
    )


async def update_customer(
    info: Info,
    input: Annotated["UpdateCustomerInput", strawberry.lazy(_customers)],
) -> Payload:
    return await update_payload(
        info, "customer", "Customer", customer_service.update_customer, input, customer_changes
    )


async def archive_customer(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    return await archive_payload(
        info, "customer", "Customer", customer_service.archive_customer, input
    )


async def merge_customers(
    info: Info,
    input: Annotated["MergeCustomersInput", strawberry.lazy(_customers)],
) -> Payload:
    survivor = decode_id(input.survivor_id, "Customer")
    merged = [decode_id(i, "Customer") for i in input.merged_ids]
    return await mutate_payload(
        info,
        "customer",
        lambda actor, s: customer_service.merge_customers(actor, s, survivor, merged),
    )


async def upsert_customers(
    info: Info,
    input: Annotated["UpsertCustomersInput", strawberry.lazy(_customers)],
) -> UpsertPayload:
    return await upsert_payload(
        info, "customer", input.records, customer_changes, customer_service.upsert_customers
    )
