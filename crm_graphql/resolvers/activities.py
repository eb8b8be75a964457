"""Activity fields and mutations: arguments to service calls."""

from __future__ import annotations

from functools import partial
from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    update_payload,
)
from crm_graphql.services import activities as activity_service

ACTIVITY_IDS = {"customer_id": "Customer", "deal_id": "Deal"}


async def activities(info: Any, *args: Any) -> ConnectionValue:
    return await root_list(info, activity_service.ACTIVITIES, *args)


async def customer(info: Any, root: models.Activity) -> Any:
    return await by_id(info, models.Customer, root.customer_id)


async def deal(info: Any, root: models.Activity) -> Any:
    return await by_id(info, models.Deal, root.deal_id)


async def author(info: Any, root: models.Activity) -> Any:
    return await by_id(info, models.User, root.author_id)


async def create_activity(info: Any, input: Any) -> Payload:
    return await create_payload(
        info,
        "activity",
        activity_service.create_activity,
        input,
        partial(input_changes, ids=ACTIVITY_IDS),
    )


async def update_activity(info: Any, input: Any) -> Payload:
    return await update_payload(
        info, "activity", "Activity", activity_service.update_activity, input
    )


async def archive_activity(info: Any, input: Any) -> Payload:
    return await archive_payload(
        info, "activity", "Activity", activity_service.archive_activity, input
    )
