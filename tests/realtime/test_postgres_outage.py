"""PostgreSQL briefly unreachable from one server process (issue 5, point 5): clear errors
while it is gone, then recovery, and its subscribers miss nothing. Which answers are a
503 (issue 12, point 4), and reads after a lost connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from crm_graphql.app import build_app
from crm_graphql.models import Role
from crm_graphql.resolvers.context import Context
from crm_graphql.services import activities
from crm_graphql.services.actor import Actor
from tests import support
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


@contextlib.asynccontextmanager
async def _app_behind(settings: Any, proxy: PgProxy) -> AsyncIterator[Any]:
    """The real app (in this process) whose PostgreSQL connections go through ``proxy``."""
    application = build_app(settings.model_copy(update={"database_url": proxy.url}))
    async with application.router.lifespan_context(application):
        yield application


async def test_outage_answers_503_only_when_nothing_was_produced(
    settings: Any, pg_proxy: PgProxy, tokens: dict[Role, str]
) -> None:
    """The rule (README, "Limits and security"): an operation with no data is a 503 with
    `Retry-After`; partial data is a 200; a batch is a 503 only if none of its operations
    produced anything (a retry must not repeat what did run)."""
    async with _app_behind(settings, pg_proxy) as application:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            gql = support.GraphQLClient(http, tokens[Role.AGENT])
            assert (await gql("{ me { email } }")).ok()["me"]["email"]
            pg_proxy.cut()
            try:
                nothing = await gql("{ me { email } }")
                assert nothing.status == 503, nothing.body
                assert nothing.headers["retry-after"] == "2"
                assert nothing.data == {"me": None}
                [error] = nothing.errors
                assert error["extensions"]["code"] == "UNAVAILABLE", error
                assert error["extensions"]["retryAfter"] == 2
                assert error["path"] == ["me"]

                partial = await gql("{ __typename me { email } }")
                assert partial.status == 200, partial.body
                assert "retry-after" not in partial.headers
                assert partial.data == {"__typename": "Query", "me": None}
                assert {e["extensions"]["code"] for e in partial.errors} == {"UNAVAILABLE"}

                def batch(*queries: str) -> Any:
                    body = [{"query": q} for q in queries]
                    return http.post("/graphql", json=body, headers=gql.headers())

                mixed = await batch("{ __typename }", "{ me { email } }")
                assert mixed.status_code == 200, mixed.text
                first, second = mixed.json()
                assert first == {"data": {"__typename": "Query"}}
                assert second["errors"][0]["extensions"]["code"] == "UNAVAILABLE"

                failed = await batch("{ me { email } }", "{ customers { totalCount } }")
                assert failed.status_code == 503, failed.text
                assert failed.headers["retry-after"] == "2"
                codes = [e["extensions"]["code"] for r in failed.json() for e in r["errors"]]
                assert codes == ["UNAVAILABLE", "UNAVAILABLE"]

                # An API key is looked up in PostgreSQL before anything runs.
                keyed = support.GraphQLClient(http, "crm_abcdefghij_" + "s" * 43)
                refused = await keyed("{ __typename }")
                assert refused.status == 503, refused.body
                assert refused.headers["retry-after"] == "2"
                assert refused.errors[0]["extensions"]["code"] == "UNAVAILABLE"
            finally:
                pg_proxy.restore()
            await wait_for(
                lambda: _status_of(gql, "{ me { email } }", 200), timeout=15, what="served again"
            )


async def _status_of(gql: support.GraphQLClient, query: str, status: int) -> bool:
    return (await gql(query)).status == status


async def test_reads_after_a_lost_connection_get_their_own_answer(
    settings: Any, pg_proxy: PgProxy, users: dict[Role, Any]
) -> None:
    """A request's reads share one session; when its connection is lost (PostgreSQL
    restarting) the reads after it get a connection of their own instead of
    `PendingRollbackError` (an INTERNAL answer for every sibling field)."""
    user = users[Role.AGENT]
    actor = Actor(workspace_id=user.workspace_id, role=Role.AGENT, user_id=user.id)
    async with _app_behind(settings, pg_proxy) as application:
        context = Context(app=application.state.crm, actor=actor, request_id="lost-connection")
        try:
            async with context.read() as session:
                assert await session.scalar(text("SELECT 1")) == 1
            pg_proxy.cut()  # the session's connection is dropped ...
            pg_proxy.restore()  # ... and PostgreSQL can be reached again
            with pytest.raises(DBAPIError) as lost:
                async with context.read() as session:
                    await session.scalar(text("SELECT 2"))
            assert lost.value.connection_invalidated, lost.value
            async with context.read() as session:
                assert await session.scalar(text("SELECT 3")) == 3
        finally:
            await context.close()
