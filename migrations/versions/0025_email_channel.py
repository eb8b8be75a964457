"""email channel: mails of messages (the outbox) and message attachments

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 04:15:00

Issue 17 point 6 (docs/decisions/0035-email-channel.md):

- ``email_messages``: one row per mail of a message in an EMAIL conversation, sent or
  received: its Message-ID (unique per workspace, what replies name to thread), sender,
  recipients, subject, threading headers; for outbound mail the delivery state (pending,
  retrying, sent, failed), attempts, next attempt and last error, which make the table
  the outbox the mail dispatcher claims rows from.
- ``message_attachments``: files that came with a message, stored in the database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    ]


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def _references(table: str, *columns: str) -> list[sa.ForeignKeyConstraint]:
    targets = {
        "workspace_id": "workspaces",
        "message_id": "messages",
        "conversation_id": "conversations",
    }
    return [
        sa.ForeignKeyConstraint(
            [column],
            [f"{targets[column]}.id"],
            name=op.f(f"fk_{table}_{column}_{targets[column]}"),
            ondelete="CASCADE",
        )
        for column in columns
    ]


def upgrade() -> None:
    op.create_table(
        "email_messages",
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("direction", _enum("email_direction", "outbound", "inbound"), nullable=False),
        sa.Column("rfc_message_id", sa.Text(), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipients", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("in_reply_to", sa.Text(), nullable=True),
        sa.Column("references", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column(
            "status",
            _enum("email_delivery_status", "pending", "retrying", "sent", "failed"),
            nullable=True,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        *_references("email_messages", "message_id", "conversation_id", "workspace_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_messages")),
        sa.UniqueConstraint("message_id", name=op.f("uq_email_messages_message_id")),
        sa.UniqueConstraint(
            "workspace_id",
            "rfc_message_id",
            name=op.f("uq_email_messages_workspace_id_rfc_message_id"),
        ),
    )
    op.create_index(
        "ix_email_messages_due",
        "email_messages",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
    )
    op.create_index(
        "ix_email_messages_workspace_conversation",
        "email_messages",
        ["workspace_id", "conversation_id"],
    )
    op.create_table(
        "message_attachments",
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        *_timestamps(),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        *_references("message_attachments", "message_id", "workspace_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attachments")),
        sa.UniqueConstraint(
            "message_id", "position", name=op.f("uq_message_attachments_message_id_position")
        ),
    )
    op.create_index(
        "ix_message_attachments_workspace_message",
        "message_attachments",
        ["workspace_id", "message_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_message_attachments_workspace_message", "message_attachments")
    op.drop_table("message_attachments")
    op.drop_index("ix_email_messages_workspace_conversation", "email_messages")
    op.drop_index("ix_email_messages_due", "email_messages")
    op.drop_table("email_messages")
