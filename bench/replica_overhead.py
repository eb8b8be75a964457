"""What routing reads to a streaming replica costs (decision 0024), measured on a primary
and a standby of its own (the same pair ``tests/test_replica.py`` starts: initdb,
``pg_basebackup -R``, two servers on free ports), N times each:

- ``may_lag``: the decision per read (one Redis GET, the monitor's state in memory);
- ``wrote``: what a unit of work adds (the primary's WAL position, one Redis script);
- ``sample``: one poll of the monitor (one statement on each server);
- a compiled-read-sized statement on the primary's and on the standby's pool.

    python -m bench.replica_overhead --redis redis://127.0.0.1:6379/12 [-n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from crm_graphql.db.engine import make_read_pool
from crm_graphql.db.replica import Replica
from crm_graphql.models import Role
from crm_graphql.services.actor import Actor
from tests import support
from tests.test_replica import Cluster, server_binaries

# About what a compiled list statement asks of the server: a json_agg over 50 rows.
STATEMENT = (
    "SELECT json_agg(json_build_object('id', g, 'name', 'customer ' || g)) "
    "FROM generate_series(1, 50) g"
)


async def timed(n: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float, float]:
    """(median, p99, this process's CPU per call) in microseconds of ``n`` calls, after
    50 to warm up."""
    for _ in range(50):
        await call()
    samples = []
    cpu = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1e6)
    cpu = (time.process_time() - cpu) * 1e6 / n
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1], cpu


async def measure(primary: str, standby: str, redis_url: str, n: int) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    replica = await Replica(primary, standby, client, pool_size=2, max_lag=5, poll=3600).start()
    workspace = uuid.uuid4()
    reader = Actor(workspace, Role.MANAGER, user_id=uuid.uuid4())
    writer = Actor(workspace, Role.MANAGER, user_id=uuid.uuid4())
    pools = [await make_read_pool(url, 1, "bench") for url in (primary, standby)]
    try:
        await replica.wrote(writer)
        rows = [
            ("may_lag, caller without a kept write", await timed(n, lambda: replica.may_lag(reader))),
            ("may_lag, caller with a kept write", await timed(n, lambda: replica.may_lag(writer))),
            ("wrote (after a unit of work)", await timed(n, lambda: replica.wrote(writer))),
            ("sample (one monitor poll)", await timed(n, replica.sample)),
            ("50-row json_agg on the primary", await timed(n, lambda: pools[0].fetchval(STATEMENT))),
            ("50-row json_agg on the standby", await timed(n, lambda: pools[1].fetchval(STATEMENT))),
        ]  # fmt: skip
    finally:
        for pool in pools:
            await pool.close()
        await replica.close()
        await client.aclose()
    print(f"n={n} per row; microseconds")
    print("| step | median | p99 | CPU of this process |\n|---|---:|---:|---:|")
    for name, (median, p99, cpu) in rows:
        print(f"| {name} | {median:,.0f} | {p99:,.0f} | {cpu:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    binaries = server_binaries()
    if binaries is None:
        raise SystemExit("no PostgreSQL server binaries found")
    cluster = Cluster(binaries, Path(tempfile.mkdtemp(prefix="crm-rep-bench-")))
    try:
        cluster.create()
        support.create_database(cluster.url(cluster.primary, "postgres"), "crm")
        cluster.add_standby()
        asyncio.run(
            measure(cluster.url(cluster.primary), cluster.url(cluster.standby), args.redis, args.n)
        )
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
