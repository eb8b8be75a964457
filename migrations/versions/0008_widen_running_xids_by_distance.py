"""widen running xids by their distance to the xmax

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 12:00:00

``crm_event_horizon()`` (0006) widened each running ``backend_xid`` (32 bits) to 64 bits
on the assumption that every running xid is below the xmax it had read, and put any xid
at or above the xmax's low 32 bits into the previous epoch. But the activity is read
after the xmax, and a transaction that got its xid in between has one at or above it: the
horizon came out about 2^32 too low, streams started from their origin, and a new
subscriber without a cursor received the workspace's history (issue 12, point 1; four
sessions writing in a loop: 2,879 of 3,000 calls wrong).

``crm_xid_near(xid, near)`` widens a 32-bit xid to the 64-bit xid with those low 32 bits
that is nearest to ``near``: ``near`` plus the signed 32-bit distance between the two.
A running xid is never more than 2^31 away from the current xmax, below (older, still
running: wraparound protection stops the cluster long before) or above (assigned since
the xmax was read), so this is exact. It is a pure function, tested on its own over
epoch boundaries (tests/services/test_events.py).
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION crm_xid_near(x xid, near bigint) RETURNS bigint
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
            SELECT near + (x::text::bigint - near % 4294967296 + 6442450944) % 4294967296
                   - 2147483648
        $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION crm_event_horizon() RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            top bigint;
            oldest bigint;
        BEGIN
            top := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
            PERFORM pg_stat_clear_snapshot();
            SELECT min(crm_xid_near(backend_xid, top))
              INTO oldest
              FROM pg_stat_activity
             WHERE datname = current_database()
               AND backend_xid IS NOT NULL
               AND pid <> pg_backend_pid();
            RETURN least(top, coalesce(oldest, top));
        END
        $$
        """
    )


def downgrade() -> None:
    # Back to the horizon as revision 0006 creates it.
    op.execute("DROP FUNCTION crm_event_horizon()")
    context.script.get_revision("0006").module.upgrade()
    op.execute("DROP FUNCTION crm_xid_near(xid, bigint)")
