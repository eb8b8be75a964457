"""webhook delivery attempts and payload versions

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 01:30:00

Issue 16 point 10 (docs/decisions/0029-partner-contract.md):

- ``webhook_delivery_attempts``: one row per HTTP attempt of a delivery (status code,
  error, duration, time), listed by ``WebhookDelivery.attemptHistory``. Deliveries made
  before kept only their last attempt's outcome: it becomes their one recorded attempt
  (numbered with their attempt count, duration unknown), so old deliveries still read.
- ``webhooks.payload_version``: the body's form. Webhooks that exist now were written
  against the stored form (version 1) and keep it; new ones get version 2 (the API's
  names, ``crm_graphql/event_catalogue.py``) unless they ask for 1.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_delivery_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("workspace_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_delivery_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_webhook_delivery_attempts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery_attempts")),
    )
    op.create_index(
        "ix_webhook_delivery_attempts_delivery",
        "webhook_delivery_attempts",
        ["delivery_id", "attempt", "id"],
    )
    op.execute(
        """
        INSERT INTO webhook_delivery_attempts
            (workspace_id, delivery_id, attempt, status_code, error, attempted_at)
        SELECT workspace_id, id, attempts, last_status_code, last_error,
               coalesce(delivered_at, updated_at)
        FROM webhook_deliveries
        WHERE attempts > 0 AND (last_status_code IS NOT NULL OR last_error IS NOT NULL)
        """
    )
    op.add_column(
        "webhooks",
        sa.Column("payload_version", sa.SmallInteger(), nullable=False, server_default="1"),
    )
    op.alter_column("webhooks", "payload_version", server_default=sa.text("2"))


def downgrade() -> None:
    op.drop_column("webhooks", "payload_version")
    op.drop_index("ix_webhook_delivery_attempts_delivery", "webhook_delivery_attempts")
    op.drop_table("webhook_delivery_attempts")
