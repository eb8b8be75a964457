"""Aggregates of every root list and time series (issue 13, points 4 and 5), checked over
GraphQL against an independent computation in Python over a generated data set."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from graphql import parse, validate
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql import models
from crm_graphql.explorer import DEFAULT_QUERY
from crm_graphql.global_ids import to_global_id
from crm_graphql.limits import QueryLimits, measure
from crm_graphql.models import (
    ActivityType,
    Channel,
    ConversationStatus,
    DealStatus,
    LifecycleStage,
    OrderStatus,
    Role,
    User,
    Workspace,
)
from crm_graphql.schema import aggregates as aggregate_schema
from crm_graphql.schema import schema
from crm_graphql.services import aggregates, auth
from tests import support
from tests.api.conftest import StatementCounter

BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")
FIRST = datetime(2025, 9, 20, tzinfo=UTC)
LAST = datetime(2026, 5, 10, tzinfo=UTC)
CURRENCIES = ("EUR", "USD", "JPY")
# Instants next to Berlin's local midnight, on ordinary days and on both DST changes
# (2025-10-26: 03:00 CEST -> 02:00 CET; 2026-03-29: 02:00 CET -> 03:00 CEST).
EDGES = [
    datetime(2026, 3, 27, 22, 59, 59, tzinfo=UTC),  # 23:59:59 CET on the 27th
    datetime(2026, 3, 27, 23, 0, tzinfo=UTC),  # 00:00 CET on the 28th
    datetime(2026, 3, 28, 23, 0, tzinfo=UTC),  # 00:00 CET on the 29th (DST day)
    datetime(2026, 3, 29, 0, 59, tzinfo=UTC),  # 01:59 CET
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST
    datetime(2026, 3, 29, 21, 59, tzinfo=UTC),  # 23:59 CEST, still the 29th
    datetime(2026, 3, 29, 22, 0, tzinfo=UTC),  # 00:00 CEST on the 30th
    datetime(2025, 10, 25, 21, 59, tzinfo=UTC),  # 23:59 CEST on the 25th
    datetime(2025, 10, 25, 22, 0, tzinfo=UTC),  # 00:00 CEST on the 26th (25-hour day)
    datetime(2025, 10, 26, 22, 59, tzinfo=UTC),  # 23:59 CET, still the 26th
    datetime(2025, 10, 26, 23, 0, tzinfo=UTC),  # 00:00 CET on the 27th
    datetime(2026, 2, 28, 23, 0, tzinfo=UTC),  # 00:00 CET on March 1st (UTC: February)
    datetime(2025, 12, 31, 23, 30, tzinfo=UTC),  # 00:30 on 2026-01-01 in Berlin
]


# ------------------------------------------------------------------------ the data set


@dataclass
class Data:
    workspace: Workspace
    users: dict[Role, User]
    deals: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[dict[str, Any]] = field(default_factory=list)
    other_workspace_deals: int = 0
    other_email: str = ""


def _instant(rng: random.Random, edges: bool = True) -> datetime:
    if edges and rng.random() < 0.3:
        return rng.choice(EDGES)
    span = (LAST - FIRST).total_seconds()
    return FIRST + timedelta(seconds=int(rng.random() * span))


def _amount(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(0, 500_000)) / 100


def _maybe(rng: random.Random, values: list[Any], none: float = 0.2) -> Any:
    return None if rng.random() < none else rng.choice(values)


async def _seed(
    session: AsyncSession, workspace: Workspace, users: dict[Role, User], seed: int
) -> Data:
    rng = random.Random(seed)
    data = Data(workspace, users)
    ws = workspace.id
    user_ids = [u.id for u in users.values()]
    pipeline = models.Pipeline(workspace_id=ws, name="Sales", position=0)
    session.add(pipeline)
    await session.flush()
    stages = [
        models.Stage(workspace_id=ws, pipeline_id=pipeline.id, name=n, position=i, probability=p)
        for i, (n, p) in enumerate([("Lead", 10), ("Offer", 50), ("Closing", 90)])
    ]
    session.add_all(stages)
    companies = []
    for i in range(4):
        company = models.Company(
            workspace_id=ws,
            name=f"Company {i}",
            owner_id=_maybe(rng, user_ids),
            employee_count=_maybe(rng, [5, 12, 40, 250, 1000]),
            created_at=_instant(rng),
            archived_at=FIRST if i == 3 else None,
        )
        companies.append(company)
    session.add_all(companies)
    await session.flush()
    data.companies = [
        {
            "id": c.id,
            "owner_id": c.owner_id,
            "employee_count": c.employee_count,
            "created_at": c.created_at,
            "archived": c.archived_at is not None,
        }
        for c in companies
    ]
    company_ids = [c.id for c in companies]
    customers = []
    for i in range(12):
        customer = models.Customer(
            workspace_id=ws,
            name=f"Customer {i}",
            lifecycle_stage=rng.choice(list(LifecycleStage)),
            owner_id=_maybe(rng, user_ids),
            company_id=_maybe(rng, company_ids),
            created_at=_instant(rng),
            last_activity_at=_maybe(rng, [_instant(rng) for _ in range(5)]),
            archived_at=FIRST if i == 11 else None,
        )
        customers.append(customer)
    session.add_all(customers)
    await session.flush()
    data.customers = [
        {
            "id": c.id,
            "lifecycle_stage": c.lifecycle_stage,
            "owner_id": c.owner_id,
            "company_id": c.company_id,
            "created_at": c.created_at,
            "last_activity_at": c.last_activity_at,
            "archived": c.archived_at is not None,
        }
        for c in customers
    ]
    owner_of = {c.id: c.owner_id for c in customers}
    customer_ids = [c.id for c in customers]
    deals = []
    for i in range(60):
        status = rng.choice(list(DealStatus))
        stage = rng.choice(stages)
        deal = models.Deal(
            workspace_id=ws,
            title=f"Deal {i}",
            pipeline_id=pipeline.id,
            stage_id=stage.id,
            status=status,
            owner_id=_maybe(rng, user_ids),
            company_id=_maybe(rng, company_ids),
            customer_id=_maybe(rng, customer_ids),
            amount=_amount(rng),
            currency=rng.choice(CURRENCIES),
            created_at=_instant(rng),
            closed_at=None if status is DealStatus.OPEN else _instant(rng),
            expected_close_date=_maybe(rng, [date(2026, m, d) for m in (1, 3, 4) for d in (1, 30)]),
            archived_at=FIRST if i % 17 == 5 else None,
        )
        deals.append(deal)
    session.add_all(deals)
    await session.flush()
    deal_ids = [d.id for d in deals]
    orders = []
    for i in range(70):
        customer_id = rng.choice(customer_ids)
        order = models.Order(
            workspace_id=ws,
            customer_id=customer_id,
            number=f"ORD-{i:05d}",
            status=rng.choice(list(OrderStatus)),
            amount=_amount(rng),
            currency=rng.choice(CURRENCIES),
            placed_at=_instant(rng),
            created_at=_instant(rng),
            archived_at=FIRST if i % 23 == 7 else None,
        )
        orders.append(order)
    session.add_all(orders)
    activities = []
    for i in range(40):
        activity = models.Activity(
            workspace_id=ws,
            type=rng.choice(list(ActivityType)),
            subject=f"Activity {i}",
            customer_id=_maybe(rng, customer_ids),
            author_id=_maybe(rng, user_ids),
            deal_id=_maybe(rng, deal_ids[:6], none=0.5),
            occurred_at=_instant(rng),
            due_at=_maybe(rng, [_instant(rng) for _ in range(4)]),
            completed_at=_maybe(rng, [_instant(rng) for _ in range(4)], none=0.5),
            created_at=_instant(rng),
        )
        activities.append(activity)
    session.add_all(activities)
    conversations = []
    for i in range(30):
        conversation = models.Conversation(
            workspace_id=ws,
            customer_id=rng.choice(customer_ids),
            channel=rng.choice(list(Channel)),
            status=rng.choice(list(ConversationStatus)),
            assignee_id=_maybe(rng, user_ids),
            # Private ones: only admins, managers and their assignee see them.
            is_private=i % 3 == 0,
            created_at=_instant(rng),
            last_message_at=_maybe(rng, [_instant(rng) for _ in range(6)]),
        )
        conversations.append(conversation)
    session.add_all(conversations)
    await session.flush()
    data.deals = [
        {
            "id": d.id,
            "status": d.status,
            "stage_id": d.stage_id,
            "pipeline_id": d.pipeline_id,
            "owner_id": d.owner_id,
            "company_id": d.company_id,
            "customer_id": d.customer_id,
            "amount": d.amount,
            "currency": d.currency,
            "created_at": d.created_at,
            "closed_at": d.closed_at,
            "expected_close_date": d.expected_close_date,
            "archived": d.archived_at is not None,
        }
        for d in deals
    ]
    data.orders = [
        {
            "id": o.id,
            "status": o.status,
            "customer_id": o.customer_id,
            "owner_id": owner_of[o.customer_id],
            "amount": o.amount,
            "currency": o.currency,
            "placed_at": o.placed_at,
            "created_at": o.created_at,
            "archived": o.archived_at is not None,
        }
        for o in orders
    ]
    data.activities = [
        {
            "id": a.id,
            "type": a.type,
            "customer_id": a.customer_id,
            "author_id": a.author_id,
            "deal_id": a.deal_id,
            "occurred_at": a.occurred_at,
            "due_at": a.due_at,
            "completed_at": a.completed_at,
            "created_at": a.created_at,
            "archived": False,
        }
        for a in activities
    ]
    data.conversations = [
        {
            "id": c.id,
            "channel": c.channel,
            "status": c.status,
            "assignee_id": c.assignee_id,
            "customer_id": c.customer_id,
            "is_private": c.is_private,
            "created_at": c.created_at,
            "last_message_at": c.last_message_at,
            "archived": False,
        }
        for c in conversations
    ]
    return data


@pytest.fixture
async def data(
    sessionmaker: async_sessionmaker[AsyncSession], workspace: Workspace, users: dict[Role, User]
) -> AsyncIterator[Data]:
    async with sessionmaker() as session, session.begin():
        seeded = await _seed(session, workspace, users, seed=13)
        # Another tenant with rows of every kind: none of them may be counted.
        other = await auth.create_workspace(session, name=f"Other {uuid.uuid4().hex[:8]}")
        other_user = await auth.create_user(
            session,
            workspace=other,
            email=f"other-{uuid.uuid4().hex[:8]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
            name="Other",
        )
        other_data = await _seed(session, other, {Role.ADMIN: other_user}, seed=14)
        seeded.other_workspace_deals = len(live(other_data.deals))
        seeded.other_email = other_user.email
    yield seeded


# ------------------------------------------------------------ the independent computation


def bucket(value: Any, interval: str, zone: ZoneInfo) -> str | None:
    """A bucket's label computed in Python: the local start of the day, week, month,
    quarter or year the instant falls in (a date field: its first day)."""
    if value is None:
        return None
    day = value.astimezone(zone).date() if isinstance(value, datetime) else value
    if interval == "WEEK":
        day -= timedelta(days=day.weekday())
    elif interval == "MONTH":
        day = day.replace(day=1)
    elif interval == "QUARTER":
        day = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    elif interval == "YEAR":
        day = day.replace(month=1, day=1)
    if not isinstance(value, datetime):
        return day.isoformat()
    return datetime(day.year, day.month, day.day, tzinfo=zone).isoformat()


def money_stats(rows: Iterable[dict[str, Any]]) -> dict[str, tuple[Decimal, ...]]:
    """Per currency: (sum, avg rounded half up to cents, min, max)."""
    by_currency: dict[str, list[Decimal]] = defaultdict(list)
    for row in rows:
        by_currency[row["currency"]].append(row["amount"])
    out = {}
    for currency, amounts in by_currency.items():
        total = sum(amounts, Decimal(0))
        avg = (total / len(amounts)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        out[currency] = (total, avg, min(amounts), max(amounts))
    return out


def api_money(value: dict[str, Any]) -> dict[str, tuple[Decimal, ...]]:
    """The API's ``MoneyAggregate`` in the same shape, checking currencies line up."""
    currencies = [m["currency"] for m in value["sum"]]
    assert currencies == sorted(currencies), currencies
    out = {}
    for i, currency in enumerate(currencies):
        entries = [value[k][i] for k in ("sum", "avg", "min", "max")]
        assert {e["currency"] for e in entries} == {currency}
        out[currency] = tuple(Decimal(e["amount"]) for e in entries)
    return out


