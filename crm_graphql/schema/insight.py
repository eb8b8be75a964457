"""Types shared by search, aggregates and reports (issue 13)."""

from __future__ import annotations

import strawberry

from crm_graphql.schema.scalars import JSON


@strawberry.type(
    description=(
        "The rows behind a number: pass `filter` as the `filter` argument of the root list "
        "field named by `list` and it returns exactly the rows the number was computed from "
        "(pageable and exportable like any list)."
    )
)
class DrillDown:
    list: str = strawberry.field(description="The root list field, such as `deals`.")
    filter: JSON = strawberry.field(
        description="The list's filter argument, as a client would send it in variables."
    )
