"""Company fields and mutations: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.customers import address_data
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.lists import ConnectionValue, by_id, child_list, root_list
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.services import companies as company_service
from crm_graphql.services import customers as customer_service
from crm_graphql.services import deals as deal_service

COMPANY_IDS = {"owner_id": "User"}


def company_changes(input: Any) -> dict[str, Any]:
    changes = input_changes(input, ids=COMPANY_IDS)
    if "address" in changes:
        changes["address"] = address_data(changes["address"])
    return changes


async def companies(info: Any, *args: Any) -> ConnectionValue:
    first, after, last, before, filter, order_by, include_archived = args
    return await root_list(
        info,
        company_service.COMPANIES,
        filter=filter,
        order_by=order_by,
        first=first,
        after=after,
        last=last,
        before=before,
        include_archived=include_archived,
    )


async def owner(info: Any, root: models.Company) -> Any:
    return await by_id(info, models.User, root.owner_id)


async def customers(info: Any, root: models.Company, *args: Any) -> ConnectionValue:
    first, after, filter, order_by = args
    return await child_list(
        info,
        customer_service.CUSTOMERS,
        "company_id",
        root.id,
        filter=filter,
        order_by=order_by,
        first=first,
        after=after,
    )


async def deals(info: Any, root: models.Company, *args: Any) -> ConnectionValue:
    first, after, filter, order_by = args
    return await child_list(
        info,
        deal_service.DEALS,
        "company_id",
        root.id,
        filter=filter,
        order_by=order_by,
        first=first,
        after=after,
    )


async def create_company(info: Any, input: Any) -> Payload:
    # Arguments are converted inside the mutation so a bad ID becomes a payload error.
    return await mutate_payload(
        info,
        "company",
        lambda actor, s: company_service.create_company(actor, s, company_changes(input)),
    )


async def update_company(info: Any, input: Any) -> Payload:
    id = decode_id(input.id, "Company")
    return await mutate_payload(
        info,
        "company",
        lambda actor, s: company_service.update_company(
            actor, s, id, company_changes(input), expected_version=input.expected_version
        ),
    )


async def archive_company(info: Any, input: Any) -> Payload:
    id = decode_id(input.id, "Company")
    return await mutate_payload(
        info,
        "company",
        lambda actor, s: company_service.archive_company(
            actor, s, id, expected_version=input.expected_version
        ),
    )
