"""Activity fields and mutations: arguments to service calls."""

from functools import partial
from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    update_payload,
)
from crm_graphql.services import activities as activity_service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.activities import (
        ActivityFilter,
        ActivityOrder,
        CreateActivityInput,
        UpdateActivityInput,
    )
    from crm_graphql.schema.customers import ArchiveInput

_activities = "crm_graphql.schema.activities"
_customers = "crm_graphql.schema.customers"


ACTIVITY_IDS = {"customer_id": "Customer", "deal_id": "Deal"}


async def activities(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["ActivityFilter", strawberry.lazy(_activities)] | None = None,
    order_by: list[Annotated["ActivityOrder", strawberry.lazy(_activities)]] | None = None,
    include_archived: bool = False,
) -> ConnectionValue:
    return await root_list(
        info,
        activity_service.ACTIVITIES,
        first,
        after,
        last,
        before,
        filter,
        order_by,
        include_archived,
    )


async def create_activity(
    info: Info,
    input: Annotated["CreateActivityInput", strawberry.lazy(_activities)],
) -> Payload:
    return await create_payload(
        info,
        "activity",
        partial(activity_service.create_activity, alone=True),  # the mutation's only write
        input,
        partial(input_changes, ids=ACTIVITY_IDS),
    )


async def update_activity(
    info: Info,
    input: Annotated["UpdateActivityInput", strawberry.lazy(_activities)],
) -> Payload:
    return await update_payload(
        info, "activity", "Activity", activity_service.update_activity, input
    )


async def archive_activity(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    return await archive_payload(
        info, "activity", "Activity", activity_service.archive_activity, input
    )
