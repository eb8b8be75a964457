"""The durable event log (written in the change's transaction) and webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.enums import DeliveryStatus
from crm_graphql.models.base import Base, WorkspaceScoped, text_enum


class Event(Base):
    """One change, in commit-safe order. ``txid`` (the writing transaction's xid8) lets a
    reader hold back events of transactions still in flight, so late commits of lower ids
    are never skipped."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    topic: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(50), nullable=False)
    entity_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    txid: Mapped[int] = mapped_column(
        BigInteger,
        nullable=False,
        server_default=text("(pg_current_xact_id())::text::bigint"),
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    # Streams are read in (txid, id) order per workspace and topic; the webhook
    # dispatcher reads the whole log in (txid, id) order.
    __table_args__ = (
        Index("ix_events_workspace_topic_txid_id", "workspace_id", "topic", "txid", "id"),
        Index("ix_events_txid_id", "txid", "id"),
    )


class Webhook(WorkspaceScoped, Base):
    __tablename__ = "webhooks"

    url: Mapped[str] = mapped_column(String(2000), nullable=False)
    event_types: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )
    secret_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # The body's form (crm_graphql/event_catalogue.py): 2, the API's names; 1, the stored
    # form, which webhooks created before version 2 keep until moved.
    payload_version: Mapped[int] = mapped_column(
        SmallInteger, nullable=False, server_default=text("2")
    )

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (Index("ix_webhooks_workspace_created", "workspace_id", "created_at", "id"),)


class WebhookDelivery(WorkspaceScoped, Base):
    __tablename__ = "webhook_deliveries"

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
    )
    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("events.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[DeliveryStatus] = mapped_column(
        text_enum(DeliveryStatus, "delivery_status"), nullable=False, default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # One delivery per webhook and event: enqueueing twice is a no-op.
        UniqueConstraint("webhook_id", "event_id"),
        Index(
            "ix_webhook_deliveries_workspace_webhook", "workspace_id", "webhook_id", "created_at"
        ),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )


class WebhookDeliveryAttempt(Base):
    """One HTTP attempt of a delivery: what the receiver answered (or why there was no
    answer), how long it took and when. Written with the delivery's outcome."""

    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # NULL for attempts recorded before attempts were (migration 0021 keeps the last one).
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_webhook_delivery_attempts_delivery", "delivery_id", "attempt", "id"),
    )


class WebhookDispatchCursor(Base):
    """How far the webhook dispatcher has fanned the event log out into deliveries: one
    row, moved only by the process holding the fan-out advisory lock, so several server
    processes never enqueue an event twice."""

    __tablename__ = "webhook_dispatch_cursor"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, nullable=False)
    event_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )
