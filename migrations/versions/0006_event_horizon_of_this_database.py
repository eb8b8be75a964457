"""event horizon of this database

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-25 18:25:00

``crm_event_horizon()``: the txid below which every transaction that could still write an
event has finished. Before, streams were read below ``pg_snapshot_xmin`` of the current
snapshot, which counts write transactions of *every database of the cluster*: one long
write elsewhere (a batch job, a bulk load) held live updates back. Only transactions of
this database can write its events, so the horizon is the oldest xid among this
database's running transactions (``pg_stat_activity.backend_xid``), or the snapshot's
xmax when none runs. The xmax is taken first (a transaction that gets its xid later gets
one at or above it), then the activity is read afresh; the caller reads events in its
next statement, with a newer snapshot. ``backend_xid`` is a 32-bit xid: it is widened to
the epoch of the xmax (a running xid is never more than 2^31 behind it).

Sessions of other roles show no ``backend_xid`` to a role without ``pg_read_all_stats``:
the server's connections must all use one role (they do: one database URL).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION crm_event_horizon() RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            top bigint;
            base bigint;
            oldest bigint;
        BEGIN
            top := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
            base := top - top % 4294967296;
            PERFORM pg_stat_clear_snapshot();
            SELECT min(
                       base + backend_xid::text::bigint
                       - CASE WHEN backend_xid::text::bigint >= top % 4294967296
                              THEN 4294967296 ELSE 0 END
                   )
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
    op.execute("DROP FUNCTION crm_event_horizon()")
