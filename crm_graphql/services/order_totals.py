"""Orders aggregated from their monthly totals (issue 13 point 8; decision 0021).

``order_month_totals`` holds, per workspace, UTC calendar month, owner of the customer,
status and currency, the number and the sum of the orders that are not archived, kept
exact by triggers in every writing transaction (migration 0019). Revenue per month (or
quarter, or year) in any time zone, per owner or status, over a period, is read from it
with the few orders near the month boundaries, and gives exactly the answer of the rows:

- each UTC month's totals go to the local bucket holding that month's middle (the
  ``assigned`` bucket: ``date_trunc(unit, month + 15 days, zone)``);
- an order whose own local bucket differs from its month's assigned one lies between a
  UTC month start and the zone's month start next to it (at most the zone's offset away:
  minutes to hours, 30- and 45-minute zones and DST included, whatever the zone);
  the orders of those windows are read from the table, added to their own bucket and
  subtracted from the assigned one;
- the parts of the period that are not whole UTC months (a period starting mid-month)
  are read from the table as well.

The summary serves only what it can serve exactly: a period (``placedAt`` bounds), a
status filter, groups by month/quarter/year, owner and status, counts, sums and
averages. Any other filter, grouping, ``includeArchived``, or a request for minimum or
maximum amounts (not kept: a deletion could not update them) reads the rows instead
(``aggregates.grouped_statement``). Tenant and read permission are the orders list's:
the window rows are read through ``orders.ORDERS``, the totals are scoped to the
actor's workspace after the same read check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    bindparam,
    func,
    literal,
    literal_column,
    null,
    select,
    text,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY

from crm_graphql.models import Customer, Order, OrderMonthTotal
from crm_graphql.services import fields, orders
from crm_graphql.services.actor import scope_condition

# Buckets made of whole months: a UTC month's totals fall into one of them (bar the
# boundary windows). Days and weeks cut months: those read the rows.
WHOLE_MONTH_UNITS = frozenset({"month", "quarter", "year"})
DIMENSIONS = frozenset({"placed_at", "owner", "status"})
ONE_MICROSECOND = timedelta(microseconds=1)  # PostgreSQL's resolution

# The windows between each UTC month start and the zone's month start next to it, and the
# parts of the period outside whole UTC months, merged into disjoint ranges.
_WINDOWS = text(
    """
    SELECT lower(w) AS lo, upper(w) AS hi
    FROM unnest((
        SELECT range_agg(r) FROM (
            SELECT tstzrange(least(b, m), greatest(b, m)) AS r
            FROM unnest(:months) AS m,
                 LATERAL (SELECT date_trunc('month', m + interval '15 days', :zone) AS b) AS z
            UNION ALL SELECT tstzrange(:start, :first_month)
            UNION ALL SELECT tstzrange(:after_months, :end)
        ) AS pieces
    )) AS w
    """
).bindparams(
    bindparam("months", type_=ARRAY(DateTime(timezone=True))),
    bindparam("zone", type_=String),
    bindparam("start", type_=DateTime(timezone=True)),
    bindparam("first_month", type_=DateTime(timezone=True)),
    bindparam("after_months", type_=DateTime(timezone=True)),
    bindparam("end", type_=DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Plan:
    """A period ``[start, end)`` (UTC), its whole UTC months ``[first_month,
    after_months)``, and the statuses asked for (None: all)."""

    start: datetime
    end: datetime
    first_month: datetime
    after_months: datetime
    statuses: tuple[str, ...] | None


def _statuses(term: Any) -> tuple[str, ...] | None:
    if not isinstance(term, Mapping) or len(term) != 1:
        return None
    op, value = next(iter(term.items()))
    values = [value] if op == "eq" else value if op == "in" else None
    if not isinstance(values, list | tuple) or not values:
        return None
    statuses = tuple(str(getattr(v, "value", v)) for v in values)
    return statuses if all(isinstance(v, str) for v in statuses) else None


def _period(term: Any) -> tuple[datetime, datetime] | None:
    if not isinstance(term, Mapping) or not term:
        return None
    starts: list[datetime] = []
    ends: list[datetime] = []
    for op, value in term.items():
        if not isinstance(value, datetime) or value.tzinfo is None:
            return None
        value = value.astimezone(UTC)
        if op == "gte":
            starts.append(value)
        elif op == "gt":
            starts.append(value + ONE_MICROSECOND)
        elif op == "lt":
            ends.append(value)
        elif op == "lte":
            ends.append(value + ONE_MICROSECOND)
        else:
            return None
    if not starts or not ends:
        return None
    return max(starts), min(ends)


def plan(
    filter: Mapping[str, Any] | None,
    group_by: Sequence[tuple[str, str | None]],
    *,
    include_archived: bool,
    extremes: bool,
) -> Plan | None:
    """How the totals answer this request, or None when only the rows can (see the module
    docstring). ``group_by``: (dimension, interval) pairs."""
    if include_archived or extremes or not filter:
        return None
    for dimension, interval in group_by:
        if dimension not in DIMENSIONS:
            return None
        if dimension == "placed_at" and interval not in WHOLE_MONTH_UNITS:
            return None
    if set(filter) - {"placed_at", "status"} or "placed_at" not in filter:
        return None
    statuses = None
    if "status" in filter:
        statuses = _statuses(filter["status"])
        if statuses is None:
            return None
    period = _period(filter["placed_at"])
    if period is None:
        return None
    start, end = period
    try:
        first_month = (
            start if fields.utc_month_start(start) == start else fields.utc_next_month(start)
        )
        after_months = fields.utc_month_start(end)
    except (OverflowError, ValueError):  # the calendar's ends: the rows path says why
        return None
    if first_month >= after_months:  # not one whole month: the rows are few
        return None
    return Plan(start, end, first_month, after_months, statuses)


def _months(first: datetime, after: datetime) -> list[datetime]:
    """Every UTC month start from ``first`` to ``after``, both included."""
    months = [first]
    while months[-1] < after:
        months.append(fields.utc_next_month(months[-1]))
    return months


def _zone(zone: str) -> Any:
    # A validated IANA name, as a literal: the same expression is grouped by.
    return literal_column("'" + zone.replace("'", "''") + "'", String)


def fine_statement(
    actor: Any,
    filter: Mapping[str, Any],
    plan: Plan,
    group_by: Sequence[tuple[str, str | None]],
    zone: str,
) -> Any:
    """Rows ``k<i>, cur, n, m_sum, m_min, m_max`` per group and currency (the extremes
    null), as ``aggregates.grouped_statement``'s first level gives them from the rows."""
    tenant = scope_condition(OrderMonthTotal, actor)  # read as the orders are
    time_grouped = any(d == "placed_at" for d, _ in group_by)
    months = _months(plan.first_month, plan.after_months) if time_grouped else []
    windows = (
        _WINDOWS.columns(lo=DateTime(timezone=True), hi=DateTime(timezone=True))
        .bindparams(
            months=months,
            zone=zone,
            start=plan.start,
            first_month=plan.first_month,
            after_months=plan.after_months,
            end=plan.end,
        )
        .subquery("windows")
    )
    with_owner = any(d == "owner" for d, _ in group_by)
    edge_columns: list[Any] = [Order.placed_at, Order.status, Order.currency, Order.amount]
    if with_owner:
        # Per row (a few hundred) by primary key: the planner cannot tell how few rows
        # the windows hold, and would hash every customer of the workspace for a join.
        owner = select(Customer.owner_id).where(Customer.id == Order.customer_id)
        edge_columns.append(owner.scalar_subquery().label("owner_id"))
    # One index range scan per window, as a LATERAL subquery kept apart by OFFSET 0: in a
    # generic plan (the driver prepares statements; PostgreSQL may switch to one after five
    # executions) a join would read every order of the period and filter them by window.
    in_window = (
        orders.ORDERS.statement(actor, filter)
        .where(Order.placed_at >= windows.c.lo, Order.placed_at < windows.c.hi)
        .with_only_columns(*edge_columns, maintain_column_froms=True)
        .offset(0)
        .lateral("in_window")
    )
    edge = select(in_window).select_from(windows).join(in_window, true()).cte("edge")
    e = edge.c
    t = OrderMonthTotal
    tz = _zone(zone)
    fifteen_days: Any = literal_column("interval '15 days'")

    def keys(instant: Any, owner: Any, status: Any) -> list[Any]:
        out = []
        for i, (dimension, interval) in enumerate(group_by):
            if dimension == "placed_at":
                key = func.date_trunc(literal_column(f"'{interval}'"), instant, tz)
            elif dimension == "owner":
                key = owner
            else:
                key = status
            out.append(key.label(f"k{i}"))
        return out

    month_of = func.date_trunc(literal_column("'month'"), e.placed_at, literal_column("'UTC'"))
    # Each order of the windows in its own bucket ...
    own = select(
        *keys(e.placed_at, e.owner_id if with_owner else None, e.status),
        e.currency.label("cur"),
        literal(1, Integer).label("n"),
        e.amount.label("m_sum"),
    )
    # ... and out of its month's assigned bucket, if the totals below count it.
    assigned = select(
        *keys(month_of + fifteen_days, e.owner_id if with_owner else None, e.status),
        e.currency,
        literal(-1, Integer),
        -e.amount,
    ).where(e.placed_at >= plan.first_month, e.placed_at < plan.after_months)
    totals = select(
        *keys(t.month + fifteen_days, t.owner_id, type_coerce(t.status, Order.status.type)),
        t.currency,
        t.order_count,
        t.amount,
    ).where(tenant, t.month >= plan.first_month, t.month < plan.after_months)
    if plan.statuses is not None:
        totals = totals.where(t.status.in_(plan.statuses))
    parts = union_all(own, assigned, totals).subquery("parts")
    p = parts.c
    group_keys = [p[f"k{i}"] for i in range(len(group_by))]
    return (
        select(
            *group_keys,
            p.cur,
            func.sum(p.n).label("n"),
            func.sum(p.m_sum).label("m_sum"),
            null().label("m_min"),
            null().label("m_max"),
        )
        .group_by(*group_keys, p.cur)
        .having(func.sum(p.n) != 0)
        .subquery("fine")
    )
