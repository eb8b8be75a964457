"""Bulk changes of customers in GraphQL: the change, and its preview."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.resolvers import bulk as resolve
from crm_graphql.schema.scalars import JSON, LifecycleStage

if TYPE_CHECKING:
    from crm_graphql.schema.customers import Customer
    from crm_graphql.schema.jobs import JobPayload

_customers = "crm_graphql.schema.customers"


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


@strawberry.type(description="What a bulk change would touch.")
class BulkChangePreview:
    count: int = strawberry.field(description="How many customers the change would go over.")
    customers: list[Annotated[Customer, strawberry.lazy(_customers)]] = strawberry.field(
        description="The first of them, in the list's order (newest first)."
    )


@strawberry.type
class BulkQuery:
    bulk_customer_change_preview = strawberry.field(
        resolver=resolve.bulk_customer_change_preview,
        graphql_type=BulkChangePreview,
        description="How many customers a bulk change would go over, and the first of them, "
        "checked against the caller's permissions for the change (nothing is changed).",
    )


@strawberry.type
class BulkMutation:
    start_bulk_customer_change = strawberry.mutation(
        resolver=resolve.start_bulk_customer_change,
        graphql_type=Annotated["JobPayload", strawberry.lazy("crm_graphql.schema.jobs")],
        description="Start a bulk change of customers as a job (kind `bulk_change_customers`): "
        "checked like its preview, then run in batches, each customer changed and audited "
        "on its own (action `bulkChangeCustomers`; one that fails keeps its values and is "
        "listed in the job's `errors`). Follow it with `job` or `jobProgress`; `cancelJob` "
        "stops it after the current batch (what is done stays).",
    )
