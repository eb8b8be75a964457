"""/metrics of real server processes (issue 16, point 6): each process counts what it
answered and delivered, never the other's; with ``PROMETHEUS_MULTIPROC_DIR`` shared by
two processes, either one reports the sum. Every log line of a request, the access line
included, carries its request id (point 7)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from crm_graphql.models import Role
from crm_graphql.services import activities
from tests import support
from tests.realtime.processes import Cluster, ServerProcess, Spawn, wait_for
from tests.realtime.streams import FEED, head_cursor, subscribed, take

Samples = support.MetricSamples

PAGE = "query CustomerPage { customers(first: 5) { edges { node { id name } } } }"
BROKEN = "query Broken { noSuchField }"


async def scrape(base_url: str) -> Samples:
    """Every sample of the process's /metrics, parsed by prometheus_client's parser."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return support.metric_samples(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return support.metric(samples, name, **labels)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def graphql(
    base_url: str, token: str, query: str, **extra: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.post(
            "/graphql",
            json={"query": query, **extra},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )


async def test_each_process_counts_its_own_operations_reads_and_pools(
    servers: Cluster, tokens: dict[Role, str]
) -> None:
    a, b = servers.a, servers.b
    token = tokens[Role.MANAGER]
    before_a, before_b = await scrape(a.url), await scrape(b.url)

    paths = []
    for _ in range(3):
        response = await graphql(a.url, token, PAGE)
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        paths.append(response.headers.get("x-crm-read-path", "executed"))
    broken = await graphql(b.url, token, BROKEN)
    assert broken.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    anonymous = await graphql(a.url, "not-a-token", PAGE)
    assert anonymous.status_code == 401

    after_a, after_b = await scrape(a.url), await scrape(b.url)
    page = {"operation": "CustomerPage", "type": "query"}
    assert delta(before_a, after_a, "crm_graphql_operations_total", **page, outcome="ok") == 3
    assert delta(before_b, after_b, "crm_graphql_operations_total", **page, outcome="ok") == 0
    assert delta(before_a, after_a, "crm_graphql_operation_duration_seconds_count", **page) == 3
    assert delta(before_a, after_a, "crm_graphql_operation_duration_seconds_sum", **page) > 0
    # The compiled read path answered what its header says it answered, the rest executed.
    for path in ("compiled", "executed"):
        assert delta(before_a, after_a, "crm_graphql_reads_total", path=path) == paths.count(
            path
        ), paths
    assert paths.count("compiled") == 3  # a plain page: the compiler knows it
    broken_labels = {"operation": "Broken", "type": "query", "outcome": "GRAPHQL_VALIDATION_FAILED"}
    assert delta(before_b, after_b, "crm_graphql_operations_total", **broken_labels) == 1
    assert delta(before_a, after_a, "crm_graphql_operations_total", **broken_labels) == 0
    # Refused before any operation ran: no name, no type, the refusal's code.
    refused = {"operation": "", "type": "unknown", "outcome": "UNAUTHENTICATED"}
    assert delta(before_a, after_a, "crm_graphql_operations_total", **refused) == 1

    # Pools, read when scraped: the requests' pool has connections, within its size.
    for pool in ("sqlalchemy_requests", "sqlalchemy_hub", "asyncpg_hub_reads", "asyncpg_compiled"):
        size = value(after_a, "crm_graphql_db_pool_size", pool=pool)
        held = value(after_a, "crm_graphql_db_pool_connections", pool=pool, state="in_use")
        idle = value(after_a, "crm_graphql_db_pool_connections", pool=pool, state="idle")
        assert size > 0 and 0 <= held + idle, (pool, size, held, idle)
    assert value(after_a, "crm_graphql_db_pool_connections", pool="asyncpg_compiled", state="idle") >= 1
    assert ("crm_graphql_webhook_backlog", frozenset()) in after_a