def gid(type_name: str, id: uuid.UUID | None) -> str | None:
    return None if id is None else to_global_id(type_name, id)


Key = Callable[[dict[str, Any]], Any]


def expected_groups(
    rows: list[dict[str, Any]], keys: list[Key]
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(k(row) for k in keys)].append(row)
    return groups


def live(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if not r["archived"]]


# ---------------------------------------------------------------------------- queries

DEALS_BY = """query($groupBy: [DealGroupBy!], $tz: String, $filter: DealFilter, $archived: Boolean! = false) {
  dealsAggregate(groupBy: $groupBy, timeZone: $tz, filter: $filter, includeArchived: $archived) {
    count
    amount { sum { amount currency } avg { amount currency } min { amount currency } max { amount currency } }
    groups {
      status createdAt closedAt expectedCloseDate
      stage { id } pipeline { id } owner { id } company { id } customer { id }
      count
      amount { sum { amount currency } avg { amount currency } min { amount currency } max { amount currency } }
      drillDown { list filter }
    }
  }
}"""

ORDERS_BY = """query($groupBy: [OrderGroupBy!], $tz: String, $filter: OrderFilter) {
  ordersAggregate(groupBy: $groupBy, timeZone: $tz, filter: $filter) {
    count
    amount { sum { amount currency } avg { amount currency } min { amount currency } max { amount currency } }
    groups {
      status placedAt createdAt owner { id } customer { id }
      count
      amount { sum { amount currency } avg { amount currency } min { amount currency } max { amount currency } }
      drillDown { list filter }
    }
  }
}"""

