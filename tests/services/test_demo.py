"""Demo data: counts, consistency, working logins, reproducibility, first-start detection."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql import demo
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import (
    Activity,
    AuditLog,
    Company,
    Conversation,
    Customer,
    Deal,
    Event,
    Message,
    Order,
    OrderLine,
    Pipeline,
    Product,
    Role,
    Stage,
    User,
    Workspace,
)
from crm_graphql.services import auth
from crm_graphql.services.errors import InvalidCredentials
from crm_graphql.services.events import CHANGES_TOPIC
from tests import support

EXPECTED_COUNTS = {
    "users": 7,
    "companies": 40,
    "customers": 200,
    "pipelines": 2,
    "stages": 10,
    "deals": 150,
    "activities": 1000,
    "orders": 300,
    "products": 10,
    "conversations": 20,
}
MODELS: dict[str, Any] = {
    "users": User,
    "companies": Company,
    "customers": Customer,
    "pipelines": Pipeline,
    "stages": Stage,
    "deals": Deal,
    "activities": Activity,
    "orders": Order,
    "products": Product,
    "conversations": Conversation,
    "messages": Message,
}
TOKENS = auth.TokenConfig(secret_key="x" * 32)


def _unique() -> str:
    return uuid.uuid4().hex[:10]


async def _seed(sessionmaker: async_sessionmaker[AsyncSession], seed: int) -> demo.DemoSummary:
    """Seed a workspace of its own (user emails are server-wide unique: own domain)."""
    tag = _unique()
    async with sessionmaker() as session, session.begin():
        return await demo.seed_demo(
            session,
            seed=seed,
            workspace_name=f"Demo {tag}",
            email_domain=f"{tag}.demo.example",
        )


@pytest.fixture(scope="module")
async def seeded(sessionmaker: async_sessionmaker[AsyncSession]) -> demo.DemoSummary:
    return await _seed(sessionmaker, 42)


async def _counts(session: AsyncSession, workspace_id: uuid.UUID) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, model in MODELS.items():
        counts[name] = (
            await session.scalar(
                select(func.count()).select_from(model).where(model.workspace_id == workspace_id)
            )
            or 0
        )
    return counts


async def _snapshot(session: AsyncSession, workspace_id: uuid.UUID) -> dict[str, Any]:
    """The content of a demo workspace, without ids, hashes or the email domain of users."""
    ws = workspace_id
    customers = (
        await session.execute(
            select(
                Customer.name,
                Customer.email,
                Customer.phone,
                Customer.address,
                Customer.lifecycle_stage,
                Customer.tags,
                Customer.needs,
                Customer.preferences,
                Customer.custom_fields,
                Customer.created_at,
                Customer.last_activity_at,
                Company.name,
            )
            .outerjoin(Company, Company.id == Customer.company_id)
            .where(Customer.workspace_id == ws)
            .order_by(Customer.created_at, Customer.name, Customer.email)
        )
    ).all()
    deals = (
        await session.execute(
            select(Deal.title, Deal.amount, Deal.currency, Deal.status, Stage.name, Deal.closed_at)
            .join(Stage, Stage.id == Deal.stage_id)
            .where(Deal.workspace_id == ws)
            .order_by(Deal.created_at, Deal.title, Deal.amount)
        )
    ).all()
    orders = (
        await session.execute(
            select(Order.number, Order.amount, Order.currency, Order.status, Order.items)
            .where(Order.workspace_id == ws)
            .order_by(Order.number)
        )
    ).all()
    activities = (
        await session.execute(
            select(Activity.type, Activity.subject, Activity.occurred_at, Activity.due_at)
            .where(Activity.workspace_id == ws)
            .order_by(Activity.occurred_at, Activity.subject, Activity.type)
        )
    ).all()
    messages = (
        await session.execute(
            select(Conversation.subject, Conversation.channel, Message.seq, Message.body)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.workspace_id == ws)
            .order_by(Conversation.created_at, Message.seq)
        )
    ).all()
    users = (
        await session.execute(
            select(func.split_part(User.email, "@", 1), User.name, User.role)
            .where(User.workspace_id == ws)
            .order_by(User.created_at)
        )
    ).all()
    return {
        "customers": customers,
        "deals": deals,
        "orders": orders,
        "activities": activities,
        "messages": messages,
        "users": users,
    }


async def test_demo_orders_have_lines_linked_to_the_catalogue(
    session: AsyncSession, seeded: demo.DemoSummary
) -> None:
    ws = seeded.workspace_id
    items = await session.scalar(
        select(func.sum(func.jsonb_array_length(Order.items))).where(Order.workspace_id == ws)
    )
    lines = await session.scalar(
        select(func.count()).select_from(OrderLine).where(OrderLine.workspace_id == ws)
    )
    linked = await session.scalar(
        select(func.count())
        .select_from(OrderLine)
        .where(OrderLine.workspace_id == ws, OrderLine.product_id.is_not(None))
    )
    assert items and lines == items == linked


async def test_counts_match_summary(session: AsyncSession, seeded: demo.DemoSummary) -> None:
    counts = await _counts(session, seeded.workspace_id)
    assert counts == seeded.counts
    for name, expected in EXPECTED_COUNTS.items():
        assert counts[name] == expected, name
    assert counts["messages"] >= 3 * EXPECTED_COUNTS["conversations"]
    assert counts["messages"] <= 15 * EXPECTED_COUNTS["conversations"]


async def test_every_role_has_a_user_and_demo_logins_are_listed(
    session: AsyncSession, seeded: demo.DemoSummary
) -> None:
    roles = (
        await session.scalars(select(User.role).where(User.workspace_id == seeded.workspace_id))
    ).all()
    assert set(roles) == set(Role)
    assert roles.count(Role.AGENT) == 4
    assert {r for _, _, r in demo.DEMO_LOGINS} == set(Role)
    assert ("admin@demo.example", "demo-admin", Role.ADMIN) in demo.DEMO_LOGINS
    assert ("manager@demo.example", "demo-manager", Role.MANAGER) in demo.DEMO_LOGINS
    assert ("agent@demo.example", "demo-agent", Role.AGENT) in demo.DEMO_LOGINS
    assert ("agent4@demo.example", "demo-agent", Role.AGENT) in demo.DEMO_LOGINS
    assert ("viewer@demo.example", "demo-viewer", Role.VIEWER) in demo.DEMO_LOGINS
    emails = (
        await session.scalars(select(User.email).where(User.workspace_id == seeded.workspace_id))
    ).all()
    assert sorted(emails) == sorted(email for email, _, _ in seeded.logins)


async def test_demo_logins_work(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: demo.DemoSummary
) -> None:
    async with sessionmaker() as session:
        for email, password, role in seeded.logins:
            pair = await auth.login(session, TOKENS, email=email, password=password)
            assert pair.access_token and pair.refresh_token
            assert pair.user.role == role
            assert pair.user.workspace_id == seeded.workspace_id
        with pytest.raises(InvalidCredentials):
            await auth.login(session, TOKENS, email=seeded.logins[0][0], password="demo-wrong")
        await session.rollback()  # leave no login audit rows behind


async def test_no_audit_rows_or_events_for_seed_data(
    session: AsyncSession, seeded: demo.DemoSummary
) -> None:
    """Seeding is not a flood of mutations: no audit rows, and no events but the change
    feed's creations (a partner syncing the workspace from its start reads every row)."""
    audited = await session.scalar(
        select(func.count()).where(AuditLog.workspace_id == seeded.workspace_id)
    )
    assert audited == 0
    kinds = await session.execute(
        select(Event.topic, Event.type)
        .where(Event.workspace_id == seeded.workspace_id)
        .group_by(Event.topic, Event.type)
    )
    assert set(kinds.all()) <= {(CHANGES_TOPIC, "change.created"), (CHANGES_TOPIC, "change.updated")}


