"""Persisted queries: Apollo's automatic persisted queries (with the real Apollo link),
documents shared by every process through Redis with a size cap, GET by hash with ETag
revalidation, and the trusted-documents mode."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from crm_graphql.models import Role, User
from crm_graphql.persisted_queries import PersistedQueries, PersistedQueryError, document_hash
from crm_graphql.services.auth import TokenConfig, issue_access_token
from crm_graphql.settings import ConfigurationError, Settings
from tests import support

GRAPHQL_RESPONSE = "application/graphql-response+json"


def _unique(query: str) -> str:
    """``query`` with a comment of its own: its hash is new to the shared Redis."""
    return f"# {uuid.uuid4().hex}\n{query}"


def _hashed(hash_: str, **params: Any) -> dict[str, Any]:
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash_}}, **params}


def _code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


@pytest.fixture
def token(settings: Settings, users: dict[Role, User]) -> str:
    return issue_access_token(TokenConfig(secret_key=settings.secret_key), users[Role.AGENT])[0]


def _apollo(url: str, token: str, use_get: bool, operations: list[dict[str, Any]]) -> Any:
    run = subprocess.run(
        support.node_command(
            "tests/clients/apollo_persisted_queries.mjs",
            f"{url}/graphql",
            token,
            "true" if use_get else "false",
            json.dumps(operations),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("use_get", [False, True])
def test_apollo_persisted_query_link_works(live_server: str, token: str, use_get: bool) -> None:
    """The link sends the hash alone, gets PERSISTED_QUERY_NOT_FOUND, sends the document
    with it; from then on the hash alone is enough (GET for queries when asked to)."""
    # Apollo prints documents without comments: a new operation name keeps them new.
    run = uuid.uuid4().hex[:8]
    name = f"Apollo {run}"
    read = {
        "query": f"query Named{run}($n: String!) {{ customers(filter: {{name: {{eq: $n}}}}) "
        "{ totalCount } }",
        "variables": {"n": name},
    }
    write = {
        "query": f"mutation Make{run}($n: String!) {{ createCustomer(input: {{name: $n}}) "
        "{ errors { code } } }",
        "variables": {"n": name},
    }
    first, made, again = _apollo(live_server, token, use_get, [read, write, read])
    method = "GET" if use_get else "POST"
    assert first["data"]["customers"]["totalCount"] == 0, first
    # The document itself always goes by POST (only hashes go by GET).
    assert [(r["method"], r["sentQuery"], r["status"]) for r in first["requests"]] == [
        (method, False, 200),
        ("POST", True, 200),
    ], first
    assert made["data"]["createCustomer"]["errors"] == [], made
    assert [(r["method"], r["sentQuery"]) for r in made["requests"]] == [
        ("POST", False),
        ("POST", True),
    ]
    assert again["data"]["customers"]["totalCount"] == 1, again
    assert [(r["method"], r["sentQuery"], r["status"]) for r in again["requests"]] == [
        (method, False, 200)
    ]


async def test_unknown_hash_mismatch_and_bad_extension(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    query = _unique("{ me { role } }")
    for accept in ("application/json", GRAPHQL_RESPONSE):
        headers = {"Accept": accept}
        unknown = await client.http.post(
            "/graphql", json=_hashed(document_hash(query)), headers=headers
        )
        # 200 whatever the media type: Apollo's link turns persisted queries off on a 400.
        assert unknown.status_code == 200
        assert unknown.json() == {
            "errors": [
                {
                    "message": "PersistedQueryNotFound",
                    "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
                }
            ]
        }
    wrong = await client.http.post(
        "/graphql",
        json=_hashed(document_hash(query + " "), query=query),
        headers=client.headers(),
    )
    assert wrong.status_code == 400 and _code(wrong.json()) == "PERSISTED_QUERY_HASH_MISMATCH"
    # Refused documents are not kept: the hash of the document sent is still unknown.
    for hash_ in (document_hash(query), document_hash(query + " ")):
        still = await client.http.post("/graphql", json=_hashed(hash_), headers=client.headers())
        assert _code(still.json()) == "PERSISTED_QUERY_NOT_FOUND"
    for extension in (
        {"version": 2, "sha256Hash": document_hash(query)},
        {"version": 1, "sha256Hash": "not-a-hash"},
        {"version": 1},
        "yes",
    ):
        bad = await client.http.post(
            "/graphql",
            json={"extensions": {"persistedQuery": extension}},
            headers=client.headers(),
        )
        assert bad.status_code == 400 and _code(bad.json()) == "BAD_REQUEST", extension
    # A document that does not validate runs (its errors answered) but is not kept.
    invalid = _unique("{ noSuchField }")
    sent = await client.http.post(
        "/graphql", json=_hashed(document_hash(invalid), query=invalid), headers=client.headers()
    )
    assert sent.status_code == 400 and _code(sent.json()) == "GRAPHQL_VALIDATION_FAILED"
    later = await client.http.post(
        "/graphql", json=_hashed(document_hash(invalid)), headers=client.headers()
    )
    assert _code(later.json()) == "PERSISTED_QUERY_NOT_FOUND"


async def test_batches_may_mix_hashes_and_documents(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    query = _unique("{ me { role } }")
    registered = await client.http.post(
        "/graphql", json=_hashed(document_hash(query), query=query), headers=client.headers()
    )
    assert registered.json() == {"data": {"me": {"role": "AGENT"}}}
    batch = [
        _hashed(document_hash(query)),
        {"query": "{ __typename }"},
        _hashed(document_hash(_unique("{ __typename }"))),
    ]
    response = await client.http.post("/graphql", json=batch, headers=client.headers())
    assert response.status_code == 200
    first, second, third = response.json()
    assert first == {"data": {"me": {"role": "AGENT"}}}
    assert second == {"data": {"__typename": "Query"}}
    assert _code(third) == "PERSISTED_QUERY_NOT_FOUND"


def test_documents_are_shared_by_every_process(
    live_server: str, settings: Settings, token: str
) -> None:
    query = _unique("query { me { role } }")
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=20) as http:
        sent = http.post(
            f"{live_server}/graphql", json=_hashed(document_hash(query), query=query), headers=auth
        )
        assert sent.json() == {"data": {"me": {"role": "AGENT"}}}
        with support.run_uvicorn(settings) as other:
            by_hash = http.post(
                f"{other}/graphql", json=_hashed(document_hash(query)), headers=auth
            )
            assert by_hash.json() == {"data": {"me": {"role": "AGENT"}}}


async def test_get_by_hash_is_revalidated_by_etag(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    client = as_role[Role.AGENT]
    name = f"Etag {uuid.uuid4().hex[:8]}"
    query = _unique(f'{{ customers(filter: {{name: {{eq: "{name}"}}}}) {{ totalCount }} }}')
    hash_ = document_hash(query)
    await client.http.post("/graphql", json=_hashed(hash_, query=query), headers=client.headers())
    params = {"extensions": json.dumps(_hashed(hash_)["extensions"])}
    first = await client.http.get("/graphql", params=params, headers=client.headers())
    assert first.status_code == 200 and first.json()["data"]["customers"]["totalCount"] == 0
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    assert {"accept", "authorization"} <= {
        v.strip().lower() for v in first.headers["vary"].split(",")
    }
    same = await client.http.get(
        "/graphql", params=params, headers={**client.headers(), "If-None-Match": etag}
    )
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    made = await client(
        f'mutation {{ createCustomer(input: {{name: "{name}"}}) {{ errors {{ code }} }} }}'
    )
    assert made.ok()["createCustomer"]["errors"] == []
    changed = await client.http.get(
        "/graphql", params=params, headers={**client.headers(), "If-None-Match": etag}
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["data"]["customers"]["totalCount"] == 1
    # Without credentials an answer is the same for everybody: any cache may keep it.
    anonymous = await client.http.get("/graphql", params={"query": "{ __typename }"})
    assert anonymous.headers["cache-control"] == "public, no-cache" and anonymous.headers["etag"]
    # Errors and POSTs are not for caches.
    unknown = await client.http.get(
        "/graphql",
        params={"extensions": json.dumps(_hashed(document_hash(_unique("{ a }")))["extensions"])},
    )
    assert unknown.headers["cache-control"] == "no-store"
    assert _code(unknown.json()) == "PERSISTED_QUERY_NOT_FOUND"
    posted = await client.http.post("/graphql", json=_hashed(hash_), headers=client.headers())
    assert "etag" not in posted.headers and "cache-control" not in posted.headers


async def test_store_keeps_the_most_recently_used_within_its_cap(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = PersistedQueries(
        client, max_entries=3, max_bytes=200, prefix=f"crm:{{pq-test-{uuid.uuid4().hex}}}:"
    )
    try:
        documents = [_unique(f"{{ a{i}: __typename }}") for i in range(5)]
        for document in documents[:3]:
            await store.register(document_hash(document), document)
        # A fresh process (empty memory) uses the first: it becomes the most recent.
        fresh = PersistedQueries(client, max_entries=3, max_bytes=200, prefix=store.prefix)
        found = await fresh.resolve(_hashed(document_hash(documents[0])))
        assert found.query == documents[0]
        for document in documents[3:]:
            await fresh.register(document_hash(document), document)
        assert await client.hlen(f"{store.prefix}documents") == 3
        assert await client.zcard(f"{store.prefix}last-use") == 3
        other = PersistedQueries(client, max_entries=3, max_bytes=200, prefix=store.prefix)
        for index in (0, 3, 4):
            assert (await other.resolve(_hashed(document_hash(documents[index])))).query
        for index in (1, 2):
            with pytest.raises(PersistedQueryError) as missing:
                await other.resolve(_hashed(document_hash(documents[index])))
            assert missing.value.code == "PERSISTED_QUERY_NOT_FOUND"
        # Too large to keep: it ran, it is not stored.
        large = _unique("{ __typename }" + " " * 300)
        await other.register(document_hash(large), large)
        assert await client.hexists(f"{store.prefix}documents", document_hash(large)) == 0
    finally:
        await client.delete(*(f"{store.prefix}{key}" for key in ("documents", "last-use", "clock")))
        await client.aclose()


async def test_redis_gone_means_misses_not_failures() -> None:
    """No Redis: a hash is not found (the client then sends the document, which runs)
    and registering does nothing; nothing raises."""
    gone = redis.Redis(port=support.free_port(), socket_connect_timeout=1)
    store = PersistedQueries(gone)
    query = _unique("{ __typename }")
    await store.register(document_hash(query), query)
    fresh = PersistedQueries(gone)
    with pytest.raises(PersistedQueryError) as missing:
        await fresh.resolve(_hashed(document_hash(query)))
    assert missing.value.code == "PERSISTED_QUERY_NOT_FOUND"
    assert (await fresh.resolve(_hashed(document_hash(query), query=query))).query == query
    await gone.aclose()


async def test_persisted_queries_can_be_switched_off(settings: Settings) -> None:
    async with support.app_client(settings, persisted_queries=False) as client:
        query = _unique("{ __typename }")
        alone = await client.http.post("/graphql", json=_hashed(document_hash(query)))
        assert alone.status_code == 200
        assert alone.json()["errors"][0]["message"] == "PersistedQueryNotSupported"
        assert _code(alone.json()) == "PERSISTED_QUERY_NOT_SUPPORTED"
        both = await client.http.post(
            "/graphql", json=_hashed(document_hash(query), query=query)
        )
        assert both.json() == {"data": {"__typename": "Query"}}


def _manifest(path: Path, documents: list[str], apollo: bool) -> Path:
    if apollo:
        content: Any = {
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [
                {"id": document_hash(d), "name": f"Op{i}", "type": "query", "body": d}
                for i, d in enumerate(documents)
            ],
        }
    else:
        content = {document_hash(d): d for d in documents}
    path.write_text(json.dumps(content))
    return path


@pytest.mark.parametrize("apollo", [True, False])
async def test_trusted_documents_only(
    settings: Settings, users: dict[Role, User], tmp_path: Path, apollo: bool
) -> None:
    trusted = "query Me { me { role } }"
    login = (
        "mutation Login($i: LoginInput!) { login(input: $i) { accessToken errors { code } } }"
    )
    manifest = _manifest(tmp_path / "manifest.json", [trusted, login], apollo)
    async with support.app_client(
        settings, persisted_only=True, persisted_queries_manifest=manifest
    ) as client:
        http = client.http
        signed_in = await http.post(
            "/graphql",
            json={
                "query": login,
                "variables": {
                    "i": {"email": users[Role.VIEWER].email, "password": support.PASSWORD}
                },
            },
        )
        token = signed_in.json()["data"]["login"]["accessToken"]
        auth = {"Authorization": f"Bearer {token}"}
        by_hash = await http.post("/graphql", json=_hashed(document_hash(trusted)), headers=auth)
        assert by_hash.json() == {"data": {"me": {"role": "VIEWER"}}}
        by_text = await http.post("/graphql", json={"query": trusted}, headers=auth)
        assert by_text.json() == {"data": {"me": {"role": "VIEWER"}}}
        other = _unique("{ me { role } }")
        for payload in (
            {"query": other},
            _hashed(document_hash(other)),
            _hashed(document_hash(other), query=other),
            {"query": trusted + " "},
        ):
            refused = await http.post("/graphql", json=payload, headers=auth)
            assert refused.status_code == 400, payload
            assert _code(refused.json()) == "PERSISTED_QUERY_NOT_ALLOWED", payload
        # Nothing is registered in this mode: the document sent with its hash stays unknown.
        again = await http.post("/graphql", json=_hashed(document_hash(other)), headers=auth)
        assert _code(again.json()) == "PERSISTED_QUERY_NOT_ALLOWED"


async def test_trusted_documents_need_a_valid_manifest(
    settings: Settings, tmp_path: Path
) -> None:
    from crm_graphql.app import build_app

    with pytest.raises(ConfigurationError, match="MANIFEST"):
        build_app(settings.model_copy(update={"persisted_only": True}))
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({document_hash("{ a }"): "{ b }"}))
    with pytest.raises(ConfigurationError, match="not the SHA-256"):
        build_app(
            settings.model_copy(
                update={"persisted_only": True, "persisted_queries_manifest": forged}
            )
        )


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_trusted_documents_only_over_websocket(
    settings: Settings, token: str, tmp_path: Path, protocol: str
) -> None:
    # The dashboard subscription answers at once (the legacy protocol runs no queries).
    live = "{ dashboard { conversationsAggregate { count } } }"
    trusted = f"subscription Live {live}"
    manifest = _manifest(tmp_path / "manifest.json", [trusted], apollo=True)
    env = {"CRM_PERSISTED_ONLY": "true", "CRM_PERSISTED_QUERIES_MANIFEST": str(manifest)}
    with support.run_uvicorn(settings, extra_env=env) as base:
        ws = await support.WSClient.connect(base, token, protocol=protocol)
        try:
            await ws.acknowledged()
            await ws.subscribe(trusted)
            first = await ws.next_data()
            assert first["dashboard"]["conversationsAggregate"]["count"] >= 0
            await ws.subscribe(f"subscription Other {live}")
            refused = await ws.receive()
            assert refused["type"] == "error", refused
            errors = refused["payload"]
            error = errors[0] if isinstance(errors, list) else errors
            assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED", refused
        finally:
            await ws.close()
