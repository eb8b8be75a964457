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
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    Numeric,
    String,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    literal_column,
    or_,
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


@dataclass(frozen=True)
class SalesStatements:
    """A sales report's statements, each giving its numbers as the API shows them (amounts
    rounded to cents, shares and averages as floats), and the filters behind its cells
    (``*_spec``, each before the caller's filter; the ``*_cell`` methods give one cell's).
    Both read paths run these statements: the executed one arranges their rows in Python,
    the compiled one writes them as JSON in PostgreSQL.

    - ``stages``: ``id, reached, conversion`` per live stage of the pipeline in board
      order (position, id): of the deals created in the period, how many reached the stage
      or a later one, and the share of those that went on to the next stage or a later one;
    - ``open``: open deals now, ``all_stages, all_currencies`` (GROUPING flags),
      ``stage_id, currency, n, amount, weighted`` per ``GROUPING SETS ((stage, currency),
      (stage), (currency))`` over the live stages (weighted: amount x stage probability);
    - ``closed``: deals won or lost in the period, ``overall`` (GROUPING flag), ``status,
      currency, n, average_amount`` per status and currency, and on the overall row ``won,
      lost, rate, average_days`` (created to closed, over the won deals);
    - ``forecast``: open deals expected to close in the period, ``month, owner_id,
      currency, n, amount, weighted, first_day, last_day`` (the month within the period)
      in the report's order (month, owner, currency)."""

    span: Period
    pipeline_id: uuid.UUID
    stages: Any
    open: Any
    closed: Any
    forecast: Any
    open_spec: dict[str, Any]
    cohort_spec: dict[str, Any]
    closed_spec: dict[str, Any]
    won_spec: dict[str, Any]
    lost_spec: dict[str, Any]

    def stage_cell(self, stage_id: uuid.UUID) -> dict[str, Any]:
        return {**self.open_spec, "stage_id": {"eq": Ref("Stage", stage_id)}}

    def stage_currency_cell(self, stage_id: uuid.UUID, currency: str) -> dict[str, Any]:
        return {**self.stage_cell(stage_id), "currency": {"eq": currency}}

    def reached_cell(self, position: int) -> dict[str, Any]:
        return {**self.cohort_spec, "furthest_stage_position": {"gte": position}}

    def currency_cell(self, currency: str) -> dict[str, Any]:
        return {**self.open_spec, "currency": {"eq": currency}}

    def won_currency_cell(self, currency: str) -> dict[str, Any]:
        return {**self.won_spec, "currency": {"eq": currency}}

    def closed_cell(self) -> dict[str, Any]:
        return {**self.closed_spec, "status": {"in": [DealStatus.WON, DealStatus.LOST]}}

    def forecast_cell(
        self, owner_id: uuid.UUID | None, currency: str, first_day: date, last_day: date
    ) -> dict[str, Any]:
        return {
            **self.open_spec,
            "owner_id": _ref_or_none("User", owner_id),
            "currency": {"eq": currency},
            "expected_close_date": {"gte": first_day, "lte": last_day},
        }


