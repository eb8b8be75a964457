"""``build_app(settings)``: the one ASGI application."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from crm_graphql import crypto
from crm_graphql.compiled import CompiledReads
from crm_graphql.compression import compression_middleware
from crm_graphql.console import console_routes
from crm_graphql.cors import cors_middleware
from crm_graphql.db.engine import (
    make_engine,
    make_read_pool,
    make_sessionmaker,
    requests_engine,
)
from crm_graphql.db.replica import Replica
from crm_graphql.diagnostics import Diagnostics, runtime
from crm_graphql.downloads import download_routes
from crm_graphql.explorer import explorer_routes
from crm_graphql.http import graphql_endpoint
from crm_graphql.http_only import http_only
from crm_graphql.job_runner import JobRunner, RunnerSettings
from crm_graphql.logs import configure_logging
from crm_graphql.mail.channel import email_config, listen_address, open_channel
from crm_graphql.mail.inbound import attachment_endpoint, inbound_email_endpoint
from crm_graphql.observability import tracing
from crm_graphql.observability.metrics import metrics_endpoint, process_exiting
from crm_graphql.observability.requests import RequestIds
from crm_graphql.persisted_queries import PersistedQueries, load_manifest
from crm_graphql.ratelimit import RateLimiter
from crm_graphql.realtime.bus import Bus
from crm_graphql.realtime.connections import Connections
from crm_graphql.realtime.ephemeral import Ephemeral
from crm_graphql.realtime.hub import Hub, HubSettings
from crm_graphql.realtime.webhooks import DispatcherSettings, WebhookDispatcher
from crm_graphql.realtime.ws import GraphQLWebSocket, close_sockets_before_exit, keep_protocol
from crm_graphql.realtime.ws import close_all as close_all_sockets
from crm_graphql.resolvers.context import AppState, Context
from crm_graphql.resolvers.credentials import connection_credentials
from crm_graphql.schema import schema
from crm_graphql.services.auth import TokenConfig
from crm_graphql.settings import (
    ConfigurationError,
    Settings,
    resolve_encryption_keys,
    resolve_secret_key,
)

log = logging.getLogger("crm_graphql")


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: PostgreSQL and Redis both answer."""
    app: AppState = request.app.state.crm
    checks: dict[str, str] = {}
    try:
        async with app.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["postgres"] = f"error: {type(exc).__name__}"
    checks["redis"] = "ok" if await app.bus.ping() else "error"
    ready = all(v == "ok" for v in checks.values())
    if app.replica is not None:
        # Informational: without the replica, reads that may lag go to the primary.
        lag = app.replica.lag()
        checks["replica"] = (
            "unavailable" if lag is None else "ok" if app.replica.usable() else "lagging"
        )
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


async def root(request: Request) -> Response:
    return RedirectResponse("/graphql")


