"""GraphQL over HTTP: media types, status codes, GET, health checks, bad requests."""

from __future__ import annotations

import json

from crm_graphql.models import Role
from tests import support


async def test_post_answers_graphql_response_json(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    result = await as_role[Role.AGENT]("{ me { role } }")
    assert result.status == 200
    assert result.headers["content-type"].startswith("application/graphql-response+json")
    assert result.headers["x-request-id"]
    assert result.data == {"me": {"role": "AGENT"}}


async def test_plain_json_accept_gets_application_json(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    response = await client.http.post(
        "/graphql",
        json={"query": "{ me { role } }"},
        headers={**client.headers(), "Accept": "application/json"},
    )
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["data"]["me"]["role"] == "AGENT"


async def test_malformed_query_is_400_with_graphql_error(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    syntax = await client("{ customers { ")
    assert syntax.status == 400
    assert "data" not in syntax.body
    assert syntax.errors[0]["message"].startswith("Syntax Error")
    unknown = await client("{ noSuchField }")
    assert unknown.status == 400
    assert unknown.errors[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    wrong_var = await client("query($n: Int) { customers(first: $n) { totalCount } }", {"n": "ten"})
    assert wrong_var.status == 400


async def test_get_runs_queries_but_not_mutations(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    response = await client.http.get(
        "/graphql", params={"query": "{ me { role } }"}, headers=client.headers()
    )
    assert response.status_code == 200 and response.json()["data"]["me"]["role"] == "AGENT"
    mutation = 'mutation { createCustomer(input: {name: "via GET"}) { errors { code } } }'
    response = await client.http.get(
        "/graphql", params={"query": mutation}, headers=client.headers()
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    names = (await client('{ customers(filter: {name: {eq: "via GET"}}) { totalCount } }')).ok()
    assert names["customers"]["totalCount"] == 0


async def test_bad_bodies_are_4xx(client: support.GraphQLClient) -> None:
    http = client.http
    form = await http.post("/graphql", data={"query": "{ me { email } }"})
    assert form.status_code == 415
    broken = await http.post(
        "/graphql", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    not_object = await http.post(
        "/graphql", content=b"[1, 2]", headers={"Content-Type": "application/json"}
    )
    assert not_object.status_code == 400
    no_query = await http.post("/graphql", json={"variables": {}})
    assert no_query.status_code == 400
    huge = await http.post(
        "/graphql",
        content=json.dumps({"query": "{ me { email } }", "x": "a" * 2_000_000}),
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413


async def test_health_and_readiness(client: support.GraphQLClient) -> None:
    assert (await client.http.get("/healthz")).json() == {"status": "ok"}
    ready = await client.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_request_id_is_kept_when_sane_and_replaced_when_not(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    for given, kept in (("abc-123", True), ("x" * 65, False), ("bad id;drop", False)):
        response = await client.http.post(
            "/graphql",
            json={"query": 'mutation { createCustomer(input: {name: "R"}) { errors { code } } }'},
            headers={**client.headers(), "X-Request-Id": given},
        )
        assert (
            response.status_code == 200
            and response.json()["data"]["createCustomer"]["errors"] == []
        )
        assert (response.headers["x-request-id"] == given) is kept
