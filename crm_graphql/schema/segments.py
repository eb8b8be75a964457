"""Segments and the customer report in GraphQL: saved and built-in segments, RFM scores,
lifetime value and cohorts."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.types import Info

from crm_graphql.global_ids import to_global_id
from crm_graphql.resolvers import segments as resolve
from crm_graphql.schema.customers import Customer, CustomerFilter
from crm_graphql.schema.filters import DateTimeFilter, IDFilter, StringFilter
from crm_graphql.schema.insight import DrillDown
from crm_graphql.schema.relay import Connection, Node, OrderDirection, UserError
from crm_graphql.schema.scalars import JSON, Money, RfmSegment

if TYPE_CHECKING:
    from crm_graphql.schema.users import User

_users = "crm_graphql.schema.users"


@strawberry.type(
    description="A saved customer filter (shared with the workspace or private to its "
    "owner), or a built-in RFM segment. Membership is evaluated when read."
)
class Segment(Node):
    @classmethod
    def is_type_of(cls, obj: Any, info: Info) -> bool:
        return resolve.is_segment(obj)

    @strawberry.field(description="Opaque global ID; pass it to `customers(segmentId:)`.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Segment", self.id))

    name: str = strawberry.field(description="Segment name.")
    description: str | None = strawberry.field(description="What the segment is for.")
    filter: JSON | None = strawberry.field(
        description="The saved CustomerFilter, as passed to `customers(filter:)` (null for "
        "built-in segments)."
    )
    shared: bool = strawberry.field(
        description="Visible to the whole workspace; else only to its owner."
    )
    built_in: bool = strawberry.field(description="A built-in RFM segment (cannot change).")
    rfm_segment: RfmSegment | None = strawberry.field(
        description="The RFM segment a built-in segment stands for."
    )
    archived_at: datetime | None = strawberry.field(description="Set when archived.")
    created_at: datetime | None = strawberry.field(
        description="When the segment was saved (null for built-in segments)."
    )
    updated_at: datetime | None = strawberry.field(
        description="Last change (null for built-in segments)."
    )
    version: int | None = strawberry.field(
        description="Pass as `expectedVersion` to update safely (null for built-in segments)."
    )

    owner = strawberry.field(
        resolver=resolve.owner,
        graphql_type=Annotated["User", strawberry.lazy(_users)] | None,
        description="The user who saved the segment.",
    )

    customers = strawberry.field(
        resolver=resolve.segment_customers,
        graphql_type=Connection[Customer],
        description="The segment's customers now, paged like `customers`.",
    )

    @strawberry.field(
        description="The `customers` filter that lists this segment's customers, within "
        "`filter` when given."
    )
    def drill_down(self, filter: CustomerFilter | None = None) -> DrillDown:
        return resolve.segment_drill_down(self, filter)


@strawberry.input(description="Conditions on segments; fields combine with AND.")
class SegmentFilter:
    built_in: bool | None = strawberry.field(
        default=None,
        description="true: built-in segments only; false: saved ones only. Any other "
        "field lists saved segments only.",
    )
    id: IDFilter | None = None
    name: StringFilter | None = None
    shared: bool | None = None
    owner_id: IDFilter | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields saved segments can be ordered by.")
class SegmentOrderField(enum.Enum):
    NAME = "name"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


@strawberry.input(description="One sort key for saved segments.")
class SegmentOrder:
    field: SegmentOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="A new segment.")
class CreateSegmentInput:
    name: str
    description: str | None = strawberry.UNSET
    filter: JSON = strawberry.field(
        description="A CustomerFilter, as passed to `customers(filter:)`."
    )
    shared: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Visible to the whole workspace (default false)."
    )


@strawberry.input(description="Changes to a segment; fields left out stay as they are.")
class UpdateSegmentInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the segment's version differs."
    )
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    filter: JSON | None = strawberry.UNSET
    shared: bool | None = strawberry.UNSET


@strawberry.type(description="Result of a segment mutation.")
class SegmentPayload:
    segment: Segment | None = strawberry.field(
        description="The segment after the change (null when nothing changed)."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type(
    description="A customer's recency, frequency and monetary scores (1 = lowest, 5 = "
    "highest quintile among the workspace's customers with orders) and segment."
)
class CustomerRfm:
    recency: int = strawberry.field(description="Days since the latest paid or fulfilled order.")
    frequency: int = strawberry.field(description="Number of paid or fulfilled orders.")
    monetary: Money = strawberry.field(
        description="Total spent in the customer's primary currency (the currency of most "
        "of their orders)."
    )
    r_score: int = strawberry.field(description="Recency quintile (5 = most recent).")
    f_score: int = strawberry.field(description="Frequency quintile.")
    m_score: int = strawberry.field(
        description="Monetary quintile among customers of the same primary currency."
    )
    fm_score: int = strawberry.field(description="(fScore + mScore) / 2, rounded half up.")
    segment: RfmSegment = strawberry.field(description="The built-in segment of (R, FM).")
    first_order_at: datetime = strawberry.field(description="First paid or fulfilled order.")
    last_order_at: datetime = strawberry.field(description="Latest paid or fulfilled order.")
    lifetime_value: Money = strawberry.field(
        description="Customer lifetime value estimate: average order value (primary "
        "currency) x orders per year (all orders / years between the first and latest "
        "order, at least one) x 3 expected years, rounded to cents."
    )

    @strawberry.field(description="The customers of the same segment.")
    def drill_down(self, filter: CustomerFilter | None = None) -> DrillDown:
        return resolve.drill_down_value(self, filter)


@strawberry.type(description="One month after a cohort's first month.")
class CohortCell:
    months_since: int = strawberry.field(description="0 is the cohort's first month.")
    customers: int = strawberry.field(
        description="Customers of the cohort who placed a paid or fulfilled order that month."
    )
    share: float = strawberry.field(description="`customers` / the cohort's size (0 to 1).")

    @strawberry.field(description="Those customers on the `customers` list.")
    def drill_down(self) -> DrillDown:
        return resolve.drill_down_value(self, None)


@strawberry.type(description="Customers whose first paid or fulfilled order fell in one month.")
class Cohort:
    month: date = strawberry.field(description="First day of the cohort's month.")
    customers: int = strawberry.field(description="Size of the cohort.")
    cells: list[CohortCell] = strawberry.field(
        description="One cell per month from the cohort's month to `to`."
    )

    @strawberry.field(description="The cohort's customers on the `customers` list.")
    def drill_down(self) -> DrillDown:
        return resolve.drill_down_value(self, None)


@strawberry.type
class SegmentQuery:
    segments = strawberry.field(
        resolver=resolve.segments,
        graphql_type=Connection[Segment],
        description="Built-in RFM segments first, then the saved segments the caller may see "
        "(shared ones and their own), by name unless ordered. Pages forward.",
    )


@strawberry.type
class CohortQuery:
    customer_cohorts = strawberry.field(
        resolver=resolve.cohorts,
        graphql_type=list[Cohort],
        description="Cohort table: customers by the month of their first paid or fulfilled "
        "order (`from`..`to`, months in `timeZone`), and per later month the share who "
        "ordered again.",
    )


@strawberry.type
class SegmentMutation:
    create_segment = strawberry.mutation(
        resolver=resolve.create_segment,
        graphql_type=SegmentPayload,
        description="Save a customer filter as a segment.",
    )

    update_segment = strawberry.mutation(
        resolver=resolve.update_segment,
        graphql_type=SegmentPayload,
        description="Change a segment's name, description, filter or sharing.",
    )

    archive_segment = strawberry.mutation(
        resolver=resolve.archive_segment,
        graphql_type=SegmentPayload,
        description="Hide a segment from `segments` (readable by ID).",
    )
