"""Production mode: an unexpected error is masked (INTERNAL + requestId) on HTTP and on
WebSocket, and its traceback is in a JSON log line carrying the same request id. The
WebSocket applies the same query limits and rate limits as HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.logs import configure_logging
from crm_graphql.models import Role, User
from crm_graphql.services import activities, customers
from crm_graphql.services.actor import Actor
from crm_graphql.settings import Settings
from tests import support

BROKEN_READ = "{ customers { nodes { name address { city } } } }"


async def _customer_with_a_corrupt_address(
    sessionmaker: async_sessionmaker[AsyncSession], actor: Actor
) -> None:
    """A real fault, not a mock: a row whose stored address is a JSON array where every
    reader expects an object (as a careless manual fix of the data would leave it)."""
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(actor, session, {"name": "Corrupt"})
        await session.execute(
            text("UPDATE customers SET address = '[1, 2]'::jsonb WHERE id = :id"),
            {"id": customer.id},
        )


@pytest.fixture
def json_log(settings: Settings) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(settings.model_copy(update={"env": "production"}), stream)
    try:
        yield stream
    finally:
        logging.getLogger("crm_graphql").removeHandler(handler)


async def test_unexpected_error_is_masked_and_logged_with_its_request_id(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    agent: Actor,
    users: dict[Role, User],
    json_log: io.StringIO,
) -> None:
    await _customer_with_a_corrupt_address(sessionmaker, agent)
    async with support.app_client(settings, env="production") as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        response = await client.http.post(
            "/graphql",
            json={"query": BROKEN_READ},
            headers={**client.headers(), "X-Request-Id": "prod-1"},
        )
    result = support.GraphQLResponse(response.status_code, response.json(), response.headers)
    assert result.status == 200
    assert result.data == {"customers": {"nodes": [{"name": "Corrupt", "address": None}]}}
    (error,) = result.errors
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL", "requestId": "prod-1"}
    assert error["path"] == ["customers", "nodes", 0, "address"]
    assert "list" not in json.dumps(result.body)  # nothing of the cause leaks
    assert result.headers["x-request-id"] == "prod-1"
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (logged,) = [line for line in lines if line.get("request_id") == "prod-1"]
    assert logged["level"] == "ERROR" and logged["logger"] == "crm_graphql.errors"
    assert "AttributeError" in logged["exc_info"]


async def test_development_shows_the_detail(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    agent: Actor,
    users: dict[Role, User],
) -> None:
    await _customer_with_a_corrupt_address(sessionmaker, agent)
    async with support.app_client(settings, env="development") as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        (error,) = (await client(BROKEN_READ)).errors
    assert error["extensions"]["code"] == "INTERNAL"
    assert error["extensions"]["detail"].startswith("AttributeError")


# ----------------------------------------------------------------------------- WebSocket


@pytest.fixture(scope="module")
def production_server(settings: Settings) -> Iterator[str]:
    production = settings.model_copy(update={"env": "production", "rate_limits": True})
    extra = {
        "CRM_RATE_LIMIT_USER_PER_MINUTE": "4",
        # Logins of this module come from 127.0.0.1: keep those buckets out of the way.
        "CRM_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "10000",
        "CRM_LOGIN_ATTEMPTS_PER_MINUTE": "10000",
    }
    with support.run_uvicorn(production, extra_env=extra) as base_url:
        yield base_url


@pytest.fixture
async def token(production_server: str, users: dict[Role, User]) -> AsyncIterator[str]:
    async with httpx.AsyncClient(base_url=production_server, timeout=20) as http:
        client = await support.GraphQLClient(http).logged_in(
            users[Role.AGENT].email, support.PASSWORD
        )
        assert client.token
        yield client.token


async def _run(ws: support.WSClient, query: str) -> dict[str, Any]:
    await ws.subscribe(query)
    return await ws.receive()


async def test_websocket_masks_unexpected_errors(
    production_server: str,
    token: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    agent: Actor,
) -> None:
    await _customer_with_a_corrupt_address(sessionmaker, agent)
    ws = await support.WSClient.connect(production_server, token)
    try:
        await ws.acknowledged()
        message = await _run(ws, BROKEN_READ)
        assert message["type"] == "next"
        (error,) = message["payload"]["errors"]
        assert error["message"] == "Internal server error"
        assert error["extensions"]["code"] == "INTERNAL"
        assert set(error["extensions"]) == {"code", "requestId"}
    finally:
        await ws.close()


async def test_a_failing_live_event_is_masked_for_every_subscriber(
    production_server: str,
    token: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    agent: Actor,
) -> None:
    """Events are rendered once per group of subscribers (realtime/fanout.py): an
    unexpected error in that shared rendering is masked like any other."""
    feed = "subscription { activityFeed { type activity { customer { address { city } } } } }"
    sockets = [await support.WSClient.connect(production_server, token) for _ in range(2)]
    try:
        for ws in sockets:
            await ws.acknowledged()
            await ws.subscribe(feed)
        await asyncio.sleep(0.5)  # the subscriptions are registered
        await _customer_with_a_corrupt_address(sessionmaker, agent)
        async with sessionmaker() as session, session.begin():
            corrupt = await session.scalar(
                text("SELECT id FROM customers WHERE workspace_id = :w AND name = 'Corrupt'"),
                {"w": agent.workspace_id},
            )
            await activities.create_activity(
                agent, session, {"type": "note", "subject": "Hi", "customer_id": corrupt}
            )
        for ws in sockets:
            message = await ws.receive()
            assert message["type"] == "next", message
            (error,) = message["payload"]["errors"]
            assert error["message"] == "Internal server error"
            assert error["extensions"]["code"] == "INTERNAL"
            assert set(error["extensions"]) == {"code", "requestId"}
            assert "list" not in json.dumps(message)
    finally:
        for ws in sockets:
            await ws.close()


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_websocket_operations_get_the_query_limits(
    production_server: str, token: str, protocol: str
) -> None:
    ws = await support.WSClient.connect(production_server, token, protocol=protocol)
    try:
        await ws.acknowledged()
        aliases = " ".join(f"a{i}: presence {{ __typename }}" for i in range(51))
        message = await _run(ws, "subscription { " + aliases + " }")
        payload = message["payload"]
        error = payload[0] if isinstance(payload, list) else payload
        assert message["type"] == "error", message
        assert error["extensions"]["code"] == "TOO_MANY_ALIASES"
    finally:
        await ws.close()


async def test_websocket_operations_count_against_the_rate_limit(
    production_server: str, users: dict[Role, User]
) -> None:
    async with httpx.AsyncClient(base_url=production_server, timeout=20) as http:
        client = await support.GraphQLClient(http).logged_in(
            users[Role.VIEWER].email, support.PASSWORD
        )
        assert (await client("{ me { email } }")).headers["ratelimit-remaining"] == "3"
    assert client.token
    ws = await support.WSClient.connect(production_server, client.token)
    try:
        await ws.acknowledged()
        for _ in range(3):
            message = await _run(ws, "{ me { email } }")
            assert message["type"] == "next" and not message["payload"].get("errors")
            assert (await ws.receive())["type"] == "complete"
        refused = await _run(ws, "{ me { email } }")
        assert refused["type"] == "error", refused
        extensions = refused["payload"][0]["extensions"]
        assert extensions["code"] == "RATE_LIMITED" and extensions["retryAfter"] >= 1
    finally:
        await ws.close()


async def test_websocket_messages_are_capped_like_http_bodies(
    production_server: str, token: str
) -> None:
    import websockets

    ws = await support.WSClient.connect(production_server, token)
    try:
        await ws.acknowledged()
        await ws.subscribe("{ __typename }", {"pad": "x" * 1_100_000})
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # too big
    finally:
        await ws.close()
