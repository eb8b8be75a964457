"""Segments: saved customer filters, evaluated when read."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.models.base import Archivable, Base, WorkspaceScoped


class Segment(WorkspaceScoped, Archivable, Base):
    __tablename__ = "segments"

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    # The CustomerFilter as a client writes it (GraphQL names, global IDs), validated on
    # write; parsed again on every read, so membership follows the data.
    filter: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    shared: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        Index("ix_segments_workspace_created", "workspace_id", "created_at", "id"),
        Index("ix_segments_workspace_name", "workspace_id", "name", "id"),
        Index("ix_segments_workspace_owner", "workspace_id", "owner_id"),
    )

    @property
    def built_in(self) -> bool:
        return False

    @property
    def rfm_segment(self) -> None:
        return None
