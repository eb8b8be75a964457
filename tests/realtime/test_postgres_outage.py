"""PostgreSQL briefly unreachable from one server process (issue 5, point 5): clear errors
while it is gone, then recovery, and its subscribers miss nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crm_graphql.models import Role
from crm_graphql.services import activities
from tests.realtime.processes import Cluster, PgProxy, Spawn, wait_for
from tests.realtime.streams import (
    FEED,
    assert_in_order_once,
    head_cursor,
    nothing_more,
    subscribed,
    take,
)

OUTAGE_SECONDS = 2.0


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[PgProxy]:
    proxy = PgProxy(database_url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()


async def test_postgres_outage_gives_clear_errors_then_everything_recovers(
    servers: Cluster,
    spawn: Spawn,
    pg_proxy: PgProxy,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    behind_proxy = await spawn("behind-proxy", CRM_DATABASE_URL=pg_proxy.url)
    written: list[str] = []
    async with api(behind_proxy) as on_c, api(servers.a) as on_a:
        customer = await on_c.customer("Outage")
        assert pg_proxy.accepted > 0, "the server does not talk to PostgreSQL via the proxy"
        after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
        ws = await subscribed(behind_proxy.url, tokens[Role.AGENT], FEED, {"after": after})
        try:
            written.append("before the outage")
            await on_c.note(customer, written[-1])
            received = await take(ws, "activityFeed", 1)

            pg_proxy.cut()
            cut_at = time.monotonic()
            # A mutation answers promptly with a coded GraphQL error in a JSON body.
            started = time.monotonic()
            failed = await on_c.activity(customer, "lost in the outage")
            elapsed = time.monotonic() - started
            assert elapsed < 10, f"the mutation took {elapsed:.1f} s"
            assert failed.headers["content-type"].startswith("application/graphql-response+json")
            assert failed.errors, failed.body
            codes = {e.get("extensions", {}).get("code") for e in failed.errors}
            assert codes == {"UNAVAILABLE"}, failed.body
            assert failed.errors[0]["message"], failed.body
            # Readiness says which dependency is missing.
            ready = await on_c.http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["postgres"].startswith("error"), ready.text
            assert ready.json()["checks"]["redis"] == "ok", ready.text
            # Meanwhile another process (direct to PostgreSQL) keeps writing.
            for i in range(2):
                written.append(f"during the outage {i}")
                await on_a.note(customer, written[-1])

            remaining = OUTAGE_SECONDS - (time.monotonic() - cut_at)
            if remaining > 0:  # the outage lasts its ~2 s
                await asyncio.sleep(remaining)
            pg_proxy.restore()

            await wait_for(
                lambda: _status(on_c.http, "/readyz", 200), timeout=15, what="ready again"
            )
            written.append("after the outage")
            await on_c.note(customer, written[-1])
            # The subscriber opened before the outage gets everything, once, in order.
            received += await take(ws, "activityFeed", 3, timeout=20)
            await nothing_more(ws)
        finally:
            await ws.close()
    assert [e["activity"]["subject"] for e in received] == written
    assert_in_order_once(received)
    print(f"outage mutation: HTTP {failed.status} in {elapsed:.2f} s: {failed.body}")


async def _status(http: httpx.AsyncClient, path: str, status: int) -> bool:
    return (await http.get(path)).status_code == status
