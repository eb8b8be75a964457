"""Shared value types: money, addresses, JSON, and the domain enums exposed to GraphQL."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import strawberry
from strawberry.scalars import JSON
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

from crm_graphql import enums
from crm_graphql.services import rfm
from crm_graphql.services.fields import stored_instant

E = TypeVar("E", bound=enum.Enum)


def exposed(domain: type[E], description: str, name: str | None = None, **values: str) -> Any:
    """``domain``, an enum of the services, as a GraphQL enum with a description for each
    value (every value needs one: a missing or unknown name is an error at import)."""
    exposed_enum: Any = strawberry.enum(domain, name=name, description=description)
    definition = exposed_enum.__strawberry_definition__
    if set(values) != {value.name for value in definition.values}:
        raise ValueError(f"{domain.__name__}: describe exactly its values")
    for value in definition.values:
        value.description = values[value.name]
    return exposed_enum


def rfm_segments(**meanings: str) -> dict[str, str]:
    """Each segment's meaning with the scores that make it (``rfm.SEGMENT_MAP``)."""
    described = {}
    for segment, (r_low, r_high), (fm_low, fm_high) in rfm.SEGMENT_MAP:
        r = f"{r_low}" if r_low == r_high else f"{r_low}-{r_high}"
        fm = f"{fm_low}" if fm_low == fm_high else f"{fm_low}-{fm_high}"
        scores = f"Recency {r}, frequency and monetary {fm}."
        described[segment.name] = f"{meanings[segment.name]} {scores}"
    return described


if TYPE_CHECKING:
    # strawberry.enum registers and returns the domain's own enum class; say so to mypy.
    from crm_graphql.enums import (
        ActivityType,
        ChangeKind,
        Channel,
        ConversationStatus,
        DealStatus,
        DuplicateField,
        EmailDeliveryStatus,
        EmailDirection,
        ImportMode,
        ImportType,
        JobStatus,
        LifecycleStage,
        MessageAuthorType,
        OrderStatus,
        Role,
        SyncedType,
    )
    from crm_graphql.services.rfm import RfmSegment
else:
    LifecycleStage = exposed(
        enums.LifecycleStage,
        "Where a customer is in the funnel.",
        SUBSCRIBER="Receives news or content; not yet a sales lead.",
        LEAD="Showed interest; not yet qualified.",
        QUALIFIED="Has a need, budget and intent that sales confirmed.",
        OPPORTUNITY="Has an open deal.",
        CUSTOMER="Has bought.",
        EVANGELIST="A customer who recommends the business to others.",
        CHURNED="Was a customer and stopped buying.",
    )
    Role = exposed(
        enums.Role,
        "What a user may do in the workspace (docs/permissions.md has the full table).",
        ADMIN="Everything, including users, API keys, webhooks, the audit log and erasure.",
        MANAGER="Everything an agent does, plus archiving, merging, pipelines, custom field "
        "definitions, shared segments and customer data exports.",
        AGENT="Reads everything and creates and changes customers, companies, deals, "
        "activities, orders, products and conversations.",
        VIEWER="Reads, changes nothing.",
    )
    DealStatus = exposed(
        enums.DealStatus,
        "Open, or closed as won or lost.",
        OPEN="Still being worked on.",
        WON="Closed: the customer bought.",
        LOST="Closed: the customer did not buy (see `lostReason`).",
    )
    ActivityType = exposed(
        enums.ActivityType,
        "Kind of timeline entry.",
        NOTE="A written note.",
        CALL="A phone call.",
        EMAIL="An email sent or received.",
        MEETING="A meeting.",
        TASK="Something to do, with a due time, done when completed.",
        STAGE_CHANGE="A deal moved to another stage (written by the server).",
        SYSTEM="Recorded by the server itself.",
    )
    OrderStatus = exposed(
        enums.OrderStatus,
        "Where an order stands.",
        PENDING="Placed, not paid yet.",
        PAID="Paid (counted in purchase summaries and reports).",
        FULFILLED="Paid and delivered (counted in purchase summaries and reports).",
        CANCELLED="Called off before it was paid.",
        REFUNDED="Paid, then paid back.",
    )
    Channel = exposed(
        enums.Channel,
        "How a conversation reaches us.",
        CHAT="Live chat.",
        EMAIL="Emails.",
        PHONE="Phone calls.",
        SOCIAL="A social network.",
    )
    ConversationStatus = exposed(
        enums.ConversationStatus,
        "Open, pending or closed.",
        OPEN="Being handled by the team.",
        PENDING="Waiting for the customer; their next message opens it again.",
        CLOSED="Done; any new message opens it again.",
    )
    EmailDeliveryStatus = exposed(
        enums.EmailDeliveryStatus,
        "Where an agent's message sent as email stands.",
        PENDING="Waiting to be handed to the mail relay.",
        RETRYING="The last attempt failed (see `error`); another follows at `nextAttemptAt`.",
        SENT="The mail relay accepted the mail.",
        FAILED="Not sent, for good: see `error` for the reason.",
    )
    EmailDirection = exposed(
        enums.EmailDirection,
        "Which way an email went.",
        OUTBOUND="Sent to the customer (an agent's message).",
        INBOUND="Received from the customer.",
    )
    MessageAuthorType = exposed(
        enums.MessageAuthorType,
        "Who wrote a message.",
        AGENT="A user of the workspace.",
        CUSTOMER="The customer the conversation is with.",
        SYSTEM="Written by the server itself, not by a person.",
    )
    ChangeKind = exposed(
        enums.ChangeKind,
        "What a change did: created, updated, archived (merged duplicates too) or erased "
        "(a customer's personal data removed).",
        CREATED="The object was created (or existed when the change feed was installed).",
        UPDATED="Some of its fields changed (listed in the change's `fields`).",
        ARCHIVED="It was archived, or merged into another customer.",
        ERASED="A customer's personal data was erased (GDPR).",
    )
    DuplicateField = exposed(
        enums.DuplicateField,
        "What two likely duplicate customers agree on.",
        EMAIL="The same mailbox (case, `+tags` and Gmail dots ignored).",
        PHONE="The same phone number (E.164).",
        NAME="Similar names within the same company.",
    )
    SyncedType = exposed(
        enums.SyncedType,
        "The types whose changes `changes` carries.",
        CUSTOMER="Customers.",
        COMPANY="Companies.",
        DEAL="Deals.",
        PIPELINE="Pipelines.",
        STAGE="Pipeline stages.",
        ACTIVITY="Activities (notes, calls, emails, meetings, tasks).",
        ORDER="Orders.",
        PRODUCT="Products of the catalogue.",
        CONVERSATION="Conversations.",
        MESSAGE="Messages of conversations.",
    )
    JobStatus = exposed(
        enums.JobStatus,
        "Where a background job stands.",
        QUEUED="Waiting for a server process to start it.",
        RUNNING="Being run (see `done` and `total`).",
        SUCCEEDED="Finished; see `counts`, `errors` and `result`.",
        FAILED="Stopped by an error (`result.message`); what it committed stays, see its kind.",
        CANCELLED="Stopped at its creator's (or a manager's) request.",
    )
    ImportType = exposed(
        enums.ImportType,
        "What the rows of an import file are.",
        CUSTOMERS="Customers (upserted by email, external id or a custom field).",
        COMPANIES="Companies (upserted by domain when the file has one).",
        DEALS="Deals (each row creates one).",
        ORDERS="Orders (each row creates one).",
        ACTIVITIES="Activities: notes, calls, emails, meetings, tasks (each row logs one).",
    )
    ImportMode = exposed(
        enums.ImportMode,
        "What an import does with bad rows.",
        ALL_OR_NOTHING="Any bad row: nothing is written, every bad row is reported.",
        GOOD_ROWS="The good rows are written, the bad ones reported and skipped.",
    )
    RfmSegment = exposed(
        rfm.RfmSegment,
        "Built-in customer segments by recency, frequency and monetary scores (README, Segments).",
        **rfm_segments(
            CHAMPIONS="Bought recently, often and for much.",
            LOYAL="Buy often and for much, less recently.",
            POTENTIAL_LOYALISTS="Recent customers with a few purchases.",
            NEW_CUSTOMERS="Bought for the first time very recently.",
            PROMISING="Recent, with little bought so far.",
            NEED_ATTENTION="Middling on every score.",
            ABOUT_TO_SLEEP="Not recent, little bought.",
            AT_RISK="Bought often and for much, but long ago.",
            CANNOT_LOSE="The biggest buyers, but long ago.",
            HIBERNATING="Long ago, little bought.",
            LOST="The longest ago and the least bought.",
        ),
    )


