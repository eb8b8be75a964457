"""What a delivered event costs the server over Server-Sent Events (decision 0026), beside
the same over WebSocket: one ``crm-graphql serve`` process on a database of its own, N
subscribers of one user's activity feed (one fan-out group on WebSocket), K notes written
one after the other; each note is awaited by every subscriber before the next is written.
Reported per transport: the server process's CPU time per delivered event (its CPU during
the run, less a run without subscribers, divided by N*K: /proc, utime + stime) and the
delivery latency (write sent to event read, median and p99). ``sse`` streams are read
uncompressed, ``sse-gzip`` ones gzipped (what browsers ask for).

    python -m bench.sse_delivery --redis redis://127.0.0.1:6379/14 \\
        [--server-url postgresql://postgres@127.0.0.1:5432/postgres] [-n 50] [-k 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import Role
from crm_graphql.services import activities, auth
from crm_graphql.services.auth import TokenConfig, issue_access_token
from crm_graphql.settings import Settings, new_encryption_key_entry
from tests import support
from tests.realtime.processes import ServerProcess, server_env
from tests.realtime.streams import head_cursor

FEED = """subscription($after: String) {
  activityFeed(after: $after) { cursor activity { subject } }
}"""
TRANSPORTS = ("none", "ws", "sse", "sse-gzip")  # none: the writes alone (the baseline)
NOTE = """mutation($c: ID!, $s: String!) {
  createActivity(input: {type: NOTE, subject: $s, customerId: $c}) { errors { code } }
}"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Receiver:
    """One subscriber: when it read each note (by subject)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()

    def got(self, subject: str) -> None:
        self.seen[subject] = time.perf_counter()
        self.changed.set()


async def websocket_subscriber(url: str, token: str, after: str, into: Receiver) -> None:
    ws = await support.WSClient.connect(url, token)
    try:
        await ws.acknowledged()
        await ws.subscribe(FEED, {"after": after})
        while True:
            data = await ws.next_data(timeout=3600)
            into.got(data["activityFeed"]["activity"]["subject"])
    finally:
        await ws.close()


async def sse_subscriber(
    http: httpx.AsyncClient, token: str, after: str, into: Receiver, encoding: str
) -> None:
    headers = {"Accept-Encoding": encoding}
    async with support.event_stream(http, token, FEED, {"after": after}, headers=headers) as stream:
        while True:
            _, result = await stream.next_result(timeout=3600)
            into.got(result["data"]["activityFeed"]["activity"]["subject"])


async def run(
    server: ServerProcess, gql: support.GraphQLClient, customer: str, token: str,
    transport: str, n: int, k: int, after: str,
) -> tuple[float, list[float]]:  # fmt: skip
    """(server CPU seconds, latencies in ms) of one run."""
    receivers = [Receiver() for _ in range(n if transport != "none" else 0)]
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        if transport == "ws":
            tasks = [
                asyncio.create_task(websocket_subscriber(server.url, token, after, r))
                for r in receivers
            ]
        else:
            encoding = "gzip" if transport == "sse-gzip" else "identity"
            tasks = [
                asyncio.create_task(sse_subscriber(http, token, after, r, encoding))
                for r in receivers
            ]
        await asyncio.sleep(2)  # every subscriber registered (they start after `after` anyway)
        latencies: list[float] = []
        started = cpu_seconds(server.pid)
        for i in range(k):
            subject = f"{transport}-{uuid.uuid4().hex[:8]}-{i}"
            sent = time.perf_counter()
            result = await gql(NOTE, {"c": customer, "s": subject})
            assert result.ok()["createActivity"]["errors"] == []
            for receiver in receivers:
                while subject not in receiver.seen:
                    receiver.changed.clear()
                    await receiver.changed.wait()
                latencies.append((receiver.seen[subject] - sent) * 1000)
        used = cpu_seconds(server.pid) - started
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return used, latencies


async def measure(database_url: str, redis_url: str, n: int, k: int) -> None:
    server: ServerProcess | None = None
    try:
        settings = Settings(
            env="test",
            database_url=database_url.replace("postgresql://", "postgresql+asyncpg://"),
            redis_url=redis_url,
            secret_key="bench-secret-key-" + "x" * 32,
            encryption_keys=[new_encryption_key_entry("bench")],
            data_dir=Path(tempfile.mkdtemp(prefix="crm-bench-sse-")),
            rate_limits=False,
            webhook_dispatcher=False,
        )
        engine = make_engine(settings.database_url or "")
        sessionmaker: Any = make_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            workspace = await auth.create_workspace(session, name="SSE bench")
            user = await auth.create_user(
                session, workspace=workspace, email="bench@example.com",
                password=support.PASSWORD, role=Role.MANAGER, name="Bench",
            )  # fmt: skip
        token = issue_access_token(TokenConfig(secret_key=settings.secret_key or ""), user)[0]
        server = ServerProcess(
            "sse-bench", server_env(settings, redis_url), Path(tempfile.mkdtemp())
        )
        await server.launch()
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            gql = support.GraphQLClient(http, token)
            created = await gql(
                'mutation { createCustomer(input: {name: "Bench"}) { customer { id } } }'
            )
            customer = created.ok()["createCustomer"]["customer"]["id"]
            figures = {}
            for transport in TRANSPORTS * 2:
                after = await head_cursor(sessionmaker, workspace.id, activities.TOPIC)
                used, latencies = await run(server, gql, customer, token, transport, n, k, after)
                figures.setdefault(transport, []).append((used, latencies))
        await engine.dispose()
    finally:
        if server is not None:
            server.stop()
    baseline = min(used for used, _ in figures["none"])
    print(f"n={n} subscribers, k={k} events; best of two runs")
    print("| transport | server CPU per delivered event | latency median | p99 |")
    print("|---|---:|---:|---:|")
    for transport in TRANSPORTS[1:]:
        used, latencies = min(figures[transport], key=lambda run: run[0])
        per_event = (used - baseline) / (n * k) * 1e6
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(
            f"| {transport} | {per_event:.0f} us | {statistics.median(latencies):.1f} ms "
            f"| {p99:.1f} ms |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", required=True)
    parser.add_argument("-n", type=int, default=50, help="subscribers")
    parser.add_argument("-k", type=int, default=40, help="events")
    args = parser.parse_args()
    name = f"crm_bench_sse_{uuid.uuid4().hex[:8]}"
    support.create_database(args.server_url, name)
    database_url = args.server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        support.migrate(database_url.replace("postgresql://", "postgresql+asyncpg://"))
        asyncio.run(measure(database_url, args.redis, args.n, args.k))
    finally:
        support.drop_database(args.server_url, name)


if __name__ == "__main__":
    main()
