"""Aggregates on the compiled read path: the statement the executed path runs
(``services.aggregates.aggregate_statement``, built by the same function for the same
arguments) with its rows turned into the answer's JSON in PostgreSQL, instead of graphql-core
completing hundreds of groups field by field in Python.

A row of that statement is a group (``g`` = 0) or the totals (``g`` > 0): keys ``k<i>``,
count ``n``, money per currency ``money`` (``aggregates.MONEY_ENTRY``) and the numeric fields'
``<name>_sum/_avg/_min/_max``. Anything not known here (a filter on custom fields, whose
definitions are read at run time) makes the operation take the executed path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    SelectionSetNode,
)

from crm_graphql import models
from crm_graphql.db.engine import PlanCache
from crm_graphql.enums import DealStatus
from crm_graphql.resolvers.arguments import filter_spec
from crm_graphql.services import aggregates, fields, rfm
from crm_graphql.services import search as search_service
from crm_graphql.services.aggregates import AggregateSpec, GroupBy, Kind
from crm_graphql.storage import querying

if TYPE_CHECKING:
    from crm_graphql.compiled.compiler import Compiler


def aggregate_field(name: str) -> AggregateSpec | None:
    """The aggregate a root field answers (``<list>Aggregate``), or None."""
    if not name.endswith("Aggregate"):
        return None
    return aggregates.SPECS.get(name.removesuffix("Aggregate"))


def _names(c: Compiler, selection_sets: Iterable[SelectionSetNode], wanted: set[str]) -> bool:
    """Whether a field of one of these names is selected anywhere below (fragments
    included): ``resolvers.aggregates._extremes`` on the document."""
    seen: set[str] = set()

    def walk(selection_set: SelectionSetNode) -> bool:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value in wanted:
                    return True
                if selection.selection_set is not None and walk(selection.selection_set):
                    return True
            elif isinstance(selection, InlineFragmentNode):
                if walk(selection.selection_set):
                    return True
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = c.fragments.get(name)
                if name not in seen and fragment is not None:
                    seen.add(name)
                    if walk(fragment.selection_set):
                        return True
        return False

    return any(walk(s) for s in selection_sets)


def aggregate(
    c: Compiler,
    spec: AggregateSpec,
    field_name: str,
    node: FieldNode,
    gql_type: Any,
    selection_sets: list[SelectionSetNode],
) -> str:
    """``resolvers.aggregates.aggregate`` as the SQL of its JSON text."""
    from crm_graphql.compiled.compiler import (
        Unsupported,
        _base64url,
        _iso_date,
        _iso_datetime,
        _json_string,
        _literal,
        _quoted,
        _unrepresentable,
    )

    # Not at import time: resolvers.insight imports the schema, which imports this package.
    from crm_graphql.resolvers.insight import input_json

    args = c._arguments("Query", field_name, node)
    zone = fields.time_zone(args.get("time_zone")).key
    filter = filter_spec(args.get("filter"))
    if spec.rows.custom_fields is not None and querying.uses_custom_fields(filter):
        raise Unsupported("an aggregate filtered by custom fields (definitions read at run time)")
    group_by = [GroupBy(g.field.value, g.interval) for g in args.get("group_by") or ()]
    statement = aggregates.aggregate_statement(
        c.actor,
        spec,
        filter,
        group_by,
        zone,
        include_archived=bool(args.get("include_archived")),
        extremes=_names(c, selection_sets, {"min", "max"}),
    )
    if rfm.uses_scores([filter]):
        c.state.reads_rfm_scores = True
    model = spec.rows.model
    c.state.models.add(model)
    c.state.plan(PlanCache.CUSTOM)  # planned for the caller's values (periods, statuses)
    rows = c._sql(statement, model, model.__tablename__)
    a = c._alias()

    def totals(column: str) -> str:
        return f"(array_agg({a}.{column}) FILTER (WHERE {a}.g <> 0))[1]"

    def in_group(column: str) -> str:
        return f"{a}.{column}"

    numbers = {querying.camel_case(name): name for name in spec.numbers}
    dimensions = {querying.camel_case(name): name for name in spec.dimensions}
    position = {g.dimension: i for i, g in enumerate(group_by)}

    def stats(name: str, nodes: list[FieldNode], owner: Any, column: Callable[[str], str]) -> str:
        subselections = c._subselections(nodes)
        if name == "count":
            return f"coalesce({column('n')}, 0)::text"
        if name == "amount" and spec.money is not None:
            return _money(c, column("money"), owner.fields[name].type, subselections)
        if name in numbers:
            number_type = _object_type(owner.fields[name].type)
            key = numbers[name]

            def number(part: str, _: list[FieldNode]) -> str:
                return c._value(number_type.fields[part].type, column(f"{key}_{part}"))

            return c._json_object(number_type, subselections, number)
        raise Unsupported(f"{owner.name}.{name}")

    aggregate_type = _object_type(gql_type)
    group_type = _object_type(aggregate_type.fields["groups"].type)

    caller = input_json(args["filter"]) if args.get("filter") is not None else None

    def own_filter() -> str:
        """``aggregates._bounds``' filter of a group, as ``spec_json`` writes it."""
        # A parameter only when the statement reads it (every one passed must be).
        caller_sql = c._param(orjson.dumps(caller).decode()) + "::text" if caller else None
        parts = []
        for i, item in enumerate(group_by):
            dimension = spec.dimensions[item.dimension]
            key, end = in_group(f"k{i}"), in_group(f"e{i}")
            if dimension.kind is Kind.RELATION:
                assert dimension.type_name is not None
                text = _literal(dimension.type_name + ":") + f" || ({key})::text"
                condition = "'{\"eq\":' || " + _quoted(_base64url(text)) + " || '}'"
            elif dimension.kind is Kind.VALUE:
                value = c._value(group_type.fields[querying.camel_case(item.dimension)].type, key)
                condition = "'{\"eq\":' || " + value + " || '}'"
            else:
                iso = _iso_date if dimension.kind is Kind.DATE else _iso_datetime
                condition = (
                    "'{\"gte\":' || "
                    + _quoted(iso(key))
                    + " || ',\"lt\":' || "
                    + _quoted(iso(end))
                    + " || '}'"
                )
            field = _json_string(querying.camel_case(dimension.filter_field))
            parts.append(
                _literal(("," if i else "") + field + ":")
                + f" || CASE WHEN {key} IS NULL THEN '{{\"isNull\":true}}' ELSE {condition} END"
            )
        if not parts:  # no groups without a grouping; the text only has to be valid
            return caller_sql or "'{}'"
        own = "'{' || " + " || ".join(parts) + " || '}'"
        if caller_sql is None:
            return own
        return "'{\"and\":[' || " + caller_sql + " || ',' || " + own + " || ']}'"

    def drill_down(nodes: list[FieldNode]) -> str:
        drill_type = _object_type(group_type.fields["drillDown"].type)

        def part(name: str, _: list[FieldNode]) -> str:
            if name == "list":
                return _literal(_json_string(spec.list))
            return own_filter()

        return c._json_object(drill_type, c._subselections(nodes), part)

    def group(name: str, nodes: list[FieldNode]) -> str:
        if name == "drillDown":
            return drill_down(nodes)
        if name not in dimensions:
            return stats(name, nodes, group_type, in_group)
        dimension_name = dimensions[name]
        if dimension_name not in position:
            return "'null'"
        key = in_group(f"k{position[dimension_name]}")
        dimension = spec.dimensions[dimension_name]
        if dimension.kind is Kind.RELATION:
            assert dimension.type_name is not None
            # Joined once (below), not looked up per group.
            related = c._alias()
            joins.append(
                f" LEFT JOIN {c._by_id_joined(dimension.type_name, c._subselections(nodes))}"
                f" {related} ON {related}.id = {key}"
            )
            return f"coalesce({related}.body, 'null')"
        if dimension.kind is Kind.INSTANT:
            clock = c._alias()
            joins.append(_clock(key, zone, clock))
            return _local_instant(key, zone, clock)
        return c._value(group_type.fields[name].type, key)

    def value(name: str, nodes: list[FieldNode]) -> str:
        if name == "groups":
            item = c._json_object(group_type, c._subselections(nodes), group)
            return _json_array(item, f"{a}.crm_rn", f"{a}.g = 0")
        return stats(name, nodes, aggregate_type, totals)

    joins: list[str] = []
    body = c._json_object(aggregate_type, selection_sets, value)
    # More groups than allowed: the statement fails and the executed path answers the error.
    too_many = f"count(*) FILTER (WHERE {a}.g = 0) > {aggregates.MAX_GROUPS}"
    return (
        f"(SELECT CASE WHEN {too_many} THEN {_unrepresentable('count(*)')} ELSE {body} END "
        f"FROM (SELECT {a}.*, row_number() OVER () AS crm_rn FROM ({rows}) {a}) {a}"
        f"{''.join(joins)})"
    )


