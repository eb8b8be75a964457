"""What the live dashboards' change notices (``services/changes.py``, decision 0018) cost the
writes of the M1 mix: each service call below in its own transaction, N times, with the
session listeners that record the written tables attached and then detached. CPU time per
transaction (``time.process_time``: the listeners are Python; the machine's other load
does not count) and wall time, and the listeners' own calls per transaction.

    python -m bench.changes_cost --database postgresql://postgres@127.0.0.1:5432/scratch [-n 300]

The database must be migrated to head and hold nothing of value: rows are added to a
new workspace of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from bench.scratch import scratch_sales
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import Channel
from crm_graphql.services import activities, changes, conversations, deals

LISTENERS = (("do_orm_execute", changes._on_execute), ("after_flush", changes._on_flush))


def _attach(on: bool, calls: list[int]) -> None:
    for name, listener in LISTENERS:
        if sa_event.contains(Session, name, listener):
            sa_event.remove(Session, name, listener)
        counted = _COUNTED.get(name)
        if counted is not None and sa_event.contains(Session, name, counted):
            sa_event.remove(Session, name, counted)
        if on:

            def counting(*args: Any, _listener: Any = listener) -> Any:
                calls[0] += 1
                return _listener(*args)

            _COUNTED[name] = counting
            sa_event.listen(Session, name, counting)


_COUNTED: dict[str, Any] = {}


async def main(url: str, n: int) -> None:
    engine = make_engine(url, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    scratch = await scratch_sales(sessionmaker, "changes cost")
    admin, customer, deal, stage_ids = (
        scratch.admin,
        scratch.customer,
        scratch.deal,
        scratch.stage_ids,
    )
    async with sessionmaker() as s, s.begin():
        conversation = await conversations.start_conversation(
            admin, s, {"customer_id": customer.id, "channel": Channel.CHAT, "subject": "Bench"}
        )
    state = {"i": 0}

    async def create_activity(s: Any) -> None:
        state["i"] += 1
        await activities.create_activity(
            admin, s, {"customer_id": customer.id, "type": "note", "subject": f"n{state['i']}"}
        )

    async def move_deal(s: Any) -> None:
        state["i"] += 1
        await deals.move_deal(admin, s, deal.id, stage_ids[state["i"] % len(stage_ids)])

    async def send_message(s: Any) -> None:
        state["i"] += 1
        await conversations.send_message(admin, s, conversation.id, body=f"m{state['i']}")

    mix: dict[str, Callable[[Any], Awaitable[None]]] = {
        "createActivity": create_activity,
        "moveDeal": move_deal,
        "sendMessage": send_message,
    }
    cpu: dict[tuple[str, bool], list[float]] = {(c, on): [] for c in mix for on in (True, False)}
    wall: dict[tuple[str, bool], list[float]] = {(c, on): [] for c in mix for on in (True, False)}
    calls = {True: [0], False: [0]}
    rounds = 10  # on and off alternate, so that the machine's drift hits both alike
    try:
        for _ in range(rounds):
            for on in (True, False):
                _attach(on, calls[on])
                for name, call in mix.items():
                    for _ in range(max(1, n // rounds)):
                        c0, w0 = time.process_time(), time.perf_counter()
                        async with sessionmaker() as s, s.begin():
                            await call(s)
                            if on:
                                changes.take_written(s.sync_session)
                        cpu[(name, on)].append(time.process_time() - c0)
                        wall[(name, on)].append(time.perf_counter() - w0)
    finally:
        _attach(False, [0])
        for name, listener in LISTENERS:
            sa_event.listen(Session, name, listener)
        await engine.dispose()
    per = max(1, n // rounds) * rounds
    print(f"{per} transactions of each call with the change listeners attached and {per} without")
    print(f"{'call':16} {'CPU on':>8} {'off':>8} {'added':>8}   {'wall on':>8} {'off':>8}  (ms, medians)")
    for name in mix:
        c_on, c_off = (statistics.median(cpu[(name, o)]) * 1000 for o in (True, False))
        w_on, w_off = (statistics.median(wall[(name, o)]) * 1000 for o in (True, False))
        print(f"{name:16} {c_on:8.3f} {c_off:8.3f} {c_on - c_off:8.3f}   {w_on:8.2f} {w_off:8.2f}")
    print(f"listener calls per transaction: {calls[True][0] / (per * len(mix)):.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.database, args.n))
