"""Customer fields and mutations: arguments to service calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError

from crm_graphql import models
from crm_graphql.resolvers import segments as segment_resolvers
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.lists import ConnectionValue, by_id, child_list, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    UserErrorValue,
    archive_payload,
    create_payload,
    mutate,
    mutate_payload,
    update_payload,
    user_errors,
)
from crm_graphql.services import activities as activity_service
from crm_graphql.services import conversations as conversation_service
from crm_graphql.services import customers as customer_service
from crm_graphql.services import deals as deal_service
from crm_graphql.services import orders as order_service
from crm_graphql.services import ratelimit
from crm_graphql.services.errors import DomainError, Invalid

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


@dataclass
class UpsertResultValue:
    index: int
    customer: models.Customer | None
    created: bool
    errors: list[UserErrorValue]


@dataclass
class UpsertPayload:
    results: list[UpsertResultValue]
    created: int
    updated: int
    failed: int
    errors: list[UserErrorValue]


def _record(input: Any) -> dict[str, Any] | DomainError:
    """A record's fields, or the error its IDs give (that record fails, not the call)."""
    try:
        return customer_changes(input)
    except DomainError as error:
        return error


async def upsert_customers(info: Any, input: Any) -> UpsertPayload:
    context = info.context
    actor = context.require_actor()
    records = [_record(r) for r in input.records]
    # The request counted one against the caller's rate limit; the other records count too.
    bucket = ratelimit.actor_bucket(actor, context.client_ip, context.app.settings)
    if bucket is not None and len(records) > bucket.limit:
        # No wait would let it through: say so rather than "retry in N s" forever.
        too_many = Invalid(
            f"At most {bucket.limit} records a call for this caller (its rate limit a minute)",
            "records",
        )
        return UpsertPayload([], 0, 0, 0, user_errors([too_many]))
    if bucket is not None and 1 < len(records) <= customer_service.MAX_UPSERT_RECORDS:
        decision = await context.app.limiter.hit(bucket, len(records) - 1)
        if not decision.allowed:
            limited = ratelimit.RateLimited(
                decision.retry_after,
                f"Rate limit of {bucket.limit} records a minute exceeded by {len(records)} "
                f"records; retry in {decision.retry_after} s",
            )
            raise GraphQLError(
                limited.message,
                extensions={"code": limited.code, "retryAfter": decision.retry_after},
            )
    outcome = await mutate(
        info, lambda actor, s: customer_service.upsert_customers(actor, s, records)
    )
    results = [
        UpsertResultValue(i, r.customer, r.created, user_errors(r.errors))
        for i, r in enumerate(outcome.value or [])
    ]
    return UpsertPayload(
        results=results,
        created=sum(1 for r in results if r.customer is not None and r.created),
        updated=sum(1 for r in results if r.customer is not None and not r.created),
        failed=sum(1 for r in results if r.customer is None),
        errors=user_errors(outcome.errors),
    )
