"""Credentials that end: the workspace's counter moves once per change, in commit order,
and a connection's check refuses what has ended (services/credentials.py)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Role, User
from crm_graphql.services import api_keys, auth, credentials
from crm_graphql.services import users as user_service
from crm_graphql.services.actor import Actor
from crm_graphql.services.credentials import Kind, Reason
from crm_graphql.services.errors import Unauthenticated
from tests import support

CONFIG = auth.TokenConfig(secret_key="credentials-test-" + "x" * 32)


async def test_concurrent_revocations_move_the_counter_once_each_without_gaps(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor
) -> None:
    keys = []
    async with sessionmaker() as session, session.begin():
        for i in range(8):
            key, _ = await api_keys.create_api_key(
                admin, session, name=f"k{i}", scopes=[api_keys.CUSTOMERS_READ]
            )
            keys.append(key.id)

    async def revoke(key_id: object) -> None:
        async with sessionmaker() as session, session.begin():
            await api_keys.revoke_api_key(admin, session, key_id)  # type: ignore[arg-type]
            await asyncio.sleep(0.01)  # hold the counter's row lock a moment

    await asyncio.gather(*(revoke(k) for k in keys))
    await revoke(keys[0])  # idempotent: no second revocation
    async with support.log_reader(sessionmaker) as conn:
        assert await credentials.counters(conn, [admin.workspace_id]) == {admin.workspace_id: 8}
        found = await credentials.revocations_since(conn, admin.workspace_id, 0)
        assert [r.seq for r in found] == list(range(1, 9))
        assert {r.identity for r in found} == {(Kind.API_KEY, k) for k in keys}
        assert {r.reason for r in found} == {Reason.API_KEY_REVOKED}
        assert await credentials.revocations_since(conn, admin.workspace_id, 6) == found[6:]


async def _grant(sessionmaker: async_sessionmaker[AsyncSession], token: str) -> credentials.Grant:
    async with sessionmaker() as session:
        return await credentials.access_token_grant(
            session, auth.verify_access_token(CONFIG, token)
        )


async def _login(session: AsyncSession, user: User) -> auth.TokenPair:
    return await auth.login(session, CONFIG, email=user.email, password=support.PASSWORD)


async def test_a_connection_check_refuses_an_ended_login_a_disabled_user_and_a_stale_role(
    sessionmaker: async_sessionmaker[AsyncSession],
    users: dict[Role, User],
    admin: Actor,
    agent: Actor,
) -> None:
    user = users[Role.AGENT]
    async with sessionmaker() as session, session.begin():
        first, second = await _login(session, user), await _login(session, user)
    grant = await _grant(sessionmaker, first.access_token)
    login_id = auth.verify_access_token(CONFIG, first.access_token).login_id
    assert grant.identities == {(Kind.USER, user.id), (Kind.LOGIN, login_id)}
    assert grant.expiry is Reason.TOKEN_EXPIRED and grant.expires_at is not None

    async with sessionmaker() as session, session.begin():
        await auth.logout(agent, session, refresh_token=first.refresh_token)
    with pytest.raises(Unauthenticated, match="Logged out"):
        await _grant(sessionmaker, first.access_token)
    moved = await _grant(sessionmaker, second.access_token)  # the other login holds
    assert moved.seq == grant.seq + 1

    async with sessionmaker() as session, session.begin():
        await user_service.update_user(admin, session, user.id, {"role": Role.VIEWER})
    with pytest.raises(Unauthenticated, match="Role changed"):
        await _grant(sessionmaker, second.access_token)
    async with sessionmaker() as session, session.begin():
        refreshed = await auth.refresh(session, CONFIG, refresh_token=second.refresh_token)
    assert (await _grant(sessionmaker, refreshed.access_token)).seq == grant.seq + 2

    async with sessionmaker() as session, session.begin():
        await user_service.update_user(admin, session, user.id, {"is_active": False})
    with pytest.raises(Unauthenticated, match="User disabled"):
        await _grant(sessionmaker, refreshed.access_token)
    async with support.log_reader(sessionmaker) as conn:
        found = await credentials.revocations_since(conn, admin.workspace_id, grant.seq)
    assert [(r.identity, r.reason) for r in found] == [
        ((Kind.LOGIN, login_id), Reason.LOGGED_OUT),
        ((Kind.USER, user.id), Reason.ROLE_CHANGED),
        ((Kind.USER, user.id), Reason.USER_DISABLED),
    ]


async def test_a_replayed_refresh_token_ends_the_connections_of_its_login(
    sessionmaker: async_sessionmaker[AsyncSession], users: dict[Role, User], admin: Actor
) -> None:
    async with sessionmaker() as session, session.begin():
        pair = await _login(session, users[Role.AGENT])
    async with sessionmaker() as session, session.begin():
        await auth.refresh(session, CONFIG, refresh_token=pair.refresh_token)
    async with sessionmaker() as session:
        with pytest.raises(Unauthenticated, match="reused"):
            await auth.refresh(session, CONFIG, refresh_token=pair.refresh_token)
        await session.commit()  # as the resolver does: the revocation sticks
    login_id = auth.verify_access_token(CONFIG, pair.access_token).login_id
    async with support.log_reader(sessionmaker) as conn:
        found = await credentials.revocations_since(conn, admin.workspace_id, 0)
    assert [(r.identity, r.reason) for r in found] == [
        ((Kind.LOGIN, login_id), Reason.LOGIN_REVOKED)
    ]
    with pytest.raises(Unauthenticated, match="Logged out"):
        await _grant(sessionmaker, pair.access_token)
