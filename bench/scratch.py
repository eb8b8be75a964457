"""What the write-cost measurements start from (``rollup_write_cost``, ``changes_cost``):
a workspace of their own on a scratch database, with an admin and an agent, a customer,
a five-stage pipeline and a deal in it."""

from __future__ import annotations

import uuid
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