def build_app(settings: Settings) -> Starlette:
    """The Starlette app; its lifespan opens the database pool and Redis and closes them."""
    if not settings.database_url or not settings.redis_url:
        raise ConfigurationError(
            "database_url and redis_url must be set (the CLI starts embedded ones)"
        )
    tokens = TokenConfig(
        secret_key=resolve_secret_key(settings),
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    try:
        keyring = crypto.Keyring.from_entries(resolve_encryption_keys(settings))
    except crypto.KeyringError as exc:
        raise ConfigurationError(f"CRM_ENCRYPTION_KEYS: {exc}") from exc
    trusted_documents = _trusted_documents(settings)
    mail_config = email_config(settings, tokens.secret_key)
    if settings.smtp_listen:
        listen_address(settings.smtp_listen)  # a typo stops start-up, not the listener
    if settings.metrics == "token" and not settings.metrics_token:
        raise ConfigurationError("CRM_METRICS=token needs CRM_METRICS_TOKEN")
    tracing.configure(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = requests_engine(
            settings.database_url or "", settings.db_pool_size, echo=settings.sql_echo
        )
        sessionmaker = make_sessionmaker(engine)
        crypto.attach(sessionmaker, keyring)
        hub_engine = make_engine(settings.database_url or "", pool_size=settings.hub_pool_size)
        hub_sessionmaker = make_sessionmaker(hub_engine)
        crypto.attach(hub_sessionmaker, keyring)
        bus = Bus.from_url(settings.redis_url or "")
        hub_pool = await make_read_pool(
            settings.database_url or "", settings.hub_pool_size, "crm_graphql_hub"
        )
        hub = Hub(
            hub_pool,
            hub_sessionmaker,
            bus.client,
            HubSettings(slow_consumer_after=settings.slow_consumer_seconds),
        )
        await hub.start()
        ephemeral = Ephemeral(bus.client)
        await ephemeral.start()
        dispatcher = WebhookDispatcher(
            sessionmaker,
            keyring,
            DispatcherSettings(
                poll_seconds=settings.webhook_poll_seconds,
                timeout_seconds=settings.webhook_timeout_seconds,
                max_attempts=settings.webhook_max_attempts,
                retry_base_seconds=settings.webhook_retry_base_seconds,
            ),
        )
        if settings.webhook_dispatcher:
            await dispatcher.start()
        runner = None
        if settings.job_runner:
            runner = JobRunner(
                sessionmaker,
                bus,
                RunnerSettings(
                    poll_seconds=settings.job_poll_seconds,
                    lease_seconds=settings.job_lease_seconds,
                ),
            )
            await runner.start()
        mail = await open_channel(settings, mail_config, sessionmaker)
        app.state.mail = mail.channel
        replica = None
        if settings.database_replica_url:
            replica = await Replica(
                settings.database_url or "",
                settings.database_replica_url,
                bus.client,
                pool_size=settings.db_pool_size,
                max_lag=settings.replica_max_lag,
                poll=settings.replica_poll_seconds,
                primary_engine=engine,
            ).start()
            crypto.attach(replica.sessionmaker, keyring)
        compiled = (
            await CompiledReads.open(schema, settings, engine, replica)
            if settings.compiled_reads
            else None
        )
        app.state.crm = AppState(
            settings=settings,
            sessionmaker=sessionmaker,
            tokens=tokens,
            bus=bus,
            hub=hub,
            ephemeral=ephemeral,
            limiter=RateLimiter(bus.client),
            keyring=keyring,
            webhooks=dispatcher,
            persisted=PersistedQueries(
                bus.client if settings.persisted_queries else None,
                max_entries=settings.persisted_queries_max_entries,
                max_bytes=settings.persisted_query_max_bytes,
                trusted=trusted_documents,
            ),
            compiled=compiled,
            replica=replica,
            jobs=runner,
        )
        app.state.schema = schema
        restore_signals = close_sockets_before_exit()
        settle_garbage_collector(settings.gc_thresholds)
        # Soak runs only (CRM_DEBUG_RUNTIME): GC pauses and loop stalls at /debug/runtime.
        diagnostics = Diagnostics() if settings.debug_runtime else None
        if diagnostics is not None:
            await diagnostics.start()
            app.state.diagnostics = diagnostics
        try:
            yield
        finally:
            if diagnostics is not None:
                await diagnostics.stop()
            restore_signals()
            await close_all_sockets()
            await dispatcher.close()
            if runner is not None:
                await runner.close()
            await mail.close()
            if compiled is not None:
                await compiled.close()
            if replica is not None:
                await replica.close()
            await ephemeral.close()
            await hub.close()
            await hub_pool.close()
            await bus.close()
            await hub_engine.dispose()
            await engine.dispose()
            process_exiting()

    # Outermost: the request id is set before anything runs, and the access line (written
    # when the answer starts) still sees it.
    middleware: list[Middleware] = [Middleware(RequestIds)]
    if settings.trusted_proxies:
        # Next, so that every path (HTTP, WebSocket, rate limits, audit rows) sees
        # the same client address: X-Forwarded-For is believed only from these peers.
        # `crm-graphql serve` switches uvicorn's own handling off (it trusts 127.0.0.1
        # by default), so the app alone decides.
        middleware.append(
            Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
        )
    middleware.extend(tracing.middleware())  # a server span per request, when tracing
    # Always there: without an allowlist a preflight is refused by CORS rules (400, no
    # CORS headers) rather than by the router (405).
    # Both only act on HTTP: WebSocket connections do not keep a frame of theirs.
    cors = cors_middleware(settings.cors_origins, settings.cors_allow_headers)
    middleware.append(http_only(cors))
    if settings.compression:
        middleware.append(http_only(compression_middleware(settings.compression_min_bytes)))
    routes: list[Any] = [
        Route("/", root),
        Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", GraphQLWebSocket(schema)),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *download_routes(),
        Route("/inbound/email", inbound_email_endpoint, methods=["POST"]),
        Route("/attachments/{id}", attachment_endpoint, methods=["GET"]),
        *explorer_routes(),
        *console_routes(),
    ]
    if settings.debug_runtime:
        routes.append(Route("/debug/runtime", runtime))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    # How a WebSocket or an event stream becomes a GraphQL context (realtime/ imports
    # nothing of resolvers/: it is handed them here).
    app.state.connections = Connections(context=Context, authenticate=connection_credentials)
    return app


def _trusted_documents(settings: Settings) -> dict[str, str] | None:
    """The manifest's documents in trusted-documents mode (checked before start-up: a
    public deployment must not come up accepting any document)."""
    if not settings.persisted_only:
        return None
    if settings.persisted_queries_manifest is None:
        raise ConfigurationError("CRM_PERSISTED_ONLY needs CRM_PERSISTED_QUERIES_MANIFEST")
    try:
        return load_manifest(settings.persisted_queries_manifest)
    except ValueError as exc:
        raise ConfigurationError(f"CRM_PERSISTED_QUERIES_MANIFEST: {exc}") from exc


_settled: tuple[int, int, int] | None = None


def settle_garbage_collector(thresholds: tuple[int, int, int]) -> None:
    """Called once the app has started. What start-up built (modules, the schema, mappers)
    lives as long as the process: frozen out of the collector's reach, a full collection
    no longer walks it. Full collections paused every request and live delivery for
    75-190 ms, several times a minute under live-chat load (decision 0009). Then the
    collector's ``thresholds`` (``CRM_GC_THRESHOLDS``; decision 0010: a young collection's
    pause grows with the first). Frozen once per process (tests start many apps in one)."""
    global _settled
    if _settled is None:
        gc.collect()
        gc.freeze()
    _settled = thresholds
    gc.set_threshold(*thresholds)


def create_app() -> Any:
    """uvicorn factory (``crm_graphql.app:create_app``): settings from the environment."""
    settings = Settings()
    configure_logging(settings)
    return keep_protocol(build_app(settings))
