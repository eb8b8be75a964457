"""Aggregates over the root lists and time series (issue 13, points 4 and 5).

Each list declares once (``AggregateSpec``) what it can be grouped by (``Dimension``: an
enum column, a reference to another object, or a time field cut into buckets), which
numeric fields add up, and its money field, which is always aggregated per currency.

An aggregate reads exactly the rows of its list: its FROM is the list's own statement
(``ListSpec.statement``: tenant, read permission, row visibility, the caller's filter,
archived rows), never a second scoping. The totals and every group come from one SQL
statement whatever the number of groups: a hashed GROUP BY per group and currency, then
GROUPING SETS over those rows for the totals. Every group says which filter reproduces
it on its list (``DrillDown``).

Time buckets are cut in the caller's time zone (IANA name): a bucket starts at local
midnight (Monday for weeks) and ends where the next one starts, so a day of a DST change
lasts 23 or 25 hours. Buckets are labelled with their local start.
"""

from __future__ import annotations

import enum
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import (
    TIMESTAMP,
    Date,
    DateTime,
    Integer,
    Numeric,
    Select,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import INTERVAL, aggregate_order_by
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import (
    Activity,
    Company,
    Conversation,
    Customer,
    Deal,
    DealStatus,
    Order,
)
from crm_graphql.services import (
    activities,
    companies,
    conversations,
    customers,
    deals,
    fields,
    order_totals,
    orders,
)
from crm_graphql.services.drilldown import DrillDown, Ref
from crm_graphql.services.errors import Invalid
from crm_graphql.storage.querying import FilterSpec, ListSpec

MAX_DIMENSIONS = 2
# More groups than this is a report nobody reads: the caller narrows the filter or picks a
# coarser interval (an error, never a silently truncated answer).
MAX_GROUPS = 1000
MAX_BUCKETS = 1000


class Interval(enum.StrEnum):
    """The length of a time bucket (``date_trunc`` units)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_STEP = {
    Interval.DAY: "1 day",
    Interval.WEEK: "7 days",
    Interval.MONTH: "1 month",
    Interval.QUARTER: "3 months",
    Interval.YEAR: "1 year",
}
# The shortest a bucket can be (a DST day lasts 23 hours): bounds the number of buckets.
_SHORTEST = {
    Interval.DAY: timedelta(hours=23),
    Interval.WEEK: timedelta(days=7) - timedelta(hours=1),
    Interval.MONTH: timedelta(days=28) - timedelta(hours=1),
    Interval.QUARTER: timedelta(days=89) - timedelta(hours=1),
    Interval.YEAR: timedelta(days=365) - timedelta(hours=1),
}


class Kind(enum.Enum):
    VALUE = "value"  # an enum column: the key is its value
    RELATION = "relation"  # a reference: the key is the related object's id
    INSTANT = "instant"  # a point in time, bucketed in the caller's time zone
    DATE = "date"  # a calendar date, bucketed as it is (no time zone)


@dataclass(frozen=True)
class Dimension:
    """Something a list can be grouped by. ``filter_field`` is the list's filter field that
    selects one group (the drill-down); ``join`` is ``(model, on clause)`` when the column
    lives on a related row (an order's customer's owner)."""

    column: Any
    filter_field: str
    kind: Kind
    type_name: str | None = None
    join: tuple[Any, Any] | None = None

    @property
    def bucketed(self) -> bool:
        return self.kind in (Kind.INSTANT, Kind.DATE)


@dataclass(frozen=True)
class MoneyField:
    amount: Any
    currency: Any
    scale: int = 2


@dataclass(frozen=True)
class AggregateSpec:
    """The aggregates of one root list (``list``: its GraphQL field name)."""

    list: str
    rows: ListSpec[Any]
    dimensions: Mapping[str, Dimension]
    money: MoneyField | None = None
    numbers: Mapping[str, Any] = field(default_factory=dict)
    number_scale: int = 2


def _relation(column: Any, type_name: str) -> Dimension:
    return Dimension(column, column.key, Kind.RELATION, type_name)


def _value(column: Any) -> Dimension:
    return Dimension(column, column.key, Kind.VALUE)


def _instant(column: Any) -> Dimension:
    return Dimension(column, column.key, Kind.INSTANT)


CUSTOMERS = AggregateSpec(
    "customers",
    customers.CUSTOMERS,
    {
        "lifecycle_stage": _value(Customer.lifecycle_stage),
        "owner": _relation(Customer.owner_id, "User"),
        "company": _relation(Customer.company_id, "Company"),
        "created_at": _instant(Customer.created_at),
        "last_activity_at": _instant(Customer.last_activity_at),
    },
)

COMPANIES = AggregateSpec(
    "companies",
    companies.COMPANIES,
    {
        "owner": _relation(Company.owner_id, "User"),
        "created_at": _instant(Company.created_at),
    },
    numbers={"employee_count": Company.employee_count},
)

DEALS = AggregateSpec(
    "deals",
    deals.DEALS,
    {
        "status": _value(Deal.status),
        "pipeline": _relation(Deal.pipeline_id, "Pipeline"),
        "stage": _relation(Deal.stage_id, "Stage"),
        "owner": _relation(Deal.owner_id, "User"),
        "company": _relation(Deal.company_id, "Company"),
        "customer": _relation(Deal.customer_id, "Customer"),
        "created_at": _instant(Deal.created_at),
        "closed_at": _instant(Deal.closed_at),
        "expected_close_date": Dimension(
            Deal.expected_close_date, "expected_close_date", Kind.DATE
        ),
    },
    money=MoneyField(Deal.amount, Deal.currency),
)

ACTIVITIES = AggregateSpec(
    "activities",
    activities.ACTIVITIES,
    {
        "type": _value(Activity.type),
        "author": _relation(Activity.author_id, "User"),
        "customer": _relation(Activity.customer_id, "Customer"),
        "deal": _relation(Activity.deal_id, "Deal"),
        "occurred_at": _instant(Activity.occurred_at),
        "due_at": _instant(Activity.due_at),
        "completed_at": _instant(Activity.completed_at),
        "created_at": _instant(Activity.created_at),
    },
)

ORDERS = AggregateSpec(
    "orders",
    orders.ORDERS,
    {
        "status": _value(Order.status),
        "customer": _relation(Order.customer_id, "Customer"),
        # Orders have no owner of their own: the customer's owner sells to them.
        "owner": Dimension(
            Customer.owner_id,
            "customer_owner_id",
            Kind.RELATION,
            "User",
            join=(Customer, Customer.id == Order.customer_id),
        ),
        "placed_at": _instant(Order.placed_at),
        "created_at": _instant(Order.created_at),
    },
    money=MoneyField(Order.amount, Order.currency),
)

CONVERSATIONS = AggregateSpec(
    "conversations",
    conversations.CONVERSATIONS,
    {
        "channel": _value(Conversation.channel),
        "status": _value(Conversation.status),
        "assignee": _relation(Conversation.assignee_id, "User"),
        "customer": _relation(Conversation.customer_id, "Customer"),
        "created_at": _instant(Conversation.created_at),
        "last_message_at": _instant(Conversation.last_message_at),
    },
)

SPECS = {s.list: s for s in (CUSTOMERS, COMPANIES, DEALS, ACTIVITIES, ORDERS, CONVERSATIONS)}


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GroupBy:
    """One grouping dimension as a caller asks for it (``interval`` for time fields)."""

    dimension: str
    interval: Interval | None = None


@dataclass(frozen=True)
class MoneyStats:
    """Sum, average, minimum and maximum of the amounts in one currency."""

    currency: str
    count: int
    sum: Decimal
    avg: Decimal
    min: Decimal | None  # None when read from a summary that keeps no extremes
    max: Decimal | None


@dataclass(frozen=True)
class NumberStats:
    """Sum, average, minimum and maximum of a numeric field (None when no row has a value)."""

    sum: Decimal | None
    avg: Decimal | None
    min: Decimal | None
    max: Decimal | None


@dataclass(frozen=True)
class Stats:
    count: int
    money: list[MoneyStats]
    numbers: dict[str, NumberStats]


@dataclass(frozen=True)
class Group:
    """One group: its keys (dimension name -> enum value, related id, bucket's local start,
    or None), its numbers and the filter that gives its rows."""

    keys: dict[str, Any]
    stats: Stats
    drill_down: DrillDown


@dataclass(frozen=True)
class Aggregate:
    totals: Stats
    groups: list[Group]


@dataclass(frozen=True)
class Point:
    """One bucket of a time series: ``[start, end)`` in the caller's time zone."""

    start: datetime
    end: datetime
    stats: Stats
    drill_down: DrillDown


# ------------------------------------------------------------------------- validation


def _check_group_by(spec: AggregateSpec, group_by: Sequence[GroupBy]) -> None:
    if len(group_by) > MAX_DIMENSIONS:
        raise Invalid(f"Group by at most {MAX_DIMENSIONS} dimensions", "groupBy")
    seen: set[str] = set()
    for item in group_by:
        dimension = spec.dimensions.get(item.dimension)
        if dimension is None:
            raise Invalid(f"Cannot group {spec.list} by `{item.dimension}`", "groupBy")
        if item.dimension in seen:
            raise Invalid(f"`{item.dimension}` appears twice in groupBy", "groupBy")
        seen.add(item.dimension)
        if dimension.bucketed and item.interval is None:
            raise Invalid(f"Grouping by `{item.dimension}` needs an `interval`", "groupBy")
        if not dimension.bucketed and item.interval is not None:
            raise Invalid(f"`{item.dimension}` is not a time field: no `interval`", "groupBy")


# -------------------------------------------------------------------------- statements


def _text(value: str) -> Any:
    """A constant SQL string literal (a validated time-zone name or ``date_trunc`` unit).
    Literal rather than bound: the same expression appears in several clauses."""
    return literal_column("'" + value.replace("'", "''") + "'", String)


def _step(interval: Interval) -> Any:
    return literal_column(f"interval '{_STEP[interval]}'", INTERVAL)


def _bucket_start(dimension: Dimension, interval: Interval, zone: str) -> Any:
    """The start of the bucket of a row: ``timestamptz`` (its local start) or ``date``."""
    if dimension.kind is Kind.DATE:
        return cast(func.date_trunc(_text(interval.value), cast(dimension.column, TIMESTAMP)), Date)
    return func.date_trunc(_text(interval.value), dimension.column, _text(zone))


def _bucket_end(dimension: Dimension, interval: Interval, zone: str, start: Any) -> Any:
    """Where the next bucket starts: one step later on the local wall clock."""
    if dimension.kind is Kind.DATE:
        return cast(start + _step(interval), Date)
    local = func.timezone(_text(zone), start)
    return func.timezone(_text(zone), local + _step(interval))


# What Python (and so the driver) can represent, and filters accept: a bucket of the first
# or last year of the calendar may start or end beyond it (year 0, year 10000) in
# PostgreSQL. The driver writes Python's first and last values as -infinity / infinity,
# hence the accepted range's ends rather than those.
def _representable(expression: Any, kind: Kind) -> Any:
    """``expression`` held within the accepted dates and times (infinities kept)."""
    if kind is Kind.DATE:
        low: Any = literal(fields.EARLIEST_DATE, Date)
        high: Any = literal(fields.LATEST_DATE, Date)
    else:
        low = literal(fields.EARLIEST, DateTime(timezone=True))
        high = literal(fields.LATEST, DateTime(timezone=True))
    # Infinite values and NULL (isfinite is NULL then) stay as they are.
    finite = func.isfinite(expression)
    return case((finite, func.greatest(func.least(expression, high), low)), else_=expression)


def grouped_statement(
    spec: AggregateSpec, base: Select[Any], group_by: Sequence[GroupBy], zone: str
) -> Select[Any]:
    """One statement over ``base`` (the list's rows, ``ListSpec.statement``): a row per
    group (``g`` = 0) and a row of totals (``g`` > 0), each with ``k<i>`` / ``e<i>`` (key,
    bucket end), ``n`` (count), ``money`` (JSON per currency: ``MONEY_ENTRY``) and
    ``<number>_sum/_n/_avg/_min/_max``."""
    dims = [spec.dimensions[g.dimension] for g in group_by]
    for dimension in dims:
        if dimension.join is not None:
            base = base.outerjoin(*dimension.join)

    # Level 0: the rows of the list, reduced to what is aggregated.
    columns: list[Any] = []
    for i, (item, dimension) in enumerate(zip(group_by, dims, strict=True)):
        key = (
            _bucket_start(dimension, item.interval, zone)
            if item.interval is not None
            else dimension.column
        )
        columns.append(key.label(f"k{i}"))
    money = spec.money
    currency = money.currency if money else cast(null(), String(3))
    columns.append(currency.label("cur"))
    if money:
        columns.append(money.amount.label("amount"))
    columns.extend(column.label(f"num_{name}") for name, column in spec.numbers.items())
    rows = base.with_only_columns(*columns, maintain_column_froms=True).subquery("rows")

    # Level 1: per group and currency, by a plain GROUP BY: PostgreSQL hashes it (a
    # GROUPING SETS over every row would sort them all, spilling to disk).
    keys = [rows.c[f"k{i}"] for i in range(len(dims))]
    fine_cols: list[Any] = [*keys, rows.c.cur, func.count().label("n")]
    if money:
        fine_cols += [
            func.sum(rows.c.amount).label("m_sum"),
            func.min(rows.c.amount).label("m_min"),
            func.max(rows.c.amount).label("m_max"),
        ]
    for name in spec.numbers:
        column = rows.c[f"num_{name}"]
        fine_cols += [
            func.sum(column).label(f"{name}_sum"),
            func.count(column).label(f"{name}_n"),
            func.min(column).label(f"{name}_min"),
            func.max(column).label(f"{name}_max"),
        ]
    fine = select(*fine_cols).group_by(*keys, rows.c.cur).subquery("fine")
    return groups_statement(spec, fine, group_by, zone)


# The ``money`` column of a statement's row: a JSON array with one entry per currency,
# ``[currency, count, sum, min, max, avg]`` (amounts as text; min and max null when read
# from a summary that keeps none).
MONEY_ENTRY = ("currency", "count", "sum", "min", "max", "avg")


def average(total: Any, n: Any, scale: int) -> Any:
    """The mean of ``n`` values adding up to ``total``, rounded half up (away from zero) to
    ``scale`` decimals; NULL without values."""
    return func.round(cast(total, Numeric) / func.nullif(n, 0), scale)


def groups_statement(
    spec: AggregateSpec, fine: Any, group_by: Sequence[GroupBy], zone: str
) -> Select[Any]:
    """Levels 2 and 3 of ``grouped_statement`` over ``fine``: a few rows per group and
    currency (``k<i>``, ``cur``, ``n``, ``m_sum/_min/_max``, ``<number>_sum/_n/_min/_max``),
    however they were computed (from the rows, or from a summary kept on write)."""
    dims = [spec.dimensions[g.dimension] for g in group_by]
    money = spec.money

    # Level 2: those few rows again, per group and currency and per currency over all
    # groups (GROUPING SETS): the totals come from the same pass.
    f = fine.c
    fine_keys = [f[f"k{i}"] for i in range(len(dims))]
    level1_cols: list[Any] = [*fine_keys, f.cur, func.sum(f.n).label("n")]
    if fine_keys:
        level1_cols.append(func.grouping(*fine_keys).label("g"))
    else:
        level1_cols.append(literal(1, Integer).label("g"))
    if money:
        level1_cols += [
            func.sum(f.m_sum).label("m_sum"),
            func.min(f.m_min).label("m_min"),
            func.max(f.m_max).label("m_max"),
        ]
    for name in spec.numbers:
        level1_cols += [
            func.sum(f[f"{name}_sum"]).label(f"{name}_sum"),
            func.sum(f[f"{name}_n"]).label(f"{name}_n"),
            func.min(f[f"{name}_min"]).label(f"{name}_min"),
            func.max(f[f"{name}_max"]).label(f"{name}_max"),
        ]
    level1 = select(*level1_cols)
    if fine_keys:
        level1 = level1.group_by(func.grouping_sets(tuple_(*fine_keys, f.cur), tuple_(f.cur)))
    else:
        level1 = level1.group_by(f.cur)
    per_currency = level1.subquery("per_currency")

    # Level 3: one row per group (and one of totals), currencies folded into JSON.
    pc = per_currency.c
    out: list[Any] = [pc.g]
    for i, (item, dimension) in enumerate(zip(group_by, dims, strict=True)):
        key = pc[f"k{i}"]
        if item.interval is None:
            out.append(key)
            continue
        out.append(_representable(key, dimension.kind).label(f"k{i}"))
        end = _bucket_end(dimension, item.interval, zone, key)
        out.append(_representable(end, dimension.kind).label(f"e{i}"))
    out.append(func.sum(pc.n).label("n"))
    if money:
        entry = func.json_build_array(
            pc.cur,
            pc.n,
            cast(pc.m_sum, Text),
            cast(pc.m_min, Text),
            cast(pc.m_max, Text),
            cast(average(pc.m_sum, pc.n, money.scale), Text),
        )
        out.append(func.json_agg(aggregate_order_by(entry, pc.cur)).label("money"))
    for name in spec.numbers:
        total, n = func.sum(pc[f"{name}_sum"]), func.sum(pc[f"{name}_n"])
        out += [
            total.label(f"{name}_sum"),
            n.label(f"{name}_n"),
            average(total, n, spec.number_scale).label(f"{name}_avg"),
            func.min(pc[f"{name}_min"]).label(f"{name}_min"),
            func.max(pc[f"{name}_max"]).label(f"{name}_max"),
        ]
    group_keys = [pc[f"k{i}"] for i in range(len(dims))]
    return (
        select(*out)
        .group_by(pc.g, *group_keys)
        .order_by(pc.g.desc(), *(k.asc().nulls_last() for k in group_keys))
    )


# --------------------------------------------------------------------------- reading


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _stats(spec: AggregateSpec, row: Any) -> Stats:
    money: list[MoneyStats] = []
    if spec.money is not None:
        raw = row.money
        entries = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
        for cur, n, total, low, high, mean in entries or ():
            if cur is None:
                continue
            money.append(
                MoneyStats(
                    cur.strip(),
                    int(n),
                    Decimal(total),
                    Decimal(mean),
                    _decimal(low),
                    _decimal(high),
                )
            )
    numbers: dict[str, NumberStats] = {}
    for name in spec.numbers:
        numbers[name] = NumberStats(
            _decimal(getattr(row, f"{name}_sum")),
            _decimal(getattr(row, f"{name}_avg")),
            _decimal(getattr(row, f"{name}_min")),
            _decimal(getattr(row, f"{name}_max")),
        )
    return Stats(int(row.n), money, numbers)


def _empty(spec: AggregateSpec) -> Stats:
    return Stats(0, [], {name: NumberStats(None, None, None, None) for name in spec.numbers})


def _local(value: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """``value`` on the caller's clock (in UTC at the calendar's very end, beyond Python's
    range in zones east of UTC)."""
    try:
        return value.astimezone(zone)
    except OverflowError:
        return value


def _bounds(
    dimension: Dimension, start: Any, end: Any, zone: zoneinfo.ZoneInfo
) -> tuple[Any, dict[str, Any]]:
    """(the group key as shown, the filter on the list's field for that key)."""
    if start is None:
        return None, {"is_null": True}
    if dimension.kind is Kind.INSTANT:
        if start.tzinfo is None or end.tzinfo is None:
            # The driver's reading of PostgreSQL's -infinity / infinity (stored by other
            # means): a bucket of its own, shown in UTC like the value itself.
            key = fields.stored_instant(start)
            return key, {"gte": key, "lt": fields.stored_instant(end)}
        return _local(start, zone), {"gte": start.astimezone(UTC), "lt": end.astimezone(UTC)}
    if dimension.kind is Kind.DATE:
        return start, {"gte": start, "lt": end}
    if dimension.kind is Kind.RELATION:
        assert dimension.type_name is not None
        return start, {"eq": Ref(dimension.type_name, start)}
    return start, {"eq": start}


async def _rows(session: AsyncSession, statement: Select[Any]) -> Sequence[Any]:
    """The statement's rows. Python's and PostgreSQL's time-zone databases can differ by a
    release: a zone the server does not know is the caller's error, not ours."""
    try:
        return (await session.execute(statement)).all()
    except DBAPIError as exc:
        if "time zone" in str(exc.orig) and "not recognized" in str(exc.orig):
            raise Invalid("This server does not know that time zone", "timeZone") from exc
        raise


def aggregate_statement(
    actor: Any,
    spec: AggregateSpec,
    filter: FilterSpec | None,
    group_by: Sequence[GroupBy],
    zone: str,
    *,
    include_archived: bool = False,
    extremes: bool = True,
    custom: Any = None,
) -> Select[Any]:
    """The one statement of ``aggregate`` (``zone``: a known IANA name; ``custom``: the
    list's custom-field terms when the filter names custom fields). At most
    ``MAX_GROUPS + 1`` groups: one more than allowed says there are too many."""
    _check_group_by(spec, group_by)
    pairs = [(g.dimension, g.interval.value if g.interval else None) for g in group_by]
    summary = (
        order_totals.plan(filter, pairs, include_archived=include_archived, extremes=extremes)
        if spec is ORDERS
        else None
    )
    if summary is not None and filter is not None:
        fine = order_totals.fine_statement(actor, filter, summary, pairs, zone)
        statement = groups_statement(spec, fine, group_by, zone)
    else:
        base = spec.rows.statement(actor, filter, include_archived=include_archived, custom=custom)
        statement = grouped_statement(spec, base, group_by, zone)
    return statement.limit(MAX_GROUPS + 2)


async def aggregate(
    actor: Any,
    session: AsyncSession,
    spec: AggregateSpec,
    *,
    filter: FilterSpec | None = None,
    group_by: Sequence[GroupBy] = (),
    time_zone_name: str | None = None,
    include_archived: bool = False,
    extremes: bool = True,
) -> Aggregate:
    """Count, sums per currency and numeric statistics of the rows of ``spec``'s list as
    the actor sees them with ``filter``; grouped by up to two dimensions, in one statement.

    ``extremes=False``: the caller needs no minimum or maximum amounts, so orders' revenue
    may be read from their monthly totals (``order_totals``; the same numbers, with the
    money's ``min`` and ``max`` left None)."""
    zone = fields.time_zone(time_zone_name)
    _check_group_by(spec, group_by)
    statement = aggregate_statement(
        actor,
        spec,
        filter,
        group_by,
        zone.key,
        include_archived=include_archived,
        extremes=extremes,
        custom=await spec.rows.custom_terms(actor, session, filter),
    )
    rows = await _rows(session, statement)
    totals = _empty(spec)
    groups: list[Group] = []
    dims = [spec.dimensions[g.dimension] for g in group_by]
    for row in rows:
        if row.g != 0:
            totals = _stats(spec, row)
            continue
        keys: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for i, (item, dimension) in enumerate(zip(group_by, dims, strict=True)):
            start = getattr(row, f"k{i}")
            end = getattr(row, f"e{i}") if item.interval is not None else None
            keys[item.dimension], own[dimension.filter_field] = _bounds(dimension, start, end, zone)
        groups.append(Group(keys, _stats(spec, row), DrillDown(spec.list, own)))
    if len(groups) > MAX_GROUPS:
        raise Invalid(
            f"More than {MAX_GROUPS} groups: narrow the filter or use a coarser interval",
            "groupBy",
        )
    return Aggregate(totals, groups)


# ------------------------------------------------------------------------ time series


def _instant_value(value: datetime) -> Any:
    return literal(value, DateTime(timezone=True))


class Metric(enum.StrEnum):
    NEW_CUSTOMERS = "new_customers"
    REVENUE = "revenue"
    DEALS_WON = "deals_won"


@dataclass(frozen=True)
class MetricSpec:
    """A time series is an aggregate of a list with a filter, bucketed on one time field."""

    aggregate: AggregateSpec
    dimension: str
    filter: Mapping[str, Any]


METRICS = {
    Metric.NEW_CUSTOMERS: MetricSpec(CUSTOMERS, "created_at", {}),
    # Revenue: what customers paid (the orders a purchase summary counts).
    Metric.REVENUE: MetricSpec(
        ORDERS, "placed_at", {"status": {"in": list(customers.COUNTED_ORDER_STATUSES)}}
    ),
    # Deals won in the bucket: ``closed_at`` is stamped whenever a deal becomes won.
    Metric.DEALS_WON: MetricSpec(DEALS, "closed_at", {"status": {"eq": DealStatus.WON}}),
}


def time_series_statement(
    actor: Any,
    metric: Metric,
    interval: Interval,
    start: datetime,
    end: datetime,
    zone: str,
) -> Select[Any]:
    """``time_series``' one statement: a row per bucket (``start``, ``end``, ``n`` and, for
    money metrics, ``money``: ``MONEY_ENTRY`` per currency), in order. ``zone``: a known
    IANA name. ``Invalid`` for a period the series cannot have."""
    start = fields.instant(start, "from")
    end = fields.instant(end, "to")
    if end <= start:
        raise Invalid("`to` must be after `from`", "to")
    if (end - start) / _SHORTEST[interval] > MAX_BUCKETS:
        raise Invalid(f"At most {MAX_BUCKETS} buckets: use a longer interval", "interval")
    metric_spec = METRICS[metric]
    spec = metric_spec.aggregate
    dimension = spec.dimensions[metric_spec.dimension]
    tz = _text(zone)

    local = (
        func.generate_series(
            func.date_trunc(_text(interval.value), func.timezone(tz, _instant_value(start))),
            func.timezone(tz, _instant_value(end))
            - literal_column("interval '1 microsecond'", INTERVAL),
            _step(interval),
        )
        .table_valued("value")
        .render_derived(name="local")
    )
    series = select(
        _representable(func.timezone(tz, local.c.value), Kind.INSTANT).label("start"),
        _representable(func.timezone(tz, local.c.value + _step(interval)), Kind.INSTANT).label(
            "end"
        ),
    ).cte("series")
    covered = (
        dimension.column >= select(func.min(series.c.start)).scalar_subquery(),
        dimension.column < select(func.max(series.c.end)).scalar_subquery(),
    )
    # The metric's filter names no custom field (``METRICS``): no terms to load.
    base = spec.rows.statement(actor, metric_spec.filter).where(*covered)
    grouped = grouped_statement(
        spec, base, [GroupBy(metric_spec.dimension, interval)], zone
    ).subquery("grouped")
    columns = [series.c.start, series.c.end, func.coalesce(grouped.c.n, 0).label("n")]
    if spec.money:
        columns.append(grouped.c.money)
    return (
        select(*columns)
        .select_from(
            series.outerjoin(grouped, and_(grouped.c.g == 0, grouped.c.k0 == series.c.start))
        )
        .order_by(series.c.start)
    )


def point_filter(metric: Metric, bounds: Any) -> dict[str, Any]:
    """The filter of a bucket's rows: the metric's own, and its time field in ``bounds``."""
    metric_spec = METRICS[metric]
    dimension = metric_spec.aggregate.dimensions[metric_spec.dimension]
    return {**metric_spec.filter, dimension.filter_field: bounds}


async def time_series(
    actor: Any,
    session: AsyncSession,
    metric: Metric,
    interval: Interval,
    start: datetime,
    end: datetime,
    *,
    time_zone_name: str | None = None,
) -> list[Point]:
    """Every bucket from the one holding ``start`` to the one holding the instant before
    ``end`` (whole buckets, empty ones included), with its count and amounts per currency,
    in one statement (``generate_series`` joined to the grouped rows)."""
    zone = fields.time_zone(time_zone_name)
    statement = time_series_statement(actor, metric, interval, start, end, zone.key)
    spec = METRICS[metric].aggregate
    points = []
    for row in await _rows(session, statement):
        stats = _stats(spec, row) if row.n else _empty(spec)
        bounds = {"gte": row.start.astimezone(UTC), "lt": row.end.astimezone(UTC)}
        points.append(
            Point(
                _local(row.start, zone),
                _local(row.end, zone),
                stats,
                DrillDown(spec.list, point_filter(metric, bounds)),
            )
        )
    return points


__all__ = [
    "ACTIVITIES",
    "COMPANIES",
    "CONVERSATIONS",
    "CUSTOMERS",
    "DEALS",
    "MAX_DIMENSIONS",
    "MAX_GROUPS",
    "METRICS",
    "ORDERS",
    "SPECS",
    "Aggregate",
    "AggregateSpec",
    "Dimension",
    "Group",
    "GroupBy",
    "Interval",
    "Kind",
    "Metric",
    "MoneyStats",
    "NumberStats",
    "Point",
    "Stats",
    "aggregate",
    "time_series",
]