async def test_sockets_subscriptions_deliveries_and_lag_are_counted_where_delivered(
    servers: Cluster,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    a, b = servers.a, servers.b
    async with api(a) as on_a:
        customer = await on_a.customer("Metered")
        after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
        before_a, before_b = await scrape(a.url), await scrape(b.url)
        ws = await subscribed(b.url, tokens[Role.AGENT], FEED, {"after": after})
        try:
            transport = {"protocol": "graphql-transport-ws"}
            open_b = await wait_for(
                lambda: _subscribed(b.url, before_b), what="B counts the subscription"
            )
            assert delta(before_b, open_b, "crm_graphql_websocket_connections") == 1
            assert delta(before_b, open_b, "crm_graphql_subscriptions_active", **transport) == 1
            assert delta(before_a, await scrape(a.url), "crm_graphql_websocket_connections") == 0

            for i in range(3):
                await on_a.note(customer, f"metered {i}")
            got = await take(ws, "activityFeed", 3)
            assert [g["activity"]["subject"] for g in got] == [f"metered {i}" for i in range(3)]
            after_a, after_b = await scrape(a.url), await scrape(b.url)
            assert delta(before_b, after_b, "crm_graphql_event_deliveries_total") == 3
            assert delta(before_a, after_a, "crm_graphql_event_deliveries_total") == 0
            # Each event's lag observed once, and it is positive (commit before delivery).
            assert delta(before_b, after_b, "crm_graphql_event_lag_seconds_count") == 3
            assert delta(before_b, after_b, "crm_graphql_event_lag_seconds_sum") > 0
        finally:
            await ws.close()
        closed = await wait_for(
            lambda: _unsubscribed(b.url, before_b), what="B counts the socket closed"
        )
        assert delta(before_b, closed, "crm_graphql_subscriptions_active", **transport) == 0


async def _subscribed(base_url: str, before: Samples) -> Samples | None:
    now = await scrape(base_url)
    labels = {"protocol": "graphql-transport-ws"}
    return now if delta(before, now, "crm_graphql_subscriptions_active", **labels) >= 1 else None


async def _unsubscribed(base_url: str, before: Samples) -> Samples | None:
    now = await scrape(base_url)
    return now if delta(before, now, "crm_graphql_websocket_connections") == 0 else None


async def test_processes_sharing_a_multiprocess_directory_report_the_sum(
    spawn: Spawn, tokens: dict[Role, str], tmp_path: Path
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    one = await spawn("metrics-1", PROMETHEUS_MULTIPROC_DIR=str(shared))
    two = await spawn("metrics-2", PROMETHEUS_MULTIPROC_DIR=str(shared))
    token = tokens[Role.MANAGER]
    name = f"Shared{uuid.uuid4().hex[:8]}"
    query = f"query {name} {{ customers(first: 1) {{ edges {{ node {{ id }} }} }} }}"
    for server, times in ((one, 2), (two, 3)):
        for _ in range(times):
            assert (await graphql(server.url, token, query)).status_code == 200
    labels = {"operation": name, "type": "query", "outcome": "ok"}
    for server in (one, two):
        samples = await scrape(server.url)
        assert value(samples, "crm_graphql_operations_total", **labels) == 5
        assert value(samples, "crm_graphql_operation_duration_seconds_count", operation=name, type="query") == 5


async def test_every_log_line_of_a_request_carries_its_request_id(
    spawn: Spawn, tokens: dict[Role, str]
) -> None:
    server = await spawn("json-logs", CRM_LOG_FORMAT="json", CRM_SLOW_OPERATION_SECONDS="0")
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/graphql",
            json={"query": PAGE},
            headers={"Authorization": f"Bearer {tokens[Role.MANAGER]}", "X-Request-Id": request_id},
        )
    assert response.headers["x-request-id"] == request_id
    lines = await wait_for(
        lambda: _lines_with(server, request_id, 2), what="the request's log lines"
    )
    loggers = {line["logger"] for line in lines}
    assert "uvicorn.access" in loggers, lines
    slow = next(line for line in lines if line["logger"] == "crm_graphql.operations")
    assert slow["message"].startswith("slow operation CustomerPage (query, ok) took"), slow
    access = next(line for line in lines if line["logger"] == "uvicorn.access")
    assert "POST /graphql" in access["message"], access


def _lines_with(server: ServerProcess, request_id: str, count: int) -> list[dict[str, Any]] | None:
    found = []
    for raw in server.log_path.read_text().splitlines():
        if request_id in raw:
            line = json.loads(raw)
            assert line["request_id"] == request_id, line
            found.append(line)
    return found if len(found) >= count else None


async def test_serve_with_workers_adds_their_metrics_up(
    settings: Any, tokens: dict[Role, str]
) -> None:
    """``crm-graphql serve --workers 2``: one port, two processes; every scrape, whichever
    worker answers it, reports every operation (the CLI gives them a shared directory)."""
    name = f"Workers{uuid.uuid4().hex[:8]}"
    query = f"query {name} {{ customers(first: 1) {{ edges {{ node {{ id }} }} }} }}"
    labels = {"operation": name, "type": "query", "outcome": "ok"}
    with support.run_uvicorn(settings, workers=2) as base_url:
        for _ in range(12):  # a connection each: the workers take turns accepting
            assert (await graphql(base_url, tokens[Role.MANAGER], query)).status_code == 200
        for _ in range(4):
            samples = await scrape(base_url)
            assert value(samples, "crm_graphql_operations_total", **labels) == 12
            # Summed from the shared directory: no single process's own collectors.
            assert not any(sample_name.startswith("process_") for sample_name, _ in samples)
