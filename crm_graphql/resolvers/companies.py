"""Company fields and mutations: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.customers import address_data
from crm_graphql.resolvers.lists import ConnectionValue, by_id, child_list, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    UpsertPayload,
    archive_payload,
    create_payload,
    update_payload,
    upsert_payload,
)
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
    return await root_list(info, company_service.COMPANIES, *args)


async def owner(info: Any, root: models.Company) -> Any:
    return await by_id(info, models.User, root.owner_id)


async def customers(info: Any, root: models.Company, *args: Any) -> ConnectionValue:
    return await child_list(info, customer_service.CUSTOMERS, "company_id", root.id, *args)


async def deals(info: Any, root: models.Company, *args: Any) -> ConnectionValue:
    return await child_list(info, deal_service.DEALS, "company_id", root.id, *args)


async def create_company(info: Any, input: Any) -> Payload:
    return await create_payload(
        info, "company", company_service.create_company, input, company_changes
    )


async def update_company(info: Any, input: Any) -> Payload:
    return await update_payload(
        info, "company", "Company", company_service.update_company, input, company_changes
    )


async def archive_company(info: Any, input: Any) -> Payload:
    return await archive_payload(info, "company", "Company", company_service.archive_company, input)


async def upsert_companies(info: Any, input: Any) -> UpsertPayload:
    return await upsert_payload(
        info, "company", input.records, company_changes, company_service.upsert_companies
    )
