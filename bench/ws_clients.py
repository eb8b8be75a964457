"""Many graphql-transport-ws subscribers in one asyncio process (the RT1/RT2 receivers and
the idle-connection memory probe). Driven by bench/run.py over stdin/stdout (the runner
may spread subscribers over several such processes and merge their reports, ``merge``):

    python -m bench.ws_clients CONFIG.json
      -> prints "READY <subscribed> <failed>" once every socket is subscribed
    stdin "report SENT.json OUT.json": delivery figures for the events listed in SENT.json
      (written by the runner: [{"n": event number, "ts": send time ns, "group": g}, ...]),
      then forget what was received so far; prints "REPORTED".
    stdin "count": prints "COUNT <deliveries received so far>" (to wait for a drain).
    stdin "reset": forget what was received so far; prints "RESET".
    stdin "quit": close the sockets and exit.

CONFIG: {"subscriptions": [{"url", "token", "query", "variables", "groups": [g, ...]}]}. A
subscriber expects every sent event whose group is in its ``groups`` (a conversation
index for RT1, 0 for the activity feed; none for a quiet socket). An event's text carries
``bench:<n>:<ts>``, so latency is receipt time minus send time on the same clock, a number
seen twice by one subscriber is a duplicate, and an expected number never seen is lost.

The sockets are plain asyncio protocols with their own RFC 6455 framing (client frames
masked, server frames read as they come): the ``websockets`` library cost about 30 us of
CPU per message received, which capped one process near 20,000 deliveries a second on
this machine, below what RT2 needs to find the raw floor's capacity. Per message this
keeps a count in the subscriber's byte array (index: event number minus the process's
base) and one ``(event number, receipt time)`` pair; receipt time is taken once per chunk
read from the socket.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
import time
from array import array
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

MARK = re.compile(rb"bench:(\d+):")
LATENCY_UNIT_NS = 10_000  # latency histogram buckets: 0.01 ms


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 5.3), FIN set."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    if not n:
        return head + key
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return head + key + (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")


class Tally:
    """What one process received since the last report: per subscriber a count per event
    number (a byte array from ``base``), and every delivery's (number, receipt ns)."""

    def __init__(self) -> None:
        self.base: int | None = None
        self.numbers = array("q")
        self.receipts = array("q")

    def position(self, n: int, subs: list[Subscriber]) -> int:
        if self.base is None:
            self.base = n
        elif n < self.base:  # events arrive out of order: make room in front, with margin
            shift = self.base - n + 1024
            for sub in subs:
                if sub.counts:
                    sub.counts[0:0] = bytes(shift)
            self.base -= shift
        return n - self.base

    def clear(self, subs: list[Subscriber]) -> None:
        self.base = None
        self.numbers = array("q")
        self.receipts = array("q")
        for sub in subs:
            sub.counts = bytearray()


class Subscriber(asyncio.Protocol):
    def __init__(self, spec: dict[str, Any], tally: Tally, everyone: list[Subscriber]) -> None:
        self.spec = spec
        self.tally = tally
        self.everyone = everyone
        self.counts = bytearray()  # times each event number was seen, from tally.base
        self.closed: str | None = None
        self.transport: Any = None
        self.buffer = b""
        self.upgraded = False
        self.acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------ connection

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        url = urlsplit(self.spec["url"])
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is None:
            self.closed = f"connection lost: {exc!r}"[:200]
        if not self.acked.done():
            self.acked.set_exception(RuntimeError(self.closed))

    def send(self, message: dict[str, Any]) -> None:
        self.transport.write(client_frame(orjson.dumps(message)))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 101 " not in status:
                self.closed = status.decode(errors="replace")[:200]
                self.transport.close()
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
            self.send(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {self.spec['token']}"}}
            )
        at, size = 0, len(buffer)
        while size - at >= 2:
            opcode, length = buffer[at] & 0x0F, buffer[at + 1] & 0x7F
            start = at + 2
            if length == 126:
                if size - at < 4:
                    break
                length, start = int.from_bytes(buffer[at + 2 : at + 4], "big"), at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length, start = int.from_bytes(buffer[at + 2 : at + 10], "big"), at + 10
            end = start + length
            if end > size:
                break
            at = end
            if opcode == 0x1:
                found = MARK.search(buffer, start, end)
                if found is not None and b'"next"' in buffer[start : min(end, start + 40)]:
                    n = int(found.group(1))
                    tally = self.tally
                    position = tally.position(n, self.everyone)
                    counts = self.counts
                    if position >= len(counts):
                        counts.extend(bytes(max(position + 1 - len(counts), len(counts), 64)))
                    if counts[position] < 255:
                        counts[position] += 1
                    tally.numbers.append(n)
                    tally.receipts.append(now)
                else:
                    self.control(buffer[start:end])
            elif opcode == 0x9:  # ping frame
                self.transport.write(client_frame(buffer[start:end], 0xA))
            elif opcode == 0x8:
                self.closed = f"closed by the server: {buffer[start:end][2:]!r}"[:200]
                self.transport.close()
                return
        self.buffer = buffer[at:] if at < size else b""

    def control(self, payload: bytes) -> None:
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind == "connection_ack" and not self.acked.done():
            spec = self.spec
            self.send(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": spec["query"], "variables": spec.get("variables") or {}},
                }
            )
            self.acked.set_result(None)
        elif kind == "ping":
            self.send({"type": "pong"})
        elif kind in ("error", "complete"):
            self.closed = payload[:200].decode(errors="replace")