CUSTOMERS_BY = """query($groupBy: [CustomerGroupBy!], $tz: String, $filter: CustomerFilter) {
  customersAggregate(groupBy: $groupBy, timeZone: $tz, filter: $filter) {
    count
    groups {
      lifecycleStage createdAt lastActivityAt owner { id } company { id }
      count drillDown { list filter }
    }
  }
}"""

COMPANIES_BY = """query($groupBy: [CompanyGroupBy!], $tz: String, $filter: CompanyFilter) {
  companiesAggregate(groupBy: $groupBy, timeZone: $tz, filter: $filter) {
    count employeeCount { sum avg min max }
    groups { createdAt owner { id } count employeeCount { sum avg min max } drillDown { list filter } }
  }
}"""

ACTIVITIES_BY = """query($groupBy: [ActivityGroupBy!], $tz: String, $filter: ActivityFilter) {
  activitiesAggregate(groupBy: $groupBy, timeZone: $tz, filter: $filter) {
    count
    groups {
      type occurredAt dueAt createdAt author { id } customer { id }
      count drillDown { list filter }
    }
  }
}"""

CONVERSATIONS_BY = """query($groupBy: [ConversationGroupBy!], $tz: String, $filter: ConversationFilter) {
  conversationsAggregate(groupBy: $groupBy, timeZone: $tz, filter: $filter) {
    count
    groups { channel status createdAt assignee { id } customer { id } count drillDown { list filter } }
  }
}"""


def node_id(value: dict[str, Any] | None) -> str | None:
    return None if value is None else value["id"]


# ----------------------------------------------------------------------------- tests


async def test_deals_count_and_money_per_currency_grouped_by_status_and_stage(
    data: Data, as_role: dict[Role, support.GraphQLClient]
) -> None:
    result = await as_role[Role.ADMIN](
        DEALS_BY, {"groupBy": [{"field": "STATUS"}, {"field": "STAGE"}]}
    )
    aggregate = result.ok()["dealsAggregate"]
    rows = live(data.deals)
    assert aggregate["count"] == len(rows)
    assert api_money(aggregate["amount"]) == money_stats(rows)
    expected = expected_groups(
        rows, [lambda r: r["status"].name, lambda r: gid("Stage", r["stage_id"])]
    )
    got = {
        (g["status"], node_id(g["stage"])): (g["count"], api_money(g["amount"]))
        for g in aggregate["groups"]
    }
    assert got == {k: (len(v), money_stats(v)) for k, v in expected.items()}
    assert len(aggregate["groups"]) == len(expected)
    # Several currencies really are in play, and are never added together.
    assert len(money_stats(rows)) == len(CURRENCIES)


