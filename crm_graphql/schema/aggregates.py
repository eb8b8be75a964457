"""Aggregates of every root list, and time series (issue 13, points 4 and 5).

Each root list ``xs`` has a field ``xsAggregate(filter, includeArchived, groupBy, timeZone)``
taking the list's own filter: ``count``, its money field (``amount``) summed, averaged,
minimised and maximised per currency, its numeric fields, and with ``groupBy`` (at most two
dimensions) one group per key combination, each with the same numbers and a ``drillDown``.
The group types carry one field per dimension: the enum value, the related object (null for
rows without one) or the local start of a time bucket; null when not grouped by it.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import strawberry

from crm_graphql.resolvers import aggregates as resolve
from crm_graphql.schema.companies import Company
from crm_graphql.schema.customers import Customer
from crm_graphql.schema.deals import Deal, Pipeline, Stage
from crm_graphql.schema.insight import DrillDown
from crm_graphql.schema.scalars import (
    ActivityType,
    Channel,
    ConversationStatus,
    DealStatus,
    LifecycleStage,
    Money,
    OrderStatus,
    exposed,
)
from crm_graphql.schema.users import User
from crm_graphql.services.aggregates import Interval, Metric

if TYPE_CHECKING:
    # strawberry.enum registers and returns the service's own enum class; say so to mypy.
    from crm_graphql.services.aggregates import Interval as TimeInterval
    from crm_graphql.services.aggregates import Metric as TimeSeriesMetric
else:
    TimeInterval = exposed(
        Interval,
        "Length of a time bucket: a bucket starts at local midnight (Monday for weeks, the "
        "1st for months, January, April, July and October for quarters).",
        name="TimeInterval",
        DAY="One day, from local midnight.",
        WEEK="Seven days, from Monday.",
        MONTH="A calendar month, from the 1st.",
        QUARTER="Three months, from January, April, July or October.",
        YEAR="A calendar year, from January 1st.",
    )
    TimeSeriesMetric = exposed(
        Metric,
        "What a time series counts.",
        name="TimeSeriesMetric",
        NEW_CUSTOMERS="Customers created, by when they were created.",
        REVENUE="Paid and fulfilled orders and their amounts, by when they were placed.",
        DEALS_WON="Deals won and their amounts, by when they were won.",
    )

_DRILL = "The rows behind this group: the list and the filter that reproduce it."


@strawberry.type(description="A money field aggregated per currency (currencies never mix).")
class MoneyAggregate:
    sum: list[Money] = strawberry.field(description="Total per currency, by currency code.")
    avg: list[Money] = strawberry.field(description="Mean per currency, rounded half up to cents.")
    min: list[Money] = strawberry.field(description="Smallest amount per currency.")
    max: list[Money] = strawberry.field(description="Largest amount per currency.")


@strawberry.type(description="A numeric field aggregated over the rows that have a value.")
class NumberAggregate:
    sum: Decimal | None = strawberry.field(description="Total (null when no row has a value).")
    avg: Decimal | None = strawberry.field(description="Mean, rounded half up to 2 decimals.")
    min: Decimal | None = strawberry.field(description="Smallest value.")
    max: Decimal | None = strawberry.field(description="Largest value.")


# ------------------------------------------------------------------------------ deals


@strawberry.enum(description="What deals can be grouped by.")
class DealGroupField(enum.Enum):
    STATUS = "status"
    PIPELINE = "pipeline"
    STAGE = "stage"
    OWNER = "owner"
    COMPANY = "company"
    CUSTOMER = "customer"
    CREATED_AT = "created_at"
    CLOSED_AT = "closed_at"
    EXPECTED_CLOSE_DATE = "expected_close_date"


@strawberry.input(description="One grouping dimension of deals.")
class DealGroupBy:
    field: DealGroupField
    interval: TimeInterval | None = None


@strawberry.type(description="Deals sharing the keys they were grouped by.")
class DealGroup:
    status: DealStatus | None = strawberry.field(description="Status, when grouped by it.")
    created_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    closed_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    expected_close_date: date | None = strawberry.field(description="First day of the bucket.")
    count: int = strawberry.field(description="Number of deals.")
    amount: MoneyAggregate = strawberry.field(description="Their amounts, per currency.")
    drill_down: DrillDown = strawberry.field(description=_DRILL)

    pipeline = strawberry.field(
        resolver=resolve.related_of("pipeline"),
        graphql_type=Pipeline | None,
        description="The pipeline, when grouped by it.",
    )

    stage = strawberry.field(
        resolver=resolve.related_of("stage"),
        graphql_type=Stage | None,
        description="The stage, when grouped by it.",
    )

    owner = strawberry.field(
        resolver=resolve.related_of("owner"),
        graphql_type=User | None,
        description="The owner (null: deals without one), when grouped by it.",
    )

    company = strawberry.field(
        resolver=resolve.related_of("company"),
        graphql_type=Company | None,
        description="The company (null: deals without one), when grouped by it.",
    )

    customer = strawberry.field(
        resolver=resolve.related_of("customer"),
        graphql_type=Customer | None,
        description="The customer (null: deals without one), when grouped by it.",
    )


@strawberry.type(description="Counts and sums of the deals of a filter.")
class DealAggregate:
    count: int = strawberry.field(description="Number of deals.")
    amount: MoneyAggregate = strawberry.field(description="Their amounts, per currency.")
    groups: list[DealGroup] = strawberry.field(description="One per key combination.")


# -------------------------------------------------------------------------- customers


@strawberry.enum(description="What customers can be grouped by.")
class CustomerGroupField(enum.Enum):
    LIFECYCLE_STAGE = "lifecycle_stage"
    OWNER = "owner"
    COMPANY = "company"
    CREATED_AT = "created_at"
    LAST_ACTIVITY_AT = "last_activity_at"


@strawberry.input(description="One grouping dimension of customers.")
class CustomerGroupBy:
    field: CustomerGroupField
    interval: TimeInterval | None = None


@strawberry.type(description="Customers sharing the keys they were grouped by.")
class CustomerGroup:
    lifecycle_stage: LifecycleStage | None = strawberry.field(description="When grouped by it.")
    created_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    last_activity_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    count: int = strawberry.field(description="Number of customers.")
    drill_down: DrillDown = strawberry.field(description=_DRILL)

    owner = strawberry.field(
        resolver=resolve.related_of("owner"),
        graphql_type=User | None,
        description="The owner (null: customers without one), when grouped by it.",
    )

    company = strawberry.field(
        resolver=resolve.related_of("company"),
        graphql_type=Company | None,
        description="The company (null: customers without one), when grouped by it.",
    )


@strawberry.type(description="Counts of the customers of a filter.")
class CustomerAggregate:
    count: int = strawberry.field(description="Number of customers.")
    groups: list[CustomerGroup] = strawberry.field(description="One per key combination.")


# -------------------------------------------------------------------------- companies


@strawberry.enum(description="What companies can be grouped by.")
class CompanyGroupField(enum.Enum):
    OWNER = "owner"
    CREATED_AT = "created_at"


@strawberry.input(description="One grouping dimension of companies.")
class CompanyGroupBy:
    field: CompanyGroupField
    interval: TimeInterval | None = None


@strawberry.type(description="Companies sharing the keys they were grouped by.")
class CompanyGroup:
    created_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    count: int = strawberry.field(description="Number of companies.")
    employee_count: NumberAggregate = strawberry.field(description="Their employee counts.")
    drill_down: DrillDown = strawberry.field(description=_DRILL)

    owner = strawberry.field(
        resolver=resolve.related_of("owner"),
        graphql_type=User | None,
        description="The owner (null: companies without one), when grouped by it.",
    )


@strawberry.type(description="Counts and sums of the companies of a filter.")
class CompanyAggregate:
    count: int = strawberry.field(description="Number of companies.")
    employee_count: NumberAggregate = strawberry.field(description="Their employee counts.")
    groups: list[CompanyGroup] = strawberry.field(description="One per key combination.")


# ------------------------------------------------------------------------- activities


@strawberry.enum(description="What activities can be grouped by.")
class ActivityGroupField(enum.Enum):
    TYPE = "type"
    AUTHOR = "author"
    CUSTOMER = "customer"
    DEAL = "deal"
    OCCURRED_AT = "occurred_at"
    DUE_AT = "due_at"
    COMPLETED_AT = "completed_at"
    CREATED_AT = "created_at"


@strawberry.input(description="One grouping dimension of activities.")
class ActivityGroupBy:
    field: ActivityGroupField
    interval: TimeInterval | None = None


@strawberry.type(description="Activities sharing the keys they were grouped by.")
class ActivityGroup:
    type: ActivityType | None = strawberry.field(description="Kind, when grouped by it.")
    occurred_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    due_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    completed_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    created_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    count: int = strawberry.field(description="Number of activities.")
    drill_down: DrillDown = strawberry.field(description=_DRILL)

    author = strawberry.field(
        resolver=resolve.related_of("author"),
        graphql_type=User | None,
        description="The author (null: none), when grouped by it.",
    )

    customer = strawberry.field(
        resolver=resolve.related_of("customer"),
        graphql_type=Customer | None,
        description="The customer (null: none), when grouped by it.",
    )

    deal = strawberry.field(
        resolver=resolve.related_of("deal"),
        graphql_type=Deal | None,
        description="The deal (null: none), when grouped by it.",
    )


@strawberry.type(description="Counts of the activities of a filter.")
class ActivityAggregate:
    count: int = strawberry.field(description="Number of activities.")
    groups: list[ActivityGroup] = strawberry.field(description="One per key combination.")


# ----------------------------------------------------------------------------- orders


@strawberry.enum(description="What orders can be grouped by.")
class OrderGroupField(enum.Enum):
    STATUS = "status"
    CUSTOMER = "customer"
    OWNER = strawberry.enum_value(
        "owner", description="The owner of the order's customer (orders have none of their own)."
    )
    PLACED_AT = "placed_at"
    CREATED_AT = "created_at"


@strawberry.input(description="One grouping dimension of orders.")
class OrderGroupBy:
    field: OrderGroupField
    interval: TimeInterval | None = None


@strawberry.type(description="Orders sharing the keys they were grouped by.")
class OrderGroup:
    status: OrderStatus | None = strawberry.field(description="Status, when grouped by it.")
    placed_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    created_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    count: int = strawberry.field(description="Number of orders.")
    amount: MoneyAggregate = strawberry.field(description="Their amounts, per currency.")
    drill_down: DrillDown = strawberry.field(description=_DRILL)

    customer = strawberry.field(
        resolver=resolve.related_of("customer"),
        graphql_type=Customer | None,
        description="The customer, when grouped by it.",
    )

    owner = strawberry.field(
        resolver=resolve.related_of("owner"),
        graphql_type=User | None,
        description="The owner of the orders' customer (null: customers without one), "
        "when grouped by it.",
    )


@strawberry.type(description="Counts and sums of the orders of a filter.")
class OrderAggregate:
    count: int = strawberry.field(description="Number of orders.")
    amount: MoneyAggregate = strawberry.field(description="Their amounts, per currency.")
    groups: list[OrderGroup] = strawberry.field(description="One per key combination.")


# ---------------------------------------------------------------------- conversations


@strawberry.enum(description="What conversations can be grouped by.")
class ConversationGroupField(enum.Enum):
    CHANNEL = "channel"
    STATUS = "status"
    ASSIGNEE = "assignee"
    CUSTOMER = "customer"
    CREATED_AT = "created_at"
    LAST_MESSAGE_AT = "last_message_at"


@strawberry.input(description="One grouping dimension of conversations.")
class ConversationGroupBy:
    field: ConversationGroupField
    interval: TimeInterval | None = None


@strawberry.type(description="Conversations sharing the keys they were grouped by.")
class ConversationGroup:
    channel: Channel | None = strawberry.field(description="Channel, when grouped by it.")
    status: ConversationStatus | None = strawberry.field(description="When grouped by it.")
    created_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    last_message_at: datetime | None = strawberry.field(description="Local start of the bucket.")
    count: int = strawberry.field(description="Number of conversations.")
    drill_down: DrillDown = strawberry.field(description=_DRILL)

    assignee = strawberry.field(
        resolver=resolve.related_of("assignee"),
        graphql_type=User | None,
        description="The assignee (null: unassigned), when grouped by it.",
    )

    customer = strawberry.field(
        resolver=resolve.related_of("customer"),
        graphql_type=Customer | None,
        description="The customer, when grouped by it.",
    )


@strawberry.type(description="Counts of the conversations of a filter.")
class ConversationAggregate:
    count: int = strawberry.field(description="Number of conversations.")
    groups: list[ConversationGroup] = strawberry.field(description="One per key combination.")


# ------------------------------------------------------------------------ time series


@strawberry.type(description="One bucket of a time series.")
class TimeSeriesPoint:
    start: datetime = strawberry.field(description="Local start of the bucket.")
    end: datetime = strawberry.field(description="Local start of the next bucket.")
    count: int = strawberry.field(
        description="New customers, paid or fulfilled orders, or deals won in the bucket."
    )
    amount: list[Money] = strawberry.field(
        description="Revenue (REVENUE) or value won (DEALS_WON) per currency; empty for "
        "NEW_CUSTOMERS."
    )
    drill_down: DrillDown = strawberry.field(description="The rows behind this bucket.")


@strawberry.type
class AggregateQuery:
    deals_aggregate = strawberry.field(
        resolver=resolve.deals_aggregate,
        graphql_type=DealAggregate,
        description="Counts and money per currency of deals, optionally grouped.",
    )

    customers_aggregate = strawberry.field(
        resolver=resolve.customers_aggregate,
        graphql_type=CustomerAggregate,
        description="Counts of customers, optionally grouped.",
    )

    companies_aggregate = strawberry.field(
        resolver=resolve.companies_aggregate,
        graphql_type=CompanyAggregate,
        description="Counts and employee counts of companies, optionally grouped.",
    )

    activities_aggregate = strawberry.field(
        resolver=resolve.activities_aggregate,
        graphql_type=ActivityAggregate,
        description="Counts of activities, optionally grouped.",
    )

    orders_aggregate = strawberry.field(
        resolver=resolve.orders_aggregate,
        graphql_type=OrderAggregate,
        description="Counts and money per currency of orders, optionally grouped.",
    )

    conversations_aggregate = strawberry.field(
        resolver=resolve.conversations_aggregate,
        graphql_type=ConversationAggregate,
        description="Counts of the conversations the caller sees, optionally grouped.",
    )

    time_series = strawberry.field(
        resolver=resolve.time_series,
        graphql_type=list[TimeSeriesPoint],
        description="A metric per day, week or month from `from` to `to`, every bucket "
        "included (empty ones with 0); whole buckets, cut in `timeZone`.",
    )
