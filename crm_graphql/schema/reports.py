"""Sales and service reports in GraphQL (issue 13, point 5). Every number carries the
`drillDown` that lists the rows it was computed from."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.resolvers import reports as resolve
from crm_graphql.schema.deals import Pipeline, Stage
from crm_graphql.schema.insight import DrillDown
from crm_graphql.schema.scalars import Channel, ConversationStatus

if TYPE_CHECKING:
    from crm_graphql.schema.users import User

_users = "crm_graphql.schema.users"


@strawberry.type(description="An amount in one currency, the number of deals it sums, and them.")
class MoneyCell:
    currency: str = strawberry.field(description="ISO 4217 currency code.")
    amount: Decimal = strawberry.field(description="The amount, rounded to cents.")
    count: int = strawberry.field(description="How many deals the amount is computed from.")
    drill_down: DrillDown = strawberry.field(description="Those deals.")


@strawberry.type(description="One stage of a pipeline in the sales report.")
class SalesStage:
    stage: Stage = strawberry.field(description="The stage these figures are about.")
    open_count: int = strawberry.field(description="Open deals in the stage now.")
    open_value: list[MoneyCell] = strawberry.field(description="Their amount, per currency.")
    weighted_value: list[MoneyCell] = strawberry.field(
        description="Their amount x the stage's probability, per currency."
    )
    reached_count: int = strawberry.field(
        description="Deals created in the period that reached this stage or a later one."
    )
    conversion_to_next: float | None = strawberry.field(
        description="Share (0 to 1) of those that reached the next stage or a later one "
        "(null for the last stage or when none reached this one)."
    )
    drill_down: DrillDown = strawberry.field(description="The open deals in the stage.")
    reached_drill_down: DrillDown = strawberry.field(
        description="The deals counted by `reachedCount`."
    )


@strawberry.type(description="Won against lost deals closed in the period.")
class WinRate:
    won: int = strawberry.field(description="Deals won in the period.")
    lost: int = strawberry.field(description="Deals lost in the period.")
    rate: float | None = strawberry.field(
        description="won / (won + lost), 0 to 1; null when none closed."
    )
    drill_down: DrillDown = strawberry.field(description="The deals won or lost in the period.")
    won_drill_down: DrillDown = strawberry.field(description="The deals won in the period.")
    lost_drill_down: DrillDown = strawberry.field(description="The deals lost in the period.")


@strawberry.type(description="How long won deals took from creation to closing.")
class CycleTime:
    average_days: float | None = strawberry.field(
        description="Average of (closed - created) in days over the deals won in the period."
    )
    count: int = strawberry.field(description="Deals it averages.")
    drill_down: DrillDown = strawberry.field(description="Those deals.")


@strawberry.type(
    description="Open deals expected to close in one month, of one owner, in one currency."
)
class ForecastCell:
    month: date = strawberry.field(description="First day of the expected close month.")
    currency: str = strawberry.field(description="ISO 4217 currency code.")
    count: int = strawberry.field(description="Open deals.")
    amount: Decimal = strawberry.field(description="Their amount (unweighted).")
    weighted_amount: Decimal = strawberry.field(
        description="Their amount x their stage's probability."
    )
    drill_down: DrillDown = strawberry.field(description="Those deals.")

    @strawberry.field(description="The deals' owner (null: deals without an owner).")
    def owner(self) -> Annotated[User, strawberry.lazy(_users)] | None:
        return resolve.forecast_owner(self)


@strawberry.type(description="A pipeline's sales over a period.")
class SalesReport:
    pipeline: Pipeline = strawberry.field(description="The pipeline reported on.")
    stages: list[SalesStage] = strawberry.field(
        description="The pipeline's live stages, left to right."
    )
    win_rate: WinRate = strawberry.field(description="Of the deals closed in the period.")
    average_deal_size: list[MoneyCell] = strawberry.field(
        description="Average amount of the deals won in the period, per currency."
    )
    average_cycle_time: CycleTime = strawberry.field(description="Of the deals won in the period.")
    weighted_pipeline: list[MoneyCell] = strawberry.field(
        description="Open deals' amount x their stage's probability, per currency."
    )
    forecast: list[ForecastCell] = strawberry.field(
        description="Open deals by expected close month (within the period) and owner."
    )

    from_ = strawberry.field(
        resolver=resolve.first_day, name="from", description="First day of the period."
    )
    to = strawberry.field(
        resolver=resolve.last_day, description="Last day of the period (included)."
    )
    time_zone = strawberry.field(
        resolver=resolve.time_zone, description="Time zone the days are counted in."
    )


@strawberry.type(description="Conversations of one channel and status.")
class VolumeCell:
    channel: Channel = strawberry.field(description="The conversations' channel.")
    status: ConversationStatus = strawberry.field(description="The conversations' status now.")
    count: int = strawberry.field(
        description="Conversations of this channel and status started in the period."
    )
    drill_down: DrillDown = strawberry.field(description="Those conversations.")


@strawberry.type(description="Durations of a group of conversations, in seconds.")
class TimeStats:
    channel: Channel | None = strawberry.field(description="The channel (by channel).")
    count: int = strawberry.field(description="Conversations measured.")
    p50_seconds: float | None = strawberry.field(description="Median (percentile_cont 0.5).")
    p90_seconds: float | None = strawberry.field(description="90th percentile (percentile_cont).")
    drill_down: DrillDown = strawberry.field(description="The conversations measured.")

    agent = strawberry.field(
        resolver=resolve.agent,
        graphql_type=Annotated["User", strawberry.lazy(_users)] | None,
        description="The assignee (by agent; null there: unassigned).",
    )


@strawberry.type(description="A service time overall, per agent and per channel.")
class ServiceTimes:
    overall: TimeStats = strawberry.field(description="All conversations measured.")
    by_agent: list[TimeStats] = strawberry.field(
        description="One entry per assignee (unassigned conversations together)."
    )
    by_channel: list[TimeStats] = strawberry.field(description="One entry per channel.")


@strawberry.type(description="Open and pending conversations of one age band, now.")
class BacklogBand:
    label: str = strawberry.field(description="The band, such as `1 to 24 hours`.")
    min_age_hours: int = strawberry.field(description="Age from (included), in hours.")
    max_age_hours: int | None = strawberry.field(description="Age up to (excluded); null: no end.")
    open_count: int = strawberry.field(description="Open conversations of this age.")
    pending_count: int = strawberry.field(description="Pending conversations of this age.")
    count: int = strawberry.field(description="Open and pending.")
    drill_down: DrillDown = strawberry.field(description="Those conversations.")


@strawberry.type(description="Customer satisfaction of a group of rated conversations.")
class CsatStats:
    channel: Channel | None = strawberry.field(description="The channel (by channel).")
    count: int = strawberry.field(description="Ratings given in the period.")
    satisfied: int = strawberry.field(description="Ratings of 4 or 5.")
    csat: float | None = strawberry.field(description="satisfied / count, 0 to 1.")
    average_score: float | None = strawberry.field(description="Average score, 1 to 5.")
    drill_down: DrillDown = strawberry.field(description="The rated conversations.")
    satisfied_drill_down: DrillDown = strawberry.field(
        description="The conversations rated 4 or 5."
    )

    agent = strawberry.field(
        resolver=resolve.agent,
        graphql_type=Annotated["User", strawberry.lazy(_users)] | None,
        description="The assignee (by agent; null there: unassigned).",
    )


@strawberry.type(description="CSAT overall, per agent and per channel.")
class Csat:
    overall: CsatStats = strawberry.field(description="All rated conversations of the period.")
    by_agent: list[CsatStats] = strawberry.field(
        description="One entry per assignee (unassigned conversations together)."
    )
    by_channel: list[CsatStats] = strawberry.field(description="One entry per channel.")


@strawberry.type(description="Customer service over a period.")
class ServiceReport:
    as_of: datetime = strawberry.field(description="The instant the backlog ages are taken at.")
    volume: list[VolumeCell] = strawberry.field(
        description="Conversations started in the period, by channel and status."
    )
    first_response: ServiceTimes = strawberry.field(
        description="Customer's first message to the first agent answer, of the conversations "
        "first answered in the period."
    )
    resolution: ServiceTimes = strawberry.field(
        description="Start to close, of the conversations closed in the period."
    )
    backlog: list[BacklogBand] = strawberry.field(
        description="Open and pending conversations now, by age."
    )
    csat: Csat = strawberry.field(description="Of the ratings given in the period.")

    from_ = strawberry.field(
        resolver=resolve.first_day, name="from", description="First day of the period."
    )
    to = strawberry.field(
        resolver=resolve.last_day, description="Last day of the period (included)."
    )
    time_zone = strawberry.field(
        resolver=resolve.time_zone, description="Time zone the days are counted in."
    )


@strawberry.type
class ReportQuery:
    sales_report = strawberry.field(
        resolver=resolve.sales_report,
        graphql_type=SalesReport,
        description="A pipeline's sales over the days `from` to `to` (included) in `timeZone` "
        "(IANA, default UTC): per stage open deals and conversion, win rate, average deal size "
        "and cycle time, weighted pipeline and forecast per owner. Counts what the caller's "
        "`deals` list shows, within `filter` and `ownerIds`; every number has its drill-down.",
    )

    service_report = strawberry.field(
        resolver=resolve.service_report,
        graphql_type=ServiceReport,
        description="Customer service over the days `from` to `to` (included) in `timeZone`: "
        "volume by channel and status, first-response and resolution times (p50, p90) per "
        "agent and channel, open backlog by age, CSAT per agent and channel. Counts what the "
        "caller's `conversations` list shows, within `filter`, `channels` and `assigneeIds`.",
    )
