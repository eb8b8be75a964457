"""What metrics and traces cost per request (decision 0025). Never part of `make test`.

Part 1, in process, no services: the work metrics add to every GraphQL operation over HTTP
(``ObservedOperation``: the operation's labels from its cached description, two counter
increments and a histogram observation), the request-id middleware around a bare ASGI
app, a disabled ``tracing.span``, and one scrape of the registry.

Part 2, the whole app in process (httpx's ASGI transport, no sockets) against a database
of its own: a compiled page of 20 customers and an executed mutation, N times each, with
tracing off (metrics on, as always), then with tracing on (the SDK, a batch processor,
an exporter that drops the spans).

    python -m bench.observability_overhead --server-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis redis://127.0.0.1:6379/13 [-n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import REGISTRY, generate_latest

from crm_graphql.observability import tracing
from crm_graphql.observability.metrics import ObservedOperation
from crm_graphql.observability.requests import RequestIds
from crm_graphql.settings import Settings, new_encryption_key_entry
from tests import support

PAGE = "query BenchPage { customers(first: 20) { edges { node { id name email } } } }"
CREATE = (
    'mutation BenchCreate { createCustomer(input: {name: "Bench"}) '
    "{ customer { id } errors { code } } }"
)


def per_call_us(n: int, call: Callable[[], Any]) -> float:
    for _ in range(min(n, 1000)):
        call()
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) * 1e6 / n


async def per_call_async_us(n: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(median, p90) in microseconds of ``n`` calls after 50 to warm up."""
    for _ in range(50):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def part_one(n: int) -> None:
    settings = Settings()
    body = b'{"data":{"customers":{"edges":[]}}}'

    def observed() -> None:
        operation = ObservedOperation("BenchPage")
        operation.query = PAGE
        operation.answered(settings, body, 200)

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    wrapped = RequestIds(bare)
    scope = {"type": "http", "headers": [(b"x-request-id", b"bench-1")]}

    async def noop_send(message: Any) -> None:
        pass

    def run(app: Any) -> None:
        coroutine = app(scope, None, noop_send)
        try:
            coroutine.send(None)
        except StopIteration:
            pass

    def disabled_span() -> None:
        with tracing.span("bench"):
            pass

    middleware = per_call_us(n, lambda: run(wrapped)) - per_call_us(n, lambda: run(bare))
    print("| part 1: work added per operation (no I/O) | µs |")
    print("|---|---|")
    print(f"| metrics of one operation (`ObservedOperation`) | {per_call_us(n, observed):.1f} |")
    print(f"| request-id middleware (over a bare ASGI app) | {middleware:.1f} |")
    print(f"| `tracing.span` while tracing is off | {per_call_us(n, disabled_span):.2f} |")
    print(f"| one scrape of the registry (`generate_latest`) | {per_call_us(200, lambda: generate_latest(REGISTRY)):.0f} |")


class Dropped(SpanExporter):
    """Takes the spans and does nothing with them: the cost is the SDK's, not a wire's."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.names[span.name] = self.names.get(span.name, 0) + 1
        return SpanExportResult.SUCCESS


async def part_two(database_url: str, redis_url: str, n: int) -> None:
    settings = Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        secret_key="bench-secret-key-" + "x" * 32,
        encryption_keys=[new_encryption_key_entry("bench")],
        data_dir=Path("/tmp/crm-bench-obs"),
        rate_limits=False,
        webhook_dispatcher=False,
    )
    token = await _seed(settings)
    dropped = Dropped()
    rows = []
    labels = (
        "tracing off (metrics on)",
        "tracing on (SDK, batch, spans dropped)",
        "tracing off again (metrics on)",
    )
    for label in labels:
        if label.startswith("tracing on"):
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(dropped))
            tracing.install(provider)
        else:
            tracing.uninstall()
        page_median, page_p90, create_median, create_p90 = await _requests(
            settings, token, n
        )
        rows.append((label, page_median, page_p90, create_median, create_p90))
    tracing.uninstall()
    print()
    print("| part 2: whole request in process | compiled page median µs | p90 | executed mutation median µs | p90 |")
    print("|---|---|---|---|---|")
    for label, *figures in rows:
        print(f"| {label} | " + " | ".join(f"{f:.0f}" for f in figures) + " |")
    print()
    print("Spans exported while tracing (both kinds of request, warm-up included):")
    for name, count in sorted(dropped.names.items(), key=lambda item: -item[1]):
        print(f"- {name}: {count}")


async def _requests(settings: Settings, token: str, n: int) -> tuple[float, ...]:
    """(median, p90) of the compiled page, then of the executed mutation, in µs."""
    from crm_graphql.app import build_app

    app = build_app(settings)
    headers = {"Authorization": f"Bearer {token}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

            async def page() -> None:
                response = await http.post("/graphql", json={"query": PAGE}, headers=headers)
                assert response.status_code == 200, response.text
                assert response.headers.get("x-crm-read-path") == "compiled"

            async def create() -> None:
                response = await http.post("/graphql", json={"query": CREATE}, headers=headers)
                assert response.status_code == 200, response.text

            return (
                *await per_call_async_us(n, page),
                *await per_call_async_us(max(n // 4, 50), create),
            )


async def _seed(settings: Settings) -> str:
    from crm_graphql.db.engine import make_engine, make_sessionmaker
    from crm_graphql.models import Role
    from crm_graphql.services import auth
    from crm_graphql.services.auth import TokenConfig, issue_access_token

    engine = make_engine(settings.database_url or "", pool_size=2)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            workspace = await auth.create_workspace(session, name="Bench")
            user = await auth.create_user(
                session,
                workspace=workspace,
                email="bench@example.com",
                password=support.PASSWORD,
                role=Role.ADMIN,
            )
    finally:
        await engine.dispose()
    token = issue_access_token(TokenConfig(secret_key=settings.secret_key or ""), user)[0]
    from crm_graphql.app import build_app

    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for i in range(20):
                query = f'mutation {{ createCustomer(input: {{name: "Customer {i}", email: "c{i}@example.com"}}) {{ errors {{ code }} }} }}'
                response = await http.post(
                    "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 200 and not response.json().get("errors")
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    part_one(args.n * 50)
    name = f"crm_bench_obs_{uuid.uuid4().hex[:8]}"
    support.create_database(args.server_url, name)
    try:
        database_url = args.server_url.rsplit("/", 1)[0] + f"/{name}"
        support.migrate(database_url)
        asyncio.run(part_two(database_url, args.redis, args.n))
    finally:
        support.drop_database(args.server_url, name)


if __name__ == "__main__":
    main()
