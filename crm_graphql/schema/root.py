"""Assembles Query and Mutation from the domain modules and builds the schema."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from crm_graphql.execution import resolve_lazy_types_once, settle_siblings
from crm_graphql.limits import OperationLimits
from crm_graphql.masking import FormatErrors
from crm_graphql.observability import tracing
from crm_graphql.resolvers import nodes as resolve_nodes
from crm_graphql.resolvers.context import LaggingReads
from crm_graphql.schema.activities import ActivityMutation, ActivityQuery
from crm_graphql.schema.aggregates import AggregateQuery
from crm_graphql.schema.auth import AuthMutation
from crm_graphql.schema.bulk import BulkMutation, BulkQuery
from crm_graphql.schema.companies import CompanyMutation, CompanyQuery
from crm_graphql.schema.conversations import ConversationMutation, ConversationQuery
from crm_graphql.schema.custom_fields import CustomFieldMutation, CustomFieldQuery
from crm_graphql.schema.customers import CustomerMutation, CustomerQuery
from crm_graphql.schema.deals import DealMutation, DealQuery
from crm_graphql.schema.descriptions import describe_schema
from crm_graphql.schema.duplicates import DuplicateQuery
from crm_graphql.schema.executor import EventExecutor
from crm_graphql.schema.exports import ExportMutation
from crm_graphql.schema.imports import ImportMutation
from crm_graphql.schema.jobs import JobMutation, JobQuery
from crm_graphql.schema.orders import OrderMutation, OrderQuery
from crm_graphql.schema.privacy import PrivacyMutation, PrivacyQuery
from crm_graphql.schema.products import ProductMutation, ProductQuery
from crm_graphql.schema.realtime import RealtimeMutation, RealtimeQuery, Subscription
from crm_graphql.schema.relay import Node
from crm_graphql.schema.reports import ReportQuery
from crm_graphql.schema.scalars import SCALAR_OVERRIDES
from crm_graphql.schema.search import SearchQuery
from crm_graphql.schema.security import SecurityMutation, SecurityQuery
from crm_graphql.schema.segments import CohortQuery, SegmentMutation, SegmentQuery
from crm_graphql.schema.sync import SyncQuery
from crm_graphql.schema.users import UserMutation, UserQuery
from crm_graphql.schema.webhooks import WebhookMutation, WebhookQuery
from crm_graphql.schema.workspaces import WorkspaceMutation, WorkspaceQuery


@strawberry.type(description="Everything a client can read.")
class Query(
    UserQuery,
    CustomerQuery,
    CompanyQuery,
    DealQuery,
    ActivityQuery,
    OrderQuery,
    ProductQuery,
    ConversationQuery,
    RealtimeQuery,
    SecurityQuery,
    WebhookQuery,
    PrivacyQuery,
    SearchQuery,
    CustomFieldQuery,
    SegmentQuery,
    CohortQuery,
    AggregateQuery,
    ReportQuery,
    SyncQuery,
    DuplicateQuery,
    BulkQuery,
    JobQuery,
    WorkspaceQuery,
):
    @strawberry.field(description="Any object by its global ID (null when not visible).")
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global ID.")],
    ) -> Node | None:
        return await resolve_nodes.node(info, id)

    @strawberry.field(
        description="Objects by global IDs, in the same order (null when not visible)."
    )
    async def nodes(
        self,
        info: Info,
        ids: Annotated[
            list[strawberry.ID],
            strawberry.argument(description="Global IDs, at most the maximum page size of them."),
        ],
    ) -> list[Node | None]:
        return await resolve_nodes.nodes(info, list(ids))


@strawberry.type(description="Everything a client can change.")
class Mutation(
    AuthMutation,
    UserMutation,
    CustomerMutation,
    CompanyMutation,
    DealMutation,
    ActivityMutation,
    OrderMutation,
    ProductMutation,
    ConversationMutation,
    RealtimeMutation,
    SecurityMutation,
    WebhookMutation,
    PrivacyMutation,
    CustomFieldMutation,
    SegmentMutation,
    ExportMutation,
    JobMutation,
    BulkMutation,
    ImportMutation,
    WorkspaceMutation,
):
    pass


class CrmSchema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """Nothing: ``FormatErrors`` logs unexpected errors once, with the request id
        (Strawberry would log every error, validation and domain errors included)."""

    def get_extensions(self, sync: bool = False) -> list[Any]:
        """The schema's extensions, and spans for each operation's steps while the process
        traces (``observability.tracing``; nothing to run otherwise)."""
        extensions = super().get_extensions(sync)
        if tracing.enabled():
            extensions.insert(0, tracing.graphql_extension())
        return extensions


def build_schema(**kwargs: Any) -> strawberry.Schema:
    """The schema. ``OperationLimits`` parses and validates with caches keyed by the
    document's text and applies the query limits; ``FormatErrors`` gives every error its
    client form (codes, masking) on HTTP and WebSocket alike. Sibling fields settle
    before an error propagates (``crm_graphql.execution``); ``EventExecutor`` runs each
    subscription event without leaving state in the subscription's executor;
    ``LaggingReads`` sends a query's reads to the replica when they may lag."""
    settle_siblings()
    resolve_lazy_types_once()
    built = CrmSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[FormatErrors, OperationLimits, LaggingReads],
        scalar_overrides=SCALAR_OVERRIDES,
        execution_context_class=EventExecutor,
        **kwargs,
    )
    # Strawberry serves, introspects and prints the graphql-core schema it keeps in
    # ``_schema`` (no public accessor in 0.341): the derived descriptions go there, once.
    describe_schema(built._schema)
    return built


schema = build_schema()
