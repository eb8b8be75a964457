"""``segments`` and ``customerCohorts`` on the compiled read path.

``segments``: the page ``services.segments.plan_segment_page`` plans (the one definition
of which built-in segments a page shows, with their cursors, and which saved ones
follow), written as one statement. The built-in segments are the service's own constants
(``BUILT_INS``) written into the statement as literal rows, each attribute read from the
constant as the executed path reads it; the saved segments are the service's statement,
paged by the list's own keyset helpers.

``customerCohorts``: ``rfm.cohort_counts_statement``, the statement ``rfm.cohorts``
reads, with each cohort's cells and drill-downs assembled in PostgreSQL."""

from __future__ import annotations

import enum
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson
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


# Stands for a saved segment's own filter in the drill-down the resolver builds from it.
_OWN = {"crm:own": True}


def _drill_down(
    c: Compiler,
    row: str,
    built_ins: list[segment_service.BuiltInSegment],
    caller: Any,
    segment_type: GraphQLObjectType,
    nodes: list[FieldNode],
) -> str:
    """``resolvers.segments.segment_drill_down`` of the row within the caller's filter.
    The resolver itself builds every answer here, in Python: for each built-in segment
    of the page, and for a saved segment once with an empty filter and once with a
    marker where its own (non-empty) filter goes, which the statement replaces with the
    stored filter."""
    from crm_graphql.compiled.compiler import Unsupported, _json_string, _literal, _unrepresentable
    from crm_graphql.resolvers.segments import segment_drill_down

    drill_type = _object_type(segment_type.fields["drillDown"].type)
    # The filters are JSON values written with PostgreSQL's spacing: re-encoded once.
    c.state.reencode = True

    def drill(list_sql: str, filter_sql: str) -> str:
        def part(name: str, _: list[FieldNode]) -> str:
            if name == "list":
                return list_sql
            if name == "filter":
                return filter_sql
            raise Unsupported(f"DrillDown.{name}")

        return c._json_object(drill_type, c._subselections(nodes), part)

    def answer(root: Any) -> Any:
        return segment_drill_down(root, caller)

    cases = " ".join(
        f"WHEN {_literal(str(b.id))}::uuid THEN "
        + drill(
            _literal(_json_string(answer(b).list)),
            _literal(orjson.dumps(answer(b).filter).decode()),
        )
        for b in built_ins
    )
    empty = answer(SimpleNamespace(filter={}))
    marked = answer(SimpleNamespace(filter=_OWN))
    head, tail = orjson.dumps(marked.filter).decode().split(orjson.dumps(_OWN).decode())
    own = f"{row}.filter"
    saved = (
        f"CASE WHEN jsonb_typeof({own}) <> 'object' THEN {_unrepresentable(own)} "
        f"WHEN {own} = '{{}}'::jsonb THEN "
        + drill(_literal(_json_string(empty.list)), _literal(orjson.dumps(empty.filter).decode()))
        + " ELSE "
        + drill(
            _literal(_json_string(marked.list)),
            f"{_literal(head)} || ({own})::text || {_literal(tail)}",
        )
        + " END"
    )
    built = f"CASE {row}.id {cases} END" if cases else "NULL"
    return f"CASE WHEN {row}.built_in THEN {built} ELSE {saved} END"


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
        if name == "drillDown":
            caller = c._arguments("Segment", name, nodes[0]).get("filter")
            return _drill_down(c, r, plan.built_ins, caller, segment_type, nodes)
        # ``customers``: a saved segment's stored filter is parsed in Python (decision 0006).
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


def customer_cohorts(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``rfm.cohorts``: the service's statement of counts per cohort and month, each
    cohort with a cell per month up to ``to``, written as JSON in PostgreSQL. The
    drill-downs' filters are the service's (``cohort_filter``, ``cell_filter``) over the
    month ranges ``in_month`` computes here in Python, one per month of the period."""
    from crm_graphql.compiled.compiler import Unsupported, _json_string, _literal
    from crm_graphql.compiled.insight import _float
    from crm_graphql.resolvers.insight import spec_json
    from crm_graphql.services import rfm

    args = c._arguments("Query", "customerCohorts", node)
    try:
        zone = rfm.time_zone(args["time_zone"])
        lo, hi = rfm.cohort_months(args["from_"], args["to"])
        statement = rfm.cohort_counts_statement(c.actor, zone, lo, hi)
    except DomainError as error:
        raise Unsupported(f"the executed path answers an error: {error}") from error
    c.state.models.add(models.Order)
    c.state.plan(PlanCache.CUSTOM)
    rows = c._sql(statement, models.Order, models.Order.__tablename__)
    counts, cohort, cell, found = c._alias(), c._alias(), c._alias(), c._alias()

    def month_index(sql: str) -> str:
        return f"(extract(year FROM {sql})::int * 12 + extract(month FROM {sql})::int - 1)"

    # Each month's range as JSON text, a constant of the plan, looked up by month index.
    ranges = [orjson.dumps(spec_json(rfm.in_month(i, zone))).decode() for i in range(lo, hi + 1)]
    range_of = f"(ARRAY[{', '.join(_literal(r) for r in ranges)}])[(%s) - {lo - 1}]"

    def filter_json(template: dict[str, Any], months: dict[str, str]) -> str:
        """The filter ``template`` (the service's, with markers for the ranges) as JSON
        text, each marker replaced by the range of its month."""
        text = orjson.dumps(spec_json(template)).decode()
        for marker, month in months.items():
            head, tail = text.split(_json_string(marker))
            text = head + "\x00" + month + "\x00" + tail
        parts = text.split("\x00")
        return " || ".join(
            _literal(part) if i % 2 == 0 else range_of % part for i, part in enumerate(parts)
        )

    cohort_type = _object_type(gql_type)
    cell_type = _object_type(cohort_type.fields["cells"].type)
    drill_type = _object_type(cohort_type.fields["drillDown"].type)
    # The filters are JSON values written with PostgreSQL's spacing: re-encoded once.
    c.state.reencode = True

    def drill_down(nodes: list[FieldNode], filter_sql: str) -> str:
        def part(name: str, _: list[FieldNode]) -> str:
            if name == "list":
                return _literal(_json_string(rfm.COHORT_LIST))
            if name == "filter":
                return filter_sql
            raise Unsupported(f"DrillDown.{name}")

        return c._json_object(drill_type, c._subselections(nodes), part)

    cohort_filter = filter_json(rfm.cohort_filter("crm:cohort"), {"crm:cohort": f"{cohort}.ci"})
    cell_filter = filter_json(
        rfm.cell_filter("crm:cohort", "crm:month"),
        {"crm:cohort": f"{cohort}.ci", "crm:month": f"{cohort}.ci + {cell}.k"},
    )
    customers = f"coalesce({found}.n, 0)"

    def cell_value(name: str, nodes: list[FieldNode]) -> str:
        if name == "monthsSince":
            return f"({cell}.k)::text"
        if name == "customers":
            return f"({customers})::text"
        if name == "share":
            return _float(f"{customers}::float8 / {cohort}.n")
        if name == "drillDown":
            return drill_down(nodes, cell_filter)
        raise Unsupported(f"CohortCell.{name}")

    def cohort_value(name: str, nodes: list[FieldNode]) -> str:
        if name == "month":
            return c._value(cohort_type.fields["month"].type, f"{cohort}.cohort")
        if name == "customers":
            return f"({cohort}.n)::text"
        if name == "cells":
            item = c._json_object(cell_type, c._subselections(nodes), cell_value)
            return (
                f"(SELECT '[' || coalesce(string_agg({item}, ',' ORDER BY {cell}.k), '') "
                f"|| ']' FROM generate_series(0, {hi} - {cohort}.ci) {cell}(k) "
                f"LEFT JOIN {counts} {found} ON {found}.ci = {cohort}.ci "
                f"AND {found}.mi = {cohort}.ci + {cell}.k)"
            )
        if name == "drillDown":
            return drill_down(nodes, cohort_filter)
        raise Unsupported(f"Cohort.{name}")

    item = c._json_object(cohort_type, selection_sets, cohort_value)
    k = c._alias()
    return (
        f"(WITH {counts} AS MATERIALIZED (SELECT {month_index(f'{k}.cohort')} AS ci, "
        f"{month_index(f'{k}.month')} AS mi, {k}.count AS n, {k}.cohort FROM ({rows}) {k}) "
        f"SELECT '[' || coalesce(string_agg({item}, ',' ORDER BY {cohort}.ci), '') || ']' "
        f"FROM {counts} {cohort} WHERE {cohort}.mi = {cohort}.ci)"
    )
