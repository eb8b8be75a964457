"""The event catalogue partners receive (webhooks): every event type, what it means and
its payload in the API's language — global IDs (the Relay IDs the API returns), the
API's camelCase names, enum values as the schema spells them (``OPEN``, not ``open``).

The event log stores what the services wrote (snake_case keys, raw UUIDs, stored enum
values: the live subscriptions read it so); ``partner_event`` translates one stored event
into the catalogue's form when a delivery is made, so stored events of any age are sent
in the current payload version. ``docs/events.md`` is generated from ``CATALOGUE``
(``crm-graphql export-events``; a test fails when it drifts), and a test checks that
every event the services write is in it, with no field left out.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crm_graphql.enums import (
    ActivityType,
    Channel,
    ConversationStatus,
    DealStatus,
    EmailDeliveryStatus,
    JobStatus,
    MessageAuthorType,
)
from crm_graphql.global_ids import to_global_id
from crm_graphql.storage.querying import camel_case

# The payload version of ``partner_event``. 1 was the stored form itself (snake_case,
# raw UUIDs), still sent to webhooks created with ``payloadVersion: 1``.
PAYLOAD_VERSION = 2
PAYLOAD_VERSIONS = (1, 2)


@dataclass(frozen=True)
class Field:
    """One payload field: its stored key, its GraphQL type as the API would write it
    (``ID`` of a node type, an enum, a scalar) and what it says."""

    key: str
    graphql_type: str
    description: str
    node: str | None = None  # the node type of an ID (or a list of IDs)
    enum: type[enum.Enum] | None = None
    field_names: bool = False  # a list of stored field names (what changed)

    @property
    def name(self) -> str:
        return camel_case(self.key)

    def translate(self, value: Any) -> Any:
        if value is None:
            return None
        if self.node is not None:
            if isinstance(value, list):
                return [to_global_id(self.node, uuid.UUID(str(v))) for v in value]
            return to_global_id(self.node, uuid.UUID(str(value)))
        if self.enum is not None:
            return self.enum(value).name
        if self.field_names:
            return [camel_case(str(v)) for v in value]
        return value


@dataclass(frozen=True)
class EventType:
    """One type of event: its name, the node type it is about, when it happens, and its
    payload fields."""

    type: str
    entity: str
    description: str
    fields: tuple[Field, ...]

    def field(self, key: str) -> Field | None:
        return next((f for f in self.fields if f.key == key), None)


def _id(key: str, node: str, description: str) -> Field:
    return Field(key, "ID", description, node=node)


def _enum(key: str, cls: type[enum.Enum], description: str) -> Field:
    return Field(key, cls.__name__, description, enum=cls)


VERSION = Field("version", "Int", "The entity's version after the change (`expectedVersion`).")
CHANGED = Field(
    "changed", "[String!]", "The fields that changed, as the API names them.", field_names=True
)

CONVERSATION = (
    _id("conversation_id", "Conversation", "The conversation."),
    _id("customer_id", "Customer", "Its customer."),
    _id("assignee_id", "User", "The agent it is assigned to (null: nobody)."),
    Field("is_private", "Boolean", "Visible to admins, managers and its assignee only."),
    _enum("status", ConversationStatus, "Its status after the change."),
    _enum("channel", Channel, "Where it takes place."),
    Field("last_message_seq", "Int", "Position of its last message (0: none yet)."),
    VERSION,
)
ACTIVITY = (
    _id("activity_id", "Activity", "The activity."),
    _enum("type", ActivityType, "What kind of activity."),
    _id("customer_id", "Customer", "The customer it is about (null: none)."),
    _id("deal_id", "Deal", "The deal it is about (null: none)."),
    _id("author_id", "User", "Who logged it (null: an API key or the system)."),
    Field("occurred_at", "DateTime", "When it happened."),
    VERSION,
)
PIPELINE = (
    _id("pipeline_id", "Pipeline", "The pipeline."),
    Field("name", "String", "Its name."),
    Field("position", "Int", "Its place among the pipelines."),
    VERSION,
)
STAGE = (
    _id("stage_id", "Stage", "The stage."),
    _id("pipeline_id", "Pipeline", "Its pipeline."),
    Field("name", "String", "Its name."),
    Field("position", "Int", "Its place in the pipeline."),
    Field("probability", "Int", "Chance of winning a deal in it, in percent."),
    VERSION,
)
DEAL = (
    _id("deal_id", "Deal", "The deal."),
    _id("pipeline_id", "Pipeline", "Its pipeline."),
    _id("stage_id", "Stage", "Its stage after the change."),
    _enum("status", DealStatus, "Open, won or lost."),
    VERSION,
)
JOB = (
    _id("job_id", "Job", "The job."),
    _enum("status", JobStatus, "Its status then."),
    Field("done", "Int", "Items (rows) processed."),
    Field("total", "Int", "Items in all (null while unknown)."),
    Field("counts", "JSON", "Items by outcome (`created`, `updated`, `failed` ...)."),
    Field("error_count", "Int", "Bad items so far."),
)


def _imported(node: str, plural: str) -> EventType:
    return EventType(
        f"{node.lower()}.imported",
        node,
        f"An import wrote {plural}: one event per chunk of up to 1,000 rows (not one per "
        "row; the change feed has every row).",
        (
            _id("job_id", "Job", "The import job."),
            Field("created_ids", "[ID!]", f"The {plural} it created.", node=node),
            Field("updated_ids", "[ID!]", f"The {plural} it changed.", node=node),
        ),
    )


def _events(*types: EventType) -> dict[str, EventType]:
    return {t.type: t for t in types}


CATALOGUE: dict[str, EventType] = _events(
    EventType("pipeline.created", "Pipeline", "A pipeline was created.", PIPELINE),
    EventType("pipeline.updated", "Pipeline", "A pipeline was renamed or moved.", PIPELINE),
    EventType("pipeline.archived", "Pipeline", "A pipeline was archived.", PIPELINE),
    EventType("stage.created", "Stage", "A stage was added to a pipeline.", STAGE),
    EventType("stage.updated", "Stage", "A stage was renamed, moved or re-weighted.", STAGE),
    EventType("stage.archived", "Stage", "A stage was archived.", STAGE),
    EventType("deal.created", "Deal", "A deal was created.", DEAL),
    EventType("deal.updated", "Deal", "A deal's fields changed.", (*DEAL, CHANGED)),
    EventType(
        "deal.moved",
        "Deal",
        "A deal moved to another stage (a stage-change activity was logged).",
        (
            *DEAL,
            _id("from_stage_id", "Stage", "The stage it left."),
            _id("to_stage_id", "Stage", "The stage it entered."),
            _id("activity_id", "Activity", "The stage-change activity."),
        ),
    ),
    EventType("deal.archived", "Deal", "A deal was archived.", DEAL),
    EventType("activity.created", "Activity", "An activity was logged.", ACTIVITY),
    EventType(
        "activity.updated",
        "Activity",
        "An activity changed (also when erasing a customer blanked its texts).",
        (*ACTIVITY, CHANGED),
    ),
    EventType("activity.archived", "Activity", "An activity was archived.", ACTIVITY),
    EventType(
        "conversation.started",
        "Conversation",
        "A conversation was opened with a customer.",
        (*CONVERSATION, Field("subject", "String", "Its subject.")),
    ),
    EventType(
        "conversation.assigned",
        "Conversation",
        "A conversation was assigned (or unassigned).",
        (*CONVERSATION, _id("previous_assignee_id", "User", "Who had it before.")),
    ),
    EventType(
        "conversation.status_changed",
        "Conversation",
        "A conversation was opened, set pending or closed (also by a message).",
        (
            *CONVERSATION,
            _enum("previous_status", ConversationStatus, "Its status before."),
        ),
    ),
    EventType(
        "conversation.read",
        "Conversation",
        "An agent read a conversation up to a message.",
        (
            *CONVERSATION,
            _id("user_id", "User", "Who read."),
            Field("last_read_seq", "Int", "Position of the last message read."),
        ),
    ),
    EventType(
        "conversation.rated",
        "Conversation",
        "The customer rated a conversation (CSAT).",
        (*CONVERSATION, Field("rating_score", "Int", "1 to 5.")),
    ),
    EventType(
        "message.created",
        "Conversation",
        "A message was added to a conversation.",
        (
            *CONVERSATION,
            _id("message_id", "Message", "The message."),
            Field("seq", "Int", "Its position in the conversation."),
            _enum("author_type", MessageAuthorType, "Who wrote it."),
            _id("author_user_id", "User", "The agent who wrote it (null otherwise)."),
            Field("body", "String", "Its text."),
            Field("client_message_id", "String", "The sender's id for idempotent retries."),
            Field("created_at", "DateTime", "When it was written."),
        ),
    ),
    EventType(
        "message.delivery_changed",
        "Conversation",
        "An agent's message in an EMAIL conversation was sent, is being retried, or failed.",
        (
            *CONVERSATION,
            _id("message_id", "Message", "The message."),
            _enum("delivery_status", EmailDeliveryStatus, "Where its email stands now."),
            Field("attempts", "Int", "Attempts made so far."),
            Field("error", "String", "Why the last attempt failed (null once sent)."),
        ),
    ),
    EventType(
        "customer.erased",
        "Customer",
        "A customer's personal data was erased (`eraseCustomer`).",
        (
            _id("customer_id", "Customer", "The customer erased."),
            Field(
                "erased_ids",
                "[ID!]",
                "Every customer whose data was erased (the same person's records).",
                node="Customer",
            ),
            Field(
                "counts",
                "JSON",
                "How many customers, activities, conversations and messages were erased.",
            ),
        ),
    ),
    _imported("Customer", "customers"),
    _imported("Company", "companies"),
    _imported("Deal", "deals"),
    _imported("Order", "orders"),
    _imported("Activity", "activities"),
    EventType(
        "job.progress",
        "Job",
        "A background job (an import, a bulk action) started or went on a step (a chunk "
        "of rows): one event per step, never per row.",
        JOB,
    ),
    EventType(
        "job.finished",
        "Job",
        "A background job ended: succeeded, failed or cancelled (its last event).",
        JOB,
    ),
)


class UnknownEvent(LookupError):
    """A stored event whose type or field the catalogue does not declare."""


def partner_payload(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload in the catalogue's names and values. ``UnknownEvent`` for a type
    or a key the catalogue does not declare (a test keeps the services within it)."""
    declared = CATALOGUE.get(event_type)
    if declared is None:
        raise UnknownEvent(f"event type {event_type!r} is not in the catalogue")
    translated: dict[str, Any] = {}
    for key, value in payload.items():
        field = declared.field(key)
        if field is None:
            raise UnknownEvent(f"{event_type}: field {key!r} is not in the catalogue")
        translated[field.name] = field.translate(value)
    return translated


