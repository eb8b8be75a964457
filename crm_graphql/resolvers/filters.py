"""A list's filter given as JSON (a saved segment's, an export link's, a job's): parsed
exactly as the list's ``filter`` argument is, and narrowed to a segment's members.

Light on imports on purpose: the job runner and the download route load it before the
schema has been built, so it reaches the schema only through the argument it is given."""

from typing import Any

from graphql import GraphQLError, GraphQLInputObjectType, Undefined, coerce_input_value
from graphql.utilities.validate_input_value import validate_input_value
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types.arguments import convert_argument
from strawberry.types.base import StrawberryObjectDefinition

from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import filter_spec
from crm_graphql.services import segments as segment_service
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid


def list_filter(
    schema: Any, type_name: str, value: Any, field: str = "filter"
) -> dict[str, Any] | None:
    """A list's filter input (``CustomerFilter``, ``DealFilter`` ...) in JSON as the filter
    mapping of the list, or ``Invalid`` naming the part of ``field`` at fault: what a
    saved segment and an export's link hold, parsed as the list's ``filter`` argument."""
    # Strawberry keeps graphql-core's schema in ``_schema`` (no public accessor in
    # strawberry-graphql 0.2xx); the compiled path reads it the same way. A change there
    # fails tests/api/test_segments_api.py (saved filters are validated through it).
    gql_type = schema._schema.get_type(type_name)
    assert isinstance(gql_type, GraphQLInputObjectType), type_name
    problems: list[tuple[list[Any], GraphQLError]] = []

    def on_error(error: GraphQLError, path: list[Any]) -> None:
        problems.append((path, error))

    # What graphql-core does with a variable's value: coerce, and explain when it fails.
    coerced = coerce_input_value(value, gql_type)
    if coerced is Undefined:
        validate_input_value(value, gql_type, on_error)
    if problems or coerced is Undefined:
        path, error = problems[0] if problems else ([], GraphQLError(f"Not a {type_name}"))
        raise Invalid(error.message, ".".join([field, *(str(p) for p in path)]))
    definition = schema.get_type_by_name(type_name)
    assert isinstance(definition, StrawberryObjectDefinition), type_name
    converted = convert_argument(
        coerced,
        definition.origin,
        scalar_registry=schema.schema_converter.scalar_registry,
        config=schema.config,
    )
    try:
        return filter_spec(converted)
    except Invalid as error:
        raise Invalid(error.message, f"{field}.{error.field}" if error.field else field) from error


async def filter_within_segment(
    schema: Any,
    actor: Actor,
    session: AsyncSession,
    value: Any,
    segment_id: str | None,
    *,
    filter_type: str = "CustomerFilter",
) -> dict[str, Any] | None:
    """``value`` parsed as ``filter_type`` (``CustomerFilter`` unless told), within the
    members of the segment ``segment_id`` (one the actor may see; customers only)."""
    parsed = list_filter(schema, filter_type, value, "filter")
    if segment_id is None:
        return parsed
    if filter_type != "CustomerFilter":
        raise Invalid("Segments are of customers", "segmentId")
    segment = await segment_service.get_visible(
        actor, session, decode_id(segment_id, "Segment"), field="segmentId"
    )
    membership = segment_service.membership_of(
        segment, lambda raw: list_filter(schema, "CustomerFilter", raw)
    )
    return dict(segment_service.within(membership, parsed))
