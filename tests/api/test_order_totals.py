"""Revenue read from the monthly order totals (migration 0019, decision 0021): the same
answer as the rows in any time zone (30- and 45-minute offsets, DST, the date line),
checked against a computation in Python; and the totals follow every write."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql import models
from crm_graphql.global_ids import to_global_id
from crm_graphql.models import OrderStatus, Role, User, Workspace
from crm_graphql.services import customers, orders
from crm_graphql.services.actor import Actor
from tests import support
from tests.api.conftest import StatementCounter

ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30 / -02:30
    "Australia/Adelaide",  # +09:30 / +10:30
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Kiritimati",  # +14:00
    "Pacific/Pago_Pago",  # -11:00
)
CURRENCIES = ("EUR", "USD")
REVENUE = [OrderStatus.PAID, OrderStatus.FULFILLED]
MONTHS = [(2025, m) for m in range(1, 13)] + [(2026, m) for m in range(1, 7)]


def _near_month_starts() -> list[datetime]:
    """Instants at and next to the start of every month in every zone, and in UTC."""
    instants = []
    for year, month in MONTHS:
        starts = [datetime(year, month, 1, tzinfo=ZoneInfo(z)) for z in ZONES]
        for start in starts:
            for delta in (timedelta(0), -timedelta(microseconds=1), timedelta(minutes=20)):
                instants.append((start + delta).astimezone(UTC))
    return instants


@dataclass
class Data:
    workspace: Workspace
    owners: list[uuid.UUID | None]
    customer_owner: dict[uuid.UUID, uuid.UUID | None] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def data(
    sessionmaker: async_sessionmaker[AsyncSession], workspace: Workspace, users: dict[Role, User]
) -> AsyncIterator[Data]:
    rng = random.Random(21)
    owners: list[uuid.UUID | None] = [users[Role.ADMIN].id, users[Role.AGENT].id, None]
    out = Data(workspace, owners)
    async with sessionmaker() as session, session.begin():
        people = [
            models.Customer(workspace_id=workspace.id, name=f"C{i}", owner_id=owners[i % 3])
            for i in range(6)
        ]
        session.add_all(people)
        await session.flush()
        out.customer_owner = {c.id: c.owner_id for c in people}
        instants = _near_month_starts()
        first, last = datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
        instants += [first + (last - first) * rng.random() for _ in range(200)]
        rows = []
        for i, placed_at in enumerate(instants):
            customer = rng.choice(people)
            rows.append(
                models.Order(
                    workspace_id=workspace.id,
                    customer_id=customer.id,
                    number=f"ORD-{i:05d}",
                    status=rng.choice(list(OrderStatus)),
                    amount=Decimal(rng.randint(1, 100_000)) / 100,
                    currency=rng.choice(CURRENCIES),
                    placed_at=placed_at,
                    archived_at=placed_at if i % 29 == 3 else None,
                )
            )
        session.add_all(rows)
        await session.flush()
        out.orders = [
            {
                "customer_id": o.customer_id,
                "status": o.status,
                "amount": o.amount,
                "currency": o.currency,
                "placed_at": o.placed_at,
                "archived": o.archived_at is not None,
            }
            for o in rows
        ]
    yield out


REVENUE_BY = """query($groupBy: [OrderGroupBy!], $tz: String, $filter: OrderFilter) {
  ordersAggregate(groupBy: $groupBy, timeZone: $tz, filter: $filter) {
    count
    amount { sum { amount currency } avg { amount currency } }
    groups { placedAt owner { id } status count amount { sum { amount currency } avg { amount currency } } }
  }
}"""
# The same with the extremes, which the totals do not keep: read from the rows.
REVENUE_BY_FROM_ROWS = REVENUE_BY.replace(
    "avg { amount currency } }\n    groups",
    "avg { amount currency } min { amount currency } }\n    groups",
)


def _local_start(value: datetime, interval: str, zone: ZoneInfo) -> str:
    day = value.astimezone(zone).date().replace(day=1)
    if interval == "QUARTER":
        day = day.replace(month=(day.month - 1) // 3 * 3 + 1)
    elif interval == "YEAR":
        day = day.replace(month=1)
    return datetime(day.year, day.month, day.day, tzinfo=zone).isoformat()


def _money(rows: list[dict[str, Any]]) -> dict[str, tuple[Decimal, Decimal]]:
    by: dict[str, list[Decimal]] = defaultdict(list)
    for row in rows:
        by[row["currency"]].append(row["amount"])
    return {
        c: (
            sum(a, Decimal(0)),
            (sum(a, Decimal(0)) / len(a)).quantize(Decimal("0.01"), ROUND_HALF_UP),
        )
        for c, a in by.items()
    }


def _api_money(value: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    return {
        s["currency"]: (Decimal(s["amount"]), Decimal(a["amount"]))
        for s, a in zip(value["sum"], value["avg"], strict=True)
    }


def _expected(
    data: Data, filter_rows: Any, dimensions: list[str], interval: str, zone: ZoneInfo
) -> tuple[int, dict[str, Any], dict[tuple[Any, ...], Any]]:
    rows = [r for r in data.orders if not r["archived"] and filter_rows(r)]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        key = []
        for d in dimensions:
            if d == "PLACED_AT":
                key.append(_local_start(row["placed_at"], interval, zone))
            elif d == "OWNER":
                owner = data.customer_owner[row["customer_id"]]
                key.append(None if owner is None else to_global_id("User", owner))
            else:
                key.append(row["status"].value.upper())
        groups[tuple(key)].append(row)
    return len(rows), _money(rows), {k: (len(v), _money(v)) for k, v in groups.items()}


def _got(answer: dict[str, Any], dimensions: list[str]) -> tuple[int, Any, dict[Any, Any]]:
    field_of = {"PLACED_AT": "placedAt", "OWNER": "owner", "STATUS": "status"}
    groups = {}
    for g in answer["groups"]:
        key = []
        for d in dimensions:
            value = g[field_of[d]]
            key.append(value["id"] if d == "OWNER" and value else value)
        groups[tuple(key)] = (g["count"], _api_money(g["amount"]))
    return answer["count"], _api_money(answer["amount"]), groups


def _reads_totals(counter: StatementCounter) -> bool:
    return any("order_month_totals" in s for s in counter.statements)


PERIODS = {
    # whole UTC months
    "whole": (
        {"gte": "2025-02-01T00:00:00Z", "lt": "2026-05-01T00:00:00Z"},
        (datetime(2025, 2, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)),
    ),
    # mid-month, with the other operators
    "mid-month": (
        {"gt": "2025-03-17T05:45:00Z", "lte": "2026-02-11T13:00:00Z"},
        (
            datetime(2025, 3, 17, 5, 45, tzinfo=UTC) + timedelta(microseconds=1),
            datetime(2026, 2, 11, 13, tzinfo=UTC) + timedelta(microseconds=1),
        ),
    ),
}


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(
    ("dimensions", "interval", "period"),
    [
        (["PLACED_AT", "OWNER"], "MONTH", "whole"),
        (["PLACED_AT"], "MONTH", "mid-month"),
        (["PLACED_AT", "STATUS"], "QUARTER", "mid-month"),
        (["OWNER", "PLACED_AT"], "YEAR", "whole"),
        (["OWNER", "STATUS"], "MONTH", "mid-month"),
    ],
)
async def test_revenue_from_the_monthly_totals_is_the_rows_answer_in_any_time_zone(
    data: Data,
    as_role: dict[Role, support.GraphQLClient],
    counter: StatementCounter,
    zone: str,
    dimensions: list[str],
    interval: str,
    period: str,
) -> None:
    bounds, (start, end) = PERIODS[period]
    with_status = "STATUS" not in dimensions
    filter: dict[str, Any] = {"placedAt": bounds}
    if with_status:
        filter["status"] = {"in": [s.value.upper() for s in REVENUE]}
    group_by = [
        {"field": d, **({"interval": interval} if d == "PLACED_AT" else {})} for d in dimensions
    ]
    variables = {"groupBy": group_by, "tz": zone, "filter": filter}
    summary = (await as_role[Role.ADMIN](REVENUE_BY, variables)).ok()["ordersAggregate"]
    assert _reads_totals(counter)
    counter.statements.clear()
    rows = (await as_role[Role.ADMIN](REVENUE_BY_FROM_ROWS, variables)).ok()["ordersAggregate"]
    assert not _reads_totals(counter)

    def selected(r: dict[str, Any]) -> bool:
        return start <= r["placed_at"] < end and (not with_status or r["status"] in REVENUE)

    expected = _expected(data, selected, dimensions, interval, ZoneInfo(zone))
    assert _got(summary, dimensions) == expected
    assert _got(rows, dimensions) == expected
    assert [g["placedAt"] for g in summary["groups"]] == [g["placedAt"] for g in rows["groups"]]
    assert [g["owner"] for g in summary["groups"]] == [g["owner"] for g in rows["groups"]]


async def test_filters_the_totals_cannot_answer_read_the_rows(
    data: Data, as_role: dict[Role, support.GraphQLClient], counter: StatementCounter
) -> None:
    """Days, weeks, other fields, no period, less than a whole month, archived rows."""
    whole = PERIODS["whole"][0]
    for variables in (
        {"groupBy": [{"field": "PLACED_AT", "interval": "DAY"}], "filter": {"placedAt": whole}},
        {"groupBy": [{"field": "CUSTOMER"}], "filter": {"placedAt": whole}},
        {"filter": {"placedAt": whole, "currency": {"eq": "EUR"}}},
        {"filter": {"status": {"eq": "PAID"}}},
        {"filter": {"placedAt": {"gte": "2025-03-02T00:00:00Z", "lt": "2025-03-30T00:00:00Z"}}},
    ):
        counter.statements.clear()
        (await as_role[Role.ADMIN](REVENUE_BY, variables)).ok()
        assert not _reads_totals(counter), variables


# ------------------------------------------------------------ the totals follow writes

TOTALS_FROM_ROWS = text(
    """
    SELECT date_trunc('month', o.placed_at, 'UTC') AS month, c.owner_id, o.status,
           o.currency, count(*) AS n, sum(o.amount) AS amount
    FROM orders o JOIN customers c ON c.id = o.customer_id
    WHERE o.workspace_id = :ws AND o.archived_at IS NULL
    GROUP BY 1, 2, 3, 4
    """
)
TOTALS = text(
    """
    SELECT month, owner_id, status, currency, order_count AS n, amount
    FROM order_month_totals
    WHERE workspace_id = :ws AND (order_count <> 0 OR amount <> 0)
    """
)


async def assert_totals_match_rows(
    sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID
) -> None:
    async with sessionmaker() as session:
        expected = {tuple(r) for r in await session.execute(TOTALS_FROM_ROWS, {"ws": workspace_id})}
        kept = {tuple(r) for r in await session.execute(TOTALS, {"ws": workspace_id})}
    assert kept == expected


def _actor(workspace: Workspace, user: User) -> Actor:
    return Actor(workspace_id=workspace.id, role=user.role, user_id=user.id)


async def test_the_totals_follow_creates_updates_archives_owner_changes_and_deletes(
    sessionmaker: async_sessionmaker[AsyncSession],
    data: Data,
    users: dict[Role, User],
) -> None:
    ws = data.workspace
    admin = _actor(ws, users[Role.ADMIN])
    await assert_totals_match_rows(sessionmaker, ws.id)
    customer_ids = list(data.customer_owner)

    async with sessionmaker() as session, session.begin():
        created = await orders.create_order(
            admin,
            session,
            {
                "customer_id": customer_ids[0],
                "amount": Decimal("12.34"),
                "currency": "EUR",
                "placed_at": datetime(2025, 6, 30, 23, 59, tzinfo=UTC),
                "status": OrderStatus.PAID,
            },
        )
    await assert_totals_match_rows(sessionmaker, ws.id)

    for change in (
        {"amount": Decimal("99.99")},
        {"status": OrderStatus.REFUNDED},
        {"placed_at": datetime(2025, 7, 1, 0, 0, tzinfo=UTC)},
        {"currency": "USD"},
        {"customer_id": customer_ids[1]},
    ):
        async with sessionmaker() as session, session.begin():
            await orders.update_order(admin, session, created.id, change)
        await assert_totals_match_rows(sessionmaker, ws.id)

    async with sessionmaker() as session, session.begin():
        await orders.archive_order(admin, session, created.id)
    await assert_totals_match_rows(sessionmaker, ws.id)

    # The customer's owner changes: its orders move to the new owner, and back to none.
    for owner in (users[Role.MANAGER].id, None):
        async with sessionmaker() as session, session.begin():
            await customers.update_customer(admin, session, customer_ids[2], {"owner_id": owner})
        await assert_totals_match_rows(sessionmaker, ws.id)

    # Two customers merged: the duplicate's orders go to the survivor (and its owner).
    async with sessionmaker() as session, session.begin():
        await customers.merge_customers(admin, session, customer_ids[0], [customer_ids[1]])
    await assert_totals_match_rows(sessionmaker, ws.id)

    # Rows removed in SQL: an order, a customer with its orders (the cascade), a user who
    # owned customers (SET NULL).
    async with sessionmaker() as session, session.begin():
        some = (
            await session.execute(
                text("SELECT id FROM orders WHERE workspace_id = :ws LIMIT 1"), {"ws": ws.id}
            )
        ).scalar_one()
        await session.execute(delete(models.Order).where(models.Order.id == some))
    await assert_totals_match_rows(sessionmaker, ws.id)
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(models.Customer).where(models.Customer.id == customer_ids[3]))
    await assert_totals_match_rows(sessionmaker, ws.id)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(models.Customer)
            .where(models.Customer.workspace_id == ws.id)
            .values(owner_id=users[Role.VIEWER].id)
        )
    await assert_totals_match_rows(sessionmaker, ws.id)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(models.Order)
            .where(models.Order.workspace_id == ws.id)
            .values(amount=models.Order.amount + 1)
        )
    await assert_totals_match_rows(sessionmaker, ws.id)


async def test_deleting_a_workspace_takes_its_totals(
    sessionmaker: async_sessionmaker[AsyncSession], data: Data
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            delete(models.Workspace).where(models.Workspace.id == data.workspace.id)
        )
    async with sessionmaker() as session:
        left = await session.scalar(
            text("SELECT count(*) FROM order_month_totals WHERE workspace_id = :ws"),
            {"ws": data.workspace.id},
        )
    assert left == 0


async def test_concurrent_writers_keep_the_totals_exact(
    sessionmaker: async_sessionmaker[AsyncSession], data: Data, users: dict[Role, User]
) -> None:
    """Orders created and changed while their customers' owners change, in parallel
    transactions: every order ends up counted once, under its customer's current owner."""
    ws = data.workspace
    admin = _actor(ws, users[Role.ADMIN])
    customer_ids = list(data.customer_owner)
    owners = [users[Role.ADMIN].id, users[Role.MANAGER].id, users[Role.AGENT].id, None]
    placed = datetime(2025, 9, 30, 23, 30, tzinfo=UTC)

    async def create(i: int) -> None:
        async with sessionmaker() as session, session.begin():
            await orders.create_order(
                admin,
                session,
                {
                    "customer_id": customer_ids[i % 2],
                    "amount": Decimal(i + 1),
                    "currency": "EUR",
                    "placed_at": placed + timedelta(minutes=i),
                    "status": OrderStatus.PAID,
                },
            )

    async def reassign(i: int) -> None:
        async with sessionmaker() as session, session.begin():
            await customers.update_customer(
                admin, session, customer_ids[i % 2], {"owner_id": owners[i % len(owners)]}
            )

    async def bump(i: int) -> None:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(models.Order)
                .where(models.Order.customer_id == customer_ids[i % 2])
                .values(amount=models.Order.amount + 1)
            )

    async def retried(write: Any) -> None:
        # PostgreSQL may end one of two transactions that lock the same orders and
        # summaries in opposite orders (deadlock, 40P01); the one ended changed nothing
        # and is sent again, as a client would. What committed must be counted exactly.
        for _ in range(5):
            try:
                return await write()
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != "40P01":
                    raise
        raise AssertionError("still deadlocked after 5 attempts")

    work = [retried(lambda i=i: create(i)) for i in range(16)]
    work += [retried(lambda i=i: reassign(i)) for i in range(8)]
    work += [retried(lambda i=i: bump(i)) for i in range(6)]
    random.Random(5).shuffle(work)
    await asyncio.gather(*work)
    await assert_totals_match_rows(sessionmaker, ws.id)
