"""Pipeline, stage and deal fields and mutations: arguments to service calls."""

from __future__ import annotations

from functools import partial
from typing import Any

from crm_graphql import models
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.lists import ConnectionValue, by_id, child_list, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    archive_payload,
    create_payload,
    mutate_payload,
    update_payload,
)
from crm_graphql.services import activities as activity_service
from crm_graphql.services import deals as deal_service

STAGE_IDS = {"pipeline_id": "Pipeline"}
DEAL_IDS = {
    "pipeline_id": "Pipeline",
    "stage_id": "Stage",
    "customer_id": "Customer",
    "company_id": "Company",
    "owner_id": "User",
}

# ------------------------------------------------------------------------------ lists


async def deals(info: Any, *args: Any) -> ConnectionValue:
    return await root_list(info, deal_service.DEALS, *args)


async def pipelines(info: Any, *args: Any) -> ConnectionValue:
    return await root_list(info, deal_service.PIPELINES, *args)


# -------------------------------------------------------------------------- relations


async def pipeline_stages(info: Any, root: models.Pipeline) -> list[Any]:
    # A board shows all its columns: one page of the largest allowed size, by position.
    page_size = info.context.app.settings.max_page_size
    stages = await child_list(info, deal_service.STAGES, "pipeline_id", root.id, first=page_size)
    return stages.page.items


async def pipeline_deals(info: Any, root: models.Pipeline, *args: Any) -> ConnectionValue:
    return await child_list(info, deal_service.DEALS, "pipeline_id", root.id, *args)


async def stage_pipeline(info: Any, root: models.Stage) -> Any:
    return await by_id(info, models.Pipeline, root.pipeline_id)


async def stage_deals(info: Any, root: models.Stage, *args: Any) -> ConnectionValue:
    return await child_list(info, deal_service.DEALS, "stage_id", root.id, *args)


async def customer(info: Any, root: models.Deal) -> Any:
    return await by_id(info, models.Customer, root.customer_id)


async def company(info: Any, root: models.Deal) -> Any:
    return await by_id(info, models.Company, root.company_id)


async def owner(info: Any, root: models.Deal) -> Any:
    return await by_id(info, models.User, root.owner_id)


async def deal_pipeline(info: Any, root: models.Deal) -> Any:
    return await by_id(info, models.Pipeline, root.pipeline_id)


async def deal_stage(info: Any, root: models.Deal) -> Any:
    return await by_id(info, models.Stage, root.stage_id)


async def deal_activities(info: Any, root: models.Deal, *args: Any) -> ConnectionValue:
    return await child_list(info, activity_service.ACTIVITIES, "deal_id", root.id, *args)


# -------------------------------------------------------------------------- mutations
# Arguments are converted inside the mutation so that a bad ID becomes a payload error.


async def create_pipeline(info: Any, input: Any) -> Payload:
    return await create_payload(
        info, "pipeline", deal_service.create_pipeline, input, input_changes
    )


async def update_pipeline(info: Any, input: Any) -> Payload:
    return await update_payload(info, "pipeline", "Pipeline", deal_service.update_pipeline, input)


async def archive_pipeline(info: Any, input: Any) -> Payload:
    return await archive_payload(info, "pipeline", "Pipeline", deal_service.archive_pipeline, input)


async def create_stage(info: Any, input: Any) -> Payload:
    return await create_payload(
        info, "stage", deal_service.create_stage, input, partial(input_changes, ids=STAGE_IDS)
    )


async def update_stage(info: Any, input: Any) -> Payload:
    return await update_payload(info, "stage", "Stage", deal_service.update_stage, input)


async def archive_stage(info: Any, input: Any) -> Payload:
    return await archive_payload(info, "stage", "Stage", deal_service.archive_stage, input)


async def create_deal(info: Any, input: Any) -> Payload:
    return await create_payload(
        info, "deal", deal_service.create_deal, input, partial(input_changes, ids=DEAL_IDS)
    )


async def update_deal(info: Any, input: Any) -> Payload:
    return await update_payload(
        info, "deal", "Deal", deal_service.update_deal, input, partial(input_changes, ids=DEAL_IDS)
    )


async def archive_deal(info: Any, input: Any) -> Payload:
    return await archive_payload(info, "deal", "Deal", deal_service.archive_deal, input)


async def move_deal(info: Any, input: Any) -> Payload:
    id = decode_id(input.id, "Deal")
    stage_id = decode_id(input.stage_id, "Stage")
    return await mutate_payload(
        info,
        "deal",
        lambda actor, s: deal_service.move_deal(
            actor, s, id, stage_id, expected_version=input.expected_version
        ),
    )
