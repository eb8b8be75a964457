"""Typed filters, multi-field ordering and keyset pagination for every list.

A filter is a plain mapping: ``{"and": [...], "or": [...], "not": {...}, field: {op: value}}``
with snake_case operator names (``eq, ne, in, not_in, contains, starts_with, gt, gte, lt,
lte, is_null, any_of``). Lists never use OFFSET: a cursor carries the values of the sort
key of the row it points at, and the next page starts strictly after them.
"""

from __future__ import annotations

import base64
import binascii
import enum
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Generic, Protocol, TypeVar

import orjson
from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Select,
    SmallInteger,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped, aliased, declared_attr

from crm_graphql.models.base import Archivable
from crm_graphql.services import fields
from crm_graphql.services.errors import Invalid

M = TypeVar("M")


class Row(Protocol):
    """A listed model: a workspace's rows (``workspace_id`` scopes the list) with a
    primary key ``id`` (the keyset's last sort key)."""

    # Declared so that, on the class, each is the column (``WorkspaceScoped``'s way).
    @declared_attr
    def id(cls) -> Mapped[Any]: ...

    @declared_attr
    def workspace_id(cls) -> Mapped[uuid.UUID]: ...


R = TypeVar("R", bound=Row)
FilterSpec = Mapping[str, Any]

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY term: the column, its direction, and where NULLs go. Lists put NULLs
    last in both directions (a client sorting by "last activity, newest first" wants
    customers without activity at the end); a reversed key (backward paging) flips both."""

    column: Any
    descending: bool = False
    nulls_first: bool = False
    # A key computed from the row (a custom field): its name in cursors and how to read
    # its value from a loaded row, as the SQL expression ``column`` computes it.
    name: str | None = None
    read: Callable[[Any], Any] | None = field(default=None, compare=False)

    @property
    def nullable(self) -> bool:
        column = getattr(self.column, "expression", self.column)
        return bool(getattr(column, "nullable", True))

    def reversed(self) -> SortKey:
        return SortKey(self.column, not self.descending, not self.nulls_first, self.name, self.read)

    def term(self) -> Any:
        term = self.column.desc() if self.descending else self.column.asc()
        if not self.nullable:  # no NULLS clause: keeps plain index scans usable
            return term
        return term.nulls_first() if self.nulls_first else term.nulls_last()


@dataclass
class Page(Generic[M]):
    """One page of a list: rows, their cursors, and how to count the whole list."""

    items: list[M]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    count_statement: Select[Any] | None = None


@dataclass(frozen=True)
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None
    max_size: int = MAX_PAGE_SIZE
    default_size: int = DEFAULT_PAGE_SIZE

    def validated(self) -> tuple[int, bool, str | None]:
        """(size, forward, cursor), or ``Invalid`` for out-of-range or mixed arguments."""
        for name, value in (("first", self.first), ("last", self.last)):
            if value is not None and not 0 <= value <= self.max_size:
                raise Invalid(f"`{name}` must be between 0 and {self.max_size}", name)
        if self.first is not None and self.last is not None:
            raise Invalid("Pass either `first` or `last`, not both", "last")
        if self.last is not None or (self.before is not None and self.first is None):
            if self.after is not None:
                raise Invalid("`after` goes with `first`, `before` with `last`", "after")
            size = self.last if self.last is not None else self.default_size
            return size, False, self.before
        if self.before is not None:
            raise Invalid("`before` goes with `last`, `after` with `first`", "before")
        size = self.first if self.first is not None else self.default_size
        return size, True, self.after


# ---------------------------------------------------------------------------- filters


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _is_array(column: Any) -> bool:
    return isinstance(getattr(column, "type", None), ARRAY)


def _operand(column: Any, value: Any, field_name: str) -> Any:
    """A filter value the database can compare with ``column``: dates and times in the
    accepted range, decimals finite and within the column's precision (rounded to its
    scale, as PostgreSQL's cast would), else ``Invalid`` naming the field."""
    if isinstance(value, list | tuple):
        return [_operand(column, item, field_name) for item in value]
    name = camel_case(field_name)
    if isinstance(value, datetime):
        fields.instant(value, name)
    elif isinstance(value, date):
        fields.calendar_date(value, name)
    elif isinstance(value, Decimal):
        return _decimal_operand(column, value, name)
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and isinstance(getattr(column, "type", None), SmallInteger)
        and not -(2**15) <= value < 2**15
    ):  # a GraphQL Int is 32 bits; the driver cannot send it as a small integer
        raise Invalid(f"`{name}` must be between {-(2**15)} and {2**15 - 1}", name)
    return value


