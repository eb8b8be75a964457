"""Service conversations over chat, email, phone and social, with their messages."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.enums import Channel, ConversationStatus, MessageAuthorType
from crm_graphql.models.base import Base, WorkspaceScoped, text_enum


class Conversation(WorkspaceScoped, Base):
    __tablename__ = "conversations"

    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    channel: Mapped[Channel] = mapped_column(text_enum(Channel, "channel"), nullable=False)
    status: Mapped[ConversationStatus] = mapped_column(
        text_enum(ConversationStatus, "conversation_status"),
        nullable=False,
        default=ConversationStatus.OPEN,
    )
    subject: Mapped[str | None] = mapped_column(String(300))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    is_private: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    last_message_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # Service times, kept by the writers in the statement that changes the conversation:
    # the customer's first message, the first agent message after it, and when it was
    # closed (cleared when it reopens).
    first_customer_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The customer's satisfaction rating (CSAT), posted by a channel integration; a new
    # rating replaces the previous one (the audit log keeps both).
    rating_score: Mapped[int | None] = mapped_column(SmallInteger)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        CheckConstraint("rating_score BETWEEN 1 AND 5", name="rating_score_range"),
        Index("ix_conversations_workspace_closed", "workspace_id", "closed_at"),
        Index("ix_conversations_workspace_first_response", "workspace_id", "first_response_at"),
        Index("ix_conversations_workspace_rated", "workspace_id", "rated_at"),
        Index("ix_conversations_workspace_last_message", "workspace_id", "last_message_at", "id"),
        Index("ix_conversations_workspace_created", "workspace_id", "created_at", "id"),
        Index("ix_conversations_workspace_customer", "workspace_id", "customer_id"),
        Index(
            "ix_conversations_workspace_assignee_status", "workspace_id", "assignee_id", "status"
        ),
    )


class Message(WorkspaceScoped, Base):
    __tablename__ = "messages"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    author_type: Mapped[MessageAuthorType] = mapped_column(
        text_enum(MessageAuthorType, "message_author_type"), nullable=False
    )
    author_user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    body: Mapped[str] = mapped_column(Text, nullable=False)
    client_message_id: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        UniqueConstraint("conversation_id", "seq"),
        UniqueConstraint("conversation_id", "client_message_id"),
        Index("ix_messages_workspace_conversation_seq", "workspace_id", "conversation_id", "seq"),
    )


class ConversationRead(Base):
    """How far one agent has read a conversation (a read receipt)."""

    __tablename__ = "conversation_reads"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    last_read_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    read_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        PrimaryKeyConstraint("conversation_id", "user_id"),
        Index("ix_conversation_reads_workspace_user", "workspace_id", "user_id"),
    )
