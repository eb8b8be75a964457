"""SQLAlchemy tables, one module per domain; importing this registers them all."""

from crm_graphql.models.activities import Activity, ActivityType
from crm_graphql.models.audit import AuditLog
from crm_graphql.models.base import Base, uuid7
from crm_graphql.models.companies import Company
from crm_graphql.models.conversations import (
    Channel,
    Conversation,
    ConversationRead,
    ConversationStatus,
    Message,
    MessageAuthorType,
)
from crm_graphql.models.custom_fields import (
    CustomFieldDefinition,
    CustomFieldEntity,
    CustomFieldType,
)
from crm_graphql.models.customers import Customer, LifecycleStage
from crm_graphql.models.deals import (
    Deal,
    DealCloseTotal,
    DealCohortTotal,
    DealStageChange,
    DealStageTotal,
    DealStatus,
    Pipeline,
    Stage,
)
from crm_graphql.models.email import EmailMessage, MessageAttachment
from crm_graphql.models.events import (
    DeliveryStatus,
    Event,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookDispatchCursor,
)
from crm_graphql.models.jobs import Job, JobFile
from crm_graphql.models.orders import (
    Order,
    OrderHistoryVersion,
    OrderLine,
    OrderMonthTotal,
    OrderStatus,
)
from crm_graphql.models.products import (
    Product,
    ProductBuyers,
    ProductPair,
    ProductPairSnapshot,
)
from crm_graphql.models.rfm import RfmScore, RfmSnapshot
from crm_graphql.models.search import SearchDocument, SearchEntity, SearchTerm
from crm_graphql.models.segments import Segment
from crm_graphql.models.workspaces import (
    ApiKey,
    CredentialRevocation,
    RefreshToken,
    Role,
    User,
    Workspace,
    WorkspaceCredentials,
)

__all__ = [
    "Activity",
    "ActivityType",
    "ApiKey",
    "AuditLog",
    "Base",
    "Channel",
    "Company",
    "Conversation",
    "ConversationRead",
    "ConversationStatus",
    "CredentialRevocation",
    "CustomFieldDefinition",
    "CustomFieldEntity",
    "CustomFieldType",
    "Customer",
    "Deal",
    "DealCloseTotal",
    "DealCohortTotal",
    "DealStageChange",
    "DealStageTotal",
    "DealStatus",
    "DeliveryStatus",
    "EmailMessage",
    "Event",
    "Job",
    "JobFile",
    "LifecycleStage",
    "Message",
    "MessageAttachment",
    "MessageAuthorType",
    "Order",
    "OrderHistoryVersion",
    "OrderLine",
    "OrderMonthTotal",
    "OrderStatus",
    "Pipeline",
    "Product",
    "ProductBuyers",
    "ProductPair",
    "ProductPairSnapshot",
    "RefreshToken",
    "RfmScore",
    "RfmSnapshot",
    "Role",
    "SearchDocument",
    "SearchEntity",
    "SearchTerm",
    "Segment",
    "Stage",
    "User",
    "Webhook",
    "WebhookDelivery",
    "WebhookDeliveryAttempt",
    "WebhookDispatchCursor",
    "Workspace",
    "WorkspaceCredentials",
    "uuid7",
]
