"""Customer rules: merging moves everything, failures leave nothing behind, audit rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_graphql.models import (
    Activity,
    ActivityType,
    AuditLog,
    Channel,
    Conversation,
    Customer,
    Deal,
    Order,
)
from crm_graphql.services import activities, customers, deals, orders
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid, NotFound


async def _customer_with_history(actor: Actor, session: Any, name: str, **extra: Any) -> Customer:
    customer = await customers.create_customer(actor, session, {"name": name, **extra})
    pipeline = await deals.create_pipeline(
        actor, session, {"name": f"P {name}", "stages": [{"name": "New", "probability": 10}]}
    )
    await deals.create_deal(
        actor,
        session,
        {
            "title": f"Deal {name}",
            "pipeline_id": pipeline.id,
            "customer_id": customer.id,
            "currency": "EUR",
            "amount": Decimal("10"),
        },
    )
    await activities.create_activity(
        actor,
        session,
        {"type": ActivityType.NOTE, "subject": f"Note {name}", "customer_id": customer.id},
    )
    await orders.create_order(
        actor, session, {"customer_id": customer.id, "amount": Decimal("5.50"), "currency": "EUR"}
    )
    session.add(
        Conversation(workspace_id=actor.workspace_id, customer_id=customer.id, channel=Channel.CHAT)
    )
    await session.flush()
    return customer


async def _owned(session: Any, model: Any, customer_id: Any) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(model).where(model.customer_id == customer_id)
        )
    )


async def test_merge_moves_history_to_survivor_and_archives_duplicates(
    sessionmaker: Any, admin: Actor
) -> None:
    async with sessionmaker() as session, session.begin():
        survivor = await _customer_with_history(admin, session, "Survivor", tags=["a"])
        dup = await _customer_with_history(
            admin,
            session,
            "Duplicate",
            email="dup@example.com",
            phone="+1 555 0100",
            tags=["b", "a"],
        )
    async with sessionmaker() as session, session.begin():
        merged = await customers.merge_customers(admin, session, survivor.id, [dup.id])
    async with sessionmaker() as session:
        for model in (Deal, Activity, Order, Conversation):
            assert await _owned(session, model, survivor.id) == 2, model
            assert await _owned(session, model, dup.id) == 0, model
        gone = await session.get(Customer, dup.id)
        assert gone.merged_into_id == survivor.id and gone.archived_at is not None
        assert merged.email == "dup@example.com" and merged.phone == "+15550100"
        assert merged.tags == ["a", "b"]
        actions = (
            await session.scalars(
                select(AuditLog.entity_id).where(
                    AuditLog.action == "mergeCustomers", AuditLog.workspace_id == admin.workspace_id
                )
            )
        ).all()
        assert set(actions) == {survivor.id, dup.id}


async def test_failed_merge_changes_nothing(sessionmaker: Any, admin: Actor) -> None:
    async with sessionmaker() as session, session.begin():
        survivor = await _customer_with_history(admin, session, "Keep")
        dup = await _customer_with_history(admin, session, "Dup")
    with pytest.raises(NotFound):
        async with sessionmaker() as session, session.begin():
            import uuid

            await customers.merge_customers(admin, session, survivor.id, [dup.id, uuid.uuid4()])
    async with sessionmaker() as session:
        assert await _owned(session, Deal, dup.id) == 1
        assert (await session.get(Customer, dup.id)).archived_at is None
    with pytest.raises(Invalid):
        async with sessionmaker() as session, session.begin():
            await customers.merge_customers(admin, session, survivor.id, [survivor.id])


async def test_every_customer_mutation_writes_one_audit_row(
    manager: Actor, sessionmaker: Any, agent: Actor
) -> None:
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(
            agent, session, {"name": "Audited", "email": "a@example.com"}
        )
    async with sessionmaker() as session, session.begin():
        await customers.update_customer(
            agent, session, customer.id, {"name": "Audited 2"}, expected_version=1
        )
    async with sessionmaker() as session, session.begin():
        await customers.archive_customer(manager, session, customer.id)
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.entity_id == customer.id)
                .order_by(AuditLog.created_at, AuditLog.id)
            )
        ).all()
    assert [r.action for r in rows] == ["createCustomer", "updateCustomer", "archiveCustomer"]
    assert rows[1].changes["name"] == {"before": "Audited", "after": "Audited 2"}
    assert rows[0].actor_user_id == agent.user_id
    assert "archived_at" in rows[2].changes
