"""The read side of each domain, declared once: which GraphQL types are rows of which
model, their relations (many-to-one, read through the per-request ``by_id`` loader), their
nested lists (connections paged per parent) with the same ``ListSpec`` the root lists use,
and the visibility rule beyond the workspace.

Everything else is derived from this declaration:
- the schema's relation and nested-list fields (``schema.relay.declared``: type,
  arguments, description);
- their executed resolvers (``relation_resolver``, ``list_resolver`` below);
- what the compiled read path knows (``crm_graphql.compiled``): plain fields are found from
  the Strawberry declarations (a field without a resolver whose Python name is a column of
  the model); relations and lists from here; a field listed nowhere makes the operation
  take the executed path.

Adding a relation or a nested list is one entry here and one ``declared(...)`` line in the
type's schema class (docs/decisions/0006-compiled-reads.md).
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, by_id, child_list
from crm_graphql.services import (
    activities,
    api_keys,
    companies,
    conversations,
    customers,
    deals,
    jobs,
    orders,
    products,
    users,
    webhooks,
)
from crm_graphql.services.events import StoredEvent
from crm_graphql.storage.querying import ListSpec


@dataclass(frozen=True)
class Relation:
    """A many-to-one field read through the per-request ``by_id`` loader (null when unset
    or not visible)."""

    target: str
    foreign_key: str
    description: str


@dataclass(frozen=True)
class ChildCount:
    """Where the number of a parent's live children is kept, exact in every transaction
    (a summary maintained by triggers): the rows of ``model`` whose ``keys`` (its column,
    the parent's column) match the parent, ``column`` summed, in the reader's workspace.
    Valid for the list without a filter and without archived rows (what the summary
    counts); the compiled path reads it there, the executed path (the oracle) counts the
    rows, so the differential tests compare the two."""

    model: type[Any]
    column: str
    keys: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ChildList:
    """A nested connection read through ``child_list`` (``pages_by_parent``); with
    ``items``, a plain list field: the items of one page of the largest size, in the
    list's default order (``Pipeline.stages``). With ``counted``, its unfiltered
    ``totalCount`` may be read from a summary instead of counting the rows."""

    target: str
    spec: ListSpec[Any]
    parent: str
    description: str
    items: bool = False
    counted: ChildCount | None = None


@dataclass(frozen=True)
class Visibility:
    """A rule beyond the workspace for reading a row by id: ``condition(actor)`` over
    ``model``, the row's own (``via`` None) or the one its column ``via`` refers to (a
    message is visible when its conversation is)."""

    condition: Callable[[Any], Any]
    model: type[Any]
    via: str | None = None


@dataclass(frozen=True)
class ObjectType:
    model: type[Any]
    # The schema module declaring the GraphQL type (and its Filter and Order inputs).
    module: str
    relations: dict[str, Relation] = field(default_factory=dict)
    lists: dict[str, ChildList] = field(default_factory=dict)
    # Fields computed by a dedicated builder of the compiler (``address``, ``purchaseSummary``).
    computed: frozenset[str] = frozenset()
    visibility: Visibility | None = None


_SCHEMA = "crm_graphql.schema."

OBJECT_TYPES: dict[str, ObjectType] = {
    "Customer": ObjectType(
        models.Customer,
        _SCHEMA + "customers",
        relations={
            "company": Relation("Company", "company_id", "The company the customer works for."),
            "owner": Relation("User", "owner_id", "The user who owns the relationship."),
            "mergedInto": Relation(
                "Customer", "merged_into_id", "The customer this one was merged into, if any."
            ),
        },
        lists={
            "deals": ChildList("Deal", deals.DEALS, "customer_id", "Deals with this customer."),
            "activities": ChildList(
                "Activity",
                activities.ACTIVITIES,
                "customer_id",
                "Timeline of notes, calls, emails, meetings and tasks (newest first).",
            ),
            "orders": ChildList(
                "Order", orders.ORDERS, "customer_id", "Purchase history (newest first)."
            ),
            "conversations": ChildList(
                "Conversation",
                conversations.CONVERSATIONS,
                "customer_id",
                "Service conversations with this customer.",
            ),
        },
        computed=frozenset({"address", "purchaseSummary", "rfm"}),
    ),
    "Company": ObjectType(
        models.Company,
        _SCHEMA + "companies",
        relations={"owner": Relation("User", "owner_id", "The user who owns the account.")},
        lists={
            "customers": ChildList(
                "Customer",
                customers.CUSTOMERS,
                "company_id",
                "People who work for the company (newest first unless ordered).",
            ),
            "deals": ChildList("Deal", deals.DEALS, "company_id", "Deals with the company."),
        },
        computed=frozenset({"address"}),
    ),
    "Deal": ObjectType(
        models.Deal,
        _SCHEMA + "deals",
        relations={
            "customer": Relation("Customer", "customer_id", "The customer the deal is with."),
            "company": Relation("Company", "company_id", "The company the deal is with."),
            "owner": Relation("User", "owner_id", "The user responsible for the deal."),
            "pipeline": Relation("Pipeline", "pipeline_id", "The pipeline the deal moves through."),
            "stage": Relation("Stage", "stage_id", "The stage the deal is in."),
        },
        lists={
            "activities": ChildList(
                "Activity",
                activities.ACTIVITIES,
                "deal_id",
                "Timeline of the deal, stage changes included (newest first).",
            )
        },
    ),
    "Pipeline": ObjectType(
        models.Pipeline,
        _SCHEMA + "deals",
        lists={
            "deals": ChildList(
                "Deal", deals.DEALS, "pipeline_id", "Deals in the pipeline, whatever their stage."
            ),
            "stages": ChildList(
                "Stage",
                deals.STAGES,
                "pipeline_id",
                "The pipeline's live stages, left to right (by position).",
                items=True,
            ),
        },
    ),
    "Stage": ObjectType(
        models.Stage,
        _SCHEMA + "deals",
        relations={
            "pipeline": Relation("Pipeline", "pipeline_id", "The pipeline the stage belongs to.")
        },
        lists={
            "deals": ChildList(
                "Deal",
                deals.DEALS,
                "stage_id",
                "Deals sitting in this stage.",
                # A deal board's columns count their deals from the summary of migration
                # 0019 (archived deals left out), not by reading ~26,000 rows each (P4).
                counted=ChildCount(
                    models.DealStageTotal,
                    "deal_count",
                    (("pipeline_id", "pipeline_id"), ("stage_id", "id")),
                ),
            )
        },
    ),
    "Activity": ObjectType(
        models.Activity,
        _SCHEMA + "activities",
        relations={
            "customer": Relation(
                "Customer", "customer_id", "The customer whose timeline the entry is on."
            ),
            "deal": Relation("Deal", "deal_id", "The deal the entry is about."),
            "author": Relation(
                "User", "author_id", "The user who logged the entry (null for system entries)."
            ),
        },
    ),
    "Order": ObjectType(
        models.Order,
        _SCHEMA + "orders",
        relations={
            "customer": Relation("Customer", "customer_id", "The customer who placed the order.")
        },
        computed=frozenset({"lines"}),
    ),
    "Product": ObjectType(models.Product, _SCHEMA + "products"),
    "User": ObjectType(models.User, _SCHEMA + "users"),
    # Visible per user (``conversations.visible_condition``: private ones to admins,
    # managers and their assignee); the lists carry the rule in their ListSpec.
    "Conversation": ObjectType(
        models.Conversation,
        _SCHEMA + "conversations",
        relations={
            "customer": Relation(
                "Customer", "customer_id", "The customer the conversation is with."
            ),
            "assignee": Relation("User", "assignee_id", "The agent handling the conversation."),
        },
        lists={
            "messages": ChildList(
                "Message",
                conversations.MESSAGES,
                "conversation_id",
                "Messages, oldest first (by `seq`) unless ordered.",
            )
        },
        computed=frozenset({"rating", "lastMessage", "unreadCount"}),
        visibility=Visibility(conversations.visible_condition, models.Conversation),
    ),
    "Message": ObjectType(
        models.Message,
        _SCHEMA + "conversations",
        relations={
            "author": Relation(
                "User",
                "author_user_id",
                "The agent who wrote the message (null for customer and system).",
            ),
            "conversation": Relation(
                "Conversation", "conversation_id", "The conversation the message belongs to."
            ),
        },
        # The email channel's mail and files (``email.deliveries``, ``attachments_of``).
        computed=frozenset({"delivery", "attachments"}),
        visibility=Visibility(
            conversations.visible_condition, models.Conversation, via="conversation_id"
        ),
    ),
    # Partner keys, read by admins (``api_keys.API_KEYS``).
    "ApiKey": ObjectType(
        models.ApiKey,
        _SCHEMA + "security",
        relations={
            "createdBy": Relation("User", "created_by_id", "The admin who created the key.")
        },
        computed=frozenset({"scopes"}),
    ),
    # Webhook subscriptions (``webhooks.WEBHOOKS``); their newest deliveries with their
    # attempts (``webhooks.recent_deliveries``, ``attempts_of``).
    "Webhook": ObjectType(models.Webhook, _SCHEMA + "webhooks", computed=frozenset({"deliveries"})),
    # Listed by ``customFieldDefinitions`` (oldest first), read by ``node(id)``.
    "CustomFieldDefinition": ObjectType(models.CustomFieldDefinition, _SCHEMA + "custom_fields"),
    # Seen by whoever queued it (a user or an API key), and by admins and managers
    # (``jobs.visible_condition``, what ``job(id)`` and ``node(id)`` load through).
    "Job": ObjectType(
        models.Job,
        _SCHEMA + "jobs",
        relations={
            "createdBy": Relation("User", "created_by_id", "Who started it (null for an API key).")
        },
        computed=frozenset({"counts", "errors"}),
        visibility=Visibility(jobs.visible_condition, models.Job),
    ),
}

# Root connections: field name -> (node type, the list the resolver pages).
ROOT_LISTS: dict[str, tuple[str, ListSpec[Any]]] = {
    "customers": ("Customer", customers.CUSTOMERS),
    "companies": ("Company", companies.COMPANIES),
    "deals": ("Deal", deals.DEALS),
    "pipelines": ("Pipeline", deals.PIPELINES),
    "activities": ("Activity", activities.ACTIVITIES),
    "orders": ("Order", orders.ORDERS),
    "products": ("Product", products.PRODUCTS),
    "users": ("User", users.USERS),
    "conversations": ("Conversation", conversations.CONVERSATIONS),
    "apiKeys": ("ApiKey", api_keys.API_KEYS),
    "webhooks": ("Webhook", webhooks.WEBHOOKS),
}


def generic(container: Any, item: Any) -> Any:
    """``container[item]`` for an item known only at run time (a declared type)."""
    return container[item]


def lazy(type_name: str, module: str) -> Any:
    """A GraphQL type by lazy reference to the schema module that declares it."""
    return Annotated[type_name, strawberry.lazy(module)]


def lazy_type(type_name: str) -> Any:
    """The GraphQL type of a declared object type."""
    return lazy(type_name, OBJECT_TYPES[type_name].module)


# ---------------------------------------------------------------- derived resolvers


def relation_resolver(relation: Relation) -> Callable[..., Any]:
    async def resolve(root: Any, info: Info) -> Any:
        model = OBJECT_TYPES[relation.target].model
        return await by_id(info, model, getattr(root, relation.foreign_key))

    return resolve


def list_resolver(nested: ChildList) -> Callable[..., Any]:
    """A nested list's resolver: the arguments every nested connection takes (the target's
    own filter and order inputs), or none for a plain list of items."""
    if nested.items:

        async def items(root: Any, info: Info) -> list[Any]:
            page_size = info.context.app.settings.max_page_size
            page = await child_list(info, nested.spec, nested.parent, root.id, first=page_size)
            return page.page.items

        return items

    async def connection(
        root: Any,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: Any = None,
        order_by: Any = None,
    ) -> ConnectionValue:
        return await child_list(
            info, nested.spec, nested.parent, root.id, first, after, filter, order_by
        )

    # The target's own inputs, by lazy reference: Strawberry reads the arguments' GraphQL
    # types from these annotations.
    module = OBJECT_TYPES[nested.target].module
    filter_type = lazy(f"{nested.target}Filter", module)
    order_type = lazy(f"{nested.target}Order", module)
    connection.__annotations__.update(
        filter=filter_type | None, order_by=generic(list, order_type) | None
    )
    return connection


# ------------------------------------------------------------------ live events


def _payload_id(event: StoredEvent, key: str) -> uuid.UUID | None:
    value = event.payload.get(key)
    return uuid.UUID(value) if value else None


def _entity_id(
    event: StoredEvent, entity_type: str, otherwise: str | None = None
) -> uuid.UUID | None:
    """The event's entity if it is of ``entity_type``, else the payload's ``otherwise``."""
    if event.entity_type == entity_type:
        return event.entity_id
    return _payload_id(event, otherwise) if otherwise is not None else None


@dataclass(frozen=True)
class EventRelation:
    """A field of a live event that is a row read by id (null when the event names none or
    the reader may not see it): ``id_of`` finds the id in the stored event. Its executed
    resolver and the compiled rendering of events (``CompiledReads.event_plan``) are both
    derived from this entry."""

    target: str
    id_of: Callable[[StoredEvent], uuid.UUID | None]
    description: str


# The relations of each event type (``schema/realtime.py``): its other fields are the
# event's own values (cursor, type, occurredAt, ...).
EVENT_TYPES: dict[str, dict[str, EventRelation]] = {
    "ConversationEvent": {
        "conversation": EventRelation(
            "Conversation",
            lambda e: _payload_id(e, "conversation_id") or e.entity_id,
            "The conversation as it is now.",
        ),
        "message": EventRelation(
            "Message",
            lambda e: _payload_id(e, "message_id"),
            "The new message (message.created), or the message whose email delivery "
            "changed (message.delivery_changed).",
        ),
        "readBy": EventRelation(
            "User",
            lambda e: _payload_id(e, "user_id"),
            "Who read the conversation (conversation.read).",
        ),
        "previousAssignee": EventRelation(
            "User",
            lambda e: _payload_id(e, "previous_assignee_id"),
            "The assignee before the change (conversation.assigned).",
        ),
    },
    "ActivityFeedEvent": {
        "activity": EventRelation(
            "Activity", lambda e: _entity_id(e, "Activity"), "The activity as it is now."
        ),
    },
    "DealBoardEvent": {
        "deal": EventRelation(
            "Deal",
            lambda e: _entity_id(e, "Deal", "deal_id"),
            "The deal as it is now (deal events).",
        ),
        "stage": EventRelation(
            "Stage",
            lambda e: _entity_id(e, "Stage", "stage_id"),
            "The deal's stage, or the changed stage (stage events).",
        ),
        "pipeline": EventRelation(
            "Pipeline",
            lambda e: _payload_id(e, "pipeline_id"),
            "The pipeline of the board the event belongs to.",
        ),
    },
}


def event_relation_resolver(relation: EventRelation) -> Callable[..., Any]:
    async def resolve(root: Any, info: Info) -> Any:
        model = OBJECT_TYPES[relation.target].model
        return await by_id(info, model, relation.id_of(root.event))

    return resolve
