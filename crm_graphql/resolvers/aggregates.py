"""Aggregate and time-series fields: arguments to ``services.aggregates`` calls."""

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.resolvers.arguments import filter_spec
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.insight import drill_down, input_json, selected_names
from crm_graphql.schema.scalars import Money
from crm_graphql.services import aggregates, drilldown
from crm_graphql.services.aggregates import AggregateSpec, GroupBy, Stats
from crm_graphql.storage.querying import camel_case

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.activities import ActivityFilter
    from crm_graphql.schema.aggregates import (
        ActivityGroupBy,
        CompanyGroupBy,
        ConversationGroupBy,
        CustomerGroupBy,
        DealGroupBy,
        OrderGroupBy,
        TimeInterval,
        TimeSeriesMetric,
    )
    from crm_graphql.schema.companies import CompanyFilter
    from crm_graphql.schema.conversations import ConversationFilter
    from crm_graphql.schema.customers import CustomerFilter
    from crm_graphql.schema.deals import DealFilter
    from crm_graphql.schema.insight import DrillDown
    from crm_graphql.schema.orders import OrderFilter

_activities = "crm_graphql.schema.activities"
_aggregates = "crm_graphql.schema.aggregates"
_companies = "crm_graphql.schema.companies"
_conversations = "crm_graphql.schema.conversations"
_customers = "crm_graphql.schema.customers"
_deals = "crm_graphql.schema.deals"
_orders = "crm_graphql.schema.orders"

TimeZone = Annotated[
    str | None,
    strawberry.argument(
        description="IANA time zone the time buckets are cut in (default UTC), such as "
        "Europe/Berlin."
    ),
]
GROUP_BY = strawberry.argument(description="Up to two dimensions; time fields need an `interval`.")

MODELS: dict[str, type[Any]] = {
    "User": models.User,
    "Company": models.Company,
    "Customer": models.Customer,
    "Deal": models.Deal,
    "Pipeline": models.Pipeline,
    "Stage": models.Stage,
}


class MoneyAggregateValue:
    """What ``MoneyAggregate`` reads: one entry per currency in every list (built when a
    client selects it: a dashboard of hundreds of groups often asks for the sum alone)."""

    def __init__(self, stats: Stats) -> None:
        self._money = stats.money

    @functools.cached_property
    def sum(self) -> list[Money]:
        return [Money(amount=m.sum, currency=m.currency) for m in self._money]

    @functools.cached_property
    def avg(self) -> list[Money]:
        return [Money(amount=m.avg, currency=m.currency) for m in self._money]

    @functools.cached_property
    def min(self) -> list[Money]:
        return [Money(amount=_kept(m.min), currency=m.currency) for m in self._money]

    @functools.cached_property
    def max(self) -> list[Money]:
        return [Money(amount=_kept(m.max), currency=m.currency) for m in self._money]


def _kept(value: Decimal | None) -> Decimal:
    # ``aggregate`` computes extremes whenever the selection names them (``_extremes``).
    assert value is not None, "min/max selected but not computed"
    return value


EXTREMES = frozenset({"min", "max"})


def _extremes(selections: Sequence[Any]) -> bool:
    """Whether a selection asks for a minimum or maximum anywhere (fragments included)."""
    for selection in selections:
        if getattr(selection, "name", None) in EXTREMES:
            return True
        if _extremes(getattr(selection, "selections", None) or ()):
            return True
    return False


class StatsValue:
    """``count``, the money field (``amount``) and the numeric fields, by their names."""

    def __init__(self, spec: AggregateSpec, stats: Stats) -> None:
        self.count = stats.count
        if spec.money is not None:
            self.amount = MoneyAggregateValue(stats)
        for name, numbers in stats.numbers.items():
            setattr(self, name, numbers)


class GroupValue(StatsValue):
    """One group: every dimension of the list as an attribute (None unless grouped by it)."""

    def __init__(
        self, spec: AggregateSpec, group: aggregates.Group, caller: "CallerFilter"
    ) -> None:
        super().__init__(spec, group.stats)
        self.spec = spec
        self.keys = group.keys
        for name in spec.dimensions:
            setattr(self, name, group.keys.get(name))
        self._drill_down = group.drill_down
        self._caller = caller
        self.related: dict[str, Any] = {}

    @functools.cached_property
    def drill_down(self) -> "DrillDown":
        return self._caller.drill_down(self._drill_down)


class CallerFilter:
    """The caller's filter input, written as JSON once for all the groups of an answer."""

    def __init__(self, value: Any) -> None:
        self.value = value

    @functools.cached_property
    def as_json(self) -> Any:
        return input_json(self.value) if self.value is not None else None

    def drill_down(self, value: drilldown.DrillDown) -> "DrillDown":
        # ``input_json`` leaves a value already in its JSON form as it is.
        return drill_down(value, self.as_json)


class AggregateValue(StatsValue):
    def __init__(
        self, spec: AggregateSpec, result: aggregates.Aggregate, caller_filter: Any
    ) -> None:
        super().__init__(spec, result.totals)
        caller = CallerFilter(caller_filter)
        self.groups = [GroupValue(spec, g, caller) for g in result.groups]


async def aggregate(
    info: Info,
    spec: AggregateSpec,
    filter: Any = None,
    include_archived: bool = False,
    group_by: Sequence[Any] | None = None,
    time_zone: str | None = None,
) -> AggregateValue:
    """A list's aggregate: the arguments come in the order every aggregate field declares
    them (``groupBy`` items carry ``field`` and ``interval``)."""
    context = info.context
    actor = context.require_actor()
    dimensions = [GroupBy(g.field.value, g.interval) for g in group_by or ()]
    async with context.read() as session:
        result = await aggregates.aggregate(
            actor,
            session,
            spec,
            filter=filter_spec(filter),
            group_by=dimensions,
            time_zone_name=time_zone,
            include_archived=include_archived,
            extremes=_extremes(info.selected_fields),
        )
    value = AggregateValue(spec, result, filter)
    await _load_related(info, spec, value.groups, selected_names(info.selected_fields))
    return value


