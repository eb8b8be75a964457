"""Pipelines, stages and deals: permissions, board integrity, moves and their history."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import (
    Activity,
    ActivityType,
    AuditLog,
    Customer,
    Deal,
    DealStageChange,
    DealStatus,
    Event,
    Pipeline,
    Role,
    Stage,
)
from crm_graphql.services import changes, deals
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Conflict, Forbidden, Invalid, NotFound
from crm_graphql.services.events import CHANGES_TOPIC
from crm_graphql.storage import querying
from tests import support
from tests.factories import make_customer

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class Board:
    pipeline: Pipeline
    stages: list[Stage]


async def make_board(
    sessionmaker: Sessions, actor: Actor, names: tuple[str, ...] = ("Qualified", "Proposal", "Won")
) -> Board:
    async with sessionmaker() as s, s.begin():
        pipeline = await deals.create_pipeline(
            actor,
            s,
            {
                "name": "Sales",
                "stages": [
                    {"name": name, "probability": 10 * (i + 1)} for i, name in enumerate(names)
                ],
            },
        )
    async with sessionmaker() as s:
        stages = (
            await s.scalars(
                select(Stage).where(Stage.pipeline_id == pipeline.id).order_by(Stage.position)
            )
        ).all()
    return Board(pipeline, list(stages))


@pytest.fixture
async def board(sessionmaker: Sessions, admin: Actor) -> Board:
    return await make_board(sessionmaker, admin)


async def make_deal(sessionmaker: Sessions, actor: Actor, board: Board, **data: Any) -> Deal:
    async with sessionmaker() as s, s.begin():
        return await deals.create_deal(
            actor,
            s,
            {"title": "Big deal", "pipeline_id": board.pipeline.id, "currency": "EUR", **data},
        )


async def events_of(sessionmaker: Sessions, entity_id: uuid.UUID) -> list[tuple[str, str]]:
    async with sessionmaker() as s:
        rows = await s.execute(
            select(Event.topic, Event.type)
            .where(Event.entity_id == entity_id, Event.topic != CHANGES_TOPIC)
            .order_by(Event.id)
        )
        return [(topic, type_) for topic, type_ in rows.all()]


async def audit_actions(sessionmaker: Sessions, entity_id: uuid.UUID) -> list[str]:
    async with sessionmaker() as s:
        rows = await s.scalars(
            select(AuditLog.action)
            .where(AuditLog.entity_id == entity_id)
            .order_by(AuditLog.created_at, AuditLog.id)
        )
        return list(rows.all())


# ------------------------------------------------------------------ pipelines, stages


async def test_create_pipeline_creates_its_stages_in_order(
    sessionmaker: Sessions, admin: Actor, board: Board
) -> None:
    assert [(s.name, s.position, s.probability) for s in board.stages] == [
        ("Qualified", 0, 10),
        ("Proposal", 1, 20),
        ("Won", 2, 30),
    ]
    async with sessionmaker() as s:
        pages = await querying.pages_by_parent(
            admin, s, deals.STAGES, "pipeline_id", [board.pipeline.id], page=querying.PageRequest()
        )
    assert [st.name for st in pages[board.pipeline.id].items] == ["Qualified", "Proposal", "Won"]
    assert await audit_actions(sessionmaker, board.stages[0].id) == ["createPipeline"]
    assert await events_of(sessionmaker, board.pipeline.id) == [
        (f"pipeline:{board.pipeline.id}", "pipeline.created")
    ]


async def test_new_pipelines_and_stages_are_appended_at_the_end(
    sessionmaker: Sessions, admin: Actor, board: Board
) -> None:
    second = await make_board(sessionmaker, admin, names=())
    assert second.pipeline.position == board.pipeline.position + 1
    async with sessionmaker() as s, s.begin():
        stage = await deals.create_stage(
            admin, s, {"pipeline_id": board.pipeline.id, "name": "Negotiation"}
        )
    assert (stage.position, stage.probability) == (3, 0)
    async with sessionmaker() as s:
        page = await querying.list_page(admin, s, deals.PIPELINES, page=querying.PageRequest())
    assert [p.id for p in page.items] == [board.pipeline.id, second.pipeline.id]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": ""}, "name"),
        ({"stages": [{"name": "A"}, {"name": "B", "probability": 101}]}, "stages.1.probability"),
        ({"stages": [{"name": " ", "probability": 5}]}, "stages.0.name"),
        ({"stages": [{"name": "A", "position": -1}]}, "stages.0.position"),
        ({"position": "first"}, "position"),
    ],
)
async def test_create_pipeline_rejects_invalid_input_naming_the_field(
    sessionmaker: Sessions, admin: Actor, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(Invalid) as error:
        async with sessionmaker() as s, s.begin():
            await deals.create_pipeline(admin, s, {"name": "Sales", **data})
    assert error.value.field == field
    async with sessionmaker() as s:  # nothing half-written
        assert (
            await s.scalar(select(Pipeline).where(Pipeline.workspace_id == admin.workspace_id))
            is None
        )


@pytest.mark.parametrize("probability", [-1, 101, 12.5, True])
async def test_stage_probability_must_be_a_whole_percentage(
    sessionmaker: Sessions, admin: Actor, board: Board, probability: Any
) -> None:
    with pytest.raises(Invalid) as error:
        async with sessionmaker() as s, s.begin():
            await deals.update_stage(admin, s, board.stages[0].id, {"probability": probability})
    assert error.value.field == "probability"


async def test_agents_cannot_manage_pipelines_but_managers_can(
    sessionmaker: Sessions, actors: dict[Role, Actor], board: Board
) -> None:
    agent, viewer = actors[Role.AGENT], actors[Role.VIEWER]
    for actor in (agent, viewer):
        attempts = [
            lambda s, a=actor: deals.create_pipeline(a, s, {"name": "Mine"}),
            lambda s, a=actor: deals.update_pipeline(a, s, board.pipeline.id, {"name": "Mine"}),
            lambda s, a=actor: deals.archive_pipeline(a, s, board.pipeline.id),
            lambda s, a=actor: deals.create_stage(
                a, s, {"pipeline_id": board.pipeline.id, "name": "Mine"}
            ),
            lambda s, a=actor: deals.update_stage(a, s, board.stages[0].id, {"name": "Mine"}),
            lambda s, a=actor: deals.archive_stage(a, s, board.stages[0].id),
        ]
        for attempt in attempts:
            with pytest.raises(Forbidden):
                async with sessionmaker() as s, s.begin():
                    await attempt(s)
    async with sessionmaker() as s, s.begin():
        renamed = await deals.update_pipeline(
            actors[Role.MANAGER], s, board.pipeline.id, {"name": "Enterprise"}, expected_version=1
        )
    assert (renamed.name, renamed.version) == ("Enterprise", 2)


async def test_update_stage_with_stale_version_conflicts(
    sessionmaker: Sessions, admin: Actor, board: Board
) -> None:
    stage = board.stages[1]
    async with sessionmaker() as s, s.begin():
        await deals.update_stage(admin, s, stage.id, {"probability": 55}, expected_version=1)
    with pytest.raises(Conflict):
        async with sessionmaker() as s, s.begin():
            await deals.update_stage(admin, s, stage.id, {"name": "Offer"}, expected_version=1)


async def test_stage_of_another_workspace_is_not_found(
    sessionmaker: Sessions, admin: Actor, outsider: Actor
) -> None:
    foreign = await make_board(sessionmaker, outsider)
    with pytest.raises(NotFound) as error:
        async with sessionmaker() as s, s.begin():
            await deals.create_stage(
                admin, s, {"pipeline_id": foreign.pipeline.id, "name": "Sneaky"}
            )
    assert error.value.field == "pipelineId"
    with pytest.raises(NotFound):
        async with sessionmaker() as s, s.begin():
            await deals.update_stage(admin, s, foreign.stages[0].id, {"name": "Sneaky"})


async def test_archive_stage_is_refused_while_deals_sit_in_it(
    manager: Actor, sessionmaker: Sessions, admin: Actor, agent: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board)
    with pytest.raises(Invalid) as error:
        async with sessionmaker() as s, s.begin():
            await deals.archive_stage(admin, s, board.stages[0].id)
    assert "1 deal still sit" in error.value.message
    async with sessionmaker() as s, s.begin():
        await deals.archive_deal(manager, s, deal.id)
    async with sessionmaker() as s, s.begin():
        archived = await deals.archive_stage(admin, s, board.stages[0].id)
    assert archived.archived_at is not None
    # New deals now land in the first stage that is still live.
    later = await make_deal(sessionmaker, agent, board)
    assert later.stage_id == board.stages[1].id


async def test_archive_pipeline_is_refused_while_it_has_open_deals(
    sessionmaker: Sessions, admin: Actor, agent: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board)
    with pytest.raises(Invalid) as error:
        async with sessionmaker() as s, s.begin():
            await deals.archive_pipeline(admin, s, board.pipeline.id)
    assert error.value.code == "VALIDATION"
    assert "1 open deal;" in error.value.message
    async with sessionmaker() as s, s.begin():
        await deals.update_deal(agent, s, deal.id, {"status": DealStatus.WON})
    async with sessionmaker() as s, s.begin():
        archived = await deals.archive_pipeline(admin, s, board.pipeline.id, expected_version=1)
    assert archived.archived_at is not None
    with pytest.raises(Invalid) as error:
        await make_deal(sessionmaker, agent, board)
    assert error.value.field == "pipelineId"
    async with sessionmaker() as s:
        page = await querying.list_page(admin, s, deals.PIPELINES, page=querying.PageRequest())
    assert page.items == []


# ----------------------------------------------------------------------------- deals


async def test_create_deal_lands_in_the_first_stage_with_defaults(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board, currency="usd")
    assert deal.stage_id == board.stages[0].id
    assert (deal.amount, deal.currency, deal.status) == (Decimal("0"), "USD", DealStatus.OPEN)
    assert deal.closed_at is None
    assert await audit_actions(sessionmaker, deal.id) == ["createDeal"]
    assert await events_of(sessionmaker, deal.id) == [
        (f"pipeline:{board.pipeline.id}", "deal.created")
    ]


async def test_create_deal_with_only_a_stage_uses_its_pipeline(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    async with sessionmaker() as s, s.begin():
        deal = await deals.create_deal(
            agent,
            s,
            {
                "title": "Renewal",
                "stage_id": board.stages[1].id,
                "currency": "EUR",
                "amount": "1200.50",
                "expected_close_date": date(2030, 1, 31),
            },
        )
    assert (deal.pipeline_id, deal.stage_id) == (board.pipeline.id, board.stages[1].id)
    assert deal.amount == Decimal("1200.50")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"title": " "}, "title"),
        ({"currency": None}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"amount": "-5"}, "amount"),
        ({"status": "pending"}, "status"),
        ({"expected_close_date": "2030-01-31"}, "expectedCloseDate"),
        ({"lost_reason": "Too expensive"}, "lostReason"),
        ({"pipeline_id": None}, "pipelineId"),
    ],
)
async def test_create_deal_rejects_invalid_input_naming_the_field(
    sessionmaker: Sessions, agent: Actor, board: Board, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(Invalid) as error:
        await make_deal(sessionmaker, agent, board, **data)
    assert error.value.field == field


async def test_create_deal_with_a_stage_of_another_pipeline_is_invalid(
    sessionmaker: Sessions, admin: Actor, agent: Actor, board: Board
) -> None:
    other = await make_board(sessionmaker, admin, names=("Lead",))
    with pytest.raises(Invalid) as error:
        await make_deal(sessionmaker, agent, board, stage_id=other.stages[0].id)
    assert error.value.field == "stageId"


async def test_create_deal_with_references_of_another_workspace_is_not_found(
    sessionmaker: Sessions, agent: Actor, outsider: Actor, board: Board
) -> None:
    foreign_board = await make_board(sessionmaker, outsider)
    foreign_customer = await make_customer(sessionmaker, outsider)
    cases = [
        ({"pipeline_id": foreign_board.pipeline.id}, "pipelineId"),
        ({"stage_id": foreign_board.stages[0].id}, "stageId"),
        ({"customer_id": foreign_customer.id}, "customerId"),
        ({"owner_id": outsider.user_id}, "ownerId"),
    ]
    for data, field in cases:
        with pytest.raises(NotFound) as error:
            await make_deal(sessionmaker, agent, board, **data)
        assert error.value.field == field


async def test_viewer_cannot_write_deals(
    sessionmaker: Sessions, agent: Actor, viewer: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board)
    attempts = [
        lambda s: deals.create_deal(
            viewer, s, {"title": "x", "pipeline_id": board.pipeline.id, "currency": "EUR"}
        ),
        lambda s: deals.update_deal(viewer, s, deal.id, {"title": "x"}),
        lambda s: deals.move_deal(viewer, s, deal.id, board.stages[1].id),
        lambda s: deals.archive_deal(viewer, s, deal.id),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            async with sessionmaker() as s, s.begin():
                await attempt(s)


async def test_update_deal_cannot_change_the_stage(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board)
    with pytest.raises(Invalid) as error:
        async with sessionmaker() as s, s.begin():
            await deals.update_deal(agent, s, deal.id, {"stage_id": board.stages[1].id})
    assert error.value.field == "stageId"
    assert "moveDeal" in error.value.message


async def test_closing_a_deal_stamps_closed_at_and_reopening_clears_it(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board)
    async with sessionmaker() as s, s.begin():
        lost = await deals.update_deal(
            agent, s, deal.id, {"status": "lost", "lost_reason": "Budget"}, expected_version=1
        )
    assert lost.closed_at is not None and lost.lost_reason == "Budget"
    async with sessionmaker() as s, s.begin():
        reopened = await deals.update_deal(
            agent, s, deal.id, {"status": DealStatus.OPEN}, expected_version=2
        )
    assert (reopened.closed_at, reopened.lost_reason, reopened.version) == (None, None, 3)
    async with sessionmaker() as s:
        found = await querying.list_page(
            agent,
            s,
            deals.DEALS,
            filter={"closed_at": {"is_null": False}},
            page=querying.PageRequest(),
        )
    assert found.items == []
    assert await events_of(sessionmaker, deal.id) == [
        (f"pipeline:{board.pipeline.id}", "deal.created"),
        (f"pipeline:{board.pipeline.id}", "deal.updated"),
        (f"pipeline:{board.pipeline.id}", "deal.updated"),
    ]


async def test_update_deal_with_stale_version_conflicts(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board)
    async with sessionmaker() as s, s.begin():
        await deals.update_deal(agent, s, deal.id, {"amount": 10}, expected_version=1)
    with pytest.raises(Conflict) as error:
        async with sessionmaker() as s, s.begin():
            await deals.update_deal(agent, s, deal.id, {"amount": 20}, expected_version=1)
    assert error.value.code == "CONFLICT"


async def test_deal_of_another_workspace_is_not_found(
    manager: Actor, sessionmaker: Sessions, agent: Actor, outsider: Actor, board: Board
) -> None:
    foreign_board = await make_board(sessionmaker, outsider)
    foreign = await make_deal(sessionmaker, outsider, foreign_board)
    attempts = [
        lambda s: deals.update_deal(agent, s, foreign.id, {"title": "Mine"}),
        lambda s: deals.move_deal(agent, s, foreign.id, foreign_board.stages[1].id),
        lambda s: deals.archive_deal(manager, s, foreign.id),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound):
            async with sessionmaker() as s, s.begin():
                await attempt(s)


async def test_archive_deal_hides_it_from_list_page(
    manager: Actor, sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    kept = await make_deal(sessionmaker, agent, board, title="Kept")
    gone = await make_deal(sessionmaker, agent, board, title="Gone")
    async with sessionmaker() as s, s.begin():
        await deals.archive_deal(manager, s, gone.id, expected_version=1)
    async with sessionmaker() as s, s.begin():  # archiving twice changes nothing
        await deals.archive_deal(manager, s, gone.id)
    async with sessionmaker() as s:
        page = await querying.list_page(agent, s, deals.DEALS, page=querying.PageRequest())
    assert [d.id for d in page.items] == [kept.id]
    assert await audit_actions(sessionmaker, gone.id) == ["createDeal", "archiveDeal"]
    assert [t for _, t in await events_of(sessionmaker, gone.id)] == [
        "deal.created",
        "deal.archived",
    ]


# ------------------------------------------------------------------------------ moves


async def test_move_deal_writes_activity_audit_row_and_event(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    customer = await make_customer(sessionmaker, agent)
    deal = await make_deal(sessionmaker, agent, board, customer_id=customer.id)
    qualified, proposal = board.stages[0], board.stages[1]

    async with sessionmaker() as s, s.begin():
        moved = await deals.move_deal(agent, s, deal.id, proposal.id, expected_version=1)
    assert (moved.stage_id, moved.version) == (proposal.id, 2)

    async with sessionmaker() as s:
        activity = await s.scalar(select(Activity).where(Activity.deal_id == deal.id))
        move_audit = (
            await s.scalars(
                select(AuditLog).where(AuditLog.entity_id == deal.id, AuditLog.action == "moveDeal")
            )
        ).all()
        event = await s.scalar(
            select(Event).where(Event.entity_id == deal.id, Event.type == "deal.moved")
        )
        stored_customer = await s.get(Customer, customer.id)
    assert activity is not None
    assert activity.type is ActivityType.STAGE_CHANGE
    assert activity.subject == "Moved from Qualified to Proposal"
    assert activity.details == {"from_stage_id": str(qualified.id), "to_stage_id": str(proposal.id)}
    assert (activity.customer_id, activity.author_id) == (customer.id, agent.user_id)
    assert [a.changes for a in move_audit] == [
        {"stage_id": {"before": str(qualified.id), "after": str(proposal.id)}}
    ]
    assert await audit_actions(sessionmaker, activity.id) == ["moveDeal"]
    assert event is not None
    assert event.topic == f"pipeline:{board.pipeline.id}"
    assert event.payload["from_stage_id"] == str(qualified.id)
    assert event.payload["to_stage_id"] == str(proposal.id)
    assert event.payload["activity_id"] == str(activity.id)
    assert await events_of(sessionmaker, activity.id) == [("activities", "activity.created")]
    assert stored_customer is not None
    assert stored_customer.last_activity_at == activity.occurred_at


async def test_move_deal_to_its_own_stage_changes_nothing(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board)
    async with sessionmaker() as s, s.begin():
        same = await deals.move_deal(agent, s, deal.id, board.stages[0].id, expected_version=1)
    assert same.version == 1
    async with sessionmaker() as s:
        assert await s.scalar(select(Activity).where(Activity.deal_id == deal.id)) is None
    assert await audit_actions(sessionmaker, deal.id) == ["createDeal"]
    assert [t for _, t in await events_of(sessionmaker, deal.id)] == ["deal.created"]


async def test_move_deal_to_a_stage_of_another_pipeline_is_invalid(
    sessionmaker: Sessions, admin: Actor, agent: Actor, board: Board
) -> None:
    other = await make_board(sessionmaker, admin, names=("Lead",))
    deal = await make_deal(sessionmaker, agent, board)
    with pytest.raises(Invalid) as error:
        async with sessionmaker() as s, s.begin():
            await deals.move_deal(agent, s, deal.id, other.stages[0].id)
    assert error.value.field == "stageId"


async def test_move_deal_with_stale_version_conflicts(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    deal = await make_deal(sessionmaker, agent, board)
    async with sessionmaker() as s, s.begin():
        await deals.move_deal(agent, s, deal.id, board.stages[1].id, expected_version=1)
    with pytest.raises(Conflict):
        async with sessionmaker() as s, s.begin():
            await deals.move_deal(agent, s, deal.id, board.stages[2].id, expected_version=1)
    async with sessionmaker() as s:
        assert (
            len((await s.scalars(select(Activity).where(Activity.deal_id == deal.id))).all()) == 1
        )


# -------------------------------------------------------------------------- nesting


async def test_deals_by_customer_come_in_per_parent_pages(
    manager: Actor, sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    ada = await make_customer(sessionmaker, agent, "Ada")
    bob = await make_customer(sessionmaker, agent, "Bob")
    cyd = await make_customer(sessionmaker, agent, "Cyd")
    ada_deals = [
        await make_deal(sessionmaker, agent, board, customer_id=ada.id, title=f"Ada {i}")
        for i in range(3)
    ]
    bob_deal = await make_deal(sessionmaker, agent, board, customer_id=bob.id, title="Bob")
    archived = await make_deal(sessionmaker, agent, board, customer_id=bob.id, title="Old")
    async with sessionmaker() as s, s.begin():
        await deals.archive_deal(manager, s, archived.id)
    ids = [ada.id, bob.id, cyd.id]
    order = [("title", False)]
    async with sessionmaker() as s:
        pages = await querying.pages_by_parent(
            agent,
            s,
            deals.DEALS,
            "customer_id",
            ids,
            order=order,
            page=querying.PageRequest(first=2),
        )
        counts = await querying.counts_by_parent(agent, s, deals.DEALS, "customer_id", ids)
        rest = await querying.pages_by_parent(
            agent,
            s,
            deals.DEALS,
            "customer_id",
            [ada.id],
            order=order,
            page=querying.PageRequest(first=2, after=pages[ada.id].cursors[-1]),
        )
    assert [d.id for d in pages[ada.id].items] == [ada_deals[0].id, ada_deals[1].id]
    assert pages[ada.id].has_next_page
    assert [d.id for d in pages[bob.id].items] == [bob_deal.id]
    assert not pages[bob.id].has_next_page
    assert pages[cyd.id].items == []
    assert counts == {ada.id: 3, bob.id: 1, cyd.id: 0}
    assert [d.id for d in rest[ada.id].items] == [ada_deals[2].id]
    assert not rest[ada.id].has_next_page


async def test_a_move_reads_once_and_writes_twice_naming_its_tables(
    sessionmaker: Sessions, agent: Actor, board: Board
) -> None:
    """moveDeal (M1, issue 14 point 4): the deal (locked) and its two stages are read in
    one statement, then the deal with its event and audit row are written in one statement, and its
    stage change, the stage-change activity, the customer's ``last_activity_at`` and
    their event and audit row in another (eight statements before; the deal's UPDATE and
    its stage change stay apart for the summaries' triggers, test_deal_totals.py); the
    change notices name every table written."""
    customer = await make_customer(sessionmaker, agent)
    deal = await make_deal(sessionmaker, agent, board, customer_id=customer.id)
    with support.Statements(sessionmaker) as sent:
        async with sessionmaker() as s, s.begin():
            moved = await deals.move_deal(agent, s, deal.id, board.stages[1].id)
        written = changes.take_written(s)
    assert len(sent) == 3, sent
    assert "FOR UPDATE OF deals FOR KEY SHARE OF stages" in sent[0]
    assert "UPDATE deals" in sent[1] and "INSERT INTO deal_stage_changes" in sent[2]
    assert {
        "deals", "deal_stage_changes", "activities", "customers", "events", "audit_log"
    } <= written  # fmt: skip
    # The object the payload reads is the row as stored.
    async with sessionmaker() as s:
        stored = await s.get(Deal, deal.id)
        change = await s.scalar(select(DealStageChange).where(DealStageChange.deal_id == deal.id))
    assert stored is not None
    assert (moved.stage_id, moved.version, moved.updated_at) == (
        stored.stage_id, stored.version, stored.updated_at
    )  # fmt: skip
    assert moved.version == 2 and moved.updated_at > deal.updated_at
    assert change is not None
    assert (change.from_stage_id, change.to_stage_id) == (board.stages[0].id, board.stages[1].id)

