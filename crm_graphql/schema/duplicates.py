"""Likely duplicate customers in GraphQL: ``duplicateCandidates``, reviewed and merged
with ``mergeCustomers`` (docs/decisions/0032)."""

from __future__ import annotations

import strawberry

from crm_graphql.resolvers import duplicates as resolve
from crm_graphql.schema.customers import Customer
from crm_graphql.schema.relay import PageInfo
from crm_graphql.schema.scalars import DuplicateField


@strawberry.type(description="A field two likely duplicates agree on.")
class DuplicateMatch:
    field: DuplicateField = strawberry.field(description="Which field.")
    similarity: float = strawberry.field(
        description="How alike the values are, 0 to 1 (1: the same mailbox or number)."
    )


@strawberry.type(
    description="Two customers that look like one person. Merge them with `mergeCustomers` "
    "(`survivorId`: usually `customer`, `mergedIds`: [`duplicate`])."
)
class DuplicateCandidate:
    cursor: str = strawberry.field(description="Pass as `after` for the candidates after it.")
    score: float = strawberry.field(
        description="0 to 1, higher first: each matching field adds evidence, combined as "
        "1 - (1 - a)(1 - b)...: the same mailbox 0.9, the same number 0.8 x (0.3 + 0.7 x the "
        "names' similarity) (offices and families share numbers), names alike within a "
        "company 0.75 x their similarity."
    )
    matches: list[DuplicateMatch] = strawberry.field(description="The fields that matched.")
    name_similarity: float = strawberry.field(
        description="How alike the two names are, 0 to 1 (case, accents and word order ignored)."
    )

    customer = strawberry.field(
        resolver=resolve.customer,
        graphql_type=Customer,
        description="The older of the two: the suggested survivor of a merge.",
    )

    duplicate = strawberry.field(
        resolver=resolve.duplicate,
        graphql_type=Customer,
        description="The newer one: the suggested duplicate to merge into it.",
    )


@strawberry.type(description="A page of likely duplicates, best first (forward only).")
class DuplicateCandidates:
    candidates: list[DuplicateCandidate] = strawberry.field(description="Best first.")
    page_info: PageInfo = strawberry.field(description="Cursors and whether more candidates exist.")


@strawberry.type
class DuplicateQuery:
    duplicate_candidates = strawberry.field(
        resolver=resolve.duplicate_candidates,
        graphql_type=DuplicateCandidates,
        description="Customers that look like the same person entered twice: the same mailbox "
        "(case, `+tags` and, at Gmail, dots ignored), the same phone number (numbers are "
        "stored in E.164), or similar names within the same company; each pair with a score "
        "and the fields that matched, best first. Only live customers (not archived, merged "
        "or erased) the caller may read; `customerId`: only that customer's pairs; "
        "`minScore` (0 to 1, default 0.55) drops weaker pairs. Review them, then merge with "
        "`mergeCustomers`.",
    )
