"""The examples work against a live server: the subscription examples (the official
graphql-ws client in Node, and Python) receive an inbox event and, when the server closes
the socket at access-token expiry, reconnect with a fresh token and resume after the last
cursor, missing nothing; the frontend query client (TypeScript, urql; type-checked) pages
through customers, waits out rate limits and reports each kind of failure; the Python
partner integration pages with an API key, waits out RATE_LIMITED with Retry-After, and
receives a real webhook whose signature it verifies."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id
from crm_graphql.models import Role, User
from crm_graphql.services.actor import Actor
from crm_graphql.services.auth import TokenConfig, issue_access_token
from tests import factories, support


def _node() -> str | None:
    return shutil.which("node")


def _command(language: str) -> list[str]:
    if language == "node":
        node = _node()
        if node is None:
            pytest.skip("node is not installed")
        return [node, "examples/subscribe.mjs"]
    return [sys.executable, "examples/subscribe.py"]


async def _start_conversation(base_url: str, token: str, subject: str) -> None:
    """An inbox event: a customer and a conversation with ``subject``."""
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
        client = support.GraphQLClient(http, token)
        customer = (
            await client(
                'mutation { createCustomer(input: {name: "Example"}) { customer { id } } }'
            )
        ).ok()["createCustomer"]["customer"]["id"]
        started = await client(
            "mutation($c: ID!, $s: String!) { startConversation(input: {customerId: $c, channel: CHAT, subject: $s}) { errors { code } } }",
            {"c": customer, "s": subject},
        )
        assert started.ok()["startConversation"]["errors"] == []


async def _run_example(
    command: list[str], env: dict[str, str], trigger: Any = None, seconds: float = 20
) -> dict[str, Any]:
    """Run an example to its end (``trigger``, when given, once it has had time to connect
    and subscribe): the last JSON line it printed."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=support.ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        if trigger is not None:
            await asyncio.sleep(1.5)  # connected and subscribed
            await trigger()
        stdout, stderr = await asyncio.wait_for(proc.communicate(), seconds)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()
    return json.loads(stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("language", ["node", "python"])
async def test_subscription_example_receives_an_inbox_event(
    live_server: str, settings: Any, users: dict[Role, User], language: str
) -> None:
    if language == "node" and _node() is None:
        pytest.skip("node is not installed")
    token = issue_access_token(TokenConfig(secret_key=settings.secret_key), users[Role.AGENT])[0]
    env = {
        **os.environ,
        "CRM_URL": live_server.replace("http://", "ws://") + "/graphql",
        "CRM_TOKEN": token,
        "CRM_MAX_EVENTS": "1",
    }
    command = _command(language)

    async def trigger() -> None:
        await _start_conversation(live_server, token, "From the example")

    result = await _run_example(command, env, trigger)
    event = result["data"]["inbox"]
    assert event["type"] == "conversation.started"
    assert event["conversation"]["subject"] == "From the example"
    assert event["cursor"]


@pytest.fixture(scope="module")
def short_token_server(settings: Any) -> Iterator[str]:
    """A server whose access tokens live 5 seconds."""
    with support.run_uvicorn(settings, extra_env={"CRM_ACCESS_TOKEN_TTL_SECONDS": "5"}) as base_url:
        yield base_url


@pytest.mark.parametrize("language", ["node", "python"])
async def test_subscription_example_renews_an_expired_token_and_resumes_by_cursor(
    short_token_server: str, settings: Any, users: dict[Role, User], language: str
) -> None:
    command = _command(language)
    agent = users[Role.AGENT]
    async with httpx.AsyncClient(base_url=short_token_server, timeout=20) as http:
        login = (
            await support.GraphQLClient(http)(
                "mutation($i: LoginInput!) { login(input: $i) { accessToken refreshToken } }",
                {"i": {"email": agent.email, "password": support.PASSWORD}},
            )
        ).ok()["login"]
    writer = issue_access_token(TokenConfig(secret_key=settings.secret_key), agent)[0]
    env = {
        **os.environ,
        "CRM_URL": short_token_server.replace("http://", "ws://") + "/graphql",
        "CRM_TOKEN": login["accessToken"],
        "CRM_REFRESH_TOKEN": login["refreshToken"],
        "CRM_MAX_EVENTS": "2",
    }
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=support.ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    log: list[str] = []

    async def said(text: str) -> None:
        while text not in (line := (await proc.stderr.readline()).decode()):  # type: ignore[union-attr]
            assert line, f"the example ended without saying {text!r}: {log}"
            log.append(line)
        log.append(line)

    try:
        await asyncio.wait_for(said("connected"), 15)
        await asyncio.sleep(0.5)  # subscribed
        await _start_conversation(short_token_server, writer, "Before the expiry")
        await asyncio.wait_for(said("closed 4440 access token expired"), 15)
        # Written while it is away: it arrives because the client resumes by cursor.
        await _start_conversation(short_token_server, writer, "While away")
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, (log, stderr.decode())
    received = [json.loads(line)["data"]["inbox"] for line in stdout.decode().splitlines()]
    subjects = [event["conversation"]["subject"] for event in received]
    assert subjects == ["Before the expiry", "While away"], (subjects, log)
    assert "connected" in stderr.decode(), "it connected again"


# ------------------------------------------------------------------ query clients

# Rate limits on (the shared test settings switch them off), tight enough for the
# examples to meet them: 20 operations a minute per user, one back every 3 s.
RATE_LIMITED_ENV = {"CRM_RATE_LIMITS": "true", "CRM_RATE_LIMIT_USER_PER_MINUTE": "20"}


@pytest.fixture(scope="module")
def rate_limited_server(settings: Any) -> Iterator[str]:
    """A server with rate limits and its webhook dispatcher on."""
    with support.run_uvicorn(
        settings.model_copy(update={"rate_limits": True}),
        extra_env={**RATE_LIMITED_ENV, "CRM_WEBHOOK_POLL_SECONDS": "0.2"},
    ) as base_url:
        yield base_url


async def _customers(
    sessionmaker: async_sessionmaker[AsyncSession], users: dict[Role, User], count: int
) -> list[str]:
    """``count`` customers in the users' workspace, in the API's default order (newest
    first): their names."""
    admin = users[Role.ADMIN]
    actor = Actor(workspace_id=admin.workspace_id, role=Role.ADMIN, user_id=admin.id)
    names = [f"Customer {i:02d}" for i in range(count)]
    for name in names:
        await factories.make_customer(sessionmaker, actor, name)
    return names[::-1]


def _frontend_bundle(tmp_path: Any) -> list[str]:
    """examples/frontend type-checked (tsc) and bundled for Node (esbuild): the command
    that runs it."""
    bin = support.ROOT / "node_modules" / ".bin"
    if _node() is None or not (bin / "tsc").exists():
        pytest.skip("node or node_modules missing: run `make setup`")
    checked = subprocess.run(
        [str(bin / "tsc"), "-p", "examples/frontend/tsconfig.json"],
        cwd=support.ROOT,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    out = tmp_path / "frontend.mjs"
    bundled = subprocess.run(
        [
            str(bin / "esbuild"),
            "examples/frontend/run.ts",
            "--bundle",
            "--platform=node",
            "--format=esm",
            f"--outfile={out}",
            "--log-level=warning",
        ],
        cwd=support.ROOT,
        capture_output=True,
        text=True,
    )
    assert bundled.returncode == 0, bundled.stderr
    return [_node() or "node", str(out)]


async def test_the_frontend_client_pages_waits_out_rate_limits_and_reports_failures(
    rate_limited_server: str,
    settings: Any,
    users: dict[Role, User],
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Any,
) -> None:
    command = _frontend_bundle(tmp_path)
    names = await _customers(sessionmaker, users, 23)
    token = issue_access_token(TokenConfig(secret_key=settings.secret_key), users[Role.AGENT])[0]
    env = {
        **os.environ,
        "CRM_URL": rate_limited_server + "/graphql",
        "CRM_TOKEN": token,
        "CRM_PAGE_SIZE": "1",
    }
    result = await _run_example(command, env, seconds=120)
    # 23 pages of one customer against a budget of 20 a minute: it waited, lost nothing.
    assert result["pages"] == [[name] for name in names]
    assert result["totalCount"] == 23
    assert result["rateLimitedWaits"] and all(1 <= w <= 3 for w in result["rateLimitedWaits"])
    errors = result["errors"]
    assert errors["forbidden"] == {
        "kind": "graphql",
        "codes": ["FORBIDDEN"],
        "messages": errors["forbidden"]["messages"],
    }
    assert errors["badToken"]["kind"] == "unauthenticated"
    assert errors["badCursor"]["kind"] == "graphql"
    assert errors["badCursor"]["codes"] == ["VALIDATION"]
    assert errors["unreachable"]["kind"] == "network"


SET_BUDGET = """mutation($i: SetApiKeyBudgetInput!) { setApiKeyBudget(input: $i) {
  errors { code } } }"""
CREATE_KEY = """mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) {
  token apiKey { id } errors { code } } }"""


async def test_the_partner_integration_pages_waits_and_verifies_a_real_webhook(
    rate_limited_server: str,
    settings: Any,
    users: dict[Role, User],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    names = await _customers(sessionmaker, users, 22)
    admin_token = issue_access_token(
        TokenConfig(secret_key=settings.secret_key), users[Role.ADMIN]
    )[0]
    async with httpx.AsyncClient(base_url=rate_limited_server, timeout=20) as http:
        admin = support.GraphQLClient(http, admin_token)
        scopes = ["CUSTOMERS_READ", "CUSTOMERS_WRITE", "WEBHOOKS_MANAGE"]
        created = await admin(CREATE_KEY, {"i": {"name": "Example partner", "scopes": scopes}})
        key = created.ok()["createApiKey"]
        # The key's own budget (issue 16 point 8): 20 operations a minute.
        budget = {"id": key["apiKey"]["id"], "rateLimitPerMinute": 20}
        assert (await admin(SET_BUDGET, {"i": budget})).ok()["setApiKeyBudget"]["errors"] == []
    env = {
        **os.environ,
        "CRM_URL": rate_limited_server + "/graphql",
        "CRM_API_KEY": key["token"],
        "CRM_PAGE_SIZE": "1",
    }
    result = await _run_example([sys.executable, "examples/partner.py"], env, seconds=150)
    assert result["customers"] == names and result["pages"] == 22
    assert result["rateLimitedWaits"] and all(1 <= w <= 3 for w in result["rateLimitedWaits"])
    throttle = result["lastCost"]["throttleStatus"]
    assert throttle["maximumAvailable"] == 20
    hook = result["webhook"]
    assert hook["verified"] is True and hook["tamperedVerifies"] is False
    body = hook["body"]
    assert body["payloadVersion"] == 2 and body["deliveryId"] == hook["deliveryHeader"]
    event = body["event"]
    assert event["type"] == "activity.created" and event["entityId"] == hook["noteId"]
    assert from_global_id(event["data"]["customerId"])[0] == "Customer"
    assert event["data"]["type"] == "NOTE"
