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

from collections.abc import Callable, Iterable
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
    c.state.custom_plans = True  # planned for the caller's values (periods, statuses)
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
            return c._by_id(dimension.type_name, key, c._subselections(nodes))
        if dimension.kind is Kind.INSTANT:
            return _local_instant(key, zone)
        return c._value(group_type.fields[name].type, key)

    def value(name: str, nodes: list[FieldNode]) -> str:
        if name == "groups":
            item = c._json_object(group_type, c._subselections(nodes), group)
            return _json_array(item, f"{a}.crm_rn", f"{a}.g = 0")
        return stats(name, nodes, aggregate_type, totals)

    body = c._json_object(aggregate_type, selection_sets, value)
    # More groups than allowed: the statement fails and the executed path answers the error.
    too_many = f"count(*) FILTER (WHERE {a}.g = 0) > {aggregates.MAX_GROUPS}"
    return (
        f"(SELECT CASE WHEN {too_many} THEN {_unrepresentable('count(*)')} ELSE {body} END "
        f"FROM (SELECT {a}.*, row_number() OVER () AS crm_rn FROM ({rows}) {a}) {a})"
    )


def _local_instant(sql: str, zone: str) -> str:
    """JSON text of ``aggregates._local`` of an instant: on the caller's clock, as
    ``isoformat`` writes it; in UTC when infinite or beyond the calendar there
    (``fields.stored_instant``); null for NULL."""
    from crm_graphql.compiled.compiler import _iso_datetime, _literal

    z = _literal(zone)
    local = f"({sql} AT TIME ZONE {z})"
    offset = f"({local} - ({sql} AT TIME ZONE 'UTC'))"
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
    from crm_graphql.compiled.catalog import OBJECT_TYPES
    from crm_graphql.compiled.compiler import Unsupported, _base64url, _literal, _quoted

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
    # Planned for each word: a generic plan of the one-word statement ran 12.3 ms a search
    # on the bench data against 8.4 ms planned each time (``bench`` S1, decision 0006).
    c.state.custom_plans = True
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


def service_report(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``resolvers.reports.service_report`` (``reports.service_statements``, the backlog
    aged at the statement's ``now()``); drill-downs take the executed path."""
    from sqlalchemy import func

    from crm_graphql.compiled.compiler import (
        Unsupported,
        _iso_date,
        _iso_datetime,
        _literal,
        _quoted,
    )
    from crm_graphql.resolvers.arguments import filter_spec as caller_filter
    from crm_graphql.resolvers.reports import _ids
    from crm_graphql.services import reports

    args = c._arguments("Query", "serviceReport", node)
    built = reports.service_statements(
        c.actor,
        start=args["from_"],
        end=args["to"],
        time_zone=args.get("time_zone"),
        channels=args.get("channels"),
        assignee_ids=_ids(args.get("assignee_ids"), "User", "assigneeIds"),
        filter=caller_filter(args.get("filter")),
        as_of=func.now(),
    )
    c.state.models.add(models.Conversation)
    c.state.custom_plans = True
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

    def stats_object(
        type_: GraphQLObjectType, selection: list[SelectionSetNode], r: str, extra: dict[str, str]
    ) -> str:
        def value(name: str, nodes: list[FieldNode]) -> str:
            if name == "agent":
                return c._by_id("User", f"{r}.assignee_id", c._subselections(nodes))
            if name == "channel":
                return enum(type_, "channel", f"{r}.channel")
            if name == "count":
                return f"coalesce({r}.n, 0)::text"
            if name in extra:
                return extra[name].format(r=r)
            raise Unsupported(f"{type_.name}.{name}")  # drill-downs

        return c._json_object(type_, selection, value)

    by_agent = (
        "{r}.by_agent = 0 AND {r}.by_channel = 1",
        "coalesce({r}.assignee_id::text, '') COLLATE \"C\"",
    )
    by_channel = ("{r}.by_agent = 1 AND {r}.by_channel = 0", '{r}.channel::text COLLATE "C"')

    def grouped(
        statement: Any, type_: Any, selection: list[SelectionSetNode], extra: dict[str, str]
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
                item = stats_object(stats_type, selection, r, extra)
                # The () grouping set gives a row even when no conversation counts.
                return f"(SELECT {item} FROM {g} {r} WHERE {r}.by_agent = 1 AND {r}.by_channel = 1)"
            where, order = by_agent if name == "byAgent" else by_channel
            return objects(g, where, order, lambda r: stats_object(stats_type, selection, r, extra))

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
        if name == "from":
            return _quoted(_iso_date(_literal(built.span.start_date.isoformat()) + "::date"))
        if name == "to":
            return _quoted(_iso_date(_literal(built.span.end_date.isoformat()) + "::date"))
        if name == "timeZone":
            return _literal(orjson.dumps(built.span.time_zone).decode())
        if name == "volume":
            cell_type = _object_type(field_type)

            def cell(r: str) -> str:
                def part(field: str, _: list[FieldNode]) -> str:
                    if field in ("channel", "status"):
                        return enum(cell_type, field, f"{r}.{field}")
                    if field == "count":
                        return f"{r}.n::text"
                    raise Unsupported(f"VolumeCell.{field}")

                return c._json_object(cell_type, selection, part)

            return objects(f"({rows(built.volume)})", "true", "{r}.channel, {r}.status", cell)
        if name == "firstResponse":
            return grouped(built.first_response, field_type, selection, times)
        if name == "resolution":
            return grouped(built.resolution, field_type, selection, times)
        if name == "csat":
            return grouped(built.csat, field_type, selection, csat)
        if name == "backlog":
            return backlog(selection)
        raise Unsupported(f"ServiceReport.{name}")

    return c._json_object(report_type, selection_sets, value)
