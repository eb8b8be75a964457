"""Loading, changing and archiving any workspace row the same way: tenant scope, version
check, audit row. Domain services call these instead of repeating them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from sqlalchemy import JSON, bindparam, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models.base import Archivable, WorkspaceScoped, load_json
from crm_graphql.services import audit
from crm_graphql.services.actor import Actor, in_workspace, scoped, workspace_condition
from crm_graphql.services.errors import Conflict, DomainError, Duplicate, Invalid, NotFound
from crm_graphql.services.policy import authorize_read

M = TypeVar("M", bound=WorkspaceScoped)


@runtime_checkable
class Versioned(Protocol):
    """A row that takes ``expectedVersion``: its ``version`` grows with every change."""

    version: int


def entity_name(model: type[Any]) -> str:
    return model.__name__


def not_found(model: type[Any], field: str = "id") -> NotFound:
    """The error of a row of ``model`` that is not there for the actor (absent, or of
    another workspace: a caller cannot tell them apart), on input ``field``."""
    return NotFound(f"{entity_name(model)} not found", field)


def check_version(row: Any, expected_version: int | None) -> None:
    """``Conflict`` unless the client's ``expectedVersion`` (when given) is the row's."""
    if expected_version is None:
        return
    if not isinstance(row, Versioned):
        raise TypeError(f"{entity_name(type(row))} has no version to check")
    if row.version != expected_version:
        raise Conflict(
            f"{entity_name(type(row))} was changed by someone else (version "
            f"{row.version}, expected {expected_version}); reload and retry"
        )


async def get(
    actor: Actor,
    session: AsyncSession,
    model: type[M],
    id: uuid.UUID | None,
    *,
    field: str = "id",
    for_update: bool = False,
) -> M:
    """The row with ``id`` in the actor's workspace, or ``NotFound`` (also for IDs of other
    workspaces: a caller cannot tell them from unknown ones)."""
    if id is None:
        raise not_found(model, field)
    authorize_read(actor, model)  # what ``scoped`` checks
    row = await session.scalar(
        _by_id_statement(model, for_update), {"workspace": actor.workspace_id, "id": id}
    )
    if row is None:
        raise not_found(model, field)
    return row


_by_id_statements: dict[tuple[type[Any], bool], Any] = {}


def _by_id_statement(model: type[M], for_update: bool) -> Any:
    """``scoped(model, actor).where(model.id == id)`` (without its read check) with the
    workspace and the id as parameters, built once per model: building and keying it per
    call cost more than running it (issue 14, point 4)."""
    found = _by_id_statements.get((model, for_update))
    if found is None:
        column = sa_inspect(model).columns["id"]
        found = select(model).where(
            workspace_condition(model), model.id == bindparam("id", type_=column.type)
        )
        if for_update:
            found = found.with_for_update()
        _by_id_statements[(model, for_update)] = found
    return found


async def referenced(
    actor: Actor, session: AsyncSession, model: type[M], id: uuid.UUID | None, *, field: str
) -> M:
    """The row an input field refers to, in the actor's workspace, or ``NotFound``; the
    caller's own permission covers using it (see ``actor.in_workspace``)."""
    row: M | None = None
    if id is not None:
        stmt = in_workspace(model, actor).where(model.id == id)
        row = await session.scalar(stmt)
    if row is None:
        raise not_found(model, field)
    return row


async def get_many(
    actor: Actor, session: AsyncSession, model: type[M], ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, M]:
    """Rows by id in the actor's workspace (missing ids are simply absent)."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    rows = await session.scalars(scoped(model, actor).where(model.id.in_(wanted)))
    return {row.id: row for row in rows}


# ----------------------------------------------------- loading on plain connections
# Renderings of live events load their rows by id on plain asyncpg connections (the hot
# path of real time, ``db.engine.make_read_pool``): the same rows as ``get_many``, built
# into detached objects without the ORM's per-statement work.


class PlainColumns:
    """``t.column AS key`` for every mapped column of a model, how to turn the values
    asyncpg returns into what the ORM would have loaded (enums, JSON), and the statement
    reading rows of the actor's workspace by id."""

    def __init__(self, model: type[Any]) -> None:
        self.model = model
        self.attrs: list[tuple[str, Any]] = []
        names = []
        for attr in sa_inspect(model).column_attrs:
            column = attr.columns[0]
            convert = getattr(column.type, "enum_class", None)
            if isinstance(column.type, JSON):
                convert = load_json  # what the engine decodes JSON columns with
            self.attrs.append((attr.key, convert))
            names.append(f"t.{column.name} AS {attr.key}")
        self.sql = ", ".join(names)
        self.by_id = (
            f"SELECT {self.sql} FROM {model.__tablename__} t "
            "WHERE t.workspace_id = $1 AND t.id = ANY($2::uuid[])"
        )

    def load(self, row: Any) -> Any:
        values = {}
        for key, convert in self.attrs:
            value = row[key]
            values[key] = convert(value) if convert is not None and value is not None else value
        return self.model(**values)


