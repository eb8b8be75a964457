"""``bulkCustomerChangePreview``, ``bulkCompanyChangePreview`` and
``bulkDealChangePreview`` on the compiled read path: ``services.bulk.preview`` as one
statement, its count and its sample both over the list's own statement (workspace, read
rule, the client's filter, a built-in segment's membership).

The change is checked as the preview checks it, with the service's own functions:
``check_request`` (the sample's size, the permissions, the fields the kind may set) when
the plan is made, since it reads nothing; the owner the change names
(``bulk.references``) in the statement, by ``records.reference_statement``, the
service's own query, so that a plan shared by the workspaces of a role checks each
request's workspace as it runs (an owner that is not there fails the statement and the
executed path answers with its error). What reads data the plan cannot hold takes the
executed path: a set check (a deal's stage against the pipelines of the set), custom
fields (the workspace's definitions, validated in Python), a saved segment, a filter on
custom fields (decision 0006)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import FieldNode, GraphQLObjectType, SelectionSetNode, get_named_type

from crm_graphql.db.engine import PlanCache
from crm_graphql.resolvers import bulk as resolve
from crm_graphql.resolvers.filters import list_filter
from crm_graphql.services import bulk as service
from crm_graphql.services import rfm, segments
from crm_graphql.services.errors import DomainError
from crm_graphql.storage import querying, records

if TYPE_CHECKING:
    from crm_graphql.compiled.compiler import Compiler

# The preview fields and the kind of record each goes over.
PREVIEWS: dict[str, resolve.Api] = {
    "bulkCustomerChangePreview": resolve.CUSTOMERS,
    "bulkCompanyChangePreview": resolve.COMPANIES,
    "bulkDealChangePreview": resolve.DEALS,
}


def preview(
    c: Compiler,
    name: str,
    node: FieldNode,
    gql_type: Any,
    selection_sets: list[SelectionSetNode],
) -> str:
    """``resolvers.bulk._preview``: the change planned from its input as the resolver
    plans it, checked, then the set's count and first ``sample`` records."""
    from crm_graphql.compiled.compiler import Unsupported, _computed_filter_fields, _unrepresentable

    api = PREVIEWS[name]
    target = api.target
    spec = target.list
    args = c._arguments("Query", name, node)
    try:
        params = resolve.params_of(args["input"])
        change = resolve.change_of(target, params)
        # ``filter_within_segment`` without its read: a built-in segment's membership is
        # a constant (``Compiler._segment_membership``), a saved one's is stored.
        filter = list_filter(c.schema, api.filter_type, params.get("filter"), "filter")
        client_values = bool(filter)
        if params.get("segmentId") is not None:
            membership = c._segment_membership(params["segmentId"])
            filter = dict(segments.within(membership, filter))
        sample = args["sample"]
        service.check_request(c.actor, target, change, sample)
        if service.set_checks(target, change):
            raise Unsupported("a set check reads the set's rows in Python (a deal's stage)")
        if change.custom_fields:
            raise Unsupported("custom fields are validated against the workspace's definitions")
        if spec.custom_fields is not None and querying.uses_custom_fields(filter, None):
            raise Unsupported("a filter on custom fields")
        if _computed_filter_fields(spec, c.actor, filter):
            raise Unsupported("a filter field computed by a subquery")
        if rfm.uses_scores([filter]):
            c.state.reads_rfm_scores = True
        base = spec.statement(c.actor, filter).whereclause
        keys = spec.keys(None)
        references = [
            (model, records.reference_statement(c.actor, model, id))
            for model, id, _ in service.references(change)
        ]
    except DomainError as error:
        raise Unsupported(f"the executed path answers an error: {error}") from error
    assert base is not None  # scoped: it always has a WHERE
    model = spec.model
    c.state.models.add(model)
    if client_values:
        c.state.plan(PlanCache.CUSTOM)
    table = model.__tablename__
    preview_type = get_named_type(gql_type)
    assert isinstance(preview_type, GraphQLObjectType)

    def value(field: str, nodes: list[FieldNode]) -> str:
        if field == "count":
            counted = c._alias()
            where = c._sql(base, model, counted)
            return f"(SELECT count(*) FROM {table} {counted} WHERE {where})::text"
        if field == api.sample_field:
            row = c._alias()
            where = c._sql(base, model, row)
            terms = querying.order_terms(keys)
            order = ", ".join(c._sql(term, model, row) for term in terms)
            item = c._object(target.entity, row, c._subselections(nodes))
            return (
                f"(SELECT '[' || coalesce(string_agg({item}, ',' ORDER BY {order}), '') || ']' "
                f"FROM (SELECT * FROM {table} {row} WHERE {where} ORDER BY {order} "
                f"LIMIT {sample}) {row})"
            )
        raise Unsupported(f"{preview_type.name}.{field}")

    body = c._json_object(preview_type, selection_sets, value)
    for referenced, statement in references:
        found = c._alias()
        where = c._sql(statement.whereclause, referenced, found)
        exists = f"EXISTS (SELECT 1 FROM {referenced.__tablename__} {found} WHERE {where})"
        # Not there: the statement fails and the executed path answers ``NotFound``.
        body = f"CASE WHEN {exists} THEN {body} ELSE {_unrepresentable(exists)} END"
    return body
