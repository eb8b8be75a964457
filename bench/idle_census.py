"""Where an idle subscribed socket's memory goes, for ours and the raw floor.

    python -m bench.idle_census [--sockets 300] [--servers ours,raw] [--scale 1]

Starts each server as IDLE does (bench/run.py: the same command, settings and clients,
one process, one warm subscriber first), but inside a wrapper that traces allocations
(``tracemalloc``, 30 frames, from the first SIGUSR1 on) and, on SIGUSR1, collects garbage
and takes a snapshot and a census of the objects alive by type (``gc.get_objects``). Snapshot, open N more idle
``activityFeed`` subscriptions, snapshot again: the wrapper writes the difference per
socket grouped by traceback (the frames from the innermost up to the first outside the
standard library's asyncio, shown), by file and line, and the objects per socket by type.
The report goes to stdout (and the JSON beside it with ``--out``). Tracing makes the
process slower and its RSS larger: read KiB per socket from IDLE, the shares from here.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

FRAMES = 30


# ------------------------------------------------------------------ inside the server


class _Probe:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.first: tuple[tracemalloc.Snapshot, collections.Counter[str]] | None = None
        self.garbage: collections.Counter[str] = collections.Counter()

    @staticmethod
    def census() -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for obj in gc.get_objects():
            kind = type(obj)
            counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
        return counts

    @staticmethod
    def tasks() -> collections.Counter[str]:
        """The tasks alive, by the chain of coroutines each is waiting in."""
        counts: collections.Counter[str] = collections.Counter()
        for task in asyncio.all_tasks(asyncio.get_event_loop()):
            frames = [f"{f.f_code.co_qualname}:{f.f_lineno}" for f in task.get_stack(limit=30)]
            counts[" > ".join(frames) or repr(task.get_coro())] += 1
        return counts

    def take(self) -> tuple[tracemalloc.Snapshot, collections.Counter[str]]:
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds, by type, then freed
        gc.collect()
        garbage = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
        )
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
        self.garbage = garbage
        counted = self.census()  # before the snapshot, whose traces are objects too
        counted.update({f"task {k}": v for k, v in self.tasks().items()})
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        return snapshot, counted

    def handle(self, signum: int, frame: Any) -> None:
        if self.first is None:
            # Traced from here: only what the sockets opened next allocate (tracing the
            # start-up, the schema's build, would take minutes).
            tracemalloc.start(FRAMES)
            self.first = self.take()
            Path(str(self.out) + ".first").write_text("ok")
            return
        before, counted_before = self.first
        after, counted_after = self.take()
        self.first = None
        result = {
            "garbage": dict(self.garbage.most_common(60)),
            "garbage_objects": sum(self.garbage.values()),
            "by_traceback": [
                {
                    "size": stat.size_diff,
                    "count": stat.count_diff,
                    "frames": [f"{f.filename}:{f.lineno}" for f in stat.traceback],
                }
                for stat in after.compare_to(before, "traceback")[:4000]
                if stat.size_diff > 0
            ],
            "by_line": [
                {
                    "size": stat.size_diff,
                    "count": stat.count_diff,
                    "at": f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}",
                }
                for stat in after.compare_to(before, "lineno")[:400]
                if stat.size_diff > 0
            ],
            "objects": {
                name: counted_after[name] - counted_before.get(name, 0)
                for name in counted_after
                if counted_after[name] - counted_before.get(name, 0) > 0
            },
            "total": sum(s.size_diff for s in after.compare_to(before, "filename")),
        }
        tracemalloc.stop()
        self.out.write_text(json.dumps(result))


def serve(kind: str, out: Path, argv: list[str]) -> None:
    """Run a server (``ours``: ``crm-graphql`` with ``argv``; ``raw``: uvicorn with it)
    with the probe installed."""
    probe = _Probe(out)
    signal.signal(signal.SIGUSR1, probe.handle)
    if kind == "ours":
        from crm_graphql.cli import main

        sys.exit(main(argv))
    import uvicorn.main

    sys.argv = ["uvicorn", *argv]
    uvicorn.main.main()


# ---------------------------------------------------------------------- the driver


def _signal(pid: int, out: Path, first: bool) -> None:
    marker = Path(str(out) + ".first")
    target = marker if first else out
    target.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 600
    while not target.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not take its snapshot")
        time.sleep(0.2)
    time.sleep(0.5)


def _short(frame: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/wt-idlemem/", "/main/"):
        if marker in frame:
            return frame.split(marker, 1)[1]
    return frame


_PLUMBING = (
    "asyncio/",
    "contextlib.py",
    "json/",
    "_weakrefset.py",
    "dataclasses.py",
    "<string>",
    "typing.py",
    "functools.py",
    "<frozen",
    "linecache.py",
    "enum.py",
    "weakref.py",
    "uuid.py",
    "copy.py",
    "abc.py",
    "collections/",
)


def _owner(frames: list[str]) -> str:
    """The innermost frame of a traceback (oldest first) outside the standard library's
    plumbing: who asked for the memory."""
    for frame in reversed(frames):
        short = _short(frame)
        if not short.startswith(_PLUMBING):
            return short
    return _short(frames[-1])


def _report(name: str, data: dict[str, Any], sockets: int, top: int) -> str:
    lines = [f"## {name}: {data['total'] / sockets / 1024:.1f} KiB traced per socket"]
    lines.append("")
    lines.append("By line (innermost frame), bytes per socket:")
    for row in data["by_line"][:top]:
        lines.append(
            f"  {row['size'] / sockets:8.0f} B {row['count'] / sockets:6.1f} blocks  {_short(row['at'])}"
        )
    lines.append("")
    owners: collections.Counter[str] = collections.Counter()
    for row in data["by_traceback"]:
        owners[_owner(row["frames"])] += row["size"]
    lines.append("")
    lines.append(
        "By owner (innermost frame outside asyncio, contextlib, json...), bytes per socket:"
    )
    for at, size in owners.most_common(top):
        lines.append(f"  {size / sockets:8.0f} B  {at}")
    lines.append("")
    lines.append("Objects per socket (gc-tracked, net):")
    objects = sorted(
        ((k, v) for k, v in data["objects"].items() if not k.startswith("task ")),
        key=lambda kv: -kv[1],
    )
    for kind, count in objects[:top]:
        lines.append(f"  {count / sockets:7.2f}  {kind}")
    lines.append("")
    lines.append(
        f"Garbage in reference cycles when measured (freed by the census' collection): "
        f"{data['garbage_objects'] / sockets:.1f} objects per socket; by type:"
    )
    for kind, count in list(data["garbage"].items())[:top]:
        lines.append(f"  {count / sockets:7.2f}  {kind}")
    lines.append("")
    lines.append("Tasks per socket, by the coroutines they wait in (outermost first):")
    tasks = sorted(
        ((k, v) for k, v in data["objects"].items() if k.startswith("task ")),
        key=lambda kv: -kv[1],
    )
    for chain, count in tasks[:top]:
        lines.append(f"  {count / sockets:5.2f}  {chain[5:]}")
    return "\n".join(lines)


def drive(args: argparse.Namespace) -> None:
    import tempfile

    from bench import datagen
    from bench import run as bench

    bench.Services.redis_url = args.redis_url
    db_url = datagen.database_url(args.server_url, datagen.database_name(args.scale, args.seed))
    facts = asyncio.run(bench.load_facts(db_url))
    bench.raise_open_files(args.sockets + 1024, "census")
    reports = []
    with tempfile.TemporaryDirectory(prefix="crm-census-") as tmp:
        workdir = Path(args.keep or tmp)
        for name in args.servers.split(","):
            out = workdir / f"census-{name}.json"
            me = [
                sys.executable,
                "-m",
                "bench.idle_census",
                "--serve",
                name,
                "--to",
                str(out),
                "--",
            ]
            if name == "ours":
                env = bench.ours_env(db_url, workdir / "crm-data")
                command = [*me, "serve", "--port", "{port}", "--log-level", "warning"]
            else:
                env = dict(
                    os.environ,
                    BENCH_DATABASE_URL=db_url,
                    BENCH_REDIS_URL=bench.Services.redis_url,
                    BENCH_WORKSPACE_ID=str(facts.workspace),
                    BENCH_AUTHOR_ID=str(facts.admin),
                )
                command = [*me, "bench.raw_floor:app", "--port", "{port}", "--log-level", "warning"]
                command += ["--no-access-log", "--ws", "websockets-sansio"]
            server = bench.spawn_pinned(name, "census", workdir, command, env, bench.ROOT)
            clients = warm = None
            try:
                bench.wait_ready(server, "/readyz")
                token = bench.login(server.base, facts.admin_email) if name == "ours" else "-"
                spec = {
                    "url": f"ws://127.0.0.1:{server.port}/graphql",
                    "token": token,
                    "query": bench.document("rt2_activity_feed"),
                    "variables": {},
                    "groups": [0],
                }
                warm = bench.Clients(workdir, f"census-warm-{name}", [spec])
                warm.ready()
                time.sleep(1)
                rss_before = bench.rss_kib(server.proc.pid)
                _signal(server.proc.pid, out, first=True)
                clients = bench.Clients(workdir, f"census-{name}", [spec] * args.sockets, 1)
                opened, failed = clients.ready()
                time.sleep(2)
                rss_after = bench.rss_kib(server.proc.pid)
                _signal(server.proc.pid, out, first=False)
                rss_collected = bench.rss_kib(server.proc.pid)
                data = json.loads(out.read_text())
                data["rss_kib_per_socket"] = (rss_after - rss_before) / max(1, opened)
                data["rss_kib_per_socket_collected"] = (rss_collected - rss_before) / max(1, opened)
                data["sockets"] = opened
                data["loadavg"] = os.getloadavg()
                text = _report(name, data, max(1, opened), args.top)
                text += (
                    f"\n(RSS with tracing: {data['rss_kib_per_socket']:.1f} KiB per socket, "
                    f"{data['rss_kib_per_socket_collected']:.1f} after the collection; "
                    f"{opened} opened, {failed} failed; load {os.getloadavg()[0]:.1f})"
                )
                print(text, flush=True)
                if "Traceback" in server.log.read_text(errors="replace"):
                    print(f"(the server logged errors: {server.log})", flush=True)
                reports.append({"server": name, **data})
            finally:
                for c in (clients, warm):
                    if c is not None:
                        c.close()
                server.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(reports))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=("ours", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--to", help=argparse.SUPPRESS)
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--servers", default="ours,raw")
    parser.add_argument("--scale", type=float, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--out")
    parser.add_argument("--keep", help="a folder for the servers' and clients' logs")
    argv = sys.argv[1:] if argv is None else argv
    rest: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, Path(args.to), rest)
    else:
        drive(args)


if __name__ == "__main__":
    main()
