"""Tenants, people who log in, partner API keys and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.enums import Role
from crm_graphql.models.base import Archivable, Base, Timestamped, WorkspaceScoped, text_enum, uuid7


class Workspace(Timestamped, Base):
    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # Customer custom-field keys whose values are encrypted at rest (services/privacy.py).
    sensitive_custom_fields: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )
    # The From of the workspace's outgoing mail (``setWorkspaceEmailFrom``, admins); NULL:
    # the server's CRM_MAIL_FROM (docs/decisions/0035-email-channel.md).
    email_from_address: Mapped[str | None] = mapped_column(String(320))
    email_from_name: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("uq_workspaces_lower_name", func.lower(name), unique=True),
        CheckConstraint(
            "email_from_name IS NULL OR email_from_address IS NOT NULL",
            name="email_from_name_needs_address",
        ),
    )


class User(WorkspaceScoped, Archivable, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[Role] = mapped_column(text_enum(Role, "user_role"), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # One account per email across the server: login takes only email and password.
    __table_args__ = (
        Index("uq_users_lower_email", func.lower(email), unique=True),
        Index("ix_users_workspace_created", "workspace_id", "created_at", "id"),
    )


class ApiKey(WorkspaceScoped, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    secret_hash: Mapped[str] = mapped_column(Text, nullable=False)
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The key's own budgets (``setApiKeyBudget``); NULL: the server's defaults.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_query_cost: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_api_keys_workspace_created", "workspace_id", "created_at", "id"),
        CheckConstraint(
            "(rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0)"
            " AND (max_query_cost IS NULL OR max_query_cost > 0)",
            name="budget_positive",
        ),
    )


class RefreshToken(WorkspaceScoped, Base):
    """A rotating refresh token, stored as a SHA-256 of its random secret. Tokens of one
    login share a ``family_id``: replaying a used token revokes the whole family."""

    __tablename__ = "refresh_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_refresh_tokens_workspace_user", "workspace_id", "user_id"),
        Index("ix_refresh_tokens_family", "family_id"),
    )


class WorkspaceCredentials(Base):
    """A workspace's credentials counter: every change that ends credentials (a revoked
    key, a disabled user, a role change, a logout) moves it by one, under this row's lock,
    so it moves in commit order. Real-time readers read it with the events they deliver
    (services/credentials.py)."""

    __tablename__ = "workspace_credentials"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CredentialRevocation(Base):
    """What one move of the counter ended: an API key, a user's every login, or one login
    (a refresh-token family). Kept a day: only live connections read it, seconds later."""

    __tablename__ = "credential_revocations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # api_key, user, login
    subject_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (Index("ix_credential_revocations_workspace_seq", "workspace_id", "seq"),)
