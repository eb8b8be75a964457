"""api key budgets

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 01:00:00

Per-API-key budgets set by admins (``setApiKeyBudget``, issue 16 point 8;
docs/decisions/0029-partner-contract.md): operations per minute and the largest query cost
of one operation. NULL keeps the server's defaults (``CRM_RATE_LIMIT_API_KEY_PER_MINUTE``,
``CRM_MAX_QUERY_COST``), so every existing key keeps what it had.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True))
    op.add_column("api_keys", sa.Column("max_query_cost", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_api_keys_budget_positive"),
        "api_keys",
        "(rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0)"
        " AND (max_query_cost IS NULL OR max_query_cost > 0)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_api_keys_budget_positive"), "api_keys", type_="check")
    op.drop_column("api_keys", "max_query_cost")
    op.drop_column("api_keys", "rate_limit_per_minute")
