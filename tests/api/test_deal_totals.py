"""The sales report read from the deal summaries (migration 0019, decision 0021): the same
answer as from the rows for any period, time zone and owners; and the summaries follow
every write of deals, their moves and stages."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql import models
from crm_graphql.models import Role, User
from crm_graphql.services import deals as deal_service
from crm_graphql.services.actor import Actor
from tests import support
from tests.api.conftest import StatementCounter
from tests.api.test_reports import SalesData, gid, sales, seed_sales  # noqa: F401 (fixture)

REPORT = """
query($p: ID!, $from: Date!, $to: Date!, $tz: String, $owners: [ID!], $f: DealFilter) {
  salesReport(pipelineId: $p, from: $from, to: $to, timeZone: $tz, ownerIds: $owners,
              filter: $f) {
    stages { stage { id } openCount openValue { currency amount count }
             weightedValue { currency amount count } reachedCount conversionToNext }
    winRate { won lost rate }
    averageDealSize { currency amount count }
    averageCycleTime { averageDays count }
    weightedPipeline { currency amount count }
    forecast { month owner { id } currency count amount weightedAmount }
  }
}"""
# A filter every deal passes: the same report, read from the rows.
EVERY_DEAL = {"createdAt": {"lt": "9000-01-01T00:00:00Z"}}


def _reads_summaries(counter: StatementCounter) -> bool:
    summaries = ("deal_cohort_totals", "deal_stage_totals", "deal_close_totals")
    return any(name in s for s in counter.statements for name in summaries)


@pytest.mark.parametrize(
    ("start", "end", "zone"),
    [
        ("2026-01-01", "2026-03-31", "Europe/Paris"),
        ("2025-12-15", "2026-02-10", "Asia/Kathmandu"),
        ("2026-01-01", "2026-03-31", "America/St_Johns"),
        ("2025-12-01", "2026-04-30", "Pacific/Kiritimati"),
        ("2026-02-01", "2026-02-28", "UTC"),
        ("2026-01-10", "2026-01-20", "Australia/Adelaide"),
    ],
)
@pytest.mark.parametrize("by_owner", [False, True])
async def test_the_sales_report_from_the_summaries_is_the_rows_answer(
    sales: SalesData,  # noqa: F811
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, User],
    counter: StatementCounter,
    start: str,
    end: str,
    zone: str,
    by_owner: bool,
) -> None:
    variables: dict[str, Any] = {
        "p": gid("Pipeline", sales.pipeline_id),
        "from": start,
        "to": end,
        "tz": zone,
    }
    if by_owner:
        variables["owners"] = [gid("User", users[Role.AGENT].id)]
    summary = (await as_role[Role.ADMIN](REPORT, variables)).ok()["salesReport"]
    assert _reads_summaries(counter)
    counter.statements.clear()
    rows = (await as_role[Role.ADMIN](REPORT, {**variables, "f": EVERY_DEAL})).ok()["salesReport"]
    assert not _reads_summaries(counter)
    assert summary == rows
    if start[:7] != end[:7]:  # months of deals: the data exercises the numbers
        assert any(s["reachedCount"] for s in summary["stages"])


# ------------------------------------------------------------ the summaries follow writes

STAGE_TOTALS_FROM_ROWS = text(
    """
    SELECT pipeline_id, stage_id, owner_id, status, currency,
           date_trunc('month', expected_close_date)::date, count(*), sum(amount)
    FROM deals WHERE workspace_id = :ws AND archived_at IS NULL
    GROUP BY 1, 2, 3, 4, 5, 6
    """
)
STAGE_TOTALS = text(
    """
    SELECT pipeline_id, stage_id, owner_id, status, currency, close_month, deal_count, amount
    FROM deal_stage_totals
    WHERE workspace_id = :ws AND (deal_count <> 0 OR amount <> 0)
    """
)
# The stages a deal has been in: its current one and every one a move left; its furthest
# position is the highest of theirs.
COHORT_TOTALS_FROM_ROWS = text(
    """
    WITH been AS (
        SELECT d.id, d.stage_id AS stage FROM deals d WHERE d.workspace_id = :ws
        UNION ALL
        SELECT h.deal_id, h.from_stage_id FROM deal_stage_changes h WHERE h.workspace_id = :ws
    ), furthest AS (
        SELECT been.id, max(s.position) AS position
        FROM been JOIN stages s ON s.id = been.stage GROUP BY been.id
    )
    SELECT d.pipeline_id, d.owner_id, date_trunc('month', d.created_at, 'UTC'), f.position,
           count(*)
    FROM deals d JOIN furthest f ON f.id = d.id
    WHERE d.workspace_id = :ws AND d.archived_at IS NULL
    GROUP BY 1, 2, 3, 4
    """
)
CLOSE_TOTALS_FROM_ROWS = text(
    """
    SELECT pipeline_id, owner_id, status, currency, date_trunc('month', closed_at, 'UTC'),
           count(*), sum(amount), sum(extract(epoch FROM closed_at - created_at))
    FROM deals WHERE workspace_id = :ws AND archived_at IS NULL AND closed_at IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5
    """
)
CLOSE_TOTALS = text(
    """
    SELECT pipeline_id, owner_id, status, currency, month, deal_count, amount, seconds
    FROM deal_close_totals
    WHERE workspace_id = :ws AND (deal_count <> 0 OR amount <> 0 OR seconds <> 0)
    """
)
COHORT_TOTALS = text(
    """
    SELECT pipeline_id, owner_id, month, furthest_position, deal_count
    FROM deal_cohort_totals WHERE workspace_id = :ws AND deal_count <> 0
    """
)


async def assert_summaries_match_rows(
    sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID
) -> None:
    async with sessionmaker() as s:
        for from_rows, kept in (
            (STAGE_TOTALS_FROM_ROWS, STAGE_TOTALS),
            (COHORT_TOTALS_FROM_ROWS, COHORT_TOTALS),
            (CLOSE_TOTALS_FROM_ROWS, CLOSE_TOTALS),
        ):
            expected = {tuple(r) for r in await s.execute(from_rows, {"ws": workspace_id})}
            assert {tuple(r) for r in await s.execute(kept, {"ws": workspace_id})} == expected


async def test_the_summaries_follow_deals_moves_and_stages(
    sessionmaker: async_sessionmaker[AsyncSession],
    sales: SalesData,  # noqa: F811
    actors: dict[Role, Actor],
    users: dict[Role, User],
) -> None:
    admin = actors[Role.ADMIN]
    ws = admin.workspace_id
    await assert_summaries_match_rows(sessionmaker, ws)
    stages = sales.stage_ids

    async with sessionmaker() as s, s.begin():
        deal = await deal_service.create_deal(
            admin,
            s,
            {"title": "New", "pipeline_id": sales.pipeline_id, "currency": "EUR", "amount": 5},
        )
    await assert_summaries_match_rows(sessionmaker, ws)
    for target in (stages[2], stages[1], stages[3]):
        async with sessionmaker() as s, s.begin():
            await deal_service.move_deal(admin, s, deal.id, target)
        await assert_summaries_match_rows(sessionmaker, ws)
    for change in (
        {"amount": Decimal("77.10")},
        {"owner_id": users[Role.AGENT].id},
        {"currency": "USD"},
        {"expected_close_date": date(2026, 2, 14)},
        {"status": "won"},
        {"status": "open"},
    ):
        async with sessionmaker() as s, s.begin():
            await deal_service.update_deal(admin, s, deal.id, change)
        await assert_summaries_match_rows(sessionmaker, ws)
    async with sessionmaker() as s, s.begin():
        await deal_service.archive_deal(admin, s, deal.id)
    await assert_summaries_match_rows(sessionmaker, ws)

    # Stages reordered: every furthest position is another one.
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(models.Stage)
            .where(models.Stage.pipeline_id == sales.pipeline_id)
            .values(position=100 - models.Stage.position)
        )
    await assert_summaries_match_rows(sessionmaker, ws)
    async with sessionmaker() as s, s.begin():
        await deal_service.update_stage(admin, s, stages[0], {"position": 50})
    await assert_summaries_match_rows(sessionmaker, ws)

    # Rows removed in SQL: moves, a deal (its moves go with it), a stage no deal is in now
    # (its moves go with it), every deal of an owner moved to another in one statement.
    async with sessionmaker() as s, s.begin():
        some = await s.scalar(
            text("SELECT deal_id FROM deal_stage_changes WHERE workspace_id = :ws LIMIT 1"),
            {"ws": ws},
        )
        await s.execute(
            delete(models.DealStageChange).where(models.DealStageChange.deal_id == some)
        )
    await assert_summaries_match_rows(sessionmaker, ws)
    async with sessionmaker() as s, s.begin():
        some = await s.scalar(
            text("SELECT deal_id FROM deal_stage_changes WHERE workspace_id = :ws LIMIT 1"),
            {"ws": ws},
        )
        await s.execute(delete(models.Deal).where(models.Deal.id == some))
    await assert_summaries_match_rows(sessionmaker, ws)
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(models.Deal)
            .where(models.Deal.workspace_id == ws, models.Deal.stage_id == stages[-1])
            .values(stage_id=stages[-2])
        )
        await s.execute(delete(models.Stage).where(models.Stage.id == stages[-1]))
    await assert_summaries_match_rows(sessionmaker, ws)
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(models.Deal)
            .where(models.Deal.workspace_id == ws)
            .values(owner_id=users[Role.MANAGER].id, amount=models.Deal.amount + 1)
        )
    await assert_summaries_match_rows(sessionmaker, ws)


async def test_concurrent_moves_and_edits_keep_the_summaries_exact(
    sessionmaker: async_sessionmaker[AsyncSession],
    sales: SalesData,  # noqa: F811
    actors: dict[Role, Actor],
    users: dict[Role, User],
) -> None:
    admin = actors[Role.ADMIN]
    stages = sales.stage_ids
    async with sessionmaker() as s:
        ids = list(
            (
                await s.scalars(
                    text("SELECT id FROM deals WHERE pipeline_id = :p AND archived_at IS NULL"),
                    {"p": sales.pipeline_id},
                )
            ).all()
        )[:4]
    rng = random.Random(3)
    owners = [users[Role.AGENT].id, users[Role.MANAGER].id, None]

    async def move(i: int) -> None:
        async with sessionmaker() as s, s.begin():
            await deal_service.move_deal(admin, s, ids[i % len(ids)], rng.choice(stages))

    async def edit(i: int) -> None:
        async with sessionmaker() as s, s.begin():
            await deal_service.update_deal(
                admin, s, ids[i % len(ids)], {"owner_id": owners[i % 3], "amount": i}
            )

    async def create(i: int) -> None:
        async with sessionmaker() as s, s.begin():
            await deal_service.create_deal(
                admin,
                s,
                {"title": f"c{i}", "pipeline_id": sales.pipeline_id, "currency": "EUR"},
            )

    work = [move(i) for i in range(16)] + [edit(i) for i in range(8)]
    work += [create(i) for i in range(6)]
    rng.shuffle(work)
    results = await asyncio.gather(*work, return_exceptions=True)
    # Stale versions may refuse a write (the service's optimistic check); nothing else.
    for result in results:
        assert result is None or "version" in str(result).lower(), result
    await assert_summaries_match_rows(sessionmaker, admin.workspace_id)
