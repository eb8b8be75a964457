"""Fixtures: a real PostgreSQL database made for this run and migrated, a real Redis, a
fresh workspace per test (tenant isolation keeps tests apart without truncation), actors
per role, an HTTP client over the real ASGI app and a real uvicorn for browser/WS tests."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_graphql.db.embedded import EmbeddedServers, start_embedded
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import Role, User, Workspace
from crm_graphql.services import auth
from crm_graphql.services.actor import Actor
from crm_graphql.services.auth import TokenConfig, issue_access_token
from tests import support

REQUIRE_SERVICES = os.environ.get("CRM_REQUIRE_SERVICES") == "1"

# Still argon2id, at a cost that keeps hundreds of logins in the suite fast.
auth.use_password_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(scope="session")
def embedded_servers() -> Iterator[EmbeddedServers | None]:
    """Embedded PostgreSQL/Redis for whichever URL the environment does not give."""
    need_pg = not os.environ.get("CRM_TEST_DATABASE_URL")
    need_redis = not os.environ.get("CRM_TEST_REDIS_URL")
    if REQUIRE_SERVICES and (need_pg or need_redis):
        pytest.fail("CRM_REQUIRE_SERVICES=1 but CRM_TEST_DATABASE_URL/CRM_TEST_REDIS_URL unset")
    if not (need_pg or need_redis):
        yield None
        return
    data_dir = Path(tempfile.mkdtemp(prefix="crm-test-"))
    servers = start_embedded(data_dir, postgres=need_pg, redis=need_redis)
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def server_database_url(embedded_servers: EmbeddedServers | None) -> str:
    url = os.environ.get("CRM_TEST_DATABASE_URL")
    if url:
        return url
    assert embedded_servers is not None and embedded_servers.database_url
    return embedded_servers.database_url


@pytest.fixture(scope="session")
def redis_url(embedded_servers: EmbeddedServers | None) -> str:
    url = os.environ.get("CRM_TEST_REDIS_URL")
    if url:
        return url
    assert embedded_servers is not None and embedded_servers.redis_url
    return embedded_servers.redis_url


@pytest.fixture(scope="session")
def database_url(server_database_url: str) -> Iterator[str]:
    """A database of its own for this test run, migrated to head, dropped afterwards."""
    name = f"crm_test_{secrets.token_hex(4)}"
    support.create_database(server_database_url, name)
    url = make_url(server_database_url).set(database=name).render_as_string(hide_password=False)
    support.migrate(url)
    yield url
    support.drop_database(server_database_url, name)


@pytest.fixture
def scratch_url(server_database_url: str) -> Iterator[str]:
    """An empty database of its own (migration tests migrate it as they need), dropped
    afterwards."""
    name = f"crm_mig_{secrets.token_hex(4)}"
    support.create_database(server_database_url, name)
    yield make_url(server_database_url).set(database=name).render_as_string(hide_password=False)
    support.drop_database(server_database_url, name)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A plain session; tests commit what they want others (the app) to see."""
    async with sessionmaker() as session:
        yield session


@pytest.fixture
async def workspace(sessionmaker: async_sessionmaker[AsyncSession]) -> Workspace:
    """A fresh workspace per test: nothing of another test is visible in it."""
    async with sessionmaker() as session, session.begin():
        return await auth.create_workspace(session, name=f"Test {uuid.uuid4().hex[:12]}")


@pytest.fixture
async def users(
    sessionmaker: async_sessionmaker[AsyncSession], workspace: Workspace
) -> dict[Role, User]:
    """One user per role in the test's workspace; the password is ``support.PASSWORD``."""
    created: dict[Role, User] = {}
    async with sessionmaker() as session, session.begin():
        for role in Role:
            created[role] = await auth.create_user(
                session,
                workspace=workspace,
                email=f"{role.value}-{uuid.uuid4().hex[:10]}@example.com",
                password=support.PASSWORD,
                role=role,
                name=f"{role.value.title()} User",
            )
    return created


