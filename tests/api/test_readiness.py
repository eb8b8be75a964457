"""Readiness (/readyz) tells PostgreSQL and Redis outages apart; liveness (/healthz) does
not depend on either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from crm_graphql.app import build_app
from tests import support


@asynccontextmanager
async def _client_for(settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over a separate app (its own pools) built from ``settings``."""
    application = build_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_ready_when_both_answer(client: support.GraphQLClient) -> None:
    response = await client.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_redis_down_is_503(settings: Any) -> None:
    # Nothing listens there: the port was free a moment ago and is closed now.
    closed = f"redis://127.0.0.1:{support.free_port()}/0"
    async with _client_for(settings.model_copy(update={"redis_url": closed})) as http:
        response = await http.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["redis"] == "error"
        assert body["checks"]["postgres"] == "ok"

        health = await http.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}


async def test_missing_database_is_503(settings: Any) -> None:
    missing = (
        make_url(settings.database_url)
        .set(database="crm_no_such_database_for_readyz")
        .render_as_string(hide_password=False)
    )
    async with _client_for(settings.model_copy(update={"database_url": missing})) as http:
        response = await http.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["postgres"].startswith("error"), body
        assert body["checks"]["redis"] == "ok"
        # The failure is named, but no URL, password or server message leaks out.
        assert "crm_no_such_database" not in response.text

        health = await http.get("/healthz")
        assert health.status_code == 200
