"""Search documents: one row per searchable object, kept current by triggers in the
writing transaction (migration 0010, ``docs/decisions/0011-search.md``)."""

from __future__ import annotations

import enum
import uuid

from sqlalchemy import REAL, Boolean, ForeignKey, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.models.base import Base, Timestamped, text_enum


class SearchEntity(enum.StrEnum):
    """The kinds of objects search indexes (``search_documents.entity_type``)."""

    CUSTOMER = "customer"
    COMPANY = "company"
    DEAL = "deal"
    CONVERSATION = "conversation"
    ACTIVITY = "activity"


class SearchDocument(Timestamped, Base):
    """The folded tokens of one object. ``id`` is the object's own id (UUIDv7 ids are
    unique across tables), so a hit joins its row by primary key."""

    __tablename__ = "search_documents"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    entity_type: Mapped[SearchEntity] = mapped_column(
        text_enum(SearchEntity, "search_entity"), nullable=False
    )
    # Weighted lexemes (A: name or title, B: email, phone, domain, subject, C: company
    # name and tags), one position each (weights need a position): everything but the
    # bodies, small, searched first.
    names: Mapped[str] = mapped_column(TSVECTOR, nullable=False)
    # ``names`` and the bodies (D: activity and message bodies).
    document: Mapped[str] = mapped_column(TSVECTOR, nullable=False)
    # Whole values an exact query equals (folded name, email, phone digits ...): they
    # rank first.
    exact_keys: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'")
    )

    __table_args__ = (
        Index("ix_search_documents_workspace_type", "workspace_id", "entity_type", "id"),
        # GIN cannot lead with a uuid column without the btree_gin extension, which the
        # embedded server lacks: the workspace is checked on the rows the index finds.
        Index("ix_search_documents_names", "names", postgresql_using="gin"),
        Index("ix_search_documents_document", "document", postgresql_using="gin"),
    )


class SearchTerm(Base):
    """One lexeme of a document's ``names`` (migration 0017, decision 0019): as-you-type
    search reads, term by term of the prefix's range, the documents in score order from
    one index instead of ranking every match. Kept by triggers on ``search_documents``
    (same transaction), never written by the application."""

    __tablename__ = "search_terms"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # Compared byte-wise, so that a prefix's range is ``[prefix, next prefix)``.
    term: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    entity_type: Mapped[SearchEntity] = mapped_column(
        text_enum(SearchEntity, "search_term_entity"), nullable=False
    )
    # The best weight of the lexeme in ``names`` (A 1, B 0.5, C 0.25: exact in binary, so
    # that scores computed here and from the tsvector agree to the bit).
    weight: Mapped[float] = mapped_column(REAL, nullable=False)
    # The lexeme is one of the document's whole values (``exact_keys``).
    exact: Mapped[bool] = mapped_column(Boolean, nullable=False)

    __table_args__ = (
        Index(
            "ix_search_terms_ranked",
            "workspace_id",
            text("weight DESC"),
            "term",
            "id",
            postgresql_include=["entity_type", "exact"],
        ),
        Index(
            "ix_search_terms_exact",
            "workspace_id",
            "term",
            postgresql_where=text("exact"),
        ),
    )
