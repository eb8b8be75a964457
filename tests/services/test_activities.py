"""Activity rules: who may write what, links to customers and deals, tasks, the customer's
last activity, events, versions and archive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Activity, ActivityType, AuditLog, Customer, Deal, Event
from crm_graphql.services import changes, customers, deals
from crm_graphql.services.activities import (
    ACTIVITIES,
    archive_activity,
    create_activity,
    update_activity,
)
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Conflict, Forbidden, Invalid, NotFound
from crm_graphql.services.events import CHANGES_TOPIC
from crm_graphql.storage import bound, querying
from tests import support
from tests.factories import make_customer

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def customer(sessionmaker: Sessions, agent: Actor) -> Customer:
    return await make_customer(sessionmaker, agent)


async def make_deal(sessionmaker: Sessions, manager: Actor, customer: Customer | None) -> Deal:
    async with sessionmaker() as s, s.begin():
        pipeline = await deals.create_pipeline(
            manager, s, {"name": "Sales", "stages": [{"name": "New"}, {"name": "Won"}]}
        )
        return await deals.create_deal(
            manager,
            s,
            {
                "title": "Deal",
                "pipeline_id": pipeline.id,
                "currency": "EUR",
                "customer_id": customer.id if customer else None,
            },
        )


async def log(sessionmaker: Sessions, actor: Actor, **data: Any) -> Activity:
    async with sessionmaker() as s, s.begin():
        return await create_activity(actor, s, {"type": "note", "subject": "Called", **data})


async def reload_customer(sessionmaker: Sessions, customer_id: uuid.UUID) -> Customer:
    async with sessionmaker() as s:
        found = await s.get(Customer, customer_id)
    assert found is not None
    return found


async def test_logging_an_activity_moves_last_activity_at_without_bumping_the_version(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    assert customer.last_activity_at is None
    occurred = datetime.now(UTC) - timedelta(hours=1)
    activity = await log(sessionmaker, agent, customer_id=customer.id, occurred_at=occurred)
    stored = await reload_customer(sessionmaker, customer.id)
    assert stored.last_activity_at == occurred == activity.occurred_at
    assert stored.version == customer.version == 1
    assert stored.updated_at == customer.updated_at
    async with sessionmaker() as s:
        customer_audit = (
            await s.scalars(select(AuditLog.action).where(AuditLog.entity_id == customer.id))
        ).all()
    assert customer_audit == ["createCustomer"]
    # An edit form opened before the call still saves.
    async with sessionmaker() as s, s.begin():
        await customers.update_customer(
            agent, s, customer.id, {"phone": "+49 30 1234"}, expected_version=1
        )


async def test_last_activity_at_never_moves_back(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    now = datetime.now(UTC)
    await log(sessionmaker, agent, customer_id=customer.id, occurred_at=now)
    await log(sessionmaker, agent, customer_id=customer.id, occurred_at=now - timedelta(days=30))
    assert (await reload_customer(sessionmaker, customer.id)).last_activity_at == now
    later = now + timedelta(minutes=5)
    await log(sessionmaker, agent, customer_id=customer.id, occurred_at=later)
    assert (await reload_customer(sessionmaker, customer.id)).last_activity_at == later


async def test_activity_on_a_deal_lands_on_the_deals_customer(
    sessionmaker: Sessions, admin: Actor, agent: Actor, customer: Customer
) -> None:
    deal = await make_deal(sessionmaker, admin, customer)
    activity = await log(sessionmaker, agent, deal_id=deal.id, type="call")
    assert (activity.deal_id, activity.customer_id) == (deal.id, customer.id)
    assert activity.author_id == agent.user_id
    assert (await reload_customer(sessionmaker, customer.id)).last_activity_at is not None


async def test_activity_on_a_deal_of_another_customer_is_invalid(
    sessionmaker: Sessions, admin: Actor, agent: Actor, customer: Customer
) -> None:
    deal = await make_deal(sessionmaker, admin, customer)
    other = await make_customer(sessionmaker, agent, "Bob")
    with pytest.raises(Invalid) as error:
        await log(sessionmaker, agent, deal_id=deal.id, customer_id=other.id)
    assert error.value.field == "dealId"


async def test_activity_needs_a_customer_or_a_deal(sessionmaker: Sessions, agent: Actor) -> None:
    with pytest.raises(Invalid) as error:
        await log(sessionmaker, agent)
    assert error.value.field == "customerId"


@pytest.mark.parametrize("kind", [ActivityType.STAGE_CHANGE, "system", "tweet", None])
async def test_clients_may_only_write_notes_calls_emails_meetings_and_tasks(
    sessionmaker: Sessions, agent: Actor, customer: Customer, kind: Any
) -> None:
    with pytest.raises(Invalid) as error:
        await log(sessionmaker, agent, customer_id=customer.id, type=kind)
    assert error.value.field == "type"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"subject": "  "}, "subject"),
        ({"subject": "x" * 301}, "subject"),
        ({"occurred_at": datetime(2025, 1, 1, 9, 0)}, "occurredAt"),
        ({"due_at": datetime.now(UTC)}, "dueAt"),
        ({"completed": True}, "completed"),
        ({"type": "task", "due_at": datetime(2025, 1, 1)}, "dueAt"),
        ({"type": "task", "completed": "yes"}, "completed"),
    ],
)
async def test_create_activity_rejects_invalid_input_naming_the_field(
    sessionmaker: Sessions, agent: Actor, customer: Customer, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(Invalid) as error:
        await log(sessionmaker, agent, customer_id=customer.id, **data)
    assert error.value.field == field


async def test_references_of_another_workspace_are_not_found(
    sessionmaker: Sessions, agent: Actor, outsider: Actor
) -> None:
    foreign_customer = await make_customer(sessionmaker, outsider)
    foreign_deal = await make_deal(sessionmaker, outsider, foreign_customer)
    with pytest.raises(NotFound) as error:
        await log(sessionmaker, agent, customer_id=foreign_customer.id)
    assert error.value.field == "customerId"
    with pytest.raises(NotFound) as error:
        await log(sessionmaker, agent, deal_id=foreign_deal.id)
    assert error.value.field == "dealId"
    foreign_note = await log(sessionmaker, outsider, customer_id=foreign_customer.id)
    with pytest.raises(NotFound):
        async with sessionmaker() as s, s.begin():
            await update_activity(agent, s, foreign_note.id, {"subject": "Mine"})


async def test_completing_a_task_stamps_completed_at_and_reopening_clears_it(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    due = datetime.now(UTC) + timedelta(days=2)
    task = await log(sessionmaker, agent, customer_id=customer.id, type="task", due_at=due)
    assert (task.due_at, task.completed_at) == (due, None)
    async with sessionmaker() as s, s.begin():
        done = await update_activity(agent, s, task.id, {"completed": True}, expected_version=1)
    stamped = done.completed_at
    assert stamped is not None
    async with sessionmaker() as s, s.begin():  # completing again keeps the first time
        again = await update_activity(agent, s, task.id, {"completed": True})
    assert again.completed_at == stamped
    async with sessionmaker() as s, s.begin():
        reopened = await update_activity(agent, s, task.id, {"completed": False})
    assert reopened.completed_at is None
    async with sessionmaker() as s, s.begin():  # a task turned into a note loses due date
        note = await update_activity(agent, s, task.id, {"type": "note"})
    assert (note.type, note.due_at) == (ActivityType.NOTE, None)


async def test_update_activity_with_stale_version_conflicts(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    note = await log(sessionmaker, agent, customer_id=customer.id)
    async with sessionmaker() as s, s.begin():
        await update_activity(agent, s, note.id, {"body": "Left a message"}, expected_version=1)
    with pytest.raises(Conflict):
        async with sessionmaker() as s, s.begin():
            await update_activity(agent, s, note.id, {"body": "Other text"}, expected_version=1)


async def test_stage_change_history_cannot_be_edited_or_archived(
    sessionmaker: Sessions, admin: Actor, agent: Actor, customer: Customer
) -> None:
    deal = await make_deal(sessionmaker, admin, customer)
    async with sessionmaker() as s:
        won = await s.scalar(
            select(deals.STAGES.model).where(
                deals.STAGES.model.pipeline_id == deal.pipeline_id,
                deals.STAGES.model.name == "Won",
            )
        )
    assert won is not None
    async with sessionmaker() as s, s.begin():
        await deals.move_deal(agent, s, deal.id, won.id)
    async with sessionmaker() as s:
        history = await s.scalar(select(Activity).where(Activity.deal_id == deal.id))
    assert history is not None and history.type is ActivityType.STAGE_CHANGE
    with pytest.raises(Invalid):
        async with sessionmaker() as s, s.begin():
            await update_activity(agent, s, history.id, {"subject": "Never happened"})
    with pytest.raises(Invalid):
        async with sessionmaker() as s, s.begin():
            await archive_activity(agent, s, history.id)


async def test_viewer_cannot_write_activities(
    sessionmaker: Sessions, agent: Actor, viewer: Actor, customer: Customer
) -> None:
    note = await log(sessionmaker, agent, customer_id=customer.id)
    with pytest.raises(Forbidden):
        await log(sessionmaker, viewer, customer_id=customer.id)
    with pytest.raises(Forbidden):
        async with sessionmaker() as s, s.begin():
            await update_activity(viewer, s, note.id, {"subject": "x"})
    with pytest.raises(Forbidden):
        async with sessionmaker() as s, s.begin():
            await archive_activity(viewer, s, note.id)


async def test_activity_changes_are_audited_and_published_on_the_feed(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    note = await log(sessionmaker, agent, customer_id=customer.id)
    async with sessionmaker() as s, s.begin():
        await update_activity(agent, s, note.id, {"subject": "Called back"})
    async with sessionmaker() as s, s.begin():
        await archive_activity(agent, s, note.id)
    async with sessionmaker() as s:
        audit_rows = (
            await s.scalars(
                select(AuditLog.action)
                .where(AuditLog.entity_id == note.id)
                .order_by(AuditLog.created_at, AuditLog.id)
            )
        ).all()
        feed = (
            await s.execute(
                select(Event.topic, Event.type, Event.payload)
                .where(Event.entity_id == note.id, Event.topic != CHANGES_TOPIC)
                .order_by(Event.id)
            )
        ).all()
    assert audit_rows == ["createActivity", "updateActivity", "archiveActivity"]
    assert [(topic, type_) for topic, type_, _ in feed] == [
        ("activities", "activity.created"),
        ("activities", "activity.updated"),
        ("activities", "activity.archived"),
    ]
    assert feed[0][2]["customer_id"] == str(customer.id)
    assert feed[1][2]["changed"] == ["subject"]


async def test_archived_activities_leave_the_timeline_which_is_newest_first(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    now = datetime.now(UTC)
    old = await log(sessionmaker, agent, customer_id=customer.id, occurred_at=now - timedelta(1))
    new = await log(sessionmaker, agent, customer_id=customer.id, occurred_at=now)
    gone = await log(sessionmaker, agent, customer_id=customer.id, occurred_at=now)
    async with sessionmaker() as s, s.begin():
        await archive_activity(agent, s, gone.id, expected_version=1)
    async with sessionmaker() as s:
        timeline = await querying.pages_by_parent(
            agent, s, ACTIVITIES, "customer_id", [customer.id], page=querying.PageRequest()
        )
        root = await querying.list_page(
            agent,
            s,
            ACTIVITIES,
            filter={"customer_id": {"eq": customer.id}},
            page=querying.PageRequest(),
        )
    assert [a.id for a in timeline[customer.id].items] == [new.id, old.id]
    assert [a.id for a in root.items] == [new.id, old.id]


async def test_an_activity_is_written_with_one_statement_that_names_its_tables(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    """createActivity (M1, issue 14 point 4): the customer's ``last_activity_at``, the
    activity, its event and its audit row in one statement (five before); the change
    notices (``services.changes``) still name every table it wrote, the CTEs' included."""
    occurred = datetime.now(UTC) - timedelta(minutes=3)
    with support.Statements(sessionmaker) as sent:
        async with sessionmaker() as s, s.begin():
            activity = await create_activity(
                agent,
                s,
                {"type": "note", "subject": "One trip", "customer_id": customer.id,
                 "occurred_at": occurred},
            )  # fmt: skip
        written = changes.take_written(s)
    assert len(sent) == 1, sent
    assert {"customers", "activities", "events", "audit_log"} <= written
    # What the payload reads: the row as stored, PostgreSQL's timestamps included.
    assert activity.created_at is not None and activity.updated_at is not None
    assert activity.version == 1 and activity.details == {}
    async with sessionmaker() as s:
        stored = await s.get(Activity, activity.id)
        assert stored is not None and stored.created_at == activity.created_at
        entry = await s.scalar(select(AuditLog).where(AuditLog.entity_id == activity.id))
        event = await s.scalar(
            select(Event).where(Event.entity_id == activity.id, Event.topic == "activities")
        )
    assert entry is not None and entry.action == "createActivity"
    # Every column the activity was made with, as ``records.create`` audited it.
    assert entry.changes["subject"] == {"before": None, "after": "One trip"}
    assert entry.changes["details"] == {"before": None, "after": {}}
    assert "body" not in entry.changes and "version" not in entry.changes
    assert entry.request_id == agent.request_id
    assert event is not None and event.type == "activity.created"
    assert event.payload["occurred_at"] == occurred.isoformat()
    assert event.payload["version"] == 1
    assert (await reload_customer(sessionmaker, customer.id)).last_activity_at == occurred


