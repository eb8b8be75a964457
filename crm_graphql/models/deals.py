"""Sales: pipelines, their ordered stages, and deals moving through them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.enums import DealStatus
from crm_graphql.models.base import Archivable, Base, WorkspaceScoped, text_enum


class Pipeline(WorkspaceScoped, Archivable, Base):
    __tablename__ = "pipelines"

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        Index("ix_pipelines_workspace_position", "workspace_id", "position", "id"),
        Index("ix_pipelines_workspace_created", "workspace_id", "created_at", "id"),
    )


class Stage(WorkspaceScoped, Archivable, Base):
    __tablename__ = "stages"

    pipeline_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    probability: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        CheckConstraint("probability BETWEEN 0 AND 100", name="probability_range"),
        Index("ix_stages_workspace_pipeline_position", "workspace_id", "pipeline_id", "position"),
    )


class Deal(WorkspaceScoped, Archivable, Base):
    __tablename__ = "deals"

    title: Mapped[str] = mapped_column(String(200), nullable=False)
    pipeline_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("pipelines.id", ondelete="RESTRICT"), nullable=False
    )
    stage_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("stages.id", ondelete="RESTRICT"), nullable=False
    )
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="SET NULL")
    )
    company_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("companies.id", ondelete="SET NULL")
    )
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False, default=Decimal("0"))
    currency: Mapped[str] = mapped_column(CHAR(3), nullable=False)
    status: Mapped[DealStatus] = mapped_column(
        text_enum(DealStatus, "deal_status"), nullable=False, default=DealStatus.OPEN
    )
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lost_reason: Mapped[str | None] = mapped_column(Text)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        Index("ix_deals_workspace_created", "workspace_id", "created_at", "id"),
        # Custom-field equality (``@>``): jsonb_path_ops GIN. It cannot lead with
        # workspace_id (that needs the btree_gin extension, which the embedded server lacks);
        # the planner combines it with the workspace indexes (decision 0012).
        Index(
            "ix_deals_custom_fields",
            "custom_fields",
            postgresql_using="gin",
            postgresql_ops={"custom_fields": "jsonb_path_ops"},
        ),
        # A customer's deals, newest first: the nested list's keyset order.
        Index(
            "ix_deals_workspace_customer_created", "workspace_id", "customer_id", "created_at", "id"
        ),
        Index("ix_deals_workspace_company", "workspace_id", "company_id"),
        Index("ix_deals_workspace_stage", "workspace_id", "stage_id"),
        # A deal board: each stage's live deals, newest first, and how many (revision
        # 0028). Counted from the index alone, the first page read in order.
        Index(
            "ix_deals_workspace_stage_live_created",
            "workspace_id",
            "stage_id",
            "created_at",
            "id",
            postgresql_where=text("archived_at IS NULL"),
        ),
        Index("ix_deals_workspace_pipeline_status", "workspace_id", "pipeline_id", "status"),
        # Win rate, deal size and cycle time of a period read deals closed in it.
        # (covering: the report reads them from the index alone).
        Index(
            "ix_deals_workspace_pipeline_closed_cover",
            "workspace_id",
            "pipeline_id",
            "closed_at",
            postgresql_include=["status", "currency", "amount", "created_at", "archived_at"],
        ),
    )


class DealStageChange(WorkspaceScoped, Base):
    """One move of a deal from a stage to another (``moveDeal``), written in the move's
    transaction: the stage history the sales report's conversion is computed from. A deal's
    first stage is the ``from_stage_id`` of its first change (or its current stage)."""

    __tablename__ = "deal_stage_changes"

    deal_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("deals.id", ondelete="CASCADE"), nullable=False
    )
    from_stage_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("stages.id", ondelete="CASCADE"), nullable=False
    )
    to_stage_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("stages.id", ondelete="CASCADE"), nullable=False
    )
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_deal_stage_changes_workspace_deal", "workspace_id", "deal_id", "changed_at"),
    )


class DealStageTotal(Base):
    """Deals counted and summed per pipeline, stage, owner, status, currency and expected
    close month (archived deals left out): a summary kept exact by triggers in every
    writing transaction (migration 0019, ``docs/decisions/0021-report-speed.md``), read by
    the sales report's open-deal and forecast numbers when its filter allows. Never
    written by the application. No primary key of its own (owner and month may be null):
    a unique index with NULLS NOT DISTINCT is the key the triggers' upsert names."""

    __tablename__ = "deal_stage_totals"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    pipeline_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    stage_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    currency: Mapped[str] = mapped_column(CHAR(3), nullable=False)
    close_month: Mapped[date | None] = mapped_column(Date, nullable=True)
    deal_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric, nullable=False)

    __mapper_args__ = {
        "primary_key": [
            workspace_id,
            pipeline_id,
            stage_id,
            owner_id,
            status,
            currency,
            close_month,
        ],
        "eager_defaults": False,
    }
    __table_args__ = (
        Index(
            "uq_deal_stage_totals_key",
            "workspace_id",
            "pipeline_id",
            "stage_id",
            "owner_id",
            "status",
            "currency",
            "close_month",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )


class DealCohortTotal(Base):
    """Deals counted per pipeline, owner, UTC month of creation and furthest stage position
    (``services.deals.FURTHEST_STAGE_POSITION``; archived deals left out), kept exact by
    triggers on deals, their moves and stages (migration 0019): the sales report's
    "reached stage N" of the deals created in a period."""

    __tablename__ = "deal_cohort_totals"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    pipeline_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    month: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    furthest_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deal_count: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __mapper_args__ = {
        "primary_key": [workspace_id, pipeline_id, owner_id, month, furthest_position],
        "eager_defaults": False,
    }
    __table_args__ = (
        Index(
            "uq_deal_cohort_totals_key",
            "workspace_id",
            "pipeline_id",
            "owner_id",
            "month",
            "furthest_position",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )


class DealCloseTotal(Base):
    """Closed deals (``closed_at`` set; archived ones left out) counted and summed per
    pipeline, owner, status, currency and UTC month of closing, with the seconds from
    creation to closing, kept exact by triggers on deals (migration 0019): the sales
    report's win rate, deal size and cycle time of a period."""

    __tablename__ = "deal_close_totals"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    pipeline_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    currency: Mapped[str] = mapped_column(CHAR(3), nullable=False)
    month: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    deal_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    seconds: Mapped[Decimal] = mapped_column(Numeric, nullable=False)

    __mapper_args__ = {
        "primary_key": [workspace_id, pipeline_id, owner_id, status, currency, month],
        "eager_defaults": False,
    }
    __table_args__ = (
        Index(
            "uq_deal_close_totals_key",
            "workspace_id",
            "pipeline_id",
            "owner_id",
            "status",
            "currency",
            "month",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )
