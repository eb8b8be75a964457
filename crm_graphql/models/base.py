"""Declarative base, UUIDv7 keys and the columns every business table shares."""

from __future__ import annotations

import enum
import json
import os
import time
import uuid
from datetime import datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import DateTime, Enum, ForeignKey, MetaData, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): new rows land at the right edge of the
    primary-key index instead of at random pages."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 64) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    # Server-side defaults and onupdate values (created_at, updated_at, txid) come back
    # with RETURNING: reading them later must not lazy-load, which async code cannot do.
    __mapper_args__ = {"eager_defaults": True}


def load_json(text: str | bytes) -> Any:
    """A stored JSON value (JSONB text) as Python, the way every reader decodes it (the
    ORM, plain connections, encrypted fields). PostgreSQL keeps numbers of any size;
    clients and orjson handle whole numbers of 64 bits, so a larger one reads as the
    nearest float, and one beyond a float's range as infinity (answered as ``null``):
    never an error on read, and the same on the compiled path (README "JSON values")."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # a number beyond a float's range
        return json.loads(text, parse_int=_whole_number)


def _whole_number(text: str) -> int | float:
    number = int(text)
    return number if -(2**63) <= number < 2**64 else float(text)


E = TypeVar("E", bound=enum.Enum)


def text_enum(enum_cls: type[E], name: str) -> Enum:
    """Store an enum as its lower-case value in a text column with a CHECK constraint:
    adding a value is a one-line migration, unlike a native PostgreSQL enum."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda cls: [m.value for m in cls],
        validate_strings=True,
    )


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class WorkspaceScoped(Timestamped):
    """A business row: UUIDv7 key, tenant column, timestamps."""

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid7)

    @declared_attr
    def workspace_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(
            UUID(as_uuid=True),
            ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        )


class Archivable:
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