def _decimal_operand(column: Any, value: Decimal, field_name: str) -> Decimal:
    precision = getattr(column.type, "precision", None)
    scale = getattr(column.type, "scale", None) or 0
    if not value.is_finite():
        raise Invalid(f"`{field_name}` must be a finite number", field_name)
    if precision is None:
        return value
    whole = precision - scale
    largest = Decimal(10) ** whole - Decimal(1).scaleb(-scale)
    if value.adjusted() < whole:
        value = value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        if abs(value) <= largest:
            return value
    raise Invalid(f"`{field_name}` must be between -{largest} and {largest}", field_name)


def camel_case(name: str) -> str:
    """A field's name as clients write it (``expected_close_date`` -> ``expectedCloseDate``)."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _operator(column: Any, op: str, value: Any, field_name: str) -> ColumnElement[bool]:
    if op == "is_null":
        return column.is_(None) if value else column.is_not(None)
    if value is None:
        raise Invalid(f"`{op}` needs a value", field_name)
    value = _operand(column, value, field_name)
    if _is_array(column):
        if op == "contains":  # every given tag is present
            return column.contains(list(value) if isinstance(value, list | tuple) else [value])
        if op == "any_of":
            return column.overlap(list(value))
        if op == "eq":
            return column == list(value)
        raise Invalid(f"`{op}` is not supported on {field_name}", field_name)
    if op == "eq":
        return column == value
    if op == "ne":
        return or_(column != value, column.is_(None))
    if op == "in":
        return column.in_(list(value)) if value else false()
    if op == "not_in":
        return or_(column.not_in(list(value)), column.is_(None)) if value else true()
    if op == "contains":
        return column.ilike(f"%{_like_escape(str(value))}%", escape="\\")
    if op == "starts_with":
        return column.ilike(f"{_like_escape(str(value))}%", escape="\\")
    if op == "gt":
        return column > value
    if op == "gte":
        return column >= value
    if op == "lt":
        return column < value
    if op == "lte":
        return column <= value
    raise Invalid(f"Unknown operator `{op}`", field_name)


def operators_condition(
    column: Any, ops: Mapping[str, Any], field_name: str
) -> ColumnElement[bool]:
    """Every operator of one filter field (``{"gte": a, "lt": b}``) on ``column``, ANDed."""
    return and_(
        true(),
        *(
            _operator(column, op, operand, field_name)
            for op, operand in ops.items()
            if operand is not None or op == "is_null"
        ),
    )


@dataclass(frozen=True)
class Predicate:
    """A filter field that is not a column: its condition is built from all of the field's
    operators at once (``ordered_at: {gte, lt}`` is "has one order placed in that range",
    not one order after ``gte`` and maybe another before ``lt``)."""

    build: Callable[[Mapping[str, Any], str], ColumnElement[bool]]
    # Its SQL refers to the listed row only as ``<table>.id`` and reads every other table
    # under a name of its own, so the compiled path may rename the list's table onto an
    # alias in it (``compiled.compiler``); otherwise such a filter takes the executed path.
    compiles: bool = False


# A list's custom fields (``services.custom_fields``): the filter key ``custom_fields`` holds
# a list of terms ``{"key": ..., op: value}``; an order name ``custom_fields.<key>`` sorts
# by one field. Both need the workspace's definitions, loaded once per list read.
CUSTOM_FIELDS = "custom_fields"
CUSTOM_ORDER_PREFIX = "custom_fields."


class CustomTermsNotLoaded(RuntimeError):
    """A programming error: a list statement was built for a filter that names custom
    fields without the workspace's definitions (``ListSpec.custom_terms``). Use
    ``ListSpec.filtered`` (or pass ``custom=``): the user's filter is not at fault."""


