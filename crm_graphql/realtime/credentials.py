"""A process's live connections and the credentials they stand on: a socket never
outlives its credentials (DESIGN.md, Real time; docs/decisions/0002-realtime.md).

Each authenticated WebSocket holds a ``Credential``: its ``Grant`` (the identities it
stands on, its expiry, and the workspace's credentials counter its check saw) and, once
they end, why. ``Watch`` (one per process, owned by the hub) ends them:

- at expiry (access token, API key with ``expiresAt``), by a timer, and before any write
  of the hub that could come after it (``expire_due``);
- when the workspace's counter moves (``services.credentials``): it reads what was
  revoked after the counter it knows and ends the matching credentials whose check came
  before. It learns of a move from the hub's stream reads, which return the counter in
  the snapshot of the events they read and ``settle`` it *before* anything of that read
  is sent; from the Redis notice ``crm:<workspace>:credentials``; and from a poll of the
  counters (``poll``, faster while Redis is down), so idle sockets close promptly.

Ending is synchronous: ``Credential.ended`` is set, and ``on_end`` (the WebSocket layer:
close the socket) is called, before the event loop runs anything else. The hub checks
``ended`` before every write, so nothing is sent after it, on any subscription of the
socket.

Why nothing committed after a revocation is sent: an event read in a snapshot is
committed before it; a revocation that committed before the event is in that snapshot
too, so the counter read with the event covers it. A socket checked *after* such a read
was settled registers with a counter below what the watch knows and catches up by itself
before it is acknowledged (``register``). ``known`` is forgotten only for a workspace
without sockets or streams here, so no event held in memory was read under a counter
the watch no longer knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from crm_graphql.realtime import wait_until_set
from crm_graphql.services import credentials
from crm_graphql.services.credentials import Grant, Identity, Reason, Revocation

log = logging.getLogger(__name__)


class Credential:
    """One connection's credentials, as the hub follows them."""

    __slots__ = ("_on_end", "ended", "grant", "registered")

    def __init__(self, grant: Grant, on_end: Callable[[Reason], None]) -> None:
        self.grant = grant
        self.ended: Reason | None = None  # why they ended; nothing is sent after
        self.registered = False
        self._on_end = on_end

    def end(self, reason: Reason) -> None:
        if self.ended is None:
            self.ended = reason
            self._on_end(reason)


@dataclass
class WatchSettings:
    poll: float = 0.5  # seconds between reads of the counters (Redis notices come first)
    redis_down_poll: float = 0.25  # ... while Redis is unreachable


