"""search speed: a table of the lexemes of search documents' names

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 19:00:00

As-you-type search (issue 13, point 8; docs/decisions/0019-search-speed.md). A prefix of
two letters matches a large part of a workspace (``wi`` finds every "with" among the
activities' subjects), and ranking every match before keeping a page cost half a second
at S=10. ``search_terms`` holds one row per lexeme of each document's ``names`` with the
lexeme's best weight and whether it is a whole value of the document (``exact_keys``),
indexed by ``(workspace_id, weight DESC, term, id)``: for each weight and each term in a
prefix's range, the documents come out in id order, which is search's order within one
score, so a page reads a few rows per term instead of every match (decision 0019).

The rows are derived from ``search_documents`` by triggers on that table, in the
writing transaction: whatever writes a document (the triggers of revisions 0010 and
0016, bulk loads included) writes its terms. New documents are handled per statement
(one pass over a bulk load), changed ``names`` per row, deleted documents per statement
(a workspace's deletion removes its documents by cascade, and so its terms). Message
bodies never reach ``names``: a new message, which appends to its conversation's
``document``, does not touch the terms.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The terms of the documents of ``{docs}`` (a table or a row): each lexeme of ``names``,
# with its best weight (the values of ``crm_graphql.services.search.WEIGHTS``: A 1,
# B 0.5, C 0.25) and whether it is one of the document's whole values.
TERMS = """
    INSERT INTO search_terms (id, term, workspace_id, entity_type, weight, exact)
    SELECT {id}, u.lexeme, {workspace_id}, {entity_type},
        CASE WHEN 'A' = ANY (u.weights) THEN 1
             WHEN 'B' = ANY (u.weights) THEN 0.5
             WHEN 'C' = ANY (u.weights) THEN 0.25
             ELSE 0.125 END::real,
        u.lexeme = ANY ({exact_keys})
    FROM {source} CROSS JOIN LATERAL unnest({names}) AS u
"""


def _execute(sql: str) -> None:
    op.get_bind().exec_driver_sql(sql)


def upgrade() -> None:
    op.create_table(
        "search_terms",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("term", sa.Text(collation="C"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column(
            "entity_type",
            sa.Enum(
                "customer",
                "company",
                "deal",
                "conversation",
                "activity",
                name="search_term_entity",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("weight", sa.REAL(), nullable=False),
        sa.Column("exact", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", "term", name=op.f("pk_search_terms")),
    )
    # The terms of the documents that exist, before the indexes (one sort per index).
    _execute(
        TERMS.format(
            id="d.id",
            workspace_id="d.workspace_id",
            entity_type="d.entity_type",
            exact_keys="d.exact_keys",
            names="d.names",
            source="search_documents d",
        )
    )
    op.create_index(
        "ix_search_terms_ranked",
        "search_terms",
        ["workspace_id", sa.text("weight DESC"), "term", "id"],
        postgresql_include=["entity_type", "exact"],
    )
    op.create_index(
        "ix_search_terms_exact",
        "search_terms",
        ["workspace_id", "term"],
        postgresql_where=sa.text("exact"),
    )
    _execute(
        f"""
        CREATE FUNCTION crm_search_terms_inserted() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            {
            TERMS.format(
                id="d.id",
                workspace_id="d.workspace_id",
                entity_type="d.entity_type",
                exact_keys="d.exact_keys",
                names="d.names",
                source="new_docs d",
            )
        };
            RETURN NULL;
        END $fn$
        """
    )
    _execute(
        f"""
        CREATE FUNCTION crm_search_terms_changed() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            DELETE FROM search_terms WHERE id = OLD.id;
            {
            TERMS.format(
                id="NEW.id",
                workspace_id="NEW.workspace_id",
                entity_type="NEW.entity_type",
                exact_keys="NEW.exact_keys",
                names="NEW.names",
                source="(SELECT) AS one_row",
            )
        };
            RETURN NULL;
        END $fn$
        """
    )
    _execute(
        """
        CREATE FUNCTION crm_search_terms_deleted() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            DELETE FROM search_terms t USING old_docs d WHERE t.id = d.id;
            RETURN NULL;
        END $fn$
        """
    )
    _execute(
        "CREATE TRIGGER search_terms_insert AFTER INSERT ON search_documents "
        "REFERENCING NEW TABLE AS new_docs "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_search_terms_inserted()"
    )
    _execute(
        "CREATE TRIGGER search_terms_update AFTER UPDATE OF names, exact_keys "
        "ON search_documents FOR EACH ROW "
        "WHEN (OLD.names IS DISTINCT FROM NEW.names "
        "OR OLD.exact_keys IS DISTINCT FROM NEW.exact_keys) "
        "EXECUTE FUNCTION crm_search_terms_changed()"
    )
    _execute(
        "CREATE TRIGGER search_terms_delete AFTER DELETE ON search_documents "
        "REFERENCING OLD TABLE AS old_docs "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_search_terms_deleted()"
    )


def downgrade() -> None:
    for trigger in ("search_terms_delete", "search_terms_update", "search_terms_insert"):
        _execute(f"DROP TRIGGER {trigger} ON search_documents")
    for function in ("deleted", "changed", "inserted"):
        _execute(f"DROP FUNCTION crm_search_terms_{function}()")
    op.drop_index("ix_search_terms_exact", table_name="search_terms")
    op.drop_index("ix_search_terms_ranked", table_name="search_terms")
    op.drop_table("search_terms")
