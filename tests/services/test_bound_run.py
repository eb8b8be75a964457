"""``storage.bound.run``: a statement built once, run on the session's own asyncpg
connection, behaves as ``session.execute`` would (decision 0038): in the session's
transaction, its rows converted, its writes recorded, a driver error raised as
SQLAlchemy's, a lost connection invalidated and the next session served."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.enums import Channel, ConversationStatus
from crm_graphql.models import Conversation, Product
from crm_graphql.services import changes, conversations, customers
from crm_graphql.services.actor import Actor
from crm_graphql.storage import bound

Sessions = async_sessionmaker[AsyncSession]

_STATUS = select(Conversation.id, Conversation.status, Conversation.channel).where(
    Conversation.id == bindparam("id")
)
# A product by id: twice the same id breaks its primary key.
_PRODUCT = changes.writing(
    insert(Product).values(
        id=bindparam("id"),
        workspace_id=bindparam("workspace"),
        sku=bindparam("sku"),
        name="Bound",
        price=1,
        currency="EUR",
        version=1,
    )
)


async def _conversation(sessionmaker: Sessions, agent: Actor) -> uuid.UUID:
    async with sessionmaker() as s, s.begin():
        customer = await customers.create_customer(agent, s, {"name": "Ed"})
        started = await conversations.start_conversation(
            agent, s, {"customer_id": customer.id, "channel": "email"}
        )
    return started.id


async def test_rows_are_converted_as_the_session_converts_them(
    sessionmaker: Sessions, agent: Actor
) -> None:
    conversation = await _conversation(sessionmaker, agent)
    async with sessionmaker() as s:
        (row,) = await bound.run(s, _STATUS, {"id": conversation})
        expected = (await s.execute(_STATUS, {"id": conversation})).one()
    assert (row.id, row.status, row.channel) == tuple(expected)
    assert row.status is ConversationStatus.OPEN and row.channel is Channel.EMAIL


async def test_it_runs_in_the_sessions_transaction_and_records_its_writes(
    sessionmaker: Sessions, agent: Actor
) -> None:
    """As the transaction's first statement too: a rollback takes it back."""
    sku = f"kept-{uuid.uuid4().hex[:8]}"
    async with sessionmaker() as s:
        async with s.begin():
            await bound.run(
                s, _PRODUCT, {"id": uuid.uuid4(), "workspace": agent.workspace_id, "sku": sku}
            )
            assert "products" in s.info.get(changes.WRITTEN_KEY, ())
            await s.rollback()
        found = await s.scalar(text("SELECT count(*) FROM products WHERE sku = :s"), {"s": sku})
    assert found == 0


async def test_a_broken_rule_is_sqlalchemys_integrity_error(
    sessionmaker: Sessions, agent: Actor
) -> None:
    """``mutate`` turns ``IntegrityError`` into a user error by its driver cause."""
    values = {"id": uuid.uuid4(), "workspace": agent.workspace_id, "sku": "twice"}
    async with sessionmaker() as s, s.begin():
        await bound.run(s, _PRODUCT, values)
    with pytest.raises(IntegrityError) as raised:
        async with sessionmaker() as s, s.begin():
            await bound.run(s, _PRODUCT, values)
    assert isinstance(raised.value.orig.__cause__, asyncpg.UniqueViolationError)


async def test_a_lost_connection_is_invalidated_and_the_next_session_works(
    sessionmaker: Sessions, agent: Actor
) -> None:
    conversation = await _conversation(sessionmaker, agent)
    async with sessionmaker() as s:
        pid = await s.scalar(text("SELECT pg_backend_pid()"))
        async with sessionmaker() as killer:
            await killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(DBAPIError) as raised:
            await bound.run(s, _STATUS, {"id": conversation})
        assert raised.value.connection_invalidated
    async with sessionmaker() as s:
        (row,) = await bound.run(s, _STATUS, {"id": conversation})
    assert row.id == conversation
