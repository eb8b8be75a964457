"""``changes.DERIVED`` against the database: every table a trigger writes is declared
with the tables whose writes reach it (directly or through other triggers), so a live
dashboard that read it re-renders when one of them is written."""

from __future__ import annotations

import re
from collections import defaultdict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.services import changes

_TRIGGERS = text(
    """
    SELECT c.relname, p.proname
    FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_proc p ON p.oid = t.tgfoid
    WHERE NOT t.tgisinternal AND n.nspname = 'public'
    """
)
_FUNCTIONS = text(
    """
    SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
    """
)


def _written_by(sources: dict[str, str]) -> dict[str, set[str]]:
    """The tables each function writes, itself or through the functions it calls."""
    direct = {name: set(changes.written_tables(body)) for name, body in sources.items()}
    calls = {
        name: {other for other in sources if other != name and re.search(rf"\b{other}\s*\(", body)}
        for name, body in sources.items()
    }
    written: dict[str, set[str]] = {}

    def visit(name: str, seen: frozenset[str]) -> set[str]:
        if name not in written:
            found = set(direct[name])
            for other in calls[name] - seen:
                found |= visit(other, seen | {name})
            written[name] = found
        return written[name]

    for name in sources:
        visit(name, frozenset())
    return written


async def test_every_table_written_by_a_trigger_is_declared_derived(
    session: AsyncSession,
) -> None:
    triggers = (await session.execute(_TRIGGERS)).all()
    sources = dict((await session.execute(_FUNCTIONS)).all())
    written = _written_by(sources)
    # derived table -> the tables a trigger writes it from, then closed over chains of
    # triggers (a table derived from a derived table follows that one's sources).
    fed: dict[str, set[str]] = defaultdict(set)
    for table, function in triggers:
        for target in written[function] - {table}:
            fed[target].add(table)
    assert fed, "no trigger writes another table: the catalog query found nothing"
    for _ in range(len(fed)):
        for tables in fed.values():
            for table in list(tables):
                tables |= fed.get(table, set())
    missing = {
        target: sorted(tables - set(fed) - changes.DERIVED.get(target, frozenset()))
        for target, tables in fed.items()
    }
    assert {t: m for t, m in missing.items() if m} == {}
