"""The process's real-time hub: one Redis subscription per stream, one reader of the event
log per stream, any number of subscribers pulling from it at their own pace.

Contract (see DESIGN.md, Real time):
- PostgreSQL's event log is the truth. Redis only says "stream S has new events"; the hub
  then reads the log after the last position it holds. A lost notification, a Redis
  restart or a process crash delays events but never loses them: every stream is also
  re-read on a timer, and at once after Redis comes back.
- Each stream keeps a bounded window of its newest events in memory. A subscriber keeps
  only its own position: it reads from the window while it is inside it and from
  PostgreSQL (in pages) when it has fallen behind, so memory does not grow with slow
  consumers.
- A subscriber without a cursor starts at "now" (``events.Now``): just below the event
  horizon, skipping what had committed when it subscribed; never at the stream's origin.
- A subscriber that has events waiting but has not taken one for ``slow_consumer_after``
  seconds is reported through ``on_slow`` (the WebSocket layer closes its connection with
  close code 4008; the client resumes with its last cursor).
- A subscriber may hold its connection's ``Credential``: nothing is sent to it once its
  credentials ended (expired or revoked). Every read returns the workspace's credentials
  counter with its events, and the events are sent only after ``Watch.settle`` applied
  every revocation up to it (realtime/credentials.py).
- Fan-out (``push``): subscribers that would resolve an event to the same bytes and
  receive the same verdict form a *group* (same document, variables, visibility class
  and rule: realtime/groups.py). Each event is judged once per group (its verdict says
  who receives it: everyone, or named users; realtime/verdicts.py) and rendered once per
  group, and the stream's reader writes the same bytes to every member socket it gives
  the event to. A member that is behind (resumed with a cursor, or its socket's buffer
  is full) catches up by itself, from the window or from PostgreSQL, with the group's
  kept verdicts and renderings, then joins the live set again. See
  docs/decisions/0007-fanout.md and 0031-realtime-in-one-place.md.
- Live members share the stream's position (``Stream.seen``): a batch costs the members it
  writes to, not every member of the stream. A live member's own ``position`` is the last
  event written to it; it has seen everything up to ``max(position, Stream.seen)``, which
  becomes its own when it leaves the live set (0031, "Positions of live members").
- Live dashboards (``dashboards``) hear the workspaces' change notices on the same Redis
  connection (docs/decisions/0018-live-dashboards.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.observability import metrics, tracing
from crm_graphql.realtime import wait_until_set
from crm_graphql.realtime.bus import CHANGES, channel_name
from crm_graphql.realtime.credentials import Credential, Watch
from crm_graphql.realtime.dashboards import Dashboards, DashboardSettings
from crm_graphql.realtime.verdicts import Selection, Take, Verdict
from crm_graphql.services import credentials, events
from crm_graphql.services.events import Now, Position, StoredEvent

log = logging.getLogger(__name__)

StreamKey = tuple[uuid.UUID, str]
SlowHandler = Callable[[], Coroutine[Any, Any, None]]
# An event rendered for a group: the JSON ``payload`` of the protocol's data message. The
# second argument is the *variant* of the event (None for the group's common rendering;
# a member's ``own`` when the verdict says so: its actor sees it differently).
Render = Callable[[StoredEvent, Hashable], Awaitable[bytes]]
# Which members of a group receive an event (realtime/verdicts.py): judged once per event
# and group.
Judge = Callable[[StoredEvent], Verdict]


class Sink(Protocol):
    """Where a member's frames go (``realtime.fanout.SocketSink``)."""

    @property
    def closed(self) -> bool: ...

    def write(self, payloads: Sequence[bytes], positions: Sequence[Position] = ()) -> bool:
        """Send a data message with each payload now, in order and in one write to the
        socket; False when the socket cannot take them (buffer full, or closed): nothing
        was sent. ``positions``: the payloads' events, when they are events (an event
        stream writes their cursors)."""
        ...

    async def drained(self) -> None:
        """Return once the socket can take data again (or is closed)."""
        ...


