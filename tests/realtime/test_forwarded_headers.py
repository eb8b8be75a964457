"""Forwarded headers are believed only from `CRM_TRUSTED_PROXIES` (issue 12, point 6),
on a real `crm-graphql serve` process: by default the client address is the TCP peer's,
so per-address login limits cannot be dodged with a new `X-Forwarded-For` each time;
behind a configured proxy, HTTP and WebSocket both see the forwarded address."""

from __future__ import annotations

import ipaddress
import json
import secrets
import uuid
from typing import Any

import httpx
import websockets
from sqlalchemy import select

from crm_graphql.models import AuditLog, Role, User
from tests import support
from tests.realtime.processes import ServerProcess, Spawn

LIMITS = {
    "CRM_RATE_LIMITS": "true",
    "CRM_LOGIN_FAILURES_PER_IP": "5",
    "CRM_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
    "CRM_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "1000",
}
LOGIN = "mutation($i: LoginInput!) { login(input: $i) { accessToken errors { code } } }"


def _forwarded() -> str:
    """A documentation address (RFC 3849), new each time: only ever a header value. Drawn
    from 2^64 so that two never meet: from the 254 of an IPv4 range, the one client of a
    test was now and then one of the eight before it, its budget one failure short."""
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | secrets.randbits(64)))


def _loopback() -> str:
    """A loopback address of this test alone (all of 127.0.0.0/8 reaches the server)."""
    return (
        f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 2}"
    )


def _client(server: ServerProcess, source: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from ``source`` (any 127.x address)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=20)


async def _login(http: httpx.AsyncClient, email: str, password: str, forwarded: str) -> str:
    """INVALID_CREDENTIALS, RATE_LIMITED or LOGGED_IN."""
    response = await http.post(
        "/graphql",
        json={"query": LOGIN, "variables": {"i": {"email": email, "password": password}}},
        headers={"X-Forwarded-For": forwarded},
    )
    body = response.json()
    if response.status_code == 429:
        return str(body["errors"][0]["extensions"]["code"])
    login = body["data"]["login"]
    return "LOGGED_IN" if login["accessToken"] else str(login["errors"][0]["code"])


async def _failures(http: httpx.AsyncClient, forwarded: list[str]) -> list[str]:
    """Wrong passwords for unknown emails (never the same twice), one per header value."""
    return [
        await _login(http, f"{uuid.uuid4().hex}@example.com", "wrong", value) for value in forwarded
    ]


async def _last_login_address(sessionmaker: Any, user: User) -> str:
    async with sessionmaker() as session:
        address = await session.scalar(
            select(AuditLog.client_ip)
            .where(AuditLog.entity_id == user.id, AuditLog.action == "login")
            .order_by(AuditLog.created_at.desc())
            .limit(1)
        )
    return str(address)


async def test_forwarded_headers_are_ignored_unless_a_proxy_is_configured(
    spawn: Spawn, users: dict[Role, User], sessionmaker: Any
) -> None:
    server = await spawn("no-proxies", **LIMITS)
    agent = users[Role.AGENT]
    # 127.0.0.1: the peer uvicorn trusts by default.
    async with _client(server, "127.0.0.1") as http:
        assert await _login(http, agent.email, support.PASSWORD, _forwarded()) == "LOGGED_IN"
        assert await _last_login_address(sessionmaker, agent) == "127.0.0.1"
        # Every failure counts against the peer, whatever header it sends.
        outcomes = await _failures(http, [_forwarded() for _ in range(8)])
    assert outcomes == ["INVALID_CREDENTIALS"] * 5 + ["RATE_LIMITED"] * 3


async def test_a_configured_proxy_forwards_the_client_address_to_every_path(
    spawn: Spawn, users: dict[Role, User], sessionmaker: Any
) -> None:
    proxy = _loopback()
    server = await spawn("behind-proxy", CRM_TRUSTED_PROXIES=f"{proxy}/32", **LIMITS)
    agent = users[Role.AGENT]
    async with _client(server, proxy) as via_proxy:
        # Each client behind the proxy has its own budget ...
        assert (
            await _failures(via_proxy, [_forwarded() for _ in range(8)])
            == ["INVALID_CREDENTIALS"] * 8
        )
        # ... and one client is limited wherever its requests come through.
        one = _forwarded()
        outcomes = await _failures(via_proxy, [one] * 6)
        assert outcomes == ["INVALID_CREDENTIALS"] * 5 + ["RATE_LIMITED"]
        client = _forwarded()
        assert await _login(via_proxy, agent.email, support.PASSWORD, client) == "LOGGED_IN"
        assert await _last_login_address(sessionmaker, agent) == client
    # A peer that is not the proxy sends the header in vain.
    async with _client(server, _loopback()) as direct:
        outcomes = await _failures(direct, [_forwarded() for _ in range(6)])
    assert outcomes == ["INVALID_CREDENTIALS"] * 5 + ["RATE_LIMITED"]
    # The WebSocket sees the same address as HTTP (here: a mutation's audit row).
    ws_client = _forwarded()
    token = await _token(server, proxy, agent)
    customer = await _create_customer_over_websocket(server, proxy, ws_client, token)
    async with sessionmaker() as session:
        address = await session.scalar(
            select(AuditLog.client_ip).where(AuditLog.entity_id == uuid.UUID(customer))
        )
    assert str(address) == ws_client


async def _token(server: ServerProcess, source: str, user: User) -> str:
    async with _client(server, source) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": LOGIN,
                "variables": {"i": {"email": user.email, "password": support.PASSWORD}},
            },
        )
    return str(response.json()["data"]["login"]["accessToken"])


async def _create_customer_over_websocket(
    server: ServerProcess, source: str, forwarded: str, token: str
) -> str:
    """The raw id of a customer created by a mutation sent over a WebSocket that came
    through the proxy at ``source``."""
    from crm_graphql.global_ids import decode_id

    url = server.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        additional_headers={"X-Forwarded-For": forwarded},
        local_addr=(source, 0),
        open_timeout=10,
    ) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = 'mutation { createCustomer(input: {name: "Via proxy"}) { customer { id } } }'
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "next":
                global_id = message["payload"]["data"]["createCustomer"]["customer"]["id"]
                return str(decode_id(global_id, "Customer"))
            assert message["type"] in ("ping", "pong", "ka"), message
