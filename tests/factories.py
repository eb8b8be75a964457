"""Rows the tests start from, made the way clients and services make them: through the
services (``sessionmaker`` and an actor, each in a transaction of its own) or through the
API (a signed-in ``GraphQLClient``). One definition each, shared by every test module."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Customer
from crm_graphql.services import customers
from crm_graphql.services.actor import Actor
from tests import support
from tests.documents import CREATE_CUSTOMER

Sessions = async_sessionmaker[AsyncSession]


async def make_customer(
    sessionmaker: Sessions, actor: Actor, name: str = "Ada", **data: Any
) -> Customer:
    """A customer created by ``customers.create_customer`` as ``actor`` (committed)."""
    async with sessionmaker() as session, session.begin():
        return await customers.create_customer(actor, session, {"name": name, **data})


async def create_customer(client: support.GraphQLClient, name: str = "Ada", **input: Any) -> str:
    """A customer created through ``createCustomer``: its global ID."""
    result = await client(CREATE_CUSTOMER, {"i": {"name": name, **input}})
    payload = result.ok()["createCustomer"]
    assert not payload["errors"], payload
    return str(payload["customer"]["id"])
