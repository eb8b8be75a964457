"""What the change feed and the duplicate finder cost (decision 0032):

1. writes: the change triggers of migration 0020 on and off (``ALTER TABLE ... DISABLE
   TRIGGER`` on a scratch database, restored after), each service call in its own
   transaction, and a bulk insert of 1,000 customers in one statement;
2. reads: a page of ``changes`` (100) from the start of a log of ``--log`` changes, from
   its middle, and once caught up;
3. ``duplicate_candidates`` over ``--people`` generated customers (tests/planted_duplicates).

    python -m bench.sync_costs --database postgresql://postgres@127.0.0.1:5432/scratch \
        [-n 200] [--log 50000] [--people 10000 50000] [--parts writes reads duplicates]

The database must be migrated to head and hold nothing of value: rows are added to new
workspaces of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import insert

from bench.scratch import scratch_sales, time_with_triggers
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import Customer
from crm_graphql.services import companies, customers, deals, duplicates, fields, sync
from crm_graphql.services.events import Position
from tests.planted_duplicates import generate

TABLES = ("customers", "deals")
TRIGGERS = ("changes_created", "changes_updated", "changes_deleted")


async def writes(sessionmaker: Any, n: int) -> None:
    scratch = await scratch_sales(sessionmaker, "sync write cost")
    admin, customer, deal = scratch.admin, scratch.customer, scratch.deal
    state = {"i": 0}

    async def create_customer(s: Any) -> None:
        state["i"] += 1
        await customers.create_customer(admin, s, {"name": f"C{state['i']}"})

    async def update_customer(s: Any) -> None:
        state["i"] += 1
        await customers.update_customer(admin, s, customer.id, {"name": f"C{state['i']}"})

    async def update_deal(s: Any) -> None:
        state["i"] += 1
        await deals.update_deal(admin, s, deal.id, {"amount": state["i"]})

    async def bulk_insert(s: Any) -> None:
        state["i"] += 1
        rows = [
            {"workspace_id": admin.workspace_id, "name": f"Bulk {state['i']}.{k}", "version": 1}
            for k in range(1000)
        ]
        await s.execute(insert(Customer), rows)

    calls: dict[str, Callable[[Any], Awaitable[None]]] = {
        "createCustomer": create_customer,
        "updateCustomer (name)": update_customer,
        "updateDeal (amount)": update_deal,
        "INSERT of 1,000 customers": bulk_insert,
    }
    repeat = {name: 1 if name.startswith("INSERT") else max(1, n // 10) for name in calls}
    await time_with_triggers(sessionmaker, {t: TRIGGERS for t in TABLES}, calls, repeat)


async def reads(sessionmaker: Any, log: int) -> None:
    scratch = await scratch_sales(sessionmaker, "sync read cost")
    admin = scratch.admin
    for start in range(0, log, 5000):
        async with sessionmaker() as s, s.begin():
            rows = [
                {"workspace_id": admin.workspace_id, "name": f"Log {start + k}", "version": 1}
                for k in range(min(5000, log - start))
            ]
            await s.execute(insert(Customer), rows)

    async def page(after: str | None) -> tuple[float, sync.ChangePage]:
        async with sessionmaker() as s:
            began = time.perf_counter()
            found = await sync.read_changes(admin, s, after=after, types=None, first=100)
            return time.perf_counter() - began, found

    _, first = await page(None)
    middle = None
    after = first.cursor
    pages = 1
    while True:  # walk the log, as a partner's first sync does
        _, found = await page(after)
        pages += 1
        if pages == log // 200:
            middle = after
        after = found.cursor
        if not found.has_more:
            break
    walked = time.perf_counter()
    cursor: str | None = None
    while True:
        _, found = await page(cursor)
        cursor = found.cursor
        if not found.has_more:
            break
    walk = time.perf_counter() - walked
    samples: dict[str, list[float]] = {"from the start": [], "from the middle": [], "caught up": []}
    for _ in range(30):
        samples["from the start"].append((await page(None))[0])
        samples["from the middle"].append((await page(middle))[0])
        samples["caught up"].append((await page(after))[0])
    print(f"\nchanges, pages of 100 over a log of {log:,} changes of one workspace")
    for name, values in samples.items():
        print(f"  {name:18} median {statistics.median(values) * 1000:6.2f} ms")
    print(f"  the whole log, page after page: {walk:.2f} s ({pages} pages)")
    assert Position.decode(after) >= Position.decode(first.cursor)


async def finding(sessionmaker: Any, people: int) -> None:
    scratch = await scratch_sales(sessionmaker, "duplicates cost")
    admin = scratch.admin
    planted = generate(seed=17, people=people, companies=max(10, people // 10))
    async with sessionmaker() as s, s.begin():
        made: dict[int, uuid.UUID] = {}
        for index in sorted({r.company for r in planted.rows if r.company is not None}):
            made[index] = (await companies.create_company(admin, s, {"name": f"Co {index}"})).id
        # One statement, the values as writes store them (normalised): this times the
        # finding, not the writing.
        rows = [
            {
                "workspace_id": admin.workspace_id,
                "name": row.name,
                "email": fields.email(row.email),
                "phone": fields.phone(row.phone),
                "company_id": made[row.company] if row.company is not None else None,
                "version": 1,
            }
            for row in planted.rows
        ]
        for start in range(0, len(rows), 5000):
            await s.execute(insert(Customer), rows[start : start + 5000])
    times = []
    for _ in range(5):
        async with sessionmaker() as s:
            began = time.perf_counter()
            page = await duplicates.duplicate_candidates(admin, s, first=100)
            times.append(time.perf_counter() - began)
    print(
        f"\nduplicateCandidates over {len(planted.rows):,} customers "
        f"({len(planted.duplicates)} planted pairs): median {statistics.median(times) * 1000:.0f} ms"
        f" for the first page of {len(page.candidates)}"
    )


async def main(url: str, n: int, log: int, people: list[int], parts: list[str]) -> None:
    engine = make_engine(url, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    try:
        if "writes" in parts:
            await writes(sessionmaker, n)
        if "reads" in parts:
            await reads(sessionmaker, log)
        if "duplicates" in parts:
            for size in people:
                await finding(sessionmaker, size)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--log", type=int, default=50_000)
    parser.add_argument("--people", type=int, nargs="+", default=[10_000])
    parser.add_argument(
        "--parts", nargs="+", default=["writes", "reads", "duplicates"],
        choices=["writes", "reads", "duplicates"],
    )  # fmt: skip
    args = parser.parse_args()
    asyncio.run(main(args.database, args.n, args.log, args.people, args.parts))
