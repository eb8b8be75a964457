"""Which tables a transaction wrote, and which a read read: what tells a live dashboard
that the data under it changed (``realtime.dashboards``; docs/decisions/0018).

Writes: every statement a session sends is seen here (ORM flushes, ``insert``/``update``/
``delete`` statements, and SQL text), and the tables it writes are kept on the session
until the transaction ends; the unit of work announces them after commit
(``take_written``), on rollback they are forgotten. Reads: a session opened with
``reading()`` collects the tables its statements read (their ``FROM`` and ``JOIN``s).

Tables kept by triggers from others (rollups, snapshots) are not written by any
statement a session sends: ``DERIVED`` says which tables they follow, and a read of one
counts as a read of those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import chain
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.elements import TextClause

from crm_graphql.services import sync

WRITTEN_KEY = "crm_written_tables"
READ_KEY = "crm_read_tables"

# A table kept by triggers from the tables it follows (written in the same transaction).
_SEARCHED = frozenset(
    {
        "customers",
        "companies",
        "deals",
        "conversations",
        "messages",
        "activities",
        # which custom fields are searchable
        "custom_field_definitions",
    }
)
_ORDER_HISTORY = frozenset({"orders", "order_lines", "customers"})
_DEALS = frozenset({"deals", "deal_stage_changes", "stages"})
DERIVED: dict[str, frozenset[str]] = {
    "search_documents": _SEARCHED,
    "search_terms": _SEARCHED,
    # services/snapshots.py: summaries of the order history, stamped with its version.
    "order_history_versions": _ORDER_HISTORY,
    "rfm_scores": _ORDER_HISTORY,
    "rfm_snapshots": _ORDER_HISTORY,
    "product_buyers": _ORDER_HISTORY,
    "product_pairs": _ORDER_HISTORY,
    "product_pair_snapshots": _ORDER_HISTORY,
    # services/order_totals.py and the sales report's summaries (migration 0019).
    "order_month_totals": _ORDER_HISTORY,
    "deal_stage_totals": _DEALS,
    "deal_cohort_totals": _DEALS,
    "deal_close_totals": _DEALS,
    # The change feed's rows (migration 0022), beside the events services write.
    "events": frozenset(model.__tablename__ for model in sync.MODELS.values()),
}

_DIALECT = postgresql.dialect()
# Not ``ON CONFLICT ... DO UPDATE SET`` nor a row lock (``FOR [NO KEY] UPDATE``).
_WRITES = re.compile(
    r'\b(?:INSERT\s+INTO|(?<!FOR )(?<!KEY )UPDATE|DELETE\s+FROM)\s+(?!SET\b)"?(\w+)',
    re.IGNORECASE,
)
_READS = re.compile(r'\b(?:FROM|JOIN)\s+"?(\w+)', re.IGNORECASE)
_parsed: dict[tuple[bool, str], frozenset[str]] = {}


def _tables(pattern: re.Pattern[str], sql: str) -> frozenset[str]:
    key = (pattern is _WRITES, sql)
    found = _parsed.get(key)
    if found is None:
        found = frozenset(name.lower() for name in pattern.findall(sql))
        if len(_parsed) > 4096:
            _parsed.clear()
        _parsed[key] = found
    return found


def written_tables(sql: str) -> frozenset[str]:
    """The tables an SQL text writes (``INSERT INTO``, ``UPDATE``, ``DELETE FROM``)."""
    return _tables(_WRITES, sql)


def _sql(statement: Any) -> str:
    if isinstance(statement, TextClause):
        return statement.text
    return str(statement.compile(dialect=_DIALECT))


# The execution option naming every table a statement writes, for a statement whose
# writes are not all its own table's (data-modifying CTEs): set by ``writing``.
WRITES_OPTION = "crm_writes"


def writing(statement: Any) -> Any:
    """``statement`` telling this module every table it writes, its data-modifying CTEs'
    included (found once, in its SQL): for statements built once and run many times."""
    return statement.execution_options(**{WRITES_OPTION: written_tables(_sql(statement))})


def writes_of(statement: Any) -> frozenset[str]:
    """The tables ``statement`` writes: as ``writing`` declared them, else found in its SQL
    (compiled here: call it once per statement built once)."""
    declared = statement.get_execution_options().get(WRITES_OPTION)
    return frozenset(declared) if declared else written_tables(_sql(statement))


def wrote(session: Any, tables: frozenset[str]) -> None:
    """Record ``tables`` as written by the session's transaction, for a statement that ran
    on its connection without the session seeing it (``storage.bound.run``)."""
    if tables:
        session.info.setdefault(WRITTEN_KEY, set()).update(tables)


@sa_event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    info = state.session.info
    statement = state.statement
    declared = state.execution_options.get(WRITES_OPTION)
    if declared:
        wrote(state.session, declared)
    elif state.is_insert or state.is_update or state.is_delete:
        table = getattr(statement, "table", None)
        name = getattr(table, "name", None)
        if name is not None:
            info.setdefault(WRITTEN_KEY, set()).add(name)
            return
    if isinstance(statement, TextClause) and not state.is_select:
        written = written_tables(statement.text)
        if written:
            info.setdefault(WRITTEN_KEY, set()).update(written)
    reads = info.get(READ_KEY)
    if reads is not None:
        reads.update(_tables(_READS, _sql(statement)))


@sa_event.listens_for(Session, "after_flush")
def _on_flush(session: Session, _context: Any) -> None:
    written = session.info.setdefault(WRITTEN_KEY, set())
    for obj in chain(session.new, session.dirty, session.deleted):
        table = getattr(obj, "__table__", None)
        if table is not None:
            written.add(table.name)


@sa_event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(WRITTEN_KEY, None)


def take_written(session: Any) -> frozenset[str]:
    """The tables the transaction that just committed wrote (to announce after commit)."""
    return frozenset(session.info.pop(WRITTEN_KEY, ()))


def reading() -> dict[str, Any]:
    """The ``info`` of a session whose reads are collected (``read_by``)."""
    return {READ_KEY: set()}


def read_by(info: dict[str, Any]) -> frozenset[str]:
    """The tables read through sessions opened with this ``info``, each derived table
    standing for the tables it follows."""
    tables: set[str] = set()
    for name in info.get(READ_KEY, ()):
        tables.add(name)
        tables |= DERIVED.get(name, frozenset())
    return frozenset(tables)


def read_by_statement(sql: str) -> frozenset[str]:
    """The tables an SQL text reads (``FROM`` and ``JOIN``, as sessions note them), each
    derived table standing for the tables it follows: ``read_by`` of a statement sent
    without a session (a compiled read)."""
    return read_by({READ_KEY: _tables(_READS, sql)})


def affects(read: frozenset[str] | None, written: Iterable[str]) -> bool:
    """Whether a change to ``written`` may change a result that read ``read`` (None: not
    known, so any change may)."""
    return read is None or not read.isdisjoint(written)
