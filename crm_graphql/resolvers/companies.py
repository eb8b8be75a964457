"""Company fields and mutations: arguments to service calls."""

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.customers import address_data
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    UpsertPayload,
    archive_payload,
    create_payload,
    update_payload,
    upsert_payload,
)
from crm_graphql.services import companies as company_service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.companies import (
        CompanyFilter,
        CompanyOrder,
        CreateCompanyInput,
        UpdateCompanyInput,
        UpsertCompaniesInput,
    )
    from crm_graphql.schema.customers import ArchiveInput

_companies = "crm_graphql.schema.companies"
_customers = "crm_graphql.schema.customers"
_deals = "crm_graphql.schema.deals"


COMPANY_IDS = {"owner_id": "User"}


def company_changes(input: Any) -> dict[str, Any]:
    changes = input_changes(input, ids=COMPANY_IDS)
    if "address" in changes:
        changes["address"] = address_data(changes["address"])
    return changes


async def companies(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["CompanyFilter", strawberry.lazy(_companies)] | None = None,
    order_by: list[Annotated["CompanyOrder", strawberry.lazy(_companies)]] | None = None,
    include_archived: bool = False,
) -> ConnectionValue:
    return await root_list(
        info,
        company_service.COMPANIES,
        first,
        after,
        last,
        before,
        filter,
        order_by,
        include_archived,
    )


async def create_company(
    info: Info,
    input: Annotated["CreateCompanyInput", strawberry.lazy(_companies)],
) -> Payload:
    return await create_payload(
        info, "company", company_service.create_company, input, company_changes
    )


async def update_company(
    info: Info,
    input: Annotated["UpdateCompanyInput", strawberry.lazy(_companies)],
) -> Payload:
    return await update_payload(
        info, "company", "Company", company_service.update_company, input, company_changes
    )


async def archive_company(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    return await archive_payload(info, "company", "Company", company_service.archive_company, input)


async def upsert_companies(
    info: Info,
    input: Annotated["UpsertCompaniesInput", strawberry.lazy(_companies)],
) -> UpsertPayload:
    return await upsert_payload(
        info, "company", input.records, company_changes, company_service.upsert_companies
    )