__all__ = ["JSON", "SCALAR_OVERRIDES", "exposed"]


def _instant(value: datetime) -> str:
    return stored_instant(value).isoformat()


# Strawberry's DateTime, answering every value with its offset: the database driver reads
# -infinity / infinity as naive values, which the compiled path answers in UTC as well.
SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {
    datetime: dataclasses.replace(DateTimeDefinition, serialize=_instant)
}


@strawberry.type(description="An amount of money in one currency.")
class Money:
    amount: Decimal = strawberry.field(description="Decimal amount, as a string.")
    currency: str = strawberry.field(description="ISO 4217 currency code.")


@strawberry.type(description="A postal address.")
class Address:
    street: str | None = strawberry.field(
        default=None, description="Street and number, as entered."
    )
    city: str | None = strawberry.field(default=None, description="City or town.")
    region: str | None = strawberry.field(default=None, description="State, province or county.")
    postal_code: str | None = strawberry.field(default=None, description="Postal or ZIP code.")
    country: str | None = strawberry.field(
        default=None, description="Country, as entered (an ISO 3166 code where the client has one)."
    )


@strawberry.input(description="A postal address.")
class AddressInput:
    street: str | None = strawberry.field(default=None, description="Street and number.")
    city: str | None = strawberry.field(default=None, description="City or town.")
    region: str | None = strawberry.field(default=None, description="State, province or county.")
    postal_code: str | None = strawberry.field(default=None, description="Postal or ZIP code.")
    country: str | None = strawberry.field(
        default=None, description="Country (an ISO 3166 code where you have one)."
    )


ADDRESS_KEYS = ("street", "city", "region", "postal_code", "country")


def address_of(value: dict[str, object] | None) -> Address | None:
    """Stored address JSON (camelCase keys) as an ``Address``."""
    if not value:
        return None
    return Address(
        street=_s(value.get("street")),
        city=_s(value.get("city")),
        region=_s(value.get("region")),
        postal_code=_s(value.get("postalCode")),
        country=_s(value.get("country")),
    )


def _s(value: object) -> str | None:
    return None if value is None else str(value)
