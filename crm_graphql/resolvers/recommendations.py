"""A customer's recommendations and churn risk: batched per page through loaders."""

from typing import Annotated

import strawberry

from crm_graphql import models
from crm_graphql.resolvers.info import Info
from crm_graphql.services import recommendations as recommendation_service


async def recommendations(
    root: models.Customer,
    info: Info,
    first: Annotated[
        int,
        strawberry.argument(
            description=f"How many products, 0 to {recommendation_service.MAX_RECOMMENDATIONS}."
        ),
    ] = 5,
) -> list[recommendation_service.Recommendation]:
    recommendation_service.check_first(first)
    found = await info.context.loaders.recommendations(first).load(root.id)
    return found or []


async def churn_risk(root: models.Customer, info: Info) -> recommendation_service.ChurnRisk | None:
    return await info.context.loaders.churn_risk.load(root.id)
