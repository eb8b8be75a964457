"""Ephemeral real time: typing signals and presence. Redis only, never PostgreSQL.

Unlike the event streams of ``realtime.hub`` (PostgreSQL is the truth, Redis a doorbell),
what passes here may be lost: a typing signal published while Redis is down, or while
a listener is not reading, is simply gone; the next one replaces it. What must not
happen is memory growing with a slow listener, or a Redis restart silencing a process.

``Fanout`` (one per process):
- one Redis pub/sub connection of its own and one subscription per channel, refcounted
  by the process's local listeners; each message is decoded once and handed to every
  listener of its channel;
- each listener is a small bounded queue that drops its *oldest* item when full;
- every pub/sub command is sent by the one reader task (redis-py's ``PubSub`` is not
  safe for a concurrent reader and writer: a failed write reconnects the connection
  under the reader). A new subscription wakes that task at once by a ``PUBLISH`` on the
  process's own control channel, so it takes effect in a round trip, not at the next
  read timeout; dropped subscriptions are unsubscribed lazily;
- on any Redis error the connection is dropped and rebuilt with backoff (0.1 s doubling
  to 2 s), resubscribing every channel still listened to.

``Presence``: a user actor's WebSocket connection marks the user online in the
workspace while it is open. Sorted set ``crm:<workspace>:presence`` holds
``<user_id>:<connection_id>`` members scored by their last heartbeat (Unix seconds);
each process refreshes its open connections every ``heartbeat`` seconds and removes them
on close. A user is online while any of their members is younger than ``stale_after``,
so a crashed process's connections expire by themselves. Each user's members are also
in a sorted set of the user's own (``crm:<workspace>:presence:<user_id>``), from which a
change decides that user's status without reading the workspace's whole set. Every change
runs as one Lua
script that also prunes stale members and publishes ``{user_id, status, at}`` on channel
``crm:<workspace>:presence`` when a user's first connection opens or their last one
closes or expires (best effort; the script makes the decision and the publish atomic,
so concurrent processes never announce a user twice or in the wrong order).

Typing: ``{user_id, user_name, is_typing, at}`` on ``crm:<workspace>:typing:<conversation>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from crm_graphql.realtime import wait_until_set
from crm_graphql.realtime.batches import Batches
from crm_graphql.realtime.bus import REDIS_TIMEOUT, channel_name

if TYPE_CHECKING:
    from crm_graphql.realtime.connections import LiveContext

log = logging.getLogger(__name__)


def typing_channel(workspace_id: uuid.UUID, conversation_id: uuid.UUID) -> str:
    return channel_name(workspace_id, f"typing:{conversation_id}")


def presence_channel(workspace_id: uuid.UUID) -> str:
    return channel_name(workspace_id, "presence")


def presence_key(workspace_id: uuid.UUID) -> str:
    """The sorted set of a workspace's open connections (a key, not a channel)."""
    return channel_name(workspace_id, "presence")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class PresenceStatus(enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"


# --------------------------------------------------------------------------- fan-out

_CLOSED: Any = object()  # queued to a listener when the fan-out shuts down


class Listener:
    """One local consumer of a channel: an async iterator of decoded payloads. Its queue
    is bounded; when full, the oldest payload is dropped to make room (``dropped``)."""

    def __init__(self, channel: str, size: int) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)
        self.dropped = 0

    def push(self, item: Any) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            if item is not _CLOSED:
                self.dropped += 1
        self.queue.put_nowait(item)

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> Any:
        item = await self.queue.get()
        if item is _CLOSED:
            raise StopAsyncIteration
        return item


@dataclass(eq=False)
class _Channel:
    listeners: set[Listener] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # subscription confirmed


@dataclass
class FanoutSettings:
    queue_size: int = 32  # payloads a listener may have waiting
    idle_read: float = 1.0  # seconds the reader waits for a message before housekeeping
    backoff_max: float = 2.0  # longest wait between reconnection attempts
    subscribe_wait: float = 1.0  # how long ``listen`` waits for Redis to confirm