def sales_statements(
    actor: Actor,
    *,
    pipeline_id: uuid.UUID,
    start: Any,
    end: Any,
    time_zone: str | None,
    owner_ids: Sequence[uuid.UUID] | None,
    filter: FilterSpec | None,
    custom: Any = None,
) -> SalesStatements:
    """``sales_report``'s statements for a pipeline the caller sees (``custom``: the
    deals' custom-field definitions when ``filter`` names custom fields)."""
    span = period(start, end, time_zone)
    base: dict[str, Any] = {"pipeline_id": {"eq": Ref("Pipeline", pipeline_id)}}
    if owner_ids:
        base["owner_id"] = _ids("User", owner_ids)

    def rows(*specs: FilterSpec) -> Any:
        # What the rows are read by: the ids as UUIDs (``Ref`` is for the client's filter).
        return deals.DEALS.statement(
            actor, _all(filter, *(_plain_spec(s) for s in specs)), custom=custom
        )

    live = (
        scoped(Stage, actor)
        .where(Stage.pipeline_id == pipeline_id, Stage.archived_at.is_(None))
        .with_only_columns(
            Stage.id,
            Stage.position,
            Stage.probability,
            func.lead(Stage.position).over(order_by=(Stage.position, Stage.id)).label("next"),
            func.row_number().over(order_by=(Stage.position, Stage.id)).label("i"),
        )
        .subquery("live")
    )

    # Without a filter of the caller's, the numbers of open deals and of the cohort come
    # from the summaries kept on write (``DealStageTotal``, ``DealCohortTotal``), which
    # give exactly the rows' answer (decision 0021); a filter reads the rows.
    totals = _DealTotals(actor, pipeline_id, owner_ids) if not filter else None
    months = totals.cohort_months(span) if totals else None

    # Of the deals created in the period, how many reached each stage or a later one.
    cohort_spec = {**base, "created_at": span.instants()}
    if totals and months:
        reach_rows = totals.reached(
            span, months, lambda bounds: _by_furthest_stage(rows({**base, "created_at": bounds}))
        )
    else:
        reach_rows = _by_furthest_stage(rows(cohort_spec))
    reach = reach_rows.cte("reach")

    def reached(position: Any) -> Any:
        return (
            select(cast(func.coalesce(func.sum(reach.c.n), 0), BigInteger))
            .where(reach.c.position >= position)
            .scalar_subquery()
        )

    here, following = reached(live.c.position), reached(live.c.next)
    stages = select(
        live.c.id,
        live.c.position,
        here.label("reached"),
        case(
            (and_(live.c.next.is_not(None), here != 0), cast(following, Float) / cast(here, Float)),
            else_=None,
        ).label("conversion"),
    ).order_by(live.c.i)

    # Open deals per live stage and currency, per stage and per currency.
    open_spec = {**base, "status": {"eq": DealStatus.OPEN}}
    if totals:
        open_rows = totals.open_by_stage()
    else:
        open_rows = (
            rows(open_spec)
            .with_only_columns(
                Deal.stage_id,
                Deal.currency,
                func.count().label("n"),
                func.sum(Deal.amount).label("amount"),
            )
            .group_by(Deal.stage_id, Deal.currency)
        )
    o = open_rows.subquery("open")
    open_ = (
        select(
            func.grouping(o.c.stage_id).label("all_stages"),
            func.grouping(o.c.currency).label("all_currencies"),
            o.c.stage_id,
            o.c.currency,
            cast(func.sum(o.c.n), BigInteger).label("n"),
            _cents(func.sum(o.c.amount)).label("amount"),
            _cents(func.sum(_weighted(o.c.amount, live.c.probability))).label("weighted"),
        )
        .join_from(o, live, live.c.id == o.c.stage_id)
        .group_by(
            func.grouping_sets(
                tuple_(o.c.stage_id, o.c.currency), tuple_(o.c.stage_id), tuple_(o.c.currency)
            )
        )
        .order_by(o.c.stage_id, _c(o.c.currency))
    )

    # Deals closed (won or lost) in the period.
    closed_spec = {**base, "closed_at": span.instants()}
    seconds = extract("epoch", Deal.closed_at - Deal.created_at)
    closing = [DealStatus.WON, DealStatus.LOST]

    def closed_between(bounds: Mapping[str, Any]) -> Any:
        return (
            rows({**base, "closed_at": bounds, "status": {"in": closing}})
            .with_only_columns(
                cast(Deal.status, String).label("status"),
                Deal.currency,
                func.count().label("n"),
                func.sum(Deal.amount).label("amount"),
                func.sum(seconds).label("seconds"),
            )
            .group_by(Deal.status, Deal.currency)
        )

    if totals and months:
        closed_rows = totals.closed(span, months, closed_between)
    else:
        closed_rows = closed_between(span.instants())
    u = closed_rows.subquery("closed")
    n = func.sum(u.c.n)
    won_n = func.coalesce(func.sum(u.c.n).filter(u.c.status == DealStatus.WON.value), 0)
    lost_n = func.coalesce(func.sum(u.c.n).filter(u.c.status == DealStatus.LOST.value), 0)
    won_seconds = func.sum(u.c.seconds).filter(u.c.status == DealStatus.WON.value)
    overall = func.grouping(u.c.status)
    closed = (
        select(
            overall.label("overall"),
            u.c.status,
            u.c.currency,
            cast(n, BigInteger).label("n"),
            # Exact to 20 places before rounding (numeric division keeps only 16 digits).
            _cents(cast(func.sum(u.c.amount), Numeric(40, 20)) / func.nullif(n, 0)).label(
                "average_amount"
            ),
            cast(won_n, BigInteger).label("won"),
            cast(lost_n, BigInteger).label("lost"),
            (cast(won_n, Float) / cast(func.nullif(won_n + lost_n, 0), Float)).label("rate"),
            (
                cast(won_seconds, Float) / cast(func.nullif(won_n, 0), Float) / literal(86_400.0)
            ).label("average_days"),
        )
        .group_by(func.grouping_sets(tuple_(u.c.status, u.c.currency), tuple_()))
        .having(or_(overall == 1, n != 0))
        .order_by(u.c.status, _c(u.c.currency))
    )

    # Open deals expected to close within the period, by month, owner and currency.
    forecast_spec = {
        **open_spec,
        "expected_close_date": {"gte": span.start_date, "lte": span.end_date},
    }
    forecast_rows = totals.forecast(span.start_date, span.end_date) if totals else None
    if forecast_rows is None:
        # A literal unit, not a parameter: the same expression is grouped by.
        unit: Any = literal_column("'month'")
        month = cast(func.date_trunc(unit, Deal.expected_close_date), Date).label("month")
        forecast_rows = (
            rows(forecast_spec)
            .with_only_columns(
                month,
                Deal.owner_id,
                Deal.currency,
                Deal.stage_id,
                func.count().label("n"),
                func.sum(Deal.amount).label("amount"),
            )
            .group_by(month, Deal.owner_id, Deal.currency, Deal.stage_id)
        )
    f = forecast_rows.subquery("forecast")
    month_end = cast(f.c.month + literal_column("interval '1 month - 1 day'"), Date)
    forecast = (
        select(
            f.c.month,
            f.c.owner_id,
            f.c.currency,
            cast(func.sum(f.c.n), BigInteger).label("n"),
            _cents(func.sum(f.c.amount)).label("amount"),
            _cents(func.sum(_weighted(f.c.amount, func.coalesce(live.c.probability, 0)))).label(
                "weighted"
            ),
            func.greatest(f.c.month, span.start_date).label("first_day"),
            func.least(month_end, span.end_date).label("last_day"),
        )
        .join_from(f, live, live.c.id == f.c.stage_id, isouter=True)
        .group_by(f.c.month, f.c.owner_id, f.c.currency)
        .order_by(f.c.month, _c(func.coalesce(cast(f.c.owner_id, String), "")), _c(f.c.currency))
    )

    won_spec = {**closed_spec, "status": {"eq": DealStatus.WON}}
    return SalesStatements(
        span=span,
        pipeline_id=pipeline_id,
        stages=stages,
        open=open_,
        closed=closed,
        forecast=forecast,
        open_spec=open_spec,
        cohort_spec=cohort_spec,
        closed_spec=closed_spec,
        won_spec=won_spec,
        lost_spec={**closed_spec, "status": {"eq": DealStatus.LOST}},
    )


