"""Values at the edges of what the API stores: dates and times outside the documented
range (README "Dates and times") and JSON whole numbers beyond 64 bits (README "JSON
values") are refused with ``VALIDATION`` naming the field, on every write path and in
filters; values just inside the range are stored and read back exactly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from crm_graphql.models import Role
from tests import support
from tests.api.scenarios import (
    Call,
    Env,
    activity_input,
    api_key_input,
    deal_input,
    order_input,
)

# Outside the range: the driver's -infinity / infinity, and offsets that move a value of
# the first or last day out of Python's range.
BAD_TIMES = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T23:00:00+23:30",
    "9999-12-31T23:00:00-05:00",
    "9999-12-31T00:00:00Z",
]
EDGE_TIMES = {  # inside the range: read back as the same instant in UTC
    "0001-01-02T00:00:00Z": "0001-01-02T00:00:00+00:00",
    "0001-01-02T05:00:00+05:00": "0001-01-02T00:00:00+00:00",
    "9999-12-30T23:59:59.999999Z": "9999-12-30T23:59:59.999999+00:00",
    "9999-12-30T20:00:00-03:00": "9999-12-30T23:00:00+00:00",
}
BAD_DATES = ["0001-01-01", "9999-12-31"]
EDGE_DATES = ["0001-01-02", "9999-12-30"]

Inputs = Callable[[Env], Awaitable[dict[str, Any]]]


async def _task_input(env: Env) -> dict[str, Any]:
    return {**await activity_input(env), "type": "TASK"}


async def _order(env: Env) -> dict[str, Any]:
    return {"id": await env.order()}


async def _activity(env: Env) -> dict[str, Any]:
    return {"id": await env.activity()}


async def _task(env: Env) -> dict[str, Any]:
    return {"id": await env.make("createActivity", **await _task_input(env))}


async def _deal(env: Env) -> dict[str, Any]:
    return {"id": await env.deal()}


# (mutation, inputs without the field, the input field)
TIME_WRITES: list[tuple[str, Inputs, str]] = [
    ("createOrder", order_input, "placedAt"),
    ("updateOrder", _order, "placedAt"),
    ("createActivity", activity_input, "occurredAt"),
    ("createActivity", _task_input, "dueAt"),
    ("updateActivity", _activity, "occurredAt"),
    ("updateActivity", _task, "dueAt"),
    ("createApiKey", api_key_input, "expiresAt"),
]
DATE_WRITES: list[tuple[str, Inputs, str]] = [
    ("createDeal", deal_input, "expectedCloseDate"),
    ("updateDeal", _deal, "expectedCloseDate"),
]


@pytest.mark.parametrize(("mutation", "inputs", "name"), TIME_WRITES + DATE_WRITES)
async def test_dates_outside_the_range_are_refused_on_every_write(
    env: Env, mutation: str, inputs: Inputs, name: str
) -> None:
    bad = BAD_DATES if (mutation, inputs, name) in DATE_WRITES else BAD_TIMES
    for value in bad:
        result = await env.run(mutation, Call({**await inputs(env), name: value}))
        payload = result.ok()[mutation]
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", name)], (
            value,
            payload,
        )
        assert all(v is None for k, v in payload.items() if k != "errors"), payload


READ_BACK = {
    "placedAt": "query($id: ID!) { node(id: $id) { ... on Order { value: placedAt } } }",
    "occurredAt": "query($id: ID!) { node(id: $id) { ... on Activity { value: occurredAt } } }",
    "dueAt": "query($id: ID!) { node(id: $id) { ... on Activity { value: dueAt } } }",
    "expectedCloseDate": "query($id: ID!) { node(id: $id) { ... on Deal { value: expectedCloseDate } } }",
}


@pytest.mark.parametrize(("mutation", "inputs", "name"), TIME_WRITES[:6] + DATE_WRITES)
async def test_values_at_the_ends_of_the_range_are_stored_and_read_back(
    env: Env, mutation: str, inputs: Inputs, name: str
) -> None:
    dates = (mutation, inputs, name) in DATE_WRITES
    expected = {d: d for d in EDGE_DATES} if dates else EDGE_TIMES
    for value, shown in expected.items():
        payload = (await env.run(mutation, Call({**await inputs(env), name: value}))).ok()
        assert payload[mutation]["errors"] == [], (value, payload)
        entity = next(v["id"] for k, v in payload[mutation].items() if k != "errors" and v)
        read = (await env.admin(READ_BACK[name], {"id": entity})).ok()
        assert read["node"]["value"] == shown, (value, read)


FILTERS = [
    ("customers", "CustomerFilter", "createdAt", BAD_TIMES),
    ("orders", "OrderFilter", "placedAt", BAD_TIMES),
    ("activities", "ActivityFilter", "dueAt", BAD_TIMES),
    ("deals", "DealFilter", "expectedCloseDate", BAD_DATES),
    ("auditLog", "AuditLogFilter", "createdAt", BAD_TIMES),
]


@pytest.mark.parametrize(("root", "filter_type", "name", "values"), FILTERS)
async def test_filters_refuse_dates_outside_the_range(
    as_role: dict[Role, support.GraphQLClient],
    root: str,
    filter_type: str,
    name: str,
    values: list[str],
) -> None:
    query = f"query($f: {filter_type}) {{ {root}(filter: $f) {{ totalCount }} }}"
    for op in ("eq", "gt", "lte"):
        for value in values:
            result = await as_role[Role.ADMIN](query, {"f": {name: {op: value}}})
            assert result.data is None, (value, result.body)
            assert [e["extensions"] for e in result.errors] == [
                {"code": "VALIDATION", "field": name}
            ], (value, result.body)


async def test_filters_refuse_whole_numbers_beyond_a_small_integer_column(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    """A rating (1 to 5, stored in 16 bits) compared with a 32-bit GraphQL Int."""
    for field in (
        "conversations(filter: $f) { totalCount }",
        "conversationsAggregate(filter: $f) { count }",
    ):
        query = f"query($f: ConversationFilter) {{ {field} }}"
        for value in (32768, -32769, 2147483647):
            for op in ("eq", "gte", "lt"):
                result = await as_role[Role.ADMIN](query, {"f": {"ratingScore": {op: value}}})
                assert [e["extensions"] for e in result.errors] == [
                    {"code": "VALIDATION", "field": "ratingScore"}
                ], result.body
        result = await as_role[Role.ADMIN](query, {"f": {"ratingScore": {"lte": 32767}}})
        assert not result.errors, result.body


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("18446744073709551616", True),  # 2^64
        ("-9223372036854775809", True),  # -2^63 - 1
        ("100000000000000000000", True),
        ("1e400", True),  # a float literal beyond a double: infinity
        ("18446744073709551615", False),  # 2^64 - 1
        ("-9223372036854775808", False),
        ("1e20", False),  # a float: stored and read back as one
        ("1.5e300", False),
    ],
)
async def test_json_whole_numbers_beyond_64_bits_are_refused_on_write(
    as_role: dict[Role, support.GraphQLClient], value: str, refused: bool
) -> None:
    client = as_role[Role.ADMIN]
    buyer = 'mutation { createCustomer(input: {name: "Buyer"}) { customer { id } } }'
    customer_id = (await client(buyer)).ok()["createCustomer"]["customer"]["id"]
    # A literal: in a JSON body the parser reads such a whole number as a float already.
    writes = {
        "createCompany": ('name: "Big numbers", customFields: {n: %s}', "customFields"),
        "createCustomer": ('name: "Big numbers", preferences: {n: [%s]}', "preferences"),
        "createOrder": (
            f'customerId: "{customer_id}", amount: "1", currency: "EUR", items: [{{qty: %s}}]',
            "items",
        ),
    }
    for mutation, (fields, name) in writes.items():
        entity = mutation.removeprefix("create").lower()
        document = (
            f"mutation {{ {mutation}(input: {{{fields % value}}}) {{ {entity} {{ id }} "
            "errors { code field } } }"
        )
        payload = (await client(document)).ok()[mutation]
        if refused:
            assert payload == {entity: None, "errors": [{"code": "VALIDATION", "field": name}]}
        else:
            assert payload["errors"] == [], payload