@pytest.mark.parametrize(
    ("dimension", "key"),
    [
        ("PIPELINE", lambda r: gid("Pipeline", r["pipeline_id"])),
        ("OWNER", lambda r: gid("User", r["owner_id"])),
        ("COMPANY", lambda r: gid("Company", r["company_id"])),
        ("CUSTOMER", lambda r: gid("Customer", r["customer_id"])),
    ],
)
async def test_deals_grouped_by_a_relation_give_the_related_node_or_null(
    data: Data, as_role: dict[Role, support.GraphQLClient], dimension: str, key: Key
) -> None:
    result = await as_role[Role.MANAGER](DEALS_BY, {"groupBy": [{"field": dimension}]})
    groups = result.ok()["dealsAggregate"]["groups"]
    field_name = dimension.lower()
    got = {node_id(g[field_name]): (g["count"], api_money(g["amount"])) for g in groups}
    expected = expected_groups(live(data.deals), [key])
    assert got == {k[0]: (len(v), money_stats(v)) for k, v in expected.items()}
    if dimension != "PIPELINE":  # every deal has a pipeline
        assert None in got  # rows without the relation form their own group


@pytest.mark.parametrize("interval", ["DAY", "WEEK", "MONTH", "QUARTER", "YEAR"])
@pytest.mark.parametrize("zone", ["Europe/Berlin", "UTC", "America/New_York"])
async def test_time_buckets_are_cut_at_local_midnight_in_the_callers_time_zone(
    data: Data, as_role: dict[Role, support.GraphQLClient], interval: str, zone: str
) -> None:
    tz = ZoneInfo(zone)
    result = await as_role[Role.ADMIN](
        ORDERS_BY,
        {"groupBy": [{"field": "PLACED_AT", "interval": interval}], "tz": zone},
    )
    groups = result.ok()["ordersAggregate"]["groups"]
    expected = expected_groups(live(data.orders), [lambda r: bucket(r["placed_at"], interval, tz)])
    got = {g["placedAt"]: (g["count"], api_money(g["amount"])) for g in groups}
    assert got == {k[0]: (len(v), money_stats(v)) for k, v in expected.items()}
    labels = [g["placedAt"] for g in groups]
    assert labels == sorted(labels, key=datetime.fromisoformat)


async def test_a_dst_day_in_berlin_lasts_23_hours_and_its_edges_fall_on_local_midnight(
    data: Data, as_role: dict[Role, support.GraphQLClient]
) -> None:
    filter = {"placedAt": {"gte": "2026-03-27T00:00:00Z", "lt": "2026-03-31T00:00:00Z"}}
    result = await as_role[Role.ADMIN](
        ORDERS_BY,
        {
            "groupBy": [{"field": "PLACED_AT", "interval": "DAY"}],
            "tz": "Europe/Berlin",
            "filter": filter,
        },
    )
    groups = {g["placedAt"]: g for g in result.ok()["ordersAggregate"]["groups"]}
    dst_day = groups["2026-03-29T00:00:00+01:00"]
    bounds = dst_day["drillDown"]["filter"]["and"][1]["placedAt"]
    assert bounds == {"gte": "2026-03-28T23:00:00+00:00", "lt": "2026-03-29T22:00:00+00:00"}
    # Every group holds the orders of its Berlin day: 23:59:59 CET on the 27th is the
    # 27th and a second later the 28th; 00:00 CEST on the 30th (22:00 UTC on the 29th) is
    # the 30th.
    in_window = [
        o
        for o in live(data.orders)
        if datetime(2026, 3, 27, tzinfo=UTC) <= o["placed_at"] < datetime(2026, 3, 31, tzinfo=UTC)
    ]
    edges = {e for e in EDGES if e.year == 2026 and e.month == 3}
    assert any(o["placed_at"] in edges for o in in_window)
    for label, group in groups.items():
        local_day = datetime.fromisoformat(label).date()
        members = [o for o in in_window if o["placed_at"].astimezone(BERLIN).date() == local_day]
        assert group["count"] == len(members), label
    assert "2026-03-30T00:00:00+02:00" in groups or not any(
        o["placed_at"].astimezone(BERLIN).date() == date(2026, 3, 30) for o in in_window
    )


async def test_expected_close_dates_bucket_as_calendar_dates(
    data: Data, as_role: dict[Role, support.GraphQLClient]
) -> None:
    result = await as_role[Role.ADMIN](
        DEALS_BY,
        {
            "groupBy": [{"field": "EXPECTED_CLOSE_DATE", "interval": "MONTH"}, {"field": "STATUS"}],
            "tz": "Pacific/Kiritimati",
        },
    )
    groups = result.ok()["dealsAggregate"]["groups"]
    expected = expected_groups(
        live(data.deals),
        [lambda r: bucket(r["expected_close_date"], "MONTH", BERLIN), lambda r: r["status"].name],
    )
    got = {(g["expectedCloseDate"], g["status"]): g["count"] for g in groups}
    assert got == {k: len(v) for k, v in expected.items()}
    march = next(g for g in groups if g["expectedCloseDate"] == "2026-03-01")
    assert march["drillDown"]["filter"]["expectedCloseDate"] == {
        "gte": "2026-03-01",
        "lt": "2026-04-01",
    }


