"""Activities: notes, calls, emails, meetings, tasks and system entries on the timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.enums import ActivityType
from crm_graphql.models.base import Archivable, Base, WorkspaceScoped, text_enum


class Activity(WorkspaceScoped, Archivable, Base):
    __tablename__ = "activities"

    type: Mapped[ActivityType] = mapped_column(
        text_enum(ActivityType, "activity_type"), nullable=False
    )
    subject: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE")
    )
    deal_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("deals.id", ondelete="CASCADE")
    )
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        Index("ix_activities_workspace_occurred", "workspace_id", "occurred_at", "id"),
        Index("ix_activities_workspace_created", "workspace_id", "created_at", "id"),
        Index(
            "ix_activities_workspace_customer_occurred",
            "workspace_id",
            "customer_id",
            "occurred_at",
        ),
        Index("ix_activities_workspace_deal_occurred", "workspace_id", "deal_id", "occurred_at"),
    )
