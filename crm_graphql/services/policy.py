"""Who may do what: the one table of roles and API-key scopes per action.

Every service call that reads or changes data names its ``Action`` and calls ``authorize``;
reads are checked where every read starts (``actor.scoped``), by the model read, so a
nested field (a customer's deals) is refused exactly like the root list. A user is
allowed by role, an API key by scope (any of the listed scopes; keys have no role).
``docs/permissions.md`` shows this table per GraphQL operation, and a test runs every
operation as every role and key to prove the two agree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crm_graphql import models
from crm_graphql.enums import ApiKeyScope
from crm_graphql.models import Role
from crm_graphql.services.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from crm_graphql.services.actor import Actor

# The scopes as the stored strings (``api_keys.scopes``); declared in ``enums.ApiKeyScope``.
CUSTOMERS_READ = ApiKeyScope.CUSTOMERS_READ.value
CUSTOMERS_WRITE = ApiKeyScope.CUSTOMERS_WRITE.value
DEALS_READ = ApiKeyScope.DEALS_READ.value
DEALS_WRITE = ApiKeyScope.DEALS_WRITE.value
CONVERSATIONS_READ = ApiKeyScope.CONVERSATIONS_READ.value
CONVERSATIONS_WRITE = ApiKeyScope.CONVERSATIONS_WRITE.value
WEBHOOKS_MANAGE = ApiKeyScope.WEBHOOKS_MANAGE.value
SCOPES = frozenset(
    {
        CUSTOMERS_READ,
        CUSTOMERS_WRITE,
        DEALS_READ,
        DEALS_WRITE,
        CONVERSATIONS_READ,
        CONVERSATIONS_WRITE,
        WEBHOOKS_MANAGE,
    }
)


class Action(enum.StrEnum):
    READ_CUSTOMERS = "customers.read"  # customers, companies, orders, products
    WRITE_CUSTOMERS = "customers.write"
    ARCHIVE_CUSTOMERS = "customers.archive"
    MERGE_CUSTOMERS = "customers.merge"
    EXPORT_CUSTOMER_DATA = "customers.export"
    ERASE_CUSTOMER = "customers.erase"
    READ_DEALS = "deals.read"  # deals, pipelines, stages
    WRITE_DEALS = "deals.write"
    ARCHIVE_DEALS = "deals.archive"
    MANAGE_PIPELINES = "pipelines.manage"
    READ_ACTIVITIES = "activities.read"
    WRITE_ACTIVITIES = "activities.write"
    ARCHIVE_ACTIVITIES = "activities.archive"
    READ_CONVERSATIONS = "conversations.read"  # conversations, messages, typing, presence
    WRITE_CONVERSATIONS = "conversations.write"  # start, assign, status
    SEND_AGENT_MESSAGES = "conversations.send"  # as the signed-in agent
    POST_CUSTOMER_MESSAGES = "conversations.post_customer"  # a channel integration
    RATE_CONVERSATIONS = "conversations.rate"  # the customer's CSAT, by a channel integration
    KEEP_READ_RECEIPTS = "conversations.read_receipts"
    READ_USERS = "users.read"
    MANAGE_USERS = "users.manage"
    MANAGE_API_KEYS = "api_keys.manage"
    READ_AUDIT_LOG = "audit.read"
    MANAGE_WEBHOOKS = "webhooks.manage"
    READ_SENSITIVE_FIELDS = "customers.read_sensitive"  # values of sensitive custom fields
    MANAGE_SENSITIVE_FIELDS = "customers.sensitive_fields"  # which custom fields are
    READ_CUSTOM_FIELDS = "custom_fields.read"  # definitions (forms and filters need them)
    MANAGE_CUSTOM_FIELDS = "custom_fields.manage"  # define, change, archive
    WRITE_SEGMENTS = "segments.write"  # save, share, change and archive one's own segments
    MANAGE_SHARED_SEGMENTS = "segments.manage_shared"  # change and archive others' shared ones
    READ_JOBS = "jobs.read"  # one's own jobs; admins and managers every job (services.jobs)
    MANAGE_JOBS = "jobs.manage"  # cancel others' jobs
    MANAGE_WORKSPACE_SETTINGS = "workspace.settings"  # the From of outgoing mail, ...


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]  # users of these roles may
    scopes: frozenset[str]  # API keys holding any of these may; empty: no key may


EVERYONE = frozenset(Role)
WRITERS = frozenset({Role.ADMIN, Role.MANAGER, Role.AGENT})
MANAGERS = frozenset({Role.ADMIN, Role.MANAGER})
ADMINS = frozenset({Role.ADMIN})
NOBODY: frozenset[Role] = frozenset()
NO_KEY: frozenset[str] = frozenset()


def _scopes(*scopes: str) -> frozenset[str]:
    return frozenset(scopes)


RULES: dict[Action, Rule] = {
    Action.READ_CUSTOMERS: Rule(EVERYONE, _scopes(CUSTOMERS_READ, CUSTOMERS_WRITE)),
    Action.WRITE_CUSTOMERS: Rule(WRITERS, _scopes(CUSTOMERS_WRITE)),
    Action.ARCHIVE_CUSTOMERS: Rule(MANAGERS, _scopes(CUSTOMERS_WRITE)),
    Action.MERGE_CUSTOMERS: Rule(MANAGERS, NO_KEY),
    Action.EXPORT_CUSTOMER_DATA: Rule(MANAGERS, NO_KEY),
    Action.ERASE_CUSTOMER: Rule(ADMINS, NO_KEY),
    Action.READ_DEALS: Rule(EVERYONE, _scopes(DEALS_READ, DEALS_WRITE)),
    Action.WRITE_DEALS: Rule(WRITERS, _scopes(DEALS_WRITE)),
    Action.ARCHIVE_DEALS: Rule(MANAGERS, _scopes(DEALS_WRITE)),
    Action.MANAGE_PIPELINES: Rule(MANAGERS, NO_KEY),
    # Activities hang off customers and deals: either side's scope reaches them.
    Action.READ_ACTIVITIES: Rule(
        EVERYONE, _scopes(CUSTOMERS_READ, CUSTOMERS_WRITE, DEALS_READ, DEALS_WRITE)
    ),
    Action.WRITE_ACTIVITIES: Rule(WRITERS, _scopes(CUSTOMERS_WRITE, DEALS_WRITE)),
    Action.ARCHIVE_ACTIVITIES: Rule(WRITERS, _scopes(CUSTOMERS_WRITE, DEALS_WRITE)),
    Action.READ_CONVERSATIONS: Rule(EVERYONE, _scopes(CONVERSATIONS_READ, CONVERSATIONS_WRITE)),
    Action.WRITE_CONVERSATIONS: Rule(WRITERS, _scopes(CONVERSATIONS_WRITE)),
    Action.SEND_AGENT_MESSAGES: Rule(WRITERS, NO_KEY),
    Action.POST_CUSTOMER_MESSAGES: Rule(NOBODY, _scopes(CONVERSATIONS_WRITE)),
    # A rating is the customer's word, brought in like the customer's messages: an agent
    # rating their own conversations would make CSAT meaningless.
    Action.RATE_CONVERSATIONS: Rule(NOBODY, _scopes(CONVERSATIONS_WRITE)),
    Action.KEEP_READ_RECEIPTS: Rule(EVERYONE, NO_KEY),
    # Owners, authors and assignees appear all over the graph: any key may read them.
    Action.READ_USERS: Rule(EVERYONE, SCOPES),
    Action.MANAGE_USERS: Rule(ADMINS, NO_KEY),
    Action.MANAGE_API_KEYS: Rule(ADMINS, NO_KEY),
    Action.READ_AUDIT_LOG: Rule(ADMINS, NO_KEY),
    Action.MANAGE_WEBHOOKS: Rule(ADMINS, _scopes(WEBHOOKS_MANAGE)),
    # Users who work with customers read sensitive values; viewers and keys get null.
    Action.READ_SENSITIVE_FIELDS: Rule(WRITERS, NO_KEY),
    Action.MANAGE_SENSITIVE_FIELDS: Rule(ADMINS, NO_KEY),
    Action.READ_CUSTOM_FIELDS: Rule(EVERYONE, SCOPES),
    Action.MANAGE_CUSTOM_FIELDS: Rule(MANAGERS, NO_KEY),
    # A segment belongs to a person (private ones are theirs): keys read shared ones only.
    Action.WRITE_SEGMENTS: Rule(WRITERS, NO_KEY),
    Action.MANAGE_SHARED_SEGMENTS: Rule(MANAGERS, NO_KEY),
    # A job is read and cancelled by whoever started it (any key may start one its scopes
    # allow: an import needs the write scope of what it imports).
    Action.READ_JOBS: Rule(EVERYONE, SCOPES),
    # What the workspace says to the outside world (its mail's From) is an admin's call.
    Action.MANAGE_WORKSPACE_SETTINGS: Rule(ADMINS, NO_KEY),
    Action.MANAGE_JOBS: Rule(MANAGERS, NO_KEY),
}

# What reading rows of a model takes (``actor.scoped`` checks it on every read).
READ_ACTIONS: dict[type[Any], Action] = {
    models.Customer: Action.READ_CUSTOMERS,
    models.Company: Action.READ_CUSTOMERS,
    models.Order: Action.READ_CUSTOMERS,
    models.OrderMonthTotal: Action.READ_CUSTOMERS,  # sums of orders
    models.Segment: Action.READ_CUSTOMERS,
    models.OrderLine: Action.READ_CUSTOMERS,
    models.Product: Action.READ_CUSTOMERS,
    models.RfmScore: Action.READ_CUSTOMERS,
    models.ProductBuyers: Action.READ_CUSTOMERS,
    models.ProductPair: Action.READ_CUSTOMERS,
    models.Deal: Action.READ_DEALS,
    models.Pipeline: Action.READ_DEALS,
    models.Stage: Action.READ_DEALS,
    models.DealStageChange: Action.READ_DEALS,
    models.DealStageTotal: Action.READ_DEALS,  # sums of deals
    models.DealCohortTotal: Action.READ_DEALS,
    models.DealCloseTotal: Action.READ_DEALS,
    models.Activity: Action.READ_ACTIVITIES,
    models.Conversation: Action.READ_CONVERSATIONS,
    models.Message: Action.READ_CONVERSATIONS,
    models.ConversationRead: Action.READ_CONVERSATIONS,
    models.EmailMessage: Action.READ_CONVERSATIONS,
    models.MessageAttachment: Action.READ_CONVERSATIONS,
    models.User: Action.READ_USERS,
    models.ApiKey: Action.MANAGE_API_KEYS,
    models.AuditLog: Action.READ_AUDIT_LOG,
    models.Webhook: Action.MANAGE_WEBHOOKS,
    models.WebhookDelivery: Action.MANAGE_WEBHOOKS,
    models.CustomFieldDefinition: Action.READ_CUSTOM_FIELDS,
    models.Job: Action.READ_JOBS,
}


def allows(actor: Actor, action: Action) -> bool:
    rule = RULES[action]
    if actor.api_key_id is not None:
        return bool(rule.scopes & actor.scopes)
    return actor.role in rule.roles


def authorize(actor: Actor | None, action: Action) -> Actor:
    """Return the actor if it may perform ``action``; raise ``Unauthenticated`` or
    ``Forbidden`` (naming the missing scope for a key, the role for a user)."""
    if actor is None:
        raise Unauthenticated()
    if allows(actor, action):
        return actor
    rule = RULES[action]
    if actor.api_key_id is not None:
        if not rule.scopes:
            raise Forbidden(f"API keys cannot {_verb(action)}; sign in as a user")
        needed = " or ".join(sorted(rule.scopes))
        raise Forbidden(f"This API key lacks the scope to {_verb(action)} ({needed})")
    if not rule.roles:
        raise Forbidden(f"Only an API key may {_verb(action)}")
    raise Forbidden(f"The {actor.role.value} role cannot {_verb(action)}")


def authorize_read(actor: Actor | None, model: type[Any]) -> Actor:
    """``authorize`` for reading rows of ``model``."""
    return authorize(actor, READ_ACTIONS[model])


def _verb(action: Action) -> str:
    return _VERBS.get(action, action.value.replace(".", " ").replace("_", " "))


_VERBS = {
    Action.READ_CUSTOMERS: "read customers, companies and orders",
    Action.WRITE_CUSTOMERS: "change customers, companies and orders",
    Action.ARCHIVE_CUSTOMERS: "archive customers, companies and orders",
    Action.MERGE_CUSTOMERS: "merge customers",
    Action.EXPORT_CUSTOMER_DATA: "export a customer's data",
    Action.ERASE_CUSTOMER: "erase a customer",
    Action.READ_DEALS: "read deals and pipelines",
    Action.WRITE_DEALS: "change deals",
    Action.ARCHIVE_DEALS: "archive deals",
    Action.MANAGE_PIPELINES: "manage pipelines and stages",
    Action.READ_ACTIVITIES: "read activities",
    Action.WRITE_ACTIVITIES: "log and change activities",
    Action.ARCHIVE_ACTIVITIES: "archive activities",
    Action.READ_CONVERSATIONS: "read conversations",
    Action.WRITE_CONVERSATIONS: "start, assign or close conversations",
    Action.SEND_AGENT_MESSAGES: "send agent messages",
    Action.POST_CUSTOMER_MESSAGES: "post messages as the customer",
    Action.RATE_CONVERSATIONS: "rate conversations as the customer",
    Action.KEEP_READ_RECEIPTS: "keep read receipts",
    Action.READ_USERS: "read users",
    Action.MANAGE_USERS: "manage users",
    Action.MANAGE_API_KEYS: "manage API keys",
    Action.READ_AUDIT_LOG: "read the audit log",
    Action.MANAGE_WEBHOOKS: "manage webhooks",
    Action.READ_SENSITIVE_FIELDS: "read sensitive custom fields",
    Action.MANAGE_SENSITIVE_FIELDS: "choose sensitive custom fields",
    Action.READ_CUSTOM_FIELDS: "read custom field definitions",
    Action.MANAGE_CUSTOM_FIELDS: "define custom fields",
    Action.WRITE_SEGMENTS: "save, share or change segments",
    Action.MANAGE_SHARED_SEGMENTS: "change or archive segments others shared",
    Action.READ_JOBS: "read jobs",
    Action.MANAGE_JOBS: "see or cancel other people's jobs",
    Action.MANAGE_WORKSPACE_SETTINGS: "read or change the workspace's settings",
}
