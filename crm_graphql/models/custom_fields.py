"""Typed custom fields: what a workspace declares about the keys of ``custom_fields``."""

from __future__ import annotations

import enum

from sqlalchemy import Boolean, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.models.base import Archivable, Base, WorkspaceScoped, text_enum


class CustomFieldEntity(enum.StrEnum):
    """The records that carry ``custom_fields``."""

    CUSTOMER = "customer"
    COMPANY = "company"
    DEAL = "deal"


class CustomFieldType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"
    SINGLE_SELECT = "single_select"
    MULTI_SELECT = "multi_select"


class CustomFieldDefinition(WorkspaceScoped, Archivable, Base):
    """One key of an entity's ``custom_fields`` with its type; an archived definition keeps
    its key reserved (and its stored values) but no longer validates, filters or sorts."""

    __tablename__ = "custom_field_definitions"

    entity: Mapped[CustomFieldEntity] = mapped_column(
        text_enum(CustomFieldEntity, "custom_field_entity"), nullable=False
    )
    key: Mapped[str] = mapped_column(String(64), nullable=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[CustomFieldType] = mapped_column(
        text_enum(CustomFieldType, "custom_field_type"), nullable=False
    )
    options: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )
    required: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    searchable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    exportable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        Index(
            "uq_custom_field_definitions_workspace_entity_key",
            "workspace_id",
            "entity",
            "key",
            unique=True,
        ),
    )
