"""Aggregate and time-series fields: arguments to ``services.aggregates`` calls."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import filter_spec
from crm_graphql.resolvers.insight import drill_down, input_json, selected_names
from crm_graphql.schema.insight import DrillDown
from crm_graphql.schema.scalars import Money
from crm_graphql.services import aggregates, drilldown
from crm_graphql.services.aggregates import AggregateSpec, GroupBy, Interval, Metric, Stats
from crm_graphql.storage.querying import camel_case

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

    def __init__(self, spec: AggregateSpec, group: aggregates.Group, caller: CallerFilter) -> None:
        super().__init__(spec, group.stats)
        self.spec = spec
        self.keys = group.keys
        for name in spec.dimensions:
            setattr(self, name, group.keys.get(name))
        self._drill_down = group.drill_down
        self._caller = caller
        self.related: dict[str, Any] = {}

    @functools.cached_property
    def drill_down(self) -> DrillDown:
        return self._caller.drill_down(self._drill_down)


class CallerFilter:
    """The caller's filter input, written as JSON once for all the groups of an answer."""

    def __init__(self, value: Any) -> None:
        self.value = value

    @functools.cached_property
    def as_json(self) -> Any:
        return input_json(self.value) if self.value is not None else None

    def drill_down(self, value: drilldown.DrillDown) -> DrillDown:
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
    info: Any,
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


def related(root: GroupValue, dimension: str) -> Any:
    """The object a group's key refers to (None for the group of rows without one, or when
    not selected): loaded for all the groups at once by ``aggregate`` (``_load_related``),
    so that hundreds of groups resolve it without an awaitable each."""
    return root.related.get(dimension)


async def _load_related(
    info: Any, spec: AggregateSpec, groups: Sequence[GroupValue], names: set[str]
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
    info: Any,
    metric: Metric,
    interval: Interval,
    start: datetime,
    end: datetime,
    time_zone: str | None = None,
) -> list[PointValue]:
    context = info.context
    actor = context.require_actor()
    async with context.read() as session:
        points = await aggregates.time_series(
            actor, session, metric, interval, start, end, time_zone_name=time_zone
        )
    return [PointValue(p) for p in points]