def related_of(dimension: str) -> Callable[[GroupValue], Any]:
    """The resolver of a group's field ``dimension``: the object the group's key refers to
    (None for the group of rows without one, or when not selected), loaded for all the
    groups at once by ``aggregate`` (``_load_related``), so that hundreds of groups resolve
    it without an awaitable each."""

    def related(root: GroupValue) -> Any:
        return root.related.get(dimension)

    return related


async def deals_aggregate(
    info: Info,
    filter: Annotated["DealFilter", strawberry.lazy(_deals)] | None = None,
    include_archived: bool = False,
    group_by: Annotated[
        list[Annotated["DealGroupBy", strawberry.lazy(_aggregates)]] | None, GROUP_BY
    ] = None,
    time_zone: TimeZone = None,
) -> AggregateValue:
    return await aggregate(info, aggregates.DEALS, filter, include_archived, group_by, time_zone)


async def customers_aggregate(
    info: Info,
    filter: Annotated["CustomerFilter", strawberry.lazy(_customers)] | None = None,
    include_archived: bool = False,
    group_by: Annotated[
        list[Annotated["CustomerGroupBy", strawberry.lazy(_aggregates)]] | None, GROUP_BY
    ] = None,
    time_zone: TimeZone = None,
) -> AggregateValue:
    return await aggregate(
        info, aggregates.CUSTOMERS, filter, include_archived, group_by, time_zone
    )


async def companies_aggregate(
    info: Info,
    filter: Annotated["CompanyFilter", strawberry.lazy(_companies)] | None = None,
    include_archived: bool = False,
    group_by: Annotated[
        list[Annotated["CompanyGroupBy", strawberry.lazy(_aggregates)]] | None, GROUP_BY
    ] = None,
    time_zone: TimeZone = None,
) -> AggregateValue:
    return await aggregate(
        info, aggregates.COMPANIES, filter, include_archived, group_by, time_zone
    )


async def activities_aggregate(
    info: Info,
    filter: Annotated["ActivityFilter", strawberry.lazy(_activities)] | None = None,
    include_archived: bool = False,
    group_by: Annotated[
        list[Annotated["ActivityGroupBy", strawberry.lazy(_aggregates)]] | None, GROUP_BY
    ] = None,
    time_zone: TimeZone = None,
) -> AggregateValue:
    return await aggregate(
        info, aggregates.ACTIVITIES, filter, include_archived, group_by, time_zone
    )


async def orders_aggregate(
    info: Info,
    filter: Annotated["OrderFilter", strawberry.lazy(_orders)] | None = None,
    include_archived: bool = False,
    group_by: Annotated[
        list[Annotated["OrderGroupBy", strawberry.lazy(_aggregates)]] | None, GROUP_BY
    ] = None,
    time_zone: TimeZone = None,
) -> AggregateValue:
    return await aggregate(info, aggregates.ORDERS, filter, include_archived, group_by, time_zone)


async def conversations_aggregate(
    info: Info,
    filter: Annotated["ConversationFilter", strawberry.lazy(_conversations)] | None = None,
    group_by: Annotated[
        list[Annotated["ConversationGroupBy", strawberry.lazy(_aggregates)]] | None, GROUP_BY
    ] = None,
    time_zone: TimeZone = None,
) -> AggregateValue:
    return await aggregate(info, aggregates.CONVERSATIONS, filter, False, group_by, time_zone)


async def _load_related(
    info: Info, spec: AggregateSpec, groups: Sequence[GroupValue], names: set[str]
) -> None:
    """The related objects of the groups (owners, stages ...) that the selection names, one
    batch per related type through the per-request loaders."""
    for dimension_name in {k for g in groups for k in g.keys}:
        dimension = spec.dimensions[dimension_name]
        if dimension.type_name is None or camel_case(dimension_name) not in names:
            continue
        ids = list({g.keys[dimension_name] for g in groups} - {None})
        loader = info.context.loaders.by_id(MODELS[dimension.type_name])
        found = dict(zip(ids, await loader.load_many(ids), strict=True))
        for group in groups:
            group.related[dimension_name] = found.get(group.keys[dimension_name])


class PointValue:
    def __init__(self, point: aggregates.Point) -> None:
        self.start = point.start
        self.end = point.end
        self.count = point.stats.count
        self.amount = [Money(amount=m.sum, currency=m.currency) for m in point.stats.money]
        self.drill_down = drill_down(point.drill_down)


async def time_series(
    info: Info,
    metric: Annotated[
        "TimeSeriesMetric",
        strawberry.lazy(_aggregates),
        strawberry.argument(description="What to count."),
    ],
    interval: Annotated[
        "TimeInterval",
        strawberry.lazy(_aggregates),
        strawberry.argument(description="The length of each bucket."),
    ],
    from_: Annotated[
        datetime,
        strawberry.argument(
            name="from", description="The first bucket is the one holding this instant."
        ),
    ],
    to: Annotated[
        datetime,
        strawberry.argument(
            description="The period ends here (excluded): the last bucket holds the "
            "instant before it."
        ),
    ],
    time_zone: TimeZone = None,
) -> list[PointValue]:
    context = info.context
    actor = context.require_actor()
    async with context.read() as session:
        points = await aggregates.time_series(
            actor, session, metric, interval, from_, to, time_zone_name=time_zone
        )
    return [PointValue(p) for p in points]
