"""Likely duplicate customers in GraphQL: ``duplicateCandidates``, reviewed and merged
with ``mergeCustomers`` (docs/decisions/0032)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

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

    @strawberry.field(description="The older of the two: the suggested survivor of a merge.")
    async def customer(self, info: Info) -> Customer:
        return await resolve.customer(info, self.customer_id)  # type: ignore[attr-defined]

    @strawberry.field(description="The newer one: the suggested duplicate to merge into it.")
    async def duplicate(self, info: Info) -> Customer:
        return await resolve.customer(info, self.duplicate_id)  # type: ignore[attr-defined]


@strawberry.type(description="A page of likely duplicates, best first (forward only).")
class DuplicateCandidates:
    candidates: list[DuplicateCandidate] = strawberry.field(description="Best first.")
    page_info: PageInfo = strawberry.field(description="Cursors and whether more candidates exist.")


@strawberry.type
class DuplicateQuery:
    @strawberry.field(
        description="Customers that look like the same person entered twice: the same mailbox "
        "(case, `+tags` and, at Gmail, dots ignored), the same phone number (numbers are "
        "stored in E.164), or similar names within the same company; each pair with a score "
        "and the fields that matched, best first. Only live customers (not archived, merged "
        "or erased) the caller may read; `customerId`: only that customer's pairs; "
        "`minScore` (0 to 1, default 0.55) drops weaker pairs. Review them, then merge with "
        "`mergeCustomers`."
    )
    async def duplicate_candidates(
        self,
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
    ) -> DuplicateCandidates:
        return await resolve.duplicate_candidates(  # type: ignore[return-value]
            info, first, after, customer_id, min_score
        )