async def test_enum_and_relation_dimensions_of_the_other_lists(
    data: Data, as_role: dict[Role, support.GraphQLClient]
) -> None:
    admin = as_role[Role.ADMIN]
    customers = (
        await admin(CUSTOMERS_BY, {"groupBy": [{"field": "LIFECYCLE_STAGE"}, {"field": "COMPANY"}]})
    ).ok()["customersAggregate"]
    expected = expected_groups(
        live(data.customers),
        [lambda r: r["lifecycle_stage"].name, lambda r: gid("Company", r["company_id"])],
    )
    assert customers["count"] == len(live(data.customers))
    assert {
        (g["lifecycleStage"], node_id(g["company"])): g["count"] for g in customers["groups"]
    } == {k: len(v) for k, v in expected.items()}

    activities = (
        await admin(ACTIVITIES_BY, {"groupBy": [{"field": "TYPE"}, {"field": "AUTHOR"}]})
    ).ok()["activitiesAggregate"]
    expected = expected_groups(
        data.activities, [lambda r: r["type"].name, lambda r: gid("User", r["author_id"])]
    )
    assert {(g["type"], node_id(g["author"])): g["count"] for g in activities["groups"]} == {
        k: len(v) for k, v in expected.items()
    }

    conversations = (
        await admin(CONVERSATIONS_BY, {"groupBy": [{"field": "CHANNEL"}, {"field": "STATUS"}]})
    ).ok()["conversationsAggregate"]
    expected = expected_groups(
        data.conversations, [lambda r: r["channel"].name, lambda r: r["status"].name]
    )
    assert {(g["channel"], g["status"]): g["count"] for g in conversations["groups"]} == {
        k: len(v) for k, v in expected.items()
    }

    orders = (await admin(ORDERS_BY, {"groupBy": [{"field": "STATUS"}, {"field": "OWNER"}]})).ok()[
        "ordersAggregate"
    ]
    expected = expected_groups(
        live(data.orders), [lambda r: r["status"].name, lambda r: gid("User", r["owner_id"])]
    )
    assert {
        (g["status"], node_id(g["owner"])): (g["count"], api_money(g["amount"]))
        for g in orders["groups"]
    } == {k: (len(v), money_stats(v)) for k, v in expected.items()}


