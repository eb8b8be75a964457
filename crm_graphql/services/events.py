"""Durable events: written in the change's transaction, announced on Redis after commit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from crm_graphql.models import Event
from crm_graphql.services.actor import Actor
from crm_graphql.services.audit import jsonable

PENDING_KEY = "crm_pending_events"


def record_event(
    actor: Actor,
    session: AsyncSession,
    *,
    topic: str,
    type: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    payload: dict[str, Any],
) -> Event:
    """Add an event row to the unit of work; it becomes visible only if the change commits.
    The topic names the stream a subscriber follows (``workspace``, ``pipeline:<id>``,
    ``conversation:<id>`` ...)."""
    row = Event(
        workspace_id=actor.workspace_id,
        topic=topic,
        type=type,
        entity_type=entity_type,
        entity_id=entity_id,
        payload=jsonable(payload),
    )
    session.add(row)
    session.info.setdefault(PENDING_KEY, []).append((actor.workspace_id, topic))
    return row


def take_committed_topics(session: AsyncSession) -> list[tuple[uuid.UUID, str]]:
    """Topics touched by the transaction that just committed (to notify after commit)."""
    topics: list[tuple[uuid.UUID, str]] = session.info.pop(PENDING_KEY, [])
    return list(dict.fromkeys(topics))


@sa_event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)
