"""Write statements built once, with bound parameters, for the hot mutations (issue 14,
point 4): a statement whose values are literals is a new object per call, so SQLAlchemy
builds it, walks it for its cache key and coerces every value each time (about 0.4 ms a
statement here); one built once with ``bindparam``s keeps its cache key (memoised on the
object) and its compiled form, and asyncpg its prepared statement. The values still come
from the one function that makes each kind of row (``audit.values``,
``events.event_values``, a model's own attributes): these helpers only name them.

A parameter of column ``c`` under ``prefix`` is called ``<prefix>_<c.key>``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any

from sqlalchemy import String, Table, bindparam, cast, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter


def param(prefix: str, column: Any) -> BindParameter[Any]:
    """The parameter standing for ``column``'s value (typed as the column, so its value is
    converted as the ORM would: enums, JSON, UUIDs)."""
    return bindparam(f"{prefix}_{column.key}", type_=column.type)


def selected(prefix: str, column: Any) -> Any:
    """``param`` as a value of a SELECT list, which PostgreSQL reads as text unless cast
    (an INET column takes no text). Strings stay uncast: a cast to ``VARCHAR(n)``
    would cut a longer value where the INSERT refuses it."""
    value = param(prefix, column)
    return value if isinstance(column.type, String) else cast(value, column.type)


def insert_row(table: Table, prefix: str, names: Iterable[str], *, source: Any = None) -> Any:
    """``INSERT INTO table (names) SELECT <the parameters> [FROM source]``: one row of
    bound values, or none when ``source`` (a CTE of the statement) has no row; so rows
    that belong to another row are written only if that one was."""
    columns = [table.c[name] for name in names]
    values = select(*(selected(prefix, c) for c in columns))
    if source is not None:
        values = values.select_from(source)
    return insert(table).from_select([c.key for c in columns], values)


def params(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (column key to value) as the parameters of ``insert_row``."""
    return {f"{prefix}_{key}": value for key, value in values.items()}


async def alone(session: AsyncSession) -> None:
    """The transaction's only statement comes next: it runs in autocommit, without the
    BEGIN and COMMIT round trips around it (two of a one-statement mutation's three).
    A single statement is atomic by itself, and under READ COMMITTED it sees what it would
    see in a transaction of its own; the session still "commits" (announcing what the
    statement wrote), with nothing left to send. Call it before the session's first
    statement, and send one statement after it: a second would commit apart."""
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    sync = connection.sync_connection
    raw = sync.connection.dbapi_connection if sync is not None else None
    if not getattr(raw, "autocommit", False):
        raise RuntimeError("bound.alone must come before the transaction's first statement")


class _Plan:
    """A statement compiled once for ``run``: its SQL, the order and conversion of its
    parameters, and the names and conversion of its result's columns."""

    __slots__ = ("columns", "compiled", "names", "processors", "sql", "writes")

    def __init__(self, statement: Any, dialect: Any) -> None:
        from crm_graphql.services import changes  # services import storage, not at import

        compiled = statement.compile(dialect=dialect)
        self.writes = changes.writes_of(statement)
        self.sql: str = compiled.string
        self.names = tuple(compiled.positiontup or ())
        self.processors = compiled._bind_processors
        results = compiled._result_columns
        self.columns = tuple(
            (column.keyname, column.type._cached_result_processor(dialect, None))
            for column in results
        )
        self.compiled = compiled


_plans: dict[Any, _Plan] = {}


async def run(session: AsyncSession, statement: Any, params: Mapping[str, Any]) -> list[Any]:
    """Run a statement built once (``bindparam``s only) on the session's own asyncpg
    connection, in its transaction, and return its rows (attribute access, values
    converted as the ORM converts them: enums, JSON). Without the session's and engine's
    per-statement machinery: 0.40 ms of CPU for ``sendMessage``'s advance statement
    against 1.06 through ``session.execute`` (``bench.statement_cost``; decision 0038).

    What the session would have done is done here: the transaction is begun if this is
    its first statement, the engine's ``before_cursor_execute`` listeners hear it, the
    tables written are recorded (``changes.wrote``), a driver
    error is raised as SQLAlchemy's (``IntegrityError`` ...), and a lost connection is
    invalidated, as ``session.execute`` does. It reaches into SQLAlchemy's asyncpg adapter
    (its transaction, lock and error mapping: pyproject pins SQLAlchemy to 2.1), and
    ``tests/services/test_bound_run.py`` fails if those move. Only for statements built
    once: each gets a plan kept for the process's life."""
    from crm_graphql.services import changes

    connection = await session.connection()
    dialect = connection.dialect
    plan = _plans.get(statement)
    if plan is None:
        plan = _plans[statement] = _Plan(statement, dialect)
    values = plan.compiled.construct_params(dict(params))
    processors = plan.processors
    args = [
        processors[name](values[name]) if name in processors else values[name]
        for name in plan.names
    ]
    fairy = await connection.get_raw_connection()
    adapted: Any = fairy.dbapi_connection  # SQLAlchemy's adapter of the asyncpg connection
    sync = connection.sync_connection
    if sync is not None and (sync._has_events or sync.engine._has_events):
        # Listeners of the statements sent (a test counting round trips) still see it.
        sync.dispatch.before_cursor_execute(sync, None, plan.sql, args, None, False)
    try:
        async with adapted._execute_mutex:
            if adapted._transaction is None:
                await adapted._start_transaction()
            try:
                records = await adapted._connection.fetch(plan.sql, *args)
            except Exception as error:
                adapted._handle_exception(error)  # raises the DBAPI error it maps to
    except dialect.loaded_dbapi.Error as error:
        invalidated = dialect.is_disconnect(error, adapted, None)
        if invalidated:
            await connection.invalidate(error)
        raise DBAPIError.instance(
            plan.sql,
            args,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=invalidated,
            dialect=dialect,
        ) from error
    changes.wrote(session, plan.writes)
    columns = plan.columns
    return [
        SimpleNamespace(
            **{
                name: value if convert is None else convert(value)
                for (name, convert), value in zip(columns, record, strict=True)
            }
        )
        for record in records
    ]


async def first(session: AsyncSession, statement: Any, params: Mapping[str, Any]) -> Any:
    """``run``'s first row, or None when the statement returned none."""
    rows = await run(session, statement, params)
    return rows[0] if rows else None
