"""Sales and service reports (issue 13, point 5): every number against an independent
computation in Python over a small generated data set with controlled times, every
drill-down run against its list, roles and tenants, CSAT ratings, and a fixed number of
statements per report."""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import (
    AuditLog,
    Conversation,
    DealStageChange,
    Role,
    Stage,
    User,
    Workspace,
)
from crm_graphql.services import api_keys, auth, customers
from crm_graphql.services import conversations as conversation_service
from crm_graphql.services import deals as deal_service
from crm_graphql.services.actor import Actor
from tests import support
from tests.api.conftest import StatementCounter
from tests.api.scenarios import Env

# The period of every report here: January to March 2026 in Paris, i.e. from
# 2025-12-31 23:00 UTC (CET) to 2026-03-31 22:00 UTC (CEST since March 29).
FROM, TO, ZONE = "2026-01-01", "2026-03-31", "Europe/Paris"
START = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
END = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
FIRST_DAY, LAST_DAY = date(2026, 1, 1), date(2026, 3, 31)
PROBABILITIES = (10, 30, 60, 90)
CENT = Decimal("0.01")


def in_period(instant: datetime | None) -> bool:
    return instant is not None and START <= instant < END


def cents(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def gid(type_name: str, id: uuid.UUID | None) -> str | None:
    return None if id is None else to_global_id(type_name, id)


def close(got: float | None, want: float | None) -> bool:
    """Equal up to float rounding (both null, or both numbers)."""
    if got is None or want is None:
        return got is want
    return got == pytest.approx(want)


def percentile(values: list[float], share: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def key_actor(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor, *scopes: str
) -> tuple[Actor, str]:
    async with sessionmaker() as s, s.begin():
        key, token = await api_keys.create_api_key(admin, s, name="Channel", scopes=scopes)
    actor = Actor(
        workspace_id=admin.workspace_id,
        role=Role.AGENT,
        api_key_id=key.id,
        scopes=frozenset(scopes),
    )
    return actor, token


# ------------------------------------------------------------------------------ sales


@dataclass
class DealRecord:
    id: uuid.UUID
    pipeline_id: uuid.UUID
    owner_id: uuid.UUID | None
    currency: str
    amount: Decimal
    path: list[int]  # positions of the stages it has been in, in order
    status: str
    created_at: datetime
    closed_at: datetime | None
    expected_close_date: date | None
    archived: bool = False

    @property
    def position(self) -> int:
        return self.path[-1]


@dataclass
class SalesData:
    pipeline_id: uuid.UUID
    stage_ids: list[uuid.UUID]
    deals: list[DealRecord] = field(default_factory=list)


async def seed_sales(
    sessionmaker: async_sessionmaker[AsyncSession],
    admin: Actor,
    owners: list[uuid.UUID | None],
    count: int,
    rng: random.Random,
    data: SalesData | None = None,
) -> SalesData:
    """Deals created in stages, moved forward (skipping some stages, now and then back),
    won, lost or left open, then given controlled creation and closing times."""
    async with sessionmaker() as s, s.begin():
        if data is None:
            pipeline = await deal_service.create_pipeline(
                admin,
                s,
                {
                    "name": f"Sales {uuid.uuid4().hex[:6]}",
                    "stages": [
                        {"name": f"S{i}", "probability": p} for i, p in enumerate(PROBABILITIES)
                    ],
                },
            )
            await s.flush()
            stages = (
                await s.scalars(
                    select(Stage).where(Stage.pipeline_id == pipeline.id).order_by(Stage.position)
                )
            ).all()
            data = SalesData(pipeline.id, [st.id for st in stages])
            # Noise: a deal of another pipeline, in the period, won.
            other = await deal_service.create_pipeline(
                admin, s, {"name": "Other", "stages": [{"name": "Only", "probability": 50}]}
            )
            noise = await deal_service.create_deal(
                admin, s, {"title": "Elsewhere", "pipeline_id": other.id, "currency": "EUR"}
            )
            await deal_service.update_deal(admin, s, noise.id, {"status": "won"})
        created: list[DealRecord] = []
        for i in range(count):
            start = rng.choice([0, 0, 0, 1])
            currency = rng.choice(["EUR", "EUR", "USD"])
            amount = Decimal(rng.randint(100, 500_000)) / 100
            expected = (
                date(2025, 12, 20) + timedelta(days=rng.randint(0, 120))
                if rng.random() < 0.8
                else None
            )
            owner = rng.choice(owners)
            deal = await deal_service.create_deal(
                admin,
                s,
                {
                    "title": f"Deal {i}",
                    "stage_id": data.stage_ids[start],
                    "amount": amount,
                    "currency": currency,
                    "owner_id": owner,
                    "expected_close_date": expected,
                },
            )
            path = [start]
            for _ in range(rng.randint(0, 3)):
                step = rng.choice([1, 1, 2, -1])  # forward, skipping, or back
                target = min(max(path[-1] + step, 0), len(data.stage_ids) - 1)
                if target != path[-1]:
                    await deal_service.move_deal(admin, s, deal.id, data.stage_ids[target])
                    path.append(target)
            status = "won" if i == 2 else rng.choice(["open", "open", "won", "lost"])
            if status != "open":
                await deal_service.update_deal(admin, s, deal.id, {"status": status})
            created_at = datetime(2025, 12, 10, tzinfo=UTC) + timedelta(
                minutes=rng.randint(0, 60 * 24 * 130)
            )
            # In the period in Paris, not in UTC (and the other way round for the last):
            # a report counting in the wrong time zone is off.
            if i in (0, 1):
                created_at = datetime(2025, 12, 31, 23, 30 + i, tzinfo=UTC)  # Jan 1 in Paris
            if i == 4:
                created_at = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)  # Apr 1 in Paris
            closed_at = None
            if status != "open":
                closed_at = created_at + timedelta(minutes=rng.randint(30, 60 * 24 * 60))
                if i == 2:
                    closed_at = datetime(2025, 12, 31, 23, 10, tzinfo=UTC)  # Jan 1 in Paris
                    created_at = closed_at - timedelta(days=3)
            await s.execute(
                text("UPDATE deals SET created_at = :c, closed_at = :x WHERE id = :id"),
                {"c": created_at, "x": closed_at, "id": deal.id},
            )
            record = DealRecord(
                deal.id,
                data.pipeline_id,
                owner,
                currency,
                amount,
                path,
                status,
                created_at,
                closed_at,
                expected,
            )
            if i == 3:  # an archived deal counts nowhere
                await deal_service.archive_deal(admin, s, deal.id)
                record.archived = True
            created.append(record)
    data.deals.extend(created)
    return data


def expected_sales(data: SalesData, keep: Callable[[DealRecord], bool]) -> dict[str, Any]:
    """The sales report computed in Python from the generated records."""
    deals = [d for d in data.deals if not d.archived and keep(d)]
    opened = [d for d in deals if d.status == "open"]
    stages = []
    cohort = [d for d in deals if in_period(d.created_at)]
    weighted_total: dict[str, Decimal] = defaultdict(Decimal)
    weighted_count: dict[str, int] = defaultdict(int)
    for position, probability in enumerate(PROBABILITIES):
        here = [d for d in opened if d.position == position]
        value: dict[str, list[Any]] = {}
        for d in here:
            entry = value.setdefault(d.currency, [Decimal(0), 0])
            entry[0] += d.amount
            entry[1] += 1
            weighted_total[d.currency] += d.amount * probability / 100
            weighted_count[d.currency] += 1
        reached = sum(1 for d in cohort if max(d.path) >= position)
        following = sum(1 for d in cohort if max(d.path) >= position + 1)
        stages.append(
            {
                "openCount": len(here),
                "openValue": {c: (cents(v), n) for c, (v, n) in value.items()},
                "weightedValue": {
                    c: (cents(v * probability / 100), n) for c, (v, n) in value.items()
                },
                "reachedCount": reached,
                "conversionToNext": (
                    following / reached if reached and position + 1 < len(PROBABILITIES) else None
                ),
            }
        )
    closed = [d for d in deals if in_period(d.closed_at)]
    won = [d for d in closed if d.status == "won"]
    lost = [d for d in closed if d.status == "lost"]
    size: dict[str, list[Decimal]] = defaultdict(list)
    for d in won:
        size[d.currency].append(d.amount)
    cycle = [(d.closed_at - d.created_at).total_seconds() / 86_400 for d in won if d.closed_at]
    forecast: dict[tuple[str, str | None, str], list[Any]] = {}
    for d in opened:
        if d.expected_close_date is None or not FIRST_DAY <= d.expected_close_date <= LAST_DAY:
            continue
        key = (
            d.expected_close_date.replace(day=1).isoformat(),
            gid("User", d.owner_id),
            d.currency,
        )
        entry = forecast.setdefault(key, [0, Decimal(0), Decimal(0)])
        entry[0] += 1
        entry[1] += d.amount
        entry[2] += d.amount * PROBABILITIES[d.position] / 100
    return {
        "stages": stages,
        "won": len(won),
        "lost": len(lost),
        "rate": len(won) / (len(won) + len(lost)) if won or lost else None,
        "averageDealSize": {
            c: (cents(sum(v, Decimal(0)) / len(v)), len(v)) for c, v in size.items()
        },
        "cycle": (sum(cycle) / len(cycle) if cycle else None, len(won)),
        "weightedPipeline": {c: (cents(v), weighted_count[c]) for c, v in weighted_total.items()},
        "forecast": {
            k: (n, cents(amount), cents(weighted)) for k, (n, amount, weighted) in forecast.items()
        },
    }


DRILL = "drillDown { list filter }"
MONEY = f"currency amount count {DRILL}"
SALES_REPORT = f"""
query($p: ID!, $owners: [ID!], $f: DealFilter) {{
  salesReport(pipelineId: $p, from: "{FROM}", to: "{TO}", timeZone: "{ZONE}",
              ownerIds: $owners, filter: $f) {{
    from to timeZone pipeline {{ id }}
    stages {{
      stage {{ id position probability }}
      openCount openValue {{ {MONEY} }} weightedValue {{ {MONEY} }}
      reachedCount conversionToNext {DRILL} reachedDrillDown {{ list filter }}
    }}
    winRate {{ won lost rate {DRILL} wonDrillDown {{ list filter }}
              lostDrillDown {{ list filter }} }}
    averageDealSize {{ {MONEY} }}
    averageCycleTime {{ averageDays count {DRILL} }}
    weightedPipeline {{ {MONEY} }}
    forecast {{ month owner {{ id }} currency count amount weightedAmount {DRILL} }}
  }}
}}"""

DEAL_ROWS = """
query($f: DealFilter) { deals(filter: $f, first: 100) { totalCount edges { node { id amount } } } }
"""
CONVERSATION_ROWS = """
query($f: ConversationFilter) {
  conversations(filter: $f, first: 100) { totalCount edges { node { id } } }
}"""


async def drilled(client: support.GraphQLClient, drill: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a drill-down names, through its list (all of them: data sets are small)."""
    document = {"deals": DEAL_ROWS, "conversations": CONVERSATION_ROWS}[drill["list"]]
    result = (await client(document, {"f": drill["filter"]})).ok()[drill["list"]]
    nodes = [e["node"] for e in result["edges"]]
    assert result["totalCount"] == len(nodes) < 100
    return nodes


def amount_of(rows: list[dict[str, Any]]) -> str:
    return cents(sum((Decimal(r["amount"]) for r in rows), Decimal(0)))


async def check_sales(
    client: support.GraphQLClient,
    data: SalesData,
    keep: Callable[[DealRecord], bool],
    variables: dict[str, Any],
) -> dict[str, Any]:
    report = await client(SALES_REPORT, {"p": gid("Pipeline", data.pipeline_id), **variables})
    got = report.ok()["salesReport"]
    want = expected_sales(data, keep)
    assert (got["from"], got["to"], got["timeZone"]) == (FROM, TO, ZONE)
    assert [s["stage"]["probability"] for s in got["stages"]] == list(PROBABILITIES)
    for stage, expected in zip(got["stages"], want["stages"], strict=True):
        assert stage["openCount"] == expected["openCount"]
        assert {m["currency"]: (m["amount"], m["count"]) for m in stage["openValue"]} == (
            expected["openValue"]
        )
        assert {m["currency"]: (m["amount"], m["count"]) for m in stage["weightedValue"]} == (
            expected["weightedValue"]
        )
        assert stage["reachedCount"] == expected["reachedCount"]
        assert close(stage["conversionToNext"], expected["conversionToNext"])
        assert len(await drilled(client, stage["drillDown"])) == stage["openCount"]
        reached = await drilled(client, stage["reachedDrillDown"])
        assert len(reached) == stage["reachedCount"]
        for cell in stage["openValue"]:
            rows = await drilled(client, cell["drillDown"])
            assert (amount_of(rows), len(rows)) == (cell["amount"], cell["count"])
    win = got["winRate"]
    assert (win["won"], win["lost"]) == (want["won"], want["lost"])
    assert close(win["rate"], want["rate"])
    assert len(await drilled(client, win["drillDown"])) == win["won"] + win["lost"]
    assert len(await drilled(client, win["wonDrillDown"])) == win["won"]
    assert len(await drilled(client, win["lostDrillDown"])) == win["lost"]
    sizes = {m["currency"]: (m["amount"], m["count"]) for m in got["averageDealSize"]}
    assert sizes == want["averageDealSize"]
    for cell in got["averageDealSize"]:
        rows = await drilled(client, cell["drillDown"])
        assert len(rows) == cell["count"]
        assert cents(Decimal(amount_of(rows)) / len(rows)) == cell["amount"]
    cycle = got["averageCycleTime"]
    assert close(cycle["averageDays"], want["cycle"][0])
    assert cycle["count"] == want["cycle"][1]
    assert len(await drilled(client, cycle["drillDown"])) == cycle["count"]
    weighted = {m["currency"]: (m["amount"], m["count"]) for m in got["weightedPipeline"]}
    assert weighted == want["weightedPipeline"]
    for cell in got["weightedPipeline"]:
        assert len(await drilled(client, cell["drillDown"])) == cell["count"]
    forecast = {
        (f["month"], f["owner"]["id"] if f["owner"] else None, f["currency"]): (
            f["count"],
            f["amount"],
            f["weightedAmount"],
        )
        for f in got["forecast"]
    }
    assert forecast == want["forecast"]
    for cell in got["forecast"]:
        rows = await drilled(client, cell["drillDown"])
        assert (len(rows), amount_of(rows)) == (cell["count"], cell["amount"])
    return got


@pytest.fixture
async def sales(
    sessionmaker: async_sessionmaker[AsyncSession],
    actors: dict[Role, Actor],
    users: dict[Role, User],
) -> SalesData:
    owners = [users[Role.AGENT].id, users[Role.MANAGER].id, None]
    return await seed_sales(sessionmaker, actors[Role.ADMIN], owners, 40, random.Random(13))


async def test_sales_report_matches_an_independent_computation(
    sales: SalesData, as_role: dict[Role, support.GraphQLClient]
) -> None:
    got = await check_sales(as_role[Role.ADMIN], sales, lambda d: True, {})
    # The data exercises what the report computes.
    assert got["winRate"]["won"] and got["winRate"]["lost"] and got["forecast"]
    assert sum(s["reachedCount"] for s in got["stages"][1:]) > 0
    assert {m["currency"] for m in got["weightedPipeline"]} == {"EUR", "USD"}


async def test_sales_report_within_owners_and_the_callers_filter(
    sales: SalesData, as_role: dict[Role, support.GraphQLClient], users: dict[Role, User]
) -> None:
    agent = users[Role.AGENT].id
    got = await check_sales(
        as_role[Role.VIEWER],
        sales,
        lambda d: d.owner_id == agent and d.currency == "EUR",
        {"owners": [gid("User", agent)], "f": {"currency": {"eq": "EUR"}}},
    )
    # The caller's filter is part of every drill-down.
    assert got["winRate"]["drillDown"]["filter"]["and"][0] == {"currency": {"eq": "EUR"}}


async def test_sales_report_of_an_api_key_and_of_another_workspace(
    sales: SalesData, env: Env, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    reader, _ = await env.api_key(api_keys.DEALS_READ)
    await check_sales(reader, sales, lambda d: True, {})
    chat, _ = await env.api_key(api_keys.CONVERSATIONS_READ)
    refused = await chat(SALES_REPORT, {"p": gid("Pipeline", sales.pipeline_id)})
    assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]
    # Another workspace's admin does not find the pipeline.
    async with sessionmaker() as s, s.begin():
        other = await auth.create_workspace(s, name=f"Other {uuid.uuid4().hex[:8]}")
        stranger = await auth.create_user(
            s,
            workspace=other,
            email=f"stranger-{uuid.uuid4().hex[:8]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
    client = await env.anonymous.logged_in(stranger.email, support.PASSWORD)
    missing = await client(SALES_REPORT, {"p": gid("Pipeline", sales.pipeline_id)})
    assert [e["extensions"]["code"] for e in missing.errors] == ["NOT_FOUND"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ('from: "2026-02-01", to: "2026-01-01"', "to"),
        ('from: "2026-01-01", to: "2026-02-01", timeZone: "Mars/Olympus"', "timeZone"),
        ('from: "2026-01-01", to: "2026-02-01", timeZone: "../../etc/passwd"', "timeZone"),
        ('from: "0001-01-01", to: "9999-12-31"', None),
    ],
)
async def test_a_bad_period_is_a_validation_error(
    sales: SalesData, env: Env, arguments: str, field: str | None
) -> None:
    pipeline = gid("Pipeline", sales.pipeline_id)
    result = await env.admin(f'{{ salesReport(pipelineId: "{pipeline}", {arguments}) {{ to }} }}')
    assert [e["extensions"]["code"] for e in result.errors] == ["VALIDATION"], result.body
    service = await env.admin(f"{{ serviceReport({arguments}) {{ to }} }}")
    assert [e["extensions"]["code"] for e in service.errors] == ["VALIDATION"], service.body


async def test_move_deal_writes_the_stage_history(
    sales: SalesData, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as s:
        changes = (
            await s.execute(
                select(DealStageChange.deal_id, DealStageChange.from_stage_id)
                .where(DealStageChange.deal_id.in_([d.id for d in sales.deals]))
                .order_by(DealStageChange.deal_id, DealStageChange.changed_at, DealStageChange.id)
            )
        ).all()
    left: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for deal_id, from_stage in changes:
        left[deal_id].append(from_stage)
    for deal in sales.deals:
        assert left.get(deal.id, []) == [sales.stage_ids[p] for p in deal.path[:-1]]


# ---------------------------------------------------------------------------- service


BACKLOG_AGES = [
    timedelta(minutes=30),
    timedelta(hours=5),
    timedelta(hours=30),
    timedelta(days=3),
    timedelta(days=9),
    timedelta(days=20),
]


@dataclass
class ConversationRecord:
    id: uuid.UUID
    channel: str
    status: str
    assignee_id: uuid.UUID | None
    is_private: bool
    created_at: datetime
    first_customer_at: datetime | None = None
    first_response_at: datetime | None = None
    closed_at: datetime | None = None
    score: int | None = None
    rated_at: datetime | None = None


async def seed_service(
    sessionmaker: async_sessionmaker[AsyncSession],
    admin: Actor,
    channel_key: Actor,
    assignees: list[uuid.UUID | None],
    count: int,
    rng: random.Random,
    now: datetime,
) -> list[ConversationRecord]:
    """Conversations started, answered, closed and rated through the services (messages in
    the order of a generated timeline), then given that timeline's times."""
    records: list[ConversationRecord] = []
    async with sessionmaker() as s, s.begin():
        customer = await customers.create_customer(admin, s, {"name": "Service customer"})
    for i in range(count + len(BACKLOG_AGES)):
        # The last ones: open or pending now, of ages in every band (two in some).
        age = BACKLOG_AGES[i - count] if i >= count else None
        records.append(
            await seed_conversation(
                sessionmaker, admin, channel_key, customer.id, assignees, rng, now, age
            )
        )
    return records


async def tx(
    sessionmaker: async_sessionmaker[AsyncSession], action: Callable[[AsyncSession], Any]
) -> Any:
    """One transaction per change: a conversation's writers lock it first thing."""
    async with sessionmaker() as s, s.begin():
        return await action(s)


async def seed_conversation(
    sessionmaker: async_sessionmaker[AsyncSession],
    admin: Actor,
    channel_key: Actor,
    customer_id: uuid.UUID,
    assignees: list[uuid.UUID | None],
    rng: random.Random,
    now: datetime,
    age: timedelta | None,
) -> ConversationRecord:
    """One conversation of ``seed_service``: a generated timeline played through the
    services, then given the timeline's times."""

    async def run(action: Callable[[AsyncSession], Any]) -> Any:
        return await tx(sessionmaker, action)

    channel = rng.choice(["chat", "email", "phone", "social"])
    assignee = rng.choice(assignees)
    private = assignee is not None and rng.random() < 0.25
    conversation = await run(
        lambda s: conversation_service.start_conversation(
            admin,
            s,
            {
                "customer_id": customer_id,
                "channel": channel,
                "assignee_id": assignee,
                "is_private": private,
            },
        )
    )
    id = conversation.id
    backlog = age is not None
    if age is not None:
        t0 = now - age
    else:
        t0 = datetime(2025, 12, 20, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 60 * 24 * 110))
    record = ConversationRecord(id, channel, "open", assignee, private, t0)
    timeline: list[tuple[str, datetime]] = []
    if rng.random() < 0.2:  # an agent writes first: not a response
        timeline.append(("agent", t0 + timedelta(minutes=1)))
    if rng.random() < 0.9:
        asked = t0 + timedelta(minutes=rng.randint(2, 120))
        timeline.append(("customer", asked))
        record.first_customer_at = asked
        if rng.random() < 0.8:
            answered = asked + timedelta(seconds=rng.randint(30, 60 * 60 * 48))
            timeline.append(("agent", answered))
            record.first_response_at = answered
            timeline.append(("agent", answered + timedelta(minutes=5)))
    if not private:  # no channel reaches a private conversation: its times are set below
        for author, _ in timeline:
            if author == "customer":
                await run(
                    lambda s: conversation_service.post_customer_message(
                        channel_key, s, id, body="Hello?"
                    )
                )
            else:
                await run(
                    lambda s: conversation_service.send_message(admin, s, id, body="Here to help")
                )
        # The writers kept the service times (real clock) exactly when expected.
        row = await run(lambda s: s.get(Conversation, id))
        assert (row.first_customer_message_at is not None) == bool(record.first_customer_at)
        assert (row.first_response_at is not None) == bool(record.first_response_at)
    end = (timeline[-1][1] if timeline else t0) + timedelta(minutes=10)
    if backlog:
        status = rng.choice(["open", "pending"])
    else:
        status = rng.choice(["open", "pending", "closed", "closed"])
    if status != "open":
        await run(lambda s: conversation_service.set_conversation_status(admin, s, id, status))
    record.status = status
    if status == "closed":
        record.closed_at = end + timedelta(hours=rng.randint(0, 72))
        if rng.random() < 0.7:
            score = rng.randint(1, 5)
            record.score, record.rated_at = score, record.closed_at + timedelta(hours=1)
    if record.score is not None and not private:
        if rng.random() < 0.3:  # rated, then rated again: the second one counts
            await run(
                lambda s: conversation_service.rate_conversation(
                    channel_key, s, id, 6 - record.score, "first thoughts"
                )
            )
        await run(
            lambda s: conversation_service.rate_conversation(
                channel_key, s, id, record.score, "thanks"
            )
        )

    async def set_times(s: AsyncSession) -> None:
        await s.execute(
            text(
                "UPDATE conversations SET created_at = :t0, first_customer_message_at = :fc,"
                " first_response_at = :fr, closed_at = :cl, rated_at = :ra,"
                " rating_score = :score WHERE id = :id"
            ),
            {
                "t0": t0,
                "fc": record.first_customer_at,
                "fr": record.first_response_at,
                "cl": record.closed_at,
                "ra": record.rated_at,
                "score": record.score,
                "id": id,
            },
        )
        for seq, (_, at) in enumerate([] if private else timeline, start=1):
            await s.execute(
                text(
                    "UPDATE messages SET created_at = :at WHERE conversation_id = :id"
                    " AND seq = :seq"
                ),
                {"at": at, "id": id, "seq": seq},
            )

    await run(set_times)
    return record


def expected_service(
    records: list[ConversationRecord], sees: Callable[[ConversationRecord], bool], now: datetime
) -> dict[str, Any]:
    visible = [r for r in records if sees(r)]
    volume: dict[tuple[str, str], int] = defaultdict(int)
    for r in visible:
        if in_period(r.created_at):
            volume[(r.channel.upper(), r.status.upper())] += 1

    def times(
        chosen: list[ConversationRecord], seconds: Callable[[ConversationRecord], float]
    ) -> dict[str, Any]:
        groups: dict[str, dict[Any, list[float]]] = {
            "overall": defaultdict(list),
            "byAgent": defaultdict(list),
            "byChannel": defaultdict(list),
        }
        for r in chosen:
            groups["overall"][None].append(seconds(r))
            groups["byAgent"][gid("User", r.assignee_id)].append(seconds(r))
            groups["byChannel"][r.channel.upper()].append(seconds(r))
        return {
            name: {
                key: (len(v), percentile(v, 0.5), percentile(v, 0.9)) for key, v in found.items()
            }
            for name, found in groups.items()
        }

    answered = [r for r in visible if in_period(r.first_response_at)]
    closed = [r for r in visible if in_period(r.closed_at)]
    rated = [r for r in visible if in_period(r.rated_at)]
    csat: dict[str, dict[Any, list[int]]] = {
        "overall": defaultdict(list),
        "byAgent": defaultdict(list),
        "byChannel": defaultdict(list),
    }
    for r in rated:
        assert r.score is not None
        csat["overall"][None].append(r.score)
        csat["byAgent"][gid("User", r.assignee_id)].append(r.score)
        csat["byChannel"][r.channel.upper()].append(r.score)
    bands = [0, 0, 0, 0]
    for r in visible:
        if r.status in ("open", "pending"):
            hours = (now - r.created_at).total_seconds() / 3600
            bands[0 if hours < 1 else 1 if hours < 24 else 2 if hours < 24 * 7 else 3] += 1
    return {
        "volume": dict(volume),
        "firstResponse": times(
            answered,
            lambda r: (r.first_response_at - r.first_customer_at).total_seconds(),  # type: ignore[operator]
        ),
        "resolution": times(closed, lambda r: (r.closed_at - r.created_at).total_seconds()),  # type: ignore[operator]
        "csat": {
            name: {
                key: (len(v), sum(1 for x in v if x >= 4), sum(v) / len(v))
                for key, v in found.items()
            }
            for name, found in csat.items()
        },
        "backlog": bands,
    }


TIMES = f"count p50Seconds p90Seconds {DRILL}"
TIME_GROUPS = f"""overall {{ {TIMES} }} byAgent {{ agent {{ id }} {TIMES} }}
    byChannel {{ channel {TIMES} }}"""
CSAT = f"count satisfied csat averageScore {DRILL} satisfiedDrillDown {{ list filter }}"
SERVICE_REPORT = f"""
query($channels: [Channel!], $assignees: [ID!], $f: ConversationFilter) {{
  serviceReport(from: "{FROM}", to: "{TO}", timeZone: "{ZONE}", channels: $channels,
                assigneeIds: $assignees, filter: $f) {{
    from to timeZone asOf
    volume {{ channel status count {DRILL} }}
    firstResponse {{ {TIME_GROUPS} }}
    resolution {{ {TIME_GROUPS} }}
    backlog {{ label minAgeHours maxAgeHours openCount pendingCount count {DRILL} }}
    csat {{ overall {{ {CSAT} }} byAgent {{ agent {{ id }} {CSAT} }}
           byChannel {{ channel {CSAT} }} }}
  }}
}}"""


async def check_service(
    client: support.GraphQLClient,
    records: list[ConversationRecord],
    sees: Callable[[ConversationRecord], bool],
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    result = await client(SERVICE_REPORT, variables or {})
    got = result.ok()["serviceReport"]
    now = datetime.fromisoformat(got["asOf"])
    want = expected_service(records, sees, now)
    assert {(v["channel"], v["status"]): v["count"] for v in got["volume"]} == want["volume"]
    for cell in got["volume"]:
        assert len(await drilled(client, cell["drillDown"])) == cell["count"]

    def keyed(group: str, stats: dict[str, Any]) -> Any:
        if group == "byAgent":
            return stats["agent"]["id"] if stats["agent"] else None
        return stats["channel"] if group == "byChannel" else None

    for metric in ("firstResponse", "resolution"):
        for group in ("overall", "byAgent", "byChannel"):
            found = got[metric][group]
            cells = [found] if group == "overall" else found
            values = {
                keyed(group, c): (c["count"], c["p50Seconds"], c["p90Seconds"])
                for c in cells
                if c["count"]
            }
            expected = want[metric][group]
            assert values.keys() == expected.keys(), (metric, group)
            for key, (n, p50, p90) in expected.items():
                assert values[key][0] == n, (metric, group, key)
                assert values[key][1] == pytest.approx(p50), (metric, group, key)
                assert values[key][2] == pytest.approx(p90), (metric, group, key)
            for c in cells:
                assert len(await drilled(client, c["drillDown"])) == c["count"]
    for group in ("overall", "byAgent", "byChannel"):
        found = got["csat"][group]
        cells = [found] if group == "overall" else found
        values = {
            keyed(group, c): (c["count"], c["satisfied"], c["averageScore"])
            for c in cells
            if c["count"]
        }
        expected = want["csat"][group]
        assert values.keys() == expected.keys(), group
        for key, (n, satisfied, average) in expected.items():
            assert values[key][:2] == (n, satisfied), (group, key)
            assert values[key][2] == pytest.approx(average)
        for c in cells:
            if c["count"]:
                assert c["csat"] == pytest.approx(c["satisfied"] / c["count"])
            assert len(await drilled(client, c["drillDown"])) == c["count"]
            assert len(await drilled(client, c["satisfiedDrillDown"])) == c["satisfied"]
    assert [b["count"] for b in got["backlog"]] == want["backlog"]
    for band in got["backlog"]:
        assert band["openCount"] + band["pendingCount"] == band["count"]
        assert len(await drilled(client, band["drillDown"])) == band["count"]
    return got


@dataclass
class ServiceData:
    records: list[ConversationRecord]
    channel_token: str


@pytest.fixture
async def service(
    sessionmaker: async_sessionmaker[AsyncSession],
    actors: dict[Role, Actor],
    users: dict[Role, User],
) -> ServiceData:
    admin = actors[Role.ADMIN]
    channel, token = await key_actor(sessionmaker, admin, api_keys.CONVERSATIONS_WRITE)
    assignees = [users[Role.AGENT].id, users[Role.MANAGER].id, None]
    records = await seed_service(
        sessionmaker, admin, channel, assignees, 40, random.Random(5), datetime.now(UTC)
    )
    return ServiceData(records, token)


async def test_service_report_matches_an_independent_computation(
    service: ServiceData, as_role: dict[Role, support.GraphQLClient]
) -> None:
    got = await check_service(as_role[Role.ADMIN], service.records, lambda r: True)
    assert got["csat"]["overall"]["count"] and got["firstResponse"]["overall"]["count"]
    assert all(b["count"] for b in got["backlog"])
    assert any(r.is_private for r in service.records)


async def test_service_report_shows_an_agent_what_their_list_shows(
    service: ServiceData, as_role: dict[Role, support.GraphQLClient], users: dict[Role, User]
) -> None:
    agent = users[Role.AGENT].id
    await check_service(
        as_role[Role.AGENT],
        service.records,
        lambda r: not r.is_private or r.assignee_id == agent,
    )


async def test_service_report_of_an_api_key_within_channels_and_filter(
    service: ServiceData, env: Env, users: dict[Role, User]
) -> None:
    reader, _ = await env.api_key(api_keys.CONVERSATIONS_READ)
    manager = users[Role.MANAGER].id
    got = await check_service(
        reader,
        service.records,
        lambda r: not r.is_private and r.channel in ("chat", "email") and r.assignee_id != manager,
        {
            "channels": ["CHAT", "EMAIL"],
            "f": {"assigneeId": {"ne": gid("User", manager)}},
        },
    )
    assert got["csat"]["overall"]["drillDown"]["filter"]["and"][0] == {
        "assigneeId": {"ne": gid("User", manager)}
    }
    deals_only, _ = await env.api_key(api_keys.DEALS_READ)
    refused = await deals_only(SERVICE_REPORT)
    assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]


async def test_another_workspace_sees_none_of_the_service(service: ServiceData, env: Env) -> None:
    async with env.sessionmaker() as s, s.begin():
        other = await auth.create_workspace(s, name=f"Other {uuid.uuid4().hex[:8]}")
        stranger = await auth.create_user(
            s,
            workspace=other,
            email=f"stranger-{uuid.uuid4().hex[:8]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
    client = await env.anonymous.logged_in(stranger.email, support.PASSWORD)
    got = (await client(SERVICE_REPORT)).ok()["serviceReport"]
    assert got["volume"] == [] and got["csat"]["overall"]["count"] == 0
    assert sum(b["count"] for b in got["backlog"]) == 0


# ---------------------------------------------------------------------- service times


async def test_writers_keep_first_response_and_closing_times(
    sessionmaker: async_sessionmaker[AsyncSession], actors: dict[Role, Actor]
) -> None:
    admin = actors[Role.ADMIN]
    channel, _ = await key_actor(sessionmaker, admin, api_keys.CONVERSATIONS_WRITE)

    async def state(conversation_id: uuid.UUID) -> Conversation:
        async with sessionmaker() as s:
            row = await s.get(Conversation, conversation_id)
            assert row is not None
            return row

    async def step(action: Callable[[AsyncSession], Any]) -> None:
        async with sessionmaker() as s, s.begin():
            await action(s)

    async with sessionmaker() as s, s.begin():
        customer = await customers.create_customer(admin, s, {"name": "Timed"})
        started = await conversation_service.start_conversation(
            admin, s, {"customer_id": customer.id, "channel": "chat", "body": "Hi, we noticed..."}
        )
    id = started.id
    row = await state(id)
    assert (row.first_customer_message_at, row.first_response_at) == (None, None)
    await step(lambda s: conversation_service.post_customer_message(channel, s, id, body="?"))
    row = await state(id)
    asked = row.first_customer_message_at
    assert asked is not None and asked == row.last_message_at and row.first_response_at is None
    await step(lambda s: conversation_service.post_customer_message(channel, s, id, body="??"))
    assert (await state(id)).first_customer_message_at == asked
    await step(lambda s: conversation_service.send_message(admin, s, id, body="Sure"))
    row = await state(id)
    answered = row.first_response_at
    assert answered is not None and answered == row.last_message_at and answered > asked
    await step(lambda s: conversation_service.send_message(admin, s, id, body="More"))
    assert (await state(id)).first_response_at == answered
    await step(lambda s: conversation_service.set_conversation_status(admin, s, id, "closed"))
    closed = (await state(id)).closed_at
    assert closed is not None and closed >= answered
    await step(lambda s: conversation_service.post_customer_message(channel, s, id, body="Again"))
    row = await state(id)
    assert (row.status.value, row.closed_at) == ("open", None)  # reopened
    await step(lambda s: conversation_service.set_conversation_status(admin, s, id, "pending"))
    assert (await state(id)).closed_at is None
    await step(lambda s: conversation_service.set_conversation_status(admin, s, id, "closed"))
    assert (await state(id)).closed_at is not None
    await step(lambda s: conversation_service.send_message(admin, s, id, body="Reopen"))
    row = await state(id)
    assert (row.status.value, row.closed_at) == ("open", None)
    assert (row.first_customer_message_at, row.first_response_at) == (asked, answered)


# ---------------------------------------------------------------------------- ratings

RATE = """
mutation($i: RateConversationInput!) {
  rateConversation(input: $i) {
    conversation { id rating { score comment ratedAt } }
    errors { code field message }
  }
}"""


async def test_rate_conversation_validates_replaces_and_audits(
    env: Env,
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    channel, key_id = await env.api_key(api_keys.CONVERSATIONS_WRITE)
    conversation = await env.conversation()
    for score in (0, 6, -1):
        result = await channel(RATE, {"i": {"conversationId": conversation, "score": score}})
        payload = result.ok()["rateConversation"]
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", "score")]
    long = {"conversationId": conversation, "score": 3, "comment": "x" * 2001}
    payload = (await channel(RATE, {"i": long})).ok()["rateConversation"]
    assert [e["code"] for e in payload["errors"]] == ["VALIDATION"]
    # An agent (any user) may not rate; a key without the write scope neither.
    for client in (
        as_role[Role.AGENT],
        as_role[Role.ADMIN],
        (await env.api_key(api_keys.CONVERSATIONS_READ))[0],
    ):
        payload = (await client(RATE, {"i": {"conversationId": conversation, "score": 5}})).ok()
        assert [e["code"] for e in payload["rateConversation"]["errors"]] == ["FORBIDDEN"]
    first = {"conversationId": conversation, "score": 2, "comment": "slow"}
    rated = (await channel(RATE, {"i": first})).ok()["rateConversation"]
    assert rated["errors"] == [] and rated["conversation"]["rating"]["score"] == 2
    again = {"conversationId": conversation, "score": 5, "comment": " solved in the end "}
    rated = (await channel(RATE, {"i": again})).ok()["rateConversation"]
    assert rated["conversation"]["rating"]["score"] == 5
    assert rated["conversation"]["rating"]["comment"] == "solved in the end"
    read = await env.admin(
        "query($id: ID!) { node(id: $id) { ... on Conversation { rating { score comment } } } }",
        {"id": conversation},
    )
    assert read.ok()["node"]["rating"] == {"score": 5, "comment": "solved in the end"}
    async with sessionmaker() as s:
        audits = (
            await s.scalars(
                select(AuditLog)
                .where(AuditLog.workspace_id == workspace.id, AuditLog.action == "rateConversation")
                .order_by(AuditLog.created_at, AuditLog.id)
            )
        ).all()
    assert [a.actor_api_key_id for a in audits] == [key_id, key_id]
    assert [a.changes["rating_score"] for a in audits] == [
        {"before": None, "after": 2},
        {"before": 2, "after": 5},
    ]


async def test_rating_another_workspaces_or_a_private_conversation_is_not_found(
    env: Env, sessionmaker: async_sessionmaker[AsyncSession], users: dict[Role, User]
) -> None:
    async with sessionmaker() as s, s.begin():
        other = await auth.create_workspace(s, name=f"Other {uuid.uuid4().hex[:8]}")
        stranger = await auth.create_user(
            s,
            workspace=other,
            email=f"stranger-{uuid.uuid4().hex[:8]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
        admin = Actor(workspace_id=other.id, role=Role.ADMIN, user_id=stranger.id)
        customer = await customers.create_customer(admin, s, {"name": "Elsewhere"})
        theirs = await conversation_service.start_conversation(
            admin, s, {"customer_id": customer.id, "channel": "chat"}
        )
    channel, _ = await env.api_key(api_keys.CONVERSATIONS_WRITE)
    foreign = {"conversationId": gid("Conversation", theirs.id), "score": 5}
    payload = (await channel(RATE, {"i": foreign})).ok()["rateConversation"]
    assert [e["code"] for e in payload["errors"]] == ["NOT_FOUND"]
    private = await env.make(
        "startConversation",
        customerId=await env.customer(),
        channel="CHAT",
        isPrivate=True,
        assigneeId=gid("User", users[Role.MANAGER].id),
    )
    payload = (await channel(RATE, {"i": {"conversationId": private, "score": 4}})).ok()
    assert [e["code"] for e in payload["rateConversation"]["errors"]] == ["NOT_FOUND"]


# -------------------------------------------------------------------------- statements


async def test_reports_take_a_fixed_number_of_statements(
    sessionmaker: async_sessionmaker[AsyncSession],
    actors: dict[Role, Actor],
    users: dict[Role, User],
    as_role: dict[Role, support.GraphQLClient],
    counter: StatementCounter,
) -> None:
    admin, client = actors[Role.ADMIN], as_role[Role.ADMIN]
    owners = [users[Role.AGENT].id, users[Role.MANAGER].id]
    channel, _ = await key_actor(sessionmaker, admin, api_keys.CONVERSATIONS_WRITE)
    rng = random.Random(7)
    sales = await seed_sales(sessionmaker, admin, owners, 5, rng)
    await seed_service(sessionmaker, admin, channel, owners, 5, rng, datetime.now(UTC))
    counts: dict[str, list[int]] = {"sales": [], "service": []}
    for round in range(2):
        if round:  # ten times the data
            await seed_sales(sessionmaker, admin, owners, 50, rng, sales)
            await seed_service(sessionmaker, admin, channel, owners, 50, rng, datetime.now(UTC))
        counter.statements.clear()
        (await client(SALES_REPORT, {"p": gid("Pipeline", sales.pipeline_id)})).ok()
        counts["sales"].append(len(counter.statements))
        counter.statements.clear()
        (await client(SERVICE_REPORT)).ok()
        counts["service"].append(len(counter.statements))
    print("statements per report:", counts)
    assert counts["sales"][0] == counts["sales"][1] <= 12, counts
    assert counts["service"][0] == counts["service"][1] <= 12, counts
