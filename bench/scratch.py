"""What the write-cost measurements start from (``rollup_write_cost``, ``changes_cost``,
``sync_costs``): a workspace of their own on a scratch database, with an admin and an
agent, a customer, a five-stage pipeline and a deal in it; and how they time calls with
triggers on and off."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from crm_graphql.models import Customer, Deal, Role
from crm_graphql.services import auth, customers, deals
from crm_graphql.services.actor import Actor


@dataclass
class Scratch:
    admin: Actor
    user_id: uuid.UUID  # the admin's
    agent_id: uuid.UUID
    customer: Customer
    stage_ids: list[uuid.UUID]
    deal: Deal


async def scratch_sales(sessionmaker: Any, label: str) -> Scratch:
    async with sessionmaker() as s, s.begin():
        ws = await auth.create_workspace(s, name=f"{label} {uuid.uuid4().hex[:6]}")
        users = [
            await auth.create_user(
                s,
                workspace=ws,
                email=f"{uuid.uuid4().hex[:8]}@example.com",
                password="scratch-bench-password",
                role=role,
                name=role.value.title(),
            )
            for role in (Role.ADMIN, Role.AGENT)
        ]
    admin = Actor(workspace_id=ws.id, role=Role.ADMIN, user_id=users[0].id)
    async with sessionmaker() as s, s.begin():
        customer = await customers.create_customer(admin, s, {"name": "Buyer"})
        pipeline = await deals.create_pipeline(
            admin, s, {"name": "P", "stages": [{"name": f"S{i}", "probability": 10 * i} for i in range(5)]},
        )  # fmt: skip
        await s.flush()
        stage_ids = list(
            (await s.execute(text("SELECT id FROM stages WHERE pipeline_id = :p ORDER BY position"),
                             {"p": pipeline.id})).scalars()
        )  # fmt: skip
        deal = await deals.create_deal(
            admin, s, {"title": "D", "pipeline_id": pipeline.id, "currency": "EUR", "amount": 10}
        )
    return Scratch(admin, users[0].id, users[1].id, customer, stage_ids, deal)


async def toggle_triggers(sessionmaker: Any, triggers: dict[str, tuple[str, ...]], on: bool) -> None:
    """``ALTER TABLE ... ENABLE|DISABLE TRIGGER`` for each table's named triggers."""
    verb = "ENABLE" if on else "DISABLE"
    async with sessionmaker() as session, session.begin():
        for table, names in triggers.items():
            for name in names:
                await session.execute(text(f"ALTER TABLE {table} {verb} TRIGGER {name}"))


async def time_with_triggers(
    sessionmaker: Any,
    triggers: dict[str, tuple[str, ...]],
    calls: dict[str, Callable[[Any], Awaitable[None]]],
    repeat: dict[str, int],
    rounds: int = 10,
) -> None:
    """Each call in its own transaction, ``repeat[name]`` times a round, with the
    triggers on and then off in every round (so that the machine's drift hits both
    alike; restored on after), and print the medians."""
    times: dict[tuple[str, bool], list[float]] = {(c, on): [] for c in calls for on in (True, False)}
    try:
        for _ in range(rounds):
            for on in (True, False):
                await toggle_triggers(sessionmaker, triggers, on)
                for name, call in calls.items():
                    for _ in range(repeat[name]):
                        start = time.perf_counter()
                        async with sessionmaker() as s, s.begin():
                            await call(s)
                        times[(name, on)].append(time.perf_counter() - start)
    finally:
        await toggle_triggers(sessionmaker, triggers, True)
    print(f"median ms per transaction, {rounds} rounds, triggers on and off")
    print(f"{'call':44} {'triggers on':>12} {'off':>8} {'added':>8}")
    for name in calls:
        with_ms = statistics.median(times[(name, True)]) * 1000
        without_ms = statistics.median(times[(name, False)]) * 1000
        print(f"{name:44} {with_ms:12.2f} {without_ms:8.2f} {with_ms - without_ms:8.2f}")
