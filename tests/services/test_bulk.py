"""Bulk changes of customers (issue 17, point 2): the preview counts and shows the set of
a filter; a run goes over it batch by batch, changing each customer through the customer
service in a savepoint of its own, audited per record, failures reported and kept apart."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.enums import LifecycleStage
from crm_graphql.models import AuditLog, Customer, Role, User
from crm_graphql.services import bulk, customers
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Forbidden, Invalid, NotFound


async def _people(
    sessionmaker: async_sessionmaker[AsyncSession], actor: Actor, n: int, tag: str
) -> list[uuid.UUID]:
    async with sessionmaker() as session, session.begin():
        made = [
            await customers.create_customer(actor, session, {"name": f"P{i}", "tags": [tag]})
            for i in range(n)
        ]
        await customers.create_customer(actor, session, {"name": "Outside", "tags": ["other"]})
    return [c.id for c in made]


async def test_preview_counts_the_set_and_shows_its_newest(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = await _people(sessionmaker, agent, 5, tag)
    change = bulk.BulkChange.of(add_tags=["reviewed"])
    async with sessionmaker() as session:
        found = await bulk.preview(agent, session, {"tags": {"any_of": [tag]}}, change, sample=3)
    assert found.count == 5
    assert [c.id for c in found.sample] == list(reversed(ids))[:3]


async def test_a_run_changes_every_member_in_batches_audited_per_record(
    sessionmaker: async_sessionmaker[AsyncSession],
    manager: Actor,
    users: dict[Role, User],
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = await _people(sessionmaker, manager, 7, tag)
    owner = users[Role.AGENT].id
    change = bulk.BulkChange.of(
        add_tags=["reviewed"],
        remove_tags=[tag],
        owner_id=owner,
        lifecycle_stage=LifecycleStage.QUALIFIED,
    )
    seen: list[int] = []

    async def progress(outcome: bulk.BulkOutcome) -> None:
        seen.append(outcome.done)

    # The filter is the tag the change removes: walking by id still reaches every member.
    outcome = await bulk.run(
        manager, sessionmaker, {"tags": {"any_of": [tag]}}, change, batch_size=3,
        on_progress=progress,
    )  # fmt: skip
    assert (outcome.total, outcome.changed, outcome.failures) == (7, 7, [])
    assert seen == [3, 6, 7]
    async with sessionmaker() as session:
        rows = list(await session.scalars(select(Customer).where(Customer.id.in_(ids))))
        assert {tuple(r.tags) for r in rows} == {("reviewed",)}
        assert {(r.owner_id, r.lifecycle_stage) for r in rows} == {
            (owner, LifecycleStage.QUALIFIED)
        }
        audited = list(
            await session.scalars(
                select(AuditLog.entity_id).where(
                    AuditLog.action == bulk.ACTION, AuditLog.entity_id.in_(ids)
                )
            )
        )
        assert sorted(audited) == sorted(ids)
        untouched = await session.scalar(
            select(Customer.tags).where(
                Customer.workspace_id == manager.workspace_id, Customer.name == "Outside"
            )
        )
        assert untouched == ["other"]

    # Again: nothing is left to change, nothing is written.
    again = await bulk.run(manager, sessionmaker, {"tags": {"any_of": ["reviewed"]}}, change)
    assert (again.changed, again.unchanged) == (0, 7)


async def test_a_failing_customer_is_reported_and_the_others_go_on(
    sessionmaker: async_sessionmaker[AsyncSession], manager: Actor
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = await _people(sessionmaker, manager, 3, tag)
    long_tag = "t" * 60
    async with sessionmaker() as session, session.begin():
        # 64 characters at most per tag: this customer's existing tag cannot be kept...
        await session.execute(
            Customer.__table__.update()
            .where(Customer.id == ids[1])
            .values(tags=[tag, long_tag + "x" * 10])
        )
    change = bulk.BulkChange.of(add_tags=["archived-batch"], archive=True)
    outcome = await bulk.run(manager, sessionmaker, {"tags": {"any_of": [tag]}}, change)
    assert outcome.changed == 2
    assert [(f.record_id, f.error.field) for f in outcome.failures] == [(ids[1], "tags")]
    async with sessionmaker() as session:
        archived = dict(
            (await session.execute(
                select(Customer.id, Customer.archived_at).where(Customer.id.in_(ids))
            )).all()
        )  # fmt: skip
    assert archived[ids[1]] is None
    assert archived[ids[0]] is not None and archived[ids[2]] is not None


async def test_the_change_needs_its_permissions_and_a_real_owner(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor, viewer: Actor
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(Forbidden):
            await bulk.preview(viewer, session, None, bulk.BulkChange.of(add_tags=["x"]))
        with pytest.raises(Forbidden):  # agents may not archive customers
            await bulk.preview(agent, session, None, bulk.BulkChange.of(archive=True))
        with pytest.raises(NotFound):
            await bulk.preview(agent, session, None, bulk.BulkChange.of(owner_id=uuid.uuid4()))
    with pytest.raises(Invalid):
        bulk.BulkChange.of()
    with pytest.raises(Invalid):
        bulk.BulkChange.of(add_tags=["a"], remove_tags=["a"])


async def test_a_change_offers_only_what_its_kind_of_record_can_set(
    sessionmaker: async_sessionmaker[AsyncSession], manager: Actor
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(Invalid) as tags:  # deals have no tags
            await bulk.preview(
                manager, session, None, bulk.BulkChange.of(add_tags=["x"]), target=bulk.DEALS
            )
        assert tags.value.field == "addTags"
        qualified = bulk.BulkChange.of(lifecycle_stage=LifecycleStage.QUALIFIED)
        with pytest.raises(Invalid) as stage:  # a lifecycle stage is a customer's
            await bulk.preview(manager, session, None, qualified, target=bulk.COMPANIES)
        assert stage.value.field == "lifecycleStage"
        found = await bulk.preview(manager, session, None, qualified, target=bulk.CUSTOMERS)
        assert found.count == 0
