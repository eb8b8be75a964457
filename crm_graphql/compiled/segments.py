"""``segments`` on the compiled read path.

The page ``services.segments.plan_segment_page`` plans (the one definition
of which built-in segments a page shows, with their cursors, and which saved ones
follow), written as one statement. The built-in segments are the service's own constants
(``BUILT_INS``) written into the statement as literal rows, each attribute read from the
constant as the executed path reads it; the saved segments are the service's statement,
paged by the list's own keyset helpers."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING, Any

from graphql import FieldNode, GraphQLObjectType, SelectionSetNode, get_named_type
from sqlalchemy import and_
from sqlalchemy.dialects import postgresql
from strawberry.types.base import StrawberryObjectDefinition

from crm_graphql import models
from crm_graphql.db.engine import PlanCache
from crm_graphql.resolvers.arguments import filter_spec, order_spec
from crm_graphql.services import segments as segment_service
from crm_graphql.services.errors import DomainError
from crm_graphql.storage import querying

if TYPE_CHECKING:
    from crm_graphql.compiled.compiler import Compiler

# Attributes of a segment that are no column of a saved one (``models.Segment``'s
# properties, a built-in's fields): their SQL type.
_ATTRIBUTE_TYPES = {"built_in": "boolean", "rfm_segment": "text"}


def _object_type(gql_type: Any) -> GraphQLObjectType:
    named = get_named_type(gql_type)
    assert isinstance(named, GraphQLObjectType)
    return named


def _attributes(c: Compiler) -> dict[str, str]:
    """Attribute -> SQL type of what a ``Segment`` reads: its id, its owner and the fields
    that read an attribute as it is (no resolver)."""
    definition = c.schema.get_type_by_name("Segment")
    assert isinstance(definition, StrawberryObjectDefinition)
    plain = [f.python_name for f in definition.fields if f.base_resolver is None]
    names = ["id", "owner_id", *plain]
    table = models.Segment.__table__.columns
    dialect = postgresql.dialect()
    return {
        name: table[name].type.compile(dialect=dialect) if name in table else _ATTRIBUTE_TYPES[name]
        for name in names
    }


def _constant(value: Any, sql_type: str) -> str:
    """A Python attribute's value as an SQL literal of ``sql_type``."""
    from crm_graphql.compiled.compiler import Unsupported, _literal

    if value is None:
        return f"NULL::{sql_type}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return f"{_literal(str(value.value))}::{sql_type}"
    if isinstance(value, str | uuid.UUID):
        return f"{_literal(str(value))}::{sql_type}"
    if isinstance(value, int):
        return f"{value}::{sql_type}"
    raise Unsupported(f"a built-in segment's {type(value).__name__}")


