"""Webhooks: subscriptions of a workspace to its events, and their deliveries.

The durable event log is the source: a dispatcher (``realtime/webhooks.py``, started by
the app) fans committed events out into ``webhook_deliveries`` rows (one per webhook and
event, enqueued by one process at a time: the one holding an advisory lock moves a cursor
row), then claims due deliveries with ``SKIP LOCKED`` and a lease, POSTs them signed
with the webhook's secret and records the outcome, retrying with exponential backoff.
Delivery is at least once: a receiver deduplicates by the delivery id it gets in
``X-CRM-Delivery`` (the same on every attempt, and on a redelivery). Every attempt is
kept (``webhook_delivery_attempts``: status code, error, duration, time); an admin can
send a finished delivery again (``redeliver``).

Bodies speak the API's language (``crm_graphql/event_catalogue.py``, payload version 2):
global IDs, camelCase names, enum values as the schema spells them. Webhooks created
before version 2 keep the stored form (version 1) until moved.

Signature: ``X-CRM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
keyed with the webhook secret (shown once, on create and rotate; stored encrypted).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    Select,
    and_,
    any_,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql import event_catalogue
from crm_graphql.crypto import DecryptionError, Keyring, keyring_of
from crm_graphql.global_ids import to_global_id
from crm_graphql.models import (
    DeliveryStatus,
    Event,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookDispatchCursor,
)
from crm_graphql.services import audit, events, fields, policy
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Conflict, Invalid
from crm_graphql.storage import querying, records

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "X-CRM-Signature"
DELIVERY_HEADER = "X-CRM-Delivery"
EVENT_HEADER = "X-CRM-Event"
MAX_EVENT_TYPES = 50
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
CURSOR_ID = 1
FANOUT_LOCK = 0x63726D5F77680001  # "crm_wh" + 1: the fan-out of events into deliveries


WEBHOOKS = querying.ListSpec(
    model=Webhook,
    filter_fields={
        "id": Webhook.id,
        "url": Webhook.url,
        "created_at": Webhook.created_at,
    },
    order_fields={"url": Webhook.url, "created_at": Webhook.created_at},
    default_order=[("created_at", False)],
    archivable=False,
)


def authorize(actor: Actor) -> Actor:
    """Who manages webhooks (admins, API keys with ``webhooks:manage``): the policy's
    ``webhooks.manage`` action, checked by every webhook operation."""
    return policy.authorize(actor, policy.Action.MANAGE_WEBHOOKS)


# ------------------------------------------------------------------ subscriptions


def clean_url(value: Any) -> str:
    url = fields.required_text(value, "url", max_length=2000)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("`url` must be an absolute http(s) URL", "url")
    if parts.username or parts.password:
        raise Invalid("`url` must not contain credentials: the signature authenticates", "url")
    return url


def clean_event_types(values: Sequence[str] | None) -> list[str]:
    """Event types to deliver (e.g. ``message.created``); empty means every event."""
    cleaned: list[str] = []
    for index, value in enumerate(values or []):
        kind = str(value).strip()
        if not _EVENT_TYPE.match(kind) or len(kind) > 100:
            raise Invalid(
                f"`{value}` is not an event type such as deal.moved", f"eventTypes.{index}"
            )
        if kind not in cleaned:
            cleaned.append(kind)
    if len(cleaned) > MAX_EVENT_TYPES:
        raise Invalid(f"At most {MAX_EVENT_TYPES} event types", "eventTypes")
    return sorted(cleaned)


def clean_payload_version(value: Any) -> int:
    if value not in event_catalogue.PAYLOAD_VERSIONS:
        known = ", ".join(str(v) for v in event_catalogue.PAYLOAD_VERSIONS)
        raise Invalid(f"`payloadVersion` must be one of {known}", "payloadVersion")
    return int(value)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def create_webhook(
    actor: Actor,
    session: AsyncSession,
    *,
    url: str,
    event_types: Sequence[str] | None = None,
    is_active: bool = True,
    payload_version: int = event_catalogue.PAYLOAD_VERSION,
) -> tuple[Webhook, str]:
    """Subscribe a URL to the workspace's events. Returns the webhook and its signing
    secret, shown this once (it is stored encrypted, never returned again)."""
    authorize(actor)
    secret = new_secret()
    webhook = Webhook(
        url=clean_url(url),
        event_types=clean_event_types(event_types),
        secret_encrypted=keyring_of(session).encrypt(secret),
        is_active=bool(is_active),
        created_by_id=actor.user_id,
        payload_version=clean_payload_version(payload_version),
    )
    return await records.create(actor, session, webhook, action="createWebhook"), secret


async def update_webhook(
    actor: Actor,
    session: AsyncSession,
    webhook_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> Webhook:
    """Change a webhook's URL, event types, payload version or whether it is active."""
    authorize(actor)
    webhook = await records.get_for_change(actor, session, Webhook, webhook_id, expected_version)
    unknown = set(data) - {"url", "event_types", "is_active", "payload_version"}
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    if "url" in data:
        changes["url"] = clean_url(data["url"])
    if "event_types" in data:
        changes["event_types"] = clean_event_types(data["event_types"])
    if "is_active" in data:
        if data["is_active"] is None:
            raise Invalid("`isActive` must be true or false", "isActive")
        changes["is_active"] = bool(data["is_active"])
    if "payload_version" in data:
        changes["payload_version"] = clean_payload_version(data["payload_version"])
    return await records.update(actor, session, webhook, changes, action="updateWebhook")