@dataclass
class HubSettings:
    window: int = 1024  # events kept in memory per stream
    page: int = 500  # events read from PostgreSQL at once
    safety_poll: float = 2.0  # seconds between reads without a notification
    redis_down_poll: float = 0.25  # seconds between reads while Redis is unreachable
    slow_consumer_after: float = 10.0  # seconds a subscriber may sit on waiting events
    render_concurrency: int = 4  # group renders of one batch run at once (database sessions)
    rendered_kept: int = 256  # payloads and verdicts a group keeps for members catching up
    # Seconds live events may wait behind one open transaction before the hub warns, naming
    # its backend (``Hub.held_back``): a session left idle in a transaction that wrote
    # holds every stream of the database back until it ends.
    held_back_warning: float = 30.0


@dataclass(eq=False, slots=True)
class Subscriber:
    """One subscription's place in a stream."""

    position: Position
    on_slow: SlowHandler | None = None
    last_progress: float = field(default_factory=time.monotonic)
    slow_reported: bool = False
    credential: Credential | None = None  # its connection's: nothing is sent once ended
    since: Now | None = None  # when it started, if without a cursor

    @property
    def ended(self) -> bool:
        return self.credential is not None and self.credential.ended is not None

    def predates(self, event: StoredEvent) -> bool:
        """Whether the event (after ``position``: events are offered in order) had
        committed before this subscription started without a cursor: not for it."""
        if self.since is None:
            return False
        txid = event.position.txid
        if txid >= self.since.before.xmax:
            self.since = None  # this and every later event committed after it started
            return False
        return self.since.before.sees(txid)


class Group:
    """Members that render every event to the same bytes and receive the same verdict:
    each event is judged once (``verdict``) and rendered once per variant (the last
    ``rendered_kept`` verdicts and payloads are kept for members catching up)."""

    def __init__(self, stream: Stream, key: Hashable, render: Render, judge: Judge) -> None:
        self.stream = stream
        self.key = key
        self.render = render
        self.judge = judge
        self.members: dict[Member, None] = {}  # insertion-ordered set
        # Members that follow one entity only (a conversation), by entity id: an event is
        # offered to the members of its entity and to those without one.
        self.anyone: dict[Member, None] = {}
        self.by_entity: dict[uuid.UUID, dict[Member, None]] = {}
        # Members by user: a verdict that names users reaches their members directly.
        self.by_user: dict[uuid.UUID, dict[Member, None]] = {}
        # Renderings in progress (a task), or done (the payload).
        self.rendered: OrderedDict[tuple[Position, Hashable], asyncio.Future[bytes] | bytes] = (
            OrderedDict()
        )
        self.verdicts: OrderedDict[Position, Verdict] = OrderedDict()

    def add(self, member: Member) -> None:
        self.members[member] = None
        if member.entity is None:
            self.anyone[member] = None
        else:
            self.by_entity.setdefault(member.entity, {})[member] = None
        if member.user is not None:
            self.by_user.setdefault(member.user, {})[member] = None

    def discard(self, member: Member) -> None:
        self.members.pop(member, None)
        self.anyone.pop(member, None)
        _pop(self.by_entity, member.entity, member)
        _pop(self.by_user, member.user, member)

    def offered(self, event: StoredEvent) -> bool:
        """Whether any member follows the event's stream or entity (else no verdict)."""
        return bool(self.anyone) or (
            event.entity_id is not None and event.entity_id in self.by_entity
        )

    def verdict(self, event: StoredEvent) -> Verdict:
        """The event judged for this group: once, kept for members catching up."""
        found = self.verdicts.get(event.position)
        if found is None:
            found = self.verdicts[event.position] = self.judge(event)
            self.stream.hub.verdicts += 1
            while len(self.verdicts) > self.stream.hub.settings.rendered_kept:
                self.verdicts.popitem(last=False)
        return found

    def takers(self, event: StoredEvent, verdict: Verdict) -> list[tuple[Member, Take]]:
        """The live members that receive the event by ``verdict``, with their share."""
        found: list[tuple[Member, Take]] = []
        if verdict.everyone is not None:  # its entity's followers and stream-wide members
            followers = self.by_entity.get(event.entity_id) if event.entity_id else None
            for members in (self.anyone, followers or {}):
                for member in members:
                    take = verdict.take(member.user)
                    if member.live and take is not None and member.chooses(event):
                        found.append((member, take))
            return found
        for user, take in verdict.users.items():  # only the members of the users named
            if take is not None:
                for member in self.by_user.get(user, ()):
                    if member.live and member.follows(event):
                        found.append((member, take))
        return found

    async def payload(self, event: StoredEvent, variant: Hashable = None) -> bytes:
        """The event rendered for this group: rendered once, in a task of its own so that
        a member that goes away does not cancel it for the others."""
        key = (event.position, variant)
        found = self.rendered.get(key)
        if isinstance(found, bytes):
            return found
        if found is None:
            found = asyncio.ensure_future(self._render(event, variant))
            found.add_done_callback(functools.partial(self._settle, key))
            self.rendered[key] = found
            while len(self.rendered) > self.stream.hub.settings.rendered_kept:
                self.rendered.popitem(last=False)
        return await asyncio.shield(found)

    async def _render(self, event: StoredEvent, variant: Hashable) -> bytes:
        hub = self.stream.hub
        async with hub.render_slots:
            data = await self.render(event, variant)
        hub.renders += 1
        return data

    def _settle(self, key: tuple[Position, Hashable], task: asyncio.Future[bytes]) -> None:
        """A rendering done: its payload kept in the task's place (bytes, which the
        garbage collector does not walk: the task and its coroutine go now, not when the
        window moves past them), a failed one forgotten (the next member renders again)."""
        if self.rendered.get(key) is not task:
            return
        if task.cancelled() or task.exception() is not None:
            del self.rendered[key]
        else:
            self.rendered[key] = task.result()