_plain_columns: dict[type[Any], PlainColumns] = {}


def plain_columns(model: type[Any]) -> PlainColumns:
    """The columns of ``model`` over the alias ``t`` (built once per model)."""
    found = _plain_columns.get(model)
    if found is None:
        found = _plain_columns[model] = PlainColumns(model)
    return found


async def fetch_many(
    actor: Actor, conn: Any, model: type[M], ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, M]:
    """``get_many`` on a plain asyncpg connection: rows by id in the actor's workspace,
    after the same read check, as detached objects."""
    authorize_read(actor, model)
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    columns = plain_columns(model)
    rows = await conn.fetch(columns.by_id, actor.workspace_id, wanted)
    return {row["id"]: columns.load(row) for row in rows}


async def get_for_change(
    actor: Actor,
    session: AsyncSession,
    model: type[M],
    id: uuid.UUID | None,
    expected_version: int | None,
) -> M:
    """Lock the row for this transaction and check the client's ``expectedVersion``."""
    row = await get(actor, session, model, id, for_update=True)
    check_version(row, expected_version)
    return row


def reference_statement(actor: Actor, model: type[Any], id: uuid.UUID) -> Any:
    """The id of the row ``id`` of ``model`` if it is of the actor's workspace: the check
    of a row an input refers to (``ensure_in_workspace``; the compiled read path runs it
    in its statement)."""
    return in_workspace(model, actor).with_only_columns(model.id).where(model.id == id)


async def ensure_in_workspace(
    actor: Actor,
    session: AsyncSession,
    references: Sequence[tuple[type[Any], uuid.UUID | None, str]],
) -> None:
    """Every referenced row (model, id, input field) must exist in the actor's workspace."""
    for model, id, field in references:
        if id is None:
            continue
        found = await session.scalar(reference_statement(actor, model, id))
        if found is None:
            raise not_found(model, field)


def apply(row: Any, changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        setattr(row, key, value)


async def create(actor: Actor, session: AsyncSession, row: M, *, action: str) -> M:
    """Insert a row of the actor's workspace with its audit entry."""
    row.workspace_id = actor.workspace_id
    session.add(row)
    await session.flush()
    audit.record(
        actor,
        session,
        action=action,
        entity_type=entity_name(type(row)),
        entity_id=row.id,
        after=audit.snapshot(row),
    )
    return row


async def update(
    actor: Actor, session: AsyncSession, row: M, changes: Mapping[str, Any], *, action: str
) -> M:
    """Apply ``changes`` to a locked row, bump its version and audit the difference."""
    before = audit.snapshot(row)
    apply(row, changes)
    await session.flush()
    after = audit.snapshot(row)
    audit.record(
        actor,
        session,
        action=action,
        entity_type=entity_name(type(row)),
        entity_id=row.id,
        before=before,
        after=after,
    )
    return row


async def archive(
    actor: Actor,
    session: AsyncSession,
    model: type[M],
    id: uuid.UUID | None,
    expected_version: int | None,
    *,
    action: str,
) -> M:
    """Hide a row from lists (it stays readable by ID and in history). Idempotent."""
    row = await get_for_change(actor, session, model, id, expected_version)
    assert isinstance(row, Archivable), f"{entity_name(model)} cannot be archived"
    if row.archived_at is None:
        await update(actor, session, row, {"archived_at": datetime.now(UTC)}, action=action)
    return row


MAX_UPSERT_RECORDS = 1000


@dataclass
class Upserted(Generic[M]):
    """What became of one record of a batch upsert: the row (None when the record
    failed), whether it was created, and why it failed."""

    row: M | None
    created: bool
    errors: list[DomainError]


async def upsert_each(
    session: AsyncSession,
    batch: Sequence[Mapping[str, Any] | DomainError],
    *,
    existing: Callable[[Mapping[str, Any]], Awaitable[uuid.UUID | None]],
    create: Callable[[Mapping[str, Any]], Awaitable[M]],
    update: Callable[[uuid.UUID, Mapping[str, Any]], Awaitable[M]],
) -> list[Upserted[M]]:
    """Up to ``MAX_UPSERT_RECORDS`` records, each created, or updated when ``existing``
    finds the row its key names, in a savepoint of its own: a record that fails (or an
    error given in its place) changes nothing and gets its errors; the others go on."""
    if not batch:
        raise Invalid("Give at least one record", "records")
    if len(batch) > MAX_UPSERT_RECORDS:
        raise Invalid(f"At most {MAX_UPSERT_RECORDS} records at a time", "records")
    results: list[Upserted[M]] = []
    for data in batch:
        try:
            async with session.begin_nested():
                if isinstance(data, DomainError):
                    raise data
                found = await existing(data)
                row = await (update(found, data) if found is not None else create(data))
            results.append(Upserted(row, found is None, []))
        except DomainError as error:
            results.append(Upserted(None, False, [error]))
        except IntegrityError:  # a concurrent writer took the key meanwhile
            taken = Duplicate("Another record of this workspace has these values")
            results.append(Upserted(None, False, [taken]))
    return results
