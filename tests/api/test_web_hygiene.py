"""Browser-facing hygiene: a CORS allowlist (none by default), no mutations over GET,
no form or text bodies (what cross-site forms send without a preflight), security
headers on the explorer page and on API answers."""

from __future__ import annotations

import httpx
import pytest

from crm_graphql.models import Role
from crm_graphql.settings import Settings
from tests import support

ALLOWED = "https://app.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def _cors_headers(response: httpx.Response) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-")]


# What Apollo Client 3 (client awareness and CSRF prevention on), urql and graphql-sse put
# in Access-Control-Request-Headers, as browsers send it (lower case, sorted).
CLIENT_PREFLIGHTS = {
    "apollo": "apollo-require-preflight,apollographql-client-name,"
    "apollographql-client-version,authorization,content-type,x-request-id",
    "urql": "accept,authorization,content-type",
    "graphql-sse": "accept,authorization,content-type,last-event-id",
    "traced": "content-type,traceparent,tracestate",
}


def test_cors_preflight_over_real_http(settings: Settings) -> None:
    """Against a real uvicorn (the allowlist as an operator writes it, comma separated):
    an allowed origin's preflight is 204 with the headers each client asks for; another
    origin, or a header off the list, gets no CORS header at all."""
    origins = f"{ALLOWED}, https://admin.example.com"
    with support.run_uvicorn(settings, extra_env={"CRM_CORS_ORIGINS": origins}) as base:
        with httpx.Client(base_url=base, timeout=20) as http:
            for client, requested in CLIENT_PREFLIGHTS.items():
                for method in ("POST", "GET"):
                    preflight = http.options(
                        "/graphql",
                        headers={
                            "Origin": ALLOWED,
                            "Access-Control-Request-Method": method,
                            "Access-Control-Request-Headers": requested,
                        },
                    )
                    assert preflight.status_code == 204, (client, preflight.text)
                    assert preflight.content == b""
                    assert preflight.headers["access-control-allow-origin"] == ALLOWED
                    assert method in preflight.headers["access-control-allow-methods"]
                    allowed = preflight.headers["access-control-allow-headers"].lower()
                    assert set(requested.split(",")) <= set(allowed.split(", ")), client
                    assert int(preflight.headers["access-control-max-age"]) > 0
                    assert "origin" in preflight.headers["vary"].lower()
            second = http.options(
                "/graphql", headers={"Origin": "https://admin.example.com", **PREFLIGHT}
            )
            assert second.status_code == 204
            assert second.headers["access-control-allow-origin"] == "https://admin.example.com"
            for origin, headers in (
                ("https://evil.example", "content-type"),
                ("null", "content-type"),
                (ALLOWED + ".evil.example", "content-type"),
                (ALLOWED, "content-type,x-not-on-the-list"),
            ):
                refused = http.options(
                    "/graphql",
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": headers,
                    },
                )
                assert refused.status_code == 400, (origin, headers)
                assert _cors_headers(refused) == [], (origin, headers, refused.headers)
            put = http.options(
                "/graphql",
                headers={"Origin": ALLOWED, "Access-Control-Request-Method": "PUT"},
            )
            assert put.status_code == 400 and _cors_headers(put) == []
            simple = http.post(
                "/graphql", json={"query": "{ __typename }"}, headers={"Origin": ALLOWED}
            )
            assert simple.status_code == 200
            assert simple.headers["access-control-allow-origin"] == ALLOWED
            exposed = simple.headers["access-control-expose-headers"].lower()
            assert {"x-request-id", "ratelimit-limit", "retry-after"} <= set(exposed.split(", "))
            other = http.post(
                "/graphql",
                json={"query": "{ __typename }"},
                headers={"Origin": "https://evil.example"},
            )
            assert other.status_code == 200 and _cors_headers(other) == []
            assert "origin" in other.headers["vary"].lower()


async def test_cors_extra_headers_are_configurable(settings: Settings) -> None:
    async with support.app_client(
        settings, cors_origins=[ALLOWED], cors_allow_headers=["X-Tenant-Hint"]
    ) as client:
        preflight = await client.http.options(
            "/graphql",
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-tenant-hint",
            },
        )
        assert preflight.status_code == 204
        assert "x-tenant-hint" in preflight.headers["access-control-allow-headers"].lower()


def test_cors_origins_are_read_as_a_list_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for value in (f"{ALLOWED},https://b.example", f'["{ALLOWED}", "https://b.example"]'):
        monkeypatch.setenv("CRM_CORS_ORIGINS", value)
        assert Settings().cors_origins == [ALLOWED, "https://b.example"]


async def test_no_cors_headers_by_default(client: support.GraphQLClient) -> None:
    """No allowlist: every origin is refused by the CORS rules (not a 405 from the router)."""
    preflight = await client.http.options("/graphql", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert preflight.status_code == 400
    assert _cors_headers(preflight) == []
    post = await client.http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Origin": ALLOWED}
    )
    assert post.status_code == 200 and _cors_headers(post) == []


@pytest.mark.parametrize(
    "content",
    [
        {"data": {"query": "{ __typename }"}},  # application/x-www-form-urlencoded
        {"content": b'{"query": "{ __typename }"}', "headers": {"Content-Type": "text/plain"}},
        {"content": b'{"query": "{ __typename }"}'},  # no content type at all
    ],
    ids=["urlencoded", "text-plain", "none"],
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


async def test_multipart_is_only_the_graphql_upload_spec_and_never_a_simple_request(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    """multipart/form-data is taken for GraphQL uploads (``operations`` and ``map``) only,
    and only with a header no cross-site form can send (credentials or a preflight one):
    a plain form post runs nothing."""
    client = as_role[Role.AGENT]
    mutation = 'mutation { createCustomer(input: {name: "Via multipart"}) { errors { code } } }'
    form = {"files": {"query": ("q", mutation.encode())}}
    not_the_spec = await client.http.post("/graphql", headers=client.headers(), **form)  # type: ignore[arg-type]
    assert not_the_spec.status_code == 400
    assert not_the_spec.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    anonymous = await client.http.post("/graphql", **form)  # type: ignore[arg-type]
    assert anonymous.status_code == 400
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "PREFLIGHT_REQUIRED"
    count = await client('{ customers(filter: {name: {eq: "Via multipart"}}) { totalCount } }')
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