def _pop(index: dict[uuid.UUID, dict[Member, None]], key: uuid.UUID | None, member: Member) -> None:
    if key is None:
        return
    members = index.get(key)
    if members is not None:
        members.pop(member, None)
        if not members:
            del index[key]


@dataclass(eq=False, slots=True)
class Member(Subscriber):
    """A pushed subscription: one operation on one socket, in one group."""

    group: Group | None = None
    user: uuid.UUID | None = None  # its actor's user: verdicts may name it
    own: Hashable = None  # the variant it is rendered as when a verdict says ``own``
    entity: uuid.UUID | None = None  # follows only the events of this entity
    selects: Selection | None = None  # ... and of those only what this chooses
    sink: Sink | None = None
    live: bool = False  # at the stream's head; the reader writes its frames
    finished: bool = False  # delivered the event that ended it
    wake: asyncio.Future[None] | None = None  # resolved when it leaves the live set

    def follows(self, event: StoredEvent) -> bool:
        """Whether the event is of what it follows (its entity, or the whole stream) and
        chooses."""
        if self.entity is not None and event.entity_id != self.entity:
            return False
        return self.chooses(event)

    def chooses(self, event: StoredEvent) -> bool:
        """Whether its selection takes the event (the entity is the group's index)."""
        return self.selects is None or self.selects(event)

    def variant(self, take: Take) -> Hashable:
        """Which rendering of an event it needs for its share of the verdict."""
        return self.own if take.own else None

    def deliver(self, outbox: Outbox) -> bool:
        """Write the accepted live events of a batch, in one write; False when the socket
        could not take them (the member leaves the live set and catches up once the
        socket drains, from before the batch)."""
        assert self.sink is not None and self.group is not None  # made by its hub's push()
        if self.ended or not self.sink.write(outbox.payloads, outbox.positions):
            self.leave()
            return False
        self.position = outbox.position
        self.last_progress = time.monotonic()
        hub = self.group.stream.hub
        hub.deliveries += len(outbox.payloads)
        hub.writes += 1
        metrics.DELIVERIES.inc(len(outbox.payloads))
        if outbox.finished:
            self.finished = True
            self.leave()
        return True

    def join(self) -> None:
        """Enter the live set: it is at the stream's head, the reader writes from now on."""
        assert self.group is not None
        self.live = True
        self.last_progress = time.monotonic()
        self.group.stream.behind.pop(self, None)

    def leave(self) -> None:
        """Leave the live set (its socket is full, a rendering failed, it ended): what the
        live set was offered so far it has seen, and from here on it keeps its own place."""
        if self.live:
            assert self.group is not None
            stream = self.group.stream
            if self.position < stream.seen:
                self.position = stream.seen
            self.last_progress = max(self.last_progress, stream.seen_at)
            stream.behind[self] = None
        self.live = False
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


