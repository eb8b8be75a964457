"""What the compiled read path knows: which GraphQL types are rows of which model, which of
their fields are relations or nested lists, and which root fields are lists.

Plain fields (a column read as it is stored) are found from the Strawberry declarations:
a field without a resolver whose Python name is a column of the model. Everything with a
resolver must be listed here, with the same service objects (``ListSpec``s, conditions)
the executed path uses; a field listed nowhere makes the operation take the executed path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crm_graphql import models
from crm_graphql.services import (
    activities,
    companies,
    conversations,
    customers,
    deals,
    orders,
    products,
    users,
)
from crm_graphql.storage.querying import ListSpec


@dataclass(frozen=True)
class Relation:
    """A many-to-one field read through the per-request ``by_id`` loader."""

    target: str
    foreign_key: str


@dataclass(frozen=True)
class ChildList:
    """A nested connection read through ``child_list`` (``pages_by_parent``); with
    ``items``, a plain list field: the items of one page of the largest size, in the
    list's default order (``Pipeline.stages``)."""

    target: str
    spec: ListSpec[Any]
    parent: str
    items: bool = False


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
    relations: dict[str, Relation] = field(default_factory=dict)
    lists: dict[str, ChildList] = field(default_factory=dict)
    # Fields computed by a dedicated builder of the compiler (``address``, ``purchaseSummary``).
    computed: frozenset[str] = frozenset()
    visibility: Visibility | None = None


OBJECT_TYPES: dict[str, ObjectType] = {
    "Customer": ObjectType(
        models.Customer,
        relations={
            "company": Relation("Company", "company_id"),
            "owner": Relation("User", "owner_id"),
            "mergedInto": Relation("Customer", "merged_into_id"),
        },
        lists={
            "deals": ChildList("Deal", deals.DEALS, "customer_id"),
            "activities": ChildList("Activity", activities.ACTIVITIES, "customer_id"),
            "orders": ChildList("Order", orders.ORDERS, "customer_id"),
            "conversations": ChildList("Conversation", conversations.CONVERSATIONS, "customer_id"),
        },
        computed=frozenset({"address", "purchaseSummary", "rfm"}),
    ),
    "Company": ObjectType(
        models.Company,
        relations={"owner": Relation("User", "owner_id")},
        lists={
            "customers": ChildList("Customer", customers.CUSTOMERS, "company_id"),
            "deals": ChildList("Deal", deals.DEALS, "company_id"),
        },
        computed=frozenset({"address"}),
    ),
    "Deal": ObjectType(
        models.Deal,
        relations={
            "customer": Relation("Customer", "customer_id"),
            "company": Relation("Company", "company_id"),
            "owner": Relation("User", "owner_id"),
            "pipeline": Relation("Pipeline", "pipeline_id"),
            "stage": Relation("Stage", "stage_id"),
        },
        lists={"activities": ChildList("Activity", activities.ACTIVITIES, "deal_id")},
    ),
    "Pipeline": ObjectType(
        models.Pipeline,
        lists={
            "deals": ChildList("Deal", deals.DEALS, "pipeline_id"),
            "stages": ChildList("Stage", deals.STAGES, "pipeline_id", items=True),
        },
    ),
    "Stage": ObjectType(
        models.Stage,
        relations={"pipeline": Relation("Pipeline", "pipeline_id")},
        lists={"deals": ChildList("Deal", deals.DEALS, "stage_id")},
    ),
    "Activity": ObjectType(
        models.Activity,
        relations={
            "customer": Relation("Customer", "customer_id"),
            "deal": Relation("Deal", "deal_id"),
            "author": Relation("User", "author_id"),
        },
    ),
    "Order": ObjectType(models.Order, relations={"customer": Relation("Customer", "customer_id")}),
    "Product": ObjectType(models.Product),
    "User": ObjectType(models.User),
    # Visible per user (``conversations.visible_condition``: private ones to admins,
    # managers and their assignee); the lists carry the rule in their ListSpec.
    "Conversation": ObjectType(
        models.Conversation,
        relations={
            "customer": Relation("Customer", "customer_id"),
            "assignee": Relation("User", "assignee_id"),
        },
        lists={"messages": ChildList("Message", conversations.MESSAGES, "conversation_id")},
        computed=frozenset({"rating", "lastMessage", "unreadCount"}),
        visibility=Visibility(conversations.visible_condition, models.Conversation),
    ),
    "Message": ObjectType(
        models.Message,
        relations={
            "author": Relation("User", "author_user_id"),
            "conversation": Relation("Conversation", "conversation_id"),
        },
        visibility=Visibility(
            conversations.visible_condition, models.Conversation, via="conversation_id"
        ),
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
}