def _local_instant(sql: str, zone: str, clock: str | None = None) -> str:
    """JSON text of ``aggregates._local`` of an instant: on the caller's clock, as
    ``isoformat`` writes it; in UTC when infinite or beyond the calendar there
    (``fields.stored_instant``); null for NULL. ``clock``: the alias of ``_clock``'s
    columns for ``sql``, computed once per row instead of in every use below."""
    from crm_graphql.compiled.compiler import _iso_datetime, _literal

    z = _literal(zone)
    if clock is None:
        local = f"({sql} AT TIME ZONE {z})"
        offset = f"({local} - ({sql} AT TIME ZONE 'UTC'))"
    else:
        local, offset = f"{clock}.local", f"{clock}.utc_offset"
    size = f"(CASE WHEN {offset} < interval '0' THEN -{offset} ELSE {offset} END)"
    text = (
        f"to_char({local}, CASE WHEN date_trunc('second', {local}) = {local} "
        """THEN 'YYYY-MM-DD"T"HH24:MI:SS' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US' END) """
        f"|| CASE WHEN {offset} < interval '0' THEN '-' ELSE '+' END "
        f"|| to_char({size}, 'HH24:MI') "
        f"|| CASE WHEN extract(second FROM {offset}) <> 0 THEN to_char({size}, ':SS') "
        "ELSE '' END"
    )
    return (
        f"CASE WHEN {sql} IS NULL THEN 'null' "
        f"WHEN isfinite({sql}) AND {local} BETWEEN '0001-01-01 00:00:00' "
        f"AND '9999-12-31 23:59:59.999999' THEN '\"' || {text} || '\"' "
        f"ELSE '\"' || {_iso_datetime(sql)} || '\"' END"
    )


