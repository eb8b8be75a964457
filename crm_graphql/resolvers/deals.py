"""Pipeline, stage and deal fields and mutations: arguments to service calls."""

from functools import partial
from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, root_list
from crm_graphql.resolvers.mutations import (
    Payload,
    UpsertPayload,
    archive_payload,
    create_payload,
    mutate_payload,
    update_payload,
    upsert_payload,
)
from crm_graphql.services import deals as deal_service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.customers import ArchiveInput
    from crm_graphql.schema.deals import (
        CreateDealInput,
        CreatePipelineInput,
        CreateStageInput,
        DealFilter,
        DealOrder,
        MoveDealInput,
        PipelineFilter,
        PipelineOrder,
        UpdateDealInput,
        UpdatePipelineInput,
        UpdateStageInput,
        UpsertDealsInput,
    )

_activities = "crm_graphql.schema.activities"
_customers = "crm_graphql.schema.customers"
_deals = "crm_graphql.schema.deals"


STAGE_IDS = {"pipeline_id": "Pipeline"}
DEAL_IDS = {
    "pipeline_id": "Pipeline",
    "stage_id": "Stage",
    "customer_id": "Customer",
    "company_id": "Company",
    "owner_id": "User",
}

# ------------------------------------------------------------------------------ lists


async def deals(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["DealFilter", strawberry.lazy(_deals)] | None = None,
    order_by: list[Annotated["DealOrder", strawberry.lazy(_deals)]] | None = None,
    include_archived: bool = False,
) -> ConnectionValue:
    return await root_list(
        info, deal_service.DEALS, first, after, last, before, filter, order_by, include_archived
    )


async def pipelines(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["PipelineFilter", strawberry.lazy(_deals)] | None = None,
    order_by: list[Annotated["PipelineOrder", strawberry.lazy(_deals)]] | None = None,
    include_archived: bool = False,
) -> ConnectionValue:
    return await root_list(
        info, deal_service.PIPELINES, first, after, last, before, filter, order_by, include_archived
    )


# -------------------------------------------------------------------------- relations


# -------------------------------------------------------------------------- mutations
# Arguments are converted inside the mutation so that a bad ID becomes a payload error.


async def create_pipeline(
    info: Info,
    input: Annotated["CreatePipelineInput", strawberry.lazy(_deals)],
) -> Payload:
    return await create_payload(
        info, "pipeline", deal_service.create_pipeline, input, input_changes
    )


async def update_pipeline(
    info: Info,
    input: Annotated["UpdatePipelineInput", strawberry.lazy(_deals)],
) -> Payload:
    return await update_payload(info, "pipeline", "Pipeline", deal_service.update_pipeline, input)


async def archive_pipeline(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    return await archive_payload(info, "pipeline", "Pipeline", deal_service.archive_pipeline, input)


async def create_stage(
    info: Info,
    input: Annotated["CreateStageInput", strawberry.lazy(_deals)],
) -> Payload:
    return await create_payload(
        info, "stage", deal_service.create_stage, input, partial(input_changes, ids=STAGE_IDS)
    )


async def update_stage(
    info: Info,
    input: Annotated["UpdateStageInput", strawberry.lazy(_deals)],
) -> Payload:
    return await update_payload(info, "stage", "Stage", deal_service.update_stage, input)


async def archive_stage(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    return await archive_payload(info, "stage", "Stage", deal_service.archive_stage, input)


async def create_deal(
    info: Info,
    input: Annotated["CreateDealInput", strawberry.lazy(_deals)],
) -> Payload:
    return await create_payload(
        info, "deal", deal_service.create_deal, input, partial(input_changes, ids=DEAL_IDS)
    )


async def update_deal(
    info: Info,
    input: Annotated["UpdateDealInput", strawberry.lazy(_deals)],
) -> Payload:
    return await update_payload(
        info, "deal", "Deal", deal_service.update_deal, input, partial(input_changes, ids=DEAL_IDS)
    )


async def archive_deal(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    return await archive_payload(info, "deal", "Deal", deal_service.archive_deal, input)


async def move_deal(
    info: Info,
    input: Annotated["MoveDealInput", strawberry.lazy(_deals)],
) -> Payload:
    id = decode_id(input.id, "Deal")
    stage_id = decode_id(input.stage_id, "Stage")
    return await mutate_payload(
        info,
        "deal",
        lambda actor, s: deal_service.move_deal(
            actor, s, id, stage_id, expected_version=input.expected_version
        ),
    )


async def upsert_deals(
    info: Info,
    input: Annotated["UpsertDealsInput", strawberry.lazy(_deals)],
) -> UpsertPayload:
    match_on = input.match_on
    return await upsert_payload(
        info,
        "deal",
        input.records,
        partial(input_changes, ids=DEAL_IDS),
        lambda actor, s, batch: deal_service.upsert_deals(actor, s, batch, match_on=match_on),
    )