class Fanout:
    """Process-wide fan-out of ephemeral Redis channels (see the module's docstring)."""

    def __init__(self, client: redis.Redis, settings: FanoutSettings | None = None) -> None:
        self.redis = client
        self.settings = settings or FanoutSettings()
        self.control = f"crm:ephemeral:{uuid.uuid4().hex}"  # this process's wake-up call
        self.channels: dict[str, _Channel] = {}
        self.subscribed: set[str] = set()  # channels SUBSCRIBEd on the current connection
        self.confirmed: set[str] = set()  # ... and confirmed by Redis
        self.redis_up = False
        self._dirty = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="ephemeral fan-out reader")

    async def close(self) -> None:
        """Stop the reader and end every listener. The reader is asked to stop, not
        cancelled (it stops within ``idle_read``): cancelling a redis-py pub/sub read
        right after a reconnection was seen to leave the task hanging."""
        self._closed = True
        self._stop.set()
        if self._reader is not None:
            done, _ = await asyncio.wait({self._reader}, timeout=self.settings.idle_read + 2)
            if not done:
                self._reader.cancel()
                done, _ = await asyncio.wait({self._reader}, timeout=1)
            if not done:
                log.warning("the ephemeral fan-out reader did not stop; leaving it")
        for channel in self.channels.values():
            for listener in channel.listeners:
                listener.push(_CLOSED)
        self.channels.clear()

    async def publish(self, channel: str, payload: dict[str, Any]) -> int:
        """Publish ``payload`` as JSON; the number of processes that heard it. Raises
        ``RedisError`` or ``TimeoutError`` when Redis is unavailable."""
        data = json.dumps(payload, default=str, separators=(",", ":"))
        async with asyncio.timeout(REDIS_TIMEOUT):
            return int(await self.redis.publish(channel, data))

    @contextlib.asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[Listener]:
        """A listener of ``channel`` for the duration of the block. Waits (at most
        ``subscribe_wait``) for Redis to confirm the subscription, so that what is published
        after entering is heard; when Redis is down, the subscription is made once it is
        back."""
        if self._closed:
            raise RuntimeError("the ephemeral fan-out is closed")
        listener = Listener(channel, self.settings.queue_size)
        entry = self.channels.get(channel)
        if entry is None:
            entry = self.channels[channel] = _Channel()
            if channel in self.confirmed:  # not yet unsubscribed since its last listener
                entry.ready.set()
            self._dirty.set()
        entry.listeners.add(listener)
        try:
            if not entry.ready.is_set():
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self.settings.subscribe_wait):
                        if self.redis_up:  # else it subscribes as soon as it connects
                            await self.redis.publish(self.control, "sync")  # wake the reader
                        await entry.ready.wait()
            yield listener
        finally:
            # No await here: this runs when a subscription is cancelled.
            entry.listeners.discard(listener)
            if not entry.listeners and self.channels.get(channel) is entry:
                del self.channels[channel]
                self._dirty.set()

    def listeners(self, channel: str) -> int:
        entry = self.channels.get(channel)
        return len(entry.listeners) if entry else 0

    # ------------------------------------------------------------------ the reader

    async def _read(self) -> None:
        backoff = 0.1
        while not self._closed:
            pubsub = self.redis.pubsub()
            try:
                self.subscribed, self.confirmed = set(), set()
                await pubsub.subscribe(self.control)
                self._dirty.set()
                await self._sync(pubsub)
                if not self.redis_up:
                    log.info("ephemeral fan-out connected to Redis")
                self.redis_up = True
                backoff = 0.1
                while not self._closed:
                    message = await pubsub.get_message(timeout=self.settings.idle_read)
                    if message is not None:
                        self._dispatch(message)
                    await self._sync(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                if self.redis_up:
                    log.warning("ephemeral fan-out lost Redis; reconnecting", exc_info=True)
                self.redis_up = False
                self.confirmed = set()
                for entry in self.channels.values():
                    entry.ready.clear()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if not self._closed:
                await wait_until_set(self._stop, backoff)
                backoff = min(backoff * 2, self.settings.backoff_max)

    async def _sync(self, pubsub: Any) -> None:
        """Subscribe channels that gained a listener, unsubscribe those that lost all."""
        if not self._dirty.is_set():
            return
        self._dirty.clear()
        wanted = set(self.channels)
        if add := wanted - self.subscribed:
            await pubsub.subscribe(*add)
            self.subscribed |= add
        if remove := self.subscribed - wanted:
            await pubsub.unsubscribe(*remove)
            self.subscribed -= remove

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = _text(message.get("channel"))
        kind = message.get("type")
        if kind == "subscribe":
            self.confirmed.add(channel)
            entry = self.channels.get(channel)
            if entry is not None:
                entry.ready.set()
            return
        if kind == "unsubscribe":
            self.confirmed.discard(channel)
            return
        if kind != "message" or channel == self.control:
            return
        entry = self.channels.get(channel)
        if entry is None or not entry.listeners:
            return
        try:
            payload = json.loads(message["data"])
        except (TypeError, ValueError):
            log.warning("ignoring a malformed message on %s", channel)
            return
        for listener in list(entry.listeners):
            listener.push(payload)  # the same decoded object for every listener: read-only


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -------------------------------------------------------------------------- presence

# KEYS[1]: the workspace's presence set. ARGV: channel, now, cutoff (oldest live score),
# key ttl, at (ISO time for the events), op ("add" | "remove"), members...
# Publishes "online" for users who had no live member before and have one after,
# "offline" for users who had one (or only stale ones, pruned here) and have none after.
# Each user's members are also in a sorted set of their own (``<key>:<user_id>``, same
# scores), so a change decides who goes online or offline from the users it touches: it
# reads their own sets, never the workspace's whole set (which read every member twice,
# per connect and close: O(N^2) in Redis for N sockets opening in one workspace; decision
# 0031, "Capacity"). Pruning reads only the stale members.
_PRESENCE_SCRIPT = """
local key, channel = KEYS[1], ARGV[1]
local now, cutoff, ttl, at, op = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local function user(m) return string.match(m, '^([^:]+):') end
local function live(u) return redis.call('ZCOUNT', key .. ':' .. u, cutoff, '+inf') > 0 end
local touched, before, expired = {}, {}, {}
local function touch(u)
  if u and not touched[u] then
    touched[u] = true
    before[u] = live(u)
  end
end
local stale = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. cutoff)
for _, m in ipairs(stale) do
  local u = user(m)
  touch(u)
  if u then expired[u] = true end
end
for i = 7, #ARGV do touch(user(ARGV[i])) end
for _, m in ipairs(stale) do
  redis.call('ZREM', key, m)
  local u = user(m)
  if u then redis.call('ZREM', key .. ':' .. u, m) end
end
for i = 7, #ARGV do
  local m, u = ARGV[i], user(ARGV[i])
  if op == 'add' then
    redis.call('ZADD', key, now, m)
    if u then
      redis.call('ZADD', key .. ':' .. u, now, m)
      redis.call('EXPIRE', key .. ':' .. u, ttl)
    end
  else
    redis.call('ZREM', key, m)
    if u then redis.call('ZREM', key .. ':' .. u, m) end
  end
end
if redis.call('ZCARD', key) > 0 then redis.call('EXPIRE', key, ttl) end
local published = 0
for u in pairs(touched) do
  local after = live(u)
  local status = nil
  if after and not before[u] then
    status = 'online'
  elseif not after and (before[u] or expired[u]) then
    status = 'offline'
  end
  if status then
    redis.call('PUBLISH', channel, cjson.encode({user_id = u, status = status, at = at}))
    published = published + 1
  end
end
return published
"""

# A WebSocket's presence entry, by the id of its ASGI scope (not a key in the scope: one
# more key there grows every socket's scope dictionary).
_OPENED: dict[int, tuple[Presence, str]] = {}


# Connections refreshed by one script call of the heartbeat (``Presence._beat``): with
# 5,000 connections in a process, one call of them all took about 50 ms of the loop.
HEARTBEAT_SLICE = 500


@dataclass
class PresenceSettings:
    heartbeat: float = 15.0  # seconds between refreshes of this process's connections
    stale_after: float = 45.0  # a member older than this is gone (its process died)


@dataclass(frozen=True)
class _Connection:
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    id: str

    @property
    def member(self) -> str:
        return f"{self.user_id}:{self.id}"


class Presence:
    """This process's user connections, mirrored into Redis (see the module docstring).
    Redis calls are best effort and bounded in time: a connection is never refused or
    delayed for long because Redis is slow; the next heartbeat repairs what failed."""

    def __init__(self, client: redis.Redis, settings: PresenceSettings | None = None) -> None:
        self.redis = client
        self.settings = settings or PresenceSettings()
        self.connections: dict[str, _Connection] = {}
        self._script = client.register_script(_PRESENCE_SCRIPT)
        # Changes that come while a batch of them is sent go out together (``_change``).
        self._batches: Batches[_Change] = Batches(self._send)
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="presence heartbeat")

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        remaining = list(self.connections.values())
        self.connections.clear()
        for workspace_id, members in _by_workspace(remaining).items():
            await self._change(workspace_id, "remove", functools.partial(list, members))

    def register(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> str:
        """Count a new connection of ``user_id`` (heartbeats include it from now on); its
        id, for ``opened`` and ``closed``."""
        connection = _Connection(workspace_id, user_id, uuid.uuid4().hex)
        self.connections[connection.id] = connection
        return connection.id

    async def opened(self, connection_id: str) -> None:
        """Tell Redis about a registered connection at once (not at the next heartbeat)."""
        connection = self.connections.get(connection_id)
        if connection is not None:
            await self._change(connection.workspace_id, "add", lambda: [connection.member])

    async def closed(self, connection_id: str) -> None:
        connection = self.connections.pop(connection_id, None)
        if connection is not None:
            await self._change(connection.workspace_id, "remove", lambda: [connection.member])

    async def online_user_ids(self, workspace_id: uuid.UUID) -> list[uuid.UUID]:
        """Users with a live connection in the workspace, on any process. Raises
        ``RedisError`` or ``TimeoutError`` when Redis is unavailable."""
        cutoff = time.time() - self.settings.stale_after
        async with asyncio.timeout(REDIS_TIMEOUT):
            members = await self.redis.zrangebyscore(presence_key(workspace_id), cutoff, "+inf")
        ids: dict[uuid.UUID, None] = {}
        for member in members:
            with contextlib.suppress(ValueError):
                ids[uuid.UUID(_text(member).partition(":")[0])] = None
        return list(ids)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat)
            by_workspace: dict[uuid.UUID, list[str]] = {}
            for connection in self.connections.values():
                by_workspace.setdefault(connection.workspace_id, []).append(connection.id)
            for workspace_id, ids in by_workspace.items():
                # In slices: one script call (and its packing in Python) per few hundred
                # connections, each a short turn of the loop, not one for thousands.
                for start in range(0, len(ids), HEARTBEAT_SLICE):
                    chosen = ids[start : start + HEARTBEAT_SLICE]
                    try:
                        await self._change(workspace_id, "add", self._still_open(chosen))
                    except Exception:  # never let the heartbeat die
                        log.exception("presence heartbeat failed")

    def _still_open(self, ids: list[str]) -> Callable[[], list[str]]:
        """The members of those of ``ids`` still open when their batch is sent: a
        connection closed meanwhile is not revived."""

        def members() -> list[str]:
            connections = self.connections
            return [connections[i].member for i in ids if i in connections]

        return members

    async def _change(
        self, workspace_id: uuid.UUID, op: str, members: Callable[[], list[str]]
    ) -> None:
        """Run the presence script; ``members`` is evaluated when its batch is sent.
        Changes that come while another batch runs wait together and go out as one batch
        (``Batches``): one round trip (a pipeline, in the order they came) for all of
        them, so a burst of connections (a reconnect after a restart: thousands at once)
        costs a few round trips, not one each."""
        await self._batches.add((workspace_id, op, members))

    async def _send(self, changes: list[_Change]) -> None:
        workspace_id, op, _ = changes[0]
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                pipe = self.redis.pipeline(transaction=False)
                queued = 0
                now = time.time()
                for workspace, change, chosen_by in changes:
                    chosen = chosen_by()
                    if not chosen:
                        continue
                    args: list[str | int | float] = [
                        presence_channel(workspace),
                        repr(now),
                        repr(now - self.settings.stale_after),
                        int(self.settings.stale_after * 2),
                        now_iso(),
                        change,
                        *chosen,
                    ]
                    await self._script(keys=[presence_key(workspace)], args=args, client=pipe)
                    queued += 1
                if queued:
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            log.warning(
                "presence changes failed (%d, %s in workspace %s first)",
                len(changes),
                op,
                workspace_id,
                exc_info=True,
            )