async def test_data_is_consistent(session: AsyncSession, seeded: demo.DemoSummary) -> None:
    ws = {"ws": seeded.workspace_id}

    async def one(sql: str) -> Any:
        return (await session.execute(text(sql), ws)).scalar_one()

    # customers: ~80% with a company, unique emails, realistic address shape
    with_company = await one(
        "SELECT count(*) FROM customers WHERE workspace_id = :ws AND company_id IS NOT NULL"
    )
    assert 140 <= with_company <= 180
    assert (
        await one("SELECT count(DISTINCT lower(email)) FROM customers WHERE workspace_id = :ws")
        == 200
    )
    keys = await one(
        "SELECT array_agg(DISTINCT k ORDER BY k) FROM customers, jsonb_object_keys(address) k"
        " WHERE workspace_id = :ws"
    )
    assert keys == ["city", "country", "postalCode", "region", "street"]
    assert (
        await one(
            "SELECT count(*) FROM customers WHERE workspace_id = :ws"
            " AND jsonb_typeof(address) IS DISTINCT FROM 'object' AND address IS NOT NULL"
        )
        == 0
    )
    assert (
        await one("SELECT count(DISTINCT lifecycle_stage) FROM customers WHERE workspace_id = :ws")
        >= 5
    )
    assert await one("SELECT count(DISTINCT owner_id) FROM customers WHERE workspace_id = :ws") >= 3

    # last_activity_at is the latest activity's occurred_at
    assert (
        await one(
            """SELECT count(*) FROM customers c WHERE c.workspace_id = :ws AND
           c.last_activity_at IS DISTINCT FROM (
             SELECT max(a.occurred_at) FROM activities a
             WHERE a.workspace_id = :ws AND a.customer_id = c.id)"""
        )
        == 0
    )
    # activities: all five kinds, every one on a customer, some on deals, tasks with dues
    kinds = await one(
        "SELECT array_agg(DISTINCT type ORDER BY type) FROM activities WHERE workspace_id = :ws"
    )
    assert kinds == ["call", "email", "meeting", "note", "task"]
    assert (
        await one(
            "SELECT count(*) FROM activities WHERE workspace_id = :ws AND customer_id IS NULL"
        )
        == 0
    )
    assert (
        await one(
            "SELECT count(*) FROM activities WHERE workspace_id = :ws AND deal_id IS NOT NULL"
        )
        > 100
    )
    assert (
        await one(
            "SELECT count(*) FROM activities WHERE workspace_id = :ws AND type = 'task'"
            " AND due_at IS NULL"
        )
        == 0
    )
    completed = await one(
        "SELECT count(*) FILTER (WHERE completed_at IS NOT NULL) FROM activities"
        " WHERE workspace_id = :ws AND type = 'task'"
    )
    assert completed > 0
    assert (
        await one(
            "SELECT count(*) FROM activities WHERE workspace_id = :ws AND type <> 'task'"
            " AND (due_at IS NOT NULL OR completed_at IS NOT NULL)"
        )
        == 0
    )
    # activities on a deal are about that deal's customer
    assert (
        await one(
            """SELECT count(*) FROM activities a JOIN deals d ON d.id = a.deal_id
           WHERE a.workspace_id = :ws AND d.customer_id IS DISTINCT FROM a.customer_id"""
        )
        == 0
    )

    # pipelines and stages
    stages = (
        await session.execute(
            text(
                """SELECT p.name, count(s.id) FROM pipelines p JOIN stages s
                   ON s.pipeline_id = p.id WHERE p.workspace_id = :ws
                   GROUP BY p.name ORDER BY p.name"""
            ),
            ws,
        )
    ).all()
    assert [tuple(r) for r in stages] == [("Renewals", 4), ("Sales", 6)]

    # conversations: service times as sending the messages would have set them (the
    # customer's first message, the first agent answer after it, closed at the last one)
    assert (
        await one(
            """SELECT count(*) FROM conversations c WHERE c.workspace_id = :ws AND (
             c.first_customer_message_at IS DISTINCT FROM (SELECT min(created_at) FROM messages m
               WHERE m.conversation_id = c.id AND m.author_type = 'customer')
             OR c.first_response_at IS DISTINCT FROM (SELECT min(created_at) FROM messages m
               WHERE m.conversation_id = c.id AND m.author_type = 'agent')
             OR (c.status = 'closed') <> (c.closed_at IS NOT NULL)
             OR c.closed_at IS DISTINCT FROM CASE WHEN c.status = 'closed'
               THEN c.last_message_at END)"""
        )
        == 0
    )
    assert await one(
        "SELECT count(*) FROM conversations WHERE workspace_id = :ws AND first_response_at IS NOT NULL"
    )
    # CSAT: some closed conversations rated after closing, none of the others
    assert await one(
        "SELECT count(*) FROM conversations WHERE workspace_id = :ws AND rating_score IS NOT NULL"
    )
    assert (
        await one(
            """SELECT count(*) FROM conversations WHERE workspace_id = :ws
             AND ((rating_score IS NULL) <> (rated_at IS NULL)
               OR (rated_at IS NOT NULL AND (closed_at IS NULL OR rated_at <= closed_at)))"""
        )
        == 0
    )

    # deals: status agrees with stage and closed_at; money has 2 decimals
    assert (
        await one(
            """SELECT count(*) FROM deals d JOIN stages s ON s.id = d.stage_id
           WHERE d.workspace_id = :ws AND NOT (
             (d.status = 'open' AND d.closed_at IS NULL AND s.probability NOT IN (0, 100))
             OR (d.status = 'won' AND d.closed_at IS NOT NULL AND s.probability = 100)
             OR (d.status = 'lost' AND d.closed_at IS NOT NULL AND s.probability = 0))"""
        )
        == 0
    )
    assert (
        await one(
            "SELECT count(*) FROM deals d JOIN stages s ON s.id = d.stage_id"
            " WHERE d.workspace_id = :ws AND s.pipeline_id <> d.pipeline_id"
        )
        == 0
    )
    statuses = await one(
        "SELECT array_agg(DISTINCT status ORDER BY status) FROM deals WHERE workspace_id = :ws"
    )
    assert statuses == ["lost", "open", "won"]
    euro_or_dollar = await one(
        "SELECT count(*) FROM deals WHERE workspace_id = :ws AND currency IN ('EUR', 'USD')"
    )
    assert euro_or_dollar >= 150 * 0.6
    amounts = (
        await session.scalars(select(Deal.amount).where(Deal.workspace_id == seeded.workspace_id))
    ).all()
    assert all(
        isinstance(a, Decimal) and a > 0 and a == a.quantize(Decimal("0.01")) for a in amounts
    )

    # orders: unique numbers, amount is the sum of the items
    assert await one("SELECT count(DISTINCT number) FROM orders WHERE workspace_id = :ws") == 300
    assert (
        await one(
            """SELECT count(*) FROM orders o WHERE o.workspace_id = :ws AND o.amount <> (
             SELECT sum((i->>'quantity')::int * (i->>'unitPrice')::numeric)
             FROM jsonb_array_elements(o.items) i)"""
        )
        == 0
    )
    item_keys = await one(
        "SELECT array_agg(DISTINCT k ORDER BY k) FROM orders, jsonb_array_elements(items) i,"
        " jsonb_object_keys(i) k WHERE workspace_id = :ws"
    )
    assert item_keys == ["name", "quantity", "sku", "unitPrice"]

    # conversations: all channels, messages numbered 1..n, alternating, last_* consistent
    assert (
        await one("SELECT count(DISTINCT channel) FROM conversations WHERE workspace_id = :ws") == 4
    )
    assert (
        await one(
            "SELECT count(*) FROM conversations WHERE workspace_id = :ws"
            " AND assignee_id IS NOT NULL"
        )
        > 0
    )
    assert (
        await one(
            """SELECT count(*) FROM conversations c WHERE c.workspace_id = :ws AND
           (c.last_message_seq, c.last_message_at, c.last_message_seq) IS DISTINCT FROM (
             SELECT (max(m.seq), max(m.created_at), count(*)::int) FROM messages m
             WHERE m.conversation_id = c.id)"""
        )
        == 0
    )
    assert (
        await one(
            "SELECT count(*) FROM conversations WHERE workspace_id = :ws"
            " AND last_message_seq NOT BETWEEN 3 AND 15"
        )
        == 0
    )
    assert (
        await one(
            """SELECT count(*) FROM messages WHERE workspace_id = :ws AND (
             client_message_id IS NOT NULL
             OR (seq % 2 = 1) <> (author_type = 'customer')
             OR (author_type = 'customer') <> (author_user_id IS NULL))"""
        )
        == 0
    )
    assert (
        await one(
            """SELECT count(*) FROM messages a JOIN messages b
           ON b.conversation_id = a.conversation_id AND b.seq = a.seq + 1
           WHERE a.workspace_id = :ws AND b.created_at <= a.created_at"""
        )
        == 0
    )

    # everything happened in the 18 months before the demo's base date
    for table, column in (
        ("companies", "created_at"),
        ("customers", "created_at"),
        ("deals", "created_at"),
        ("activities", "occurred_at"),
        ("orders", "placed_at"),
        ("messages", "created_at"),
    ):
        low, high = (
            await session.execute(
                text(f"SELECT min({column}), max({column}) FROM {table} WHERE workspace_id = :ws"),
                ws,
            )
        ).one()
        assert demo.BASE_TIME - demo.HISTORY <= low <= high <= demo.BASE_TIME, table
        assert low.tzinfo is not None
        # spread over the period, not bunched up
        assert high - low > demo.HISTORY / 3 or table == "messages", table


