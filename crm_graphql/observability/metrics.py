"""Prometheus metrics (docs/decisions/0025, README "Metrics and traces").

Counters, histograms and the gauges kept as things happen are declared here once, in
``prometheus_client``'s default registry, and updated where the thing happens (the
GraphQL endpoint, the WebSocket handlers, the hub, the webhook dispatcher, the rate
limiter). What is better read than counted (database pools, the webhook backlog) is read
when ``/metrics`` is scraped, from the answering process's own state (``AppMetrics``).

One ``crm-graphql serve`` is one process: each is scraped on its own address, and
Prometheus tells them apart by ``instance``. Several worker processes behind one port
(``--workers N``) must share a directory named by ``PROMETHEUS_MULTIPROC_DIR`` (set
before they start, emptied before each start): counters, histograms and the live gauges
are then summed over the workers by ``prometheus_client``'s multiprocess mode; the
scrape-time gauges stay those of the worker that answered."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, parse
from graphql.utilities import get_operation_ast
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from crm_graphql.db.engine import PlanCache

if TYPE_CHECKING:
    from crm_graphql.resolvers.context import AppState
    from crm_graphql.settings import Settings

log = logging.getLogger("crm_graphql.operations")

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

OPERATIONS = Counter(
    "crm_graphql_operations",
    "GraphQL operations answered over HTTP, by operation name, type (query, mutation, "
    "subscription, unknown) and outcome (ok, or the first error code)",
    ["operation", "type", "outcome"],
)
OPERATION_SECONDS = Histogram(
    "crm_graphql_operation_duration_seconds",
    "Time to answer one GraphQL operation over HTTP, by operation name and type",
    ["operation", "type"],
    buckets=LATENCY_BUCKETS,
)
READS = Counter(
    "crm_graphql_reads",
    "Queries answered over HTTP, by the path that answered: compiled (one SQL statement "
    "building the JSON) or executed (resolvers)",
    ["path"],
)
WEBSOCKET_CONNECTIONS = Gauge(
    "crm_graphql_websocket_connections",
    "WebSocket connections open on /graphql",
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    "crm_graphql_subscriptions_active",
    "Operations running on WebSocket connections, by protocol (subscriptions, while they last)",
    ["protocol"],
    multiprocess_mode="livesum",
)
DELIVERIES = Counter(
    "crm_graphql_event_deliveries",
    "Live event frames written to subscribers (rate() for deliveries per second)",
)
EVENT_LAG = Histogram(
    "crm_graphql_event_lag_seconds",
    "From an event's transaction (its created_at) to its live delivery, once per event "
    "delivered by this process",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WEBHOOK_ATTEMPTS = Counter(
    "crm_graphql_webhook_attempts",
    "Webhook delivery attempts by outcome: delivered, retry (failed, tried again later) "
    "or failed (failed for good)",
    ["outcome"],
)
RATE_LIMIT_REFUSALS = Counter(
    "crm_graphql_rate_limit_refusals",
    "Requests refused by a rate limit, by bucket kind (ip, user, key, login...)",
    ["bucket"],
)

# Operation names come from clients: past this many distinct names in a process, the
# others are counted as "other" (a label value per name is a time series each).
MAX_OPERATION_NAMES = 200

# The compiled read path's pools in ``crm_db_pool_*`` labels, by plan cache mode.
POOL_SUFFIXES = {
    PlanCache.AUTO: "",
    PlanCache.CUSTOM: "_filtered",
    PlanCache.GENERIC: "_generic",
}

_names: set[str] = set()


def operation_name_label(name: str) -> str:
    if name in _names:
        return name
    if len(_names) >= MAX_OPERATION_NAMES:
        return "other"
    _names.add(name)
    return name


# Documents longer than this are described without being kept (the cache holds texts).
_CACHED_DOCUMENT_CHARS = 20_000


def describe(query: str | None, operation_name: str | None, max_tokens: int) -> tuple[str, str]:
    """(operation name, type) of a request's document, for labels: the name given or the
    chosen operation's own ("" for an anonymous one), type "unknown" when the document
    does not parse or has no such operation. Clients send the same documents again and
    again: each is parsed here once."""
    if query is not None and len(query) > _CACHED_DOCUMENT_CHARS:
        return _describe(query, operation_name, max_tokens)
    return _described(query, operation_name, max_tokens)


def _describe(query: str | None, operation_name: str | None, max_tokens: int) -> tuple[str, str]:
    if not query:
        return operation_name or "", "unknown"
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens or None)
    except (GraphQLError, RecursionError):  # what execution refused already: a label only
        return operation_name or "", "unknown"
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return operation_name or "", "unknown"
    name = operation.name.value if operation.name else ""
    return name, operation.operation.value


_described = lru_cache(maxsize=1024)(_describe)


def outcome_of(body: dict[str, Any] | bytes, status: int) -> str:
    """ "ok", or the code of the answer's first error."""
    if isinstance(body, bytes):
        # Compiled answers hold data only; an error (never produced there today) counts
        # as one.
        return "ok" if b'"errors":' not in body else "ERROR"
    errors = body.get("errors")
    if not errors:
        return "ok" if status < 400 else f"HTTP_{status}"
    code = (errors[0].get("extensions") or {}).get("code")
    return str(code) if code else "ERROR"


