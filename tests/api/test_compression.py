"""Compressed answers over real HTTP (uvicorn): GraphQL answers, executed and compiled, in
the coding the client accepts from a size on; the explorer's assets under hashed,
immutable names, sent as their precompressed copies; WebSockets untouched."""

from __future__ import annotations

import gzip
import re
from typing import Any, NamedTuple

import brotli
import httpx
import orjson
import pytest
import zstandard
from graphql import get_introspection_query

from crm_graphql.models import Role, User
from crm_graphql.services.auth import TokenConfig, issue_access_token
from crm_graphql.settings import Settings
from tests import support

DECODE = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda raw: zstandard.ZstdDecompressor().decompressobj().decompress(raw),
    "identity": lambda raw: raw,
}


class Raw(NamedTuple):
    """An answer with its body as sent (not decoded)."""

    status_code: int
    headers: httpx.Headers
    content: bytes


def _raw(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Raw:
    response = http.send(http.build_request(method, path, **kwargs), stream=True)
    try:
        return Raw(response.status_code, response.headers, b"".join(response.iter_raw()))
    finally:
        response.close()


def _client(base_url: str) -> httpx.Client:
    # httpx asks for every coding it can decode by default; ask for none unless told.
    return httpx.Client(base_url=base_url, timeout=30, headers={"Accept-Encoding": "identity"})


@pytest.fixture
def token(settings: Settings, users: dict[Role, User]) -> str:
    return issue_access_token(TokenConfig(secret_key=settings.secret_key), users[Role.ADMIN])[0]


async def test_graphql_answers_are_compressed_in_the_accepted_coding(
    live_server: str, token: str, as_role: dict[Role, support.GraphQLClient]
) -> None:
    admin = as_role[Role.ADMIN]
    for n in range(30):
        made = await admin(
            "mutation($n: String!) { createCustomer(input: {name: $n}) { errors { code } } }",
            {"n": f"Compressed customer {n:02d} with a name long enough to matter"},
        )
        assert made.ok()["createCustomer"]["errors"] == []
    auth = {"Authorization": f"Bearer {token}"}
    page = {"query": "{ customers(first: 30) { nodes { id name email createdAt } } }"}
    introspection = {"query": get_introspection_query()}
    with _client(live_server) as http:
        plain = _raw(http, "POST", "/graphql", json=page, headers=auth)
        assert plain.headers.get("x-crm-read-path") == "compiled"
        assert "content-encoding" not in plain.headers and len(plain.content) > 1024
        schema = _raw(http, "POST", "/graphql", json=introspection, headers=auth).content
        for coding in ("br", "gzip", "zstd"):
            for payload, expected in ((page, plain.content), (introspection, schema)):
                answer = _raw(
                    http,
                    "POST",
                    "/graphql",
                    json=payload,
                    headers={**auth, "Accept-Encoding": coding},
                )
                assert answer.headers["content-encoding"] == coding
                assert "accept-encoding" in answer.headers["vary"].lower()
                assert int(answer.headers["content-length"]) == len(answer.content)
                assert len(answer.content) < len(expected) / 3, (coding, len(answer.content))
                assert DECODE[coding](answer.content) == expected
        # The server's preference among the accepted (zstd, Brotli, gzip); q=0 refuses.
        for accepted, chosen in (("gzip, deflate, br", "br"), ("br;q=0, gzip", "gzip")):
            answer = _raw(
                http, "POST", "/graphql", json=page, headers={**auth, "Accept-Encoding": accepted}
            )
            assert answer.headers["content-encoding"] == chosen, accepted
        # Below the threshold: sent as it is.
        small = _raw(
            http,
            "POST",
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"Accept-Encoding": "br, gzip"},
        )
        assert "content-encoding" not in small.headers
        assert orjson.loads(small.content) == {"data": {"__typename": "Query"}}


def test_explorer_assets_are_hashed_immutable_and_precompressed(live_server: str) -> None:
    with _client(live_server) as http:
        page = http.get("/graphql", headers={"Accept": "text/html"})
        assert page.headers["cache-control"] == "no-store"
        urls = re.findall(r'(?:src|href)="(/explorer-static/[^"]+)"', page.text)
        assert len(urls) == 5, urls
        for url in urls:
            assert re.search(r"\.[0-9a-f]{16}\.(js|css)$", url), url
            plain = _raw(http, "GET", url, headers={"Accept-Encoding": "identity"})
            assert plain.status_code == 200
            assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert plain.headers["x-content-type-options"] == "nosniff"
            assert "content-encoding" not in plain.headers
            for coding in ("br", "gzip"):
                packed = _raw(http, "GET", url, headers={"Accept-Encoding": f"{coding}, zstd;q=0"})
                assert packed.headers["content-encoding"] == coding
                assert packed.headers["content-type"] == plain.headers["content-type"]
                assert packed.headers["cache-control"] == plain.headers["cache-control"]
                assert DECODE[coding](packed.content) == plain.content
        css = next(url for url in urls if url.endswith(".css"))
        assert _raw(http, "GET", css).headers["content-type"].startswith("text/css")
        # Only the manifest's files: no unhashed name, no other path of the folder.
        for missing in (
            "/explorer-static/graphiql.min.js",
            "/explorer-static/manifest.json",
            "/explorer-static/../explorer.py",
            css.replace(css.rsplit(".", 2)[1], "0" * 16),
        ):
            assert http.get(missing).status_code == 404, missing
        assert http.post(css).status_code == 405


async def test_compression_can_be_switched_off(settings: Settings) -> None:
    async with support.app_client(settings, compression=False) as client:
        response = await client.http.post(
            "/graphql",
            json={"query": get_introspection_query()},
            headers={"Accept-Encoding": "br, gzip"},
        )
        assert response.status_code == 200 and len(response.content) > 10_000
        assert "content-encoding" not in response.headers