# A presence change: the workspace, "add" or "remove", and its members (evaluated when
# its batch is sent, so a connection closed meanwhile is not revived by a heartbeat).
_Change = tuple[uuid.UUID, str, Callable[[], list[str]]]


def _by_workspace(connections: Iterable[_Connection]) -> dict[uuid.UUID, list[str]]:
    grouped: dict[uuid.UUID, list[str]] = {}
    for connection in connections:
        grouped.setdefault(connection.workspace_id, []).append(connection.member)
    return grouped


# --------------------------------------------------------------------- the process


class Ephemeral:
    """The process's fan-out and presence, started and closed by the app's lifespan."""

    def __init__(
        self,
        client: redis.Redis,
        fanout: FanoutSettings | None = None,
        presence: PresenceSettings | None = None,
    ) -> None:
        self.fanout = Fanout(client, fanout)
        self.presence = Presence(client, presence)

    async def start(self) -> None:
        await self.fanout.start()
        await self.presence.start()

    async def close(self) -> None:
        await self.presence.close()
        await self.fanout.close()


def of(app_state: Any) -> Ephemeral:
    """The running ``Ephemeral`` of an app (its ``AppState``)."""
    return app_state.ephemeral


# ------------------------------------------------------- WebSocket connection hooks


async def connection_opened(context: LiveContext) -> None:
    """Called by the WebSocket layer once a connection is authenticated: a user's
    connection marks them online (API keys have no presence)."""
    actor = context.actor
    websocket = context.websocket
    if actor is None or actor.user_id is None or websocket is None:
        return
    ephemeral = of(context.app)
    connection_id = ephemeral.presence.register(actor.workspace_id, actor.user_id)
    _OPENED[id(websocket.scope)] = (ephemeral.presence, connection_id)  # before any await
    await ephemeral.presence.opened(connection_id)


async def connection_closed(scope: dict[str, Any]) -> None:
    """Called by the WebSocket layer when a connection has ended, however it ended."""
    entry = _OPENED.pop(id(scope), None)
    if entry is not None:
        presence, connection_id = entry
        await presence.closed(connection_id)
