"""Many graphql-transport-ws subscribers in one asyncio process (the RT1/RT2 receivers and
the idle-connection memory probe). Driven by bench/run.py over stdin/stdout:

    python -m bench.ws_clients CONFIG.json
      -> prints "READY <subscribed> <failed>" once every socket is subscribed
    stdin "report SENT.json OUT.json": delivery figures for the events listed in SENT.json
      (written by the runner: [{"n": event number, "ts": send time ns, "group": g}, ...]),
      then forget what was received so far; prints "REPORTED".
    stdin "count": prints "COUNT <deliveries received so far>" (to wait for a drain).
    stdin "quit": close the sockets and exit.

CONFIG: {"subscriptions": [{"url", "token", "query", "variables", "groups": [g, ...]}]}. A
subscriber expects every sent event whose group is in its ``groups`` (a conversation
index for RT1, 0 for the activity feed). An event's text carries ``bench:<n>:<ts>``, so
latency is receipt time minus send time on the same clock, a number seen twice by one
subscriber is a duplicate, and an expected number never seen is lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

MARK = re.compile(rb"bench:(\d+):(\d+)")


@dataclass
class Subscriber:
    spec: dict[str, Any]
    received: dict[int, int] = field(default_factory=dict)  # event number -> times seen
    latencies_ns: list[tuple[int, int]] = field(default_factory=list)  # (number, ns)
    receipts_ns: list[tuple[int, int]] = field(default_factory=list)  # (number, time ns)
    closed: str | None = None


async def run_subscriber(sub: Subscriber, ready: asyncio.Event, failed: list[str]) -> None:
    spec = sub.spec
    try:
        async with connect(
            spec["url"],
            subprotocols=["graphql-transport-ws"],
            compression=None,  # type: ignore[list-item]
            max_queue=None,
            open_timeout=60,
            ping_interval=None,
        ) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "connection_init",
                        "payload": {"Authorization": f"Bearer {spec['token']}"},
                    }
                )
            )
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no ack: {ack}")
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {
                            "query": spec["query"],
                            "variables": spec.get("variables") or {},
                        },
                    }
                )
            )
            ready.set()
            await receive(sub, ws)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        sub.closed = repr(error)[:200]
        if not ready.is_set():
            failed.append(sub.closed)
            ready.set()


async def receive(sub: Subscriber, ws: ClientConnection) -> None:
    async for raw in ws:
        now = time.time_ns()
        data = raw if isinstance(raw, bytes) else raw.encode()
        if b'"next"' in data[:40] or b'"type":"next"' in data:
            found = MARK.search(data)
            if found is None:
                continue
            n = int(found.group(1))
            sub.received[n] = sub.received.get(n, 0) + 1
            sub.latencies_ns.append((n, now - int(found.group(2))))
            sub.receipts_ns.append((n, now))
        elif b'"ping"' in data:
            await ws.send('{"type":"pong"}')
        elif b'"error"' in data or b'"complete"' in data:
            sub.closed = data[:200].decode(errors="replace")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in ms rounded to 0.01."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 2)


def report(
    subs: list[Subscriber], sent: list[dict[str, Any]], cpu_s: float, wall_s: float
) -> dict[str, Any]:
    by_group: dict[int, list[int]] = {}
    for event in sent:
        by_group.setdefault(int(event["group"]), []).append(int(event["n"]))
    sent_numbers = {int(e["n"]) for e in sent}
    expected = lost = duplicates = delivered = 0
    latencies: list[float] = []
    last_receipt_ns = 0
    closed = 0
    for sub in subs:
        want = {n for g in sub.spec.get("groups", []) for n in by_group.get(int(g), [])}
        expected += len(want)
        got = {n: c for n, c in sub.received.items() if n in sent_numbers}
        delivered += sum(got.values())
        lost += len(want - got.keys())
        duplicates += sum(c - 1 for c in got.values() if c > 1)
        latencies.extend(ns / 1e6 for n, ns in sub.latencies_ns if n in sent_numbers)
        last_receipt_ns = max(
            [last_receipt_ns, *(at for n, at in sub.receipts_ns if n in sent_numbers)]
        )
        closed += sub.closed is not None
        sub.received.clear()
        sub.latencies_ns.clear()
        sub.receipts_ns.clear()
    return {
        "subscribers": len(subs),
        "closed_subscribers": closed,
        "events_sent": len(sent),
        "deliveries_expected": expected,
        "deliveries": delivered,
        "lost": lost,
        "duplicates": duplicates,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": round(max(latencies), 2) if latencies else None,
        },
        "client_cpu_percent": round(100 * cpu_s / wall_s, 1) if wall_s > 0 else None,
        "last_receipt_ns": last_receipt_ns or None,
    }


def read_json(path: str) -> Any:
    return orjson.loads(Path(path).read_bytes())  # small files: no need to leave the loop


def write_json(path: str, value: Any) -> None:
    Path(path).write_bytes(orjson.dumps(value))


async def main(config_path: str) -> None:
    config = read_json(config_path)
    subs = [Subscriber(spec) for spec in config["subscriptions"]]
    failed: list[str] = []
    tasks = []
    limit = asyncio.Semaphore(50)  # open sockets 50 at a time

    async def start(sub: Subscriber) -> None:
        ready = asyncio.Event()
        async with limit:
            tasks.append(asyncio.create_task(run_subscriber(sub, ready, failed)))
            await ready.wait()

    await asyncio.gather(*(start(s) for s in subs))
    print(f"READY {len(subs) - len(failed)} {len(failed)}", flush=True)
    if failed:
        print(f"FAILED {failed[0]}", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    cpu0, wall0 = sum(os.times()[:2]), time.monotonic()
    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "quit":
            break
        if line[0] == "report":
            sent = read_json(line[1])
            cpu1, wall1 = sum(os.times()[:2]), time.monotonic()
            result = report(subs, sent, cpu1 - cpu0, wall1 - wall0)
            cpu0, wall0 = cpu1, wall1
            write_json(line[2], result)
            print("REPORTED", flush=True)
        elif line[0] == "count":
            print(f"COUNT {sum(sum(sub.received.values()) for sub in subs)}", flush=True)
        elif line[0] == "reset":
            for sub in subs:
                sub.received.clear()
                sub.latencies_ns.clear()
                sub.receipts_ns.clear()
            cpu0, wall0 = sum(os.times()[:2]), time.monotonic()
            print("RESET", flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1]))