def percentile_from(histogram: dict[int, int], total: int, q: float) -> float | None:
    """Nearest-rank percentile of a histogram of 0.01 ms buckets, in ms."""
    if not total:
        return None
    rank = min(total, max(1, round(q / 100 * total + 0.5)))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return round(bucket * LATENCY_UNIT_NS / 1e6, 2)
    return None


def report(
    subs: list[Subscriber], tally: Tally, sent: list[dict[str, Any]], cpu_s: float, wall_s: float
) -> dict[str, Any]:
    """This process's share; ``merge`` adds the shares up and takes the percentiles."""
    sent_ts = {int(e["n"]): int(e["ts"]) for e in sent}
    by_group: dict[int, list[int]] = {}
    for event in sent:
        by_group.setdefault(int(event["group"]), []).append(int(event["n"]))
    histogram: dict[int, int] = {}
    delivered = 0
    worst = 0
    last_receipt_ns = 0
    for n, at in zip(tally.numbers, tally.receipts, strict=True):
        ts = sent_ts.get(n)
        if ts is None:
            continue
        delivered += 1
        latency = at - ts
        bucket = latency // LATENCY_UNIT_NS
        histogram[bucket] = histogram.get(bucket, 0) + 1
        worst = max(worst, latency)
        last_receipt_ns = max(last_receipt_ns, at)
    base = tally.base or 0
    wanted: dict[tuple[int, ...], list[int]] = {}
    sent_positions = [n - base for n in sent_ts]
    expected = lost = duplicates = closed = 0
    for sub in subs:
        groups = tuple(sorted({int(g) for g in sub.spec.get("groups", [])}))
        if groups not in wanted:
            wanted[groups] = [n - base for g in groups for n in by_group.get(g, [])]
        want = wanted[groups]
        counts, size = sub.counts, len(sub.counts)
        expected += len(want)
        lost += sum(1 for p in want if p < 0 or p >= size or not counts[p])
        if size and max(counts) > 1:
            duplicates += sum(counts[p] - 1 for p in sent_positions if 0 <= p < size and counts[p] > 1)
        closed += sub.closed is not None
    tally.clear(subs)
    return {
        "subscribers": len(subs),
        "closed_subscribers": closed,
        "events_sent": len(sent),
        "deliveries_expected": expected,
        "deliveries": delivered,
        "lost": lost,
        "duplicates": duplicates,
        "latency_histogram": histogram,
        "latency_max_ns": worst,
        "client_cpu_percent": round(100 * cpu_s / wall_s, 1) if wall_s > 0 else None,
        "last_receipt_ns": last_receipt_ns or None,
    }


def merge(shares: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of several processes' shares: sums, and percentiles over all
    deliveries (exact to the histogram's 0.01 ms)."""
    histogram: dict[int, int] = {}
    for share in shares:
        for bucket, count in share["latency_histogram"].items():
            histogram[int(bucket)] = histogram.get(int(bucket), 0) + count
    total = sum(histogram.values())
    worst = max(share["latency_max_ns"] for share in shares)
    receipts = [s["last_receipt_ns"] for s in shares if s["last_receipt_ns"]]
    cpu = [s["client_cpu_percent"] for s in shares if s["client_cpu_percent"] is not None]
    summed = ("subscribers", "closed_subscribers", "deliveries_expected", "deliveries", "lost")
    return {
        **{key: sum(s[key] for s in shares) for key in summed},
        "events_sent": shares[0]["events_sent"],
        "duplicates": sum(s["duplicates"] for s in shares),
        "latency_ms": {
            "p50": percentile_from(histogram, total, 50),
            "p95": percentile_from(histogram, total, 95),
            "p99": percentile_from(histogram, total, 99),
            "max": round(worst / 1e6, 2) if total else None,
        },
        # The busiest client process: near 100 % means the client, not the server, is
        # the limit.
        "client_cpu_percent": max(cpu) if cpu else None,
        "client_processes": len(shares),
        "last_receipt_ns": max(receipts) if receipts else None,
    }


def read_json(path: str) -> Any:
    return orjson.loads(Path(path).read_bytes())  # small files: no need to leave the loop


def write_json(path: str, value: Any) -> None:
    Path(path).write_bytes(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


async def open_all(subs: list[Subscriber]) -> list[str]:
    """Connect and subscribe every subscriber, 50 handshakes at a time."""
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(50)
    failed: list[str] = []

    async def start(sub: Subscriber) -> None:
        url = urlsplit(sub.spec["url"])
        async with limit:
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: sub, url.hostname, url.port or 80), 60
                )
                await asyncio.wait_for(sub.acked, 60)
            except Exception as error:
                sub.closed = sub.closed or repr(error)[:200]
                failed.append(sub.closed)
                if sub.transport is not None:
                    sub.transport.close()

    await asyncio.gather(*(start(s) for s in subs))
    return failed


async def main(config_path: str) -> None:
    config = read_json(config_path)
    tally = Tally()
    subs: list[Subscriber] = []
    subs.extend(Subscriber(spec, tally, subs) for spec in config["subscriptions"])
    failed = await open_all(subs)
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
            result = report(subs, tally, sent, cpu1 - cpu0, wall1 - wall0)
            cpu0, wall0 = cpu1, wall1
            write_json(line[2], result)
            print("REPORTED", flush=True)
        elif line[0] == "count":
            print(f"COUNT {len(tally.numbers)}", flush=True)
        elif line[0] == "reset":
            tally.clear(subs)
            cpu0, wall0 = sum(os.times()[:2]), time.monotonic()
            print("RESET", flush=True)
    for sub in subs:
        if sub.transport is not None and not sub.transport.is_closing():
            sub.transport.write(client_frame(b"\x03\xe8", 0x8))
            sub.transport.close()
    await asyncio.sleep(0.1)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1]))
