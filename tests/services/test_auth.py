"""Access tokens: verified once, then served from memory until they expire."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from crm_graphql.models import Role, User
from crm_graphql.services import auth
from crm_graphql.services.errors import Unauthenticated


async def test_a_verified_access_token_still_expires(users: dict[Role, User]) -> None:
    user = users[Role.AGENT]
    config = auth.TokenConfig(secret_key="k" * 40, access_ttl=timedelta(seconds=1))
    token, _ = auth.issue_access_token(config, user)
    first = auth.actor_from_access_token(config, token, request_id="r1", client_ip="10.0.0.1")
    again = auth.actor_from_access_token(config, token, request_id="r2")
    assert (first.user_id, first.role, first.workspace_id) == (
        user.id,
        Role.AGENT,
        user.workspace_id,
    )
    # The remembered actor carries each request's own id and address.
    assert (first.request_id, first.client_ip) == ("r1", "10.0.0.1")
    assert (again.request_id, again.client_ip) == ("r2", None)
    await asyncio.sleep(2.1)  # JWT expiry has a one-second resolution
    with pytest.raises(Unauthenticated, match="expired"):
        auth.actor_from_access_token(config, token)


async def test_a_token_signed_with_another_key_is_refused_even_if_seen_before(
    users: dict[Role, User],
) -> None:
    config = auth.TokenConfig(secret_key="a" * 40)
    other = auth.TokenConfig(secret_key="b" * 40)
    token, _ = auth.issue_access_token(config, users[Role.VIEWER])
    auth.actor_from_access_token(config, token)
    with pytest.raises(Unauthenticated, match="Invalid"):
        auth.actor_from_access_token(other, token)
