"""Fixtures of the API tests."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Role, User
from tests import support
from tests.api.scenarios import Env, make_env


@pytest.fixture
def env(
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, User],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Env:
    """What mutation scenarios prepare with: the admin's client in the test's workspace."""
    return make_env(as_role, users, sessionmaker)