def segments(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``resolvers.segments.segments``: built-in segments first, then saved ones."""
    from crm_graphql.compiled.compiler import Unsupported, _json_string, _literal

    args = c._arguments("Query", "segments", node)
    try:
        filter = filter_spec(args.get("filter"))
        plan = segment_service.plan_segment_page(
            c.actor,
            filter=filter,
            order=order_spec(args.get("order_by")),
            page=querying.PageRequest(
                first=args.get("first"),
                after=args.get("after"),
                max_size=c.settings.max_page_size,
                default_size=c.settings.default_page_size,
            ),
            include_archived=bool(args.get("include_archived")),
        )
        saved_values = None
        if plan.saved is not None and plan.saved.after is not None:
            saved_values = querying.decode_cursor(plan.keys, plan.saved.after, "after")
    except DomainError as error:
        raise Unsupported(f"the executed path answers an error: {error}") from error
    model = models.Segment
    c.state.models.add(model)
    if filter or plan.cursor is not None:
        c.state.plan(PlanCache.CUSTOM)
    attributes = _attributes(c)
    # No row, typed: the branches below follow it with UNION ALL.
    branches = [
        "SELECT NULL::bigint AS crm_rn, NULL::text AS crm_cursor, "
        + ", ".join(f'NULL::{t} AS "{name}"' for name, t in attributes.items())
        + " WHERE false"
    ]
    for number, (built_in, cursor) in enumerate(
        zip(plan.built_ins, plan.built_in_cursors, strict=True), start=1
    ):
        values = [_constant(getattr(built_in, name), t) for name, t in attributes.items()]
        branches.append(
            f"SELECT {number}::bigint, {_literal(_json_string(cursor))}, {', '.join(values)}"
        )
    table = model.__tablename__
    if plan.saved is not None:
        saved = c._alias()
        condition = plan.statement.whereclause
        assert condition is not None  # scoped: it always has a WHERE
        if saved_values is not None:
            condition = and_(condition, querying.after_condition(plan.keys, saved_values))
        where = c._sql(condition, model, saved)
        terms = querying.order_terms(plan.keys)
        order = ", ".join(c._sql(term, model, saved) for term in terms)
        # Attributes that are a saved segment's properties, not columns (``built_in``).
        row = model()
        stored = model.__table__.columns
        values = [
            f'{saved}."{name}"' if name in stored else _constant(getattr(row, name), t)
            for name, t in attributes.items()
        ]
        cursor_sql = c._cursor(plan.keys, lambda column: f'{saved}."{column}"')
        branches.append(
            f"SELECT {len(plan.built_ins)} + row_number() OVER (ORDER BY {order}), "
            f"{cursor_sql}, {', '.join(values)} FROM (SELECT * FROM {table} {saved} "
            f"WHERE {where} ORDER BY {order} LIMIT {plan.remaining + 1}) {saved}"
        )
    r = c._alias()
    size = plan.size
    page = f"{r}.crm_rn <= {size}"
    connection_type = _object_type(gql_type)
    segment_type = _object_type(c.gschema.get_type("Segment"))
    plain = {
        c.schema.config.name_converter.get_graphql_name(f): f.python_name
        for f in c.schema.get_type_by_name("Segment").fields  # type: ignore[union-attr]
        if f.base_resolver is None
    }

    def segment(name: str, nodes: list[FieldNode]) -> str:
        if name == "id":
            return c._global_id("Segment", r)
        if name == "owner":
            return c._by_id("User", f"{r}.owner_id", c._subselections(nodes))
        if name in plain and not nodes[0].arguments:
            return c._value(segment_type.fields[name].type, f'{r}."{plain[name]}"')
        # ``customers`` (a saved segment's stored filter is parsed in Python) and
        # ``drillDown``: decision 0006.
        raise Unsupported(f"Segment.{name}")

    def items(item: str) -> str:
        return (
            f"'[' || coalesce(string_agg({item}, ',' ORDER BY {r}.crm_rn) "
            f"FILTER (WHERE {page}), '') || ']'"
        )

    def boundary(direction: str) -> str:
        return (
            f"CASE WHEN count(*) FILTER (WHERE {page}) = 0 THEN 'null' ELSE (array_agg("
            f"{r}.crm_cursor ORDER BY {r}.crm_rn {direction}) FILTER (WHERE {page}))[1] END"
        )

    if plan.more:
        more = "'true'"
    elif plan.saved is not None:
        more = f"CASE WHEN count(*) > {size} THEN 'true' ELSE 'false' END"
    else:
        more = "'false'"

    def page_info(name: str, nodes: list[FieldNode]) -> str:
        if name == "hasNextPage":
            return more
        if name == "hasPreviousPage":
            return "'true'" if plan.cursor is not None else "'false'"
        if name == "startCursor":
            return boundary("ASC")
        if name == "endCursor":
            return boundary("DESC")
        raise Unsupported(f"PageInfo.{name}")

    def edge(name: str, nodes: list[FieldNode]) -> str:
        if name == "cursor":
            return f"{r}.crm_cursor"
        if name == "node":
            return c._json_object(segment_type, c._subselections(nodes), segment)
        raise Unsupported(f"SegmentEdge.{name}")

    def value(name: str, nodes: list[FieldNode]) -> str:
        subselections = c._subselections(nodes)
        field_type = connection_type.fields[name].type
        if name == "edges":
            return items(c._json_object(_object_type(field_type), subselections, edge))
        if name == "nodes":
            return items(c._json_object(segment_type, subselections, segment))
        if name == "pageInfo":
            return c._json_object(_object_type(field_type), subselections, page_info)
        if name == "totalCount":
            total = str(plan.listed_built_ins)
            if plan.show_saved:
                counted = c._alias()
                assert plan.statement.whereclause is not None
                where = c._sql(plan.statement.whereclause, model, counted)
                total += f" + (SELECT count(*) FROM {table} {counted} WHERE {where})"
            return f"({total})::text"
        raise Unsupported(f"{connection_type.name}.{name}")

    body = c._json_object(connection_type, selection_sets, value)
    return f"(SELECT {body} FROM ({' UNION ALL '.join(branches)}) {r} GROUP BY ())"
