"""The README's subscription examples work: the official graphql-ws client (Node) and the
Python one receive an inbox event from a live server, and when the server closes the
socket at access-token expiry they reconnect with a fresh token and resume after the
last cursor, missing nothing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crm_graphql.models import Role, User
from crm_graphql.services.auth import TokenConfig, issue_access_token
from tests import support


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


async def _run_example(command: list[str], env: dict[str, str], trigger: Any) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=support.ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.sleep(1.5)  # connected and subscribed
        await trigger()
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
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
