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