def partner_event(
    *,
    id: int,
    type: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    payload: dict[str, Any],
    created_at: str,
) -> dict[str, Any]:
    """The ``event`` object of a webhook body (payload version 2)."""
    return {
        "id": id,
        "type": type,
        "entityType": entity_type,
        "entityId": None if entity_id is None else to_global_id(entity_type, entity_id),
        "createdAt": created_at,
        "data": partner_payload(type, payload),
    }


def markdown(types: Iterable[EventType] | None = None) -> str:
    """``docs/events.md``: the catalogue for people (``crm-graphql export-events``)."""
    lines = [
        "# Webhook event catalogue",
        "",
        "Generated from `crm_graphql/event_catalogue.py` by `crm-graphql export-events "
        '--out docs/events.md`; a test fails when it drifts. README, "Webhooks", says how '
        "deliveries are made, signed and retried.",
        "",
        f"Payload version **{PAYLOAD_VERSION}** (`payloadVersion` in every body). A webhook "
        "receives the version it was created with (`createWebhook(input: {payloadVersion})`, "
        f"default {PAYLOAD_VERSION}; `updateWebhook` moves it). Version 1 is the stored "
        "form (snake_case keys, raw UUIDs, lower-case enum values), kept for receivers "
        "written against it.",
        "",
        "```json",
        "{",
        f'  "payloadVersion": {PAYLOAD_VERSION},',
        '  "deliveryId": "<ID of the WebhookDelivery: the same on every attempt>",',
        '  "webhookId": "<ID of the Webhook>",',
        '  "event": {',
        '    "id": 1234,',
        '    "type": "deal.moved",',
        '    "entityType": "Deal",',
        '    "entityId": "<ID of the Deal>",',
        '    "createdAt": "2026-12-06T01:02:03.456789+00:00",',
        '    "data": {"dealId": "<ID>", "stageId": "<ID>", "status": "OPEN", "...": "..."}',
        "  }",
        "}",
        "```",
        "",
        "`event.id` is the event's position in the event log (increasing, with gaps). IDs "
        "are the global IDs the API returns: pass them to `node(id:)`. Enum values are "
        "spelled as in `schema.graphql`; field names as the API's inputs name them. A field "
        "may be null where its description says so.",
        "",
        "Headers: `X-CRM-Delivery` (the `deliveryId`: the same on retries and "
        "redeliveries, deduplicate by it), `X-CRM-Event` (the type), `X-CRM-Signature: "
        't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the webhook\'s '
        "secret>` (refuse a signature older than 5 minutes). Answer 2xx; anything else is "
        "retried with exponential backoff. `webhooks { nodes { deliveries { status "
        "attemptHistory { statusCode error durationMs attemptedAt } } } }` lists what was "
        "sent; `redeliverWebhookDelivery(input: {id})` sends a delivery again.",
        "",
    ]
    for event in types if types is not None else CATALOGUE.values():
        lines += [
            f"## `{event.type}`",
            "",
            f"{event.description} `entityType`: `{event.entity}`.",
            "",
            "| field | type | meaning |",
            "|---|---|---|",
        ]
        for field in event.fields:
            kind = field.graphql_type
            if field.node is not None:
                kind = f"{kind} ({field.node})"
            lines.append(f"| `{field.name}` | `{kind}` | {field.description} |")
        lines.append("")
    return "\n".join(lines)