async def rotate_webhook_secret(
    actor: Actor,
    session: AsyncSession,
    webhook_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> tuple[Webhook, str]:
    """Give a webhook a new signing secret (shown this once); the old one stops at once."""
    authorize(actor)
    webhook = await records.get_for_change(actor, session, Webhook, webhook_id, expected_version)
    secret = new_secret()
    webhook.secret_encrypted = keyring_of(session).encrypt(secret)
    await session.flush()
    audit.record(
        actor,
        session,
        action="rotateWebhookSecret",
        entity_type="Webhook",
        entity_id=webhook.id,
        changes={"secret": {"before": "[previous]", "after": "[rotated]"}},
    )
    return webhook, secret


async def delete_webhook(
    actor: Actor,
    session: AsyncSession,
    webhook_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> Webhook:
    """Remove a webhook and its delivery history; nothing more is sent to it."""
    authorize(actor)
    webhook = await records.get_for_change(actor, session, Webhook, webhook_id, expected_version)
    audit.record(
        actor,
        session,
        action="deleteWebhook",
        entity_type="Webhook",
        entity_id=webhook.id,
        before=audit.snapshot(webhook),
        after=None,
    )
    await session.delete(webhook)
    await session.flush()
    return webhook


# A webhook's deliveries are listed newest first; a delivery's attempts oldest first.
DELIVERIES_ORDER = (WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
ATTEMPTS_ORDER = (WebhookDeliveryAttempt.attempt, WebhookDeliveryAttempt.id)


def deliveries_statement(actor: Actor) -> Select[Any]:
    """The deliveries of the workspace's webhooks, for those who manage webhooks: what
    ``recent_deliveries`` ranks for some webhooks, and the compiled read path per
    webhook (newest ``DELIVERIES_ORDER`` first)."""
    authorize(actor)
    return select(WebhookDelivery).where(WebhookDelivery.workspace_id == actor.workspace_id)


def attempts_statement(actor: Actor) -> Select[Any]:
    """The attempts of the workspace's deliveries, in ``ATTEMPTS_ORDER``: what
    ``attempts_of`` reads for some deliveries, and the compiled read path per delivery."""
    authorize(actor)
    return (
        select(WebhookDeliveryAttempt)
        .where(WebhookDeliveryAttempt.workspace_id == actor.workspace_id)
        .order_by(*ATTEMPTS_ORDER)
    )


async def recent_deliveries(
    actor: Actor, session: AsyncSession, webhook_ids: Sequence[uuid.UUID], limit: int
) -> dict[uuid.UUID, list[WebhookDelivery]]:
    """The newest ``limit`` deliveries of each webhook (one statement for all)."""
    listed = deliveries_statement(actor).where(WebhookDelivery.webhook_id.in_(list(webhook_ids)))
    ranked = (
        listed.with_only_columns(
            WebhookDelivery.id,
            func.row_number()
            .over(partition_by=WebhookDelivery.webhook_id, order_by=DELIVERIES_ORDER)
            .label("rank"),
        )
    ).subquery()
    rows = await session.scalars(
        select(WebhookDelivery)
        .join(ranked, ranked.c.id == WebhookDelivery.id)
        .where(ranked.c.rank <= limit)
        .order_by(*DELIVERIES_ORDER)
    )
    result: dict[uuid.UUID, list[WebhookDelivery]] = {id: [] for id in webhook_ids}
    for row in rows:
        result[row.webhook_id].append(row)
    return result


async def attempts_of(
    actor: Actor, session: AsyncSession, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookDeliveryAttempt]]:
    """Every attempt of each delivery, oldest first (one statement for all)."""
    rows = await session.scalars(
        attempts_statement(actor).where(WebhookDeliveryAttempt.delivery_id.in_(list(delivery_ids)))
    )
    result: dict[uuid.UUID, list[WebhookDeliveryAttempt]] = {id: [] for id in delivery_ids}
    for row in rows:
        result[row.delivery_id].append(row)
    return result


async def redeliver(
    actor: Actor, session: AsyncSession, delivery_id: uuid.UUID | None
) -> WebhookDelivery:
    """Send a delivered or failed delivery again, now: the same delivery (its id, so a
    receiver that kept it can tell), one more attempt, then retried like any delivery
    while ``CRM_WEBHOOK_MAX_ATTEMPTS`` allows. ``CONFLICT`` while it is still pending;
    ``VALIDATION`` when its webhook is inactive. Audited."""
    authorize(actor)
    delivery = await records.get(
        actor, session, WebhookDelivery, delivery_id, field="id", for_update=True
    )
    if delivery.status == DeliveryStatus.PENDING:
        raise Conflict("The delivery is still pending: it is sent at `nextAttemptAt`", "id")
    webhook = await session.get_one(Webhook, delivery.webhook_id)
    if not webhook.is_active:
        raise Invalid("The webhook is inactive: activate it to redeliver", "id")
    previous = delivery.status
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = datetime.now(UTC)
    await session.flush()
    audit.record(
        actor,
        session,
        action="redeliverWebhookDelivery",
        entity_type="WebhookDelivery",
        entity_id=delivery.id,
        changes={"status": {"before": previous.value, "after": delivery.status.value}},
    )
    return delivery


# ------------------------------------------------------------------ signatures


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-CRM-Signature`` header value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = 300
) -> bool:
    """What a receiver does: the signature matches and is at most ``tolerance`` seconds
    old (a replayed old request fails)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# ------------------------------------------------------------------ dispatching


ENQUEUE_BATCH = 500


async def enqueue_deliveries(session: AsyncSession, *, batch_size: int = ENQUEUE_BATCH) -> int:
    """Fan the next committed events out into deliveries of the active webhooks that
    want them, and move the cursor; the caller commits. Returns how many events were
    consumed (0 when another process holds the cursor or nothing is new)."""
    # One process at a time moves the cursor. An advisory lock, not a row lock: a row
    # lock takes a transaction id, and an xid held by every idle poll would hold back
    # the event horizon of every reader (docs/decisions/0002-realtime.md).
    if not await session.scalar(select(func.pg_try_advisory_xact_lock(FANOUT_LOCK))):
        return 0
    cursor = await session.scalar(
        select(WebhookDispatchCursor).where(WebhookDispatchCursor.id == CURSOR_ID)
    )
    if cursor is None:
        await session.execute(
            pg_insert(WebhookDispatchCursor)
            .values(id=CURSOR_ID, txid=-1, event_id=-1)
            .on_conflict_do_nothing()
        )
        return 0
    below = int(await session.scalar(text(events.HORIZON_SQL)))
    if not await session.scalar(select(exists().where(Webhook.is_active.is_(True)))):
        # No webhook wants anything: pass every final event (below the horizon) at once
        # rather than reading them, as the statement below would, to match nothing.
        last = (
            await session.execute(
                select(Event.txid, Event.id)
                .where(Event.txid < below)
                .order_by(Event.txid.desc(), Event.id.desc())
                .limit(1)
            )
        ).first()
        if last is not None and (last.txid, last.id) > (cursor.txid, cursor.event_id):
            cursor.txid, cursor.event_id = last.txid, last.id
            await session.flush()
        return 0
    rows = (
        await session.execute(
            select(
                Event.id,
                Event.txid,
                (Event.txid < literal(below)).label("ready"),
            )
            .where(
                tuple_(Event.txid, Event.id)
                > tuple_(literal(cursor.txid), literal(cursor.event_id))
            )
            .order_by(Event.txid, Event.id)
            .limit(batch_size)
        )
    ).all()
    ready = []
    for id, txid, is_ready in rows:
        if not is_ready:  # a transaction still running may commit events before it
            break
        ready.append((id, txid))
    if not ready:
        return 0
    ids = [id for id, _ in ready]
    wanted = (
        select(
            func.gen_random_uuid(),
            Event.workspace_id,
            Webhook.id,
            Event.id,
            literal(DeliveryStatus.PENDING.value),
            literal(0),
            func.now(),
        )
        .join(
            Webhook,
            and_(
                Webhook.workspace_id == Event.workspace_id,
                Webhook.is_active.is_(True),
                Webhook.created_at <= Event.created_at,
                or_(
                    func.cardinality(Webhook.event_types) == 0,
                    Event.type == any_(Webhook.event_types),
                ),
            ),
        )
        # The change feed is pulled (``changes``), not pushed: webhooks keep the domain
        # events they were made for.
        .where(Event.id.in_(ids), Event.topic != events.CHANGES_TOPIC)
    )
    await session.execute(
        pg_insert(WebhookDelivery)
        .from_select(
            [
                "id",
                "workspace_id",
                "webhook_id",
                "event_id",
                "status",
                "attempts",
                "next_attempt_at",
            ],
            wanted,
        )
        .on_conflict_do_nothing()
    )
    cursor.event_id, cursor.txid = ready[-1]
    await session.flush()
    return len(ready)


@dataclass(frozen=True)
class DeliveryJob:
    """A claimed delivery: where to send what, signed with which secret."""

    delivery_id: uuid.UUID
    attempt: int
    url: str
    secret: str
    body: bytes
    event_type: str
    workspace_id: uuid.UUID
    delivery_key: str  # ``X-CRM-Delivery``: the delivery's global ID (its UUID in version 1)


def delivery_key(delivery: WebhookDelivery, webhook: Webhook) -> str:
    """What identifies a delivery to its receiver (``X-CRM-Delivery``, ``deliveryId``)."""
    if webhook.payload_version == 1:
        return str(delivery.id)
    return to_global_id("WebhookDelivery", delivery.id)


def delivery_body(delivery: WebhookDelivery, event: Event, webhook: Webhook) -> bytes:
    """The JSON a webhook receives, in its payload version (``event_catalogue``)."""
    import orjson

    if webhook.payload_version != 1:
        return orjson.dumps(
            {
                "payloadVersion": webhook.payload_version,
                "deliveryId": delivery_key(delivery, webhook),
                "webhookId": to_global_id("Webhook", delivery.webhook_id),
                "event": event_catalogue.partner_event(
                    id=event.id,
                    type=event.type,
                    entity_type=event.entity_type,
                    entity_id=event.entity_id,
                    payload=event.payload,
                    created_at=event.created_at.isoformat(),
                ),
            }
        )
    return orjson.dumps(
        {
            "id": str(delivery.id),
            "webhook_id": str(delivery.webhook_id),
            "workspace_id": str(delivery.workspace_id),
            "event": {
                "id": event.id,
                "type": event.type,
                "topic": event.topic,
                "entity_type": event.entity_type,
                "entity_id": str(event.entity_id) if event.entity_id else None,
                "payload": event.payload,
                "created_at": event.created_at.isoformat(),
            },
        }
    )


async def claim_due(
    session: AsyncSession, keyring: Keyring, *, limit: int, lease: timedelta
) -> list[DeliveryJob]:
    """Claim up to ``limit`` due deliveries for this process: rows locked by another
    process are skipped, and a claimed row is leased (``next_attempt_at`` moves past the
    lease) so a process that dies mid-delivery only delays it. The caller commits."""
    rows = (
        await session.execute(
            select(WebhookDelivery, Event, Webhook)
            .join(Event, Event.id == WebhookDelivery.event_id)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= func.now(),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_id)
            .limit(limit)
            .with_for_update(of=WebhookDelivery, skip_locked=True)
        )
    ).all()
    jobs: list[DeliveryJob] = []
    for delivery, event, webhook in rows:
        delivery.attempts += 1
        delivery.next_attempt_at = datetime.now(UTC) + lease
        if not webhook.is_active:
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = "webhook deactivated"
            continue
        try:
            secret = keyring.decrypt(webhook.secret_encrypted)
        except DecryptionError as exc:  # a key missing from the configuration
            delivery.last_error = str(exc)
            continue  # retried when the lease ends, once the key is configured again
        try:
            body = delivery_body(delivery, event, webhook)
        except event_catalogue.UnknownEvent as exc:  # a defect: tests keep events in it
            log.error("webhook delivery %s not sent: %s", delivery.id, exc)
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = str(exc)
            continue
        jobs.append(
            DeliveryJob(
                delivery.id,
                delivery.attempts,
                webhook.url,
                secret,
                body,
                event.type,
                delivery.workspace_id,
                delivery_key(delivery, webhook),
            )
        )
    await session.flush()
    return jobs


def backoff(attempt: int, base_seconds: float, cap_seconds: float = 3600.0) -> float:
    """Seconds before attempt ``attempt + 1``: exponential with jitter, capped."""
    delay = min(cap_seconds, base_seconds * 2 ** (attempt - 1))
    return delay * random.uniform(0.8, 1.2)


async def record_outcome(
    session: AsyncSession,
    job: DeliveryJob,
    *,
    status_code: int | None,
    error: str | None,
    max_attempts: int,
    retry_base_seconds: float,
    attempted_at: datetime | None = None,
    duration_ms: int | None = None,
) -> DeliveryStatus:
    """Store how an attempt went: the attempt itself (always: it was made), and the
    delivery's state: delivered (2xx), retried later, or failed for good after
    ``max_attempts``; that part is ignored if another process took the delivery over
    meanwhile (its lease ran out). The caller commits."""
    ok = status_code is not None and 200 <= status_code < 300
    now = datetime.now(UTC)
    session.add(
        WebhookDeliveryAttempt(
            workspace_id=job.workspace_id,
            delivery_id=job.delivery_id,
            attempt=job.attempt,
            status_code=status_code,
            error=(error or "")[:500] or None,
            duration_ms=duration_ms,
            attempted_at=attempted_at or now,
        )
    )
    if ok:
        values: dict[str, Any] = {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
    elif job.attempt >= max_attempts:
        values = {"status": DeliveryStatus.FAILED}
    else:
        values = {
            "next_attempt_at": now + timedelta(seconds=backoff(job.attempt, retry_base_seconds))
        }
    values.update(last_status_code=status_code, last_error=(error or "")[:500] or None)
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == job.delivery_id,
            WebhookDelivery.attempts == job.attempt,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(values)
        .execution_options(synchronize_session=False)
    )
    return values.get("status", DeliveryStatus.PENDING)


async def pending_count(session: AsyncSession) -> int:
    """Deliveries still to make (for health and tests)."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING)
        )
        or 0
    )
