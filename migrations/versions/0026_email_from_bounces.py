"""email channel: a workspace's own From address, and bounces of sent mail

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 10:30:00

Issue 17 point 6, the follow-ups of docs/decisions/0035-email-channel.md:

- ``workspaces.email_from_address`` / ``email_from_name``: the From of the workspace's
  outgoing mail, set by an admin (``setWorkspaceEmailFrom``); NULL: the server's
  ``CRM_MAIL_FROM``.
- ``email_messages.bounced_at``: when a delivery status notification reported the sent
  mail as failed (its status is then ``failed`` and ``last_error`` holds the reason).

Outgoing attachments need no change: they are ``message_attachments`` rows, as inbound
ones are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workspaces", sa.Column("email_from_address", sa.String(320), nullable=True))
    op.add_column("workspaces", sa.Column("email_from_name", sa.String(200), nullable=True))
    op.create_check_constraint(
        op.f("ck_workspaces_email_from_name_needs_address"),
        "workspaces",
        "email_from_name IS NULL OR email_from_address IS NOT NULL",
    )
    op.add_column(
        "email_messages", sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("email_messages", "bounced_at")
    op.drop_constraint(
        op.f("ck_workspaces_email_from_name_needs_address"), "workspaces", type_="check"
    )
    op.drop_column("workspaces", "email_from_name")
    op.drop_column("workspaces", "email_from_address")