def _clock(sql: str, zone: str, alias: str) -> str:
    """A join giving, per row, the instant ``sql`` on the caller's clock (``local``) and
    that clock's offset from UTC (``utc_offset``) for ``_local_instant``: each of its
    uses would otherwise convert the instant again (sixteen conversions a value).
    ``OFFSET 0`` keeps PostgreSQL from folding it back into every use."""
    from crm_graphql.compiled.compiler import _literal

    z = _literal(zone)
    # Infinite instants have no offset (their difference is an error): ``_local_instant``
    # writes them in UTC without reading it.
    return (
        f" CROSS JOIN LATERAL (SELECT ({sql} AT TIME ZONE {z}) AS local, "
        f"CASE WHEN isfinite({sql}) THEN ({sql} AT TIME ZONE {z}) - ({sql} AT TIME ZONE 'UTC') "
        f"END AS utc_offset OFFSET 0) {alias}"
    )


def _json_array(item: str, order: str, where: str | None = None) -> str:
    """SQL of a JSON array (text) of ``item`` over the rows aggregated, in ``order``."""
    only = f" FILTER (WHERE {where})" if where else ""
    return f"'[' || coalesce(string_agg({item}, ',' ORDER BY {order}){only}, '') || ']'"


def _object_type(gql_type: Any) -> GraphQLObjectType:
    while isinstance(gql_type, GraphQLNonNull | GraphQLList):
        gql_type = gql_type.of_type
    assert isinstance(gql_type, GraphQLObjectType)
    return gql_type


def _money_list(c: Compiler, money: str, part: str, selection_sets: list[SelectionSetNode]) -> str:
    """A list of ``Money``, one per currency of a ``money`` column (``MONEY_ENTRY``), in
    its (currency) order: the ``part`` amount of each (``sum``, ``avg``, ``min``, ``max``)."""
    money_type = c.gschema.get_type("Money")
    assert isinstance(money_type, GraphQLObjectType)
    index = aggregates.MONEY_ENTRY.index(part)
    e = c._alias()

    def field(name: str, _: list[FieldNode]) -> str:
        if name == "currency":
            return f"to_json(btrim({e}.v ->> 0))::text"
        return c._value(money_type.fields[name].type, f"({e}.v ->> {index})::numeric")

    item = c._json_object(money_type, selection_sets, field)
    return (
        f"('[' || coalesce((SELECT string_agg({item}, ',' ORDER BY {e}.i) "
        f"FROM json_array_elements({money}) WITH ORDINALITY {e}(v, i) "
        f"WHERE {e}.v ->> 0 IS NOT NULL), '') || ']')"
    )


def _money(c: Compiler, money: str, gql_type: Any, selection_sets: list[SelectionSetNode]) -> str:
    """A ``MoneyAggregate`` from a ``money`` column (``aggregates.MONEY_ENTRY``): each of
    its lists one ``Money`` per currency, in the column's (currency) order."""
    aggregate_type = _object_type(gql_type)

    def value(name: str, nodes: list[FieldNode]) -> str:
        return _money_list(c, money, name, c._subselections(nodes))

    return c._json_object(aggregate_type, selection_sets, value)


