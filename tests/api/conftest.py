"""Fixtures of the API tests."""

from __future__ import annotations

import re
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


# The shared app's job runner polls the jobs table on the same engine (its own task): not
# a statement of the request being counted.
_BACKGROUND = re.compile(r"\bjobs\b")


class StatementCounter:
    """The SQL statements the app's engine sends while the ``counter`` fixture is active,
    the job runner's polls left out."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not _BACKGROUND.search(statement):
            self.statements.append(statement)


class _CountedPool:
    """A compiled read path's pool whose statements the counter sees."""

    def __init__(self, pool: Any, counting: StatementCounter) -> None:
        self._pool = pool
        self._counting = counting

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self._counting.statements.append(sql)
        return await self._pool.fetchrow(sql, *args)


@pytest.fixture
async def counter(app: Any) -> AsyncIterator[StatementCounter]:
    """Counts the statements of the app's engine and of the compiled read path's pools (a
    page and its nested lists must cost the same number of statements whatever its size)."""
    engine = app.state.crm.sessionmaker.kw["bind"].sync_engine
    counting = StatementCounter()
    event.listen(engine, "before_cursor_execute", counting)
    compiled = app.state.crm.compiled
    pools = dict(compiled.pools) if compiled is not None else None
    if compiled is not None:
        compiled.pools = {mode: _CountedPool(pool, counting) for mode, pool in pools.items()}
    yield counting
    if pools is not None:
        compiled.pools = pools
    event.remove(engine, "before_cursor_execute", counting)
