"""The live dashboard: every report and aggregate field of ``Query``, declared there once
and offered here too, for the ``dashboard`` subscription."""

from __future__ import annotations

import strawberry

from crm_graphql.schema.aggregates import AggregateQuery
from crm_graphql.schema.reports import ReportQuery
from crm_graphql.schema.segments import CohortQuery


@strawberry.type(
    description="Reports and aggregates, the same fields as on `Query`, for the `dashboard` "
    "subscription: select any of them, with their arguments; the whole selection is sent "
    "at once and again whenever its numbers change."
)
class Dashboard(AggregateQuery, ReportQuery, CohortQuery):
    pass
