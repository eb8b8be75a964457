"""Runtime figures of this process for soak runs (``make soak``): resident memory,
garbage-collection pauses, event-loop stalls and the sizes of the real-time state.

Off unless ``CRM_DEBUG_RUNTIME=true``: then ``GET /debug/runtime`` answers them as JSON to
clients on the loopback interface (anyone else gets 404). It shows how busy the process
is and how many sockets it serves: not for a port the public can reach.

Pauses are timed with ``gc.callbacks`` (from a collection's start to its stop, in every
generation); stalls by a task that sleeps ``LAG_TICK`` and measures how late it wakes up.
Both keep running totals (so a poller computes what happened between two polls) and the
most recent long ones with their time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import os
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

LAG_TICK = 0.05  # seconds between the loop monitor's wake-ups
KEPT = 256  # recent long pauses and stalls kept
LONG_PAUSE_MS = 5.0  # pauses at least this long are kept with their time
LONG_LAG_MS = 50.0  # stalls at least this long are kept with their time
THRESHOLDS_MS = (100.0, 200.0)  # pauses over these are counted apart
CENSUS_TYPES = 60  # types listed by a census


class GcPauses:
    """Every collection of this process, timed by ``gc.callbacks``: the pause as the
    process's clients see it (wall clock) and the CPU time it took (apart from the pause
    when the machine is busy and the process waits for a core)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]  # per generation
        self.collected = 0  # unreachable objects freed (garbage in reference cycles)
        self.total_ms = 0.0
        self.max_ms = 0.0
        self.max_cpu_ms = 0.0
        self.over = dict.fromkeys(THRESHOLDS_MS, 0)
        # (unix s, generation, pause ms, CPU ms)
        self.recent: deque[tuple[float, int, float, float]] = deque(maxlen=KEPT)
        self._started: tuple[float, float] | None = None
        # ``walked``: the objects the next collection of a generation walks (that
        # generation and the younger ones), described at its start.
        self.young_wanted: asyncio.Future[dict[str, Any]] | None = None
        self._young: dict[str, Any] | None = None
        self._young_thread = 0
        self._young_generation = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            wanted = self.young_wanted
            if (
                wanted is not None
                and int(info.get("generation", 2)) == self._young_generation
                and not wanted.done()
                and threading.get_ident() == self._young_thread  # the loop's: its future
            ):
                walked = [
                    obj for g in range(self._young_generation + 1) for obj in gc.get_objects(g)
                ]
                self._young = _describe(walked)
            self._started = (time.perf_counter(), time.thread_time())
            return
        if self._started is None:
            return
        ms = (time.perf_counter() - self._started[0]) * 1000
        cpu_ms = (time.thread_time() - self._started[1]) * 1000
        self._started = None
        generation = int(info.get("generation", 2))
        self.collections[generation] += 1
        self.collected += int(info.get("collected", 0))
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        self.max_cpu_ms = max(self.max_cpu_ms, cpu_ms)
        for threshold in THRESHOLDS_MS:
            if ms > threshold:
                self.over[threshold] += 1
        if ms >= LONG_PAUSE_MS:
            self.recent.append((time.time(), generation, round(ms, 2), round(cpu_ms, 2)))
        if self._young is not None and self.young_wanted is not None:
            described, self._young = self._young, None
            if not self.young_wanted.done():
                described.update(pause_ms=round(ms, 2), cpu_ms=round(cpu_ms, 2))
                described["collected"] = int(info.get("collected", 0))
                self.young_wanted.set_result(described)

    async def young(self, seconds: float, generation: int = 0) -> dict[str, Any] | None:
        """What the next collection of ``generation`` (0: young, 1: middle) within
        ``seconds`` walks (None if none came), at its start: the objects of that
        generation and the younger ones, by type, how many references they hold, the most
        referring ones, and that collection's pause. Describing takes a moment of its
        own, before the pause is timed."""
        self._young_generation = generation
        self._young_thread = threading.get_ident()
        self.young_wanted = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(self.young_wanted), seconds)
        except TimeoutError:
            return None
        finally:
            self.young_wanted = None
            self._young = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "collected": self.collected,
            "pause_ms_total": round(self.total_ms, 2),
            "pause_ms_max": round(self.max_ms, 2),
            "pause_cpu_ms_max": round(self.max_cpu_ms, 2),
            **{f"over_{t:g}ms": n for t, n in self.over.items()},
            "recent": list(self.recent),
            "thresholds": list(gc.get_threshold()),
            "frozen": gc.get_freeze_count(),
        }


class LoopLag:
    """How late a task that sleeps ``LAG_TICK`` wakes up: the loop's longest stalls."""

    def __init__(self) -> None:
        self.max_ms = 0.0
        self.recent: deque[tuple[float, float]] = deque(maxlen=KEPT)  # (unix s, ms)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._watch(), name="diagnostics: loop lag")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_TICK)
            ms = (loop.time() - before - LAG_TICK) * 1000
            self.max_ms = max(self.max_ms, ms)
            if ms >= LONG_LAG_MS:
                self.recent.append((time.time(), round(ms, 2)))

    def snapshot(self) -> dict[str, Any]:
        return {"lag_ms_max": round(self.max_ms, 2), "recent": list(self.recent)}


class Diagnostics:
    """The figures one app serves at ``/debug/runtime`` while its lifespan runs."""

    def __init__(self) -> None:
        self.gc = GcPauses()
        self.loop = LoopLag()
        self.started = time.time()

    async def start(self) -> None:
        gc.callbacks.append(self.gc)
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self.gc)


