"""The email side of messages in EMAIL conversations: the envelope of each mail sent or
received (its Message-ID for threading, and for outbound mail the delivery state, which
makes the table the outbox), and the attachments of messages."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, deferred, mapped_column

from crm_graphql.enums import EmailDeliveryStatus, EmailDirection
from crm_graphql.models.base import Base, WorkspaceScoped, text_enum


class EmailMessage(WorkspaceScoped, Base):
    """One mail of a message: sent to the customer (an outbox row until it is sent or
    has failed for good) or received from them."""

    __tablename__ = "email_messages"

    message_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
    )
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    direction: Mapped[EmailDirection] = mapped_column(
        text_enum(EmailDirection, "email_direction"), nullable=False
    )
    # The Message-ID header without its angle brackets: what replies name in In-Reply-To
    # and References. Unique per workspace only: another tenant's ids never match.
    rfc_message_id: Mapped[str] = mapped_column(Text, nullable=False)
    sender: Mapped[str] = mapped_column(String(320), nullable=False)
    recipients: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )
    subject: Mapped[str | None] = mapped_column(Text)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )
    # Outbound only (NULL for received mail).
    status: Mapped[EmailDeliveryStatus | None] = mapped_column(
        text_enum(EmailDeliveryStatus, "email_delivery_status")
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a delivery status notification reported the mail as failed (a bounce).
    bounced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("message_id"),
        UniqueConstraint("workspace_id", "rfc_message_id"),
        Index(
            "ix_email_messages_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'retrying')"),
        ),
        Index("ix_email_messages_workspace_conversation", "workspace_id", "conversation_id"),
    )


class MessageAttachment(WorkspaceScoped, Base):
    """A file that came with a message (stored in the database, size-capped)."""

    __tablename__ = "message_attachments"

    message_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    # Loaded only when downloaded: listing attachments never reads their bytes.
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))

    __table_args__ = (
        UniqueConstraint("message_id", "position"),
        Index("ix_message_attachments_workspace_message", "workspace_id", "message_id"),
    )
