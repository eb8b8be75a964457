"""Order rules: numbering, validation, tenant isolation, versions, permissions, archive."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import AuditLog, Customer, Order, OrderStatus
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Conflict, Duplicate, Forbidden, Invalid, NotFound
from crm_graphql.services.orders import ORDERS, archive_order, create_order, update_order
from crm_graphql.storage import querying
from tests.factories import make_customer

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def customer(sessionmaker: Sessions, agent: Actor) -> Customer:
    return await make_customer(sessionmaker, agent)


async def make_order(
    sessionmaker: Sessions, actor: Actor, customer: Customer, **data: Any
) -> Order:
    async with sessionmaker() as s, s.begin():
        return await create_order(
            actor,
            s,
            {"customer_id": customer.id, "amount": "19.90", "currency": "eur", **data},
        )


async def test_create_order_fills_defaults(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    before = datetime.now(UTC)
    order = await make_order(sessionmaker, agent, customer, items=[{"sku": "A-1", "qty": 2}])
    assert order.amount == Decimal("19.90")
    assert order.currency == "EUR"
    assert order.status is OrderStatus.PAID
    assert order.items == [{"sku": "A-1", "qty": 2}]
    assert order.placed_at.tzinfo is not None
    assert before <= order.placed_at <= datetime.now(UTC)
    async with sessionmaker() as s:
        actions = (
            await s.scalars(select(AuditLog.action).where(AuditLog.entity_id == order.id))
        ).all()
    assert actions == ["createOrder"]


async def test_generated_order_numbers_count_up_per_workspace(
    sessionmaker: Sessions, agent: Actor, customer: Customer, outsider: Actor
) -> None:
    first = await make_order(sessionmaker, agent, customer)
    second = await make_order(sessionmaker, agent, customer)
    foreign_customer = await make_customer(sessionmaker, outsider)
    foreign = await make_order(sessionmaker, outsider, foreign_customer)
    assert (first.number, second.number) == ("ORD-00001", "ORD-00002")
    assert foreign.number == "ORD-00001"


async def test_generated_order_number_follows_the_highest_given_one(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    await make_order(sessionmaker, agent, customer, number="ORD-41")
    await make_order(sessionmaker, agent, customer, number="SHOP-99999")
    generated = await make_order(sessionmaker, agent, customer)
    assert generated.number == "ORD-00042"


async def test_concurrent_orders_get_distinct_generated_numbers(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    async def one() -> str:
        async with sessionmaker() as s, s.begin():
            order = await create_order(
                agent, s, {"customer_id": customer.id, "amount": 1, "currency": "EUR"}
            )
            await asyncio.sleep(0.05)  # hold the transaction open while the other one waits
            return order.number

    numbers = await asyncio.gather(*(one() for _ in range(4)))
    assert sorted(numbers) == ["ORD-00001", "ORD-00002", "ORD-00003", "ORD-00004"]


async def test_create_order_with_a_taken_number_is_a_duplicate(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    await make_order(sessionmaker, agent, customer, number="INV-7")
    with pytest.raises(Duplicate) as error:
        await make_order(sessionmaker, agent, customer, number=" INV-7 ")
    assert error.value.field == "number"
    assert error.value.code == "DUPLICATE"


async def test_changing_an_order_number_to_a_taken_one_is_a_duplicate(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    await make_order(sessionmaker, agent, customer, number="INV-1")
    other = await make_order(sessionmaker, agent, customer, number="INV-2")
    with pytest.raises(Duplicate) as error:
        async with sessionmaker() as s, s.begin():
            await update_order(agent, s, other.id, {"number": "INV-1"})
    assert error.value.field == "number"
    async with sessionmaker() as s, s.begin():  # keeping its own number is fine
        same = await update_order(agent, s, other.id, {"number": "INV-2", "amount": 5})
    assert same.number == "INV-2"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"amount": "-1"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"amount": None}, "amount"),
        ({"currency": "euro"}, "currency"),
        ({"currency": None}, "currency"),
        ({"status": "shipped"}, "status"),
        ({"placed_at": datetime(2025, 1, 1, 12, 0)}, "placedAt"),
        ({"placed_at": "2025-01-01"}, "placedAt"),
        ({"items": {"sku": "A-1"}}, "items"),
        ({"items": [{"sku": "A-1"}, "A-2"]}, "items"),
        ({"number": "  "}, "number"),
        ({"customer_id": None}, "customerId"),
    ],
)
async def test_create_order_rejects_invalid_input_naming_the_field(
    sessionmaker: Sessions, agent: Actor, customer: Customer, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(Invalid) as error:
        await make_order(sessionmaker, agent, customer, **data)
    assert error.value.field == field


async def test_placed_at_is_stored_in_utc(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    local = datetime(2025, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    order = await make_order(sessionmaker, agent, customer, placed_at=local)
    async with sessionmaker() as s:
        stored = await s.scalar(select(Order.placed_at).where(Order.id == order.id))
    assert stored == local
    assert order.placed_at.utcoffset() == timedelta(0)


async def test_order_for_a_customer_of_another_workspace_is_not_found(
    sessionmaker: Sessions, agent: Actor, outsider: Actor
) -> None:
    foreign_customer = await make_customer(sessionmaker, outsider)
    with pytest.raises(NotFound) as error:
        await make_order(sessionmaker, agent, foreign_customer)
    assert error.value.field == "customerId"
    foreign_order = await make_order(sessionmaker, outsider, foreign_customer)
    with pytest.raises(NotFound):
        async with sessionmaker() as s, s.begin():
            await update_order(agent, s, foreign_order.id, {"amount": 1})


async def test_update_order_with_stale_version_conflicts(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    order = await make_order(sessionmaker, agent, customer)
    async with sessionmaker() as s, s.begin():
        updated = await update_order(
            agent, s, order.id, {"status": OrderStatus.REFUNDED}, expected_version=1
        )
    assert (updated.status, updated.version) == (OrderStatus.REFUNDED, 2)
    with pytest.raises(Conflict):
        async with sessionmaker() as s, s.begin():
            await update_order(agent, s, order.id, {"status": "paid"}, expected_version=1)


async def test_viewer_cannot_write_orders(
    sessionmaker: Sessions, agent: Actor, viewer: Actor, customer: Customer
) -> None:
    order = await make_order(sessionmaker, agent, customer)
    with pytest.raises(Forbidden):
        await make_order(sessionmaker, viewer, customer)
    with pytest.raises(Forbidden):
        async with sessionmaker() as s, s.begin():
            await update_order(viewer, s, order.id, {"amount": 1})
    with pytest.raises(Forbidden):
        async with sessionmaker() as s, s.begin():
            await archive_order(viewer, s, order.id)


async def test_archive_order_hides_it_from_list_page(
    manager: Actor, sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    kept = await make_order(sessionmaker, agent, customer)
    gone = await make_order(sessionmaker, agent, customer)
    async with sessionmaker() as s, s.begin():
        await archive_order(manager, s, gone.id, expected_version=1)
    async with sessionmaker() as s:
        page = await querying.list_page(agent, s, ORDERS, page=querying.PageRequest())
        by_customer = await querying.pages_by_parent(
            agent, s, ORDERS, "customer_id", [customer.id], page=querying.PageRequest()
        )
    assert [o.id for o in page.items] == [kept.id]
    assert [o.id for o in by_customer[customer.id].items] == [kept.id]


async def test_orders_list_newest_placed_first(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    now = datetime.now(UTC)
    old = await make_order(sessionmaker, agent, customer, placed_at=now - timedelta(days=3))
    new = await make_order(sessionmaker, agent, customer, placed_at=now - timedelta(days=1))
    mid = await make_order(sessionmaker, agent, customer, placed_at=now - timedelta(days=2))
    async with sessionmaker() as s:
        page = await querying.list_page(agent, s, ORDERS, page=querying.PageRequest())
        cheap_first = await querying.list_page(
            agent,
            s,
            ORDERS,
            filter={"amount": {"gte": Decimal("1")}},
            order=[("number", False)],
            page=querying.PageRequest(),
        )
    assert [o.id for o in page.items] == [new.id, mid.id, old.id]
    assert [o.number for o in cheap_first.items] == ["ORD-00001", "ORD-00002", "ORD-00003"]
