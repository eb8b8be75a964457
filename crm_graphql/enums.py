"""The domain's closed vocabularies (roles, statuses, channels ...): stored by the models,
decided on by the services, and exposed as GraphQL enums by the schema, which therefore
needs nothing of the storage layer to name them."""

from __future__ import annotations

import enum


class DealStatus(enum.StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    AGENT = "agent"
    VIEWER = "viewer"


class Channel(enum.StrEnum):
    CHAT = "chat"
    EMAIL = "email"
    PHONE = "phone"
    SOCIAL = "social"


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"
    CLOSED = "closed"


class MessageAuthorType(enum.StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"
    SYSTEM = "system"


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class LifecycleStage(enum.StrEnum):
    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    QUALIFIED = "qualified"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    EVANGELIST = "evangelist"
    CHURNED = "churned"


class ActivityType(enum.StrEnum):
    NOTE = "note"
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    TASK = "task"
    STAGE_CHANGE = "stage_change"
    SYSTEM = "system"


class ChangeKind(enum.StrEnum):
    """What happened to a row, as the ``changes`` feed names it (the event type is
    ``change.<kind>``, written by the triggers of migration 0022)."""

    CREATED = "created"
    UPDATED = "updated"
    ARCHIVED = "archived"
    ERASED = "erased"


class SyncedType(enum.StrEnum):
    """The types whose changes the ``changes`` feed carries (values: GraphQL type names,
    the change rows' ``entity_type``)."""

    CUSTOMER = "Customer"
    COMPANY = "Company"
    DEAL = "Deal"
    PIPELINE = "Pipeline"
    STAGE = "Stage"
    ACTIVITY = "Activity"
    ORDER = "Order"
    PRODUCT = "Product"
    CONVERSATION = "Conversation"
    MESSAGE = "Message"


class DuplicateField(enum.StrEnum):
    """What two customers that look like one person agree on."""

    EMAIL = "email"  # the same mailbox
    PHONE = "phone"  # the same number
    NAME = "name"  # similar names within the same company


class DeliveryStatus(enum.StrEnum):
    """Where a webhook delivery stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class ApiKeyScope(enum.StrEnum):
    """What a partner API key may do (``services.policy`` grants actions by them)."""

    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    DEALS_READ = "deals:read"
    DEALS_WRITE = "deals:write"
    CONVERSATIONS_READ = "conversations:read"
    CONVERSATIONS_WRITE = "conversations:write"
    WEBHOOKS_MANAGE = "webhooks:manage"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ImportType(enum.StrEnum):
    CUSTOMERS = "customers"
    COMPANIES = "companies"
    DEALS = "deals"
    ORDERS = "orders"
    ACTIVITIES = "activities"


class ImportMode(enum.StrEnum):
    ALL_OR_NOTHING = "all-or-nothing"
    GOOD_ROWS = "good-rows"


class EmailDeliveryStatus(enum.StrEnum):
    """Where an agent's message sent as email stands (``services/email.py``)."""

    PENDING = "pending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"


class EmailDirection(enum.StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"
