"""Loading by id on plain asyncpg connections (renderings of live events) gives the rows,
values and refusals of the ORM's loading (``records.get_many``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Activity, Company, Customer, Deal, Pipeline, Stage, User
from crm_graphql.services import activities, api_keys, companies, customers, deals
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Forbidden
from crm_graphql.storage import records
from tests import support

Sessions = async_sessionmaker[AsyncSession]


def values(row: Any) -> list[Any]:
    return [getattr(row, attr.key) for attr in inspect(type(row)).column_attrs]


async def both(
    sessionmaker: Sessions, actor: Actor, model: type[Any], ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    async with sessionmaker() as s:
        loaded = await records.get_many(actor, s, model, ids)
    async with support.log_reader(sessionmaker) as conn:
        plain = await records.fetch_many(actor, conn, model, ids)
    assert {i: values(r) for i, r in plain.items()} == {i: values(r) for i, r in loaded.items()}
    assert all(type(r) is model for r in plain.values())
    return set(plain)


async def test_plain_loading_matches_the_orm(
    sessionmaker: Sessions, admin: Actor, manager: Actor, agent: Actor
) -> None:
    async with sessionmaker() as s, s.begin():
        company = await companies.create_company(manager, s, {"name": "Initech"})
        customer = await customers.create_customer(
            manager,
            s,
            {
                "name": "Ada",
                "email": "ada@example.com",
                "company_id": company.id,
                "address": {"city": "Zürich", "street": "Bahnhofstrasse 1"},
                "preferences": {"channel": "email", "big": 18446744073709551615, "x": [1.5]},
                "custom_fields": {"tier": "gold"},
                "tags": ["vip", "beta"],
            },
        )
        pipeline = await deals.create_pipeline(
            manager, s, {"name": "Sales", "stages": [{"name": "New"}, {"name": "Won"}]}
        )
        deal = await deals.create_deal(
            manager,
            s,
            {
                "title": "Big",
                "pipeline_id": pipeline.id,
                "currency": "EUR",
                "customer_id": customer.id,
            },
        )
        activity = await activities.create_activity(
            agent,
            s,
            {"type": "call", "subject": "Called", "customer_id": customer.id},
        )
        # Beyond 64 bits (refused on write, stored by other means): read as the same float.
        await s.execute(
            text(
                "UPDATE customers SET preferences = preferences || "
                """'{"huge": 12345678901234567890123, "beyond": 1e400}' WHERE id = :id"""
            ),
            {"id": customer.id},
        )
    async with sessionmaker() as s:
        stage_ids = list(await s.scalars(select(Stage.id).where(Stage.pipeline_id == pipeline.id)))
    unknown = uuid.uuid4()
    assert await both(sessionmaker, agent, Customer, [customer.id, unknown]) == {customer.id}
    assert await both(sessionmaker, agent, Company, [company.id]) == {company.id}
    assert await both(sessionmaker, agent, Deal, [deal.id]) == {deal.id}
    assert await both(sessionmaker, agent, Pipeline, [pipeline.id]) == {pipeline.id}
    assert await both(sessionmaker, agent, Activity, [activity.id]) == {activity.id}
    assert await both(sessionmaker, admin, User, [agent.user_id, manager.user_id]) == {  # type: ignore[list-item]
        agent.user_id,
        manager.user_id,
    }
    assert len(stage_ids) == 2
    assert await both(sessionmaker, agent, Stage, stage_ids) == set(stage_ids)


async def test_plain_loading_keeps_workspaces_apart_and_refuses_like_the_orm(
    sessionmaker: Sessions, admin: Actor, manager: Actor, outsider: Actor
) -> None:
    async with sessionmaker() as s, s.begin():
        customer = await customers.create_customer(manager, s, {"name": "Ada"})
    assert await both(sessionmaker, outsider, Customer, [customer.id]) == set()
    async with sessionmaker() as s, s.begin():
        _, token = await api_keys.create_api_key(
            admin, s, name="Deals only", scopes=[api_keys.DEALS_READ]
        )
    async with sessionmaker() as s, s.begin():
        key = await api_keys.authenticate_api_key(s, token)
    async with support.log_reader(sessionmaker) as conn:
        with pytest.raises(Forbidden):
            await records.fetch_many(key, conn, Customer, [customer.id])
    async with sessionmaker() as s:
        with pytest.raises(Forbidden):
            await records.get_many(key, s, Customer, [customer.id])