async def test_a_lone_activity_commits_by_itself_in_one_round_trip(
    sessionmaker: Sessions, agent: Actor, customer: Customer, outsider: Actor
) -> None:
    """The createActivity mutation's transaction holds only the activity's statement
    (``alone``): no BEGIN and COMMIT around it (three round trips before). It is written
    whole, and an activity refused by that statement (a customer of another workspace)
    leaves nothing behind."""
    counted = support.Statements(sessionmaker)
    with counted:
        async with sessionmaker() as s, s.begin():
            activity = await create_activity(
                agent, s, {"type": "note", "subject": "Alone", "customer_id": customer.id},
                alone=True,
            )  # fmt: skip
    assert len(counted.sent) == 1 and "INSERT INTO activities" in counted.sent[0]
    assert counted.autocommit == [True]
    async with sessionmaker() as s:
        assert (await s.get(Activity, activity.id)) is not None
        assert await s.scalar(select(Event.id).where(Event.entity_id == activity.id))
        assert await s.scalar(select(AuditLog.id).where(AuditLog.entity_id == activity.id))
    foreign = await make_customer(sessionmaker, outsider)
    with pytest.raises(NotFound):
        async with sessionmaker() as s, s.begin():
            await create_activity(
                agent, s, {"type": "note", "subject": "Alone", "customer_id": foreign.id},
                alone=True,
            )  # fmt: skip
    async with sessionmaker() as s:
        assert await s.scalar(select(Activity.id).where(Activity.customer_id == foreign.id)) is None
    # Without ``alone`` (an import, a stage change's activity) it is one of a transaction's.
    counted.autocommit.clear()
    with counted:
        await log(sessionmaker, agent, customer_id=customer.id)
    assert counted.autocommit == [False]


async def test_alone_must_come_before_the_first_statement(
    sessionmaker: Sessions, agent: Actor, customer: Customer
) -> None:
    async with sessionmaker() as s, s.begin():
        await s.execute(select(1))
        with pytest.warns(SAWarning), pytest.raises(RuntimeError, match="first statement"):
            await bound.alone(s)


async def test_an_activity_for_a_customer_of_another_workspace_writes_nothing(
    sessionmaker: Sessions, agent: Actor, outsider: Actor
) -> None:
    foreign = await make_customer(sessionmaker, outsider)
    with pytest.raises(NotFound) as raised:
        await log(sessionmaker, agent, customer_id=foreign.id)
    assert raised.value.field == "customerId"
    async with sessionmaker() as s:
        assert await s.scalar(select(Activity.id).where(Activity.customer_id == foreign.id)) is None
    assert (await reload_customer(sessionmaker, foreign.id)).last_activity_at is None
