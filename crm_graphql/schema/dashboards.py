"""The live dashboard: every report and aggregate field of ``Query`` (and the segments,
whose member counts are numbers a dashboard shows), declared there once and offered here
too, for the ``dashboard`` subscription."""

from __future__ import annotations

import strawberry

from crm_graphql.schema.aggregates import AggregateQuery
from crm_graphql.schema.reports import ReportQuery
from crm_graphql.schema.segments import CohortQuery, SegmentQuery


@strawberry.type(
    description="Reports, aggregates and segments (with their members' `totalCount`), the "
    "same fields as on `Query`, for the `dashboard` subscription: select any of them, with "
    "their arguments; the whole selection is sent at once and again whenever it changes."
)
class Dashboard(AggregateQuery, ReportQuery, CohortQuery, SegmentQuery):
    pass
