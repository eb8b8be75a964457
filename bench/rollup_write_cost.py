"""What the summary triggers of migration 0019 add to the writes they follow (decision
0021): each service call below in its own transaction, N times, with the triggers on and
then off (``ALTER TABLE ... DISABLE TRIGGER`` on a scratch database, restored after).

    python -m bench.rollup_write_cost --database postgresql://postgres@127.0.0.1:5432/scratch [-n 200]

The database must be migrated to head and hold nothing of value: rows are added to a
new workspace of its own.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench.scratch import scratch_sales, time_with_triggers
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import OrderStatus
from crm_graphql.services import customers, deals, orders

TRIGGERS = {
    "orders": ("order_totals_insert", "order_totals_update", "order_totals_delete"),
    "customers": ("order_totals_owner", "order_totals_customer_delete"),
    "deals": ("deal_totals_insert", "deal_totals_update", "deal_totals_delete",
              "deal_cohorts_deal_delete"),
    "deal_stage_changes": ("deal_cohorts_insert", "deal_cohorts_update", "deal_cohorts_delete"),
}  # fmt: skip


async def main(url: str, n: int) -> None:
    engine = make_engine(url, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    scratch = await scratch_sales(sessionmaker, "write cost")
    admin, customer, deal, stage_ids = (
        scratch.admin,
        scratch.customer,
        scratch.deal,
        scratch.stage_ids,
    )
    placed = datetime(2025, 1, 1, tzinfo=UTC)
    state = {"i": 0, "order": None}

    async def create_order(s: Any) -> None:
        state["i"] += 1
        order = await orders.create_order(admin, s, {
            "customer_id": customer.id, "amount": Decimal(state["i"]), "currency": "EUR",
            "placed_at": placed + timedelta(hours=state["i"]), "status": OrderStatus.PAID,
        })  # fmt: skip
        state["order"] = order.id

    async def update_order(s: Any) -> None:
        state["i"] += 1
        await orders.update_order(admin, s, state["order"], {"amount": Decimal(state["i"])})

    async def move_deal(s: Any) -> None:
        state["i"] += 1
        await deals.move_deal(admin, s, deal.id, stage_ids[state["i"] % len(stage_ids)])

    async def update_deal(s: Any) -> None:
        state["i"] += 1
        await deals.update_deal(admin, s, deal.id, {"amount": Decimal(state["i"])})

    async def reassign_customer(s: Any) -> None:  # its orders move between owners
        state["i"] += 1
        owner = (scratch.user_id, scratch.agent_id)[state["i"] % 2]
        await customers.update_customer(admin, s, customer.id, {"owner_id": owner})

    calls: dict[str, Callable[[Any], Awaitable[None]]] = {
        "createOrder": create_order,
        "updateOrder (amount)": update_order,
        "moveDeal": move_deal,
        "updateDeal (amount)": update_deal,
        "updateCustomer (owner, with its orders)": reassign_customer,
    }
    try:
        await time_with_triggers(
            sessionmaker, TRIGGERS, calls, {name: max(1, n // 10) for name in calls}
        )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.database, args.n))
