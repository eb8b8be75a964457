"""Sales and service reports (issue 13, point 5; docs/decisions/0015-reports.md).

Each report reads through the lists' own ``ListSpec.statement`` (tenant, role, private
conversations, the caller's filter), so a report shows exactly what the caller's lists
show; and each number is computed over the rows of one filter that is also its
drill-down (``DrillDown``): the ``deals`` or ``conversations`` list with that filter gives
the rows behind the number. A report is a fixed number of SQL statements whatever the
data size: the grouping is done by PostgreSQL, Python only arranges the groups.

Periods are calendar dates in a time zone: ``from`` 00:00 to the end of ``to`` (both
included), in ``time_zone`` (IANA name, default UTC).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    Date,
    and_,
    case,
    cast,
    extract,
    func,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import (
    Channel,
    Conversation,
    ConversationStatus,
    Deal,
    DealCloseTotal,
    DealCohortTotal,
    DealStageChange,
    DealStageTotal,
    DealStatus,
    Pipeline,
    Stage,
)
from crm_graphql.services import conversations, deals, fields
from crm_graphql.services.actor import Actor, scope_condition, scoped
from crm_graphql.services.drilldown import DrillDown, Ref
from crm_graphql.services.errors import Invalid, NotFound
from crm_graphql.storage.querying import FilterSpec

MAX_PERIOD_DAYS = 3_700  # ten years and change: a report reads, it does not export
CENT = Decimal("0.01")
SATISFIED_SCORES = conversations.SATISFIED_SCORES
# Open backlog age bands: [lower, upper) of a conversation's age, in hours.
BACKLOG_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("under 1 hour", 0, 1),
    ("1 to 24 hours", 1, 24),
    ("1 to 7 days", 24, 24 * 7),
    ("over 7 days", 24 * 7, None),
)


# ------------------------------------------------------------------------------ period


@dataclass(frozen=True)
class Period:
    """Calendar dates ``start_date``..``end_date`` (both included) in ``time_zone``, and the
    instants they span: ``start`` (included) to ``end`` (excluded), in UTC."""

    start_date: date
    end_date: date
    time_zone: str
    start: datetime
    end: datetime

    def instants(self) -> dict[str, datetime]:
        """The period as a date-and-time filter's operators."""
        return {"gte": self.start, "lt": self.end}


def period(start: Any, end: Any, time_zone: str | None) -> Period:
    """The report period, or ``Invalid`` (unknown time zone, ``to`` before ``from``, too long)."""
    start_date = fields.calendar_date(start, "from")
    end_date = fields.calendar_date(end, "to")
    zone = fields.time_zone(time_zone)
    name = zone.key
    if end_date < start_date:
        raise Invalid("`to` is before `from`", "to")
    if (end_date - start_date).days > MAX_PERIOD_DAYS:
        raise Invalid(f"A report covers at most {MAX_PERIOD_DAYS} days", "to")
    try:
        first = datetime.combine(start_date, time.min, tzinfo=zone).astimezone(UTC)
        after = datetime.combine(end_date + timedelta(days=1), time.min, tzinfo=zone)
    except OverflowError as exc:
        raise Invalid("The period must lie within the accepted dates", "to") from exc
    return Period(start_date, end_date, name, first, after.astimezone(UTC))


def _all(*specs: FilterSpec | None) -> dict[str, Any]:
    """The conjunction of filter specs (the caller's, the report's, the cell's)."""
    present = [dict(s) for s in specs if s]
    if not present:
        return {}
    return present[0] if len(present) == 1 else {"and": present}