async def test_a_demo_loaded_now_ends_today_with_the_same_data_shifted(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: demo.DemoSummary
) -> None:
    """The CLI's demo (``make run``) is anchored on the day it is loaded: its history is
    the 18 months before that day, so the console's "last 12 months" are full; the same
    seed gives the same records, each moment shifted by the same distance."""
    today = demo.today()
    assert today.tzinfo is not None and today <= datetime.now(UTC) < today + timedelta(days=1)
    tag = _unique()
    async with sessionmaker() as session, session.begin():
        shifted = await demo.seed_demo(
            session, workspace_name=f"Demo {tag}", email_domain=f"{tag}.demo.example", now=today
        )
    query = text(
        "SELECT name, created_at FROM customers WHERE workspace_id = :ws ORDER BY created_at, name"
    )
    activity_bounds = text(
        "SELECT min(occurred_at), max(occurred_at) FROM activities WHERE workspace_id = :ws"
    )
    async with sessionmaker() as session:
        fixed = (await session.execute(query, {"ws": seeded.workspace_id})).all()
        moved = (await session.execute(query, {"ws": shifted.workspace_id})).all()
        low, high = (await session.execute(activity_bounds, {"ws": shifted.workspace_id})).one()
    assert [name for name, _ in moved] == [name for name, _ in fixed]
    distance = today - demo.BASE_TIME
    assert all(m - f == distance for (_, m), (_, f) in zip(moved, fixed, strict=True))
    assert today - demo.HISTORY <= low <= high <= today
    assert high > today - timedelta(days=7)  # the latest activity is days old, not months