def rss_kib() -> int:
    """This process's resident memory, KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def realtime_state(app: Any) -> dict[str, int]:
    """Sizes of what the real-time path keeps per stream, group, socket and listener."""
    from crm_graphql.realtime import ws

    hub = app.hub
    streams = list(hub.streams.values())
    groups = [g for s in streams for g in s.groups.values()]
    fanout = app.ephemeral.fanout
    return {
        **hub.stats(),
        "stream_subscribers": sum(len(s.subscribers) for s in streams),
        "window_events": sum(len(s.window) for s in streams),
        "rendered_kept": sum(len(g.rendered) for g in groups),
        "open_sockets": len(ws.OPEN_SOCKETS),
        "ephemeral_channels": len(fanout.channels),
        "ephemeral_listeners": sum(len(c.listeners) for c in fanout.channels.values()),
        "presence_connections": len(app.ephemeral.presence.connections),
        "asyncio_tasks": len(asyncio.all_tasks()),
    }


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _type_name(cls: type) -> str:
    """``module.QualName`` of a class. A class may shadow ``__module__`` or
    ``__qualname__`` with a property of its instances (seen in the test suite: the
    attribute read on the class is then the property object, not a string)."""
    module = vars(cls).get("__module__", getattr(cls, "__module__", None))
    name = getattr(cls, "__qualname__", None)
    module = module if isinstance(module, str) else "?"
    name = name if isinstance(name, str) else getattr(cls, "__name__", "?")
    return f"{module}.{name}"


def _describe(objects: list[Any]) -> dict[str, Any]:
    """Objects by type, with the references each type's objects hold, and the few
    objects holding the most (a container met by a collection is walked in full)."""
    counts: Counter[str] = Counter()
    references: Counter[str] = Counter()
    largest: list[tuple[int, str]] = []
    for obj in objects:
        name = _type_name(type(obj))
        held = len(gc.get_referents(obj))
        counts[name] += 1
        references[name] += held
        if held >= 1000:
            largest.append((held, name))
    largest.sort(reverse=True)
    return {
        "objects": len(objects),
        "references": sum(references.values()),
        "by_type": dict(counts.most_common(CENSUS_TYPES)),
        "references_by_type": dict(references.most_common(CENSUS_TYPES)),
        "largest": largest[:20],
    }


def census(*, collect: bool) -> dict[str, Any]:
    """Objects the collector tracks (containers: what leaks), by type, the most numerous
    first; after a full collection with ``collect`` (a pause of its own: ask only when
    no load is being measured)."""
    if collect:
        gc.collect()
    counts = Counter(_type_name(type(o)) for o in gc.get_objects())
    return {"objects": sum(counts.values()), "by_type": dict(counts.most_common(CENSUS_TYPES))}


GARBAGE_WINDOW_MAX_S = 30.0
YOUNG_WAIT_MAX_S = 300.0


async def garbage(seconds: float) -> dict[str, Any]:
    """What the process leaves to the collector (objects in reference cycles, which only a
    collection frees, and whose number a young collection's pause follows) over the next
    ``seconds``, by type: the collector saves instead of freeing (``DEBUG_SAVEALL``) while
    the load runs on, then one collection counts them. The saved garbage lives until then:
    for short windows of a soak run, never in production."""
    gc.collect()
    gc.garbage.clear()
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        await asyncio.sleep(seconds)
        gc.collect()
        counts = Counter(_type_name(type(o)) for o in gc.garbage)
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()
    total = sum(counts.values())
    return {
        "seconds": seconds,
        "objects": total,
        "per_second": round(total / seconds, 1) if seconds else None,
        "by_type": dict(counts.most_common(CENSUS_TYPES)),
    }


async def runtime(request: Request) -> Response:
    """``GET /debug/runtime`` (with ``CRM_DEBUG_RUNTIME=true``, loopback clients only);
    ``?census=1`` adds the objects alive by type (``&collect=1``: after a collection);
    ``?garbage=S`` the cyclic garbage left over the next S seconds, by type;
    ``?young=S`` the young generation met by the next young collection within S
    seconds, by type and references held, with that collection's pause; ``?middle=S``
    the same for the next collection of the middle generation (it walks both)."""
    diagnostics: Diagnostics | None = getattr(request.app.state, "diagnostics", None)
    if diagnostics is None or not _loopback(request):
        return JSONResponse({"error": "not found"}, 404)
    figures: dict[str, Any] = {
        "pid": os.getpid(),
        "at": time.time(),
        "uptime_s": round(time.time() - diagnostics.started, 1),
        "rss_kib": rss_kib(),
        "gc": diagnostics.gc.snapshot(),
        "loop": diagnostics.loop.snapshot(),
        "realtime": realtime_state(request.app.state.crm),
    }
    if request.query_params.get("census"):
        figures["census"] = census(collect=bool(request.query_params.get("collect")))
    if request.query_params.get("garbage"):
        try:
            seconds = float(request.query_params["garbage"])
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= GARBAGE_WINDOW_MAX_S:
            return JSONResponse(
                {"error": f"garbage: seconds in (0, {GARBAGE_WINDOW_MAX_S:g}]"}, 400
            )
        figures["garbage"] = await garbage(seconds)
    for name, generation in (("young", 0), ("middle", 1)):
        if not request.query_params.get(name):
            continue
        try:
            seconds = float(request.query_params[name])
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= YOUNG_WAIT_MAX_S:
            return JSONResponse({"error": f"{name}: seconds in (0, {YOUNG_WAIT_MAX_S:g}]"}, 400)
        figures[name] = await diagnostics.gc.young(seconds, generation)
    return JSONResponse(figures)
