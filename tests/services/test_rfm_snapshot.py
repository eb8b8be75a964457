"""The RFM snapshot (docs/decisions/0020-rfm-snapshot.md): reads take the stored scores
while they were computed from the current order history, and give exactly what the
read-time definition (``rfm.live_scores``, itself checked against Python in
test_rfm.py) gives after every kind of write, for concurrent readers too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_graphql.models import Customer, Order, OrderStatus, RfmScore, Workspace
from crm_graphql.services import customers, orders, privacy, rfm
from crm_graphql.services.actor import Actor
from crm_graphql.services.customers import CUSTOMERS
from tests import rfm_reference

Sessions = async_sessionmaker[AsyncSession]
Scores = dict[uuid.UUID, tuple[Any, ...]]


@pytest.fixture
async def history(
    sessionmaker: Sessions, workspace: Workspace, outsider: Actor
) -> rfm_reference.History:
    await rfm_reference.generate(sessionmaker, outsider.workspace_id, seed=7, customers=25)
    return await rfm_reference.generate(sessionmaker, workspace.id, seed=21, customers=50)


async def live(sessionmaker: Sessions, actor: Actor) -> Scores:
    """The read-time definition, computed from the orders as they are."""
    async with sessionmaker() as session:
        scores = rfm.live_scores(actor)
        rows = await session.execute(select(scores))
        return {row.customer_id: _key(row) for row in rows}


def _key(row: Any) -> tuple[Any, ...]:
    return (row.r, row.f, row.m, row.segment, int(row.order_count), row.total)


async def read(sessionmaker: Sessions, actor: Actor, ids: list[uuid.UUID]) -> Scores:
    """``customer.rfm`` of every customer, as a request reads it."""
    async with sessionmaker() as session:
        found = await rfm.customer_rfm(actor, session, ids)
    return {
        cid: (
            got.r_score,
            got.f_score,
            got.m_score,
            got.segment.value,
            got.frequency,
            got.monetary.amount,
        )
        for cid, got in found.items()
        if got is not None
    }


async def members(sessionmaker: Sessions, actor: Actor, segment: rfm.RfmSegment) -> set[uuid.UUID]:
    """A built-in segment's members through the customers list's read (prepared)."""
    async with sessionmaker() as session:
        stmt = await CUSTOMERS.filtered(actor, session, {"rfm_segment": {"eq": segment}})
        return set((await session.scalars(stmt.with_only_columns(Customer.id))).all())


async def versions(sessionmaker: Sessions, workspace_id: uuid.UUID) -> tuple[int, int | None]:
    async with sessionmaker() as session:
        row = (
            await session.execute(
                text(
                    "SELECT coalesce((SELECT version FROM order_history_versions "
                    "WHERE workspace_id = :w), 0), "
                    "(SELECT version FROM rfm_snapshots WHERE workspace_id = :w)"
                ),
                {"w": workspace_id},
            )
        ).one()
    return int(row[0]), row[1]


def members_of(scores: Scores, segment: rfm.RfmSegment) -> set[uuid.UUID]:
    return {cid for cid, key in scores.items() if key[3] == segment.value}


async def test_a_read_stores_the_snapshot_and_later_reads_use_it(
    sessionmaker: Sessions, viewer: Actor, history: rfm_reference.History
) -> None:
    want = await live(sessionmaker, viewer)
    version, recorded = await versions(sessionmaker, viewer.workspace_id)
    assert version >= 1 and recorded is None  # loading the orders counted as changes
    assert await read(sessionmaker, viewer, history.customers) == want
    assert await versions(sessionmaker, viewer.workspace_id) == (version, version)
    async with sessionmaker() as session:
        stored = await session.execute(
            select(RfmScore).where(RfmScore.workspace_id == viewer.workspace_id)
        )
        assert {s.customer_id: _key(s) for s in stored.scalars()} == want

    # Reads come from the stored rows while the version holds (a row changed behind the
    # API's back shows; nothing but a refresh ever writes them).
    some = next(iter(want))
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(RfmScore).where(RfmScore.customer_id == some).values(segment="lost", r=1)
        )
    assert (await read(sessionmaker, viewer, [some]))[some][0] == 1
    assert some in await members(sessionmaker, viewer, rfm.RfmSegment.LOST)


async def test_a_change_that_scores_do_not_read_keeps_the_snapshot(
    sessionmaker: Sessions, admin: Actor, history: rfm_reference.History
) -> None:
    await read(sessionmaker, admin, history.customers)
    before = await versions(sessionmaker, admin.workspace_id)
    async with sessionmaker() as session, session.begin():
        await customers.update_customer(admin, session, history.customers[0], {"name": "Renamed"})
        await session.execute(
            update(Order)
            .where(Order.workspace_id == admin.workspace_id)
            .values(number=Order.number + "-x")
        )
    assert await versions(sessionmaker, admin.workspace_id) == before


def _live_customer(history: rfm_reference.History) -> uuid.UUID:
    return next(c for c in history.customers if c not in history.archived_customers)


async def _order_of(sessionmaker: Sessions, actor: Actor, counted: bool = True) -> uuid.UUID:
    async with sessionmaker() as session:
        return (
            await session.scalars(
                select(Order.id)
                .join(Customer, Customer.id == Order.customer_id)
                .where(
                    Order.workspace_id == actor.workspace_id,
                    Order.archived_at.is_(None),
                    Customer.archived_at.is_(None),
                    Order.status.in_(rfm_reference.COUNTED)
                    if counted
                    else Order.status.not_in(rfm_reference.COUNTED),
                )
                .order_by(Order.amount.desc())
            )
        ).first()  # type: ignore[return-value]


async def create_order(s: AsyncSession, a: Actor, h: rfm_reference.History, sm: Sessions) -> None:
    await orders.create_order(
        a,
        s,
        {
            "customer_id": _live_customer(h),
            "amount": Decimal("99999.00"),
            "currency": "EUR",
            "status": OrderStatus.PAID,
            "placed_at": datetime.now(UTC) - timedelta(minutes=5),
        },
    )


async def archive_order(s: AsyncSession, a: Actor, h: rfm_reference.History, sm: Sessions) -> None:
    await orders.archive_order(a, s, await _order_of(sm, a))


async def refund_order(s: AsyncSession, a: Actor, h: rfm_reference.History, sm: Sessions) -> None:
    await orders.update_order(a, s, await _order_of(sm, a), {"status": OrderStatus.REFUNDED})


async def pay_pending_order(
    s: AsyncSession, a: Actor, h: rfm_reference.History, sm: Sessions
) -> None:
    await orders.update_order(a, s, await _order_of(sm, a, counted=False), {"status": "paid"})


async def archive_customer(
    s: AsyncSession, a: Actor, h: rfm_reference.History, sm: Sessions
) -> None:
    champions = members_of(await live(sm, a), rfm.RfmSegment.CHAMPIONS)
    await customers.archive_customer(a, s, sorted(champions)[0])


async def erase_customer(s: AsyncSession, a: Actor, h: rfm_reference.History, sm: Sessions) -> None:
    champions = members_of(await live(sm, a), rfm.RfmSegment.CHAMPIONS)
    await privacy.erase_customer(a, s, sorted(champions)[0])


async def delete_orders_of_customer(
    s: AsyncSession, a: Actor, h: rfm_reference.History, sm: Sessions
) -> None:
    champions = members_of(await live(sm, a), rfm.RfmSegment.CHAMPIONS)
    await s.execute(text("DELETE FROM orders WHERE customer_id = :c"), {"c": sorted(champions)[0]})


Write = Callable[[AsyncSession, Actor, rfm_reference.History, Sessions], Awaitable[None]]


@pytest.mark.parametrize(
    "write",
    [
        create_order,
        archive_order,
        refund_order,
        pay_pending_order,
        archive_customer,
        erase_customer,
        delete_orders_of_customer,
    ],
)
async def test_the_next_read_after_a_committed_write_is_exact(
    sessionmaker: Sessions, admin: Actor, history: rfm_reference.History, write: Write
) -> None:
    before = await read(sessionmaker, admin, history.customers)
    first, recorded = await versions(sessionmaker, admin.workspace_id)
    assert recorded == first
    async with sessionmaker() as session, session.begin():
        await write(session, admin, history, sessionmaker)
    version, _ = await versions(sessionmaker, admin.workspace_id)
    assert version == first + 1
    want = await live(sessionmaker, admin)
    assert await read(sessionmaker, admin, history.customers) == want
    for segment in rfm.RfmSegment:
        assert await members(sessionmaker, admin, segment) == members_of(want, segment)
    assert await versions(sessionmaker, admin.workspace_id) == (version, version)
    if write is not erase_customer:  # erasing keeps orders and the customer's scores
        assert want != before


async def test_a_writer_reads_its_own_uncommitted_orders(
    sessionmaker: Sessions, admin: Actor, history: rfm_reference.History
) -> None:
    await read(sessionmaker, admin, history.customers)
    current = await versions(sessionmaker, admin.workspace_id)
    async with sessionmaker() as session, session.begin():
        await create_order(session, admin, history, sessionmaker)
        mine = await rfm.customer_rfm(admin, session, history.customers)
        stmt = await CUSTOMERS.filtered(
            admin, session, {"rfm_segment": {"eq": rfm.RfmSegment.CHAMPIONS}}
        )
        champions = set((await session.scalars(stmt.with_only_columns(Customer.id))).all())
        # Another transaction still sees the committed history, from the snapshot.
        others = await read(sessionmaker, admin, history.customers)
        assert await versions(sessionmaker, admin.workspace_id) == current
    committed = await live(sessionmaker, admin)
    assert others != committed
    got = {c: (r.r_score, r.f_score, r.m_score, r.segment.value) for c, r in mine.items() if r}
    assert got == {c: k[:4] for c, k in committed.items()}
    assert champions == members_of(committed, rfm.RfmSegment.CHAMPIONS)


async def test_concurrent_readers_of_a_stale_snapshot_recompute_it_once(
    sessionmaker: Sessions, engine: AsyncEngine, admin: Actor, history: rfm_reference.History
) -> None:
    await read(sessionmaker, admin, history.customers)
    async with sessionmaker() as session, session.begin():
        await create_order(session, admin, history, sessionmaker)
    refreshed = await asyncio.gather(*(rfm.refresh_snapshot(admin, engine) for _ in range(6)))
    assert sorted(refreshed) == [False] * 5 + [True]

    async with sessionmaker() as session, session.begin():
        await archive_order(session, admin, history, sessionmaker)
    want = await live(sessionmaker, admin)
    reads = await asyncio.gather(
        *(read(sessionmaker, admin, history.customers) for _ in range(4)),
        *(members(sessionmaker, admin, rfm.RfmSegment.CHAMPIONS) for _ in range(4)),
    )
    assert all(r == want for r in reads[:4])
    assert all(m == members_of(want, rfm.RfmSegment.CHAMPIONS) for m in reads[4:])


async def test_reads_racing_writes_always_match_some_committed_history(
    sessionmaker: Sessions, admin: Actor, history: rfm_reference.History
) -> None:
    """Readers and writers at once: a read never mixes two histories (it answers what
    the definition gives for a history committed during the read), and the read after
    the last write gives the final one."""
    seen: list[Scores] = []

    async def writer(n: int) -> None:
        for k in range(3):
            async with sessionmaker() as session, session.begin():
                await orders.create_order(
                    admin,
                    session,
                    {
                        "customer_id": history.customers[(n * 7 + k * 3) % len(history.customers)],
                        "amount": Decimal(100 + n * 10 + k),
                        "currency": "EUR",
                        "status": OrderStatus.PAID,
                        "placed_at": datetime.now(UTC) - timedelta(days=n + k),
                    },
                )

    async def reader() -> None:
        for _ in range(4):
            seen.append(await read(sessionmaker, admin, history.customers))

    await asyncio.gather(writer(1), writer(2), reader(), reader())
    final = await live(sessionmaker, admin)
    assert await read(sessionmaker, admin, history.customers) == final
    for scores in seen:  # each read is one whole scoring: quintiles fill evenly
        counts = [sum(1 for k in scores.values() if k[0] == r) for r in range(1, 6)]
        assert max(counts) - min(counts) <= 1, counts
