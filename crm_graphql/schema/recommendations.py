"""Recommendations and churn risk in GraphQL: explainable scores on a customer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.schema.scalars import exposed
from crm_graphql.services import recommendations


def risk_levels(**meanings: str) -> dict[str, str]:
    """Each band's meaning with the scores it covers (``recommendations.HIGH_FROM`` ...)."""
    low, high = recommendations.MEDIUM_FROM, recommendations.HIGH_FROM
    return {
        "LOW": f"{meanings['LOW']} Score below {low}.",
        "MEDIUM": f"{meanings['MEDIUM']} Score from {low} to below {high}.",
        "HIGH": f"{meanings['HIGH']} Score {high} or more.",
    }


if TYPE_CHECKING:
    from crm_graphql.schema.products import Product
    from crm_graphql.services.recommendations import Basis as RecommendationBasis
    from crm_graphql.services.recommendations import RiskLevel
else:
    RecommendationBasis = exposed(
        recommendations.Basis,
        "Why a product is recommended: bought together with this customer's purchases, or "
        "popular (the fallback).",
        name="RecommendationBasis",
        SIMILAR_CUSTOMERS="Bought by customers who bought what this customer bought.",
        POPULAR="Bought by the most customers (when the customer's history says too little).",
    )
    RiskLevel = exposed(
        recommendations.RiskLevel,
        "Churn risk band of a score.",
        **risk_levels(
            LOW="Likely to buy again.",
            MEDIUM="Buying less often than usual.",
            HIGH="Overdue by their own rhythm: act now.",
        ),
    )

_products = "crm_graphql.schema.products"


@strawberry.type(description="A product the customer has not bought, with why.")
class Recommendation:
    product: Annotated[Product, strawberry.lazy(_products)] = strawberry.field(
        description="The recommended product."
    )
    score: float = strawberry.field(
        description="Higher is better (6 decimals): the summed cosine similarity to the "
        "customer's purchases, or for POPULAR the share of buying customers who bought it."
    )
    reason: str = strawberry.field(
        description="One line for an agent, such as `Bought by 12 customers who also bought "
        "Espresso Beans`."
    )
    basis: RecommendationBasis = strawberry.field(description="Which method produced it.")


@strawberry.type(description="How likely the customer is to stop buying, and why.")
class ChurnRisk:
    score: float = strawberry.field(description="From 0 (no risk) to 1 (formula: README).")
    level: RiskLevel = strawberry.field(description="LOW, MEDIUM (from 0.35) or HIGH (0.6).")
    reasons: list[str] = strawberry.field(description="What drove the score, strongest first.")
    days_since_last_order: float = strawberry.field(description="Days since the last order.")
    usual_interval_days: float = strawberry.field(
        description="The customer's median number of days between orders."
    )