class ObservedOperation:
    """One GraphQL operation of an HTTP request, timed from its start (``http._operation``
    also wraps it in a ``graphql.operation`` span)."""

    __slots__ = ("operation_name", "query", "started")

    def __init__(self, operation_name: str | None) -> None:
        self.operation_name = operation_name
        self.query: str | None = None  # known once a hash was resolved
        self.started = time.perf_counter()

    def answered(
        self, settings: Settings, body: dict[str, Any] | bytes, status: int
    ) -> tuple[str, str]:
        """Count the answer (and log it when slow); (operation name, type)."""
        seconds = time.perf_counter() - self.started
        name, kind = describe(self.query, self.operation_name, settings.max_tokens)
        label = operation_name_label(name)
        outcome = outcome_of(body, status)
        OPERATIONS.labels(label, kind, outcome).inc()
        OPERATION_SECONDS.labels(label, kind).observe(seconds)
        slow = settings.slow_operation_seconds
        if slow is not None and seconds >= slow:
            log.warning(
                "slow operation %s (%s, %s) took %.3f s", name or "-", kind, outcome, seconds
            )
        if kind == "query" and status == 200:
            READS.labels("compiled" if isinstance(body, bytes) else "executed").inc()
        return name, kind


def refused_request(code: str) -> None:
    """A request refused before any operation ran (bad body, credentials, rate limit)."""
    OPERATIONS.labels("", "unknown", code).inc()


# --------------------------------------------------------------------------- scraping


class AppMetrics(Collector):
    """Gauges read from the app's state at scrape time: connections of each database
    pool (in use, idle, configured size) and the webhook backlog."""

    def __init__(self, app: AppState, backlog: int | None) -> None:
        self.app = app
        self.backlog = backlog

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "crm_graphql_db_pool_connections",
            "Database connections of this process by pool and state (in_use, idle)",
            labels=["pool", "state"],
        )
        sizes = GaugeMetricFamily(
            "crm_graphql_db_pool_size",
            "Connections each pool of this process keeps at most (SQLAlchemy pools may "
            "open their overflow beyond it)",
            labels=["pool"],
        )
        for name, in_use, idle, size in self._pools():
            connections.add_metric([name, "in_use"], in_use)
            connections.add_metric([name, "idle"], idle)
            sizes.add_metric([name], size)
        yield connections
        yield sizes
        if self.backlog is not None:
            yield GaugeMetricFamily(
                "crm_graphql_webhook_backlog",
                "Webhook deliveries still to make (pending), in the whole database",
                value=self.backlog,
            )

    def _pools(self) -> Iterator[tuple[str, int, int, int]]:
        app = self.app
        engines = {"requests": app.sessionmaker, "hub": app.hub.sessionmaker}
        if app.replica is not None:
            engines["replica"] = app.replica.sessionmaker
        for name, sessionmaker in engines.items():
            pool: Any = sessionmaker.kw["bind"].pool
            # QueuePool: connections held, kept idle, and its size.
            yield f"sqlalchemy_{name}", pool.checkedout(), pool.checkedin(), pool.size()
        asyncpg_pools: dict[str, Any] = {"hub_reads": app.hub.pool}
        if app.compiled is not None:
            for prefix, pools in (
                ("compiled", app.compiled.pools),
                ("compiled_replica", app.compiled.replica_pools or {}),
            ):
                for mode, mode_pool in pools.items():
                    suffix = POOL_SUFFIXES[mode]
                    asyncpg_pools[f"{prefix}{suffix}"] = mode_pool
        for name, asyncpg_pool in asyncpg_pools.items():
            if asyncpg_pool is None:
                continue
            size, idle = asyncpg_pool.get_size(), asyncpg_pool.get_idle_size()
            yield f"asyncpg_{name}", size - idle, idle, asyncpg_pool.get_max_size()


def process_exiting() -> None:
    """In multiprocess mode, a worker that stops takes its live gauges with it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


def _allowed(request: Request, settings: Settings) -> bool:
    mode = settings.metrics
    if mode == "open":
        return True
    if mode == "token":
        given = request.headers.get("authorization", "")
        expected = f"Bearer {settings.metrics_token}"
        return bool(settings.metrics_token) and secrets.compare_digest(given, expected)
    if mode == "local":
        host = request.client.host if request.client else ""
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return False


async def _webhook_backlog(app: AppState) -> int | None:
    from crm_graphql.services import webhooks

    try:
        async with app.sessionmaker() as session:
            return await webhooks.pending_count(session)
    except Exception:  # the database is away: the scrape still answers, without it
        return None


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics: the Prometheus text format, for callers ``CRM_METRICS`` allows."""
    app: AppState = request.app.state.crm
    if not _allowed(request, app.settings):
        # Not found, whatever the reason: says nothing about the endpoint to a stranger.
        return PlainTextResponse("Not Found", 404)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared = CollectorRegistry()
        MultiProcessCollector(shared)
        body = generate_latest(shared)
    else:
        body = generate_latest(REGISTRY)
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(AppMetrics(app, await _webhook_backlog(app)))
    body += generate_latest(scraped)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
