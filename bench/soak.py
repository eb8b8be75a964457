"""The soak of issue 12 (point 9): does a long live-chat run keep memory flat, the garbage
collector's pauses short and latency steady? `make soak` (30 minutes), or

    python -m bench.soak [--minutes 30] [--warmup-minutes 5] [--subscribers 400]
        [--reconnecting 20] [--reconnect-every 10] [--rate 40] [--interval 60]
        [--dashboards 60] [--dashboard-reconnecting 6]

Two `crm-graphql serve` processes (production settings, `CRM_DEBUG_RUNTIME=true`) on the
servers' core, against the local PostgreSQL (a database of its own, generated afresh by
bench/datagen.py) and Redis (database 8). This process, on the other core, is the load:

- subscribers spread over both processes: 40 % `conversationEvents` (an agent's own
  conversations, three sockets each: the assignee twice and the manager), 20 % `inbox`
  and 40 % `activityFeed`, as seven users (a manager and six agents). Every subscriber
  starts from the streams' head cursor taken before the run, so it expects every event
  written during the run; `--reconnecting` of them close their socket every
  `--reconnect-every` seconds and resume with the last cursor they saw;
- `--rate` requests a second, open loop, from the same seven users, alternating between
  the processes: 30 % `sendMessage` (by the conversation's assignee), 15 % `createActivity`,
  55 % reads (a customer page, a customer by id, a conversation with its messages, the
  user's conversation list). A written text carries `soak:<n>:<send time>`, so every
  subscriber's copy is matched to its write: lost, duplicated, and the delivery latency;
- `--dashboards` live dashboard subscribers (decision 0018), apart from that accounting,
  over the same users and processes: 40 % a service panel (conversations by status: per
  user for agents), 40 % an activities panel, 20 % a deals panel no write touches, and
  `--dashboard-reconnecting` of them on an activities-per-month panel that reconnect every
  `--reconnect-every` seconds with the next of eight time zones (boards created and
  dropped all through the run). While there are dashboards, a conversation's assignee
  sets it pending or open again every 3 s (STATUS_EVERY), which changes the service
  panels. Every dashboard must get a message after each write that changed its panel
  (sent after its socket's first answer, at least 5 s before the socket closed), the
  deals panel nothing after its first answer, and every dashboard must show what the same
  selection answers as a query within 40 s after the load.

Every `--sample` seconds the resident memory of each process (/proc) and its
`/debug/runtime` (garbage-collection pauses timed by `gc.callbacks`, event-loop stalls,
real-time state, with the boards, their viewers, renderings and socket writes) are
recorded. Reported per `--interval`: RSS, the longest pause and stall, request and
delivery latency percentiles, dashboard messages received, boards; over the run: the RSS
slope after the warm-up (MB per 10 minutes, least squares), the change after the warm-up
in % (median of the last minute against the first minute after warm-up), RSS once every
client has left, the longest pause and the pauses over 100 / 200 ms, lost / duplicated
deliveries, and the dashboards' figures and checks.
Results go to bench/results/soak-<time>.json and .md (and the table to stdout); the exit
status is 1 when RSS after the warm-up grew more than 10 % in a process, a pause
exceeded 200 ms, a delivery was lost or duplicated, a dashboard stayed silent after a
change, the untouched panel was sent again, a dashboard differed from the query's answer
after the load, or a board was left once every client had gone. See docs/decisions/0010-soak.md and 0018-live-dashboards.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench import datagen
from bench.run import (
    CLIENT_CORE,
    PG_SERVER,
    RESULTS,
    VENV_BIN,
    Server,
    cpu_seconds,
    login,
    machine_info,
    ours_env,
    rss_kib,
    say,
    spawn_pinned,
    wait_ready,
)
from crm_graphql.global_ids import to_global_id
from crm_graphql.services import activities, conversations, events

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"  # a database number of its own
DATABASE = "crm_soak"
SCALE = 0.2  # 2,000 customers, 20,000 activities, 400 conversations with 10,000 messages
SEED = 1012  # not the benchmark's: other workspace ids, other Redis channels
MARK = re.compile(rb"soak:(\d+):(\d+)")
FEED = -1  # the audience of an activity: every activityFeed subscriber
RSS_LIMIT_PCT = 10.0
PAUSE_LIMIT_MS = 200.0

CONVERSATION_EVENTS = """subscription SoakConversation($conversationId: ID!, $after: String) {
  conversationEvents(conversationId: $conversationId, after: $after) {
    cursor type message { id seq body }
  }
}"""
INBOX = """subscription SoakInbox($after: String) {
  inbox(after: $after) { cursor type conversation { id subject } message { id seq body } }
}"""
ACTIVITY_FEED = """subscription SoakFeed($after: String) {
  activityFeed(after: $after) { cursor type activity { id type subject } }
}"""
SEND_MESSAGE = """mutation SoakSend($conversationId: ID!, $body: String!) {
  sendMessage(input: { conversationId: $conversationId, body: $body }) {
    message { id seq } errors { code message }
  }
}"""
CREATE_ACTIVITY = """mutation SoakNote($customerId: ID!, $subject: String!) {
  createActivity(input: { type: NOTE, subject: $subject, customerId: $customerId }) {
    activity { id } errors { code message }
  }
}"""
CUSTOMER_PAGE = """query SoakCustomers {
  customers(first: 50) {
    nodes { id name email company { name } owner { name } }
    pageInfo { hasNextPage endCursor }
  }
}"""
CUSTOMER = """query SoakCustomer($id: ID!) {
  node(id: $id) { id ... on Customer { name email lastActivityAt company { name } } }
}"""
CONVERSATION = """query SoakConversationPage($id: ID!) {
  node(id: $id) { ... on Conversation { subject status messages(first: 20) { nodes { seq body } } } }
}"""
CONVERSATION_LIST = """query SoakConversationList {
  me { id name }
  conversations(first: 20) { nodes { id subject unreadCount } }
}"""
# One round of the request mix (30 % sendMessage, 15 % createActivity, 55 % reads).
MIX: tuple[str, ...] = (
    ("send",) * 6
    + ("note",) * 3
    + ("page",) * 3
    + ("customer",) * 3
    + ("conversation",) * 3
    + ("list",) * 2
)

# Live dashboards (docs/decisions/0018-live-dashboards.md): the panels dashboard
# subscribers watch, as (variable definitions, selection). `service` counts conversations
# (per-user boards for agents) and changes with the status writes below; `activities`
# and `zones` change with every createActivity; `deals` is not touched by any write.
# `zones` is for the reconnecting subscribers: each connection takes the next time zone
# of ZONES, so boards are created and dropped all through the run.
PANELS: dict[str, tuple[str, str]] = {
    "service": (
        "",
        "conversationsAggregate(groupBy: [{field: STATUS}]) { count groups { status count } }",
    ),
    "activities": (
        "",
        "activitiesAggregate(groupBy: [{field: TYPE}]) { count groups { type count } }",
    ),
    "deals": (
        "",
        "dealsAggregate(groupBy: [{field: STAGE}]) {"
        " count amount { sum { currency amount } } groups { stage { id name } count } }",
    ),
    "zones": (
        "($zone: String)",
        "activitiesAggregate(groupBy: [{field: CREATED_AT, interval: MONTH}], timeZone: $zone)"
        " { count groups { createdAt count } }",
    ),
}
# Of the dashboard subscribers that do not reconnect: 40 % service, 40 % activities,
# 20 % deals.
PANEL_CYCLE = ("service", "activities", "deals", "service", "activities")
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Africa/Nairobi",
)
# Which panels a write changes: a note every activities panel, a status change the
# service panels of the conversation's assignee and of the managers (who see every one).
CHANGED_BY = {"note": ("activities", "zones"), "status": ("service",)}
SET_STATUS = """mutation SoakStatus($id: ID!, $status: ConversationStatus!) {
  setConversationStatus(input: { id: $id, status: $status }) {
    conversation { id status } errors { code message }
  }
}"""
STATUS_EVERY = 3.0  # seconds between two status writes (while there are dashboards)
STATUS_RUN = 10  # status writes in one direction (open -> pending, then back)
ANSWER_WITHIN = 5.0  # a dashboard connected this long after a change must have a message
SETTLE_WITHIN = 40.0  # after the load, every dashboard shows the query's answer by then


@dataclass
class Options:
    minutes: float = 30.0
    warmup_minutes: float | None = None  # default: 5, at most a fifth of the run
    subscribers: int = 400
    reconnecting: int = 20
    reconnect_every: float = 10.0
    rate: float = 40.0
    interval: float = 60.0
    sample: float = 5.0
    users: int = 7
    dashboards: int = 60
    dashboard_reconnecting: int = 6
    server_url: str = PG_SERVER
    redis_url: str = DEFAULT_REDIS_URL
    out: Path = RESULTS
    database: str = DATABASE
    scale: float = SCALE
    keep_data: bool = False
    gc_thresholds: str | None = None  # CRM_GC_THRESHOLDS of the servers (default: theirs)

    @property
    def warmup(self) -> float:
        if self.warmup_minutes is not None:
            return self.warmup_minutes * 60
        return min(300.0, self.minutes * 60 / 5)


# ------------------------------------------------------------------------ data


@dataclass
class User:
    id: uuid.UUID
    email: str
    manager: bool
    token: str = ""


@dataclass
class Facts:
    workspace: uuid.UUID
    users: list[User]  # the manager first, then the agents
    conversations: list[tuple[uuid.UUID, int]]  # (conversation, index of its assignee)
    customers: list[uuid.UUID]
    statuses: list[str] = field(default_factory=list)  # of each conversation, upper case


async def load_facts(db_url: str, users: int) -> Facts:
    conn = await asyncpg.connect(datagen.asyncpg_dsn(db_url))
    try:
        ws = await conn.fetchval(
            "SELECT id FROM workspaces WHERE name = $1", datagen.MAIN_WORKSPACE
        )
        manager = await conn.fetchrow(
            "SELECT id, email FROM users WHERE workspace_id = $1 AND role = 'manager'"
            " ORDER BY created_at, id LIMIT 1",
            ws,
        )
        # The live-chat conversations are assigned to the first agents round-robin.
        rows = await conn.fetch(
            "SELECT c.id, c.assignee_id, c.status, u.email FROM conversations c"
            " JOIN users u ON u.id = c.assignee_id"
            " WHERE c.workspace_id = $1 AND c.is_private ORDER BY c.created_at, c.id",
            ws,
        )
        agents: dict[uuid.UUID, User] = {}
        for row in rows:
            if row["assignee_id"] not in agents and len(agents) < users - 1:
                agents[row["assignee_id"]] = User(row["assignee_id"], row["email"], False)
        people = [User(manager["id"], manager["email"], True), *agents.values()]
        index = {user.id: i for i, user in enumerate(people)}
        kept = [r for r in rows if r["assignee_id"] in index]
        convs = [(r["id"], index[r["assignee_id"]]) for r in kept]
        customers = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM customers WHERE workspace_id = $1 ORDER BY id LIMIT 500", ws
            )
        ]
        return Facts(ws, people, convs, customers, [str(r["status"]).upper() for r in kept])
    finally:
        await conn.close()


async def head_cursors(db_url: str, workspace: uuid.UUID) -> dict[str, str]:
    """Where every subscriber starts: the streams' heads before the run."""
    conn = await asyncpg.connect(datagen.asyncpg_dsn(db_url))
    try:
        return {
            topic: (await events.head(conn, workspace, topic)).encode()
            for topic in (conversations.TOPIC, activities.TOPIC)
        }
    finally:
        await conn.close()


