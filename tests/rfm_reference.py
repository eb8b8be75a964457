"""A seeded random purchase history and the customer report computed from it in plain
Python (no SQL): the independent answer the RFM, lifetime-value and cohort tests compare
the API and services against."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Customer, Order, OrderStatus

COUNTED = (OrderStatus.PAID, OrderStatus.FULFILLED)

# The documented table (docs/decisions/0013-segments-rfm.md), written out again here.
SEGMENTS = [
    ("lost", {1}, {1}),
    ("champions", {5}, {4, 5}),
    ("loyal", {3, 4}, {4, 5}),
    ("potential_loyalists", {4, 5}, {2, 3}),
    ("new_customers", {5}, {1}),
    ("promising", {4}, {1}),
    ("need_attention", {3}, {3}),
    ("about_to_sleep", {3}, {1, 2}),
    ("at_risk", {1, 2}, {3, 4}),
    ("cannot_lose", {1, 2}, {5}),
    ("hibernating", {1, 2}, {1, 2}),
]


@dataclass
class PlacedOrder:
    customer_id: uuid.UUID
    amount: Decimal
    currency: str
    status: OrderStatus
    placed_at: datetime
    archived: bool


@dataclass
class History:
    customers: list[uuid.UUID]
    archived_customers: set[uuid.UUID]
    orders: list[PlacedOrder] = field(default_factory=list)

    def counted(self) -> list[PlacedOrder]:
        return [
            o
            for o in self.orders
            if o.status in COUNTED
            and not o.archived
            and o.customer_id not in self.archived_customers
        ]


async def generate(
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace_id: uuid.UUID,
    *,
    seed: int,
    customers: int = 60,
    now: datetime | None = None,
) -> History:
    """Customers with 0..7 orders over the last ~3 years: mostly EUR, some USD; some
    pending, cancelled, refunded or archived orders; a few archived customers."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(customers)]
    archived = {i for i in ids if rng.random() < 0.08}
    history = History(ids, archived)
    rows: list[object] = []
    for n, cid in enumerate(ids):
        rows.append(
            Customer(
                id=cid,
                workspace_id=workspace_id,
                name=f"Customer {n:03d} {rng.choice(['Ada', 'Bo', 'Cy', 'Di'])}",
                archived_at=now if cid in archived else None,
            )
        )
        main = "USD" if rng.random() < 0.25 else "EUR"
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 4, 5, 7])):
            placed = now - timedelta(seconds=rng.randint(3600, 3 * 365 * 86400))
            order = PlacedOrder(
                customer_id=cid,
                amount=Decimal(rng.randint(500, 50000)) / 100,
                currency=main if rng.random() < 0.85 else ("EUR" if main == "USD" else "USD"),
                status=rng.choices(list(OrderStatus), weights=[1, 10, 4, 1, 1])[0],
                placed_at=placed,
                archived=rng.random() < 0.05,
            )
            history.orders.append(order)
    for k, o in enumerate(history.orders):
        rows.append(
            Order(
                workspace_id=workspace_id,
                customer_id=o.customer_id,
                number=f"R-{seed}-{k}",
                status=o.status,
                amount=o.amount,
                currency=o.currency,
                placed_at=o.placed_at,
                archived_at=now if o.archived else None,
            )
        )
    async with sessionmaker() as session, session.begin():
        session.add_all(rows[: len(ids)])
        await session.flush()
        session.add_all(rows[len(ids) :])
    return history


def ntile(ordered: list[uuid.UUID], buckets: int = 5) -> dict[uuid.UUID, int]:
    """PostgreSQL's ntile: the first ``len % buckets`` buckets hold one row more."""
    size, extra = divmod(len(ordered), buckets)
    scores: dict[uuid.UUID, int] = {}
    position = 0
    for bucket in range(1, buckets + 1):
        take = size + (1 if bucket <= extra else 0)
        for cid in ordered[position : position + take]:
            scores[cid] = bucket
        position += take
    return scores


@dataclass(frozen=True)
class Expected:
    order_count: int
    first: datetime
    last: datetime
    currency: str
    total: Decimal
    r: int
    f: int
    m: int
    fm: int
    segment: str
    clv: Decimal


def expected_rfm(history: History) -> dict[uuid.UUID, Expected]:
    per: dict[uuid.UUID, list[PlacedOrder]] = defaultdict(list)
    for o in history.counted():
        per[o.customer_id].append(o)
    primary: dict[uuid.UUID, tuple[str, int, Decimal]] = {}
    for cid, orders in per.items():
        by_currency: dict[str, list[PlacedOrder]] = defaultdict(list)
        for o in orders:
            by_currency[o.currency].append(o)
        currency = sorted(by_currency, key=lambda c: (-len(by_currency[c]), c))[0]
        primary[cid] = (
            currency,
            len(by_currency[currency]),
            sum((o.amount for o in by_currency[currency]), Decimal(0)),
        )
    last = {cid: max(o.placed_at for o in orders) for cid, orders in per.items()}
    first = {cid: min(o.placed_at for o in orders) for cid, orders in per.items()}
    r = ntile(sorted(per, key=lambda c: (last[c], c)))
    f = ntile(sorted(per, key=lambda c: (len(per[c]), c)))
    m: dict[uuid.UUID, int] = {}
    for currency in {p[0] for p in primary.values()}:
        group = [c for c in per if primary[c][0] == currency]
        m.update(ntile(sorted(group, key=lambda c: (primary[c][2], c))))
    result = {}
    for cid, orders in per.items():
        fm = (f[cid] + m[cid] + 1) // 2
        segment = next(name for name, rs, fms in SEGMENTS if r[cid] in rs and fm in fms)
        currency, n_currency, total = primary[cid]
        years = max(
            Decimal((last[cid] - first[cid]).total_seconds()) / 86400 / Decimal("365.25"),
            Decimal(1),
        )
        clv = (total / n_currency) * (len(orders) / years) * 3
        result[cid] = Expected(
            len(orders),
            first[cid],
            last[cid],
            currency,
            total,
            r[cid],
            f[cid],
            m[cid],
            fm,
            segment,
            clv.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
        )
    return result


def month_of(instant: datetime, zone: ZoneInfo) -> date:
    local = instant.astimezone(zone)
    return date(local.year, local.month, 1)


def expected_cohorts(
    history: History, first: date, last: date, zone: ZoneInfo
) -> dict[date, tuple[int, list[int]]]:
    """cohort month -> (size, customers who ordered in each month since, up to ``last``)."""
    months: dict[uuid.UUID, set[date]] = defaultdict(set)
    for o in history.counted():
        months[o.customer_id].add(month_of(o.placed_at, zone))

    def index(d: date) -> int:
        return d.year * 12 + d.month - 1

    cohorts: dict[date, list[uuid.UUID]] = defaultdict(list)
    for cid, ordered in months.items():
        start = min(ordered)
        if date(first.year, first.month, 1) <= start <= date(last.year, last.month, 1):
            cohorts[start].append(cid)
    result = {}
    for start, members in cohorts.items():
        cells = []
        for k in range(index(last) - index(start) + 1):
            target = index(start) + k
            month = date(target // 12, target % 12 + 1, 1)
            cells.append(sum(1 for cid in members if month in months[cid]))
        result[start] = (len(members), cells)
    return result
