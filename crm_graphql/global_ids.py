"""Opaque Relay global IDs: base64url of ``TypeName:uuid``. The API's one naming of a
record, used by the resolvers, the compiled reads, the event catalogue and webhooks."""

from __future__ import annotations

import base64
import binascii
import uuid


class MalformedId(ValueError):
    pass


def to_global_id(type_name: str, id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{id}".encode()).decode().rstrip("=")


def from_global_id(value: str) -> tuple[str, uuid.UUID]:
    """``(type_name, uuid)`` of a global ID, or ``MalformedId``."""
    try:
        padded = value + "=" * (-len(value) % 4)
        type_name, _, raw = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        return type_name, uuid.UUID(raw)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise MalformedId(f"`{value}` is not an ID issued by this API") from exc


def decode_id(value: str | None, expected: str) -> uuid.UUID | None:
    """The UUID behind a global ID of type ``expected``; None for an ID that is malformed
    or names another type (callers answer NOT_FOUND, as for an unknown ID)."""
    if value is None:
        return None
    try:
        type_name, id = from_global_id(value)
    except MalformedId:
        return None
    return id if type_name == expected else None