@pytest.fixture
def actors(users: dict[Role, User]) -> dict[Role, Actor]:
    return {
        role: Actor(workspace_id=user.workspace_id, role=role, user_id=user.id)
        for role, user in users.items()
    }


@pytest.fixture
def admin(actors: dict[Role, Actor]) -> Actor:
    return actors[Role.ADMIN]


@pytest.fixture
def manager(actors: dict[Role, Actor]) -> Actor:
    return actors[Role.MANAGER]


@pytest.fixture
def agent(actors: dict[Role, Actor]) -> Actor:
    return actors[Role.AGENT]


@pytest.fixture
def viewer(actors: dict[Role, Actor]) -> Actor:
    return actors[Role.VIEWER]


@pytest.fixture
def tokens(settings: Any, users: dict[Role, User]) -> dict[Role, str]:
    """An access token per role (of ``users``), signed with the servers' key."""
    config = TokenConfig(secret_key=settings.secret_key)
    return {role: issue_access_token(config, user)[0] for role, user in users.items()}


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str) -> Any:
    from crm_graphql.settings import Settings, new_encryption_key_entry

    return Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        secret_key="test-secret-key-" + "x" * 32,
        # Explicit, so that apps built from these settings with env="production" start,
        # and server processes share the test's key.
        encryption_keys=[new_encryption_key_entry("test")],
        data_dir=Path(tempfile.mkdtemp(prefix="crm-test-data-")),
        # Test runs share one Redis and log in hundreds of times from 127.0.0.1: rate
        # limits are tested with apps of their own (tests/api/test_rate_limits.py).
        rate_limits=False,
        # Off in the shared app; webhook tests start apps with their own dispatcher.
        webhook_dispatcher=False,
    )


_shared_apps: list[Any] = []  # the session's ``app`` once a test asked for it


@pytest.fixture(scope="session")
async def app(settings: Any) -> AsyncIterator[Any]:
    """The real Starlette app with its lifespan (pools opened and closed)."""
    from crm_graphql.app import build_app

    application = build_app(settings)
    async with application.router.lifespan_context(application):
        _shared_apps.append(application)
        try:
            yield application
        finally:
            _shared_apps.remove(application)


@pytest.fixture(autouse=True)
async def _shared_app_settled() -> None:
    """Before each test, the shared app's job runner ends the round it is in (a job that
    an earlier test started). Its loop is the session's, which runs only while an async
    test or fixture does: a sync test (the browser tests) would otherwise freeze a job
    in its open transaction, and that transaction holds every live event of the database
    back for the whole test (the explorer's subscription received nothing for 99 s
    behind an import left idle in a transaction after its ANALYZE)."""
    for application in _shared_apps:
        runner = application.state.crm.jobs
        if runner is not None:
            async with asyncio.timeout(120):
                await runner.settled()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[support.GraphQLClient]:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield support.GraphQLClient(http)


@pytest.fixture
async def as_role(
    client: support.GraphQLClient, users: dict[Role, User]
) -> dict[Role, support.GraphQLClient]:
    """A logged-in GraphQL client per role (bearer token from the real login mutation)."""
    return {
        role: await client.logged_in(user.email, support.PASSWORD) for role, user in users.items()
    }


@pytest.fixture(scope="session")
def live_server(settings: Any) -> Iterator[str]:
    """A real uvicorn process serving the app on a free port (browser and socket tests).
    Without a webhook dispatcher, like the shared app: it lives all session, and a
    dispatcher there would race the webhook tests' own for their deliveries."""
    extra_env = {"CRM_WEBHOOK_DISPATCHER": "false"}
    with support.run_uvicorn(settings, extra_env=extra_env) as base_url:
        yield base_url


@pytest.fixture(scope="session")
async def live_admin(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    """(email, password) of an admin in a workspace of its own, for the live server."""
    async with sessionmaker() as session, session.begin():
        workspace = await auth.create_workspace(session, name=f"Live {uuid.uuid4().hex[:12]}")
        user = await auth.create_user(
            session,
            workspace=workspace,
            email=f"live-admin-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
    return user.email, support.PASSWORD
