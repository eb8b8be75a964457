"""Query limits before execution: depth, aliases, tokens, input nesting, cost (page sizes
multiply), page-size cap, body size, batches; introspection policy per caller."""

from __future__ import annotations

import json
from typing import Any

from graphql import get_introspection_query

from crm_graphql.models import Role
from crm_graphql.settings import Settings
from tests import support

INTROSPECTION = get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
)

README_QUERY = """
{
  customers(first: 10, orderBy: [{field: LAST_ACTIVITY_AT, direction: DESC}],
            filter: {lifecycleStage: {in: [LEAD, QUALIFIED]}, name: {contains: "an"}}) {
    totalCount
    edges {
      cursor
      node {
        name email company { name } owner { name }
        deals(first: 3) { nodes { title amount currency stage { name } } }
        activities(first: 5) { nodes { type subject occurredAt } }
        purchaseSummary { orderCount totals { amount currency } lastOrderAt }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def _code(result: support.GraphQLResponse) -> str:
    return str(result.errors[0]["extensions"]["code"])


def _deep_query(levels: int) -> str:
    """customers > edges > node, then `levels` times deals > nodes > customer."""
    inner = "id"
    for _ in range(levels):
        inner = f"deals(first: 1) {{ nodes {{ customer {{ {inner} }} }} }}"
    return f"{{ customers(first: 1) {{ edges {{ node {{ {inner} }} }} }} }}"


async def test_realistic_queries_pass_the_default_limits(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    assert "customers" in (await client(README_QUERY)).ok()
    schema = (await client(INTROSPECTION)).ok()["__schema"]
    assert schema["queryType"]["name"] == "Query"


async def test_too_deep_query_is_refused(as_role: dict[Role, support.GraphQLClient]) -> None:
    client = as_role[Role.AGENT]
    # customers(1) edges(2) node(3) + 3 per level + id: 4 levels = 16 > 12.
    assert (await client(_deep_query(2))).status == 200  # 3 + 6 + 1 = 10 levels
    result = await client(_deep_query(4))
    assert result.status == 400 and "data" not in result.body
    assert _code(result) == "QUERY_TOO_DEEP"
    assert result.errors[0]["extensions"]["limit"] == 12
    # Through a fragment: the same depth, the same answer.
    fragment = _deep_query(4).replace("{ customers", "{ ...Q } fragment Q on Query { customers")
    assert _code(await client(fragment)) == "QUERY_TOO_DEEP"


async def test_too_many_aliases_are_refused_before_validation(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    ok = "{ " + " ".join(f"a{i}: __typename" for i in range(50)) + " }"
    assert (await client(ok)).status == 200
    result = await client("{ " + " ".join(f"a{i}: me {{ email }}" for i in range(51)) + " }")
    assert result.status == 400
    assert _code(result) == "TOO_MANY_ALIASES"
    assert result.errors[0]["extensions"]["actual"] == 51


async def test_too_many_tokens_are_refused_while_parsing(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    result = await client("{ me { " + "email " * 5000 + "} }")
    assert result.status == 400
    assert _code(result) == "TOO_MANY_TOKENS"
    comments = await client("{ me { email } }\n" + "#\n" * 6000)
    assert comments.status == 400 and _code(comments) == "TOO_MANY_TOKENS"
    # An ordinary syntax error keeps a code of its own.
    broken = await client("{ me { email }")
    assert broken.status == 400 and _code(broken) == "GRAPHQL_PARSE_FAILED"


async def test_cost_multiplies_page_sizes(as_role: dict[Role, support.GraphQLClient]) -> None:
    client = as_role[Role.AGENT]
    # 100 customers x 100 deals x 100 activities: a million fields.
    costly = """query($n: Int) { customers(first: 100) { nodes { deals(first: $n) {
        nodes { activities(first: 100) { nodes { id subject } } } } } } }"""
    refused = await client(costly, {"n": 100})
    assert refused.status == 400 and _code(refused) == "QUERY_TOO_COSTLY"
    assert refused.errors[0]["extensions"]["cost"] > 50_000
    # The same document (now cached) with a small page size from its variable runs.
    assert (await client(costly, {"n": 1})).status == 200
    # Omitted sizes count as the default page size (20): 50 x 20 x 20 x 2 < 50000 ...
    defaults = (
        "{ customers(first: 50) { nodes { deals { nodes { activities { nodes { id } } } } } } }"
    )
    assert (await client(defaults)).status == 200
    assert _code(await client(defaults.replace("50", "70"))) == "QUERY_TOO_COSTLY"
    # ... and `nodes(ids:)` by the number of ids.
    ids = json.dumps(["x"] * 100)
    nested = f"{{ nodes(ids: {ids}) {{ ... on Customer {{ deals(first: 100) {{ nodes {{"
    nested += " activities(first: 100) { nodes { id } } } } } } }"
    assert _code(await client(nested)) == "QUERY_TOO_COSTLY"


async def test_page_size_cap_is_a_typed_error(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    result = await as_role[Role.AGENT]("{ customers(first: 101) { totalCount } }")
    assert result.status == 200 and result.data is None
    error = result.errors[0]
    assert error["extensions"] == {"code": "VALIDATION", "field": "first"}
    assert "between 0 and 100" in error["message"]


async def test_deeply_nested_input_is_refused(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    tree: dict[str, Any] = {"name": {"eq": "x"}}
    for _ in range(15):
        tree = {"and": [tree]}
    variables = await client(
        "query($f: CustomerFilter) { customers(filter: $f) { totalCount } }", {"f": tree}
    )
    assert variables.status == 400 and _code(variables) == "INPUT_TOO_DEEP"
    literal = json.dumps(tree)  # JSON keys are quoted: rewrite as a GraphQL literal
    for key in ("and", "name", "eq"):
        literal = literal.replace(f'"{key}"', key)
    result = await client(f"{{ customers(filter: {literal}) {{ totalCount }} }}")
    assert result.status == 400 and _code(result) == "INPUT_TOO_DEEP"
    shallow = await client(
        "query($f: CustomerFilter) { customers(filter: $f) { totalCount } }",
        {"f": {"or": [{"not": {"name": {"eq": "x"}}}, {"email": {"contains": "@"}}]}},
    )
    assert shallow.ok()["customers"]["totalCount"] == 0


async def test_batches_run_each_operation_and_are_capped(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    batch = [
        {"query": "{ me { role } }"},
        {
            "query": "mutation($n: String!) { createCustomer(input: {name: $n}) { errors { code } } }",
            "variables": {"n": "Batched"},
        },
        {"query": "{ nope }"},
    ]
    response = await client.http.post("/graphql", json=batch, headers=client.headers())
    assert response.status_code == 200
    first, second, third = response.json()
    assert first == {"data": {"me": {"role": "AGENT"}}}
    assert second == {"data": {"createCustomer": {"errors": []}}}
    assert third["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    too_many = await client.http.post(
        "/graphql", json=[{"query": "{ me { role } }"}] * 11, headers=client.headers()
    )
    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["extensions"]["code"] == "BATCH_TOO_LARGE"
    for body in ([], [{"query": "{ me { role } }"}, 3], [{"query": ""}]):
        bad = await client.http.post("/graphql", json=body, headers=client.headers())
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    made = await client('{ customers(filter: {name: {eq: "Batched"}}) { totalCount } }')
    assert made.ok()["customers"]["totalCount"] == 1


async def test_limits_are_configurable(settings: Settings, users: Any) -> None:
    async with support.app_client(
        settings, max_query_depth=3, max_aliases=1, max_query_cost=10, max_batch_operations=2
    ) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        assert _code(await client("{ customers { edges { node { id } } } }")) == "QUERY_TOO_DEEP"
        assert _code(await client("{ a: me { email } b: me { email } }")) == "TOO_MANY_ALIASES"
        assert _code(await client("{ customers(first: 5) { nodes { id name } } }")) == (
            "QUERY_TOO_COSTLY"
        )
        response = await client.http.post(
            "/graphql", json=[{"query": "{ me { email } }"}] * 3, headers=client.headers()
        )
        assert response.json()["errors"][0]["extensions"]["code"] == "BATCH_TOO_LARGE"
    async with support.app_client(settings, max_query_depth=0, max_query_cost=0) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        # 0 switches a limit off.
        assert (await client(_deep_query(5))).status == 200


async def test_introspection_for_anonymous_callers_follows_the_policy(
    settings: Settings, users: Any
) -> None:
    email = users[Role.VIEWER].email
    typename = "{ __typename }"
    type_query = '{ __type(name: "Customer") { name } }'
    async with support.app_client(settings, env="production") as anonymous:
        # Logged in first, so that a cached validation cannot let the anonymous through.
        viewer = await anonymous.logged_in(email, support.PASSWORD)
        assert (await viewer(type_query)).ok() == {"__type": {"name": "Customer"}}
        assert (await viewer(INTROSPECTION)).status == 200
        for query in (
            type_query,
            INTROSPECTION,
            "{ ... on Query { __schema { queryType { name } } } }",
        ):
            refused = await anonymous(query)
            assert refused.status == 400 and _code(refused) == "INTROSPECTION_DISABLED"
        assert (await anonymous(typename)).ok() == {"__typename": "Query"}
    async with support.app_client(settings, introspection="off") as anonymous:
        viewer = await anonymous.logged_in(email, support.PASSWORD)
        assert _code(await viewer(type_query)) == "INTROSPECTION_DISABLED"
    async with support.app_client(settings, env="production", introspection="on") as anonymous:
        assert (await anonymous(type_query)).ok() == {"__type": {"name": "Customer"}}


async def test_body_size_is_capped(settings: Settings) -> None:
    async with support.app_client(settings, max_request_bytes=1000) as client:
        big = await client("{ __typename }", {"pad": "x" * 1000})
        assert big.status == 413 and _code(big) == "PAYLOAD_TOO_LARGE"
        assert (await client("{ __typename }", {"pad": "x" * 100})).status == 200