# ------------------------------------------------------------------------ subscribers


@contextlib.asynccontextmanager
async def subscribed(
    url: str, token: str, payload: dict[str, Any]
) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws socket, acknowledged, with one operation (id "1") started."""
    async with connect(
        url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        compression=None,
        max_queue=None,
        open_timeout=60,
        ping_interval=None,
    ) as ws:
        await ws.send(
            orjson.dumps(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
            ).decode()
        )
        ack = orjson.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no ack: {ack}")
        await ws.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": payload}).decode())
        yield ws


@dataclass(eq=False)
class Subscriber:
    """One logical subscription: it keeps its cursor over reconnections."""

    index: int
    kind: str  # conversation | inbox | feed
    user: int
    server: int
    conversation: int | None = None  # index into Facts.conversations
    reconnecting: bool = False
    cursor: str = ""
    counts: bytearray = field(default_factory=bytearray)  # write number -> times received
    connections: int = 0
    unexpected_closes: int = 0
    errors: int = 0
    subscribed: bool = False
    last_error: str | None = None

    def receive(self, n: int) -> None:
        if n >= len(self.counts):
            self.counts.extend(bytes(n + 4096 - len(self.counts)))
        if self.counts[n] < 255:
            self.counts[n] += 1


def plan_subscribers(facts: Facts, options: Options) -> list[Subscriber]:
    """40 % conversationEvents (three sockets per conversation: its assignee twice and the
    manager), 20 % inbox, 40 % activityFeed, over the users and both processes."""
    total = options.subscribers
    feed = round(total * 0.4)
    conversation = round(total * 0.4) // 3 * 3
    inbox = total - feed - conversation
    subs: list[Subscriber] = []
    for c in range(conversation // 3):
        assignee = facts.conversations[c % len(facts.conversations)][1]
        for user in (assignee, assignee, 0):
            subs.append(Subscriber(len(subs), "conversation", user, 0, conversation=c))
    for i in range(inbox):
        subs.append(Subscriber(len(subs), "inbox", i % len(facts.users), 0))
    for i in range(feed):
        subs.append(Subscriber(len(subs), "feed", i % len(facts.users), 0))
    for sub in subs:
        sub.server = sub.index % 2
    step = max(1, len(subs) // max(1, options.reconnecting))
    for sub in subs[::step][: options.reconnecting]:
        sub.reconnecting = True
    return subs


@dataclass
class Span:
    """One socket of a dashboard subscriber: when each message arrived (monotonic s; the
    first is the answer at once) and when the socket closed."""

    opened: float
    closed: float | None = None
    times: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]


@dataclass(eq=False)
class DashboardSubscriber:
    """One `dashboard` subscription (decision 0018), counted apart from the event
    subscribers: its messages are answers, not events to account for one by one."""

    index: int
    panel: str  # a key of PANELS
    user: int
    server: int
    reconnecting: bool = False
    variables: dict[str, Any] = field(default_factory=dict)  # of the current socket
    last: Any = None  # the last answer received on the current socket
    spans: list[Span] = field(default_factory=list)
    messages: int = 0
    errors: int = 0
    unexpected_closes: int = 0
    subscribed: bool = False
    last_error: str | None = None


def plan_dashboards(facts: Facts, options: Options) -> list[DashboardSubscriber]:
    """`--dashboards` subscribers over the users and both processes: 40 % service, 40 %
    activities and 20 % deals panels, and `--dashboard-reconnecting` on `zones` panels
    that reconnect every `--reconnect-every` seconds with the next time zone."""
    total = max(0, options.dashboards)
    moving = min(total, max(0, options.dashboard_reconnecting))
    subs = [
        DashboardSubscriber(i, PANEL_CYCLE[i % len(PANEL_CYCLE)], i % len(facts.users), i % 2)
        for i in range(total - moving)
    ]
    for i in range(moving):
        index = len(subs)
        subs.append(
            DashboardSubscriber(index, "zones", i % len(facts.users), index % 2, reconnecting=True)
        )
    return subs


def panel_document(panel: str, operation: str) -> str:
    """The panel as a `dashboard` subscription or as the same selection in a query."""
    definitions, selection = PANELS[panel]
    name = f"SoakPanel{panel.capitalize()}{definitions}"
    if operation == "subscription":
        return f"subscription {name} {{ dashboard {{ {selection} }} }}"
    return f"query {name} {{ {selection} }}"


# ------------------------------------------------------------------------ the run


@dataclass
class Interval:
    requests: int = 0
    request_errors: int = 0
    request_ms: array = field(default_factory=lambda: array("f"))  # type: ignore[type-arg]
    deliveries: int = 0
    delivery_ms: array = field(default_factory=lambda: array("f"))  # type: ignore[type-arg]
    reconnects: int = 0
    unexpected_closes: int = 0
    dashboard_messages: int = 0
    dashboard_reconnects: int = 0
    dashboard_unexpected_closes: int = 0
    status_writes: int = 0


class Soak:
    def __init__(self, options: Options, facts: Facts, servers: list[Server]) -> None:
        self.options = options
        self.facts = facts
        self.servers = servers
        self.subs: list[Subscriber] = []
        self.cursors: dict[str, str] = {}
        self.t0 = 0.0
        self.stopping = asyncio.Event()
        self.intervals: list[Interval] = []
        self.audience: list[int] = []  # write number -> conversation index or FEED
        self.written = bytearray()  # write number -> 1 when its request succeeded
        self.samples: list[dict[str, Any]] = []
        # (unix s, generation, pause ms, CPU ms) of every collection of 5 ms or more
        self.pauses: list[dict[tuple[float, int, float, float], None]] = [{} for _ in servers]
        self.stalls: list[dict[tuple[float, float], None]] = [{} for _ in servers]
        self.failures: list[str] = []
        self.rng = random.Random(SEED)
        self.numbers = itertools.count()
        self.dashboards: list[DashboardSubscriber] = []
        # (sent, answered: monotonic s, "note" | "status", the assignee of a status write)
        # of every write that succeeded and changes some panels
        self.changes: list[tuple[float, float, str, int | None]] = []
        self.status_errors: list[str] = []

    def interval(self) -> Interval:
        index = max(0, int((time.monotonic() - self.t0) / self.options.interval))
        while len(self.intervals) <= index:
            self.intervals.append(Interval())
        return self.intervals[index]

    def _subscription(self, sub: Subscriber) -> tuple[str, dict[str, Any], str]:
        if sub.kind == "conversation":
            assert sub.conversation is not None
            conv = self.facts.conversations[sub.conversation][0]
            variables = {"conversationId": to_global_id("Conversation", conv)}
            return CONVERSATION_EVENTS, variables, "conversationEvents"
        if sub.kind == "inbox":
            return INBOX, {}, "inbox"
        return ACTIVITY_FEED, {}, "activityFeed"

    async def _keep_connected(
        self,
        sub: Subscriber | DashboardSubscriber,
        connect: Callable[[float | None], Awaitable[None]],
        planned: str,
        unexpected: str,
    ) -> None:
        """Connect again and again until the soak stops: a reconnecting subscriber closes
        its socket every ``reconnect_every`` s (first after a phase of its own, so that the
        reconnections are spread), counted in the interval's ``planned``; an error closes
        it too, counted in ``unexpected``, and the next connection waits a second."""
        phase = (sub.index * 7919 % 1000) / 1000 * self.options.reconnect_every
        first = True
        while not self.stopping.is_set():
            until = None
            if sub.reconnecting:
                until = time.monotonic() + (phase if first else self.options.reconnect_every)
                until = max(until, time.monotonic() + 1)
            first = False
            try:
                await connect(until)
                if until is not None and not self.stopping.is_set():
                    counted = self.interval()
                    setattr(counted, planned, getattr(counted, planned) + 1)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # closed by the server, refused, ...
                sub.unexpected_closes += 1
                sub.last_error = repr(error)[:300]
                counted = self.interval()
                setattr(counted, unexpected, getattr(counted, unexpected) + 1)
                await asyncio.sleep(1)

    async def _results(
        self, sub: Subscriber | DashboardSubscriber, ws: ClientConnection, until: float | None
    ) -> AsyncIterator[tuple[int, bytes, dict[str, Any]]]:
        """The results the socket receives (receive time in ns, raw message, payload)
        until ``until`` or the soak's end; pings answered, errors counted."""
        while not self.stopping.is_set():
            timeout = None if until is None else until - time.monotonic()
            if timeout is not None and timeout <= 0:
                return  # a planned reconnection: the socket is closed by the caller
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                return
            except ConnectionClosed as closed:
                if self.stopping.is_set():
                    return
                raise RuntimeError(f"closed by the server: {closed}") from closed
            now = time.time_ns()
            data = raw if isinstance(raw, bytes) else raw.encode()
            message = orjson.loads(data)
            kind = message.get("type")
            if kind == "ping":
                await ws.send('{"type":"pong"}')
                continue
            if kind != "next":
                if kind in ("error", "complete"):
                    sub.errors += 1
                    raise RuntimeError(f"{kind}: {data[:300]!r}")
                continue
            result = message["payload"]
            if result.get("errors"):
                sub.errors += 1
                sub.last_error = str(result["errors"])[:300]
            yield now, data, result

    # ---------------------------------------------------------------- subscribers

    async def subscriber(self, sub: Subscriber) -> None:
        query, variables, root = self._subscription(sub)
        topic = activities.TOPIC if sub.kind == "feed" else conversations.TOPIC
        sub.cursor = self.cursors[topic]
        url = f"ws://127.0.0.1:{self.servers[sub.server].port}/graphql"
        token = self.facts.users[sub.user].token

        async def connect(until: float | None) -> None:
            payload = {"query": query, "variables": {**variables, "after": sub.cursor}}
            async with subscribed(url, token, payload) as ws:
                sub.connections += 1
                sub.subscribed = True
                async for now, data, result in self._results(sub, ws, until):
                    event = (result.get("data") or {}).get(root)
                    if not event:
                        continue
                    sub.cursor = event["cursor"]
                    found = MARK.search(data)
                    if found is None:
                        continue
                    sub.receive(int(found.group(1)))
                    current = self.interval()
                    current.deliveries += 1
                    current.delivery_ms.append((now - int(found.group(2))) / 1e6)

        await self._keep_connected(sub, connect, "reconnects", "unexpected_closes")

    # ---------------------------------------------------------------- dashboards

    async def dashboard(self, sub: DashboardSubscriber) -> None:
        url = f"ws://127.0.0.1:{self.servers[sub.server].port}/graphql"
        token = self.facts.users[sub.user].token
        query = panel_document(sub.panel, "subscription")

        async def connect(until: float | None) -> None:
            if sub.panel == "zones":  # the next zone: another board than the last socket's
                sub.variables = {"zone": ZONES[(sub.index * 3 + len(sub.spans)) % len(ZONES)]}
            span = Span(time.monotonic())
            sub.spans.append(span)
            sub.last = None
            try:
                payload = {"query": query, "variables": sub.variables}
                async with subscribed(url, token, payload) as ws:
                    async for _, _, result in self._results(sub, ws, until):
                        data = (result.get("data") or {}).get("dashboard")
                        if data is None:
                            continue
                        span.times.append(time.monotonic())
                        sub.last = data
                        sub.messages += 1
                        sub.subscribed = True
                        self.interval().dashboard_messages += 1
            finally:
                span.closed = time.monotonic()

        await self._keep_connected(
            sub, connect, "dashboard_reconnects", "dashboard_unexpected_closes"
        )

    async def status_writes(self, clients: list[list[httpx.AsyncClient]]) -> None:
        """While dashboards watch: every STATUS_EVERY s a conversation's assignee sets it
        pending or open again (STATUS_RUN in one direction, then back: consecutive
        writes never cancel out on a board). Agents' messages keep an open or pending
        conversation as it is, so each of these is a change of the service panels."""
        end = self.t0 + self.options.minutes * 60
        towards, run = "PENDING", 0
        statuses = self.facts.statuses
        for i in itertools.count(1):
            at = self.t0 + i * STATUS_EVERY
            if at >= end:
                return
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            source = "OPEN" if towards == "PENDING" else "PENDING"
            choices = [c for c, status in enumerate(statuses) if status == source]
            if not choices or run >= STATUS_RUN:
                towards, run = source, 0
                continue
            c = self.rng.choice(choices)
            conversation, assignee = self.facts.conversations[c]
            body = {
                "query": SET_STATUS,
                "variables": {"id": to_global_id("Conversation", conversation), "status": towards},
            }
            sent = time.monotonic()
            try:
                response = await clients[i % 2][assignee].post(
                    "/graphql", content=orjson.dumps(body)
                )
                answer = response.json()
                payload = (answer.get("data") or {}).get("setConversationStatus") or {}
                ok = not answer.get("errors") and not payload.get("errors")
                done = (payload.get("conversation") or {}).get("status") == towards
            except (httpx.HTTPError, ValueError) as error:
                ok = done = False
                answer = repr(error)
            self.interval().status_writes += 1
            if ok and done:
                statuses[c] = towards
                run += 1
                self.changes.append((sent, time.monotonic(), "status", assignee))
            elif len(self.status_errors) < 20:
                self.status_errors.append(str(answer)[:300])

    def dashboard_account(self) -> dict[str, Any]:
        """Did every dashboard subscriber get a message after each write that changed its
        panel (sent after the socket's first answer, at least ANSWER_WITHIN s before the
        socket closed)? And how long after the write was sent (the panel's lag)?"""
        changes = sorted(self.changes)
        starts = [c[0] for c in changes]
        checked = unanswered = untouched_resent = unanswered_sockets = 0
        by_panel = dict.fromkeys(PANELS, 0)
        lags = array("f")
        silent: list[int] = []
        for sub in self.dashboards:
            manager = self.facts.users[sub.user].manager
            missed = 0
            for span in sub.spans:
                closed = span.closed if span.closed is not None else time.monotonic()
                if not span.times:
                    if closed - span.opened >= ANSWER_WITHIN:
                        unanswered_sockets += 1
                    continue
                if sub.panel == "deals":
                    untouched_resent += len(span.times) - 1
                first = span.times[0]
                for sent, answered, kind, assignee in changes[bisect.bisect_right(starts, first) :]:
                    if answered + ANSWER_WITHIN > closed:
                        if sent > closed:
                            break
                        continue
                    if sub.panel not in CHANGED_BY[kind]:
                        continue
                    if kind == "status" and not manager and assignee != sub.user:
                        continue
                    checked += 1
                    by_panel[sub.panel] += 1
                    after = bisect.bisect_right(span.times, sent)
                    if after < len(span.times):
                        lags.append((span.times[after] - sent) * 1000)
                    else:
                        unanswered += 1
                        missed += 1
            if missed:
                silent.append(sub.index)
        return {
            "changes_checked": checked,
            "changes_checked_by_panel": by_panel,
            "changes_unanswered": unanswered,
            "silent_subscribers": silent,
            "sockets_without_answer": unanswered_sockets,
            "untouched_panel_messages_after_first": untouched_resent,
            "lag_ms": {q: percentile(lags, q) for q in (50, 95, 99)},
        }

    async def dashboards_settled(self, clients: list[list[httpx.AsyncClient]]) -> dict[str, Any]:
        """After the load: does every dashboard show what the same selection answers as a
        query now (within SETTLE_WITHIN s: a lost notice costs a refresh)?"""
        started = time.monotonic()
        pending = list(self.dashboards)
        while pending:
            answers: dict[tuple[int, int, str, bytes], Any] = {}
            still = []
            for sub in pending:
                key = (sub.server, sub.user, sub.panel, orjson.dumps(sub.variables))
                if key not in answers:
                    body = {"query": panel_document(sub.panel, "query"), "variables": sub.variables}
                    client = clients[sub.server][sub.user]
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        response = await client.post("/graphql", content=orjson.dumps(body))
                        answers[key] = response.json().get("data")
                if sub.last is None or sub.last != answers.get(key):
                    still.append(sub)
            pending = still
            if not pending or time.monotonic() - started > SETTLE_WITHIN:
                break
            await asyncio.sleep(1)
        return {
            "stale_at_end": [s.index for s in pending],
            "settled_seconds": round(time.monotonic() - started, 1),
        }

    # ---------------------------------------------------------------- requests

    def _request(self, kind: str) -> tuple[int, dict[str, Any], int | None]:
        """(user, body, audience of a write) of one request of ``kind``."""
        rng, facts = self.rng, self.facts
        user = rng.randrange(len(facts.users))
        if kind == "send":
            c = rng.randrange(len(facts.conversations))
            conv, assignee = facts.conversations[c]
            target = {"conversationId": to_global_id("Conversation", conv)}
            return assignee, *self._write(SEND_MESSAGE, target, "body", c)
        if kind == "note":
            target = {"customerId": to_global_id("Customer", rng.choice(facts.customers))}
            return user, *self._write(CREATE_ACTIVITY, target, "subject", FEED)
        if kind == "page":
            return user, {"query": CUSTOMER_PAGE}, None
        if kind == "customer":
            customer = rng.choice(facts.customers)
            return (
                user,
                {"query": CUSTOMER, "variables": {"id": to_global_id("Customer", customer)}},
                None,
            )
        if kind == "conversation":
            conv, assignee = rng.choice(facts.conversations)
            variables = {"id": to_global_id("Conversation", conv)}
            return assignee, {"query": CONVERSATION, "variables": variables}, None
        return user, {"query": CONVERSATION_LIST}, None

    def _write(
        self, query: str, target: dict[str, str], text: str, audience: int
    ) -> tuple[dict[str, Any], int]:
        """The body of the next write (its ``text`` variable marked ``soak:<n>:<send
        time>``), to be delivered to ``audience``; and its number n."""
        n = next(self.numbers)
        self._written(n, audience)
        variables = {**target, text: f"soak:{n}:{time.time_ns()}"}
        return {"query": query, "variables": variables}, n

    def _written(self, n: int, audience: int) -> None:
        while len(self.audience) <= n:
            self.audience.append(FEED)
            self.written.append(0)
        self.audience[n] = audience

    async def requests(self, clients: list[list[httpx.AsyncClient]]) -> None:
        """Open loop: one request every 1/rate s until the run ends."""
        period = 1 / self.options.rate
        tasks: set[asyncio.Task[None]] = set()
        mix = list(MIX)
        end = self.t0 + self.options.minutes * 60
        for i in itertools.count():
            at = self.t0 + i * period
            if at >= end:
                break
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % len(mix) == 0:
                self.rng.shuffle(mix)
            user, body, n = self._request(mix[i % len(mix)])
            task = asyncio.create_task(self._send(clients[i % 2][user], body, n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=60)

    async def _send(self, client: httpx.AsyncClient, body: dict[str, Any], n: int | None) -> None:
        started = time.perf_counter()
        sent = time.monotonic()
        ok = False
        try:
            response = await client.post("/graphql", content=orjson.dumps(body))
            answer = response.json()
            data = answer.get("data") or {}
            ok = response.status_code == 200 and not answer.get("errors")
            ok = ok and not any(isinstance(v, dict) and v.get("errors") for v in data.values())
            if not ok and len(self.failures) < 20:
                self.failures.append(response.text[:300])
        except (httpx.HTTPError, ValueError) as error:
            if len(self.failures) < 20:
                self.failures.append(repr(error)[:300])
        current = self.interval()
        current.requests += 1
        current.request_ms.append((time.perf_counter() - started) * 1000)
        if not ok:
            current.request_errors += 1
        elif n is not None:
            self.written[n] = 1
            if self.audience[n] == FEED:  # a note: every activities panel changed
                self.changes.append((sent, time.monotonic(), "note", None))

    # ---------------------------------------------------------------- sampling

    async def sample(
        self, http: httpx.AsyncClient, phase: str, census: str | None = None
    ) -> dict[str, Any]:
        """RSS, CPU and /debug/runtime of each process; with ``census`` ("count" or
        "collect", only outside the measured load) the objects alive by type."""
        query = {"count": "?census=1", "collect": "?census=1&collect=1"}.get(census or "", "")
        entry: dict[str, Any] = {
            "t": round(time.monotonic() - self.t0, 2),
            "wall": time.time(),
            "phase": phase,
            "rss_kib": [],
            "cpu_s": [],
            "gc": [],
            "loop_lag_ms_max": [],
            "realtime": [],
        }
        for i, server in enumerate(self.servers):
            entry["rss_kib"].append(rss_kib(server.proc.pid))
            entry["cpu_s"].append(cpu_seconds(server.proc.pid))
            try:
                url = server.base + "/debug/runtime" + query
                runtime = (await http.get(url, timeout=60)).json()
            except (httpx.HTTPError, ValueError) as error:
                entry["gc"].append({"error": repr(error)[:200]})
                entry["loop_lag_ms_max"].append(None)
                entry["realtime"].append({})
                continue
            gc_figures = runtime["gc"]
            for pause in gc_figures.pop("recent"):
                self.pauses[i][tuple(pause)] = None  # type: ignore[index]
            loop = runtime["loop"]
            for stall in loop["recent"]:
                self.stalls[i][tuple(stall)] = None  # type: ignore[index]
            entry["gc"].append(gc_figures)
            entry["loop_lag_ms_max"].append(loop["lag_ms_max"])
            entry["realtime"].append(runtime["realtime"])
            if "census" in runtime:
                entry.setdefault("census", []).append(runtime["census"])
        self.samples.append(entry)
        return entry

    async def sampler(self, http: httpx.AsyncClient) -> None:
        while not self.stopping.is_set():
            elapsed = time.monotonic() - self.t0
            phase = "warm-up" if elapsed < self.options.warmup else "load"
            await self.sample(http, phase)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.options.sample)

    async def members(self, http: httpx.AsyncClient, key: str = "members") -> int:
        """A figure of the real-time state (members of fan-out groups, dashboard
        viewers, ...) summed over both processes."""
        total = 0
        for server in self.servers:
            runtime = (await http.get(server.base + "/debug/runtime", timeout=10)).json()
            total += runtime["realtime"].get(key, 0)
        return total

    # ---------------------------------------------------------------- the whole run

    async def run(self) -> dict[str, Any]:
        options = self.options
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        clients = [
            [
                httpx.AsyncClient(
                    base_url=server.base,
                    headers={
                        "Content-Type": "application/json",
                        "Authorization": f"Bearer {user.token}",
                    },
                    timeout=30,
                    limits=limits,
                )
                for user in self.facts.users
            ]
            for server in self.servers
        ]
        http = httpx.AsyncClient(timeout=10)
        self.t0 = time.monotonic()
        self.subs = plan_subscribers(self.facts, options)
        self.dashboards = plan_dashboards(self.facts, options)
        tasks = [asyncio.create_task(self.subscriber(sub)) for sub in self.subs]
        tasks += [asyncio.create_task(self.dashboard(sub)) for sub in self.dashboards]
        try:
            # Every subscriber subscribed (those reconnecting may be between two sockets),
            # every dashboard answered once.
            deadline = time.monotonic() + 180
            wanted = len(self.subs) - options.reconnecting
            while (
                not all(s.subscribed for s in self.subs)
                or not all(d.subscribed for d in self.dashboards)
                or await self.members(http) < wanted
            ):
                if time.monotonic() > deadline:
                    members = await self.members(http)
                    answered = sum(d.subscribed for d in self.dashboards)
                    raise RuntimeError(
                        f"only {members} of {len(self.subs)} subscribed, "
                        f"{answered} of {len(self.dashboards)} dashboards answered"
                    )
                await asyncio.sleep(0.5)
            say(
                f"{len(self.subs)} subscribers and {len(self.dashboards)} dashboards on two "
                f"processes; load for {options.minutes:g} min"
            )
            await self.sample(http, "subscribed", census="count")
            self.t0 = time.monotonic()
            self.intervals = []
            sampler = asyncio.create_task(self.sampler(http))
            reporter = asyncio.create_task(self.progress())
            writer = asyncio.create_task(self.status_writes(clients)) if self.dashboards else None
            await self.requests(clients)
            if writer is not None:
                await writer
            drained = await self.drain()
            settled = await self.dashboards_settled(clients)
            self.stopping.set()
            await sampler
            reporter.cancel()
            await self.sample(http, "drained", census="count")
            lost, duplicates, unexpected, expected = self.account()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Every client has left: is the memory given back?
            for _ in range(120):
                await asyncio.sleep(0.5)
                if not await self.members(http) and not await self.members(
                    http, "dashboard_viewers"
                ):
                    break
            await asyncio.sleep(min(10.0, 2 * options.sample))  # closing sockets settle
            left = await self.sample(http, "clients left", census="collect")
        finally:
            self.stopping.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for per_server in clients:
                for client in per_server:
                    await client.aclose()
            await http.aclose()
        return {
            "deliveries_expected": expected,
            "lost": lost,
            "duplicates": duplicates,
            "unexpected": unexpected,
            "drain_seconds": drained,
            "rss_after_clients_left_kib": left["rss_kib"],
            "dashboards": {**self.dashboard_account(), **settled} if self.dashboards else {},
            "boards_after_clients_left": [
                {k: state.get(k) for k in ("dashboards", "dashboard_viewers")}
                for state in left["realtime"]
            ],
        }

    async def progress(self) -> None:
        """A line per interval as it ends."""
        printed = 0
        while True:
            await asyncio.sleep(1)
            while printed < len(self.intervals) - 1:
                say(row_text(self, printed))
                printed += 1

    async def drain(self) -> float:
        """Wait until no delivery arrived for 3 s (at most 60 s): late is not lost."""
        started = time.monotonic()
        last, still = self._received(), time.monotonic()
        while time.monotonic() - started < 60:
            await asyncio.sleep(0.25)
            now = self._received()
            if now != last:
                last, still = now, time.monotonic()
            elif time.monotonic() - still >= 3:
                break
        return round(time.monotonic() - started, 1)

    def _received(self) -> int:
        return sum(i.deliveries for i in self.intervals)

    def account(self) -> tuple[int, int, int, int]:
        """(lost, duplicated, received without being expected, expected) over every
        subscriber and every write whose request succeeded."""
        by_audience: dict[int, list[int]] = {}
        for n, audience in enumerate(self.audience):
            if self.written[n]:
                by_audience.setdefault(audience, []).append(n)
        lost = duplicates = unexpected = expected_total = 0
        for sub in self.subs:
            if sub.kind == "feed":
                audiences = [FEED]
            elif sub.kind == "conversation":
                audiences = [sub.conversation]  # type: ignore[list-item]
            else:  # inbox: the user's conversations, every conversation for the manager
                manager = self.facts.users[sub.user].manager
                audiences = [
                    c
                    for c, (_, assignee) in enumerate(self.facts.conversations)
                    if manager or assignee == sub.user
                ]
            counts = sub.counts
            got = 0
            for audience in audiences:
                for n in by_audience.get(audience, ()):
                    expected_total += 1
                    seen = counts[n] if n < len(counts) else 0
                    got += seen
                    if seen == 0:
                        lost += 1
                    elif seen > 1:
                        duplicates += seen - 1
            unexpected += sum(counts) - got
        return lost, duplicates, unexpected, expected_total


