"""Bulk changes in GraphQL (customers, companies, deals): each kind's change input, its
preview, the query that previews and the mutation that starts the job. The fields an
input offers are those its kind's service target can set (``services/bulk.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.resolvers import bulk as resolve
from crm_graphql.schema.scalars import JSON, LifecycleStage

if TYPE_CHECKING:
    from crm_graphql.schema.companies import Company
    from crm_graphql.schema.customers import Customer
    from crm_graphql.schema.deals import Deal
    from crm_graphql.schema.jobs import JobPayload

_customers = "crm_graphql.schema.customers"
_companies = "crm_graphql.schema.companies"
_deals = "crm_graphql.schema.deals"
_jobs = "crm_graphql.schema.jobs"


@strawberry.input(
    description="A change made to every customer of a filter or segment: tags added or "
    "removed, an owner, a lifecycle stage, custom fields, archiving (any together)."
)
class BulkCustomerChangeInput:
    filter: JSON | None = strawberry.field(
        default=None,
        description="Which customers: a `CustomerFilter` as JSON, exactly as the `customers` "
        "list's `filter` argument takes it. All when left out.",
    )
    segment_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only the members of this segment, within `filter`."
    )
    add_tags: list[str] | None = strawberry.field(
        default=None, description="Tags to add (kept once; the others stay)."
    )
    remove_tags: list[str] | None = strawberry.field(default=None, description="Tags to remove.")
    owner_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="The owner to assign; null removes the owner; left out: unchanged.",
    )
    lifecycle_stage: LifecycleStage | None = strawberry.field(
        default=None, description="The lifecycle stage to set."
    )
    custom_fields: JSON | None = strawberry.field(
        default=None,
        description="Custom field values to set, merged over each customer's own (null "
        "removes a value).",
    )
    archive: bool = strawberry.field(
        default=False, description="Archive the customers (after the other changes)."
    )


@strawberry.input(
    description="A change made to every company of a filter: tags added or removed, an "
    "owner, custom fields, archiving (any together)."
)
class BulkCompanyChangeInput:
    filter: JSON | None = strawberry.field(
        default=None,
        description="Which companies: a `CompanyFilter` as JSON, exactly as the `companies` "
        "list's `filter` argument takes it. All when left out.",
    )
    add_tags: list[str] | None = strawberry.field(
        default=None, description="Tags to add (kept once; the others stay)."
    )
    remove_tags: list[str] | None = strawberry.field(default=None, description="Tags to remove.")
    owner_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="The owner to assign; null removes the owner; left out: unchanged.",
    )
    custom_fields: JSON | None = strawberry.field(
        default=None,
        description="Custom field values to set, merged over each company's own (null "
        "removes a value).",
    )
    archive: bool = strawberry.field(
        default=False, description="Archive the companies (after the other changes)."
    )


@strawberry.input(
    description="A change made to every deal of a filter: an owner, a stage of the deals' "
    "pipeline, custom fields, archiving (any together)."
)
class BulkDealChangeInput:
    filter: JSON | None = strawberry.field(
        default=None,
        description="Which deals: a `DealFilter` as JSON, exactly as the `deals` list's "
        "`filter` argument takes it. All when left out.",
    )
    owner_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="The owner to assign; null removes the owner; left out: unchanged.",
    )
    stage_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The stage to move the deals to, as `moveDeal` does (board history, "
        "activity, event). It must be a live stage of the pipeline of every deal of the "
        "set: filter by `pipelineId`.",
    )
    custom_fields: JSON | None = strawberry.field(
        default=None,
        description="Custom field values to set, merged over each deal's own (null removes "
        "a value).",
    )
    archive: bool = strawberry.field(
        default=False, description="Archive the deals (after the other changes)."
    )


@strawberry.type(description="What a bulk change of customers would touch.")
class BulkChangePreview:
    count: int = strawberry.field(description="How many customers the change would go over.")
    customers: list[Annotated[Customer, strawberry.lazy(_customers)]] = strawberry.field(
        description="The first of them, in the list's order (newest first)."
    )


@strawberry.type(description="What a bulk change of companies would touch.")
class BulkCompanyChangePreview:
    count: int = strawberry.field(description="How many companies the change would go over.")
    companies: list[Annotated[Company, strawberry.lazy(_companies)]] = strawberry.field(
        description="The first of them, in the list's order (by name)."
    )


@strawberry.type(description="What a bulk change of deals would touch.")
class BulkDealChangePreview:
    count: int = strawberry.field(description="How many deals the change would go over.")
    deals: list[Annotated[Deal, strawberry.lazy(_deals)]] = strawberry.field(
        description="The first of them, in the list's order (newest first)."
    )


_PREVIEWS = (
    "How many {0} a bulk change would go over, and the first of them, checked as the change "
    "is (the caller's permissions, its values; nothing is changed)."
)
_STARTS = (
    "Start a bulk change of {0} as a job (kind `bulk_change_{0}`): checked like its "
    "preview, then run in batches, each {1} changed through the same rules as {2} and "
    "audited on its own (action `{3}`, with the job's request id; one that fails keeps its "
    "values and is listed in the job's `errors`). Follow it with `job` or `jobProgress`; "
    "`cancelJob` stops it after the current batch (what is done stays)."
)
_Job = Annotated["JobPayload", strawberry.lazy(_jobs)]


@strawberry.type
class BulkQuery:
    bulk_customer_change_preview = strawberry.field(
        resolver=resolve.bulk_customer_change_preview,
        graphql_type=BulkChangePreview,
        description=_PREVIEWS.format("customers"),
    )
    bulk_company_change_preview = strawberry.field(
        resolver=resolve.bulk_company_change_preview,
        graphql_type=BulkCompanyChangePreview,
        description=_PREVIEWS.format("companies"),
    )
    bulk_deal_change_preview = strawberry.field(
        resolver=resolve.bulk_deal_change_preview,
        graphql_type=BulkDealChangePreview,
        description=_PREVIEWS.format("deals"),
    )


@strawberry.type
class BulkMutation:
    start_bulk_customer_change = strawberry.mutation(
        resolver=resolve.start_bulk_customer_change,
        graphql_type=_Job,
        description=_STARTS.format(
            "customers", "customer", "`updateCustomer` / `archiveCustomer`", "bulkChangeCustomers"
        ),
    )
    start_bulk_company_change = strawberry.mutation(
        resolver=resolve.start_bulk_company_change,
        graphql_type=_Job,
        description=_STARTS.format(
            "companies", "company", "`updateCompany` / `archiveCompany`", "bulkChangeCompanies"
        ),
    )
    start_bulk_deal_change = strawberry.mutation(
        resolver=resolve.start_bulk_deal_change,
        graphql_type=_Job,
        description=_STARTS.format(
            "deals", "deal", "`updateDeal` / `moveDeal` / `archiveDeal`", "bulkChangeDeals"
        ),
    )
