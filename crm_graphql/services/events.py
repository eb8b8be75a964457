"""Durable events: written in the change's transaction, announced on Redis after commit."""

from __future__ import annotations

import base64
import binascii
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Table
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from crm_graphql.models import Event
from crm_graphql.models.base import load_json
from crm_graphql.services.actor import Actor
from crm_graphql.services.audit import jsonable
from crm_graphql.services.credentials import COUNTER_SQL
from crm_graphql.services.errors import Invalid
from crm_graphql.storage import bound

PENDING_KEY = "crm_pending_events"
# Set by a bulk writer (``coalescing``): the events its rows' services would write, kept
# here instead, so that it writes one event per batch rather than one per row.
COALESCE_KEY = "crm_coalesced_events"
# The change feed's rows (``services.sync``), written by database triggers (migration
# 0022): read by pulling, never announced, never sent to webhooks.
CHANGES_TOPIC = "changes"


def event_values(
    actor: Actor,
    *,
    topic: str,
    type: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """The values of an event row: what ``record_event`` adds, and what a service that
    writes its change and its events in one statement inserts (it then ``announce``s the
    topic)."""
    return {
        "workspace_id": actor.workspace_id,
        "topic": topic,
        "type": type,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "payload": jsonable(payload),
    }


def record_event(
    actor: Actor,
    session: AsyncSession,
    *,
    topic: str,
    type: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    payload: dict[str, Any],
) -> Event | None:
    """Add an event row to the unit of work; it becomes visible only if the change commits.
    The topic names the stream a subscriber follows (``workspace``, ``pipeline:<id>``,
    ``conversation:<id>`` ...). Under ``coalescing`` the event is noted, not written
    (None)."""
    coalesced = session.info.get(COALESCE_KEY)
    if coalesced is not None:
        coalesced.append(Coalesced(type, entity_type, entity_id))
        return None
    row = Event(
        **event_values(
            actor,
            topic=topic,
            type=type,
            entity_type=entity_type,
            entity_id=entity_id,
            payload=payload,
        )
    )
    session.add(row)
    announce(actor, session, topic)
    return row


# The columns an event is written with (the rest are PostgreSQL's: id, txid, created_at).
EVENT_COLUMNS = ("workspace_id", "topic", "type", "entity_type", "entity_id", "payload")


def insert_statement(prefix: str, *, source: Any = None) -> Any:
    """``INSERT`` of one event row whose values are parameters under ``prefix``
    (``bound.params(prefix, event_values(...))``), written only if ``source`` (a CTE of
    the same statement) has a row: for a statement that writes a change and its event
    together (built once; the caller ``announce``s the topic)."""
    return bound.insert_row(cast(Table, Event.__table__), prefix, EVENT_COLUMNS, source=source)


def coalescing_in(session: AsyncSession) -> bool:
    """Whether a bulk writer collects this session's events (``coalescing``): services
    then write through ``record_event``, which notes them instead."""
    return COALESCE_KEY in session.info


@dataclass(frozen=True)
class Coalesced:
    """An event a service would have written under ``coalescing``."""

    type: str
    entity_type: str
    entity_id: uuid.UUID | None


@contextlib.contextmanager
def coalescing(session: AsyncSession) -> Iterator[list[Coalesced]]:
    """While open, events the services record on ``session`` are collected in the list
    it gives instead of written: a bulk writer (an import) writes one event per batch
    of them."""
    collected: list[Coalesced] = []
    session.info[COALESCE_KEY] = collected
    try:
        yield collected
    finally:
        session.info.pop(COALESCE_KEY, None)


def announce(actor: Actor, session: AsyncSession, topic: str) -> None:
    """Note that this transaction writes an event of ``topic`` (``record_event`` does it;
    a service inserting event rows with a statement of its own calls it): the topic's
    listeners are told once the transaction commits."""
    session.info.setdefault(PENDING_KEY, []).append((actor.workspace_id, topic))


def take_committed_topics(session: AsyncSession) -> list[tuple[uuid.UUID, str]]:
    """Topics touched by the transaction that just committed (to notify after commit)."""
    topics: list[tuple[uuid.UUID, str]] = session.info.pop(PENDING_KEY, [])
    return list(dict.fromkeys(topics))


@sa_event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


# ------------------------------------------------------------------ reading the log


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """Where an event sits in its stream: ``(txid, id)``. Streams are read in this order
    and only below the oldest transaction of this database still running (``horizon``),
    so an event that commits late always lands after every position already handed out:
    resuming after a position never skips anything."""

    txid: int
    id: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"ev:{self.txid}:{self.id}".encode()).decode().rstrip("=")

    @staticmethod
    def decode(cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
            tag, txid, id = raw.split(":")
            if tag != "ev":
                raise ValueError(tag)
            position = Position(int(txid), int(id))
            # Both are bigint columns: a larger number is no position of the log.
            if not (
                _INT64_MIN <= position.txid <= LAST_ID and _INT64_MIN <= position.id <= LAST_ID
            ):
                raise ValueError(raw)
            return position
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise Invalid("Invalid event cursor: pass the `cursor` of an event", "after") from exc


ORIGIN = Position(-1, -1)
# No event id is greater: ``Position(txid, LAST_ID)`` sorts after every event of ``txid``.
LAST_ID = 2**63 - 1
_INT64_MIN = -(2**63)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A PostgreSQL snapshot (``pg_current_snapshot()``): which transactions had ended
    when it was taken. Its rule is ``pg_visible_in_snapshot``'s (tests hold them to each
    other)."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @staticmethod
    def parse(text: str) -> Snapshot:
        """From ``pg_snapshot``'s text form, ``xmin:xmax:xip,xip,...``."""
        xmin, xmax, xip = text.split(":")
        return Snapshot(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def sees(self, txid: int) -> bool:
        """Whether transaction ``txid`` had ended: its events, if it committed, were
        committed when the snapshot was taken."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.xip)


@dataclass(frozen=True, slots=True)
class Now:
    """Where a subscription without a cursor starts: just below the ``horizon``
    (``position``), skipping the events that ``before`` sees (committed already, yet at
    or above the horizon because an older transaction was still running). So it receives
    what commits after it subscribed, and never the stream's history."""

    horizon: int
    before: Snapshot

    @property
    def position(self) -> Position:
        return Position(self.horizon - 1, LAST_ID)


@dataclass(frozen=True)
class StoredEvent:
    """An event as read back from the log."""

    position: Position
    workspace_id: uuid.UUID
    topic: str
    type: str
    entity_type: str
    entity_id: uuid.UUID | None
    payload: dict[str, Any]
    created_at: datetime

    @property
    def cursor(self) -> str:
        return self.position.encode()


# Reading the log is the hot path of real time (every stream re-reads it as events
# come): plain statements on an asyncpg connection (``db.engine.make_read_pool``), no ORM.
HORIZON_SQL = "SELECT crm_event_horizon()"
# The snapshot is the statement's, taken before the horizon: whatever it sees had committed
# before the subscription started; whatever commits after the statement is at or above
# the horizon (everything below it had ended) and not seen by the snapshot.
_NOW_SQL = "SELECT crm_event_horizon(), pg_current_snapshot()::text"
_STREAM = "workspace_id = $1 AND topic = $2 AND (txid, id) > ($3, $4)"
_READ_SQL = f"""
    SELECT id, txid, workspace_id, topic, type, entity_type, entity_id, payload, created_at,
           EXISTS (SELECT FROM events WHERE {_STREAM} AND txid >= $5) AS held_back,
           {COUNTER_SQL} AS credentials
    FROM events WHERE {_STREAM} AND txid < $5
    ORDER BY txid, id LIMIT $6
"""
_WAITING_SQL = f"SELECT EXISTS (SELECT FROM events WHERE {_STREAM} AND txid >= $5)"
_HEAD_SQL = """
    SELECT txid, id FROM events WHERE workspace_id = $1 AND topic = $2 AND txid < $3
    ORDER BY txid DESC, id DESC LIMIT 1
"""


class LogReader(Protocol):
    """An asyncpg connection (or a pool's proxy of one)."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...


_OLDEST_WRITER_SQL = """
    SELECT pid, application_name, client_addr, state, xact_start, state_change,
           left(query, 200) AS query
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid IS NOT NULL
      AND pid <> pg_backend_pid()
    ORDER BY age(backend_xid) DESC
    LIMIT 1
"""


async def oldest_writer(conn: LogReader) -> str | None:
    """The backend of this database's oldest running transaction that holds an xid (what
    holds the horizon), described for a log line; None when there is none."""
    row = await conn.fetchrow(_OLDEST_WRITER_SQL)
    if row is None:
        return None
    return (
        f"backend {row['pid']} ({row['application_name'] or 'no application name'}"
        f" from {row['client_addr'] or 'a local socket'}), {row['state']}"
        f" since {row['state_change']}, in a transaction since {row['xact_start']};"
        f" its last statement: {row['query']!r}"
    )


async def horizon(conn: LogReader) -> int:
    """The txid below which every transaction of this database that could still write an
    event has finished (``crm_event_horizon()``, migration 0006): events below it never
    change any more. Call it in its own statement *before* reading the events, so the
    read's snapshot is newer than the horizon."""
    return int(await conn.fetchval(HORIZON_SQL))


