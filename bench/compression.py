"""Bytes on the wire with and without compression (decision 0022): a 100-customer page,
the introspection answer and the explorer's assets, as a live server sends them for each
``Accept-Encoding``, and the CPU one compression of each answer costs at the levels the
server uses.

Usage (a server with `crm-graphql seed-demo` data):
    python -m bench.compression --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import gzip
import re
import time
from collections.abc import Callable

import brotli
import httpx
import zstandard
from graphql import get_introspection_query

PAGE = """query P100 {
  me { id name email role }
  customers(first: 100) {
    nodes {
      id name email phone lifecycleStage tags createdAt
      company { id name }
      owner { id name email }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""
ENCODINGS = ("identity", "gzip", "br", "zstd")
# The server's levels (starlette-compress defaults, crm_graphql/compression.py).
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda body: gzip.compress(body, compresslevel=4),
    "br": lambda body: brotli.compress(body, quality=4),
    "zstd": lambda body: zstandard.ZstdCompressor(level=4).compress(body),
}


def _wire_size(http: httpx.Client, request: httpx.Request, encoding: str) -> tuple[int, str]:
    request.headers["Accept-Encoding"] = encoding
    response = http.send(request, stream=True)
    try:
        response.raise_for_status()
        size = sum(len(chunk) for chunk in response.iter_raw())
        return size, response.headers.get("content-encoding", "identity")
    finally:
        response.close()


def _cpu_ms(body: bytes, compress: Callable[[bytes], bytes], runs: int = 20) -> float:
    started = time.process_time()
    for _ in range(runs):
        compress(body)
    return (time.process_time() - started) / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--email", default="admin@demo.example")
    parser.add_argument("--password", default="demo-admin")
    args = parser.parse_args()
    with httpx.Client(base_url=args.url, timeout=60) as http:
        login = http.post(
            "/graphql",
            json={
                "query": "mutation($e: String!, $p: String!) { login(input: {email: $e, "
                "password: $p}) { accessToken } }",
                "variables": {"e": args.email, "p": args.password},
            },
        ).json()
        token = login["data"]["login"]["accessToken"]
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        page = http.get("/graphql", headers={"Accept": "text/html"}).text
        assets = dict.fromkeys(re.findall(r'(?:src|href)="(/explorer-static/[^"]+)"', page))
        requests: dict[str, httpx.Request] = {
            "100-customer page": http.build_request(
                "POST", "/graphql", json={"query": PAGE}, headers=auth
            ),
            "introspection": http.build_request(
                "POST", "/graphql", json={"query": get_introspection_query()}, headers=auth
            ),
            **{path.rsplit("/", 1)[-1]: http.build_request("GET", path) for path in assets},
        }
        print("| answer | " + " | ".join(ENCODINGS) + " | CPU per compression (ms) |")
        print("|---|" + "---:|" * len(ENCODINGS) + "---|")
        for name, request in requests.items():
            cells = []
            for encoding in ENCODINGS:
                size, sent = _wire_size(http, request, encoding)
                cells.append(f"{size:,}" + ("" if sent == encoding else f" ({sent})"))
            cpu = ""
            if not name.startswith(("graphiql", "react", "graphql-ws")):
                body = http.send(request).content
                cpu = ", ".join(
                    f"{coding} {_cpu_ms(body, compress):.2f}"
                    for coding, compress in COMPRESSORS.items()
                )
            print(f"| {name} | " + " | ".join(cells) + f" | {cpu} |")


if __name__ == "__main__":
    main()
