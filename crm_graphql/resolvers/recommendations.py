"""A customer's recommendations and churn risk: batched per page through loaders."""

from __future__ import annotations

from typing import Any

from crm_graphql import models
from crm_graphql.services import recommendations as recommendation_service


async def recommendations(
    info: Any, root: models.Customer, first: int
) -> list[recommendation_service.Recommendation]:
    recommendation_service.check_first(first)
    found = await info.context.loaders.recommendations(first).load(root.id)
    return found or []


async def churn_risk(info: Any, root: models.Customer) -> recommendation_service.ChurnRisk | None:
    return await info.context.loaders.churn_risk.load(root.id)  # type: ignore[no-any-return]
