"""The customer report against a plain-Python computation over a seeded random purchase
history: every customer's R, F, M scores, segment and lifetime value, and every cohort
cell, in UTC and in a time zone far from it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Customer, Workspace
from crm_graphql.services import rfm
from crm_graphql.services.actor import Actor
from crm_graphql.services.customers import CUSTOMERS
from crm_graphql.services.errors import Invalid
from tests import rfm_reference

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def history(
    sessionmaker: Sessions, workspace: Workspace, outsider: Actor
) -> rfm_reference.History:
    # Another workspace's orders must not move this one's quintiles.
    await rfm_reference.generate(sessionmaker, outsider.workspace_id, seed=7, customers=25)
    return await rfm_reference.generate(sessionmaker, workspace.id, seed=13)


async def test_every_score_segment_and_lifetime_value_matches_python(
    sessionmaker: Sessions, viewer: Actor, history: rfm_reference.History
) -> None:
    expected = rfm_reference.expected_rfm(history)
    assert len(expected) >= 30 and len({e.segment for e in expected.values()}) >= 6
    assert len({e.currency for e in expected.values()}) == 2
    before = datetime.now(UTC)
    async with sessionmaker() as session:
        found = await rfm.customer_rfm(viewer, session, history.customers)
    after = datetime.now(UTC)
    for cid in history.customers:
        got, want = found[cid], expected.get(cid)
        if want is None:
            assert got is None, cid  # no counted order, or archived
            continue
        assert got is not None, cid
        assert (got.r_score, got.f_score, got.m_score, got.fm_score) == (
            want.r,
            want.f,
            want.m,
            want.fm,
        ), cid
        assert got.segment.value == want.segment
        assert got.frequency == want.order_count
        assert (got.monetary.amount, got.monetary.currency) == (want.total, want.currency)
        assert got.lifetime_value.amount == want.clv
        assert got.lifetime_value.currency == want.currency
        assert (got.first_order_at, got.last_order_at) == (want.first, want.last)
        assert got.recency in {(before - want.last).days, (after - want.last).days}


async def test_segment_filter_lists_exactly_each_segments_members(
    sessionmaker: Sessions, agent: Actor, history: rfm_reference.History
) -> None:
    expected = rfm_reference.expected_rfm(history)
    async with sessionmaker() as session:
        for segment in rfm.RfmSegment:
            stmt = CUSTOMERS.statement(agent, {"rfm_segment": {"eq": segment}})
            members = set((await session.scalars(stmt.with_only_columns(Customer.id))).all())
            want = {c for c, e in expected.items() if e.segment == segment.value}
            assert members == want, segment
        others = CUSTOMERS.statement(
            agent, {"rfm_segment": {"not_in": [rfm.RfmSegment.CHAMPIONS, rfm.RfmSegment.LOST]}}
        )
        got = set((await session.scalars(others.with_only_columns(Customer.id))).all())
    live = set(history.customers) - history.archived_customers
    assert got == {
        c for c in live if c not in expected or expected[c].segment not in ("champions", "lost")
    }


@pytest.mark.parametrize("zone_name", ["UTC", "Pacific/Kiritimati"])
async def test_every_cohort_cell_matches_python(
    sessionmaker: Sessions, manager: Actor, history: rfm_reference.History, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    today = datetime.now(UTC).astimezone(zone).date()
    first, last = date(today.year - 2, today.month, 1), today
    expected = rfm_reference.expected_cohorts(history, first, last, zone)
    async with sessionmaker() as session:
        table = await rfm.cohorts(manager, session, first=first, last=last, zone_name=zone_name)
        assert {c.month: (c.customers, [x.customers for x in c.cells]) for c in table} == expected
        assert len(expected) >= 10 and sum(sum(cells[1:]) for _, cells in expected.values()) > 0
        for cohort in table:
            assert cohort.cells[0].customers == cohort.customers
            for cell in cohort.cells:
                assert cell.share == cell.customers / cohort.customers
                # The drill-down lists exactly the customers behind the cell.
                rows = await session.scalars(
                    CUSTOMERS.statement(manager, cell.drill_down.filter).with_only_columns(
                        Customer.id
                    )
                )
                assert len(rows.all()) == cell.customers, (cohort.month, cell.months_since)
            members = await session.scalars(
                CUSTOMERS.statement(manager, cohort.drill_down.filter).with_only_columns(
                    Customer.id
                )
            )
            assert len(members.all()) == cohort.customers


async def test_cohort_arguments_are_checked(sessionmaker: Sessions, viewer: Actor) -> None:
    async with sessionmaker() as session:
        for kwargs, field in (
            ({"first": date(2026, 5, 1), "last": date(2026, 4, 1)}, "from"),
            ({"first": date(2000, 1, 1), "last": date(2026, 4, 1)}, "to"),
            (
                {"first": date(2026, 1, 1), "last": date(2026, 4, 1), "zone_name": "Mars/X"},
                "timeZone",
            ),
            (
                {"first": date(2026, 1, 1), "last": date(2026, 4, 1), "zone_name": "\x00"},
                "timeZone",
            ),
            ({"first": date(9999, 12, 1), "last": date(9999, 12, 30)}, "from"),
        ):
            with pytest.raises(Invalid) as raised:
                await rfm.cohorts(viewer, session, **kwargs)  # type: ignore[arg-type]
            assert raised.value.field == field, kwargs


async def test_ordered_at_needs_one_order_within_all_bounds(
    sessionmaker: Sessions, agent: Actor, history: rfm_reference.History
) -> None:
    counted = history.counted()
    by_customer: dict[object, list[datetime]] = {}
    for o in counted:
        by_customer.setdefault(o.customer_id, []).append(o.placed_at)
    # A customer with a gap between two orders: a window inside the gap has an order
    # after its start and one before its end, but none within it.
    cid, times = next((c, sorted(t)) for c, t in by_customer.items() if len(t) >= 2)
    start, end = times[0], times[1]
    middle = start + (end - start) / 2
    window = {"gt": start, "lt": end}
    async with sessionmaker() as session:

        async def matching(ops: dict[str, datetime]) -> set[object]:
            stmt = CUSTOMERS.statement(agent, {"ordered_at": ops})
            return set((await session.scalars(stmt.with_only_columns(Customer.id))).all())

        got = await matching(window)
        assert cid not in got
        assert got == {c for c, t in by_customer.items() if any(start < x < end for x in t)}
        assert cid in await matching({"gte": start, "lt": middle})
    with pytest.raises(Invalid):
        CUSTOMERS.statement(agent, {"ordered_at": {"is_null": True}})


async def test_a_zone_the_database_does_not_know_is_a_validation_error(
    sessionmaker: Sessions,
    viewer: Actor,
    history: rfm_reference.History,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class ElsewhereOnly:  # a zone Python would accept and PostgreSQL does not know
        key = "Nowhere/Elsewhere"

    monkeypatch.setattr(rfm, "time_zone", lambda name: ElsewhereOnly())
    async with sessionmaker() as session:
        with pytest.raises(Invalid) as raised:
            await rfm.cohorts(
                viewer, session, first=date(2000, 1, 1), last=date(2009, 2, 1), zone_name="x"
            )
    assert raised.value.field == "timeZone"
