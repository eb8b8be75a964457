"""Hostile input battery through the real ASGI app: malformed JSON, wrong variable types,
huge strings, deep nesting, thousands of aliases, odd Unicode and injection-looking
filter values. Every answer is a 4xx or a 200 with typed errors (never a 500, never
INTERNAL), and afterwards the workspace holds exactly what it held before."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Role, Workspace
from tests import support

CUSTOMER_FIELDS = "id name email phone tags needs preferences customFields lifecycleStage version"
READ_CUSTOMER = f"query($id: ID!) {{ node(id: $id) {{ ... on Customer {{ {CUSTOMER_FIELDS} }} }} }}"
SEARCH = "query($f: CustomerFilter) { customers(filter: $f) { totalCount nodes { name } } }"
CREATE = "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } errors { code field } } }"
UPDATE = "mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) { customer { id } errors { code field } } }"
ORDER = "mutation($i: CreateOrderInput!) { createOrder(input: $i) { order { id } errors { code field } } }"
PAGE = (
    "query($first: Int, $after: String) { customers(first: $first, after: $after) { totalCount } }"
)

NUL = "a\x00b"
MEGA = "x" * 1_000_000  # with the JSON around it, over the 1 MB body limit
BIG = "y" * 900_000  # under the body limit: reaches validation
# Injection-looking and odd Unicode text: harmless as data, found only where it is.
ODD_TEXT = (
    "'; DROP TABLE customers; --",
    "%",
    "_",
    "\\",
    "%' OR '1'='1",
    "\\%",
    "\u202eevil\u202c",  # right-to-left override
    "a\u200bb",  # zero-width space
    "\U0001f469\u200d\U0001f4bb",  # emoji with a zero-width joiner
    "e\u0301",  # combining accent
    "\ufeff",  # byte order mark
    "\U0010ffff",  # the last code point
    "tab\tnew\nline",
)


@dataclass
class Case:
    """One hostile request. ``expect``: the codes acceptable in the answer (any typed,
    non-INTERNAL answer when empty); ``status``: the HTTP statuses acceptable."""

    name: str
    query: str | None = None
    variables: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    get: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    expect: set[str] = field(default_factory=set)
    status: set[int] = field(default_factory=lambda: {200, 400, 401, 405, 413, 415})


def _gid(type_name: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{value}".encode()).decode().rstrip("=")


def _cases(customer_id: str) -> list[Case]:
    deep_filter: dict[str, Any] = {"name": {"eq": "x"}}
    for _ in range(40):
        deep_filter = {"or": [deep_filter]}
    not_chain: dict[str, Any] = {"name": {"contains": "a"}}
    for _ in range(8):
        not_chain = {"not": not_chain}
    deep_json = b'{"query": "{ __typename }", "variables": {"v": ' + b'{"a": ' * 2000
    deep_json += b"1" + b"}" * 2002
    nested_selection = "{ me { " + "__typename " + "}" * 1 + " }"
    deep_selection = "{ " + "customers { nodes { " * 60 + "id" + " } }" * 60 + " }"
    unparseable_nesting = "{ a(x: " + "[" * 3000 + "]" * 3000 + ") }"
    foreign = _gid("Deal", str(uuid.uuid4()))
    return [
        # ---------------------------------------------------------------- the body
        Case("malformed json", raw=b'{"query": "{ me { email } }"', expect={"BAD_REQUEST"}),
        Case("empty body", raw=b"", expect={"BAD_REQUEST"}),
        Case("json null", raw=b"null", expect={"BAD_REQUEST"}),
        Case("json number", raw=b"42", expect={"BAD_REQUEST"}),
        Case("json string", raw=b'"{ me { email } }"', expect={"BAD_REQUEST"}),
        Case("array of numbers", raw=b"[1, 2]", expect={"BAD_REQUEST"}),
        Case("query is a number", raw=b'{"query": 5}', expect={"BAD_REQUEST"}),
        Case("query is null", raw=b'{"query": null}', expect={"BAD_REQUEST"}),
        Case(
            "variables a list",
            raw=b'{"query": "{ __typename }", "variables": [1]}',
            expect={"BAD_REQUEST"},
        ),
        Case(
            "operationName a number",
            raw=b'{"query": "{ __typename }", "operationName": 3}',
            expect={"BAD_REQUEST"},
        ),
        Case("invalid utf-8", raw=b'{"query": "{ \xff\xfe }"}', expect={"BAD_REQUEST"}),
        Case(
            "lone surrogate in json",
            raw=b'{"query": "{ __typename }", "variables": {"v": "\\ud800"}}',
            expect={"BAD_REQUEST"},
        ),
        Case("json nested 2000 deep", raw=deep_json, expect={"INPUT_TOO_DEEP"}),
        Case("brackets 100000 deep", raw=b"[" * 100_000, expect={"INPUT_TOO_DEEP"}),
        Case(
            "body over 1 MB",
            query=CREATE,
            variables={"i": {"name": MEGA}},
            expect={"PAYLOAD_TOO_LARGE"},
        ),
        Case(
            "form body",
            raw=b"query=%7B+me+%7B+email+%7D+%7D",
            content_type="application/x-www-form-urlencoded",
            expect={"UNSUPPORTED_MEDIA_TYPE"},
        ),
        Case(
            "text body",
            raw=b'{"query": "{ __typename }"}',
            content_type="text/plain",
            expect={"UNSUPPORTED_MEDIA_TYPE"},
        ),
        Case(
            "get with broken variables",
            get={"query": "{ __typename }", "variables": "{x"},
            expect={"BAD_REQUEST"},
        ),
        Case(
            "get with broken query", get={"query": "{ customers {"}, expect={"GRAPHQL_PARSE_FAILED"}
        ),
        Case(
            "mutation over get",
            get={"query": CREATE, "variables": '{"i": {"name": "g"}}'},
            expect={"METHOD_NOT_ALLOWED"},
        ),
        Case(
            "garbage bearer",
            query="{ __typename }",
            headers={"Authorization": "Bearer junk"},
            expect={"UNAUTHENTICATED"},
        ),
        Case(
            "basic auth",
            query="{ __typename }",
            headers={"Authorization": "Basic YTpi"},
            expect={"UNAUTHENTICATED"},
        ),
        Case(
            "huge bearer",
            query="{ __typename }",
            headers={"Authorization": "Bearer " + "a" * 20_000},
            expect={"UNAUTHENTICATED"},
        ),
        Case(
            "fake api key",
            query="{ __typename }",
            headers={"Authorization": "Bearer crm_abcdefghij_" + "s" * 43},
            expect={"UNAUTHENTICATED"},
        ),
        Case(
            "odd request id", query="{ __typename }", headers={"X-Request-Id": "../../etc;rm -rf"}
        ),
        # ------------------------------------------------------------ the document
        Case("syntax error", query="{ customers { ", expect={"GRAPHQL_PARSE_FAILED"}),
        Case(
            "unknown field",
            query="{ customers { password } }",
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "fragment cycle",
            query="{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "unknown operation name",
            query="query A { __typename }",
            raw=json.dumps({"query": "query A { __typename }", "operationName": "B"}).encode(),
            expect={"GRAPHQL_VALIDATION_FAILED", "BAD_REQUEST"},
        ),
        Case(
            "two operations, no name",
            query="query A { __typename } query B { __typename }",
        ),
        Case(
            "5000 aliases",
            query="{ " + " ".join(f"a{i}: __typename" for i in range(5000)) + " }",
            expect={"TOO_MANY_TOKENS", "TOO_MANY_ALIASES"},
        ),
        Case(
            "1000 aliases",
            query="{ " + " ".join(f"a{i}: me {{ id }}" for i in range(1000)) + " }",
            expect={"TOO_MANY_ALIASES", "TOO_MANY_TOKENS"},
        ),
        Case("selection 120 deep", query=deep_selection, expect={"QUERY_TOO_DEEP"}),
        Case(
            "nesting the parser cannot hold",
            query=unparseable_nesting,
            expect={"QUERY_TOO_DEEP", "TOO_MANY_TOKENS"},
        ),
        Case("harmless nesting", query=nested_selection),
        Case(
            "directive flood",
            query="{ __typename" + " @include(if: true)" * 400 + " }",
            expect={"GRAPHQL_VALIDATION_FAILED", "TOO_MANY_TOKENS"},
        ),
        Case(
            "huge string literal",
            query='{ customers(filter: {name: {eq: "' + BIG + '"}}) { totalCount } }',
        ),
        Case(
            "nul in a literal",
            query='{ customers(filter: {name: {eq: "a\\u0000b"}}) { totalCount } }',
            expect={"VALIDATION"},
        ),
        Case(
            "lone surrogate literal",
            query='{ customers(filter: {name: {eq: "\\uD800"}}) { totalCount } }',
            expect={"GRAPHQL_PARSE_FAILED"},
        ),
        # ------------------------------------------------------------ variables
        Case(
            "string for an int",
            query=PAGE,
            variables={"first": "ten"},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "float for an int",
            query=PAGE,
            variables={"first": 1.5},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "int overflow",
            query=PAGE,
            variables={"first": 2**31},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "enormous int",
            query=PAGE,
            variables={"first": 10**40},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "literal int overflow",
            query="{ customers(first: 99999999999999) { totalCount } }",
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case("huge first", query=PAGE, variables={"first": 100_000}, expect={"VALIDATION"}),
        Case("negative first", query=PAGE, variables={"first": -1}, expect={"VALIDATION"}),
        Case(
            "first and last",
            query="{ customers(first: 1, last: 1) { totalCount } }",
            expect={"VALIDATION"},
        ),
        Case(
            "object for a string",
            query=SEARCH,
            variables={"f": {"name": {"eq": {"$ne": 1}}}},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "unknown enum",
            query=SEARCH,
            variables={"f": {"lifecycleStage": {"in": ["BOGUS"]}}},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "unknown filter field",
            query=SEARCH,
            variables={"f": {"password": {"eq": "x"}}},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "missing required variable",
            query=READ_CUSTOMER,
            variables={},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        Case(
            "filter tree 40 deep",
            query=SEARCH,
            variables={"f": deep_filter},
            expect={"INPUT_TOO_DEEP"},
        ),
        Case("not chain 8 deep", query=SEARCH, variables={"f": not_chain}),
        # ------------------------------------------------------------ cursors and IDs
        Case("garbage cursor", query=PAGE, variables={"after": "garbage!!"}, expect={"VALIDATION"}),
        Case("empty cursor", query=PAGE, variables={"after": ""}),
        Case(
            "json cursor of junk",
            query=PAGE,
            variables={"after": base64.urlsafe_b64encode(b'{"k": [1, {"x": null}]}').decode()},
            expect={"VALIDATION"},
        ),
        Case("nul cursor", query=PAGE, variables={"after": "\x00"}, expect={"VALIDATION"}),
        Case("huge cursor", query=PAGE, variables={"after": "A" * 500_000}, expect={"VALIDATION"}),
        Case("garbage id", query=READ_CUSTOMER, variables={"id": "nope"}),
        Case("empty id", query=READ_CUSTOMER, variables={"id": ""}),
        Case("id of no uuid", query=READ_CUSTOMER, variables={"id": _gid("Customer", "1 OR 1=1")}),
        Case("id of another type", query=READ_CUSTOMER, variables={"id": foreign}),
        Case("nul id", query=READ_CUSTOMER, variables={"id": "\x00"}),
        Case(
            "101 ids",
            query="query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            variables={"ids": [customer_id] * 101},
            expect={"VALIDATION"},
        ),
        Case(
            "update with a garbage id",
            query=UPDATE,
            variables={"i": {"id": "x", "name": "n"}},
            expect={"NOT_FOUND", "VALIDATION"},
        ),
        Case(
            "update with a foreign type id",
            query=UPDATE,
            variables={"i": {"id": foreign, "name": "n"}},
            expect={"NOT_FOUND", "VALIDATION"},
        ),
        Case(
            "expectedVersion overflow",
            query=UPDATE,
            variables={"i": {"id": customer_id, "expectedVersion": 2**31}},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
        # ------------------------------------------------------------ writes that must fail
        Case("900 KB name", query=CREATE, variables={"i": {"name": BIG}}, expect={"VALIDATION"}),
        Case(
            "900 KB name literal",
            query='mutation { createCustomer(input: {name: "' + BIG + '"}) { errors { code } } }',
            expect={"VALIDATION"},
        ),
        Case("nul in a name", query=CREATE, variables={"i": {"name": NUL}}, expect={"VALIDATION"}),
        Case(
            "nul in an update",
            query=UPDATE,
            variables={"i": {"id": customer_id, "name": NUL}},
            expect={"VALIDATION"},
        ),
        Case(
            "nul in a tag",
            query=UPDATE,
            variables={"i": {"id": customer_id, "tags": ["ok", NUL]}},
            expect={"VALIDATION"},
        ),
        Case(
            "nul in custom fields",
            query=UPDATE,
            variables={"i": {"id": customer_id, "customFields": {"k": NUL}}},
            expect={"VALIDATION"},
        ),
        Case(
            "nul in a custom field key",
            query=UPDATE,
            variables={"i": {"id": customer_id, "customFields": {NUL: 1}}},
            expect={"VALIDATION"},
        ),
        Case(
            "custom fields 40 deep",
            query=UPDATE,
            variables={"i": {"id": customer_id, "customFields": deep_filter}},
            expect={"INPUT_TOO_DEEP"},
        ),
        Case("empty name", query=CREATE, variables={"i": {"name": "   "}}, expect={"VALIDATION"}),
        Case(
            "bad email",
            query=CREATE,
            variables={"i": {"name": "n", "email": "'; DROP TABLE x; --"}},
            expect={"VALIDATION"},
        ),
        *[
            Case(
                f"amount {amount}",
                query=ORDER,
                variables={"i": {"customerId": customer_id, "amount": amount, "currency": "EUR"}},
                expect={"VALIDATION", "GRAPHQL_VALIDATION_FAILED"},
            )
            for amount in ("NaN", "Infinity", "-Infinity", "1e100000", "12,5", "0x10", "1" * 400)
        ],
        Case(
            "bad currency",
            query=ORDER,
            variables={"i": {"customerId": customer_id, "amount": "1", "currency": "'; --"}},
            expect={"VALIDATION"},
        ),
        Case(
            "date out of range",
            query=ORDER,
            variables={
                "i": {
                    "customerId": customer_id,
                    "amount": "1",
                    "currency": "EUR",
                    "placedAt": "99999-01-01T00:00:00Z",
                }
            },
            expect={"GRAPHQL_VALIDATION_FAILED", "VALIDATION"},
        ),
        # ------------------------------------------------------------ filters: injection, unicode
        *[
            Case(f"filter {op} {value!r}", query=SEARCH, variables={"f": {"name": {op: value}}})
            for op in ("eq", "contains", "startsWith")
            for value in ODD_TEXT
        ],
        Case(
            "filter in with many values",
            query=SEARCH,
            variables={"f": {"name": {"in": ["'; --", "%", "\\"] * 300}}},
        ),
        Case(
            "nul in a filter",
            query=SEARCH,
            variables={"f": {"name": {"contains": NUL}}},
            expect={"VALIDATION"},
        ),
        Case(
            "nul in an email filter",
            query=SEARCH,
            variables={"f": {"email": {"eq": NUL}}},
            expect={"VALIDATION"},
        ),
        Case(
            "lone surrogate escaped twice",
            query=SEARCH,
            variables={"f": {"name": {"eq": "\\ud800"}}},
        ),
        Case(
            "garbage id filter",
            query=SEARCH,
            variables={"f": {"id": {"eq": "'; --"}}},
            expect={"VALIDATION"},
        ),
        Case(
            "tags filter injection",
            query=SEARCH,
            variables={"f": {"tags": {"anyOf": ["'; DROP TABLE customers; --", "%"]}}},
        ),
        Case(
            "date filter garbage",
            query=SEARCH,
            variables={"f": {"createdAt": {"gt": "yesterday"}}},
            expect={"GRAPHQL_VALIDATION_FAILED"},
        ),
    ]


async def _send(client: support.GraphQLClient, case: Case) -> httpx.Response:
    headers = {**client.headers(), **case.headers}
    if case.get is not None:
        return await client.http.get("/graphql", params=case.get, headers=headers)
    if case.raw is not None:
        body = case.raw
    else:
        payload: dict[str, Any] = {"query": case.query}
        if case.variables is not None:
            payload["variables"] = case.variables
        body = json.dumps(payload).encode()
    headers["Content-Type"] = case.content_type
    return await client.http.post("/graphql", content=body, headers=headers)


def _codes(body: Any) -> list[str]:
    """Every error code in an answer: top-level errors and mutation payload errors."""
    codes: list[str] = []
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            extensions = item.get("extensions")
            if isinstance(extensions, dict) and "code" in extensions:
                codes.append(extensions["code"])
            elif "code" in item and isinstance(item["code"], str):
                codes.append(item["code"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return codes


def _check(case: Case, response: httpx.Response) -> None:
    where = f"{case.name}: {response.status_code} {response.text[:300]}"
    assert response.status_code < 500, where
    assert response.status_code in case.status, where
    body = response.json()
    codes = _codes(body)
    assert "INTERNAL" not in codes and "UNAVAILABLE" not in codes, where
    for error in body.get("errors") or []:
        assert error.get("extensions", {}).get("code"), where  # every error is typed
    if response.status_code != 200:
        assert body.get("errors"), where
    if case.expect:
        assert set(codes) & case.expect, where


async def _row_counts(
    sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID
) -> dict[str, int]:
    async with sessionmaker() as session:
        tables = (
            await session.execute(
                text(
                    "SELECT table_name FROM information_schema.columns "
                    "WHERE column_name = 'workspace_id' AND table_schema = 'public' "
                    "ORDER BY table_name"
                )
            )
        ).scalars()
        counts = {}
        for table in tables:
            counts[table] = (
                await session.execute(
                    text(f'SELECT count(*) FROM "{table}" WHERE workspace_id = :w'),
                    {"w": workspace_id},
                )
            ).scalar_one()
        return counts


async def test_hostile_input_battery(
    as_role: dict[Role, support.GraphQLClient],
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = as_role[Role.AGENT]
    created = await client(
        CREATE,
        {
            "i": {
                "name": "Ada Lovelace",
                "email": "ada@example.com",
                "tags": ["vip", "émigré"],
                "customFields": {"tier": "gold", "score": 3},
            }
        },
    )
    customer_id = created.ok()["createCustomer"]["customer"]["id"]
    before_read = (await client(READ_CUSTOMER, {"id": customer_id})).ok()
    before_counts = await _row_counts(sessionmaker, workspace.id)

    failures = []
    for case in _cases(customer_id):
        response = await _send(client, case)
        try:
            _check(case, response)
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "\n".join(failures)

    assert await _row_counts(sessionmaker, workspace.id) == before_counts
    assert (await client(READ_CUSTOMER, {"id": customer_id})).ok() == before_read
    # And the injection-looking filters matched nothing they should not have.
    for value in ("%", "_", "\\", "'; DROP TABLE customers; --"):
        found = await client(SEARCH, {"f": {"name": {"contains": value}}})
        assert found.ok()["customers"]["totalCount"] == 0, value
    assert (await client(SEARCH, {"f": {"name": {"contains": "Love"}}})).ok()["customers"][
        "totalCount"
    ] == 1


@pytest.mark.parametrize("name", ODD_TEXT)
async def test_odd_unicode_round_trips_exactly(
    as_role: dict[Role, support.GraphQLClient], name: str
) -> None:
    client = as_role[Role.AGENT]
    created = await client(CREATE, {"i": {"name": name, "tags": [name[:60]]}})
    customer_id = created.ok()["createCustomer"]["customer"]["id"]
    read = (await client(READ_CUSTOMER, {"id": customer_id})).ok()["node"]
    assert read["name"] == name.strip() and read["tags"] == [name[:60].strip()]
    found = await client(SEARCH, {"f": {"name": {"eq": name.strip()}}})
    assert found.ok()["customers"]["nodes"] == [{"name": name.strip()}]
