"""``duplicateCandidates``: arguments to the duplicates service, pairs to page values."""

from dataclasses import dataclass
from typing import Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import page_request
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import PageInfoValue
from crm_graphql.services import duplicates as duplicate_service
from crm_graphql.services.duplicates import Candidate
from crm_graphql.services.errors import NotFound


@dataclass
class CandidatesValue:
    """What ``DuplicateCandidates`` reads."""

    candidates: list[Candidate]
    page_info: PageInfoValue


async def duplicate_candidates(
    info: Info,
    first: Annotated[
        int | None,
        strawberry.argument(description="How many pairs at most, best first."),
    ] = None,
    after: Annotated[
        str | None,
        strawberry.argument(description="The `cursor` of the previous page's last pair."),
    ] = None,
    customer_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(description="Only the pairs this customer is in."),
    ] = None,
    min_score: Annotated[
        float | None,
        strawberry.argument(description="Only pairs scoring at least this (0 to 1)."),
    ] = None,
) -> CandidatesValue:
    context = info.context
    actor = context.require_actor()
    size, _, _ = page_request(info, first=first).validated()
    customer = decode_id(customer_id, "Customer") if customer_id is not None else None
    if customer_id is not None and customer is None:
        raise NotFound("Customer not found", "customerId")
    async with context.read() as session:
        page = await duplicate_service.duplicate_candidates(
            actor,
            session,
            first=size,
            after=after,
            customer_id=customer,
            min_score=duplicate_service.MIN_SCORE if min_score is None else min_score,
        )
    return CandidatesValue(
        candidates=page.candidates,
        page_info=PageInfoValue.of(
            [c.cursor for c in page.candidates],
            has_next=page.has_next_page,
            has_previous=after is not None,
        ),
    )


async def customer(root: Candidate, info: Info) -> Any:
    return await info.context.loaders.by_id(models.Customer).load(root.customer_id)


async def duplicate(root: Candidate, info: Info) -> Any:
    return await info.context.loaders.by_id(models.Customer).load(root.duplicate_id)
