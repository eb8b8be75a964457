"""Bulk changes of customers: the input turned into the set's filter and the change."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import UNSET

from crm_graphql.resolvers.arguments import filter_spec
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.segments import membership
from crm_graphql.services import bulk
from crm_graphql.services import segments as segment_service
from crm_graphql.services.errors import NotFound

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.bulk import BulkCustomerChangeInput

_bulk = "crm_graphql.schema.bulk"


def change_of(input: Any) -> bulk.BulkChange:
    """The input's change (``Invalid`` when it changes nothing or contradicts itself)."""
    owner: Any = bulk.KEEP
    if input.owner_id is not UNSET:
        owner = None
        if input.owner_id is not None:
            owner = decode_id(input.owner_id, "User")
            if owner is None:
                raise NotFound("User not found", "ownerId")
    return bulk.BulkChange.of(
        add_tags=input.add_tags,
        remove_tags=input.remove_tags,
        owner_id=owner,
        lifecycle_stage=input.lifecycle_stage,
        custom_fields=input.custom_fields,
        archive=bool(input.archive),
    )


async def set_filter(info: Info, input: Any) -> dict[str, Any] | None:
    """The customers the input names: its filter, within its segment's members."""
    spec = filter_spec(input.filter)
    if input.segment_id is None:
        return spec
    return dict(segment_service.within(await membership(info, input.segment_id), spec))


@dataclass
class BulkPreviewValue:
    count: int
    customers: list[Any]


async def bulk_customer_change_preview(
    info: Info,
    input: Annotated["BulkCustomerChangeInput", strawberry.lazy(_bulk)],
    sample: Annotated[
        int, strawberry.argument(description="How many of the customers to show (0 to 100).")
    ] = 10,
) -> BulkPreviewValue:
    context = info.context
    actor = context.require_actor()
    change = change_of(input)
    filter = await set_filter(info, input)
    async with context.read() as session:
        found = await bulk.preview(actor, session, filter, change, sample=sample)
    return BulkPreviewValue(found.count, found.sample)