async def test_same_seed_gives_the_same_data(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: demo.DemoSummary
) -> None:
    again = await _seed(sessionmaker, 42)
    assert again.workspace_id != seeded.workspace_id
    assert again.counts == seeded.counts
    async with sessionmaker() as session:
        first = await _snapshot(session, seeded.workspace_id)
        second = await _snapshot(session, again.workspace_id)
    assert len(first["customers"]) == 200
    assert first["customers"] == second["customers"]
    assert [(d.title, d.amount) for d in first["deals"]] == [
        (d.title, d.amount) for d in second["deals"]
    ]
    assert first == second


async def test_another_seed_gives_other_data(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: demo.DemoSummary
) -> None:
    other = await _seed(sessionmaker, 7)
    async with sessionmaker() as session:
        first = await _snapshot(session, seeded.workspace_id)
        second = await _snapshot(session, other.workspace_id)
    assert [(c.name, c.email) for c in first["customers"]] != [
        (c.name, c.email) for c in second["customers"]
    ]
    assert [d.amount for d in first["deals"]] != [d.amount for d in second["deals"]]
    # the logins do not depend on the seed
    assert first["users"] == second["users"]


@pytest.fixture
def empty_database_url(server_database_url: str) -> Iterator[str]:
    """A brand-new migrated database (the shared test database is never empty)."""
    name = f"crm_test_demo_{secrets.token_hex(4)}"
    support.create_database(server_database_url, name)
    try:
        url = make_url(server_database_url).set(database=name).render_as_string(hide_password=False)
        support.migrate(url)
        yield url
    finally:
        support.drop_database(server_database_url, name)


@pytest.fixture
async def empty_sessionmaker(
    empty_database_url: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(empty_database_url, pool_size=1)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def test_fresh_database_is_empty_then_seeded_with_the_default_logins(
    empty_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with empty_sessionmaker() as session:
        assert await demo.database_is_empty(session) is True
    async with empty_sessionmaker() as session, session.begin():
        summary = await demo.seed_demo(session)
    assert summary.workspace_name == "Demo"
    assert summary.logins == demo.DEMO_LOGINS
    async with empty_sessionmaker() as session:
        assert await demo.database_is_empty(session) is False
        assert await session.scalar(select(func.count()).select_from(Workspace)) == 1
        for name, model in MODELS.items():
            total = await session.scalar(select(func.count()).select_from(model))
            assert total == summary.counts[name], name
        for email, password, role in demo.DEMO_LOGINS:
            pair = await auth.login(session, TOKENS, email=email, password=password)
            assert pair.user.role == role
        await session.rollback()