class Outbox:
    """What one batch sends a live member: payloads in event order with their events'
    positions, the position of the last one, and whether that one ended the subscription
    (nothing after it)."""

    __slots__ = ("finished", "payloads", "position", "positions")

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.positions: list[Position] = []
        self.position = events.ORIGIN
        self.finished = False


class Stream:
    """The events of one (workspace, topic), as this process knows them."""

    def __init__(self, hub: Hub, key: StreamKey) -> None:
        self.hub = hub
        self.key = key
        self.window: deque[StoredEvent] = deque(maxlen=hub.settings.window)
        # Every deliverable event after `floor` up to `head` is in `window`.
        self.floor = events.ORIGIN
        self.head = events.ORIGIN
        # The horizon of the last read, and whether committed events waited above it:
        # while both stay the same, re-reading the log cannot find anything deliverable.
        self.below: int | None = None
        self.held_back = False
        self.ready = asyncio.Event()  # set once head is known
        self.changed = asyncio.Condition()
        self.wake = asyncio.Event()
        self.subscribers: set[Subscriber] = set()
        # Subscribers outside the live set (followers, members catching up): the slow-
        # consumer watch looks at these only. A live member is at the head by construction:
        # the reader writes to it, or it leaves the set.
        self.behind: dict[Subscriber, None] = {}
        # Every live member has been offered every event up to ``seen`` (the last batch
        # dispatched), at ``seen_at``: its position and progress unless its own are later.
        self.seen = events.ORIGIN
        self.seen_at = time.monotonic()
        self.groups: dict[Hashable, Group] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self, below: int | None = None) -> None:
        async with self.hub.pool.acquire() as conn:
            self.head = self.floor = await events.head(conn, *self.key, below=below)
        self.ready.set()
        self.task = asyncio.create_task(self._read_loop(), name=f"stream {self.key[1]}")

    async def _read_loop(self) -> None:
        delay = self.hub.settings.safety_poll
        while True:
            timeout = delay if self.hub.redis_up else self.hub.settings.redis_down_poll
            # ``close`` waits for this task while holding the hub's lock: a cancellation
            # must never be lost here (``wait_until_set``).
            await wait_until_set(self.wake, timeout)
            self.wake.clear()
            try:
                held_back = await self._read_new()
            except Exception:  # the database may be briefly unavailable: retry
                log.warning("reading stream %s failed; retrying", self.key[1], exc_info=True)
                delay = 1.0
                continue
            # Committed events waiting behind an older open transaction: look again soon.
            delay = 0.02 if held_back else self.hub.settings.safety_poll

    async def _read_new(self) -> bool:
        held_back = False
        while True:
            async with self.hub.pool.acquire() as conn:
                below = await events.horizon(conn)
                if self.held_back and below == self.below:
                    # Everything below an unchanged horizon was in the last read's
                    # snapshot: nothing new is deliverable yet, skip the read.
                    self.hub.skipped_reads += 1
                    await self.hub.held_back(conn, below)
                    return True
                batch, held_back, counter = await events.read_events(
                    conn, *self.key, self.head, limit=self.hub.settings.page, below=below
                )
                if held_back:
                    await self.hub.held_back(conn, below)
            # A full page leaves events below this horizon unread: no skipping then.
            self.below = below
            self.held_back = held_back and len(batch) < self.hub.settings.page
            self.hub.reads += 1
            if not batch:
                return held_back
            # Before anything of this read reaches a subscriber (the window included):
            # connections whose credentials ended by this snapshot are ended.
            await self.hub.credentials.settle(self.key[0], counter)
            for event in batch:
                if len(self.window) == self.window.maxlen:
                    self.floor = self.window[0].position
                self.window.append(event)
            self.head = batch[-1].position
            async with self.changed:
                self.changed.notify_all()
            if self.groups:
                await self._dispatch(batch)
            if len(batch) < self.hub.settings.page:
                return held_back

    async def _dispatch(self, batch: list[StoredEvent]) -> None:
        """Write new events to the live members (traced as one ``event delivery``)."""
        with tracing.span(
            "event delivery", **{"crm.topic": self.key[1], "crm.events": len(batch)}
        ) as span:
            delivered = await self._deliver_batch(batch)
            if span is not None:
                span.set_attribute("crm.deliveries", delivered)

    async def _deliver_batch(self, batch: list[StoredEvent]) -> int:
        """Write new events to the live members: render each (event, group) once, all
        renders of the batch at once, then write them in event order. The frames
        written; the lag of each event written is observed (``/metrics``)."""
        Step = tuple[StoredEvent, Group, Hashable, list[tuple[Member, Take]]]
        plan: list[Step] = []
        for group in list(self.groups.values()):
            for event in batch:
                if not group.offered(event):
                    continue
                by_variant: dict[Hashable, list[tuple[Member, Take]]] = {}
                for member, take in group.takers(event, group.verdict(event)):
                    if event.position > member.position and not member.predates(event):
                        by_variant.setdefault(member.variant(take), []).append((member, take))
                plan.extend((event, group, v, ms) for v, ms in by_variant.items())
        plan.sort(key=lambda step: step[0].position)
        results = await asyncio.gather(
            *(group.payload(event, variant) for event, group, variant, _ in plan),
            return_exceptions=True,
        )
        self.hub.credentials.expire_due()  # the renders took time: nothing after expiry
        # Each member's frames of the batch go out in one write: a syscall per socket and
        # batch, not per event (a busy stream reads larger batches, so it catches up).
        outboxes: dict[Member, Outbox] = {}
        carried: dict[Member, list[StoredEvent]] = {}  # the events of each outbox
        for (event, _, _, takers), payload in zip(plan, results, strict=True):
            if isinstance(payload, BaseException):
                # Not skipped: these members catch up by themselves and render it again.
                log.error("rendering an event of %s failed", self.key[1], exc_info=payload)
                for member, _ in takers:
                    outbox = outboxes.pop(member, None)
                    if outbox is not None:
                        member.deliver(outbox)
                    member.leave()
                continue
            for member, take in takers:
                if not member.live or event.position <= member.position:
                    continue
                outbox = outboxes.get(member)
                if outbox is None:
                    outbox = outboxes[member] = Outbox()
                elif outbox.finished:
                    continue
                outbox.payloads.append(payload)
                carried.setdefault(member, []).append(event)
                outbox.positions.append(event.position)
                outbox.position = event.position
                outbox.finished = take.last
        written: dict[Position, StoredEvent] = {}
        frames = 0
        for member, outbox in outboxes.items():
            if member.live and member.deliver(outbox):
                frames += len(outbox.payloads)
                written.update((event.position, event) for event in carried.get(member, ()))
        # Lag from the event's transaction (created_at is its start: transactions that
        # write events are one round trip) to the write of its frames, once per event.
        wall = time.time()
        for event in written.values():
            metrics.EVENT_LAG.observe(max(0.0, wall - event.created_at.timestamp()))
        # Live members have now seen the whole batch (what they accepted was written): one
        # shared position, made a member's own when it leaves the live set (``leave``).
        self.seen, self.seen_at = batch[-1].position, time.monotonic()
        return frames

    def after(self, position: Position) -> list[StoredEvent] | None:
        """Events after ``position`` from memory, or None when it is below the window."""
        if position < self.floor:
            return None
        found = []
        for event in reversed(self.window):  # from the newest: the cost is what it returns
            if event.position <= position:
                break
            found.append(event)
        found.reverse()
        return found

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class Hub:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis_client: redis.Redis,
        settings: HubSettings | None = None,
        dashboards: DashboardSettings | None = None,
    ) -> None:
        # The event log, and the rows renderings load by id, are read with plain
        # statements on ``pool`` (read-only asyncpg connections); the rest of a
        # rendering's reads go through ``sessionmaker``.
        self.pool = pool
        self.sessionmaker = sessionmaker
        self.redis = redis_client
        self.settings = settings or HubSettings()
        self.streams: dict[StreamKey, Stream] = {}
        self._channels: dict[str, StreamKey] = {}
        self._lock = asyncio.Lock()
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._resubscribe = asyncio.Event()
        self.redis_up = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.render_slots = asyncio.Semaphore(self.settings.render_concurrency)
        self.renders = 0  # events rendered for groups (fan-out: once per group and event)
        self.verdicts = 0  # events judged for groups (once per group and event)
        self.deliveries = 0  # frames written by push subscriptions
        self.writes = 0  # socket writes of those frames (a live batch's go out at once)
        self.reads = 0  # stream reads of the event log
        self.skipped_reads = 0  # re-reads skipped: held back behind the same horizon
        # The horizon events were last found waiting behind, since when, whether warned.
        self._held: tuple[int, float, bool] | None = None
        # Connections' credentials: ended at expiry or revocation, in every process.
        self.credentials = Watch(
            pool,
            redis_up=lambda: self.redis_up,
            on_workspace=self._watch_credentials,
            has_streams=lambda workspace_id: any(k[0] == workspace_id for k in self.streams),
        )
        self.dashboards = Dashboards(
            lambda workspace_id, on: self._watch(workspace_id, CHANGES, on),
            redis_up=lambda: self.redis_up,
            settings=dashboards,
        )

    async def held_back(self, conn: events.LogReader, below: int) -> None:
        """A stream found committed events waiting behind the horizon ``below`` (an older
        transaction of the database, still running, that could write an earlier event).
        Once they have waited behind the same one for ``held_back_warning`` seconds, warn
        once, naming its backend: nothing is lost (they are delivered when it ends), but
        no live event of the database moves until then, and an operator must know which
        session holds them (often one left idle in a transaction)."""
        now = time.monotonic()
        held = self._held
        if held is None or held[0] != below:
            self._held = (below, now, False)
            return
        if held[2] or now - held[1] < self.settings.held_back_warning:
            return
        self._held = (below, held[1], True)
        holder = await events.oldest_writer(conn)
        log.warning(
            "live events have waited %.0f s behind an open transaction: %s",
            now - held[1],
            holder or "it has ended",
        )

    def stats(self) -> dict[str, int]:
        """Counters of this process's fan-out (tests and operators)."""
        groups = [g for s in self.streams.values() for g in s.groups.values()]
        return {
            "streams": len(self.streams),
            "groups": len(groups),
            "members": sum(len(g.members) for g in groups),
            "renders": self.renders,
            "verdicts": self.verdicts,
            "deliveries": self.deliveries,
            "writes": self.writes,
            "reads": self.reads,
            "skipped_reads": self.skipped_reads,
            "connections": self.credentials.count(),
            "connections_ended": self.credentials.ended,
            **self.dashboards.stats(),
        }

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="hub redis listener")
        self._watchdog = asyncio.create_task(self._watch_slow(), name="hub watchdog")
        await self.credentials.start()

    async def close(self) -> None:
        tasks = [t for t in (self._listener, self._watchdog) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # A pub/sub read cancelled mid-reconnect can linger: never let it block shutdown.
            await asyncio.wait(tasks, timeout=2)
        await self.credentials.close()
        await self.dashboards.close()
        for stream in list(self.streams.values()):
            await stream.close()
        self.streams.clear()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    # ----------------------------------------------------------------- Redis side

    async def _listen(self) -> None:
        """Keep one pub/sub connection with a subscription per stream; after any failure,
        reconnect and make every stream re-read the log (it may have missed messages)."""
        backoff = 0.1
        while True:
            try:
                self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe("crm:hub")  # keeps the connection open
                channels = list(self._channels)
                if channels:
                    await self._pubsub.subscribe(*channels)
                self.redis_up = True
                backoff = 0.1
                self._wake_all()
                while True:
                    # Short timeout: channels of new streams get subscribed promptly.
                    message = await self._pubsub.get_message(timeout=0.1)
                    if message is not None and message.get("type") == "message":
                        key = self._channels.get(_text(message["channel"]))
                        if key is not None and key[1] == CHANGES:
                            tables = _text(message["data"]).split(",")
                            self.dashboards.changed(key[0], tables)
                        elif key is not None:
                            self._wake(key)
                    await self._sync_channels()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                if self.redis_up:
                    log.warning("Redis connection lost; streams fall back to polling")
                self.redis_up = False
                self._wake_all()
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _sync_channels(self) -> None:
        """Subscribe channels of new streams, unsubscribe channels of closed ones."""
        if not self._resubscribe.is_set():
            return
        self._resubscribe.clear()
        wanted = set(self._channels)
        current = {_text(c) for c in self._pubsub.channels} - {"crm:hub"}
        if add := wanted - current:
            await self._pubsub.subscribe(*add)
            for channel in add:  # anything committed before the subscription took effect
                self._wake(self._channels[channel])
        if remove := current - wanted:
            await self._pubsub.unsubscribe(*remove)

    def _wake(self, key: StreamKey) -> None:
        if key in self.streams:
            self.streams[key].wake.set()
        elif key[1] == credentials.TOPIC:
            self.credentials.wake()
        elif key[1] == CHANGES:  # newly heard: what committed before is not known
            self.dashboards.changed(key[0], None)

    def _wake_all(self) -> None:
        for stream in self.streams.values():
            stream.wake.set()
        self.credentials.wake()
        self.dashboards.refresh_all()

    def _watch_credentials(self, workspace_id: uuid.UUID, watched: bool) -> None:
        """Listen to the workspace's credentials notices while it has connections here."""
        self._watch(workspace_id, credentials.TOPIC, watched)

    def _watch(self, workspace_id: uuid.UUID, topic: str, watched: bool) -> None:
        channel = channel_name(workspace_id, topic)
        if watched:
            self._channels[channel] = (workspace_id, topic)
        else:
            self._channels.pop(channel, None)
        self._resubscribe.set()

    # ------------------------------------------------------------- subscriptions

    async def _stream(self, key: StreamKey, since: Now | None) -> Stream:
        """The stream, started if new: its reader starts below the horizon of ``since``
        (if given), so that a subscriber starting there reads from memory."""
        async with self._lock:
            stream = self.streams.get(key)
            if stream is None:
                stream = Stream(self, key)
                self.streams[key] = stream
                self._channels[channel_name(*key)] = key
                self._resubscribe.set()
                try:
                    await stream.start(since.horizon if since is not None else None)
                except BaseException:
                    self.streams.pop(key, None)
                    self._channels.pop(channel_name(*key), None)
                    raise
        return stream

    async def _release(self, stream: Stream, subscriber: Subscriber) -> None:
        async with self._lock:
            stream.subscribers.discard(subscriber)
            stream.behind.pop(subscriber, None)
            if not stream.subscribers and self.streams.get(stream.key) is stream:
                del self.streams[stream.key]
                self._channels.pop(channel_name(*stream.key), None)
                self._resubscribe.set()
                await stream.close()

    async def follow(
        self,
        workspace_id: uuid.UUID,
        topic: str,
        after: Position | None,
        *,
        on_slow: SlowHandler | None = None,
        credential: Credential | None = None,
    ) -> AsyncIterator[StoredEvent]:
        """Every event of the stream after ``after`` (or from now on), in order, once each;
        what was missed comes from PostgreSQL first, then live events follow. Nothing
        once ``credential`` ended: it then waits to be cancelled (its socket is closing)."""
        start, since = await self._start(after)
        stream = await self._stream((workspace_id, topic), since)
        subscriber = Subscriber(start, on_slow, credential=credential, since=since)
        stream.subscribers.add(subscriber)
        stream.behind[subscriber] = None
        try:
            while True:
                batch = stream.after(subscriber.position)
                if batch is None:  # fell behind the window: page through the log
                    async with self.pool.acquire() as conn:
                        batch, _, counter = await events.read_events(
                            conn,
                            workspace_id,
                            topic,
                            subscriber.position,
                            limit=self.settings.page,
                        )
                    await self.credentials.settle(workspace_id, counter)
                if not batch:
                    async with stream.changed:
                        # None here means the window moved past us meanwhile: loop, read.
                        if stream.after(subscriber.position) == []:
                            subscriber.last_progress = time.monotonic()
                            await stream.changed.wait()
                    continue
                for event in batch:
                    self.credentials.expire_due()
                    if subscriber.ended:
                        await _closing()
                    subscriber.position = event.position
                    if subscriber.predates(event):
                        continue
                    yield event
                    subscriber.last_progress = time.monotonic()
        finally:
            await self._release(stream, subscriber)

    async def push(
        self,
        workspace_id: uuid.UUID,
        topic: str,
        after: Position | None,
        *,
        group_key: Hashable,
        render: Render,
        judge: Judge,
        sink: Sink,
        user: uuid.UUID | None = None,
        own: Hashable = None,
        entity: uuid.UUID | None = None,
        selects: Selection | None = None,
        on_slow: SlowHandler | None = None,
        credential: Credential | None = None,
    ) -> None:
        """Deliver the stream after ``after`` (or from now on) to ``sink``: every event
        its group's verdict gives it (``judge``: once per event and group; ``user`` is
        the member's, which a verdict may name), in order, once, rendered once per group
        and variant (``own``: its variant when a verdict says so). Returns when a verdict
        ended the subscription (after delivering that event); runs until cancelled
        otherwise. ``render`` and ``judge`` are used if this member creates the group;
        ``entity`` says that the member takes only events of that entity, ``selects``
        which of them it chooses. Nothing is written once ``credential`` ended."""
        start, since = await self._start(after)
        stream = await self._stream((workspace_id, topic), since)
        group = stream.groups.get(group_key)
        if group is None:
            group = stream.groups[group_key] = Group(stream, group_key, render, judge)
        member = Member(
            start,
            on_slow,
            since=since,
            group=group,
            user=user,
            own=own,
            entity=entity,
            selects=selects,
            sink=sink,
            credential=credential,
        )
        group.add(member)
        stream.subscribers.add(member)
        stream.behind[member] = None
        try:
            while not member.finished:
                if await self._catch_up(stream, member):
                    return
                if sink.closed or member.ended:
                    await _closing()
                member.wake = asyncio.get_running_loop().create_future()
                member.join()  # at the head: the reader writes from now on
                await member.wake
                member.wake = None
        finally:
            member.live = False
            group.discard(member)
            if not group.members and stream.groups.get(group_key) is group:
                del stream.groups[group_key]
            await self._release(stream, member)

    async def _catch_up(self, stream: Stream, member: Member) -> bool:
        """Bring a member that is not live to the head of the stream, writing what it
        accepts at the pace its socket takes it. True when the subscription ended."""
        assert member.sink is not None and member.group is not None
        while True:
            await member.sink.drained()
            if member.sink.closed or member.ended:
                return False
            batch = stream.after(member.position)
            if batch is None:  # fell behind the window: page through the log
                async with self.pool.acquire() as conn:
                    batch, _, counter = await events.read_events(
                        conn, *stream.key, member.position, limit=self.settings.page
                    )
                await self.credentials.settle(stream.key[0], counter)
                if not batch and stream.after(member.position) is None:
                    return False  # nothing readable up to the head
            elif not batch:
                return False  # nothing between it and the head: it goes live now
            for event in batch:
                if event.position <= member.position:
                    continue
                take = None
                if member.follows(event) and not member.predates(event):
                    take = member.group.verdict(event).take(member.user)
                if take is not None:
                    payload = await member.group.payload(event, member.variant(take))
                    self.credentials.expire_due()
                    if member.ended:
                        return False
                    if not member.sink.write((payload,), (event.position,)):
                        break  # socket full: wait until it drains, then go on
                    self.deliveries += 1
                    self.writes += 1
                member.position = event.position
                member.last_progress = time.monotonic()
                if take is not None and take.last:
                    member.finished = True
                    return True

    async def _start(self, after: Position | None) -> tuple[Position, Now | None]:
        """Where a subscription starts: after its cursor, or "now" (``events.Now``)."""
        if after is not None:
            return after, None
        async with self.pool.acquire() as conn:
            now = await events.now(conn)
        return now.position, now

    async def _watch_slow(self) -> None:
        """Report subscribers that sit on waiting events (their socket is not read)."""
        while True:
            await asyncio.sleep(min(1.0, self.settings.slow_consumer_after / 2))
            self._report_slow()

    def _report_slow(self) -> None:
        # A function of its own: the loop variables die with each check. In the
        # watchdog's frame they kept the last subscriber seen (its socket, through
        # ``on_slow``) and its stream (the window) alive while no stream existed.
        now = time.monotonic()
        for stream in list(self.streams.values()):
            for subscriber in list(stream.behind):  # live members are at the head
                waiting = subscriber.position < stream.head
                stale = now - subscriber.last_progress > self.settings.slow_consumer_after
                if waiting and stale and not subscriber.slow_reported and subscriber.on_slow:
                    subscriber.slow_reported = True
                    task = asyncio.create_task(subscriber.on_slow())
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)


async def _closing() -> None:
    """Wait to be cancelled: the subscription's socket is closing (its operation's task
    ends with it)."""
    await asyncio.Future()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
