"""Customers in GraphQL: the type, its filter and order inputs, mutations' inputs/payloads."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.resolvers import customers as resolve
from crm_graphql.resolvers import privacy as resolve_privacy
from crm_graphql.resolvers import recommendations as resolve_recommendations
from crm_graphql.resolvers.mutations import UpsertPayload, UpsertResultValue
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import (
    CustomFieldFilter,
    DateTimeFilter,
    EnumFilter,
    IDFilter,
    StringFilter,
    TagsFilter,
)
from crm_graphql.schema.relay import (
    Connection,
    Node,
    OrderDirection,
    UpsertRecordResult,
    UpsertSummary,
    UserError,
    read_model,
    upserts_of,
)
from crm_graphql.schema.scalars import (
    JSON,
    Address,
    AddressInput,
    LifecycleStage,
    Money,
    RfmSegment,
    address_of,
)

if TYPE_CHECKING:
    from crm_graphql.schema.recommendations import ChurnRisk, Recommendation
    from crm_graphql.schema.segments import CustomerRfm

_activities = "crm_graphql.schema.activities"
_companies = "crm_graphql.schema.companies"
_conversations = "crm_graphql.schema.conversations"
_deals = "crm_graphql.schema.deals"
_orders = "crm_graphql.schema.orders"
_recommendations = "crm_graphql.schema.recommendations"
_users = "crm_graphql.schema.users"


@strawberry.type(description="What a customer has bought (paid and fulfilled orders).")
class PurchaseSummary:
    order_count: int = strawberry.field(description="Number of paid or fulfilled orders.")
    totals: list[Money] = strawberry.field(description="Total spent, one entry per currency.")
    first_order_at: datetime | None = strawberry.field(description="Time of the first order.")
    last_order_at: datetime | None = strawberry.field(description="Time of the latest order.")


@strawberry.type(description="A person the business sells to or serves.")
@read_model("Customer")
class Customer(Node):
    is_type_of = rows_of("Customer")

    name: str = strawberry.field(description="Full name.")
    email: str | None = strawberry.field(description="Email, unique in the workspace.")
    phone: str | None = strawberry.field(description="Phone number as entered.")
    external_id: str | None = strawberry.field(
        description="The customer's id in another system (imports and sync match by it); "
        "unique in the workspace."
    )
    lifecycle_stage: LifecycleStage = strawberry.field(description="Funnel position.")
    tags: list[str] = strawberry.field(description="Free-form labels.")
    needs: list[str] = strawberry.field(description="What the customer is looking for.")
    preferences: JSON = strawberry.field(description="Preferences (channel, language ...).")
    last_activity_at: datetime | None = strawberry.field(description="Latest activity time.")
    created_at: datetime = strawberry.field(description="When the customer was added.")
    updated_at: datetime = strawberry.field(description="Last change.")
    archived_at: datetime | None = strawberry.field(description="Set when archived or merged.")
    erased_at: datetime | None = strawberry.field(
        description="Set when the customer's personal data was erased (eraseCustomer)."
    )
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")

    custom_fields = strawberry.field(
        resolver=resolve_privacy.custom_fields,
        graphql_type=JSON,
        description="Workspace-defined fields. Values of sensitive fields (see "
        "`sensitiveCustomFields`) are encrypted at rest and null for viewers and API keys.",
    )

    @strawberry.field(description="Postal address.")
    def address(self) -> Address | None:
        return address_of(self.address)

    purchase_summary = strawberry.field(
        resolver=resolve.purchase_summary,
        graphql_type=PurchaseSummary,
        description="Totals of what the customer has bought.",
    )

    rfm = strawberry.field(
        resolver=resolve.rfm,
        graphql_type=Annotated["CustomerRfm", strawberry.lazy("crm_graphql.schema.segments")]
        | None,
        description="Recency, frequency and monetary scores, segment and lifetime value "
        "(null without paid or fulfilled orders, or when archived).",
    )

    recommendations = strawberry.field(
        resolver=resolve_recommendations.recommendations,
        graphql_type=list[Annotated["Recommendation", strawberry.lazy(_recommendations)]],
        description="Products this customer has not bought that customers with similar "
        "purchases bought, best first, each with a score and a reason; the most popular "
        "products when there is no history to go by.",
    )

    churn_risk = strawberry.field(
        resolver=resolve_recommendations.churn_risk,
        graphql_type=Annotated["ChurnRisk", strawberry.lazy(_recommendations)] | None,
        description="How likely the customer is to stop buying: days since the last order "
        "against their own usual interval, order value trend, open conversations, recent "
        "contact. Null with fewer than two orders.",
    )


@strawberry.input(description="Conditions on customers; fields combine with AND.")
class CustomerFilter:
    and_: list[CustomerFilter] | None = strawberry.field(default=None, name="and")
    or_: list[CustomerFilter] | None = strawberry.field(default=None, name="or")
    not_: CustomerFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    name: StringFilter | None = None
    email: StringFilter | None = None
    phone: StringFilter | None = None
    lifecycle_stage: EnumFilter[LifecycleStage] | None = None
    owner_id: IDFilter | None = None
    company_id: IDFilter | None = None
    tags: TagsFilter | None = None
    needs: TagsFilter | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None
    last_activity_at: DateTimeFilter | None = None
    custom_fields: list[CustomFieldFilter] | None = strawberry.field(
        default=None,
        description="Conditions on typed custom fields (`customFieldDefinitions`), all "
        "of which hold.",
    )
    first_order_at: DateTimeFilter | None = strawberry.field(
        default=None, description="Time of the first paid or fulfilled order."
    )
    ordered_at: DateTimeFilter | None = strawberry.field(
        default=None,
        description="Has a paid or fulfilled order placed within all of these bounds.",
    )
    rfm_segment: EnumFilter[RfmSegment] | None = strawberry.field(
        default=None,
        description="Built-in RFM segment (customers without orders have none: `ne` and "
        "`notIn` include them).",
    )


@strawberry.enum(description="Fields customers can be ordered by.")
class CustomerOrderField(enum.Enum):
    NAME = "name"
    EMAIL = "email"
    LIFECYCLE_STAGE = "lifecycle_stage"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    LAST_ACTIVITY_AT = "last_activity_at"


@strawberry.input(description="One sort key for customers.")
class CustomerOrder:
    field: CustomerOrderField | None = strawberry.field(
        default=None, description="A built-in field (or give `customField`)."
    )
    custom_field: str | None = strawberry.field(
        default=None,
        description="The key of a custom field of customers (not a multi select), instead "
        "of `field`.",
    )
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="A new customer.")
class CreateCustomerInput:
    name: str
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    external_id: str | None = strawberry.UNSET
    address: AddressInput | None = strawberry.UNSET
    lifecycle_stage: LifecycleStage | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET
    company_id: strawberry.ID | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    needs: list[str] | None = strawberry.UNSET
    preferences: JSON | None = strawberry.UNSET
    custom_fields: JSON | None = strawberry.UNSET


@strawberry.input(description="Changes to a customer; fields left out stay as they are.")
class UpdateCustomerInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the customer's version differs."
    )
    name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    external_id: str | None = strawberry.UNSET
    address: AddressInput | None = strawberry.UNSET
    lifecycle_stage: LifecycleStage | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET
    company_id: strawberry.ID | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    needs: list[str] | None = strawberry.UNSET
    preferences: JSON | None = strawberry.UNSET
    custom_fields: JSON | None = strawberry.UNSET


@strawberry.input(description="Which record to archive.")
class ArchiveInput:
    id: strawberry.ID = strawberry.field(
        description="The record to archive (its type follows from the mutation)."
    )
    expected_version: int | None = None


@strawberry.input(description="Duplicates to fold into one surviving customer.")
class MergeCustomersInput:
    survivor_id: strawberry.ID = strawberry.field(description="The customer that remains.")
    merged_ids: list[strawberry.ID] = strawberry.field(description="Customers merged into it.")


@strawberry.type(description="Result of a customer mutation.")
class CustomerPayload:
    customer: Customer | None = strawberry.field(
        description="The customer after the change (null when nothing changed)."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.input(description="Customers to create or update, matched by email.")
class UpsertCustomersInput:
    records: list[CreateCustomerInput] = strawberry.field(
        description="1 to 1,000 customers. A record whose email (case ignored) a customer "
        "already has updates that customer with the fields it gives; any other creates one."
    )


@strawberry.type(description="What became of one record of `upsertCustomers`.")
class UpsertCustomerResult(UpsertRecordResult):
    is_type_of = upserts_of(UpsertResultValue)

    customer: Customer | None = strawberry.field(description="Null when the record failed.")


@strawberry.type(description="Result of `upsertCustomers`: one result per record, in order.")
class UpsertCustomersPayload(UpsertSummary):
    is_type_of = upserts_of(UpsertPayload)

    results: list[UpsertCustomerResult] = strawberry.field(description="In the records' order.")


@strawberry.type
class CustomerQuery:
    customers = strawberry.field(
        resolver=resolve.customers,
        graphql_type=Connection[Customer],
        description="Customers of the workspace, newest first unless ordered.",
    )


@strawberry.type
class CustomerMutation:
    create_customer = strawberry.mutation(
        resolver=resolve.create_customer,
        graphql_type=CustomerPayload,
        description="Add a customer.",
    )

    update_customer = strawberry.mutation(
        resolver=resolve.update_customer,
        graphql_type=CustomerPayload,
        description="Change a customer's fields.",
    )

    archive_customer = strawberry.mutation(
        resolver=resolve.archive_customer,
        graphql_type=CustomerPayload,
        description="Hide a customer from lists (history is kept).",
    )

    merge_customers = strawberry.mutation(
        resolver=resolve.merge_customers,
        graphql_type=CustomerPayload,
        description="Merge duplicates into one customer, moving their deals, activities, "
        "orders and conversations to it.",
    )

    upsert_customers = strawberry.mutation(
        resolver=resolve.upsert_customers,
        graphql_type=UpsertCustomersPayload,
        description="Create or update up to 1,000 customers in one call, matched by email "
        "(case ignored). Each record succeeds or fails on its own (a failed one changes "
        "nothing) and is audited like `createCustomer` / `updateCustomer`. Counted against "
        "the caller's rate limit by records, not requests: a call of 500 records spends 500.",
    )
