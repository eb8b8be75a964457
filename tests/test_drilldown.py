"""Drill-down filters are written exactly as a client sends a list's filter argument."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from graphql import GraphQLInputType, coerce_input_value

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import DealStatus
from crm_graphql.resolvers.insight import drill_down, input_json, spec_json
from crm_graphql.schema import schema
from crm_graphql.schema.deals import DealFilter
from crm_graphql.schema.filters import DateTimeFilter, IDFilter, StringFilter
from crm_graphql.services.drilldown import DrillDown, Ref

STAGE = uuid.UUID("00000000-0000-4000-8000-000000000001")
OWNER = uuid.UUID("00000000-0000-4000-8000-000000000002")


def _filter_type(name: str) -> GraphQLInputType:
    found = schema._schema.get_type(name)
    assert found is not None, name
    return found  # type: ignore[return-value]


def _coerced(value: Any, type_name: str) -> Any:
    """The value as graphql-core accepts it for ``type_name``: raises on any wrong name,
    operator or scalar, as a request's variables would be refused."""
    return coerce_input_value(value, _filter_type(type_name))


def test_a_caller_filter_round_trips_through_its_json_form() -> None:
    since = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
    caller = DealFilter(
        title=StringFilter(starts_with="Re"),
        or_=[
            DealFilter(owner_id=IDFilter(eq=to_global_id("User", OWNER))),
            DealFilter(closed_at=DateTimeFilter(gte=since)),
        ],
    )
    as_json = input_json(caller)
    assert as_json == {
        "or": [
            {"ownerId": {"eq": to_global_id("User", OWNER)}},
            {"closedAt": {"gte": "2026-01-31T23:00:00+00:00"}},
        ],
        "title": {"startsWith": "Re"},
    }
    _coerced(as_json, "DealFilter")


def test_a_service_group_is_written_with_global_ids_enum_names_and_iso_values() -> None:
    group = DrillDown(
        "deals",
        {
            "stage_id": {"eq": Ref("Stage", STAGE)},
            "status": {"in": [DealStatus.WON, DealStatus.LOST]},
            "expected_close_date": {"gte": date(2026, 3, 1), "lt": date(2026, 4, 1)},
            "amount": {"gt": Decimal("10.50")},
            "owner_id": {"is_null": True},
        },
    )
    written = drill_down(group).filter
    assert written == {
        "stageId": {"eq": to_global_id("Stage", STAGE)},
        "status": {"in": ["WON", "LOST"]},
        "expectedCloseDate": {"gte": "2026-03-01", "lt": "2026-04-01"},
        "amount": {"gt": "10.50"},
        "ownerId": {"isNull": True},
    }
    _coerced(written, "DealFilter")


@pytest.mark.parametrize("with_caller", [False, True])
def test_the_group_is_combined_with_the_callers_filter(with_caller: bool) -> None:
    caller = DealFilter(title=StringFilter(contains="x")) if with_caller else None
    group = DrillDown("deals", {"stage_id": {"eq": Ref("Stage", STAGE)}})
    written = drill_down(group, caller)
    own = {"stageId": {"eq": to_global_id("Stage", STAGE)}}
    expected = {"and": [{"title": {"contains": "x"}}, own]} if with_caller else own
    assert written.list == "deals"
    assert written.filter == expected
    _coerced(written.filter, "DealFilter")


def test_spec_json_leaves_plain_values_alone() -> None:
    assert spec_json({"tags": {"contains": ["vip"]}, "n": {"eq": 3}}) == {
        "tags": {"contains": ["vip"]},
        "n": {"eq": 3},
    }
