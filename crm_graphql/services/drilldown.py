"""The rows behind a number (issue 13): every aggregate group and report cell says which
root list, filtered how, reproduces it, so a dashboard and its detail never disagree.

Services describe that filter in their own terms (the mapping ``storage.querying``
understands: snake_case fields and operators, UUIDs, enums, dates); a reference to another
object is a ``Ref`` so the API layer can write it as the global ID a client sends back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ref:
    """A reference to an object in a drill-down filter: its GraphQL type and id."""

    type_name: str
    id: uuid.UUID


@dataclass(frozen=True)
class DrillDown:
    """``list``: the root list field (``"deals"``); ``filter``: the filter that gives the rows
    behind the number on that list, before the caller's own filter is added to it."""

    list: str
    filter: dict[str, Any]


__all__ = ["DrillDown", "Ref"]
