"""Live dashboards (docs/decisions/0018-live-dashboards.md): a subscription's reports and
aggregates, sent at once and again whenever the data under them changes, at most once
per ``interval``, computed once per *board* (distinct document, variables and
visibility) in this process, however many sockets watch it.

A board renders its whole selection once (the caller passes ``render``, which runs the
GraphQL operation and says which tables it read), keeps the bytes, and writes them to
every viewer's socket when they differ from what it sent before. Change notices come
from the unit of work (``services.changes``: the tables a committed transaction wrote,
published on the workspace's ``changes`` channel); a board re-renders only when a table
it read was written. Notices travel over Redis like event doorbells and can be lost,
so every board also re-renders every ``refresh`` seconds (``redis_down_refresh`` while
Redis is unreachable) and after Redis comes back, and sends only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crm_graphql.services.changes import affects

if TYPE_CHECKING:
    from crm_graphql.realtime.credentials import Credential
    from crm_graphql.realtime.hub import Sink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendering:
    """A board's selection executed once: the data message's payload, the tables it read
    (None: not known, any change may alter it), and whether the data could not be read
    right now (an outage: send nothing, try again shortly)."""

    payload: bytes
    tables: frozenset[str] | None
    retry: bool = False


Render = Callable[[], Awaitable[Rendering]]


@dataclass
class DashboardSettings:
    interval: float = 1.0  # at most one rendering per board in this many seconds
    refresh: float = 30.0  # re-render without a notice (a lost one costs this much)
    redis_down_refresh: float = 3.0  # the same while Redis is unreachable
    retry: float = 2.0  # after a rendering that could not read the data


@dataclass(eq=False)
class Viewer:
    """One subscription on one socket (``sink``), or one that renders by itself
    (``sink`` None: it is told ``changed`` and executes the selection itself)."""

    sink: Sink | None
    credential: Credential | None = None
    sent: int = 0  # the board version last written
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _draining: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        return self.credential is not None and self.credential.ended is not None

    def offer(self, board: Board) -> None:
        """Send the board's current payload, now or once the socket takes data again
        (only the newest is ever sent: a viewer that does not read skips versions)."""
        if self.ended or board.version <= self.sent:
            return
        if self.sink is None:
            self.sent = board.version
            self.changed.set()
            return
        if self._draining is not None or board.payload is None:
            return
        if self.sink.write((board.payload,)):
            self.sent = board.version
            board.dashboards.deliveries += 1
        elif not self.sink.closed:
            self._draining = asyncio.create_task(self._drain(board))

    async def _drain(self, board: Board) -> None:
        assert self.sink is not None
        await self.sink.drained()
        self._draining = None
        if not self.sink.closed:
            self.offer(board)

    def close(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None


class Board:
    """What one distinct (document, variables, visibility) shows, kept current."""

    def __init__(
        self, dashboards: Dashboards, workspace_id: uuid.UUID, key: Hashable, render: Render
    ) -> None:
        self.dashboards = dashboards
        self.workspace_id = workspace_id
        self.key = key
        self.render = render
        self.viewers: dict[Viewer, None] = {}
        self.payload: bytes | None = None
        self.version = 0  # bumped when the payload changes
        self.tables: frozenset[str] | None = None
        self.dirty = asyncio.Event()
        self.dirty.set()  # the first rendering starts at once
        self.task = asyncio.create_task(self._run(), name="dashboard board")

    def notice(self, written: Iterable[str]) -> None:
        if affects(self.tables, written):
            self.dirty.set()

    async def _run(self) -> None:
        settings = self.dashboards.settings
        last = -float("inf")
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.dashboards.refresh_after()):
                    await self.dirty.wait()
            pause = last + settings.interval - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # notices meanwhile make one rendering
            self.dirty.clear()
            last = time.monotonic()
            try:
                rendering = await self.render()
            except Exception:
                log.exception("rendering a live dashboard failed")
                rendering = Rendering(b"", None, retry=True)
            self.dashboards.renders += 1
            if rendering.retry:
                await asyncio.sleep(settings.retry)
                self.dirty.set()
                continue
            self.tables = rendering.tables
            if rendering.payload != self.payload:
                self.payload = rendering.payload
                self.version += 1
                for viewer in list(self.viewers):
                    viewer.offer(self)

    def join(self, viewer: Viewer) -> None:
        self.viewers[viewer] = None
        if self.payload is not None:
            viewer.offer(self)  # the current numbers now; the next as they change

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class Dashboards:
    """This process's boards, by key, and the change notices of their workspaces.
    ``watch(workspace_id, on)`` subscribes or unsubscribes the workspace's ``changes``
    channel (the hub's Redis connection); ``redis_up`` says whether notices arrive."""

    def __init__(
        self,
        watch: Callable[[uuid.UUID, bool], None],
        redis_up: Callable[[], bool],
        settings: DashboardSettings | None = None,
    ) -> None:
        self.settings = settings or DashboardSettings()
        self._watch = watch
        self._redis_up = redis_up
        self.boards: dict[Hashable, Board] = {}
        self._by_workspace: dict[uuid.UUID, dict[Board, None]] = {}
        self.renders = 0
        self.deliveries = 0

    def stats(self) -> dict[str, int]:
        return {
            "dashboards": len(self.boards),
            "dashboard_viewers": sum(len(b.viewers) for b in self.boards.values()),
            "dashboard_renders": self.renders,
            "dashboard_deliveries": self.deliveries,
        }

    def refresh_after(self) -> float:
        settings = self.settings
        return settings.refresh if self._redis_up() else settings.redis_down_refresh

    def changed(self, workspace_id: uuid.UUID, written: Iterable[str] | None) -> None:
        """A transaction of the workspace committed writes to these tables (None: to
        tables not known)."""
        tables = None if written is None else frozenset(written)
        for board in list(self._by_workspace.get(workspace_id, ())):
            if tables is None:
                board.dirty.set()
            else:
                board.notice(tables)

    def refresh_all(self) -> None:
        """Notices may have been lost (Redis reconnected): every board renders again."""
        for board in self.boards.values():
            board.dirty.set()

    @contextlib.asynccontextmanager
    async def _viewing(
        self, workspace_id: uuid.UUID, key: Hashable, render: Render, viewer: Viewer
    ) -> AsyncIterator[None]:
        board = self.boards.get(key)
        if board is None:
            board = self.boards[key] = Board(self, workspace_id, key, render)
            boards = self._by_workspace.setdefault(workspace_id, {})
            if not boards:
                self._watch(workspace_id, True)
            boards[board] = None
        board.join(viewer)
        try:
            yield
        finally:
            viewer.close()
            board.viewers.pop(viewer, None)
            if not board.viewers and self.boards.get(key) is board:
                del self.boards[key]
                boards = self._by_workspace.get(workspace_id, {})
                boards.pop(board, None)
                if not boards:
                    self._by_workspace.pop(workspace_id, None)
                    self._watch(workspace_id, False)
                await board.close()

    async def push(
        self,
        workspace_id: uuid.UUID,
        key: Hashable,
        render: Render,
        sink: Sink,
        credential: Credential | None = None,
    ) -> None:
        """Write the board's payload to ``sink`` now (if rendered) and whenever it
        changes, until cancelled (the operation stopped or its socket closed)."""
        async with self._viewing(workspace_id, key, render, Viewer(sink, credential)):
            await asyncio.Future()  # until cancelled

    async def follow(
        self,
        workspace_id: uuid.UUID,
        key: Hashable,
        render: Render,
        credential: Credential | None = None,
    ) -> AsyncIterator[None]:
        """Yield once now and whenever the board's payload changes (for a subscriber
        that executes the selection itself)."""
        viewer = Viewer(None, credential)
        async with self._viewing(workspace_id, key, render, viewer):
            while not viewer.ended:
                await viewer.changed.wait()
                viewer.changed.clear()
                yield

    async def close(self) -> None:
        for board in list(self.boards.values()):
            await board.close()
        self.boards.clear()
        self._by_workspace.clear()