async def read_events(
    conn: LogReader,
    workspace_id: uuid.UUID,
    topic: str,
    after: Position,
    *,
    limit: int = 500,
    below: int | None = None,
) -> tuple[list[StoredEvent], bool, int | None]:
    """Committed events of a stream after ``after``, in order, at most ``limit``; whether
    committed events exist that must still wait for an older transaction (the caller
    reads again shortly); and the workspace's credentials counter in the snapshot that
    read the events (None when there are none): a connection whose credentials were
    revoked by then must not be sent them (``services.credentials``). ``below``: the
    horizon, if the caller has just taken it (``horizon``) in an earlier statement;
    taken here otherwise.

    Only deliverable rows are fetched (below the horizon), so a stream held back by a
    long write, while events pile up above the horizon, is re-read cheaply; whether any
    event waits above it comes with the rows (an uncorrelated ``EXISTS``, evaluated once),
    or in a statement of its own when no row is deliverable."""
    limit_txid = below if below is not None else await horizon(conn)
    stream = (workspace_id, topic, after.txid, after.id, limit_txid)
    rows = await conn.fetch(_READ_SQL, *stream, limit)
    if rows:
        held_back = bool(rows[0]["held_back"])
        credentials: int | None = int(rows[0]["credentials"])
    else:
        held_back = bool(await conn.fetchval(_WAITING_SQL, *stream))
        credentials = None
    events = [
        StoredEvent(
            Position(row["txid"], row["id"]),
            row["workspace_id"],
            row["topic"],
            row["type"],
            row["entity_type"],
            row["entity_id"],
            load_json(row["payload"]),  # as the engine decodes JSON columns
            row["created_at"],
        )
        for row in rows
    ]
    return events, held_back, credentials


async def now(conn: LogReader) -> Now:
    """Where a subscription without a cursor starts (``Now``); one statement. While no
    transaction starts or ends, every subscription gets the same (shared) value: each
    pushed subscription keeps it until an event reaches it."""
    global _last_now
    below, snapshot = await conn.fetchrow(_NOW_SQL)
    last = _last_now
    if last is not None and last[0] == (below, snapshot):
        return last[1]
    found = Now(int(below), Snapshot.parse(snapshot))
    _last_now = ((below, snapshot), found)
    return found


_last_now: tuple[tuple[Any, str], Now] | None = None


async def head(
    conn: LogReader, workspace_id: uuid.UUID, topic: str, *, below: int | None = None
) -> Position:
    """The position of the stream's newest deliverable event, or ``ORIGIN`` when none
    lies below the horizon: where a reader of the stream can start, having nothing
    deliverable behind it. ``below``: a horizon taken before (``now``), else one is taken
    here. Subscribers without a cursor start at ``now()``, not here."""
    limit_txid = below if below is not None else await horizon(conn)
    row = await conn.fetchrow(_HEAD_SQL, workspace_id, topic, limit_txid)
    return Position(row["txid"], row["id"]) if row else ORIGIN
