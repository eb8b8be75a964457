"""normalised contacts: existing emails trimmed and lower-cased, phones in E.164

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 01:30:00

Writes normalise emails (``services.fields.email``) and phone numbers
(``services.fields.phone``: E.164 when the number names its country) since issue 17,
point 5; this brings the rows written before to the same form, with the same functions,
so duplicates are found by equal values (docs/decisions/0032-sync-and-clean-data.md).

- Customer emails: trimmed and lower-cased (writes always did; rows inserted by other
  means may not be). A row whose normalised email another customer of its workspace
  already holds keeps its own: the uniqueness of emails wins, and the pair shows up in
  ``duplicateCandidates``.
- Customer and company phones: E.164 where the number names its country; others stay
  as they are.

Each changed row is an ``updated`` change in the change feed (migration 0022's
triggers), as any other write. The downgrade leaves the values as they are: an E.164
number is the same number, and the original spacing is not kept anywhere (a restore
from a backup taken before the upgrade is the way back to it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm_graphql.services import fields

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def _normalise_phones(table: str) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text(f"SELECT id, phone FROM {table} WHERE phone IS NOT NULL")).all()
    changed = [
        {"id": id, "phone": normalised}
        for id, phone in rows
        if (normalised := fields.phone(phone)) != phone
    ]
    for start in range(0, len(changed), BATCH):
        conn.execute(
            sa.text(f"UPDATE {table} SET phone = :phone WHERE id = :id"),
            changed[start : start + BATCH],
        )


def upgrade() -> None:
    op.execute(
        """
        UPDATE customers c SET email = nullif(lower(btrim(c.email)), '')
        WHERE c.email IS NOT NULL AND c.email <> lower(btrim(c.email))
          AND NOT EXISTS (
              SELECT FROM customers o
              WHERE o.workspace_id = c.workspace_id AND o.id <> c.id
                AND lower(o.email) = lower(btrim(c.email))
          )
        """
    )
    _normalise_phones("customers")
    _normalise_phones("companies")


def downgrade() -> None:
    """Nothing to undo: see the module's docstring."""
