"""The per-event verdict: which subscribers may receive an event, decided once per event
and fan-out group (docs/decisions/0031-realtime-in-one-place.md); and what a subscriber
chooses to follow.

A subscription declares a ``Rule``: a frozen value (part of its fan-out group's key) that
judges an event for an *audience*: the group's visibility class (workspace, role, API key
or user, scopes) with no user of its own (``audience``). What differs between the users
of one group is named in the ``Verdict``: a private conversation's assignee sees its
events, its previous assignee is told it lost it. So a group of 900 agents costs one
verdict per event, and a member's own share of it is a dictionary lookup.

What a subscriber chooses (the root field's arguments: one conversation, ``activityFeed``'s
filter) is no verdict: it does not change what an event renders to, so it does not split
groups. The entity followed is an index of the group; a ``Selection`` (a filter on the
event's payload) is asked per member, only for events that member may receive.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from crm_graphql.services import conversations
from crm_graphql.services.actor import Actor
from crm_graphql.services.events import StoredEvent

# The user id of an audience's actor: nobody's, so it is assigned nothing and the verdict
# for every member is the same unless the verdict names the member's user.
NOBODY = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class Take:
    """A member receives the event."""

    last: bool = False  # ... and its subscription ends after it (it lost access)
    own: bool = False  # rendered as the member itself, not as its group's stand-in


DELIVER = Take()
LAST = Take(last=True)
OWN = Take(own=True)
_NO_USERS: Mapping[uuid.UUID, Take | None] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What each member of a group receives: ``everyone``'s share (None: nothing), unless
    its user is named in ``users``."""

    everyone: Take | None
    users: Mapping[uuid.UUID, Take | None] = field(default_factory=lambda: _NO_USERS)

    def take(self, user_id: uuid.UUID | None) -> Take | None:
        """The share of a member of user ``user_id`` (None for an API key)."""
        if user_id is not None and user_id in self.users:
            return self.users[user_id]
        return self.everyone


SKIP = Verdict(None)
ALL = Verdict(DELIVER)


class Rule(Protocol):
    """Judges an event of its stream for an audience (``audience``); hashable."""

    def __call__(self, event: StoredEvent, audience: Actor) -> Verdict: ...

    def __hash__(self) -> int: ...


def audience(actor: Actor) -> Actor:
    """``actor``'s visibility class as an actor: a user becomes nobody of the same role
    (what the user alone may see comes as names in the verdict); the request's id and
    address (audit) do not matter to a verdict."""
    user = NOBODY if actor.user_id is not None else None
    return dataclasses.replace(actor, user_id=user, request_id=None, client_ip=None)


@dataclass(frozen=True)
class Everything:
    """Every event of the stream to everyone who may follow it (``dealBoard``: the
    pipeline is the stream; ``activityFeed``: every activity)."""

    def __call__(self, event: StoredEvent, audience: Actor) -> Verdict:
        return ALL


class Selection(Protocol):
    """What one subscriber chooses among the events it may receive."""

    def __call__(self, event: StoredEvent) -> bool: ...


@dataclass(frozen=True)
class ActivityFilter:
    """``activityFeed``'s filter: activities of one customer, one deal, some types."""

    customer_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    types: frozenset[str] | None = None

    def __call__(self, event: StoredEvent) -> bool:
        payload = event.payload
        if self.customer_id and _uuid(payload.get("customer_id")) != self.customer_id:
            return False
        if self.deal_id and _uuid(payload.get("deal_id")) != self.deal_id:
            return False
        return not (self.types and payload.get("type") not in self.types)


@dataclass(frozen=True)
class ConversationAccess:
    """Conversation events the reader may see (``conversations.can_see``, from the
    event's payload: the conversation as the change left it). An agent unassigned from a
    private conversation receives that assignment, then nothing more of it; with
    ``ends`` (following that one conversation) the subscription ends after it."""

    ends: bool

    def __call__(self, event: StoredEvent, audience: Actor) -> Verdict:
        payload = event.payload
        private = bool(payload.get("is_private"))
        assignee = _uuid(payload.get("assignee_id"))
        if conversations.can_see(audience, is_private=private, assignee_id=assignee):
            return ALL
        if audience.user_id is None:  # an API key: nothing per user
            return SKIP
        users: dict[uuid.UUID, Take | None] = {}
        previous = _uuid(payload.get("previous_assignee_id"))
        if event.type == "conversation.assigned" and previous is not None:
            users[previous] = LAST if self.ends else DELIVER
        if assignee is not None:  # a private conversation: its assignee sees it
            users[assignee] = OWN
        return Verdict(None, MappingProxyType(users)) if users else SKIP


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


@dataclass(frozen=True)
class UntilFinished:
    """Every event of a stream that ends: the subscription ends after the event of type
    ``last`` (a job's ``job.finished``)."""

    last: str

    def __call__(self, event: StoredEvent, audience: Actor) -> Verdict:
        return LAST_FOR_ALL if event.type == self.last else ALL


LAST_FOR_ALL = Verdict(LAST)
