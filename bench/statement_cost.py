"""CPU of one built-once write statement through ``session.execute`` against the same
statement on the session's asyncpg connection (docs/decisions/0038, "What is left" 2):
``python -m bench.statement_cost [--scale 10] [--seed 42] [-n 400] [--rounds 2]``.

The statement is ``sendMessage``'s advance of a conversation (``UPDATE conversations``
with the event lock and the visibility rule, returning the row). Each run is its own
transaction, rolled back; the connection's checkout and ``BEGIN`` happen before the
timing, so only the statement is measured: the CPU of this thread (``thread_time``),
SQLAlchemy's parameter processing included on both sides, the result's row processing
only on the session's side. The data set is ``bench.datagen``'s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench import datagen
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.enums import MessageAuthorType
from crm_graphql.models import Role
from crm_graphql.services import conversations
from crm_graphql.services.actor import Actor


async def _through_session(
    sessions: async_sessionmaker[AsyncSession], statement: Any, params: dict[str, Any], n: int
) -> float:
    spent = 0.0
    for _ in range(n):
        async with sessions() as session, session.begin():
            await session.connection()
            start = time.thread_time()
            (await session.execute(statement, params)).one()
            spent += time.thread_time() - start
            await session.rollback()
    return spent / n


async def _on_the_connection(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    statement: Any,
    params: dict[str, Any],
    n: int,
) -> float:
    compiled = statement.compile(dialect=engine.dialect)
    processors = compiled._bind_processors
    spent = 0.0
    for _ in range(n):
        async with sessions() as session, session.begin():
            connection = await (await session.connection()).get_raw_connection()
            driver = connection.driver_connection
            assert driver is not None
            start = time.thread_time()
            values = compiled.construct_params(params)
            names = compiled.positiontup or ()
            args = [processors[k](values[k]) if k in processors else values[k] for k in names]
            await driver.fetchrow(compiled.string, *args)
            spent += time.thread_time() - start
            await session.rollback()
    return spent / n


async def measure(url: str, n: int, rounds: int) -> None:
    engine = make_engine(url, pool_size=2)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT c.workspace_id, c.id, u.id AS user_id FROM conversations c "
                        "JOIN users u ON u.workspace_id = c.workspace_id AND u.role = 'admin' "
                        "LIMIT 1"
                    )
                )
            ).one()
        actor = Actor(workspace_id=row.workspace_id, role=Role.ADMIN, user_id=row.user_id)
        statement = conversations._advance_statement(
            actor, MessageAuthorType.AGENT, visible=True, lock=True
        )
        params = {"conversation": row.id, "workspace": row.workspace_id, "viewer": row.user_id}
        figures: dict[str, list[float]] = {"session.execute": [], "asyncpg connection": []}
        for _ in range(rounds):
            figures["session.execute"].append(
                await _through_session(sessions, statement, params, n)
            )
            figures["asyncpg connection"].append(
                await _on_the_connection(engine, sessions, statement, params, n)
            )
        for name, values in figures.items():
            shown = ", ".join(f"{1000 * v:.3f}" for v in values)
            print(
                f"{name:20} {1000 * statistics.median(values):.3f} ms CPU per statement ({shown})"
            )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("-n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    url = datagen.ensure_dataset(args.server_url, args.scale, args.seed)
    uvloop.run(measure(url, args.n, args.rounds))


if __name__ == "__main__":
    main()
