"""append-only audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:20:00

A trigger refuses UPDATE, DELETE and TRUNCATE of ``audit_log`` whoever asks (the API has
no such path either). One exception: a transaction that sets
``SET LOCAL crm.audit_redaction = 'on'`` may rewrite the ``changes`` of entries, and only
that column, to redact a person's data when the customer is erased.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION audit_log_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE'
               AND current_setting('crm.audit_redaction', true) = 'on'
               AND (to_jsonb(NEW) - 'changes') = (to_jsonb(OLD) - 'changes') THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
