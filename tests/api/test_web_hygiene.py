"""Browser-facing hygiene: a CORS allowlist (none by default), no mutations over GET,
no form or text bodies (what cross-site forms send without a preflight), security
headers on the explorer page and on API answers."""

from __future__ import annotations

import pytest

from crm_graphql.models import Role
from crm_graphql.settings import Settings
from tests import support

ALLOWED = "https://app.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_cors_allowlist(settings: Settings) -> None:
    async with support.app_client(settings, cors_origins=[ALLOWED]) as client:
        http = client.http
        allowed = await http.options("/graphql", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        refused = await http.options(
            "/graphql", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        simple = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Origin": ALLOWED}
        )
        assert simple.headers["access-control-allow-origin"] == ALLOWED
        assert "ratelimit-limit" in simple.headers["access-control-expose-headers"].lower()
        other = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


async def test_no_cors_headers_by_default(client: support.GraphQLClient) -> None:
    preflight = await client.http.options("/graphql", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    post = await client.http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Origin": ALLOWED}
    )
    assert post.status_code == 200 and "access-control-allow-origin" not in post.headers


@pytest.mark.parametrize(
    "content",
    [
        {"data": {"query": "{ __typename }"}},  # application/x-www-form-urlencoded
        {"files": {"query": ("q", b"{ __typename }")}},  # multipart/form-data
        {"content": b'{"query": "{ __typename }"}', "headers": {"Content-Type": "text/plain"}},
        {"content": b'{"query": "{ __typename }"}'},  # no content type at all
    ],
    ids=["urlencoded", "multipart", "text-plain", "none"],
)
async def test_form_and_text_bodies_are_415(
    as_role: dict[Role, support.GraphQLClient], content: dict[str, object]
) -> None:
    client = as_role[Role.AGENT]
    mutation = 'mutation { createCustomer(input: {name: "Via form"}) { errors { code } } }'
    body = dict(content)
    if "data" in body:
        body["data"] = {"query": mutation}
    headers = {**client.headers(), **body.pop("headers", {})}  # type: ignore[dict-item]
    response = await client.http.post("/graphql", headers=headers, **body)  # type: ignore[arg-type]
    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    count = await client('{ customers(filter: {name: {eq: "Via form"}}) { totalCount } }')
    assert count.ok()["customers"]["totalCount"] == 0


async def test_mutations_over_get_are_405_and_change_nothing(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    for query in (
        'mutation { createCustomer(input: {name: "Via GET"}) { errors { code } } }',
        # Hidden behind an operation name among queries: still a mutation.
        'query Q { __typename } mutation M { createCustomer(input: {name: "Via GET"}) '
        "{ errors { code } } }",
    ):
        params = {"query": query}
        if "mutation M" in query:
            params["operationName"] = "M"
        response = await client.http.get("/graphql", params=params, headers=client.headers())
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    count = await client('{ customers(filter: {name: {eq: "Via GET"}}) { totalCount } }')
    assert count.ok()["customers"]["totalCount"] == 0


async def test_api_answers_are_not_sniffed(client: support.GraphQLClient) -> None:
    response = await client.http.post("/graphql", json={"query": "{ __typename }"})
    assert response.headers["x-content-type-options"] == "nosniff"
    error = await client.http.post(
        "/graphql", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert error.status_code == 400 and error.headers["x-content-type-options"] == "nosniff"


async def test_explorer_page_security_headers(client: support.GraphQLClient) -> None:
    page = await client.http.get("/graphql", headers={"Accept": "text/html"})
    headers = page.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert "camera=()" in headers["permissions-policy"]
    assert headers["cache-control"] == "no-store"