def _cents(amount: Any) -> Any:
    """An amount as the API shows it: rounded to cents, halves away from zero."""
    return func.round(amount, 2)


def _weighted(amount: Any, probability: Any) -> Any:
    """Amount x probability (a stage's percentage), exact (numeric multiplication)."""
    return amount * probability * literal(Decimal("0.01"), Numeric)


def _c(text: Any) -> Any:
    """Text in code-point order (how Python sorts strings), whatever the database's
    collation."""
    return text.collate("C")


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
    field: the deals' definitions): the pipeline, its stages, and ``sales_statements``."""
    span = period(start, end, time_zone)
    pipeline, stages = await _pipeline_and_stages(actor, session, pipeline_id)
    built = sales_statements(
        actor,
        pipeline_id=pipeline.id,
        start=span.start_date,
        end=span.end_date,
        time_zone=span.time_zone,
        owner_ids=owner_ids,
        filter=filter,
        custom=await deals.DEALS.custom_terms(actor, session, filter),
    )
    numbers = {row.id: row for row in await session.execute(built.stages)}
    open_cells: dict[uuid.UUID, list[Any]] = defaultdict(list)
    open_counts: dict[uuid.UUID, int] = {}
    by_currency = []
    for row in await session.execute(built.open):
        if not row.all_stages and not row.all_currencies:
            open_cells[row.stage_id].append(row)
        elif not row.all_stages:
            open_counts[row.stage_id] = row.n
        else:
            by_currency.append(row)

    sales_stages = []
    for stage in stages:
        cells = open_cells.get(stage.id, [])

        def money(row: Any, amount: Decimal, stage: Stage = stage) -> MoneyCell:
            spec = built.stage_currency_cell(stage.id, row.currency)
            return MoneyCell(row.currency, amount, row.n, _deals(spec))

        found = numbers.get(stage.id)
        sales_stages.append(
            SalesStage(
                stage=stage,
                open_count=open_counts.get(stage.id, 0),
                open_value=[money(row, row.amount) for row in cells],
                weighted_value=[money(row, row.weighted) for row in cells],
                reached_count=found.reached if found else 0,
                conversion_to_next=found.conversion if found else None,
                drill_down=_deals(built.stage_cell(stage.id)),
                reached_drill_down=_deals(built.reached_cell(stage.position)),
            )
        )

    deal_size, won, lost, rate, average_days = [], 0, 0, None, None
    for row in await session.execute(built.closed):
        if row.overall:
            won, lost, rate, average_days = row.won, row.lost, row.rate, row.average_days
        elif row.status == DealStatus.WON.value:
            spec = built.won_currency_cell(row.currency)
            deal_size.append(MoneyCell(row.currency, row.average_amount, row.n, _deals(spec)))

    forecast = [
        ForecastCell(
            row.month,
            row.owner_id,
            row.currency,
            row.n,
            row.amount,
            row.weighted,
            _deals(built.forecast_cell(row.owner_id, row.currency, row.first_day, row.last_day)),
        )
        for row in await session.execute(built.forecast)
    ]

    return SalesReport(
        pipeline=pipeline,
        period=built.span,
        stages=sales_stages,
        win_rate=WinRate(
            won=won,
            lost=lost,
            rate=rate,
            drill_down=_deals(built.closed_cell()),
            won_drill_down=_deals(built.won_spec),
            lost_drill_down=_deals(built.lost_spec),
        ),
        average_deal_size=deal_size,
        average_cycle_time=CycleTime(
            average_days=average_days, count=won, drill_down=_deals(built.won_spec)
        ),
        weighted_pipeline=[
            MoneyCell(row.currency, row.weighted, row.n, _deals(built.currency_cell(row.currency)))
            for row in by_currency
        ],
        forecast=forecast,
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
            select(
                t.stage_id,
                t.currency,
                func.sum(t.deal_count).label("n"),
                func.sum(t.amount).label("amount"),
            )
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
        keys = (t.close_month.label("month"), t.owner_id, t.currency, t.stage_id)
        return (
            select(*keys, func.sum(t.deal_count).label("n"), func.sum(t.amount).label("amount"))
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

    def closed(self, span: Period, months: tuple[datetime, datetime], from_rows: Any) -> Any:
        """(status, currency, n, amount, seconds from creation to closing) parts of the
        deals won or lost in the period, to be summed per status and currency: the UTC
        months' totals corrected at both ends like ``reached``."""
        first, after = months
        t = DealCloseTotal
        summed = (
            select(
                t.status,
                t.currency,
                func.sum(t.deal_count).label("n"),
                func.sum(t.amount).label("amount"),
                func.sum(t.seconds).label("seconds"),
            )
            .where(
                *self._where(t),
                t.status.in_([DealStatus.WON.value, DealStatus.LOST.value]),
                t.month >= first,
                t.month < after,
            )
            .group_by(t.status, t.currency)
        )
        return _signed(summed, span, months, from_rows, ("status", "currency"))

    def reached(self, span: Period, months: tuple[datetime, datetime], from_rows: Any) -> Any:
        """(furthest stage position, n) parts of the deals created in the period, to be
        summed per position: the UTC months' totals, plus the deals created between the
        period's start and the nearest month start when the start comes first, minus those
        between that month start and the period's start when it comes after (the reverse
        at the end): hours of deals, read by ``from_rows(created_at bounds)`` (their
        furthest positions, from the rows)."""
        first, after = months
        t = DealCohortTotal
        summed = (
            select(t.furthest_position.label("position"), func.sum(t.deal_count).label("n"))
            .where(*self._where(t), t.month >= first, t.month < after)
            .group_by(t.furthest_position)
        )
        return _signed(summed, span, months, from_rows, ("position",))


def _signed(
    summed: Any,
    span: Period,
    months: tuple[datetime, datetime],
    from_rows: Any,
    keys: tuple[str, ...],
) -> Any:
    """``summed`` (the UTC months' totals) and, for each of ``_edges``, ``from_rows(bounds)``
    with its sums signed (+ what the months miss, - what they hold beyond the period): the
    same columns, ``keys`` then sums, to be summed again per key."""
    parts = [summed]
    for low, high, sign in _edges(span, *months):
        edge = from_rows({"gte": low, "lt": high}).subquery()
        parts.append(
            select(
                *(edge.c[key] for key in keys),
                *(
                    (column * sign).label(column.name)
                    for column in edge.c
                    if column.name not in keys
                ),
            )
        )
    return union_all(*parts)


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
    return select(per_deal.c.furthest.label("position"), func.count().label("n")).group_by(
        per_deal.c.furthest
    )


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

    def volume_cell(self, channel: Any, status: Any) -> dict[str, Any]:
        return {**self.started_spec, "channel": {"eq": channel}, "status": {"eq": status}}

    @staticmethod
    def group_cell(
        spec: dict[str, Any], by_agent: bool, by_channel: bool, agent_id: Any, channel: Any
    ) -> dict[str, Any]:
        """The filter of one group of a ``GROUPING SETS ((assignee), (channel), ())`` row of
        ``spec``'s conversations (``by_agent``: the assignee's group, None for unassigned)."""
        cell = dict(spec)
        if by_agent:
            cell["assignee_id"] = _ref_or_none("User", agent_id)
        if by_channel:
            cell["channel"] = {"eq": channel}
        return cell

    @staticmethod
    def satisfied_cell(spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, **SATISFIED_FILTER}

    def backlog_cell(self, as_of: Any, lower: int, upper: int | None) -> dict[str, Any]:
        """The open conversations aged ``lower`` to ``upper`` hours at ``as_of``."""
        created: dict[str, Any] = {"lte": as_of - timedelta(hours=lower)} if lower else {}
        if upper is not None:
            created["gt"] = as_of - timedelta(hours=upper)
        return {**self.backlog_spec, "created_at": created} if created else self.backlog_spec


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
    volume = [
        VolumeCell(
            Channel(channel),
            ConversationStatus(status),
            int(count),
            _conversations(built.volume_cell(Channel(channel), ConversationStatus(status))),
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
                _conversations(
                    built.group_cell(
                        spec, not agent_g, not channel_g, agent_id, channel and Channel(channel)
                    )
                ),
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
        spec = built.backlog_cell(as_of, lower, upper)
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
        _conversations(built.satisfied_cell(rated_spec)),
    )
    csat_agents, csat_channels = [], []
    for agent_g, channel_g, agent_id, channel, count, satisfied, average in (
        await session.execute(built.csat)
    ).all():
        spec = built.group_cell(
            rated_spec, not agent_g, not channel_g, agent_id, channel and Channel(channel)
        )
        stats = CsatStats(
            agent_id if not agent_g else None,
            Channel(channel) if not channel_g else None,
            int(count),
            int(satisfied),
            int(satisfied) / int(count) if count else None,
            float(average) if average is not None else None,
            _conversations(spec),
            _conversations(built.satisfied_cell(spec)),
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
