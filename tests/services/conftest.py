"""Fixtures shared by the service tests."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Role
from crm_graphql.services import auth
from crm_graphql.services.actor import Actor
from tests import support


@pytest.fixture
async def outsider(sessionmaker: async_sessionmaker[AsyncSession]) -> Actor:
    """An admin of a second workspace."""
    async with sessionmaker() as s, s.begin():
        other = await auth.create_workspace(s, name=f"Other {uuid.uuid4().hex[:12]}")
        user = await auth.create_user(
            s,
            workspace=other,
            email=f"other-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
    return Actor(workspace_id=other.id, role=Role.ADMIN, user_id=user.id)
