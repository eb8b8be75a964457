"""sales and service reports

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-05 16:00:00

Issue 13, point 5 (docs/decisions/0015-reports.md):

- ``deal_stage_changes``: one row per ``moveDeal``, written in its transaction, backfilled
  from the STAGE_CHANGE activities ``moveDeal`` wrote until now (their
  ``details.from_stage_id`` / ``to_stage_id``, at ``occurred_at``).
- ``conversations.first_customer_message_at``, ``first_response_at`` and ``closed_at``,
  kept by the conversation writers in the statement that changes the row; backfilled from
  the messages (first customer message, first agent message after it) and, for closed
  conversations, from the last status change to closed in the audit log (else the last
  update).
- ``conversations.rating_score`` (1 to 5), ``rating_comment``, ``rated_at``: the CSAT rating.
- indexes for the periods the reports read: deals closed, conversations closed, first
  answered, rated.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deal_stage_changes",
        sa.Column("deal_id", sa.UUID(), nullable=False),
        sa.Column("from_stage_id", sa.UUID(), nullable=False),
        sa.Column("to_stage_id", sa.UUID(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["deals.id"],
            name=op.f("fk_deal_stage_changes_deal_id_deals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["from_stage_id"],
            ["stages.id"],
            name=op.f("fk_deal_stage_changes_from_stage_id_stages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["to_stage_id"],
            ["stages.id"],
            name=op.f("fk_deal_stage_changes_to_stage_id_stages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_deal_stage_changes_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal_stage_changes")),
    )
    op.create_index(
        "ix_deal_stage_changes_workspace_deal",
        "deal_stage_changes",
        ["workspace_id", "deal_id", "changed_at"],
        unique=False,
    )
    # gen_random_uuid() is core PostgreSQL (13+); the rows are history, their key order
    # does not matter.
    op.execute(
        """
        INSERT INTO deal_stage_changes (id, workspace_id, deal_id, from_stage_id, to_stage_id,
                                        changed_at, created_at, updated_at)
        SELECT gen_random_uuid(), a.workspace_id, a.deal_id,
               CAST(a.details ->> 'from_stage_id' AS uuid),
               CAST(a.details ->> 'to_stage_id' AS uuid),
               a.occurred_at, a.created_at, a.created_at
        FROM activities a
        JOIN deals d ON d.id = a.deal_id AND d.workspace_id = a.workspace_id
        JOIN stages f ON f.id = CAST(a.details ->> 'from_stage_id' AS uuid)
                     AND f.workspace_id = a.workspace_id
        JOIN stages t ON t.id = CAST(a.details ->> 'to_stage_id' AS uuid)
                     AND t.workspace_id = a.workspace_id
        WHERE a.type = 'stage_change'
          AND a.details ->> 'from_stage_id' ~ '^[0-9a-f-]{36}$'
          AND a.details ->> 'to_stage_id' ~ '^[0-9a-f-]{36}$'
        """
    )
    op.create_index(
        "ix_deals_workspace_pipeline_closed",
        "deals",
        ["workspace_id", "pipeline_id", "closed_at"],
        unique=False,
    )
    for column in ("first_customer_message_at", "first_response_at", "closed_at", "rated_at"):
        op.add_column("conversations", sa.Column(column, sa.DateTime(timezone=True)))
    op.add_column("conversations", sa.Column("rating_score", sa.SmallInteger()))
    op.add_column("conversations", sa.Column("rating_comment", sa.Text()))
    op.create_check_constraint(
        op.f("ck_conversations_rating_score_range"),
        "conversations",
        "rating_score BETWEEN 1 AND 5",
    )
    op.execute(
        """
        UPDATE conversations c
        SET first_customer_message_at = f.first_customer_at,
            first_response_at = (
                SELECT min(m.created_at) FROM messages m
                WHERE m.conversation_id = c.id AND m.author_type = 'agent'
                  AND m.created_at >= f.first_customer_at
            )
        FROM (
            SELECT conversation_id, min(created_at) AS first_customer_at
            FROM messages WHERE author_type = 'customer' GROUP BY conversation_id
        ) f
        WHERE f.conversation_id = c.id
        """
    )
    op.execute(
        """
        UPDATE conversations c
        SET closed_at = coalesce(
            (SELECT max(a.created_at) FROM audit_log a
             WHERE a.workspace_id = c.workspace_id AND a.entity_type = 'Conversation'
               AND a.entity_id = c.id AND a.changes -> 'status' ->> 'after' = 'closed'),
            c.updated_at)
        WHERE c.status = 'closed'
        """
    )
    op.create_index(
        "ix_conversations_workspace_closed",
        "conversations",
        ["workspace_id", "closed_at"],
        unique=False,
    )
    op.create_index(
        "ix_conversations_workspace_first_response",
        "conversations",
        ["workspace_id", "first_response_at"],
        unique=False,
    )
    op.create_index(
        "ix_conversations_workspace_rated",
        "conversations",
        ["workspace_id", "rated_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_workspace_rated", table_name="conversations")
    op.drop_index("ix_conversations_workspace_first_response", table_name="conversations")
    op.drop_index("ix_conversations_workspace_closed", table_name="conversations")
    op.drop_constraint(op.f("ck_conversations_rating_score_range"), "conversations", type_="check")
    for column in (
        "rating_comment",
        "rating_score",
        "rated_at",
        "closed_at",
        "first_response_at",
        "first_customer_message_at",
    ):
        op.drop_column("conversations", column)
    op.drop_index("ix_deals_workspace_pipeline_closed", table_name="deals")
    op.drop_index("ix_deal_stage_changes_workspace_deal", table_name="deal_stage_changes")
    op.drop_table("deal_stage_changes")
