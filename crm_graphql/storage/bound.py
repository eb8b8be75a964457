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
from typing import Any

from sqlalchemy import String, Table, bindparam, cast, insert, select
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