class CustomFieldTerms(Protocol):
    """The custom-field definitions of one workspace and entity, as SQL."""

    def condition(self, term: Mapping[str, Any]) -> ColumnElement[bool]: ...

    def sort_key(self, key: str, descending: bool) -> SortKey: ...


def uses_custom_fields(
    spec: FilterSpec | None, order: Sequence[tuple[str, bool]] | None = None
) -> bool:
    """Does this filter or order name a custom field (at any depth of and/or/not)?"""
    if any(name.startswith(CUSTOM_ORDER_PREFIX) for name, _ in order or ()):
        return True
    stack: list[Any] = [spec]
    while stack:
        current = stack.pop()
        if not isinstance(current, Mapping):
            continue
        if current.get(CUSTOM_FIELDS):
            return True
        stack.extend(current.get("and") or ())
        stack.extend(current.get("or") or ())
        stack.append(current.get("not"))
    return False


def filter_condition(
    spec: FilterSpec | None,
    fields: Mapping[str, Any],
    custom: CustomFieldTerms | None = None,
) -> ColumnElement[bool]:
    """Translate a filter mapping into one SQL condition over ``fields`` (name -> column)
    and, for ``custom_fields`` terms, the list's custom-field definitions."""
    if not spec:
        return true()
    terms: list[ColumnElement[bool]] = []
    for key, value in spec.items():
        if value is None:
            continue
        if key == "and":
            terms.extend(filter_condition(sub, fields, custom) for sub in value)
        elif key == "or":
            terms.append(
                or_(*(filter_condition(sub, fields, custom) for sub in value)) if value else false()
            )
        elif key == "not":
            terms.append(not_(filter_condition(value, fields, custom)))
        elif key == CUSTOM_FIELDS:
            if custom is None:
                raise Invalid("This list has no custom fields to filter by", "customFields")
            terms.extend(custom.condition(term) for term in value)
        elif key in fields:
            column = fields[key]
            if isinstance(column, Predicate):
                terms.append(
                    column.build(value if isinstance(value, Mapping) else {"eq": value}, key)
                )
            elif isinstance(value, Mapping):
                terms.extend(
                    _operator(column, op, operand, key)
                    for op, operand in value.items()
                    if operand is not None or op == "is_null"
                )
            else:
                terms.append(column == _operand(column, value, key))
        else:
            raise Invalid(f"Unknown filter field `{key}`", key)
    return and_(true(), *terms)


