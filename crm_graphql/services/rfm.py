"""The customer report: RFM scores and segments, a lifetime-value estimate, cohorts.

Everything is computed at read time from the orders a purchase summary counts (paid or
fulfilled, not archived: ``customers.counted_orders_condition``) of the workspace's live
(not archived) customers. docs/decisions/0013-segments-rfm.md explains the choices.

- R(ecency): days since the customer's latest counted order; F(requency): number of
  counted orders (any currency); M(onetary): total spent in the customer's *primary
  currency* (the currency of most of their counted orders, ties by currency code).
  Nothing is converted.
- Scores 1..5 are ``ntile(5)`` quintiles over the workspace's customers with orders (not
  only the rows a caller lists: the caller's filter chooses rows, not the scale): R by
  latest order (most recent = 5), F by order count, M by total *among customers of the
  same primary currency*. Ties are broken by customer id, so a score is deterministic.
- The segment comes from R and FM = round-half-up((F + M) / 2) through ``SEGMENT_MAP``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    not_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Subquery

from crm_graphql.models import Customer, Order, RfmScore, RfmSnapshot
from crm_graphql.services import fields, snapshots
from crm_graphql.services.actor import Actor, scope_condition
from crm_graphql.services.drilldown import DrillDown
from crm_graphql.services.errors import Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying


class RfmSegment(enum.StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALISTS = "potential_loyalists"
    NEW_CUSTOMERS = "new_customers"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANNOT_LOSE = "cannot_lose"
    HIBERNATING = "hibernating"
    LOST = "lost"


# (segment, R scores, FM scores), inclusive ranges; every (R, FM) pair falls in exactly one.
SEGMENT_MAP: tuple[tuple[RfmSegment, tuple[int, int], tuple[int, int]], ...] = (
    (RfmSegment.CHAMPIONS, (5, 5), (4, 5)),
    (RfmSegment.LOYAL, (3, 4), (4, 5)),
    (RfmSegment.POTENTIAL_LOYALISTS, (4, 5), (2, 3)),
    (RfmSegment.NEW_CUSTOMERS, (5, 5), (1, 1)),
    (RfmSegment.PROMISING, (4, 4), (1, 1)),
    (RfmSegment.NEED_ATTENTION, (3, 3), (3, 3)),
    (RfmSegment.ABOUT_TO_SLEEP, (3, 3), (1, 2)),
    (RfmSegment.AT_RISK, (1, 2), (3, 4)),
    (RfmSegment.CANNOT_LOSE, (1, 2), (5, 5)),
    (RfmSegment.LOST, (1, 1), (1, 1)),
    (RfmSegment.HIBERNATING, (1, 2), (1, 2)),  # after LOST: (1, 1) is lost
)

# Lifetime value: average order value x orders per year x this many years.
EXPECTED_LIFETIME_YEARS = Decimal(3)
_DAYS_PER_YEAR = Decimal("365.25")
_CENT = Decimal("0.01")
MAX_COHORT_MONTHS = 120


# The customers the report reads, under a name of their own: a list of customers that
# embeds the scores (``rfm_segment``, the compiled path's ``rfm``) renames its own
# ``customers`` references onto its alias, and must not rename these.
ScoredCustomer = aliased(Customer, name="rfm_customers")


def counted_orders(actor: Actor) -> ColumnElement[bool]:
    """Orders the report counts: what a purchase summary adds up, of live customers."""
    from crm_graphql.services.customers import counted_orders_condition

    return and_(
        counted_orders_condition(actor),
        Order.customer_id == ScoredCustomer.id,
        scope_condition(ScoredCustomer, actor),
        ScoredCustomer.archived_at.is_(None),
    )


def live_scores(actor: Actor) -> Subquery:
    """The definition: one row per live customer with counted orders (``SCORE_COLUMNS``),
    scored over the whole workspace, computed from the orders as they are."""
    return _built(_LIVE, actor, _live_scores)


def _live_scores(actor: Actor) -> Subquery:
    per_currency = (
        select(
            Order.customer_id,
            Order.currency,
            func.count().label("n"),
            func.sum(Order.amount).label("total"),
            func.min(Order.placed_at).label("first"),
            func.max(Order.placed_at).label("last"),
        )
        .where(counted_orders(actor))
        .group_by(Order.customer_id, Order.currency)
        .subquery("rfm_per_currency")
    )
    pc = per_currency.c
    per_customer = select(
        pc.customer_id,
        func.sum(pc.n).over(partition_by=pc.customer_id).label("order_count"),
        func.min(pc.first).over(partition_by=pc.customer_id).label("first_order_at"),
        func.max(pc.last).over(partition_by=pc.customer_id).label("last_order_at"),
        pc.currency,
        pc.n.label("currency_orders"),
        pc.total,
        func.row_number()
        .over(partition_by=pc.customer_id, order_by=(pc.n.desc(), pc.currency))
        .label("rank"),
    ).subquery("rfm_per_customer")
    c = per_customer.c
    scored = (
        select(
            c.customer_id,
            c.order_count,
            c.first_order_at,
            c.last_order_at,
            c.currency,
            c.currency_orders,
            c.total,
            func.ntile(5, type_=Integer).over(order_by=(c.last_order_at, c.customer_id)).label("r"),
            func.ntile(5, type_=Integer).over(order_by=(c.order_count, c.customer_id)).label("f"),
            func.ntile(5, type_=Integer)
            .over(partition_by=c.currency, order_by=(c.total, c.customer_id))
            .label("m"),
        )
        .where(c.rank == 1)
        .subquery("rfm_scored")
    )
    s = scored.c
    fm = (s.f + s.m + 1) // 2
    segment = case(
        *(
            (and_(s.r.between(*r_range), fm.between(*fm_range)), literal(seg.value))
            for seg, r_range, fm_range in SEGMENT_MAP
        )
    )
    # The stored column's type: a condition on the segment then reaches both branches
    # of ``scores`` (and the snapshot's index) instead of filtering their union.
    stored_type = cast(segment, RfmScore.__table__.c.segment.type)
    return select(*s, fm.label("fm"), stored_type.label("segment")).subquery("rfm")


# Built statements per workspace. Building the scoring (four nested subqueries, window
# functions, the segment CASE) costs SQLAlchemy more than the snapshot read it guards,
# so it is built once per workspace and reused: the SQL depends on the workspace alone
# (tenant scope, no role or user), and a statement is immutable once built. Callers are
# still authorized on every call.
_LIVE: dict[uuid.UUID, Subquery] = {}
_SCORES: dict[uuid.UUID, Subquery] = {}
_BUILT_PER_KIND = 1024


def _built(
    cache: dict[uuid.UUID, Subquery], actor: Actor, build: Callable[[Actor], Subquery]
) -> Subquery:
    authorize(actor, Action.READ_CUSTOMERS)
    found = cache.get(actor.workspace_id)
    if found is None:
        if len(cache) >= _BUILT_PER_KIND:
            cache.clear()
        found = cache[actor.workspace_id] = build(actor)
    return found


# The columns of a score row, in the order of ``live_scores`` and of the snapshot.
SCORE_COLUMNS = (
    "customer_id",
    "order_count",
    "first_order_at",
    "last_order_at",
    "currency",
    "currency_orders",
    "total",
    "r",
    "f",
    "m",
    "fm",
    "segment",
)


def snapshot_is_current(workspace_id: Any) -> ColumnElement[bool]:
    """Were the workspace's ``rfm_scores`` computed from the order history as it is now
    (as the statement sees it: its own transaction's writes included)? ``workspace_id``:
    a value or a bound parameter."""
    return snapshots.is_current(RfmSnapshot, workspace_id)


def scores(actor: Actor) -> Subquery:
    """``live_scores`` as every read uses them: the snapshot's rows when it is current,
    else the live computation, chosen once per statement (an uncorrelated condition:
    PostgreSQL runs one branch and skips the other), so a read never sees scores of
    another order history than its own. ``ensure_snapshot`` before the statement makes
    the fast branch the one taken."""
    return _built(_SCORES, actor, _scores)


def _scores(actor: Actor) -> Subquery:
    workspace_id = actor.workspace_id
    current = snapshot_is_current(workspace_id)
    live = live_scores(actor)
    stored = select(*(getattr(RfmScore, name) for name in SCORE_COLUMNS)).where(
        scope_condition(RfmScore, actor), current
    )
    computed = select(*(live.c[name] for name in SCORE_COLUMNS)).where(not_(current))
    return union_all(stored, computed).subquery("rfm")


async def refresh_snapshot(actor: Actor, engine: AsyncEngine) -> bool:
    """Make the workspace's scores current (``snapshots.refresh``): every score computed
    in one statement. Returns whether it recomputed."""
    authorize(actor, Action.READ_CUSTOMERS)
    live = live_scores(actor)

    async def fill(connection: AsyncConnection, workspace_id: uuid.UUID) -> dict[str, Any]:
        await connection.execute(delete(RfmScore).where(RfmScore.workspace_id == workspace_id))
        await connection.execute(
            insert(RfmScore).from_select(
                ["workspace_id", *SCORE_COLUMNS],
                select(
                    literal(workspace_id, UUID(as_uuid=True)), *(live.c[n] for n in SCORE_COLUMNS)
                ),
            )
        )
        return {}

    return await snapshots.refresh(engine, RfmSnapshot, actor.workspace_id, fill)


async def ensure_snapshot(actor: Actor, session: AsyncSession) -> None:
    """Before a read of ``scores``: make the workspace's scores current when the order
    history changed since they were computed (``snapshots.ensure``)."""

    async def refresh_with(engine: AsyncEngine) -> bool:
        return await refresh_snapshot(actor, engine)

    await snapshots.ensure(session, RfmSnapshot, actor.workspace_id, refresh_with)


def uses_scores(filters: Sequence[Any]) -> bool:
    """Does one of these customer filters name ``rfm_segment`` (at any depth)?"""
    stack: list[Any] = list(filters)
    while stack:
        current = stack.pop()
        if not isinstance(current, Mapping):
            continue
        if current.get("rfm_segment") is not None:
            return True
        stack.extend(current.get("and") or ())
        stack.extend(current.get("or") or ())
        stack.append(current.get("not"))
    return False


async def prepare_customer_filters(
    actor: Actor, session: AsyncSession, filters: Sequence[Any]
) -> None:
    """The customers list's step before a read: the snapshot is made current when a
    filter reads the scores."""
    if uses_scores(filters):
        await ensure_snapshot(actor, session)


def segment_predicate(actor: Actor) -> querying.Predicate:
    """The ``rfm_segment`` filter field of customers: membership of a built-in segment."""

    def build(ops: Mapping[str, Any], field_name: str) -> ColumnElement[bool]:
        rfm = scores(actor)

        def members(op: str, value: Any) -> ColumnElement[bool]:
            values = value if isinstance(value, list | tuple) else [value]
            wanted = [v.value if isinstance(v, enum.Enum) else v for v in values]
            condition = querying.operators_condition(rfm.c.segment, {op: wanted}, field_name)
            return Customer.id.in_(select(rfm.c.customer_id).where(condition))

        terms: list[ColumnElement[bool]] = []
        for op, value in ops.items():
            if op == "is_null":
                if value is not None:
                    scored = Customer.id.in_(select(rfm.c.customer_id))
                    terms.append(not_(scored) if value else scored)
            elif value is None:
                continue
            elif op in ("eq", "in"):
                terms.append(members("in", value))
            elif op in ("ne", "not_in"):
                terms.append(not_(members("in", value)))
            else:
                name = querying.camel_case(field_name)
                raise Invalid(f"`{querying.camel_case(op)}` is not supported on {name}", name)
        return and_(*terms) if terms else Customer.id.is_not(None)

    # Self-contained (no reference to the listed row but ``customers.id``): the compiled
    # path may embed it.
    return querying.Predicate(build, compiles=True)


def first_order_at(actor: Actor) -> Any:
    """The time of a customer's first counted order (a correlated scalar subquery)."""
    from crm_graphql.services.customers import counted_orders_condition

    return (
        select(func.min(Order.placed_at))
        .where(counted_orders_condition(actor), Order.customer_id == Customer.id)
        .correlate(Customer)
        .scalar_subquery()
    )


def ordered_at_predicate(actor: Actor) -> querying.Predicate:
    """The ``ordered_at`` filter field of customers: has one counted order placed within
    every bound given."""
    from crm_graphql.services.customers import counted_orders_condition

    def build(ops: Mapping[str, Any], field_name: str) -> ColumnElement[bool]:
        if "is_null" in ops:
            name = querying.camel_case(field_name)
            raise Invalid(f"`isNull` is not supported on {name}", name)
        return exists(
            select(Order.id)
            .where(
                counted_orders_condition(actor),
                Order.customer_id == Customer.id,
                querying.operators_condition(Order.placed_at, ops, field_name),
            )
            .correlate(Customer)
        )

    return querying.Predicate(build)


def customer_filter_fields(actor: Actor) -> dict[str, Any]:
    """The customers list's filter fields that read orders (declared once, used by the
    executed and compiled paths and by drill-downs)."""
    return {
        "first_order_at": first_order_at(actor),
        "ordered_at": ordered_at_predicate(actor),
        "rfm_segment": segment_predicate(actor),
    }


# ------------------------------------------------------------------ per customer


@dataclass(frozen=True)
class CustomerRfm:
    """A customer's RFM report (``None`` for customers without counted orders)."""

    customer_id: uuid.UUID
    recency: int  # days
    frequency: int
    monetary: Any  # customers.MoneyTotal in the primary currency
    r_score: int
    f_score: int
    m_score: int
    fm_score: int
    segment: RfmSegment
    first_order_at: datetime
    last_order_at: datetime
    lifetime_value: Any  # customers.MoneyTotal in the primary currency

    @property
    def drill_down(self) -> DrillDown:
        return DrillDown("customers", {"rfm_segment": {"eq": self.segment}})


def lifetime_value(
    *,
    currency_total: Decimal,
    currency_orders: int,
    order_count: int,
    first_order_at: datetime,
    last_order_at: datetime,
) -> Decimal:
    """CLV = average order value (primary currency) x orders per year x
    ``EXPECTED_LIFETIME_YEARS``, where orders per year = all counted orders / the years
    between the first and the latest order (at least one year), rounded to cents."""
    average = currency_total / currency_orders
    span_days = Decimal((last_order_at - first_order_at).total_seconds()) / Decimal(86400)
    years = max(span_days / _DAYS_PER_YEAR, Decimal(1))
    value = average * (Decimal(order_count) / years) * EXPECTED_LIFETIME_YEARS
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


async def customer_rfm(
    actor: Actor,
    session: AsyncSession,
    customer_ids: Sequence[uuid.UUID],
    *,
    now: datetime | None = None,
) -> dict[uuid.UUID, CustomerRfm | None]:
    """RFM reports of many customers in one statement (a page of customers)."""
    from crm_graphql.services.customers import MoneyTotal

    authorize(actor, Action.READ_CUSTOMERS)
    now = now or datetime.now(UTC)
    await ensure_snapshot(actor, session)
    rfm = scores(actor)
    rows = await session.execute(select(rfm).where(rfm.c.customer_id.in_(list(customer_ids))))
    found: dict[uuid.UUID, CustomerRfm | None] = dict.fromkeys(customer_ids)
    for row in rows.mappings():
        currency = row["currency"].strip()
        # An order placed at +-infinity reads as Python's last / first instant.
        first = fields.stored_instant(row["first_order_at"])
        last = fields.stored_instant(row["last_order_at"])
        found[row["customer_id"]] = CustomerRfm(
            customer_id=row["customer_id"],
            recency=max(0, (now - last).days),
            frequency=int(row["order_count"]),
            monetary=MoneyTotal(row["total"], currency),
            r_score=row["r"],
            f_score=row["f"],
            m_score=row["m"],
            fm_score=row["fm"],
            segment=RfmSegment(row["segment"]),
            first_order_at=first,
            last_order_at=last,
            lifetime_value=MoneyTotal(
                lifetime_value(
                    currency_total=row["total"],
                    currency_orders=int(row["currency_orders"]),
                    order_count=int(row["order_count"]),
                    first_order_at=first,
                    last_order_at=last,
                ),
                currency,
            ),
        )
    return found


# ------------------------------------------------------------------------ cohorts


@dataclass(frozen=True)
class CohortCell:
    months_since: int
    customers: int
    share: float
    drill_down: DrillDown


@dataclass(frozen=True)
class Cohort:
    month: date
    customers: int
    cells: list[CohortCell]
    drill_down: DrillDown


def _month_index(month: date) -> int:
    return month.year * 12 + month.month - 1


def _month(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


time_zone = fields.time_zone  # cohorts look it up here (a test replaces it)


def _instant(month_index: int, zone: ZoneInfo) -> datetime:
    month = _month(month_index)
    return datetime(month.year, month.month, 1, tzinfo=zone).astimezone(UTC)


def in_month(month_index: int, zone: ZoneInfo) -> dict[str, datetime]:
    return {"gte": _instant(month_index, zone), "lt": _instant(month_index + 1, zone)}


def cohort_months(first: date, last: date) -> tuple[int, int]:
    """The month indexes of ``first`` and ``last`` (year * 12 + month - 1), or ``Invalid``
    for a period ``cohorts`` refuses."""
    for value, name in ((first, "from"), (last, "to")):
        fields.calendar_date(value, name)
    lo, hi = _month_index(first), _month_index(last)
    if lo > hi:
        raise Invalid("`from` must not be after `to`", "from")
    if hi - lo >= MAX_COHORT_MONTHS:
        raise Invalid(f"At most {MAX_COHORT_MONTHS} cohort months", "to")
    if not _month_index(date(2, 1, 1)) <= lo or hi >= _month_index(date(9999, 12, 1)):
        raise Invalid("Cohort months must lie between 0002-01 and 9999-11", "from")
    return lo, hi


def cohort_counts_statement(actor: Actor, zone: ZoneInfo, lo: int, hi: int) -> Select[Any]:
    """Rows ``(cohort, month, count)``: per cohort month (the local month of a customer's
    first counted order, ``lo`` .. ``hi``) and month since, how many of its customers
    placed a counted order; what ``cohorts`` reads, and the compiled read path."""
    authorize(actor, Action.READ_CUSTOMERS)
    local_month = cast(func.date_trunc("month", func.timezone(zone.key, Order.placed_at)), Date)
    activity = (
        select(Order.customer_id, local_month.label("month"))
        .where(counted_orders(actor))
        .distinct()
        .subquery("activity")
    )
    firsts = (
        select(activity.c.customer_id, func.min(activity.c.month).label("cohort"))
        .group_by(activity.c.customer_id)
        .subquery("firsts")
    )
    start, end = _month(lo), _month(hi)
    return (
        select(firsts.c.cohort, activity.c.month, func.count().label("count"))
        .join(activity, activity.c.customer_id == firsts.c.customer_id)
        .where(firsts.c.cohort.between(start, end), activity.c.month <= end)
        .group_by(firsts.c.cohort, activity.c.month)
    )


# The list a cohort's (and a cell's) drill-down opens.
COHORT_LIST = "customers"


def cohort_filter(cohort: Any) -> dict[str, Any]:
    """The customers filter of a cohort, from its month's range (``in_month``)."""
    return {"first_order_at": cohort}


def cell_filter(cohort: Any, month: Any) -> dict[str, Any]:
    """The customers filter of a cohort's customers who ordered in a month, from the
    two months' ranges."""
    return {**cohort_filter(cohort), "ordered_at": month}


async def cohorts(
    actor: Actor, session: AsyncSession, *, first: date, last: date, zone_name: str = "UTC"
) -> list[Cohort]:
    """Customers grouped by the month of their first counted order (``first`` .. ``last``,
    months in ``zone_name``); per cohort, for each month since up to ``last``, how many
    of them placed a counted order that month and their share of the cohort (month 0 is
    the whole cohort). One statement."""
    authorize(actor, Action.READ_CUSTOMERS)
    zone = time_zone(zone_name)
    lo, hi = cohort_months(first, last)
    try:
        rows = await session.execute(cohort_counts_statement(actor, zone, lo, hi))
    except DBAPIError as error:  # a zone Python knows and PostgreSQL does not
        if getattr(error.orig, "sqlstate", None) == "22023":
            raise Invalid(f"Unknown time zone `{zone_name[:64]}`", "timeZone") from error
        raise
    counts: dict[int, dict[int, int]] = {}
    for cohort_month, month, n in rows.all():
        counts.setdefault(_month_index(cohort_month), {})[_month_index(month)] = int(n)
    result: list[Cohort] = []
    for index in sorted(counts):
        per_month = counts[index]
        size = per_month[index]
        cells = [
            CohortCell(
                months_since=k,
                customers=per_month.get(index + k, 0),
                share=per_month.get(index + k, 0) / size,
                drill_down=DrillDown(
                    COHORT_LIST,
                    cell_filter(in_month(index, zone), in_month(index + k, zone)),
                ),
            )
            for k in range(hi - index + 1)
        ]
        result.append(
            Cohort(
                _month(index),
                size,
                cells,
                DrillDown(COHORT_LIST, cohort_filter(in_month(index, zone))),
            )
        )
    return result