class Watch:
    """The credentials of this process's connections (see the module's docstring)."""

    def __init__(
        self,
        pool: Any,
        settings: WatchSettings | None = None,
        *,
        redis_up: Callable[[], bool] = lambda: True,
        on_workspace: Callable[[uuid.UUID, bool], None] = lambda ws, watched: None,
        has_streams: Callable[[uuid.UUID], bool] = lambda ws: False,
    ) -> None:
        self.pool = pool
        self.settings = settings or WatchSettings()
        self._redis_up = redis_up
        self._on_workspace = on_workspace  # a workspace gains its first / loses its last
        self._has_streams = has_streams
        # The counter up to which revocations are applied, per workspace.
        self.known: dict[uuid.UUID, int] = {}
        self.by_workspace: dict[uuid.UUID, set[Credential]] = {}
        self.by_identity: dict[Identity, set[Credential]] = {}
        self._expiries: list[tuple[float, int, Credential]] = []
        self._order = itertools.count()
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ended = 0  # connections ended by expiry or revocation (stats)

    # ------------------------------------------------------------- connections

    async def register(self, credential: Credential) -> None:
        """Follow a connection's credentials from now on. Call it right after their check
        and before the connection is acknowledged: revocations that committed after the
        check and that this process applied already are applied to it here (it may then
        have ended: see ``credential.ended``)."""
        grant = credential.grant
        workspace_id = grant.workspace_id
        sockets = self.by_workspace.get(workspace_id)
        if sockets is None:
            sockets = self.by_workspace[workspace_id] = set()
            self._on_workspace(workspace_id, True)
        sockets.add(credential)
        for identity in grant.identities:
            self.by_identity.setdefault(identity, set()).add(credential)
        credential.registered = True
        if grant.expires_at is not None:
            entry = (grant.expires_at, next(self._order), credential)
            heapq.heappush(self._expiries, entry)
            if self._expiries[0] is entry:
                self._wake.set()  # the timer sleeps until an expiry: a sooner one now
        known = self.known.setdefault(workspace_id, grant.seq)
        if known > grant.seq:
            async with self.pool.acquire() as conn:
                missed = await credentials.revocations_since(conn, workspace_id, grant.seq)
            self._apply(missed)
        self.expire_due()

    def unregister(self, credential: Credential) -> None:
        if not credential.registered:
            return
        credential.registered = False
        grant = credential.grant
        for identity in grant.identities:
            holders = self.by_identity.get(identity)
            if holders is not None:
                holders.discard(credential)
                if not holders:
                    del self.by_identity[identity]
        sockets = self.by_workspace.get(grant.workspace_id)
        if sockets is not None:
            sockets.discard(credential)
            if not sockets:
                del self.by_workspace[grant.workspace_id]
                self._on_workspace(grant.workspace_id, False)
        if len(self._expiries) > 64 and len(self._expiries) > 2 * self.count():
            self._expiries = [e for e in self._expiries if e[2].registered]
            heapq.heapify(self._expiries)

    def count(self) -> int:
        return sum(len(s) for s in self.by_workspace.values())

    # ----------------------------------------------------------------- ending

    def expire_due(self) -> None:
        """End every credential whose expiry has come (cheap when none has)."""
        if not self._expiries or self._expiries[0][0] > time.time():
            return
        now = time.time()
        while self._expiries and self._expiries[0][0] <= now:
            _, _, credential = heapq.heappop(self._expiries)
            if credential.registered and credential.ended is None:
                self._end(credential, credential.grant.expiry)

    async def settle(self, workspace_id: uuid.UUID, seq: int | None) -> None:
        """Before sending events read with the workspace's counter at ``seq``: end what
        expired, and apply every revocation up to ``seq``."""
        self.expire_due()
        if seq is not None:
            await self.reach(workspace_id, seq)

    async def reach(self, workspace_id: uuid.UUID, seq: int) -> None:
        """Apply the workspace's revocations up to (at least) counter ``seq``."""
        known = self.known.get(workspace_id)
        if known is None:
            # No connection of the workspace here: nothing to end. Remembered, so that one
            # checked before ``seq`` catches up when it registers.
            self.known[workspace_id] = seq
            return
        if known >= seq:
            return
        lock = self._locks.setdefault(workspace_id, asyncio.Lock())
        async with lock:
            known = self.known.get(workspace_id, seq)
            if known >= seq:
                return
            async with self.pool.acquire() as conn:
                found = await credentials.revocations_since(conn, workspace_id, known)
            # Synchronous from here: a connection registering meanwhile is either ended
            # below or sees the new counter and catches up by itself.
            self._apply(found)
            newest = max([seq, *(r.seq for r in found)])
            self.known[workspace_id] = max(self.known.get(workspace_id, newest), newest)

    def _apply(self, revocations: Iterable[Revocation]) -> None:
        for revocation in revocations:
            for credential in list(self.by_identity.get(revocation.identity, ())):
                if credential.ended is None and revocation.ends(credential.grant):
                    self._end(credential, revocation.reason)

    def _end(self, credential: Credential, reason: Reason) -> None:
        self.ended += 1
        try:
            credential.end(reason)
        except Exception:  # closing is best effort; ``ended`` is set whatever happens
            log.exception("closing a connection whose credentials ended failed")

    # ------------------------------------------------------------------ the task

    def wake(self) -> None:
        """The counter of a watched workspace may have moved (a Redis notice)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="credentials watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        next_poll = 0.0
        while True:
            now = time.monotonic()
            timeout = max(0.0, next_poll - now)
            if self._expiries:
                timeout = min(timeout, max(0.0, self._expiries[0][0] - time.time()))
            await wait_until_set(self._wake, timeout)
            notified = self._wake.is_set()
            self._wake.clear()
            self.expire_due()
            if not notified and time.monotonic() < next_poll:
                continue  # an expiry was due: the counters are not
            interval = self.settings.poll if self._redis_up() else self.settings.redis_down_poll
            next_poll = time.monotonic() + interval
            try:
                await self._poll()
            except Exception:  # the database may be briefly unavailable: next poll
                log.warning("reading the credentials counters failed; retrying", exc_info=True)

    async def _poll(self) -> None:
        for workspace_id in [w for w in self.known if w not in self.by_workspace]:
            if not self._has_streams(workspace_id):
                del self.known[workspace_id]
                self._locks.pop(workspace_id, None)
        if not self.by_workspace:
            return
        async with self.pool.acquire() as conn:
            found = await credentials.counters(conn, list(self.by_workspace))
        for workspace_id, seq in found.items():
            await self.reach(workspace_id, seq)