# ----------------------------------------------------------------------- keyset cursors


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return fields.stored_instant(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def python_type(column: Any) -> type | None:
    try:
        return column.type.python_type
    except (NotImplementedError, AttributeError):
        return None


# How asyncpg reads PostgreSQL's -infinity and infinity (and writes these values back as
# them): a cursor of such a row must lead back to it.
_DRIVER_INFINITIES = {datetime.min.replace(tzinfo=UTC): datetime.min}
_DRIVER_INFINITIES[datetime.max.replace(tzinfo=UTC)] = datetime.max


def _decode_value(column: Any, raw: Any) -> Any:
    """A cursor's value for ``column``, of the column's type (``ValueError`` otherwise:
    a cursor is client input)."""
    if raw is None:
        return None
    kind = python_type(column)
    if kind is int:
        bits = 64 if isinstance(column.type, BigInteger) else 32
        if isinstance(raw, bool) or not isinstance(raw, int) or not -(2**bits) <= 2 * raw < 2**bits:
            raise ValueError("not a whole number of the column")
        return raw
    if kind is bool:
        if not isinstance(raw, bool):
            raise ValueError("not a boolean")
        return raw
    if not isinstance(raw, str) or "\x00" in raw:
        raise ValueError("not a text")
    if kind is datetime:
        value = fields.stored_instant(datetime.fromisoformat(raw)).astimezone(UTC)
        return _DRIVER_INFINITIES.get(value, value)
    if kind is date:
        return date.fromisoformat(raw)
    if kind is Decimal:
        return _decimal_operand(column, Decimal(raw), "cursor")
    if kind is uuid.UUID:
        return uuid.UUID(raw)
    if kind is not None and issubclass(kind, enum.Enum):
        return kind(raw)
    return raw


def cursor_signature(keys: Sequence[SortKey]) -> str:
    return ",".join(
        f"{k.name or getattr(k.column, 'key', str(k.column))}{'-' if k.descending else '+'}"
        for k in keys
    )


def encode_cursor(keys: Sequence[SortKey], values: Sequence[Any]) -> str:
    raw = orjson.dumps({"s": cursor_signature(keys), "v": [_encode_value(v) for v in values]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(keys: Sequence[SortKey], cursor: str, field_name: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or not isinstance(data.get("v"), list):
            raise ValueError("not a cursor")
        if data.get("s") != cursor_signature(keys) or len(data["v"]) != len(keys):
            raise ValueError("cursor of another ordering")
        return [_decode_value(k.column, v) for k, v in zip(keys, data["v"], strict=True)]
    except (
        ValueError,
        KeyError,
        TypeError,
        OverflowError,
        InvalidOperation,
        Invalid,
        binascii.Error,
        orjson.JSONDecodeError,
    ) as exc:
        raise Invalid(
            "Invalid cursor: pass a cursor returned by this list with the same orderBy",
            field_name,
        ) from exc


def after_condition(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order of ``keys``, NULLs placed as each key
    says."""
    clauses: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for key, value in zip(keys, values, strict=True):
        col = key.column
        if value is None:
            beyond = col.is_not(None) if key.nulls_first else false()
            same = col.is_(None)
        else:
            beyond = (col < value) if key.descending else (col > value)
            if key.nullable and not key.nulls_first:
                beyond = or_(beyond, col.is_(None))
            same = col == value
        clauses.append(and_(*equal, beyond))
        equal.append(same)
    return or_(*clauses)


def order_terms(keys: Sequence[SortKey]) -> list[Any]:
    return [key.term() for key in keys]


def sort_keys(
    order: Sequence[tuple[str, bool]] | None,
    fields: Mapping[str, Any],
    default: Sequence[tuple[str, bool]],
    id_column: Any,
    custom: CustomFieldTerms | None = None,
) -> list[SortKey]:
    """Resolve ``[(field, descending)]`` against the allowed sort fields (and the list's
    custom fields) and append the primary key as the tie-breaker every keyset needs."""
    chosen = list(order) if order else list(default)
    keys: list[SortKey] = []
    seen: set[str] = set()
    for name, descending in chosen:
        if name.startswith(CUSTOM_ORDER_PREFIX):
            if name in seen:
                raise Invalid(f"`{name}` appears twice in orderBy", "orderBy")
            seen.add(name)
            if custom is None:
                raise Invalid("This list has no custom fields to order by", "orderBy")
            keys.append(custom.sort_key(name[len(CUSTOM_ORDER_PREFIX) :], descending))
            continue
        if name not in fields:
            raise Invalid(f"Cannot order by `{name}`", "orderBy")
        if name in seen:
            raise Invalid(f"`{name}` appears twice in orderBy", "orderBy")
        seen.add(name)
        keys.append(SortKey(fields[name], descending))
    if "id" not in seen:
        keys.append(SortKey(id_column, keys[-1].descending if keys else False))
    return keys


def _row_values(row: Any, keys: Sequence[SortKey]) -> list[Any]:
    return [k.read(row) if k.read is not None else getattr(row, k.column.key) for k in keys]


async def paginate(
    session: AsyncSession,
    statement: Select[M],
    keys: Sequence[SortKey],
    request: PageRequest,
) -> Page[M]:
    """Fetch one page of ``statement`` (already scoped and filtered) by keyset."""
    size, forward, cursor = request.validated()
    count_statement = select(func.count()).select_from(statement.order_by(None).subquery())
    effective = list(keys) if forward else [k.reversed() for k in keys]
    stmt = statement
    if cursor is not None:
        values = decode_cursor(keys, cursor, "after" if forward else "before")
        stmt = stmt.where(after_condition(effective, values))
    stmt = stmt.order_by(*order_terms(effective)).limit(size + 1)
    rows = list((await session.scalars(stmt)).all()) if size > 0 else []
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    cursors = [encode_cursor(keys, _row_values(r, keys)) for r in rows]
    return Page(
        items=rows,
        cursors=cursors,
        has_next_page=more if forward else cursor is not None,
        has_previous_page=cursor is not None if forward else more,
        count_statement=count_statement,
    )


async def paginate_many(
    session: AsyncSession,
    model: type[M],
    statements: Sequence[Select[M]],
    keys: Sequence[SortKey],
    request: PageRequest,
) -> list[Page[M]]:
    """``paginate`` for several statements of one model at once (the same ordering and
    paging): one ``UNION ALL`` statement, so N lists with filters of their own (segments)
    cost one statement, not N."""
    size, forward, cursor = request.validated()
    effective = list(keys) if forward else [k.reversed() for k in keys]
    values = decode_cursor(keys, cursor, "after" if forward else "before") if cursor else None
    branches = []
    for index, statement in enumerate(statements):
        stmt = statement
        if values is not None:
            stmt = stmt.where(after_condition(effective, values))
        rank = func.row_number().over(order_by=order_terms(effective))
        stmt = stmt.add_columns(literal(index).label("_list"), rank.label("_rank"))
        branches.append(stmt.order_by(*order_terms(effective)).limit(size + 1))
    grouped: list[list[M]] = [[] for _ in statements]
    if size > 0 and branches:
        sub = union_all(*branches).subquery()
        row = aliased(model, sub)
        ordered = select(row, sub.c._list).order_by(sub.c._list, sub.c._rank)
        for item, index in (await session.execute(ordered)).all():
            grouped[index].append(item)
    pages: list[Page[M]] = []
    for statement, rows in zip(statements, grouped, strict=True):
        more = len(rows) > size
        rows = rows[:size]
        if not forward:
            rows.reverse()
        pages.append(
            Page(
                items=rows,
                cursors=[encode_cursor(keys, _row_values(r, keys)) for r in rows],
                has_next_page=more if forward else cursor is not None,
                has_previous_page=cursor is not None if forward else more,
                count_statement=select(func.count()).select_from(
                    statement.order_by(None).subquery()
                ),
            )
        )
    return pages


async def count_many(session: AsyncSession, statements: Sequence[Select[Any]]) -> list[int]:
    """``totalCount`` of several lists in one statement."""
    if not statements:
        return []
    counts = [
        select(literal(i).label("_list"), func.count().label("n")).select_from(
            s.order_by(None).subquery()
        )
        for i, s in enumerate(statements)
    ]
    found = {i: n for i, n in (await session.execute(union_all(*counts))).all()}
    return [int(found.get(i, 0)) for i in range(len(statements))]


async def count(session: AsyncSession, statement: Select[Any]) -> int:
    """Run a count statement prepared by ``paginate`` (``totalCount`` is computed only when
    a client asks for it)."""
    return int((await session.execute(statement)).scalar_one())


@dataclass
class ParentPages(Generic[M]):
    """Pages of one child list for many parents, fetched in one statement."""

    pages: dict[Any, Page[M]] = field(default_factory=dict)


async def paginate_per_parent(
    session: AsyncSession,
    model: type[M],
    statement: Select[M],
    parent_column: InstrumentedAttribute[Any],
    parent_ids: Sequence[Any],
    keys: Sequence[SortKey],
    request: PageRequest,
) -> dict[Any, Page[M]]:
    """The first page of a child list for every parent at once: one statement with
    ``row_number() OVER (PARTITION BY parent)``, so nested lists cost the same SQL for 10
    parents as for 100."""
    size, forward, cursor = request.validated()
    if not forward:
        raise Invalid("Nested lists page forward only: use `first` and `after`", "last")
    stmt = statement.where(parent_column.in_(list(parent_ids)))
    if cursor is not None:
        stmt = stmt.where(after_condition(keys, decode_cursor(keys, cursor, "after")))
    rank = func.row_number().over(partition_by=parent_column, order_by=order_terms(keys))
    sub = stmt.add_columns(rank.label("_rank")).subquery()
    row = aliased(model, sub)
    rows = (
        (
            await session.execute(
                select(row)
                .where(sub.c._rank <= size + 1)
                .order_by(sub.c[parent_column.key], sub.c._rank)
            )
        )
        .scalars()
        .all()
    )
    grouped: dict[Any, list[M]] = {pid: [] for pid in parent_ids}
    for item in rows:
        grouped.setdefault(getattr(item, parent_column.key), []).append(item)
    pages: dict[Any, Page[M]] = {}
    for pid, items in grouped.items():
        more = len(items) > size
        items = items[:size]
        pages[pid] = Page(
            items=items,
            cursors=[encode_cursor(keys, _row_values(r, keys)) for r in items],
            has_next_page=more,
            has_previous_page=cursor is not None,
        )
    return pages


async def count_per_parent(
    session: AsyncSession,
    statement: Select[Any],
    parent_column: InstrumentedAttribute[Any],
    parent_ids: Sequence[Any],
) -> dict[Any, int]:
    """``totalCount`` of a nested list for many parents in one grouped statement."""
    sub = statement.where(parent_column.in_(list(parent_ids))).order_by(None).subquery()
    rows = await session.execute(
        select(sub.c[parent_column.key], func.count()).group_by(sub.c[parent_column.key])
    )
    counts = {pid: 0 for pid in parent_ids}
    counts.update({pid: int(n) for pid, n in rows.all()})
    return counts


# ------------------------------------------------------------------ one spec per list


@dataclass(frozen=True)
class ListSpec(Generic[R]):
    """What a list of one model may be filtered, ordered and nested by."""

    model: type[R]
    filter_fields: Mapping[str, Any]
    order_fields: Mapping[str, Any]
    default_order: Sequence[tuple[str, bool]]
    parent_fields: Mapping[str, Any] = field(default_factory=dict)
    archivable: bool = True
    # Row visibility finer than the workspace (private conversations): a condition built
    # for the actor, applied to every statement of the list, nested ones included.
    extra_condition: Callable[[Any], ColumnElement[bool]] | None = None
    # Filter fields whose SQL depends on the actor (a conversation's `unread` for the
    # caller), merged over ``filter_fields``.
    actor_filter_fields: Callable[[Any], Mapping[str, Any]] | None = None
    # Typed custom fields (``services.custom_fields.terms_loader``): loads the actor's
    # workspace's definitions for this list, when a filter or order names one.
    custom_fields: Callable[[Any, AsyncSession], Awaitable[CustomFieldTerms]] | None = None
    # Work a read of these filters needs done before its statement runs (customers: the
    # RFM snapshot made current when a filter reads the scores).
    prepare_filters: (
        Callable[[Any, AsyncSession, Sequence[FilterSpec | None]], Awaitable[None]] | None
    ) = None

    def __post_init__(self) -> None:
        if self.archivable and not issubclass(self.model, Archivable):
            raise TypeError(f"{self.model.__name__} has no archived_at: not archivable")

    def statement(
        self,
        actor: Any,
        filter: FilterSpec | None = None,
        *,
        include_archived: bool = False,
        custom: CustomFieldTerms | None = None,
    ) -> Select[R]:
        """Scoped to the actor's workspace (after the model's read check), limited to the rows the
        actor may see, filtered, archived rows hidden unless asked for.

        A filter naming custom fields needs ``custom`` (``custom_terms``): without it this
        raises ``CustomTermsNotLoaded``, a programming error. ``filtered`` loads them."""
        from crm_graphql.services.actor import scoped

        if custom is None and self.custom_fields is not None and uses_custom_fields(filter):
            raise CustomTermsNotLoaded(
                f"{self.model.__name__} filter names custom fields: build it with "
                "ListSpec.filtered (or pass custom=ListSpec.custom_terms(...))"
            )

        fields = self.filter_fields
        if self.actor_filter_fields is not None:
            fields = {**fields, **self.actor_filter_fields(actor)}
        stmt = scoped(self.model, actor).where(filter_condition(filter, fields, custom))
        if self.extra_condition is not None:
            stmt = stmt.where(self.extra_condition(actor))
        if self.archivable and not include_archived and issubclass(self.model, Archivable):
            stmt = stmt.where(self.model.archived_at.is_(None))
        return stmt

    def keys(
        self, order: Sequence[tuple[str, bool]] | None, custom: CustomFieldTerms | None = None
    ) -> list[SortKey]:
        return sort_keys(order, self.order_fields, self.default_order, self.model.id, custom)

    async def custom_terms(
        self,
        actor: Any,
        session: AsyncSession,
        filter: FilterSpec | None,
        order: Sequence[tuple[str, bool]] | None = None,
    ) -> CustomFieldTerms | None:
        """The list's custom-field definitions when this filter or order needs them (one
        statement), else None."""
        return await self.custom_terms_many(actor, session, [filter], order)

    async def custom_terms_many(
        self,
        actor: Any,
        session: AsyncSession,
        filters: Sequence[FilterSpec | None],
        order: Sequence[tuple[str, bool]] | None = None,
    ) -> CustomFieldTerms | None:
        """``custom_terms`` for many statements of the list at once (a batch of segments'
        members): loaded once when any of the filters or the order needs them. Every read
        of the list goes through here first, so it also runs ``prepare_filters``."""
        if self.prepare_filters is not None:
            await self.prepare_filters(actor, session, filters)
        if self.custom_fields is None:
            return None
        if not uses_custom_fields(None, order) and not any(uses_custom_fields(f) for f in filters):
            return None
        return await self.custom_fields(actor, session)

    async def filtered(
        self,
        actor: Any,
        session: AsyncSession,
        filter: FilterSpec | None = None,
        *,
        include_archived: bool = False,
    ) -> Select[R]:
        """``statement`` with the custom-field definitions the filter needs loaded first
        (one more statement, only when the filter names a custom field): what every read
        of this list builds on (aggregates, reports, segments ...)."""
        custom = await self.custom_terms(actor, session, filter)
        return self.statement(actor, filter, include_archived=include_archived, custom=custom)

    def parent_column(self, parent: str) -> Any:
        if parent not in self.parent_fields:
            raise ValueError(f"{self.model.__name__} cannot be listed by {parent}")
        return self.parent_fields[parent]


async def list_page(
    actor: Any,
    session: AsyncSession,
    spec: ListSpec[R],
    *,
    filter: FilterSpec | None = None,
    order: Sequence[tuple[str, bool]] | None = None,
    page: PageRequest,
    include_archived: bool = False,
) -> Page[R]:
    """One page of a root list (``customers``, ``deals`` ...)."""
    custom = await spec.custom_terms(actor, session, filter, order)
    stmt = spec.statement(actor, filter, include_archived=include_archived, custom=custom)
    return await paginate(session, stmt, spec.keys(order, custom), page)


async def pages_by_parent(
    actor: Any,
    session: AsyncSession,
    spec: ListSpec[R],
    parent: str,
    parent_ids: Sequence[Any],
    *,
    filter: FilterSpec | None = None,
    order: Sequence[tuple[str, bool]] | None = None,
    page: PageRequest,
) -> dict[Any, Page[R]]:
    """First pages of a nested list (a customer's deals ...) for many parents at once."""
    custom = await spec.custom_terms(actor, session, filter, order)
    stmt = spec.statement(actor, filter, custom=custom)
    keys = spec.keys(order, custom)
    return await paginate_per_parent(
        session, spec.model, stmt, spec.parent_column(parent), parent_ids, keys, page
    )


async def counts_by_parent(
    actor: Any,
    session: AsyncSession,
    spec: ListSpec[R],
    parent: str,
    parent_ids: Sequence[Any],
    *,
    filter: FilterSpec | None = None,
) -> dict[Any, int]:
    """``totalCount`` of a nested list for many parents at once."""
    stmt = await spec.filtered(actor, session, filter)
    return await count_per_parent(session, stmt, spec.parent_column(parent), parent_ids)