# ------------------------------------------------------------------------ figures


def percentile(values: Any, q: float) -> float | None:
    if not len(values):
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(float(ordered[index]), 1)


def slope_mb_per_10min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, KiB) points, in MB per 10 minutes (None over less
    than two minutes: too short to tell)."""
    if len(points) < 3 or points[-1][0] - points[0][0] < 120:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return None
    kib_per_s = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
    return round(kib_per_s * 600 / 1024, 1)


def rss_figures(soak: Soak, process: int) -> dict[str, Any]:
    options = soak.options
    load = [
        (s["t"], s["rss_kib"][process])
        for s in soak.samples
        if s["phase"] == "load" and s["t"] >= options.warmup
    ]
    first = [kib for t, kib in load if t < options.warmup + 60]
    end = load[-1][0] if load else 0
    last = [kib for t, kib in load if t > end - 60]
    start_mib = statistics.median(first) / 1024 if first else None
    end_mib = statistics.median(last) / 1024 if last else None
    growth = round(100 * (end_mib - start_mib) / start_mib, 1) if start_mib and end_mib else None
    subscribed = next((s for s in soak.samples if s["phase"] == "subscribed"), None)
    return {
        "rss_subscribed_mib": round(subscribed["rss_kib"][process] / 1024, 1)
        if subscribed
        else None,
        "rss_after_warmup_mib": round(start_mib, 1) if start_mib else None,
        "rss_end_mib": round(end_mib, 1) if end_mib else None,
        "rss_max_mib": round(
            max((s["rss_kib"][process] for s in soak.samples), default=0) / 1024, 1
        ),
        "rss_growth_after_warmup_pct": growth,
        "rss_slope_mb_per_10min": slope_mb_per_10min(load),
    }


def gc_figures(soak: Soak, process: int) -> dict[str, Any]:
    """Collections, pauses and loop stalls from the start of the load to its end."""
    measured = [
        s
        for s in soak.samples
        if s["phase"] in ("warm-up", "load", "drained") and "collections" in s["gc"][process]
    ]
    if not measured:
        return {}
    first, last = measured[0]["gc"][process], measured[-1]["gc"][process]
    lo, hi = measured[0]["wall"] - soak.options.sample, measured[-1]["wall"]
    pauses = [p for p in soak.pauses[process] if lo <= p[0] <= hi]
    stalls = [p for p in soak.stalls[process] if lo <= p[0] <= hi]
    return {
        "collections": [
            b - a for a, b in zip(first["collections"], last["collections"], strict=True)
        ],
        "collected": last.get("collected", 0) - first.get("collected", 0),
        "pause_ms_max": max((p[2] for p in pauses), default=0.0),
        "pause_cpu_ms_max": max((p[3] for p in pauses), default=0.0),
        "pause_ms_total": round(last["pause_ms_total"] - first["pause_ms_total"], 1),
        "pauses_over_100ms": last["over_100ms"] - first["over_100ms"],
        "pauses_over_200ms": last["over_200ms"] - first["over_200ms"],
        "loop_lag_ms_max": max((p[1] for p in stalls), default=0.0),
        "longest_pauses": sorted(pauses, key=lambda p: -p[2])[:10],
        "longest_stalls": sorted(stalls, key=lambda p: -p[1])[:10],
    }


def census_growth(soak: Soak, process: int, phase: str) -> dict[str, int]:
    """The types whose objects grew most between the subscribed sample and ``phase``."""
    counts = {}
    for wanted in ("subscribed", phase):
        entry = next((s for s in soak.samples if s["phase"] == wanted and "census" in s), None)
        if entry is None:
            return {}
        counts[wanted] = entry["census"][process]
    before, after = counts["subscribed"], counts[phase]
    growth = {"(all objects)": after["objects"] - before["objects"]}
    by_type = {name: n - before["by_type"].get(name, 0) for name, n in after["by_type"].items()}
    growth.update(sorted(by_type.items(), key=lambda item: -item[1])[:10])
    return growth


def dashboard_figures(soak: Soak, run: dict[str, Any]) -> dict[str, Any]:
    """The dashboard subscribers over the run (decision 0018): messages, the servers'
    boards, and whether each panel followed the writes that changed it."""
    if not soak.dashboards:
        return {}
    measured = [s for s in soak.samples if s["phase"] in ("warm-up", "load", "drained")]

    def over_run(key: str, p: int) -> int | None:
        values = [s["realtime"][p].get(key) for s in measured if s["realtime"][p]]
        return values[-1] - values[0] if len(values) > 1 else None

    return {
        "subscribers": len(soak.dashboards),
        "reconnecting": sum(d.reconnecting for d in soak.dashboards),
        "by_panel": {panel: sum(d.panel == panel for d in soak.dashboards) for panel in PANELS},
        "messages": sum(d.messages for d in soak.dashboards),
        "sockets": sum(len(d.spans) for d in soak.dashboards),
        "reconnects": sum(i.dashboard_reconnects for i in soak.intervals),
        "unexpected_closes": sum(d.unexpected_closes for d in soak.dashboards),
        "errors": sum(d.errors for d in soak.dashboards),
        "subscriber_errors": [d.last_error for d in soak.dashboards if d.last_error][:10],
        "status_writes": sum(i.status_writes for i in soak.intervals),
        "status_write_errors": sum(i.status_writes for i in soak.intervals)
        - sum(kind == "status" for *_, kind, _ in soak.changes),
        "status_write_failures": soak.status_errors,
        "boards_max": [
            max(
                (s["realtime"][p].get("dashboards", 0) for s in measured if s["realtime"][p]),
                default=0,
            )
            for p in range(2)
        ],
        "renders": [over_run("dashboard_renders", p) for p in range(2)],
        "deliveries": [over_run("dashboard_deliveries", p) for p in range(2)],
        "boards_after_clients_left": [
            state.get("dashboards") for state in run["boards_after_clients_left"]
        ],
        "viewers_after_clients_left": [
            state.get("dashboard_viewers") for state in run["boards_after_clients_left"]
        ],
        **run["dashboards"],
    }


def interval_rows(soak: Soak) -> list[dict[str, Any]]:
    rows = []
    wall0 = time.time() - (time.monotonic() - soak.t0)  # the run's start on the wall clock
    for index, interval in enumerate(soak.intervals):
        lo, hi = index * soak.options.interval, (index + 1) * soak.options.interval
        samples = [
            s for s in soak.samples if lo <= s["t"] < hi and s["phase"] in ("warm-up", "load")
        ]
        if not samples and not interval.requests:
            continue
        # CPU and collections over the interval: from the sample before it to its last one.
        earlier = [s for s in soak.samples if s["t"] < lo and "cpu_s" in s]
        span = ([earlier[-1]] if earlier else []) + samples
        row: dict[str, Any] = {
            "minute": round(hi / 60, 1),
            "phase": "warm-up"
            if hi <= soak.options.warmup
            else ("load" if lo < soak.options.minutes * 60 else "drain"),
            "rss_mib": [
                round(samples[-1]["rss_kib"][p] / 1024, 1) if samples else None for p in range(2)
            ],
            "cpu_pct": [],
            "gc_collections": [],
            "gc_pause_ms_max": [],
            "gc_over_100ms": [],
            "loop_stall_ms_max": [],
            "requests": interval.requests,
            "request_errors": interval.request_errors,
            "request_ms": {q: percentile(interval.request_ms, q) for q in (50, 95, 99)},
            "deliveries": interval.deliveries,
            "delivery_ms": {q: percentile(interval.delivery_ms, q) for q in (50, 95, 99)},
            "reconnects": interval.reconnects,
            "unexpected_closes": interval.unexpected_closes,
            "dashboard_messages": interval.dashboard_messages,
            "dashboard_reconnects": interval.dashboard_reconnects,
            "dashboard_unexpected_closes": interval.dashboard_unexpected_closes,
            "status_writes": interval.status_writes,
            # the servers' boards and viewers at the interval's last sample, and the
            # renderings and socket writes of boards during it
            "boards": [],
            "board_viewers": [],
            "board_renders": [],
            "board_deliveries": [],
        }
        for p in range(2):
            state = samples[-1]["realtime"][p] if samples else {}
            row["boards"].append(state.get("dashboards"))
            row["board_viewers"].append(state.get("dashboard_viewers"))
            for key, name in (
                ("dashboard_renders", "board_renders"),
                ("dashboard_deliveries", "board_deliveries"),
            ):
                before = span[0]["realtime"][p].get(key) if len(span) > 1 else None
                after = state.get(key)
                row[name].append(
                    after - before if before is not None and after is not None else None
                )

            pauses = [
                (ms, cpu) for at, _, ms, cpu in soak.pauses[p] if wall0 + lo <= at < wall0 + hi
            ]
            stalls = [ms for at, ms in soak.stalls[p] if wall0 + lo <= at < wall0 + hi]
            first, last = (span[0], span[-1]) if len(span) > 1 else (None, None)
            if first is not None and last is not None and last["t"] > first["t"]:
                used = last["cpu_s"][p] - first["cpu_s"][p]
                row["cpu_pct"].append(round(100 * used / (last["t"] - first["t"])))
                counts = [g.get("collections", [0]) for g in (first["gc"][p], last["gc"][p])]
                row["gc_collections"].append(sum(counts[1]) - sum(counts[0]))
            else:
                row["cpu_pct"].append(None)
                row["gc_collections"].append(None)
            row["gc_pause_ms_max"].append(max(pauses) if pauses else None)  # (wall, CPU)
            row["gc_over_100ms"].append(sum(ms > 100 for ms, _ in pauses))
            row["loop_stall_ms_max"].append(max(stalls) if stalls else None)
        rows.append(row)
    return rows


def row_text(soak: Soak, index: int) -> str:
    interval = soak.intervals[index]
    return (
        f"minute {(index + 1) * soak.options.interval / 60:.0f}: {interval.requests} requests "
        f"({interval.request_errors} failed, p99 {percentile(interval.request_ms, 99)} ms), "
        f"{interval.deliveries} deliveries (p99 {percentile(interval.delivery_ms, 99)} ms), "
        f"{interval.dashboard_messages} dashboard messages, "
        f"boards {[r.get('dashboards') for r in soak.samples[-1]['realtime']]}, "
        f"RSS {[round(k / 1024) for k in soak.samples[-1]['rss_kib']]} MiB"
    )


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Soak {result['started_at']} ({result['options']['minutes']:g} min, "
        f"warm-up {result['warmup_minutes']:g} min)",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['nproc']} cores; load average "
        f"at start {result['machine']['loadavg_at_start'][0]:.2f}. {result['note']}",
        "",
        "| minute | RSS A / B MiB | CPU A / B % | GC collections A / B "
        "| longest GC pause (its CPU) A / B ms | longest loop stall A / B ms "
        "| requests (failed) | request p50 / p95 / p99 ms | deliveries | delivery p50 / p95 / p99 ms "
        "| reconnects (unplanned) | dashboard messages | boards (viewers) A / B "
        "| board renders A / B |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["intervals"]:
        pauses = " / ".join(
            f"{fmt(v[0])} ({fmt(v[1])})" if v else "<5" for v in row["gc_pause_ms_max"]
        )
        stalls = " / ".join(fmt(v) if v is not None else "<50" for v in row["loop_stall_ms_max"])
        r, d = row["request_ms"], row["delivery_ms"]
        lines.append(
            f"| {fmt(row['minute'])}{'' if row['phase'] == 'load' else ' (' + row['phase'] + ')'} "
            f"| {' / '.join(fmt(v) for v in row['rss_mib'])} "
            f"| {' / '.join(fmt(v) for v in row['cpu_pct'])} "
            f"| {' / '.join(fmt(v) for v in row['gc_collections'])} | {pauses} | {stalls} "
            f"| {row['requests']} ({row['request_errors']}) "
            f"| {fmt(r[50])} / {fmt(r[95])} / {fmt(r[99])} | {row['deliveries']} "
            f"| {fmt(d[50])} / {fmt(d[95])} / {fmt(d[99])} "
            f"| {row['reconnects']} ({row['unexpected_closes']}) "
            f"| {row['dashboard_messages']} "
            f"| {' / '.join(f'{fmt(b)} ({fmt(v)})' for b, v in zip(row['boards'], row['board_viewers'], strict=True))} "
            f"| {' / '.join(fmt(v) for v in row['board_renders'])} |"
        )
    lines += [
        "",
        "| process | RSS subscribed | after warm-up | end | max | after clients left "
        "| growth after warm-up | slope MB / 10 min | longest GC pause (most CPU) "
        "| pauses > 100 / 200 ms "
        "| GC collections (gen 0/1/2) | longest loop stall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, proc in zip("AB", result["processes"], strict=True):
        lines.append(
            f"| {name} | {fmt(proc['rss_subscribed_mib'])} MiB | {fmt(proc['rss_after_warmup_mib'])} MiB "
            f"| {fmt(proc['rss_end_mib'])} MiB | {fmt(proc['rss_max_mib'])} MiB "
            f"| {fmt(proc['rss_after_clients_left_mib'])} MiB "
            f"| {fmt(proc['rss_growth_after_warmup_pct'])} % | {fmt(proc['rss_slope_mb_per_10min'])} "
            f"| {fmt(proc.get('pause_ms_max'))} ms ({fmt(proc.get('pause_cpu_ms_max'))} ms) "
            f"| {fmt(proc.get('pauses_over_100ms'))} / {fmt(proc.get('pauses_over_200ms'))} "
            f"| {'/'.join(str(c) for c in proc.get('collections', []))} "
            f"| {fmt(proc.get('loop_lag_ms_max'))} ms |"
        )
    lines.append("")
    for name, proc in zip("AB", result["processes"], strict=True):
        for label, key in (
            ("at the end of the load", "objects_grown_by_end"),
            ("once every client had left (after a collection)", "objects_grown_after_clients_left"),
        ):
            grown = ", ".join(f"{t} {n:+d}" for t, n in proc.get(key, {}).items())
            lines.append(f"- {name}, objects alive {label}, against subscribed: {grown or '-'}")
    d = result["deliveries"]
    lines += [
        "",
        f"Deliveries: {d['deliveries_expected']} expected, {d['lost']} lost, {d['duplicates']} "
        f"duplicated, {d['unexpected']} not expected (writes whose request failed but committed); "
        f"drained in {d['drain_seconds']} s. Requests: {result['requests']} "
        f"({result['request_errors']} failed). Subscribers: {result['subscribers']} "
        f"({result['reconnecting']} reconnecting every {result['options']['reconnect_every']:g} s: "
        f"{result['reconnects']} reconnections, {result['unexpected_closes']} unplanned closes).",
        "",
    ]
    dash = result.get("dashboards") or {}
    if dash.get("subscribers"):
        lag = dash["lag_ms"]
        lines += [
            f"Dashboards: {dash['subscribers']} subscribers ({dash['reconnecting']} reconnecting "
            f"with another time zone: {dash['reconnects']} reconnections, "
            f"{dash['unexpected_closes']} unplanned closes), {dash['messages']} messages "
            f"({dash['errors']} with errors); boards at most {dash['boards_max']} (A / B), "
            f"{dash['renders']} renderings and {dash['deliveries']} socket writes (A / B), "
            f"{fmt(dash['boards_after_clients_left'])} boards once every client had left. "
            f"Changes checked: {dash['changes_checked']} (write -> panel), "
            f"{dash['changes_unanswered']} without a message after them "
            f"(silent subscribers: {len(dash['silent_subscribers'])}); lag from the write "
            f"to the next message p50 / p95 / p99 {fmt(lag[50])} / {fmt(lag[95])} / "
            f"{fmt(lag[99])} ms; {dash['untouched_panel_messages_after_first']} messages on "
            f"the deals panel after its first answer; "
            f"{len(dash['stale_at_end'])} dashboards differing from the query's answer after "
            f"the load (checked for {dash['settled_seconds']} s). Status writes: "
            f"{dash['status_writes']} ({dash['status_write_errors']} failed).",
            "",
        ]
    lines += [
        f"**Verdict: {'PASS' if not result['failed'] else 'FAIL: ' + '; '.join(result['failed'])}**",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------ main


def start_servers(
    db_url: str, workdir: Path, redis_url: str, gc_thresholds: str | None = None
) -> list[Server]:
    servers = []
    for name in ("A", "B"):
        env = ours_env(db_url, workdir / f"crm-data-{name}")
        env.update(CRM_REDIS_URL=redis_url, CRM_DEBUG_RUNTIME="true")
        if gc_thresholds:
            env.update(CRM_GC_THRESHOLDS=gc_thresholds)
        command = [
            str(VENV_BIN / "crm-graphql"),
            "serve",
            "--port",
            "{port}",
            "--log-level",
            "warning",
        ]
        servers.append(spawn_pinned("soak", name, workdir, command, env, ROOT))
    for server in servers:
        wait_ready(server, "/readyz")
    return servers


def server_errors(servers: list[Server]) -> int:
    """Lines logged at ERROR (or worse) by the servers."""
    count = 0
    for server in servers:
        with contextlib.suppress(OSError):
            for line in server.log.read_text(errors="replace").splitlines():
                count += (
                    '"levelname": "ERROR"' in line
                    or '"level": "ERROR"' in line
                    or "Traceback" in line
                )
    return count


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = Options()
    parser.add_argument(
        "--minutes", type=float, default=default.minutes, help="length of the load (default 30)"
    )
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=None,
        help="not counted in the RSS figures (default 5, at most a fifth of the run)",
    )
    parser.add_argument("--subscribers", type=int, default=default.subscribers)
    parser.add_argument(
        "--reconnecting",
        type=int,
        default=default.reconnecting,
        help="subscribers that reconnect with their cursor",
    )
    parser.add_argument(
        "--reconnect-every", type=float, default=default.reconnect_every, help="seconds"
    )
    parser.add_argument(
        "--dashboards",
        type=int,
        default=default.dashboards,
        help="`dashboard` subscribers (0: none, and no status writes)",
    )
    parser.add_argument(
        "--dashboard-reconnecting",
        type=int,
        default=default.dashboard_reconnecting,
        help="of them, reconnecting every --reconnect-every s onto a new board",
    )
    parser.add_argument("--rate", type=float, default=default.rate, help="requests per second")
    parser.add_argument(
        "--interval", type=float, default=default.interval, help="seconds per report row"
    )
    parser.add_argument(
        "--sample", type=float, default=default.sample, help="seconds between samples"
    )
    parser.add_argument(
        "--users", type=int, default=default.users, help="a manager and users-1 agents"
    )
    parser.add_argument(
        "--server-url",
        default=default.server_url,
        help="PostgreSQL server (the database --database is created on it)",
    )
    parser.add_argument(
        "--database", default=default.database, help="generated afresh for each run"
    )
    parser.add_argument(
        "--scale", type=float, default=default.scale, help="of the data set (bench/datagen.py)"
    )
    parser.add_argument("--redis-url", default=default.redis_url)
    parser.add_argument("--out", type=Path, default=default.out)
    parser.add_argument("--keep-data", action="store_true", help="keep the database")
    parser.add_argument(
        "--gc-thresholds",
        default=None,
        help="the servers' CRM_GC_THRESHOLDS, e.g. 10000,10,10 (default: the servers' own)",
    )
    args = parser.parse_args(argv)
    return Options(**{k: getattr(args, k) for k in asdict(default)})


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    cores = os.sched_getaffinity(0)
    with contextlib.suppress(OSError, ValueError):  # the load belongs on the clients' core
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    try:
        return run_soak(options)
    finally:
        os.sched_setaffinity(0, cores)


def run_soak(options: Options) -> int:
    """The whole run: data, servers, load, report; the exit status."""
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "started_at": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "warmup_minutes": options.warmup / 60,
        "machine": machine_info(),
    }
    db_url = datagen.ensure_dataset(
        options.server_url, options.scale, SEED, force=True, say=say, name=options.database
    )
    facts = asyncio.run(load_facts(db_url, options.users))
    cursors = asyncio.run(head_cursors(db_url, facts.workspace))
    with tempfile.TemporaryDirectory(prefix="crm-soak-") as tmp:
        workdir = Path(tmp)
        servers = start_servers(db_url, workdir, options.redis_url, options.gc_thresholds)
        try:
            for user in facts.users:
                user.token = login(servers[0].base, user.email)
            soak = Soak(options, facts, servers)
            soak.cursors = cursors
            deliveries = uvloop.run(soak.run())
        finally:
            for server in servers:
                server.stop()
            keep = options.out / f"soak-{stamp}-logs"
            shutil.copytree(workdir, keep, ignore=shutil.ignore_patterns("crm-data-*"))
    if not options.keep_data:
        datagen.drop_dataset(options.server_url, options.scale, SEED, name=options.database)
    processes = []
    for p in range(2):
        figures = {**rss_figures(soak, p), **gc_figures(soak, p)}
        figures["objects_grown_by_end"] = census_growth(soak, p, "drained")
        figures["objects_grown_after_clients_left"] = census_growth(soak, p, "clients left")
        figures["rss_after_clients_left_mib"] = round(
            deliveries["rss_after_clients_left_kib"][p] / 1024, 1
        )
        processes.append(figures)
    load = result["machine"]["loadavg_at_start"][0]
    result.update(
        note=(
            f"Other work was running (load average {load:.2f} for 2 cores): latency and pause "
            "figures are pessimistic."
            if load > 0.5
            else "The machine was otherwise idle."
        ),
        processes=processes,
        intervals=interval_rows(soak),
        deliveries={
            k: v
            for k, v in deliveries.items()
            if k not in ("rss_after_clients_left_kib", "dashboards", "boards_after_clients_left")
        },
        dashboards=dashboard_figures(soak, deliveries),
        requests=sum(i.requests for i in soak.intervals),
        request_errors=sum(i.request_errors for i in soak.intervals),
        request_failures=soak.failures,
        subscribers=len(soak.subs),
        reconnecting=sum(s.reconnecting for s in soak.subs),
        reconnects=sum(i.reconnects for i in soak.intervals),
        unexpected_closes=sum(s.unexpected_closes for s in soak.subs),
        subscriber_errors=[s.last_error for s in soak.subs if s.last_error][:10],
        server_errors_logged=server_errors(servers),
        samples=soak.samples,
    )
    failed = []
    for name, proc in zip("AB", processes, strict=True):
        growth = proc["rss_growth_after_warmup_pct"]
        if growth is not None and growth > RSS_LIMIT_PCT:
            failed.append(
                f"RSS of {name} grew {growth} % after warm-up (limit {RSS_LIMIT_PCT:g} %)"
            )
        if proc.get("pause_ms_max", 0) > PAUSE_LIMIT_MS:
            failed.append(
                f"a GC pause of {name} took {proc['pause_ms_max']} ms (limit {PAUSE_LIMIT_MS:g})"
            )
    if deliveries["lost"] or deliveries["duplicates"]:
        failed.append(
            f"{deliveries['lost']} deliveries lost, {deliveries['duplicates']} duplicated"
        )
    dash = result["dashboards"]
    if dash.get("subscribers"):
        if dash["silent_subscribers"] or dash["sockets_without_answer"]:
            failed.append(
                f"{len(dash['silent_subscribers'])} dashboard subscribers got no message after "
                f"a change of their panel ({dash['changes_unanswered']} changes), "
                f"{dash['sockets_without_answer']} dashboard sockets no answer"
            )
        if dash["untouched_panel_messages_after_first"]:
            failed.append(
                f"the deals panel, which no write changes, was sent "
                f"{dash['untouched_panel_messages_after_first']} times after its first answer"
            )
        if dash["stale_at_end"]:
            failed.append(
                f"{len(dash['stale_at_end'])} dashboards differ from the query's answer "
                f"{SETTLE_WITHIN:g} s after the load"
            )
        if any(dash["boards_after_clients_left"]):
            failed.append(
                f"boards left once every client had left: {dash['boards_after_clients_left']}"
            )
    result["failed"] = failed
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / f"soak-{stamp}.json").write_text(json.dumps(result, indent=1, default=str))
    table = markdown(result)
    (options.out / f"soak-{stamp}.md").write_text(table)
    print(table)
    say(f"wrote {options.out / f'soak-{stamp}.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
