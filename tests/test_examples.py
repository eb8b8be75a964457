"""The README's subscription examples work: the official graphql-ws client (Node) and the
Python one receive an inbox event from a live server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from typing import Any

import httpx
import pytest

from crm_graphql.models import Role, User
from crm_graphql.services.auth import TokenConfig, issue_access_token
from tests import support


def _node() -> str | None:
    return shutil.which("node")


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
    command = (
        [str(_node()), "examples/subscribe.mjs"]
        if language == "node"
        else [sys.executable, "examples/subscribe.py"]
    )

    async def trigger() -> None:
        async with httpx.AsyncClient(base_url=live_server, timeout=20) as http:
            client = support.GraphQLClient(http, token)
            customer = (
                await client(
                    'mutation { createCustomer(input: {name: "Example"}) { customer { id } } }'
                )
            ).ok()["createCustomer"]["customer"]["id"]
            started = await client(
                'mutation($c: ID!) { startConversation(input: {customerId: $c, channel: CHAT, subject: "From the example"}) { errors { code } } }',
                {"c": customer},
            )
            assert started.ok()["startConversation"]["errors"] == []

    result = await _run_example(command, env, trigger)
    event = result["data"]["inbox"]
    assert event["type"] == "conversation.started"
    assert event["conversation"]["subject"] == "From the example"
    assert event["cursor"]
