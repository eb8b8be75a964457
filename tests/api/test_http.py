"""GraphQL over HTTP: media types, status codes, GET, health checks, bad requests."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from crm_graphql.models import Role, User
from crm_graphql.services.auth import TokenConfig, issue_access_token
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


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/plain, */*;q=0.8"])
async def test_accept_without_graphql_response_json_gets_application_json(
    as_role: dict[Role, support.GraphQLClient], accept: str | None
) -> None:
    client = as_role[Role.AGENT]
    headers = {"Authorization": f"Bearer {client.token}"}
    if accept is not None:
        headers["Accept"] = accept
    response = await client.http.post(
        "/graphql", json={"query": "{ me { role } }"}, headers=headers
    )
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"data": {"me": {"role": "AGENT"}}}


async def test_graphql_response_json_wins_unless_ranked_below_json(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    for accept, expected in (
        ("application/graphql-response+json, application/json;q=0.9", "graphql-response+json"),
        ("application/json, application/graphql-response+json", "graphql-response+json"),
        ("application/graphql-response+json;q=0.5, application/json", "json"),
        ("application/graphql-response+json;q=0", "json"),
    ):
        response = await client.http.post(
            "/graphql",
            json={"query": "{ me { role } }"},
            headers={"Authorization": f"Bearer {client.token}", "Accept": accept},
        )
        assert response.headers["content-type"] == f"application/{expected}; charset=utf-8"


async def test_request_errors_are_200_for_application_json(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    """Parse, validation and variable-coercion failures: 200 for a legacy client (it may
    not read the body of a 4xx), 400 for application/graphql-response+json."""
    client = as_role[Role.AGENT]
    failures = [
        ({"query": "{ customers { "}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ noSuchField }"}, "GRAPHQL_VALIDATION_FAILED"),
        (
            {
                "query": "query($n: Int) { customers(first: $n) { totalCount } }",
                "variables": {"n": "ten"},
            },
            None,
        ),
        ({"query": "query A { me { role } }", "operationName": "B"}, None),
    ]
    for payload, code in failures:
        for accept, status, media in (
            ("application/json", 200, "application/json"),
            ("application/graphql-response+json", 400, "application/graphql-response+json"),
        ):
            response = await client.http.post(
                "/graphql",
                json=payload,
                headers={"Authorization": f"Bearer {client.token}", "Accept": accept},
            )
            assert response.status_code == status, (payload, accept, response.text)
            assert response.headers["content-type"].startswith(media)
            body = response.json()
            assert "data" not in body and body["errors"], body
            if code:
                assert body["errors"][0]["extensions"]["code"] == code
    # A request that is not a GraphQL request at all stays a 400 for everyone.
    not_graphql = await client.http.post(
        "/graphql",
        json={"query": "{ me { role } }", "extensions": "yes"},
        headers={"Authorization": f"Bearer {client.token}", "Accept": "application/json"},
    )
    assert not_graphql.status_code == 400
    assert not_graphql.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_anonymous_and_bad_token_answer_the_same_way(client: support.GraphQLClient) -> None:
    """No credentials and bad credentials: both 401, ``UNAUTHENTICATED``, and a
    ``WWW-Authenticate: Bearer`` challenge, whatever the media type; an anonymous operation
    that produced something (``login``, ``__typename``) is an ordinary 200."""
    bad = support.GraphQLClient(client.http, "not-a-jwt")
    for accept in ("application/json", "application/graphql-response+json"):
        for caller in (client, bad):
            for query in ("{ me { email } }", "{ customers(first: 1) { totalCount } }"):
                result = await caller(query, headers={"Accept": accept})
                assert result.status == 401, (caller.token, query, result.body)
                assert {e["extensions"]["code"] for e in result.errors} == {"UNAUTHENTICATED"}
                assert result.headers["www-authenticate"].startswith("Bearer")
    assert (await client("{ __typename }")).status == 200
    partial = await client("{ __typename me { email } }")
    assert partial.status == 200 and partial.data == {"__typename": "Query", "me": None}


def test_graphql_http_audit_passes_against_a_live_server(
    live_server: str, settings: Any, users: dict[Role, User]
) -> None:
    """graphql-http's audit suite (the GraphQL over HTTP spec; pinned in package.json)
    against a real uvicorn: no warning, no error, anonymous and with a token."""
    token = issue_access_token(TokenConfig(secret_key=settings.secret_key), users[Role.AGENT])[0]
    for credentials in ([], [token]):
        run = subprocess.run(
            support.node_command(
                "scripts/graphql_http_audit.mjs", f"{live_server}/graphql", *credentials
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [json.loads(line) for line in run.stdout.splitlines()]
        failed = [line for line in lines[:-1] if line["status"] != "ok"]
        assert run.returncode == 0 and failed == [], (failed, run.stderr)
        summary = lines[-1]
        assert summary["warn"] == summary["error"] == 0, summary
        assert summary["ok"] == len(lines) - 1 >= 50, summary


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