def _ids(type_name: str, ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    return {"in": [Ref(type_name, i) for i in ids]}


def _ref_or_none(type_name: str, id: uuid.UUID | None) -> dict[str, Any]:
    return {"is_null": True} if id is None else {"eq": Ref(type_name, id)}


def _money(value: Any) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


# ------------------------------------------------------------------------------- sales


@dataclass
class MoneyCell:
    """An amount in one currency, the number of deals it sums, and those deals."""

    currency: str
    amount: Decimal
    count: int
    drill_down: DrillDown


@dataclass
class SalesStage:
    stage: Stage
    open_count: int
    open_value: list[MoneyCell]
    weighted_value: list[MoneyCell]
    reached_count: int
    conversion_to_next: float | None
    drill_down: DrillDown  # the open deals in the stage
    reached_drill_down: DrillDown


@dataclass
class WinRate:
    won: int
    lost: int
    rate: float | None
    drill_down: DrillDown  # won and lost
    won_drill_down: DrillDown
    lost_drill_down: DrillDown


@dataclass
class CycleTime:
    average_days: float | None
    count: int
    drill_down: DrillDown


@dataclass
class ForecastCell:
    month: date
    owner_id: uuid.UUID | None
    currency: str
    count: int
    amount: Decimal
    weighted_amount: Decimal
    drill_down: DrillDown


@dataclass
class SalesReport:
    pipeline: Pipeline
    period: Period
    stages: list[SalesStage]
    win_rate: WinRate
    average_deal_size: list[MoneyCell]
    average_cycle_time: CycleTime
    weighted_pipeline: list[MoneyCell]
    forecast: list[ForecastCell]


def _deals(spec: FilterSpec) -> DrillDown:
    return DrillDown("deals", dict(spec))


async def _pipeline_and_stages(
    actor: Actor, session: AsyncSession, pipeline_id: uuid.UUID | None
) -> tuple[Pipeline, list[Stage]]:
    pipeline = None
    if pipeline_id is not None:
        pipeline = await session.scalar(scoped(Pipeline, actor).where(Pipeline.id == pipeline_id))
    if pipeline is None:
        raise NotFound("Pipeline not found", "pipelineId")
    stages = await session.scalars(
        scoped(Stage, actor)
        .where(Stage.pipeline_id == pipeline.id, Stage.archived_at.is_(None))
        .order_by(Stage.position, Stage.id)
    )
    return pipeline, list(stages)


async def sales_report(
    actor: Actor,
    session: AsyncSession,
    *,
    pipeline_id: uuid.UUID | None,
    start: Any,
    end: Any,
    time_zone: str | None = None,
    owner_ids: Sequence[uuid.UUID] | None = None,
    filter: FilterSpec | None = None,
) -> SalesReport:
    """A pipeline's sales over a period, as the caller's ``deals`` list shows them
    (``filter``: the caller's deal filter; ``owner_ids``: only these owners' deals):

    - per live stage, open deals now (count, value and weighted value per currency), and
      of the deals created in the period, how many reached the stage or a later one and
      the share of those that went on to the next stage or a later one;
    - win rate of the deals closed in the period (won / (won + lost)), average size of the
      won ones per currency, their average cycle time (created to closed, in days);
    - weighted pipeline (open deals, amount x stage probability, per currency);
    - forecast: open deals by expected close month (within the period) and owner, per
      currency, unweighted and weighted.

    Six statements whatever the number of deals (one more when ``filter`` names a custom
    field: the deals' definitions)."""
    span = period(start, end, time_zone)
    pipeline, stages = await _pipeline_and_stages(actor, session, pipeline_id)
    base: dict[str, Any] = {"pipeline_id": {"eq": Ref("Pipeline", pipeline.id)}}
    if owner_ids:
        base["owner_id"] = _ids("User", owner_ids)
    # What the rows are read by: the ids as UUIDs (``Ref`` is for the client's filter).
    plain = _plain_spec

    # The caller's filter may name custom fields: their definitions are read once, and
    # every statement below is built with them.
    custom = await deals.DEALS.custom_terms(actor, session, filter)

    def rows(*specs: FilterSpec) -> Any:
        return deals.DEALS.statement(actor, _all(filter, *(plain(s) for s in specs)), custom=custom)

    probability = {s.id: Decimal(s.probability) / 100 for s in stages}

    # Without a filter of the caller's, the numbers of open deals and of the cohort come
    # from the summaries kept on write (``DealStageTotal``, ``DealCohortTotal``), which
    # give exactly the rows' answer (decision 0021); a filter reads the rows.
    totals = _DealTotals(actor, pipeline.id, owner_ids) if not filter else None

    # Open deals per stage and currency.
    open_spec = {**base, "status": {"eq": DealStatus.OPEN}}
    open_statement = (
        totals.open_by_stage()
        if totals
        else rows(open_spec)
        .with_only_columns(Deal.stage_id, Deal.currency, func.count(), func.sum(Deal.amount))
        .group_by(Deal.stage_id, Deal.currency)
        .order_by(Deal.stage_id, Deal.currency)
    )
    open_rows = (await session.execute(open_statement)).all()
    by_stage: dict[uuid.UUID, list[tuple[str, int, Decimal]]] = defaultdict(list)
    for stage_id, currency, count, amount in open_rows:
        by_stage[stage_id].append((currency, int(count), Decimal(amount)))

    # Deals created in the period, by the furthest stage they reached.
    cohort_spec = {**base, "created_at": span.instants()}
    reach_rows: Sequence[tuple[Any, int]]
    months = totals.cohort_months(span) if totals else None
    if totals and months:
        reach_rows = await totals.reached(
            session,
            span,
            months,
            lambda bounds: _by_furthest_stage(rows({**base, "created_at": bounds})),
        )
    else:
        reach_rows = (await session.execute(_by_furthest_stage(rows(cohort_spec)))).all()

    def reached(position: int) -> int:
        return sum(int(n) for p, n in reach_rows if p is not None and p >= position)

    # Deals closed (won or lost) in the period.
    closed_spec = {**base, "closed_at": span.instants()}
    seconds = extract("epoch", Deal.closed_at - Deal.created_at)
    closing = [DealStatus.WON, DealStatus.LOST]

    def closed_between(bounds: Mapping[str, Any]) -> Any:
        return (
            rows({**base, "closed_at": bounds, "status": {"in": closing}})
            .with_only_columns(
                Deal.status, Deal.currency, func.count(), func.sum(Deal.amount), func.sum(seconds)
            )
            .group_by(Deal.status, Deal.currency)
            .order_by(Deal.currency)
        )

    closed_rows: Sequence[Any]
    if totals and months:
        closed_rows = await totals.closed(session, span, months, closed_between)
    else:
        closed_rows = (await session.execute(closed_between(span.instants()))).all()

    # Open deals expected to close within the period, by month, owner, currency and stage.
    # A literal unit, not a parameter: the same expression is grouped by.
    unit: Any = literal_column("'month'")
    month = cast(func.date_trunc(unit, Deal.expected_close_date), Date).label("month")
    forecast_spec = {
        **open_spec,
        "expected_close_date": {"gte": span.start_date, "lte": span.end_date},
    }
    forecast_statement = totals.forecast(span.start_date, span.end_date) if totals else None
    if forecast_statement is None:
        forecast_statement = (
            rows(forecast_spec)
            .with_only_columns(
                month,
                Deal.owner_id,
                Deal.currency,
                Deal.stage_id,
                func.count(),
                func.sum(Deal.amount),
            )
            .group_by(month, Deal.owner_id, Deal.currency, Deal.stage_id)
        )
    forecast_rows = (await session.execute(forecast_statement)).all()

    sales_stages: list[SalesStage] = []
    weighted_total: dict[str, tuple[Decimal, int]] = {}
    for index, stage in enumerate(stages):
        stage_spec = {**open_spec, "stage_id": {"eq": Ref("Stage", stage.id)}}
        open_value, weighted_value = [], []
        for currency, count, amount in by_stage.get(stage.id, []):
            cell = _deals({**stage_spec, "currency": {"eq": currency}})
            weighted = amount * probability[stage.id]
            open_value.append(MoneyCell(currency, _money(amount), count, cell))
            weighted_value.append(MoneyCell(currency, _money(weighted), count, cell))
            total, n = weighted_total.get(currency, (Decimal(0), 0))
            weighted_total[currency] = (total + weighted, n + count)
        here = reached(stage.position)
        following = reached(stages[index + 1].position) if index + 1 < len(stages) else None
        sales_stages.append(
            SalesStage(
                stage=stage,
                open_count=sum(c for _, c, _ in by_stage.get(stage.id, [])),
                open_value=open_value,
                weighted_value=weighted_value,
                reached_count=here,
                conversion_to_next=(following / here if following is not None and here else None),
                drill_down=_deals(stage_spec),
                reached_drill_down=_deals(
                    {**cohort_spec, "furthest_stage_position": {"gte": stage.position}}
                ),
            )
        )

    counts = {DealStatus.WON: 0, DealStatus.LOST: 0}
    won_seconds = 0.0
    deal_size: list[MoneyCell] = []
    won_spec = {**closed_spec, "status": {"eq": DealStatus.WON}}
    for status, currency, count, amount, total_seconds in closed_rows:
        counts[DealStatus(status)] += int(count)
        if DealStatus(status) is DealStatus.WON:
            won_seconds += float(total_seconds or 0)
            deal_size.append(
                MoneyCell(
                    currency,
                    _money(Decimal(amount) / int(count)),
                    int(count),
                    _deals({**won_spec, "currency": {"eq": currency}}),
                )
            )
    won, lost = counts[DealStatus.WON], counts[DealStatus.LOST]

    forecast: dict[tuple[date, uuid.UUID | None, str], list[Any]] = {}
    for month_start, owner_id, currency, stage_id, count, amount in forecast_rows:
        entry = forecast.setdefault((month_start, owner_id, currency), [0, Decimal(0), Decimal(0)])
        entry[0] += int(count)
        entry[1] += Decimal(amount)
        entry[2] += Decimal(amount) * probability.get(stage_id, Decimal(0))
    forecast_cells = []
    for (month_start, owner_id, currency), (count, amount, weighted) in sorted(
        forecast.items(), key=lambda item: (item[0][0], str(item[0][1] or ""), item[0][2])
    ):
        next_month = (month_start.replace(day=28) + timedelta(days=4)).replace(day=1)
        cell_spec = {
            **open_spec,
            "owner_id": _ref_or_none("User", owner_id),
            "currency": {"eq": currency},
            "expected_close_date": {
                "gte": max(month_start, span.start_date),
                "lte": min(next_month - timedelta(days=1), span.end_date),
            },
        }
        forecast_cells.append(
            ForecastCell(
                month_start,
                owner_id,
                currency,
                count,
                _money(amount),
                _money(weighted),
                _deals(cell_spec),
            )
        )

    return SalesReport(
        pipeline=pipeline,
        period=span,
        stages=sales_stages,
        win_rate=WinRate(
            won=won,
            lost=lost,
            rate=won / (won + lost) if won + lost else None,
            drill_down=_deals({**closed_spec, "status": {"in": [DealStatus.WON, DealStatus.LOST]}}),
            won_drill_down=_deals(won_spec),
            lost_drill_down=_deals({**closed_spec, "status": {"eq": DealStatus.LOST}}),
        ),
        average_deal_size=deal_size,
        average_cycle_time=CycleTime(
            average_days=won_seconds / won / 86_400 if won else None,
            count=won,
            drill_down=_deals(won_spec),
        ),
        weighted_pipeline=[
            MoneyCell(
                currency, _money(total), n, _deals({**open_spec, "currency": {"eq": currency}})
            )
            for currency, (total, n) in sorted(weighted_total.items())
        ],
        forecast=forecast_cells,
    )


class _DealTotals:
    """The sales report's numbers from the deal summaries kept on write (migration 0019),
    for one pipeline and optionally some owners: the same answers as the rows (the tests
    compare them), read from a few hundred summary rows instead of every deal."""

    def __init__(
        self, actor: Actor, pipeline_id: uuid.UUID, owner_ids: Sequence[uuid.UUID] | None
    ) -> None:
        self.actor = actor
        self.pipeline_id = pipeline_id
        self.owner_ids = list(owner_ids) if owner_ids else None

    def _where(self, model: Any) -> list[Any]:
        conditions = [scope_condition(model, self.actor), model.pipeline_id == self.pipeline_id]
        if self.owner_ids is not None:
            conditions.append(model.owner_id.in_(self.owner_ids))
        return conditions

    def open_by_stage(self) -> Any:
        """(stage, currency, count, amount) of the open deals, as the rows give them."""
        t = DealStageTotal
        return (
            select(t.stage_id, t.currency, func.sum(t.deal_count), func.sum(t.amount))
            .where(*self._where(t), t.status == DealStatus.OPEN.value)
            .group_by(t.stage_id, t.currency)
            .having(func.sum(t.deal_count) != 0)
            .order_by(t.stage_id, t.currency)
        )

    def forecast(self, first: date, last: date) -> Any | None:
        """(month, owner, currency, stage, count, amount) of the open deals expected to
        close from ``first`` to ``last``; None unless those are whole calendar months (the
        summary counts per month)."""
        if first.day != 1 or (last + timedelta(days=1)).day != 1:
            return None
        t = DealStageTotal
        keys = (t.close_month, t.owner_id, t.currency, t.stage_id)
        return (
            select(*keys, func.sum(t.deal_count), func.sum(t.amount))
            .where(
                *self._where(t),
                t.status == DealStatus.OPEN.value,
                t.close_month >= first,
                t.close_month <= last,
            )
            .group_by(*keys)
            .having(func.sum(t.deal_count) != 0)
        )

    @staticmethod
    def cohort_months(span: Period) -> tuple[datetime, datetime] | None:
        """The whole UTC months nearest to the period's ends (``[first, after)``), or None
        when the period is shorter than a month (its rows are few)."""
        first = fields.nearest_utc_month_start(span.start)
        after = fields.nearest_utc_month_start(span.end)
        return (first, after) if first < after else None

    async def closed(
        self,
        session: AsyncSession,
        span: Period,
        months: tuple[datetime, datetime],
        from_rows: Any,
    ) -> list[tuple[str, str, int, Decimal, Decimal]]:
        """(status, currency, count, amount, seconds from creation to closing) of the deals
        won or lost in the period, by currency: the UTC months' totals corrected at both
        ends like ``reached``."""
        first, after = months
        t = DealCloseTotal
        sums: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
        summed = (
            select(
                t.status,
                t.currency,
                func.sum(t.deal_count),
                func.sum(t.amount),
                func.sum(t.seconds),
            )
            .where(
                *self._where(t),
                t.status.in_([DealStatus.WON.value, DealStatus.LOST.value]),
                t.month >= first,
                t.month < after,
            )
            .group_by(t.status, t.currency)
        )
        parts: list[tuple[int, Any]] = [(1, summed)]
        for low, high, sign in _edges(span, first, after):
            parts.append((sign, from_rows({"gte": low, "lt": high})))
        for sign, statement in parts:
            for status, currency, n, amount, total_seconds in await session.execute(statement):
                entry = sums[(str(getattr(status, "value", status)), currency)]
                entry[0] += sign * int(n)
                entry[1] += sign * Decimal(amount)
                entry[2] += sign * Decimal(total_seconds or 0)
        return [
            (status, currency, n, amount, total_seconds)
            for (status, currency), (n, amount, total_seconds) in sorted(
                sums.items(), key=lambda item: item[0][1]
            )
            if n
        ]

    async def reached(
        self,
        session: AsyncSession,
        span: Period,
        months: tuple[datetime, datetime],
        from_rows: Any,
    ) -> list[tuple[Any, int]]:
        """(furthest stage position, count) of the deals created in the period: the UTC
        months' totals, plus the deals created between the period's start and the nearest
        month start when the start comes first, minus those between that month start and
        the period's start when it comes after (the reverse at the end): hours of deals,
        read by ``from_rows(created_at bounds)`` (their furthest positions, from the rows)."""
        first, after = months
        t = DealCohortTotal
        counts: dict[Any, int] = defaultdict(int)
        summed = (
            select(t.furthest_position, func.sum(t.deal_count))
            .where(*self._where(t), t.month >= first, t.month < after)
            .group_by(t.furthest_position)
        )
        for position, n in await session.execute(summed):
            counts[position] += int(n)
        for low, high, sign in _edges(span, first, after):
            for position, n in await session.execute(from_rows({"gte": low, "lt": high})):
                counts[position] += sign * int(n)
        return [(p, n) for p, n in counts.items() if n]


def _edges(span: Period, first: datetime, after: datetime) -> list[tuple[datetime, datetime, int]]:
    """What the UTC months ``[first, after)`` miss or hold beyond the period, as
    ``(from, to, sign)``: the hours before the first month start when the period starts
    earlier (added), the hours of the first month before the period (taken off); the same
    at the end."""
    pieces = [
        (span.start, first, 1),
        (first, span.start, -1),
        (after, span.end, 1),
        (span.end, after, -1),
    ]
    return [(low, high, sign) for low, high, sign in pieces if low < high]


def _by_furthest_stage(deal_rows: Any) -> Any:
    """``(furthest_stage_position, count)`` of the deals of ``deal_rows``: the same
    positions as ``deals.FURTHEST_STAGE_POSITION`` (the deals list's filter, which the
    reached cells drill down to; the tests compare the two), computed by joins over the
    whole cohort at once instead of a subquery per deal (about 3 times faster on the bench
    data set)."""
    cohort = deal_rows.with_only_columns(Deal.id, Deal.workspace_id, Deal.stage_id).subquery()
    current = select(cohort.c.id, Stage.position).join(Stage, Stage.id == cohort.c.stage_id)
    left = (
        select(cohort.c.id, Stage.position)
        .join(
            DealStageChange,
            and_(
                DealStageChange.workspace_id == cohort.c.workspace_id,
                DealStageChange.deal_id == cohort.c.id,
            ),
        )
        .join(Stage, Stage.id == DealStageChange.from_stage_id)
    )
    been = union_all(current, left).subquery()
    per_deal = select(func.max(been.c.position).label("furthest")).group_by(been.c.id).subquery()
    return select(per_deal.c.furthest, func.count()).group_by(per_deal.c.furthest)


def _plain_spec(spec: Any) -> Any:
    """A drill-down spec as ``querying`` reads it: ``Ref``s become their UUIDs."""
    if isinstance(spec, Ref):
        return spec.id
    if isinstance(spec, Mapping):
        return {k: _plain_spec(v) for k, v in spec.items()}
    if isinstance(spec, list | tuple):
        return [_plain_spec(v) for v in spec]
    return spec


# ----------------------------------------------------------------------------- service


@dataclass
class VolumeCell:
    channel: Channel
    status: ConversationStatus
    count: int
    drill_down: DrillDown


@dataclass
class TimeStats:
    """Durations of a group of conversations, in seconds (``percentile_cont``)."""

    agent_id: uuid.UUID | None
    channel: Channel | None
    count: int
    p50_seconds: float | None
    p90_seconds: float | None
    drill_down: DrillDown


@dataclass
class ServiceTimes:
    overall: TimeStats
    by_agent: list[TimeStats]
    by_channel: list[TimeStats]


@dataclass
class BacklogBand:
    label: str
    min_age_hours: int
    max_age_hours: int | None
    open_count: int
    pending_count: int
    count: int
    drill_down: DrillDown


@dataclass
class CsatStats:
    agent_id: uuid.UUID | None
    channel: Channel | None
    count: int
    satisfied: int
    csat: float | None
    average_score: float | None
    drill_down: DrillDown
    satisfied_drill_down: DrillDown


@dataclass
class Csat:
    overall: CsatStats
    by_agent: list[CsatStats]
    by_channel: list[CsatStats]


@dataclass
class ServiceReport:
    period: Period
    as_of: datetime
    volume: list[VolumeCell]
    first_response: ServiceTimes
    resolution: ServiceTimes
    backlog: list[BacklogBand]
    csat: Csat


def _conversations(spec: FilterSpec) -> DrillDown:
    return DrillDown("conversations", dict(spec))


def _group_spec(agent: int, channel: int, agent_id: Any, channel_value: Any) -> dict[str, Any]:
    """The filter of one group of a ``GROUPING SETS ((assignee), (channel), ())`` row."""
    spec: dict[str, Any] = {}
    if not agent:
        spec["assignee_id"] = _ref_or_none("User", agent_id)
    if not channel:
        spec["channel"] = {"eq": Channel(channel_value)}
    return spec


def _grouping_sets() -> Any:
    return func.grouping_sets(
        tuple_(Conversation.assignee_id), tuple_(Conversation.channel), tuple_()
    )


def _group_key(agent_id: Any, channel: Any) -> tuple[str, str]:
    return (str(agent_id or ""), str(channel or ""))


@dataclass(frozen=True)
class ServiceStatements:
    """The five statements of a service report and the filters behind them (``spec``s,
    each before the caller's ``filter``):

    - ``volume``: ``channel, status, n`` of the conversations started in the period;
    - ``first_response``, ``resolution``: ``by_agent, by_channel`` (GROUPING flags),
      ``assignee_id, channel, n, p50, p90`` per ``GROUPING SETS ((assignee), (channel), ())``;
    - ``backlog``: ``band`` (index in ``BACKLOG_BANDS``), ``status, n`` now (``as_of``);
    - ``csat``: ``by_agent, by_channel, assignee_id, channel, n, satisfied, average``."""

    span: Period
    volume: Any
    first_response: Any
    resolution: Any
    backlog: Any
    csat: Any
    started_spec: dict[str, Any]
    first_response_spec: dict[str, Any]
    resolution_spec: dict[str, Any]
    backlog_spec: dict[str, Any]
    rated_spec: dict[str, Any]


SATISFIED_FILTER = {"rating_score": {"gte": min(SATISFIED_SCORES)}}


def service_statements(
    actor: Actor,
    *,
    start: Any,
    end: Any,
    time_zone: str | None,
    channels: Sequence[Any] | None,
    assignee_ids: Sequence[uuid.UUID] | None,
    filter: FilterSpec | None,
    as_of: Any,
) -> ServiceStatements:
    """``service_report``'s statements; ``as_of``: the instant the backlog is aged at (a
    value, or an SQL expression such as ``now()``)."""
    span = period(start, end, time_zone)
    base: dict[str, Any] = {}
    if channels:
        base["channel"] = {"in": [fields.choice(Channel, c, "channels") for c in channels]}
    if assignee_ids:
        base["assignee_id"] = _ids("User", assignee_ids)

    def rows(*specs: FilterSpec) -> Any:
        return conversations.CONVERSATIONS.statement(
            actor, _all(filter, *(_plain_spec(s) for s in specs))
        )

    started_spec = {**base, "created_at": span.instants()}
    volume = (
        rows(started_spec)
        .with_only_columns(Conversation.channel, Conversation.status, func.count().label("n"))
        .group_by(Conversation.channel, Conversation.status)
        .order_by(Conversation.channel, Conversation.status)
    )

    def per_agent_and_channel(spec: dict[str, Any], *columns: Any) -> Any:
        """``columns`` per agent, per channel and overall (``GROUPING SETS``)."""
        return (
            rows(spec)
            .with_only_columns(
                func.grouping(Conversation.assignee_id).label("by_agent"),
                func.grouping(Conversation.channel).label("by_channel"),
                Conversation.assignee_id,
                Conversation.channel,
                func.count().label("n"),
                *columns,
            )
            .group_by(_grouping_sets())
        )

    def durations(spec: dict[str, Any], since: Any, until: Any) -> Any:
        seconds = extract("epoch", until - since)
        return per_agent_and_channel(
            spec,
            func.percentile_cont(0.5).within_group(seconds).label("p50"),
            func.percentile_cont(0.9).within_group(seconds).label("p90"),
        )

    first_response_spec = {**base, "first_response_at": span.instants()}
    resolution_spec = {**base, "closed_at": span.instants()}
    waiting = [ConversationStatus.OPEN, ConversationStatus.PENDING]
    backlog_spec = {**base, "status": {"in": waiting}}
    band = case(
        *(
            (Conversation.created_at > as_of - timedelta(hours=upper), index)
            for index, (_, _, upper) in enumerate(BACKLOG_BANDS)
            if upper is not None
        ),
        else_=len(BACKLOG_BANDS) - 1,
    ).label("band")
    # Grouped outside: the band's expression written once (its values bound once).
    aged = rows(backlog_spec).with_only_columns(band, Conversation.status).subquery("aged")
    rated_spec = {**base, "rated_at": span.instants()}
    happy = Conversation.rating_score >= min(SATISFIED_SCORES)
    return ServiceStatements(
        span=span,
        volume=volume,
        first_response=durations(
            first_response_spec,
            Conversation.first_customer_message_at,
            Conversation.first_response_at,
        ),
        resolution=durations(resolution_spec, Conversation.created_at, Conversation.closed_at),
        backlog=select(aged.c.band, aged.c.status, func.count().label("n")).group_by(
            aged.c.band, aged.c.status
        ),
        csat=per_agent_and_channel(
            rated_spec,
            func.count().filter(happy).label("satisfied"),
            func.avg(Conversation.rating_score).label("average"),
        ),
        started_spec=started_spec,
        first_response_spec=first_response_spec,
        resolution_spec=resolution_spec,
        backlog_spec=backlog_spec,
        rated_spec=rated_spec,
    )


def backlog_created(as_of: datetime, lower: int, upper: int | None) -> dict[str, Any]:
    """The ``created_at`` filter of a backlog band's conversations at ``as_of``."""
    created: dict[str, Any] = {"lte": as_of - timedelta(hours=lower)} if lower else {}
    if upper is not None:
        created["gt"] = as_of - timedelta(hours=upper)
    return created


async def service_report(
    actor: Actor,
    session: AsyncSession,
    *,
    start: Any,
    end: Any,
    time_zone: str | None = None,
    channels: Sequence[Any] | None = None,
    assignee_ids: Sequence[uuid.UUID] | None = None,
    filter: FilterSpec | None = None,
    now: datetime | None = None,
) -> ServiceReport:
    """Service over a period, as the caller's ``conversations`` list shows it (private
    conversations included only for who may see them):

    - conversations started in the period, by channel and status;
    - first-response time (the customer's first message to the first agent message after
      it), of conversations first answered in the period, p50 and p90 overall, per agent
      (assignee) and per channel;
    - resolution time (started to closed) of conversations closed in the period, the same;
    - open backlog now (open and pending), by age band;
    - CSAT of the ratings given in the period: count, share of 4 and 5, average score,
      overall, per agent and per channel.

    Five statements whatever the number of conversations (``service_statements``)."""
    as_of = now or datetime.now(UTC)
    built = service_statements(
        actor,
        start=start,
        end=end,
        time_zone=time_zone,
        channels=channels,
        assignee_ids=assignee_ids,
        filter=filter,
        as_of=as_of,
    )
    started_spec = built.started_spec
    volume = [
        VolumeCell(
            Channel(channel),
            ConversationStatus(status),
            int(count),
            _conversations(
                {
                    **started_spec,
                    "channel": {"eq": Channel(channel)},
                    "status": {"eq": ConversationStatus(status)},
                }
            ),
        )
        for channel, status, count in (await session.execute(built.volume)).all()
    ]

    async def durations(statement: Any, spec: dict[str, Any]) -> ServiceTimes:
        result = (await session.execute(statement)).all()
        overall = TimeStats(None, None, 0, None, None, _conversations(spec))
        by_agent, by_channel = [], []
        for agent_g, channel_g, agent_id, channel, count, p50, p90 in result:
            stats = TimeStats(
                agent_id if not agent_g else None,
                Channel(channel) if not channel_g else None,
                int(count),
                float(p50) if p50 is not None else None,
                float(p90) if p90 is not None else None,
                _conversations({**spec, **_group_spec(agent_g, channel_g, agent_id, channel)}),
            )
            if agent_g and channel_g:
                overall = stats
            elif channel_g:
                by_agent.append(stats)
            else:
                by_channel.append(stats)
        by_agent.sort(key=lambda s: _group_key(s.agent_id, None))
        by_channel.sort(key=lambda s: _group_key(None, s.channel))
        return ServiceTimes(overall, by_agent, by_channel)

    first_response = await durations(built.first_response, built.first_response_spec)
    resolution = await durations(built.resolution, built.resolution_spec)

    per_band: dict[int, dict[ConversationStatus, int]] = defaultdict(dict)
    for index, status, count in (await session.execute(built.backlog)).all():
        per_band[int(index)][ConversationStatus(status)] = int(count)
    backlog = []
    for index, (label, lower, upper) in enumerate(BACKLOG_BANDS):
        created = backlog_created(as_of, lower, upper)
        spec = {**built.backlog_spec, "created_at": created} if created else built.backlog_spec
        found = per_band.get(index, {})
        opened = found.get(ConversationStatus.OPEN, 0)
        pending = found.get(ConversationStatus.PENDING, 0)
        backlog.append(
            BacklogBand(
                label, lower, upper, opened, pending, opened + pending, _conversations(spec)
            )
        )

    rated_spec = built.rated_spec
    overall_csat = CsatStats(
        None,
        None,
        0,
        0,
        None,
        None,
        _conversations(rated_spec),
        _conversations({**rated_spec, **SATISFIED_FILTER}),
    )
    csat_agents, csat_channels = [], []
    for agent_g, channel_g, agent_id, channel, count, satisfied, average in (
        await session.execute(built.csat)
    ).all():
        spec = {**rated_spec, **_group_spec(agent_g, channel_g, agent_id, channel)}
        stats = CsatStats(
            agent_id if not agent_g else None,
            Channel(channel) if not channel_g else None,
            int(count),
            int(satisfied),
            int(satisfied) / int(count) if count else None,
            float(average) if average is not None else None,
            _conversations(spec),
            _conversations({**spec, **SATISFIED_FILTER}),
        )
        if agent_g and channel_g:
            overall_csat = stats
        elif channel_g:
            csat_agents.append(stats)
        else:
            csat_channels.append(stats)
    csat_agents.sort(key=lambda s: _group_key(s.agent_id, None))
    csat_channels.sort(key=lambda s: _group_key(None, s.channel))

    return ServiceReport(
        period=built.span,
        as_of=as_of,
        volume=volume,
        first_response=first_response,
        resolution=resolution,
        backlog=backlog,
        csat=Csat(overall_csat, csat_agents, csat_channels),
    )


__all__ = [
    "BACKLOG_BANDS",
    "Period",
    "SalesReport",
    "ServiceReport",
    "period",
    "sales_report",
    "service_report",
]
