"""Background jobs (imports, bulk actions): what to do, who asked, how far it got."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.enums import JobStatus
from crm_graphql.models.base import Base, WorkspaceScoped, text_enum


class Job(WorkspaceScoped, Base):
    """One unit of background work of a workspace, run by whichever server process claims
    it (``FOR UPDATE SKIP LOCKED``). ``claim`` is the fencing token of the run holding it:
    every write of a run names it, so a run whose claim was taken over (its process was
    presumed dead) can no longer change the job (docs/decisions/0033)."""

    __tablename__ = "jobs"

    kind: Mapped[str] = mapped_column(String(50), nullable=False)
    status: Mapped[JobStatus] = mapped_column(
        text_enum(JobStatus, "job_status"), nullable=False, default=JobStatus.QUEUED
    )
    # What the kind needs to run (an import's type, mapping, key, mode ...).
    params: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    # Work committed for good (rows of committed chunks): where a re-claimed run resumes.
    checkpoint: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    counts: Mapped[dict[str, int]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    # [{"line": n, "field": f, "code": c, "message": m}], at most ``jobs.MAX_ERRORS``.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'")
    )
    error_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The job runs as whoever created it, with the role or scopes they have then.
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    created_by_api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    cancel_requested: Mapped[bool] = mapped_column(nullable=False, default=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    claim: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_jobs_workspace_created", "workspace_id", "created_at", "id"),
        # The runners' queue: queued jobs, and running ones whose heartbeat may be stale.
        Index(
            "ix_jobs_runnable",
            "status",
            "created_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )


class JobFile(Base):
    """The file a job reads (an uploaded import), kept apart from the job row so that
    polling a job never reads it; deleted with the job."""

    __tablename__ = "job_files"

    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(500), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