def search(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``resolvers.search.search``: the service's hits statement, each hit's node read by
    id as a node of its type; highlights (computed in Python) take the executed path."""
    from crm_graphql.compiled.compiler import Unsupported, _base64url, _literal, _quoted
    from crm_graphql.resolvers.readmodel import OBJECT_TYPES

    args = c._arguments("Query", "search", node)
    entities = [search_service.SearchEntity(t.value) for t in args.get("types") or ()] or None
    page = querying.PageRequest(
        first=args.get("first"),
        after=args.get("after"),
        max_size=c.settings.max_page_size,
        default_size=c.settings.default_page_size,
    )
    hits = search_service.hits_statement(c.actor, args["query"], entities, page)
    if hits is None:
        raise Unsupported("an empty search page")
    # One generic plan for every word: planning the one-word statement took 5 to 7 ms, the
    # generic plan runs in under 1 ms at S=10 (``bench`` S1, decision 0006).
    c.state.plan(PlanCache.GENERIC)
    table = models.SearchDocument.__tablename__
    rows = c._sql(hits.statement, models.SearchDocument, table, values=hits.parameters)
    h = c._alias()
    types = {info.model: name for name, info in OBJECT_TYPES.items()}
    kinds = {
        source.entity.value: types[source.spec.model] for source in search_service.SOURCES.values()
    }
    in_page = f"{h}.crm_rn <= {hits.size}"
    prefix = _literal(search_service.cursor_prefix(hits.signature))

    def cursor(row: str) -> str:
        text = f"{prefix} || {_float(f'{row}.score')} || ',\"' || {row}.id::text || '\"]}}'"
        return _quoted(_base64url(text))

    results = _object_type(gql_type)
    edge_type = _object_type(results.fields["edges"].type)

    def edge(name: str, nodes: list[FieldNode]) -> str:
        if name == "score":
            return _float(f"{h}.score")
        if name == "cursor":
            return cursor(h)
        if name == "node":
            cases = " ".join(
                f"WHEN {_literal(kind)} THEN "
                + c._by_id(type_name, f"{h}.id", c._subselections(nodes))
                for kind, type_name in kinds.items()
            )
            return f"CASE {h}.entity_type {cases} END"
        raise Unsupported(f"SearchHit.{name}")  # highlights

    page_info_type = _object_type(results.fields["pageInfo"].type)

    def page_info(name: str, nodes: list[FieldNode]) -> str:
        if name == "hasNextPage":
            return f"CASE WHEN count(*) > {hits.size} THEN 'true' ELSE 'false' END"
        if name == "hasPreviousPage":
            return "'true'" if hits.after else "'false'"
        if name in ("startCursor", "endCursor"):
            direction = "ASC" if name == "startCursor" else "DESC"
            return (
                f"coalesce((array_agg({cursor(h)} ORDER BY {h}.crm_rn {direction}) "
                f"FILTER (WHERE {in_page}))[1], 'null')"
            )
        raise Unsupported(f"PageInfo.{name}")

    def value(name: str, nodes: list[FieldNode]) -> str:
        if name == "edges":
            item = c._json_object(edge_type, c._subselections(nodes), edge)
            return _json_array(item, f"{h}.crm_rn", in_page)
        return c._json_object(page_info_type, c._subselections(nodes), page_info)

    body = c._json_object(results, selection_sets, value)
    return (
        f"(SELECT {body} FROM (SELECT {h}.*, row_number() OVER (ORDER BY {h}.score DESC, "
        f"{h}.id) AS crm_rn FROM ({rows}) {h}) {h} GROUP BY ())"
    )


def time_series(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``resolvers.aggregates.time_series``: the service's statement, a bucket per row."""
    from crm_graphql.compiled.compiler import _iso_datetime, _literal, _quoted
    from crm_graphql.resolvers.insight import spec_json

    args = c._arguments("Query", "timeSeries", node)
    zone = fields.time_zone(args.get("time_zone")).key
    metric, interval = args["metric"], args["interval"]
    statement = aggregates.time_series_statement(
        c.actor, metric, interval, args["from_"], args["to"], zone
    )
    spec = aggregates.METRICS[metric].aggregate
    model = spec.rows.model
    c.state.models.add(model)
    rows = c._sql(statement, model, model.__tablename__)
    p = c._alias()
    point_type = _object_type(gql_type)
    drill_type = _object_type(point_type.fields["drillDown"].type)
    # The bucket's filter as ``spec_json`` writes it: the metric's own parts (constants)
    # and the time field's bounds (per row), in ``point_filter``'s key order.
    marker = object()
    parts = []
    written = spec_json(aggregates.point_filter(metric, marker))
    for index, (key, constant) in enumerate(written.items()):
        prefix = ("," if index else "") + orjson.dumps(key).decode() + ":"
        if constant is marker:
            bounds = (
                "'{\"gte\":' || "
                + _quoted(_iso_datetime(f"{p}.start"))
                + " || ',\"lt\":' || "
                + _quoted(_iso_datetime(f"{p}.end"))
                + " || '}'"
            )
            parts.append(f"{_literal(prefix)} || {bounds}")
        else:
            parts.append(_literal(prefix + orjson.dumps(constant).decode()))
    own = "'{' || " + " || ".join(parts) + " || '}'"

    def drill(name: str, _: list[FieldNode]) -> str:
        return _literal(orjson.dumps(spec.list).decode()) if name == "list" else own

    def value(name: str, nodes: list[FieldNode]) -> str:
        if name in ("start", "end"):
            return _local_instant(f"{p}.{name}", zone)
        if name == "count":
            return f"({p}.n)::text"
        if name == "amount":
            if spec.money is None:
                return "'[]'"
            return _money_list(c, f"{p}.money", "sum", c._subselections(nodes))
        return c._json_object(drill_type, c._subselections(nodes), drill)

    item = c._json_object(point_type, selection_sets, value)
    return (
        f"(SELECT {_json_array(item, f'{p}.crm_rn')} "
        f"FROM (SELECT {p}.*, row_number() OVER () AS crm_rn FROM ({rows}) {p}) {p})"
    )


def _float(sql: str) -> str:
    """JSON text of a float (a search score, a duration, a share) as the executed path
    writes it (orjson: PostgreSQL's shortest text, ``.0`` when integral), null for NULL;
    outside 1e-4 <= |x| < 1e15 (and not 0) the statement fails and the executed path
    answers."""
    from crm_graphql.compiled.compiler import _unrepresentable

    x = f"({sql})::float8"
    return (
        f"CASE WHEN {x} IS NULL THEN 'null' "
        f"WHEN {x} = 0 OR (abs({x}) >= 1e-4 AND abs({x}) < 1e15) THEN "
        f"CASE WHEN {x} = trunc({x}) THEN trunc({x})::bigint::text || '.0' "
        f"ELSE {x}::text END ELSE {_unrepresentable(x)} END"
    )


PERIOD_FIELDS = ("from", "to", "timeZone")


def _period_field(span: Any, name: str) -> str:
    """A report's period field (``reports.Period``) as JSON text."""
    from crm_graphql.compiled.compiler import _iso_date, _literal, _quoted

    if name == "timeZone":
        return _literal(orjson.dumps(span.time_zone).decode())
    day = span.start_date if name == "from" else span.end_date
    return _quoted(_iso_date(_literal(day.isoformat()) + "::date"))


def service_report(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``resolvers.reports.service_report`` (``reports.service_statements``, the backlog
    aged at the statement's ``now()``); each drill-down the executed path's filter for a
    cell of stand-in values (``_template``) with the row's values put in."""
    from sqlalchemy import func

    from crm_graphql.compiled.compiler import (
        Unsupported,
        _iso_datetime,
        _literal,
        _quoted,
    )
    from crm_graphql.global_ids import to_global_id
    from crm_graphql.resolvers.arguments import filter_spec as caller_filter
    from crm_graphql.resolvers.arguments import typed_ids
    from crm_graphql.services import reports

    args = c._arguments("Query", "serviceReport", node)
    built = reports.service_statements(
        c.actor,
        start=args["from_"],
        end=args["to"],
        time_zone=args.get("time_zone"),
        channels=args.get("channels"),
        assignee_ids=typed_ids(args.get("assignee_ids"), "User", "assigneeIds"),
        filter=caller_filter(args.get("filter")),
        as_of=func.now(),
    )
    c.state.models.add(models.Conversation)
    c.state.plan(PlanCache.CUSTOM)
    report_type = _object_type(gql_type)

    def rows(statement: Any) -> str:
        return c._sql(statement, models.Conversation, models.Conversation.__tablename__)

    def objects(source: str, where: str, order: str, item: Callable[[str], str]) -> str:
        """A JSON array of ``item`` per row of ``source`` (SQL of a FROM item) in order."""
        r = c._alias()
        array = _json_array(item(r), order.format(r=r))
        return f"(SELECT {array} FROM {source} {r} WHERE {where.format(r=r)})"

    def enum(type_: GraphQLObjectType, name: str, sql: str) -> str:
        return c._value(type_.fields[name].type, sql)

    caller = args.get("filter")
    agent_slot, channel_slot = _slot("agent"), _slot("channel")
    agent_token = to_global_id("User", agent_slot)

    def drill(nodes: list[FieldNode], spec: dict[str, Any], slots: dict[str, str]) -> str:
        return _drill_down(c, nodes, "conversations", spec, caller, slots)

    def group_drill(
        nodes: list[FieldNode],
        type_: GraphQLObjectType,
        r: str,
        spec: dict[str, Any],
        kind: str,
        satisfied: bool,
    ) -> str:
        """The drill-down of a row of ``grouped``: overall, one agent's (or the
        unassigned) or one channel's conversations of ``spec`` (``satisfied``: those rated
        4 or 5 of them)."""
        cell = reports.ServiceStatements.group_cell
        more = reports.ServiceStatements.satisfied_cell if satisfied else dict
        if kind == "byChannel":
            channel = enum(type_, "channel", f"{r}.channel")
            in_channel = more(cell(spec, False, True, None, channel_slot))
            return drill(nodes, in_channel, {channel_slot: channel})
        if kind == "overall":
            return drill(nodes, more(spec), {})
        unassigned = drill(nodes, more(cell(spec, True, False, None, None)), {})
        assigned = drill(
            nodes,
            more(cell(spec, True, False, agent_slot, None)),
            {agent_token: _global_id("User", f"{r}.assignee_id")},
        )
        return f"CASE WHEN {r}.assignee_id IS NULL THEN {unassigned} ELSE {assigned} END"

    def stats_object(
        type_: GraphQLObjectType,
        selection: list[SelectionSetNode],
        r: str,
        extra: dict[str, str],
        spec: dict[str, Any],
        kind: str,
    ) -> str:
        def value(name: str, nodes: list[FieldNode]) -> str:
            if name in ("drillDown", "satisfiedDrillDown"):
                return group_drill(nodes, type_, r, spec, kind, name == "satisfiedDrillDown")
            if name == "agent":
                return c._by_id("User", f"{r}.assignee_id", c._subselections(nodes))
            if name == "channel":
                return enum(type_, "channel", f"{r}.channel")
            if name == "count":
                return f"coalesce({r}.n, 0)::text"
            if name in extra:
                return extra[name].format(r=r)
            raise Unsupported(f"{type_.name}.{name}")

        return c._json_object(type_, selection, value)

    by_agent = (
        "{r}.by_agent = 0 AND {r}.by_channel = 1",
        "coalesce({r}.assignee_id::text, '') COLLATE \"C\"",
    )
    by_channel = ("{r}.by_agent = 1 AND {r}.by_channel = 0", '{r}.channel::text COLLATE "C"')

    def grouped(
        statement: Any,
        type_: Any,
        selection: list[SelectionSetNode],
        extra: dict[str, str],
        spec: dict[str, Any],
    ) -> str:
        """``ServiceTimes`` or ``Csat``: the () row, and the by-agent and by-channel rows
        sorted as ``reports._group_key`` sorts them."""
        outer = _object_type(type_)
        stats_type = _object_type(outer.fields["overall"].type)
        g = c._alias()  # the statement's rows, computed once for the three parts

        def value(name: str, nodes: list[FieldNode]) -> str:
            selection = c._subselections(nodes)
            if name == "overall":
                r = c._alias()
                item = stats_object(stats_type, selection, r, extra, spec, name)
                # The () grouping set gives a row even when no conversation counts.
                return f"(SELECT {item} FROM {g} {r} WHERE {r}.by_agent = 1 AND {r}.by_channel = 1)"
            where, order = by_agent if name == "byAgent" else by_channel
            return objects(
                g, where, order, lambda r: stats_object(stats_type, selection, r, extra, spec, name)
            )

        body = c._json_object(outer, selection, value)
        return f"(WITH {g} AS MATERIALIZED ({rows(statement)}) SELECT {body})"

    times = {"p50Seconds": _float("{r}.p50"), "p90Seconds": _float("{r}.p90")}
    csat = {
        "satisfied": "coalesce({r}.satisfied, 0)::text",
        "csat": _float("{r}.satisfied::float8 / nullif({r}.n, 0)"),
        "averageScore": _float("{r}.average"),
    }

    def backlog(selection: list[SelectionSetNode]) -> str:
        band_type = _object_type(report_type.fields["backlog"].type)
        r, b = c._alias(), c._alias()
        bands = ", ".join(
            f"({i}, {_literal(label)}, {lower}, {'NULL' if upper is None else upper})"
            for i, (label, lower, upper) in enumerate(reports.BACKLOG_BANDS)
        )
        counts = {
            "openCount": f"coalesce(sum({r}.n) FILTER (WHERE {r}.status = 'open'), 0)",
            "pendingCount": f"coalesce(sum({r}.n) FILTER (WHERE {r}.status = 'pending'), 0)",
            "count": f"coalesce(sum({r}.n), 0)",
        }

        def value(name: str, nodes: list[FieldNode]) -> str:
            if name == "label":
                return f"to_json({b}.label)::text"
            if name == "minAgeHours":
                return f"{b}.lower::text"
            if name == "maxAgeHours":
                return f"coalesce({b}.upper::text, 'null')"
            if name in counts:
                return f"(SELECT {counts[name]} FROM backlog {r} WHERE {r}.band = {b}.i)::text"
            if name == "drillDown":
                now = _Now()  # the bands' bounds: now() less their ages
                specs = [built.backlog_cell(now, lo, hi) for _, lo, hi in reports.BACKLOG_BANDS]
                cases = " ".join(
                    f"WHEN {i} THEN {drill(nodes, spec, now.slots)}" for i, spec in enumerate(specs)
                )
                return f"CASE {b}.i {cases} END"
            raise Unsupported(f"BacklogBand.{name}")

        item = c._json_object(band_type, selection, value)
        return (
            f"(WITH backlog AS MATERIALIZED ({rows(built.backlog)}) "
            f"SELECT '[' || string_agg({item}, ',' ORDER BY {b}.i) || ']' "
            f"FROM (VALUES {bands}) {b}(i, label, lower, upper))"
        )

    def value(name: str, nodes: list[FieldNode]) -> str:
        selection = c._subselections(nodes)
        field_type = report_type.fields[name].type
        if name == "asOf":
            return _quoted(_iso_datetime("now()"))
        if name in PERIOD_FIELDS:
            return _period_field(built.span, name)
        if name == "volume":
            cell_type = _object_type(field_type)

            def cell(r: str) -> str:
                def part(field: str, sub: list[FieldNode]) -> str:
                    if field in ("channel", "status"):
                        return enum(cell_type, field, f"{r}.{field}")
                    if field == "count":
                        return f"{r}.n::text"
                    if field == "drillDown":
                        status_slot = _slot("status")
                        slots = {
                            channel_slot: enum(cell_type, "channel", f"{r}.channel"),
                            status_slot: enum(cell_type, "status", f"{r}.status"),
                        }
                        return drill(sub, built.volume_cell(channel_slot, status_slot), slots)
                    raise Unsupported(f"VolumeCell.{field}")

                return c._json_object(cell_type, selection, part)

            return objects(f"({rows(built.volume)})", "true", "{r}.channel, {r}.status", cell)
        if name == "firstResponse":
            return grouped(
                built.first_response, field_type, selection, times, built.first_response_spec
            )
        if name == "resolution":
            return grouped(built.resolution, field_type, selection, times, built.resolution_spec)
        if name == "csat":
            return grouped(built.csat, field_type, selection, csat, built.rated_spec)
        if name == "backlog":
            return backlog(selection)
        raise Unsupported(f"ServiceReport.{name}")

    return c._json_object(report_type, selection_sets, value)


def _slot(name: str) -> Any:
    """A stand-in value for a drill-down filter template (``_template``): no client value
    and no value of a report's own is this text (typed ``Any``: it stands in for ids,
    dates and numbers alike)."""
    return f"\x01crm slot {name}\x01"


def _template(value: Any, slots: dict[str, str]) -> str:
    """SQL of the JSON text of ``value`` as orjson writes it (the executed path's answer),
    in which each string of ``slots`` (a ``_slot``, or what the code under test made of
    one, such as a global ID) is replaced by the SQL of the JSON text of its row's value."""
    from crm_graphql.compiled.compiler import _literal

    text = orjson.dumps(value).decode()
    tokens = {orjson.dumps(key).decode(): sql for key, sql in slots.items()}
    parts, at = [], 0
    if tokens:
        for match in re.finditer("|".join(re.escape(t) for t in tokens), text):
            parts += [_literal(text[at : match.start()]), tokens[match.group()]]
            at = match.end()
    parts.append(_literal(text[at:]))
    return "(" + " || ".join(p for p in parts if p != "''") + ")"


def _global_id(type_name: str, sql: str) -> str:
    """JSON text of the global ID of ``type_name`` with the id ``sql``."""
    from crm_graphql.compiled.compiler import _base64url, _literal, _quoted

    return _quoted(_base64url(f"{_literal(type_name + ':')} || ({sql})::text"))


def _drill_down(
    c: Compiler,
    nodes: list[FieldNode],
    list_name: str,
    spec: dict[str, Any],
    caller: Any,
    slots: dict[str, str],
) -> str:
    """A report cell's ``DrillDown`` (``resolvers.insight.drill_down`` of the cell's
    ``spec`` within the ``caller``'s filter), its stand-ins replaced by ``slots``."""
    from crm_graphql.compiled.compiler import _json_string, _literal
    from crm_graphql.resolvers.insight import drill_down
    from crm_graphql.services.drilldown import DrillDown

    drill_type = c.gschema.get_type("DrillDown")

    def field(name: str, _: list[FieldNode]) -> str:
        if name == "list":
            return _literal(_json_string(list_name))
        return _template(drill_down(DrillDown(list_name, spec), caller).filter, slots)

    return c._json_object(drill_type, c._subselections(nodes), field)


class _Now:
    """Stands in for the statement's ``now()`` in a drill-down filter: ``now - delta``
    is a stand-in whose SQL (in ``slots``) is that instant as the executed path writes it."""

    def __init__(self) -> None:
        self.slots: dict[str, str] = {}

    def __sub__(self, delta: timedelta) -> Any:
        from crm_graphql.compiled.compiler import _iso_datetime, _quoted

        seconds = int(delta.total_seconds())
        slot = _slot(f"now - {seconds} s")
        self.slots[slot] = _quoted(_iso_datetime(f"(now() - interval '{seconds} seconds')"))
        return slot


def sales_report(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``resolvers.reports.sales_report``: the statements of ``reports.sales_statements``,
    their rows written as JSON; each cell's drill-down is the executed path's filter for a
    cell of stand-in values (``_template``) with the row's values put in."""
    from crm_graphql.compiled.compiler import (
        Unsupported,
        _iso_date,
        _literal,
        _quoted,
        _unrepresentable,
    )
    from crm_graphql.global_ids import decode_id, to_global_id
    from crm_graphql.resolvers.arguments import filter_spec as caller_filter
    from crm_graphql.resolvers.arguments import typed_ids
    from crm_graphql.services import reports
    from crm_graphql.services.actor import scoped

    args = c._arguments("Query", "salesReport", node)
    pipeline_id = decode_id(args["pipeline_id"], "Pipeline")
    filter = caller_filter(args.get("filter"))
    if pipeline_id is None:
        raise Unsupported("a pipeline that is not found (the executed path says so)")
    if querying.uses_custom_fields(filter):
        raise Unsupported("a report filtered by custom fields (definitions read at run time)")
    built = reports.sales_statements(
        c.actor,
        pipeline_id=pipeline_id,
        start=args["from_"],
        end=args["to"],
        time_zone=args.get("time_zone"),
        owner_ids=typed_ids(args.get("owner_ids"), "User", "ownerIds"),
        filter=filter,
    )
    c.state.models.update((models.Deal, models.Pipeline, models.Stage))
    # Without a filter the report reads the summaries by pipeline and a few hours of deals
    # at the period's ends: one plan serves every pipeline and period (PostgreSQL's own
    # choice after five executions; planning is a tenth of the statement's time). A filter
    # of the caller's reads the deals: planned for its values.
    if filter:
        c.state.plan(PlanCache.CUSTOM)
    report_type = _object_type(gql_type)
    caller = args.get("filter")

    def rows(statement: Any) -> str:
        """The rows of a statement, numbered in its order (``rn``)."""
        r = c._alias()
        sql = c._sql(statement, models.Deal, models.Deal.__tablename__)
        return f"SELECT {r}.*, row_number() OVER () AS rn FROM ({sql}) {r}"

    parts: dict[str, str] = {}  # CTE name -> SQL, for the parts the selection reads

    def part(name: str, statement: Any) -> str:
        if name not in parts:
            parts[name] = f"{c._alias()}"
            ctes.append(f"{parts[name]} AS MATERIALIZED ({rows(statement)})")
        return parts[name]

    ctes: list[str] = []

    global_id = _global_id

    def drill(nodes: list[FieldNode], spec: dict[str, Any], slots: dict[str, str]) -> str:
        return _drill_down(c, nodes, "deals", spec, caller, slots)

    stage_slot, currency_slot = _slot("stage"), _slot("currency")
    stage_token = to_global_id("Stage", stage_slot)

    def money_cells(
        source: str, where: str, amount: str, nodes: list[FieldNode], cell: Callable[..., Any]
    ) -> str:
        """``MoneyCell``s of the rows of ``source`` (``where``, in order): ``cell(r)`` gives
        a row's drill-down spec with stand-ins and their SQL."""
        cell_type = _object_type(c.gschema.get_type("MoneyCell"))
        r = c._alias()

        def field(name: str, sub: list[FieldNode]) -> str:
            if name == "currency":
                return f"to_json({r}.currency)::text"
            if name == "amount":
                return c._value(cell_type.fields[name].type, f"{r}.{amount}")
            if name == "count":
                return f"{r}.n::text"
            return drill(sub, *cell(r))

        item = c._json_object(cell_type, c._subselections(nodes), field)
        return (
            f"(SELECT {_json_array(item, f'{r}.rn')} FROM {source} {r} WHERE {where.format(r=r)})"
        )

    def currency_slots(r: str) -> dict[str, str]:
        return {currency_slot: f"to_json({r}.currency)::text"}

    def stages(nodes: list[FieldNode]) -> str:
        stage_type = _object_type(report_type.fields["stages"].type)
        s = c._alias()

        def field(name: str, sub: list[FieldNode]) -> str:
            if name == "stage":
                return c._by_id("Stage", f"{s}.id", c._subselections(sub))
            if name in ("openCount", "openValue", "weightedValue"):
                o = part("open", built.open)
                if name == "openCount":
                    return (
                        f"coalesce((SELECT {o}.n FROM {o} WHERE {o}.all_stages = 0 "
                        f"AND {o}.all_currencies = 1 AND {o}.stage_id = {s}.id), 0)::text"
                    )
                return money_cells(
                    o,
                    "{r}.all_stages = 0 AND {r}.all_currencies = 0 AND {r}.stage_id = " + f"{s}.id",
                    "amount" if name == "openValue" else "weighted",
                    sub,
                    lambda r: (
                        built.stage_currency_cell(stage_slot, currency_slot),
                        {stage_token: global_id("Stage", f"{s}.id"), **currency_slots(r)},
                    ),
                )
            if name == "reachedCount":
                return f"{s}.reached::text"
            if name == "conversionToNext":
                return _float(f"{s}.conversion")
            if name == "drillDown":
                spec = built.stage_cell(stage_slot)
                return drill(sub, spec, {stage_token: global_id("Stage", f"{s}.id")})
            if name == "reachedDrillDown":
                position = _slot("position")
                spec = built.reached_cell(position)
                return drill(sub, spec, {position: f"{s}.position::text"})
            raise Unsupported(f"SalesStage.{name}")

        item = c._json_object(stage_type, c._subselections(nodes), field)
        return f"(SELECT {_json_array(item, f'{s}.rn')} FROM {part('stages', built.stages)} {s})"

    def overall(column: str) -> str:
        cl = part("closed", built.closed)
        return f"(SELECT {cl}.{column} FROM {cl} WHERE {cl}.overall = 1)"

    def count(column: str) -> str:
        return f"coalesce({overall(column)}, 0)::text"

    def win_rate(nodes: list[FieldNode]) -> str:
        win_type = _object_type(report_type.fields["winRate"].type)
        specs = {
            "drillDown": built.closed_cell(),
            "wonDrillDown": built.won_spec,
            "lostDrillDown": built.lost_spec,
        }

        def field(name: str, sub: list[FieldNode]) -> str:
            if name in ("won", "lost"):
                return count(name)
            if name == "rate":
                return _float(overall("rate"))
            return drill(sub, specs[name], {})

        return c._json_object(win_type, c._subselections(nodes), field)

    def cycle_time(nodes: list[FieldNode]) -> str:
        cycle_type = _object_type(report_type.fields["averageCycleTime"].type)

        def field(name: str, sub: list[FieldNode]) -> str:
            if name == "averageDays":
                return _float(overall("average_days"))
            if name == "count":
                return count("won")
            return drill(sub, built.won_spec, {})

        return c._json_object(cycle_type, c._subselections(nodes), field)

    def forecast(nodes: list[FieldNode]) -> str:
        cell_type = _object_type(report_type.fields["forecast"].type)
        f = c._alias()
        owner_slot, first, last = _slot("owner"), _slot("first"), _slot("last")
        owner_token = to_global_id("User", owner_slot)

        def field(name: str, sub: list[FieldNode]) -> str:
            if name == "month":
                return _quoted(_iso_date(f"{f}.month"))
            if name == "currency":
                return f"to_json({f}.currency)::text"
            if name == "count":
                return f"{f}.n::text"
            if name in ("amount", "weightedAmount"):
                column = "amount" if name == "amount" else "weighted"
                return c._value(cell_type.fields[name].type, f"{f}.{column}")
            if name == "owner":
                # Joined once (below), not looked up per forecast row.
                owners = c._alias()
                joins.append(
                    f" LEFT JOIN {c._by_id_joined('User', c._subselections(sub))} {owners}"
                    f" ON {owners}.id = {f}.owner_id"
                )
                return f"coalesce({owners}.body, 'null')"
            if name == "drillDown":
                slots = {
                    **currency_slots(f),
                    first: _quoted(_iso_date(f"{f}.first_day")),
                    last: _quoted(_iso_date(f"{f}.last_day")),
                }
                none = drill(sub, built.forecast_cell(None, currency_slot, first, last), slots)
                owned = drill(
                    sub,
                    built.forecast_cell(owner_slot, currency_slot, first, last),
                    {**slots, owner_token: global_id("User", f"{f}.owner_id")},
                )
                return f"CASE WHEN {f}.owner_id IS NULL THEN {none} ELSE {owned} END"
            raise Unsupported(f"ForecastCell.{name}")

        joins: list[str] = []
        item = c._json_object(cell_type, c._subselections(nodes), field)
        return (
            f"(SELECT {_json_array(item, f'{f}.rn')} "
            f"FROM {part('forecast', built.forecast)} {f}{''.join(joins)})"
        )

    def value(name: str, nodes: list[FieldNode]) -> str:
        selection = c._subselections(nodes)
        if name == "pipeline":
            return c._by_id("Pipeline", f"{c._param(pipeline_id)}::uuid", selection)
        if name == "stages":
            return stages(nodes)
        if name == "winRate":
            return win_rate(nodes)
        if name == "averageCycleTime":
            return cycle_time(nodes)
        if name in ("averageDealSize", "weightedPipeline"):
            if name == "averageDealSize":
                source = part("closed", built.closed)
                where = f"{{r}}.overall = 0 AND {{r}}.status = {_literal(DealStatus.WON.value)}"
                amount, cell = "average_amount", built.won_currency_cell
            else:
                source = part("open", built.open)
                where = "{r}.all_stages = 1 AND {r}.all_currencies = 0"
                amount, cell = "weighted", built.currency_cell
            return money_cells(
                source, where, amount, nodes, lambda r: (cell(currency_slot), currency_slots(r))
            )
        if name == "forecast":
            return forecast(nodes)
        if name in PERIOD_FIELDS:
            return _period_field(built.span, name)
        raise Unsupported(f"SalesReport.{name}")

    body = c._json_object(report_type, selection_sets, value)
    seen = c._sql(
        scoped(models.Pipeline, c.actor)
        .where(models.Pipeline.id == pipeline_id)
        .with_only_columns(models.Pipeline.id),
        models.Pipeline,
        models.Pipeline.__tablename__,
    )
    # A pipeline the caller does not see: the statement fails, the executed path answers
    # (NotFound). What fails reads a row count, so that planning cannot fold it.
    x = c._alias()
    missing = _unrepresentable(f"(SELECT count(*) FROM ({seen}) {x})")
    checked = f"CASE WHEN EXISTS ({seen}) THEN {body} ELSE {missing} END"
    if not ctes:
        return f"(SELECT {checked})"
    return f"(WITH {', '.join(ctes)} SELECT {checked})"
