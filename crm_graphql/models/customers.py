"""Customers: the centre of the graph."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.enums import LifecycleStage
from crm_graphql.models.base import Archivable, Base, WorkspaceScoped, text_enum


class Customer(WorkspaceScoped, Archivable, Base):
    __tablename__ = "customers"

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(50))
    # The customer's id in another system (imports and sync match by it); unique per
    # workspace when given.
    external_id: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    lifecycle_stage: Mapped[LifecycleStage] = mapped_column(
        text_enum(LifecycleStage, "lifecycle_stage"), nullable=False, default=LifecycleStage.LEAD
    )
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    company_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("companies.id", ondelete="SET NULL")
    )
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )
    needs: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )
    preferences: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    custom_fields: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    # Values of the workspace's sensitive custom fields, one encrypted JSON object
    # (services/privacy.py); never in ``custom_fields``.
    custom_fields_encrypted: Mapped[str | None] = mapped_column(Text)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_activity_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="SET NULL")
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        Index(
            "uq_customers_workspace_lower_email",
            "workspace_id",
            func.lower(email),
            unique=True,
            postgresql_where=text("email IS NOT NULL"),
        ),
        Index(
            "uq_customers_workspace_external_id",
            "workspace_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_customers_workspace_created", "workspace_id", "created_at", "id"),
        # Segments: a lifecycle stage (or a few) within a creation period, whatever the
        # order asked for (migration 0007 also keeps finer statistics on `name`).
        Index(
            "ix_customers_workspace_stage_created",
            "workspace_id",
            "lifecycle_stage",
            "created_at",
            postgresql_include=["name", "last_activity_at", "id", "archived_at", "merged_into_id"],
        ),
        Index("ix_customers_workspace_name", "workspace_id", "name", "id"),
        # Custom-field equality (``@>``): jsonb_path_ops GIN. It cannot lead with
        # workspace_id (that needs the btree_gin extension, which the embedded server lacks);
        # the planner combines it with the workspace indexes (decision 0012).
        Index(
            "ix_customers_custom_fields",
            "custom_fields",
            postgresql_using="gin",
            postgresql_ops={"custom_fields": "jsonb_path_ops"},
        ),
        Index("ix_customers_workspace_company", "workspace_id", "company_id"),
        Index("ix_customers_workspace_owner", "workspace_id", "owner_id"),
        Index("ix_customers_workspace_last_activity", "workspace_id", "last_activity_at", "id"),
        # "Most recently active first" (NULLS LAST, as lists sort): a filtered list in that
        # order walks this index and stops after one page instead of sorting every match.
        Index(
            "ix_customers_workspace_last_activity_desc",
            "workspace_id",
            text("last_activity_at DESC NULLS LAST"),
            text("id DESC"),
        ),
    )
