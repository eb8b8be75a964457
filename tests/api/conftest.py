"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
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


class StatementCounter:
    """The SQL statements the app's engine sends while the ``counter`` fixture is active."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)


@pytest.fixture
async def counter(app: Any) -> AsyncIterator[StatementCounter]:
    """Counts the statements of the app's engine (a page and its nested lists must cost
    the same number of statements whatever its size)."""
    engine = app.state.crm.sessionmaker.kw["bind"].sync_engine
    counting = StatementCounter()
    event.listen(engine, "before_cursor_execute", counting)
    yield counting
    event.remove(engine, "before_cursor_execute", counting)