async def test_numeric_fields_sum_average_min_and_max_over_rows_with_a_value(
    data: Data, as_role: dict[Role, support.GraphQLClient]
) -> None:
    result = await as_role[Role.ADMIN](COMPANIES_BY, {"groupBy": [{"field": "OWNER"}]})
    aggregate = result.ok()["companiesAggregate"]

    def stats(rows: list[dict[str, Any]]) -> dict[str, Decimal | None]:
        values = [Decimal(r["employee_count"]) for r in rows if r["employee_count"] is not None]
        if not values:
            return {"sum": None, "avg": None, "min": None, "max": None}
        total = sum(values, Decimal(0))
        avg = (total / len(values)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        return {"sum": total, "avg": avg, "min": min(values), "max": max(values)}

    def api(value: dict[str, Any]) -> dict[str, Decimal | None]:
        return {k: None if v is None else Decimal(v) for k, v in value.items()}

    rows = live(data.companies)
    assert aggregate["count"] == len(rows)
    assert api(aggregate["employeeCount"]) == stats(rows)
    expected = expected_groups(rows, [lambda r: gid("User", r["owner_id"])])
    assert {
        node_id(g["owner"]): (g["count"], api(g["employeeCount"])) for g in aggregate["groups"]
    } == {k[0]: (len(v), stats(v)) for k, v in expected.items()}


async def test_the_lists_filter_and_include_archived_are_honoured(
    data: Data, as_role: dict[Role, support.GraphQLClient]
) -> None:
    admin = as_role[Role.ADMIN]
    filter = {"currency": {"in": ["EUR", "USD"]}, "amount": {"gte": "1000"}}
    result = (await admin(DEALS_BY, {"filter": filter, "groupBy": [{"field": "STATUS"}]})).ok()
    rows = [r for r in live(data.deals) if r["currency"] in ("EUR", "USD") and r["amount"] >= 1000]
    assert result["dealsAggregate"]["count"] == len(rows)
    assert api_money(result["dealsAggregate"]["amount"]) == money_stats(rows)
    archived = (await admin(DEALS_BY, {"archived": True})).ok()["dealsAggregate"]
    assert archived["count"] == len(data.deals) > len(live(data.deals))
    assert api_money(archived["amount"]) == money_stats(data.deals)
    # Another workspace's deals exist and are never counted.
    assert data.other_workspace_deals > 0


async def test_an_agent_counts_only_the_conversations_the_list_shows_them(
    data: Data, as_role: dict[Role, support.GraphQLClient], users: dict[Role, User]
) -> None:
    agent = users[Role.AGENT]
    visible = [c for c in data.conversations if not c["is_private"] or c["assignee_id"] == agent.id]
    assert len(visible) < len(data.conversations)
    query = """query($g: [ConversationGroupBy!]) {
      conversationsAggregate(groupBy: $g) { count groups { assignee { id } count } }
      conversations(first: 1) { totalCount }
    }"""
    result = (await as_role[Role.AGENT](query, {"g": [{"field": "ASSIGNEE"}]})).ok()
    assert result["conversationsAggregate"]["count"] == len(visible)
    assert result["conversations"]["totalCount"] == len(visible)
    expected = expected_groups(visible, [lambda r: gid("User", r["assignee_id"])])
    assert {
        node_id(g["assignee"]): g["count"] for g in result["conversationsAggregate"]["groups"]
    } == {k[0]: len(v) for k, v in expected.items()}
    admin = (await as_role[Role.ADMIN](query, {"g": None})).ok()
    assert admin["conversationsAggregate"]["count"] == len(data.conversations)


async def test_an_api_key_without_the_lists_scope_is_forbidden(
    data: Data, as_role: dict[Role, support.GraphQLClient], client: support.GraphQLClient
) -> None:
    created = await as_role[Role.ADMIN](
        """mutation { createApiKey(input: {name: "reports", scopes: [CUSTOMERS_READ]}) {
             token errors { code } } }"""
    )
    secret = created.ok()["createApiKey"]["token"]
    partner = support.GraphQLClient(client.http, secret)
    denied = await partner("{ dealsAggregate { count } }")
    assert denied.errors[0]["extensions"]["code"] == "FORBIDDEN"
    allowed = (await partner("{ ordersAggregate { count } }")).ok()
    assert allowed["ordersAggregate"]["count"] == len(live(data.orders))


DRILLS = [
    (
        "deals",
        DEALS_BY,
        [{"field": "OWNER"}, {"field": "CLOSED_AT", "interval": "MONTH"}],
        {"status": {"ne": "OPEN"}},
    ),
    (
        "deals",
        DEALS_BY,
        [{"field": "EXPECTED_CLOSE_DATE", "interval": "QUARTER"}, {"field": "COMPANY"}],
        None,
    ),
    (
        "orders",
        ORDERS_BY,
        [{"field": "OWNER"}, {"field": "PLACED_AT", "interval": "WEEK"}],
        {"currency": {"eq": "EUR"}},
    ),
    ("orders", ORDERS_BY, [{"field": "STATUS"}, {"field": "CUSTOMER"}], None),
    (
        "customers",
        CUSTOMERS_BY,
        [{"field": "OWNER"}, {"field": "LAST_ACTIVITY_AT", "interval": "MONTH"}],
        None,
    ),
    (
        "companies",
        COMPANIES_BY,
        [{"field": "OWNER"}, {"field": "CREATED_AT", "interval": "YEAR"}],
        None,
    ),
    (
        "activities",
        ACTIVITIES_BY,
        [{"field": "CUSTOMER"}, {"field": "DUE_AT", "interval": "DAY"}],
        None,
    ),
    (
        "conversations",
        CONVERSATIONS_BY,
        [{"field": "ASSIGNEE"}, {"field": "CREATED_AT", "interval": "MONTH"}],
        None,
    ),
]

LIST_ROWS = {
    "deals": "nodes { amount currency }",
    "orders": "nodes { amount currency }",
    "companies": "nodes { employeeCount }",
}


@pytest.mark.parametrize(("list_name", "document", "group_by", "filter"), DRILLS)
async def test_every_group_drills_down_to_exactly_its_rows(
    data: Data,
    as_role: dict[Role, support.GraphQLClient],
    list_name: str,
    document: str,
    group_by: list[dict[str, str]],
    filter: dict[str, Any] | None,
) -> None:
    client = as_role[Role.AGENT]
    result = (
        await client(document, {"groupBy": group_by, "tz": "Europe/Berlin", "filter": filter})
    ).ok()
    aggregate = result[f"{list_name}Aggregate"]
    assert len(aggregate["groups"]) > 1
    filter_type = {
        "deals": "DealFilter",
        "orders": "OrderFilter",
        "customers": "CustomerFilter",
        "companies": "CompanyFilter",
        "activities": "ActivityFilter",
        "conversations": "ConversationFilter",
    }[list_name]
    list_query = f"""query($f: {filter_type}) {{
      {list_name}(filter: $f, first: 100) {{ totalCount {LIST_ROWS.get(list_name, "")} }}
    }}"""
    total = 0
    for group in aggregate["groups"]:
        drill = group["drillDown"]
        assert drill["list"] == list_name
        rows = (await client(list_query, {"f": drill["filter"]})).ok()[list_name]
        assert rows["totalCount"] == group["count"], drill
        total += group["count"]
        if "amount" in group:
            assert money_stats(
                {"amount": Decimal(n["amount"]), "currency": n["currency"]} for n in rows["nodes"]
            ) == api_money(group["amount"])
        if "employeeCount" in group:
            values = [n["employeeCount"] for n in rows["nodes"] if n["employeeCount"] is not None]
            expected_sum = None if not values else Decimal(sum(values))
            got = group["employeeCount"]["sum"]
            assert (None if got is None else Decimal(got)) == expected_sum
    assert total == aggregate["count"]


@pytest.mark.parametrize(
    "variables",
    [
        {"groupBy": [{"field": "STATUS"}], "tz": "Mars/Olympus_Mons"},
        {"groupBy": [{"field": "STATUS"}], "tz": "../../etc/passwd"},
        {"groupBy": [{"field": "STATUS"}], "tz": ""},
        {"groupBy": [{"field": "STATUS"}, {"field": "OWNER"}, {"field": "STAGE"}]},
        {"groupBy": [{"field": "CREATED_AT"}]},
        {"groupBy": [{"field": "STATUS", "interval": "DAY"}]},
        {"groupBy": [{"field": "OWNER"}, {"field": "OWNER"}]},
    ],
)
async def test_bad_grouping_arguments_are_validation_errors(
    data: Data, as_role: dict[Role, support.GraphQLClient], variables: dict[str, Any]
) -> None:
    result = await as_role[Role.ADMIN](DEALS_BY, variables)
    assert result.status == 200
    assert [e["extensions"]["code"] for e in result.errors] == ["VALIDATION"], result.body
    assert result.data is None


async def test_one_statement_per_aggregate_whatever_the_number_of_groups(
    data: Data, as_role: dict[Role, support.GraphQLClient], counter: StatementCounter
) -> None:
    query = """query($g: [DealGroupBy!]) {
      dealsAggregate(groupBy: $g) { count amount { sum { amount currency } }
        groups { count status createdAt amount { sum { amount currency } } drillDown { filter } } }
    }"""
    counts = {}
    for name, group_by in {
        "none": None,
        "few": [{"field": "STATUS"}],
        "many": [{"field": "CREATED_AT", "interval": "DAY"}, {"field": "STATUS"}],
    }.items():
        counter.statements.clear()
        groups = (await as_role[Role.ADMIN](query, {"g": group_by})).ok()["dealsAggregate"][
            "groups"
        ]
        counts[name] = (len(counter.statements), len(groups))
        aggregate_statements = [s for s in counter.statements if "deals" in s.lower()]
        assert len(aggregate_statements) == 1, aggregate_statements
    assert counts["few"][1] == len(DealStatus)
    assert counts["many"][1] >= 20
    assert counts["none"][0] == counts["few"][0] == counts["many"][0], counts


def test_a_grouped_aggregate_costs_like_a_full_page_of_its_groups() -> None:
    limits = QueryLimits()
    selection = "count groups { count status }"  # 1 + (1 + 1 + 1): 4 below the field
    _, plain, _ = measure(schema._schema, parse(f"{{ dealsAggregate {{ {selection} }} }}"), limits)
    _, grouped, _ = measure(
        schema._schema,
        parse(f"{{ dealsAggregate(groupBy: [{{field: STATUS}}]) {{ {selection} }} }}"),
        limits,
    )
    assert plain == 1 + 4
    assert grouped == 1 + limits.max_page_size * 4
    series = parse(
        '{ timeSeries(metric: REVENUE, interval: DAY, from: "2026-01-01T00:00:00Z", '
        'to: "2026-02-01T00:00:00Z") { start count } }'
    )
    assert measure(schema._schema, series, limits)[1] == 1 + limits.max_page_size * 2


# ------------------------------------------------------------------------ time series

SERIES = """query($m: TimeSeriesMetric!, $i: TimeInterval!, $from: DateTime!, $to: DateTime!, $tz: String) {
  timeSeries(metric: $m, interval: $i, from: $from, to: $to, timeZone: $tz) {
    start end count amount { amount currency } drillDown { list filter }
  }
}"""


def python_series(
    rows: list[dict[str, Any]],
    when: str,
    interval: str,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
) -> list[tuple[str, int, dict[str, Decimal]]]:
    """Every bucket label from ``start``'s to the one holding the instant before ``end``,
    with the rows whose ``when`` falls in it (count, sum per currency)."""
    first = date.fromisoformat(bucket(start, interval, tz)[:10])  # type: ignore[index]
    last = date.fromisoformat(bucket(end - timedelta(microseconds=1), interval, tz)[:10])  # type: ignore[index]
    labels = []
    day = first
    while day <= last:
        labels.append(datetime(day.year, day.month, day.day, tzinfo=tz).isoformat())
        if interval == "DAY":
            day += timedelta(days=1)
        elif interval == "WEEK":
            day += timedelta(days=7)
        else:
            month = day.month + (1 if interval == "MONTH" else 3) - 1
            day = date(day.year + month // 12, month % 12 + 1, 1)
    out = []
    for label in labels:
        members = [
            r for r in rows if r[when] is not None and bucket(r[when], interval, tz) == label
        ]
        sums = (
            {c: s[0] for c, s in money_stats(members).items()}
            if members and "amount" in members[0]
            else {}
        )
        out.append((label, len(members), sums))
    return out


@pytest.mark.parametrize(
    ("metric", "interval", "start", "end", "zone"),
    [
        ("REVENUE", "DAY", "2026-03-25T10:00:00Z", "2026-04-02T00:00:00Z", "Europe/Berlin"),
        ("REVENUE", "MONTH", "2025-09-01T00:00:00Z", "2026-06-01T00:00:00Z", "Europe/Berlin"),
        ("DEALS_WON", "WEEK", "2025-10-01T00:00:00Z", "2026-01-15T00:00:00Z", "America/New_York"),
        ("NEW_CUSTOMERS", "MONTH", "2025-06-01T00:00:00Z", "2026-07-01T00:00:00Z", "UTC"),
        ("NEW_CUSTOMERS", "DAY", "2025-10-24T00:00:00Z", "2025-10-29T00:00:00Z", "Europe/Berlin"),
    ],
)
async def test_time_series_gives_every_bucket_with_its_value_and_rows(
    data: Data,
    as_role: dict[Role, support.GraphQLClient],
    metric: str,
    interval: str,
    start: str,
    end: str,
    zone: str,
) -> None:
    tz = ZoneInfo(zone)
    client = as_role[Role.AGENT]
    result = (
        await client(SERIES, {"m": metric, "i": interval, "from": start, "to": end, "tz": zone})
    ).ok()["timeSeries"]
    if metric == "REVENUE":
        rows = [
            r for r in live(data.orders) if r["status"] in (OrderStatus.PAID, OrderStatus.FULFILLED)
        ]
        when, list_name = "placed_at", "orders"
    elif metric == "DEALS_WON":
        rows = [r for r in live(data.deals) if r["status"] is DealStatus.WON]
        when, list_name = "closed_at", "deals"
    else:
        rows, when, list_name = live(data.customers), "created_at", "customers"
    expected = python_series(
        rows, when, interval, datetime.fromisoformat(start), datetime.fromisoformat(end), tz
    )
    got = [
        (p["start"], p["count"], {m["currency"]: Decimal(m["amount"]) for m in p["amount"]})
        for p in result
    ]
    assert got == expected
    assert len(result) == len(expected) > 0
    for point, following in itertools.pairwise(result):
        assert point["end"] == following["start"]  # buckets tile the range
    filter_type = {"orders": "OrderFilter", "deals": "DealFilter", "customers": "CustomerFilter"}
    list_query = f"""query($f: {filter_type[list_name]}) {{
      {list_name}(filter: $f, first: 1) {{ totalCount }} }}"""
    for point in result:
        assert point["drillDown"]["list"] == list_name
        rows_behind = (await client(list_query, {"f": point["drillDown"]["filter"]})).ok()
        assert rows_behind[list_name]["totalCount"] == point["count"], point


@pytest.mark.parametrize(
    "variables",
    [
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z", "tz": None},
        {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "tz": None},
        {"from": "2000-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "tz": None},
        {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "tz": "Nowhere/Land"},
    ],
)
async def test_bad_time_series_arguments_are_validation_errors(
    as_role: dict[Role, support.GraphQLClient], variables: dict[str, Any]
) -> None:
    result = await as_role[Role.ADMIN](SERIES, {"m": "REVENUE", "i": "DAY", **variables})
    assert [e["extensions"]["code"] for e in result.errors] == ["VALIDATION"], result.body


def test_the_group_field_enums_are_the_declared_dimensions() -> None:
    pairs = {
        "deals": aggregate_schema.DealGroupField,
        "customers": aggregate_schema.CustomerGroupField,
        "companies": aggregate_schema.CompanyGroupField,
        "activities": aggregate_schema.ActivityGroupField,
        "orders": aggregate_schema.OrderGroupField,
        "conversations": aggregate_schema.ConversationGroupField,
    }
    for list_name, enum_type in pairs.items():
        assert {m.value for m in enum_type} == set(aggregates.SPECS[list_name].dimensions)


def test_the_explorers_default_document_has_a_valid_dashboard_example() -> None:
    document = parse(DEFAULT_QUERY)
    assert validate(schema._schema, document) == []
    names = {getattr(d.name, "value", None) for d in document.definitions}
    assert "Dashboard" in names
    assert "dealsAggregate" in DEFAULT_QUERY and "timeSeries" in DEFAULT_QUERY


def _every_dimension() -> list[tuple[str, str]]:
    return [(name, d) for name, spec in aggregates.SPECS.items() for d in spec.dimensions]


@pytest.mark.parametrize(("list_name", "dimension"), _every_dimension())
async def test_every_dimension_of_every_list_groups_like_python(
    data: Data, as_role: dict[Role, support.GraphQLClient], list_name: str, dimension: str
) -> None:
    spec = aggregates.SPECS[list_name]
    kind = spec.dimensions[dimension].kind
    field_name = aggregates_camel(dimension)
    selection = f"{field_name} {{ id }}" if kind is aggregates.Kind.RELATION else field_name
    type_name = {"activities": "Activity", "companies": "Company"}.get(
        list_name, list_name[:-1].title()
    )
    query = f"""query($g: [{type_name}GroupBy!], $tz: String) {{
      {list_name}Aggregate(groupBy: $g, timeZone: $tz) {{ count groups {{ count {selection} }} }}
    }}"""
    group_by: dict[str, Any] = {"field": dimension.upper()}
    if kind in (aggregates.Kind.INSTANT, aggregates.Kind.DATE):
        group_by["interval"] = "MONTH"
    result = await as_role[Role.ADMIN](query, {"g": [group_by], "tz": "Europe/Berlin"})
    groups = result.ok()[f"{list_name}Aggregate"]["groups"]

    def key(row: dict[str, Any]) -> Any:
        if kind is aggregates.Kind.RELATION:
            type_of = spec.dimensions[dimension].type_name
            assert type_of is not None
            return gid(type_of, row[f"{dimension}_id"])
        if kind is aggregates.Kind.VALUE:
            return row[dimension].name
        return bucket(row[dimension], "MONTH", BERLIN)

    rows = live(getattr(data, list_name))
    expected = expected_groups(rows, [key])
    got = {
        node_id(g[field_name]) if kind is aggregates.Kind.RELATION else g[field_name]: g["count"]
        for g in groups
    }
    assert got == {k[0]: len(v) for k, v in expected.items()}
    assert len(got) > 1 or dimension == "pipeline"  # one pipeline in the data set


def aggregates_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_the_readmes_dashboard_example_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Aggregates", 1)[1].split("\n## ", 1)[0]
    example = section.split("```graphql", 1)[1].split("```", 1)[0]
    assert "Dashboard" in example
    assert validate(schema._schema, parse(example)) == []


async def test_each_tenant_counts_its_own_rows_only(
    data: Data, as_role: dict[Role, support.GraphQLClient], client: support.GraphQLClient
) -> None:
    query = "{ dealsAggregate { count } ordersAggregate { count } }"
    ours = (await as_role[Role.ADMIN](query)).ok()
    other = await client.logged_in(data.other_email, support.PASSWORD)
    theirs = (await other(query)).ok()
    assert ours["dealsAggregate"]["count"] == len(live(data.deals))
    assert theirs["dealsAggregate"]["count"] == data.other_workspace_deals > 0
    assert ours["ordersAggregate"]["count"] == len(live(data.orders))
