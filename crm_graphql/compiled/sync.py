"""The change feed (``changes``, docs/decisions/0032) on the compiled read path: the
executed path's own statement (``services.sync.changes_statement``: scope, read
permissions per type, the conversation rule, the horizon, the order), written as JSON in
PostgreSQL. The horizon is read by a statement of its own just before, on the primary, as
``read_changes`` reads it (``Compiled.horizon_params``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from graphql import FieldNode, GraphQLObjectType, SelectionSetNode

from crm_graphql import models
from crm_graphql.resolvers.sync import field_names
from crm_graphql.services import sync as sync_service
from crm_graphql.services.events import LAST_ID

if TYPE_CHECKING:
    from crm_graphql.compiled.compiler import Compiler


def _object_type(gql_type: Any) -> GraphQLObjectType:
    from graphql import get_named_type

    named = get_named_type(gql_type)
    assert isinstance(named, GraphQLObjectType)
    return named


def _position(txid: str, id: str) -> str:
    """``Position.encode()`` of two bigint expressions."""
    from crm_graphql.compiled.compiler import _base64url, _quoted

    return _quoted(_base64url(f"'ev:' || ({txid})::text || ':' || ({id})::text"))


def changes(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``resolvers.sync.changes``: a page of the feed with the fields the resolver maps
    (column names to this API's field names, ``field_names``) and the resume cursor."""
    from crm_graphql.compiled.compiler import Unsupported, _literal, _unrepresentable

    args = c._arguments("Query", "changes", node)
    most = c.settings.max_page_size
    first = args.get("first")
    size = most if first is None else first
    if not 0 <= size <= most:
        raise Unsupported("a page size the executed path refuses")
    # Refusals (a type the caller may not read, a bad cursor) are DomainErrors: the
    # executed path answers them.
    wanted = sync_service.readable_types(c.actor, args.get("types"))
    position = sync_service.decode_cursor(args.get("after"))
    statement = sync_service.changes_statement(c.actor, wanted, position, _horizon(), size)
    table = models.Event.__tablename__
    rows = c._sql(statement, models.Event, table)
    a = c._alias()
    in_page = f"{a}.crm_rn <= {size}"
    page_type = _object_type(gql_type)
    change_type = _object_type(page_type.fields["changes"].type)

    # Column -> field name per type, as the resolver maps them: a constant of the plan,
    # looked up per column (joined as rows of pairs instead, a page of 100 took about
    # twice as long: decision 0006).
    names = orjson.dumps({t.value: field_names(c.schema, t.value) for t in wanted}).decode()
    fields = f"{a}.fields"
    shown = (
        f"(SELECT '[' || coalesce(string_agg(to_json(m.name)::text, ',' ORDER BY m.first), '')"
        f" || ']' FROM (SELECT f.name, min(f.ord) AS first FROM (SELECT "
        f"({_literal(names)}::jsonb -> {a}.entity_type ->> e.col) AS name, e.ord FROM "
        f"jsonb_array_elements_text({fields}) WITH ORDINALITY e(col, ord)) f "
        f"WHERE f.name IS NOT NULL GROUP BY f.name) m)"
    )
    # ``list(row.fields or ())``: null is no field; anything but an array of texts is a
    # value the executed path would read differently (or fail on): it answers.
    fields_json = (
        f"CASE WHEN {fields} IS NULL OR {fields} = 'null'::jsonb THEN '[]' "
        f"WHEN jsonb_typeof({fields}) = 'array' AND NOT EXISTS (SELECT FROM "
        f"jsonb_array_elements({fields}) x(v) WHERE jsonb_typeof(x.v) <> 'string') "
        f"THEN {shown} ELSE {_unrepresentable(fields)} END"
    )
    kind = (
        f"(CASE WHEN left({a}.type, {len(sync_service.EVENT_PREFIX)}) = "
        f"{_literal(sync_service.EVENT_PREFIX)} THEN "
        f"substr({a}.type, {len(sync_service.EVENT_PREFIX) + 1}) ELSE {a}.type END)"
    )

    def change(name: str, nodes: list[FieldNode]) -> str:
        field_type = change_type.fields[name].type
        if name == "cursor":
            return _position(f"{a}.txid", f"{a}.id")
        if name == "nodeId":
            from crm_graphql.compiled.compiler import _base64url, _quoted

            return _quoted(_base64url(f"{a}.entity_type || ':' || {a}.entity_id::text"))
        if name == "type":
            return c._value(field_type, f"{a}.entity_type")
        if name == "kind":
            return c._value(field_type, kind)
        if name == "fields":
            return fields_json
        if name == "at":
            return c._value(field_type, f"{a}.created_at")
        if name == "node":
            cases = " ".join(
                f"WHEN {_literal(t.value)} THEN "
                + c._by_id(t.value, f"{a}.entity_id", c._subselections(nodes))
                for t in wanted
            )
            return f"CASE {a}.entity_type {cases} ELSE 'null' END"
        raise Unsupported(f"Change.{name}")

    def last(column: str) -> str:
        return f"(array_agg({a}.{column} ORDER BY {a}.crm_rn DESC) FILTER (WHERE {in_page}))[1]"

    def resume() -> str:
        """``read_changes``' resume cursor: after the page's last change when there are
        more (where it was for ``first: 0``), else the greatest of where it was, just
        below the horizon, and the last change."""
        if size == 0:
            more = _literal('"' + position.encode() + '"')
        else:
            more = _position(last("txid"), last("id"))
        at = f"{c._param(position.txid)}::bigint, {c._param(position.id)}::bigint"
        past = f"{c.horizon()}::bigint - 1, {LAST_ID}::bigint"
        final = (
            f"(SELECT {_position('p.t', 'p.i')} FROM (VALUES ({at}), ({past}), "
            f"({last('txid')}, {last('id')})) p(t, i) WHERE p.t IS NOT NULL "
            f"ORDER BY p.t DESC, p.i DESC LIMIT 1)"
        )
        return f"CASE WHEN count(*) > {size} THEN {more} ELSE {final} END"

    def value(name: str, nodes: list[FieldNode]) -> str:
        if name == "changes":
            item = c._json_object(change_type, c._subselections(nodes), change)
            return (
                f"'[' || coalesce(string_agg({item}, ',' ORDER BY {a}.crm_rn) "
                f"FILTER (WHERE {in_page}), '') || ']'"
            )
        if name == "hasMore":
            return f"CASE WHEN count(*) > {size} THEN 'true' ELSE 'false' END"
        if name == "cursor":
            return resume()
        raise Unsupported(f"ChangePage.{name}")

    body = c._json_object(page_type, selection_sets, value)
    return (
        f"(SELECT {body} FROM (SELECT {a}.*, row_number() OVER (ORDER BY {a}.txid, {a}.id) "
        f"AS crm_rn FROM ({rows}) {a}) {a} GROUP BY ())"
    )


def _horizon() -> Any:
    from crm_graphql.compiled.compiler import HORIZON

    return HORIZON
