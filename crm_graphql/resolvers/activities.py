"""Activity fields and mutations: arguments to service calls."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.services import activities as activity_service

ACTIVITY_IDS = {"customer_id": "Customer", "deal_id": "Deal"}


async def activities(info: Any, *args: Any) -> ConnectionValue:
    first, after, last, before, filter, order_by, include_archived = args
    return await root_list(
        info,
        activity_service.ACTIVITIES,
        filter=filter,
        order_by=order_by,
        first=first,
        after=after,
        last=last,
        before=before,
        include_archived=include_archived,
    )


async def customer(info: Any, root: models.Activity) -> Any:
    return await by_id(info, models.Customer, root.customer_id)


async def deal(info: Any, root: models.Activity) -> Any:
    return await by_id(info, models.Deal, root.deal_id)


async def author(info: Any, root: models.Activity) -> Any:
    return await by_id(info, models.User, root.author_id)


async def create_activity(info: Any, input: Any) -> Payload:
    # Arguments are converted inside the mutation so a bad ID becomes a payload error.
    return await mutate_payload(
        info,
        "activity",
        lambda actor, s: activity_service.create_activity(
            actor, s, input_changes(input, ids=ACTIVITY_IDS)
        ),
    )


async def update_activity(info: Any, input: Any) -> Payload:
    id = decode_id(input.id, "Activity")
    return await mutate_payload(
        info,
        "activity",
        lambda actor, s: activity_service.update_activity(
            actor, s, id, input_changes(input), expected_version=input.expected_version
        ),
    )


async def archive_activity(info: Any, input: Any) -> Payload:
    id = decode_id(input.id, "Activity")
    return await mutate_payload(
        info,
        "activity",
        lambda actor, s: activity_service.archive_activity(
            actor, s, id, expected_version=input.expected_version
        ),
    )
