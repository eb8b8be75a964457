"""How fast an import of customers runs (issue 17, point 1: 100,000 customers in under
60 s; docs/decisions/0033-jobs-and-import.md).

A scratch database of its own (created, migrated, dropped), a workspace with an admin,
and a generated CSV of ``--rows`` customers (name, email, phone, external id, tags,
lifecycle stage, a custom field), imported the way ``crm-graphql import`` does (a job
claimed and run by this process: parsing, checks, bulk upserts of 1,000 rows, audit rows,
change feed and search triggers, coalesced events, progress). Then the same file again,
every row an update (``--update-pass``). Writes ``bench/results/import-<time>.json`` and
``.md``.

    python -m bench.import_speed [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--redis-url redis://127.0.0.1:6379/11] [--rows 100000] [--update-pass]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from crm_graphql import crypto
from crm_graphql.app import settle_garbage_collector
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.enums import ImportMode, ImportType
from crm_graphql.job_runner import JobRunner, RunnerSettings
from crm_graphql.models import AuditLog, Customer, Job, Role
from crm_graphql.realtime.bus import Bus
from crm_graphql.services import auth, imports, jobs
from crm_graphql.services.actor import Actor
from crm_graphql.settings import Settings, new_encryption_key_entry
from tests import support

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("lead", "qualified", "customer", "churned")


def generate(rows: int) -> bytes:
    lines = ["name,email,phone,externalId,tags,lifecycleStage,custom.source"]
    for i in range(rows):
        lines.append(
            f"Customer {i},customer{i}@example.com,+44 20 7946 {i % 10000:04d},EXT-{i},"
            f"import;batch{i % 7},{STAGES[i % 4]},bench"
        )
    return ("\n".join(lines) + "\n").encode()


async def run_import(
    sessionmaker: Any, bus: Bus, actor: Actor, content: bytes, key: str
) -> tuple[float, Job]:
    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        options = imports.ImportOptions(
            type=ImportType.CUSTOMERS, format="csv", key=key, mode=ImportMode.GOOD_ROWS
        )
        job = await imports.start_import(
            actor, session, options, file_name="bench.csv", content=content
        )
        claimed = await jobs.claim_new(session, job, actor)
    await JobRunner(sessionmaker, bus, RunnerSettings()).run(claimed)
    elapsed = time.perf_counter() - started
    async with sessionmaker() as session:
        done = await session.get(Job, claimed.id)
    assert done is not None
    return elapsed, done


async def measure(url: str, redis_url: str, rows: int, update_pass: bool) -> dict[str, Any]:
    # The job runs as in a server process (and in `crm-graphql import`): with the server's
    # garbage-collector settings (decision 0009). With Python's defaults the same import
    # took 28.5 s instead of 16.3 s (20,000 rows, back to back; decision 0033).
    settle_garbage_collector(Settings().gc_thresholds)
    engine = make_engine(url, pool_size=4)
    bus = Bus.from_url(redis_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        crypto.attach(sessionmaker, crypto.Keyring.from_entries([new_encryption_key_entry("b")]))
        async with sessionmaker() as session, session.begin():
            workspace = await auth.create_workspace(session, name=f"Import {uuid.uuid4().hex[:6]}")
            admin = await auth.create_user(
                session,
                workspace=workspace,
                email=f"{uuid.uuid4().hex[:8]}@example.com",
                password="import-bench-password",
                role=Role.ADMIN,
                name="Admin",
            )
        actor = Actor(workspace_id=workspace.id, role=Role.ADMIN, user_id=admin.id)
        content = generate(rows)
        passes: list[dict[str, Any]] = []
        names = ["create"] + (["update"] if update_pass else [])
        for name in names:
            if name == "update":
                content = content.replace(b",bench\n", b",bench-again\n")
            elapsed, job = await run_import(sessionmaker, bus, actor, content, "externalId")
            passes.append(
                {
                    "pass": name,
                    "seconds": round(elapsed, 2),
                    "rows_per_second": round(rows / elapsed),
                    "status": job.status.value,
                    "counts": job.counts,
                    "errors": job.error_count,
                }
            )
            print(f"{name}: {rows:,} rows in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s)")
        async with sessionmaker() as session:
            customers = await session.scalar(
                select(func.count()).where(Customer.workspace_id == workspace.id)
            )
            audits = await session.scalar(
                select(func.count()).where(
                    AuditLog.workspace_id == workspace.id, AuditLog.entity_type == "Customer"
                )
            )
        return {
            "rows": rows,
            "file_bytes": len(content),
            "passes": passes,
            "customers": customers,
            "audit_rows": audits,
        }
    finally:
        await bus.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--update-pass", action="store_true", help="import the file again")
    args = parser.parse_args()
    name = f"crm_bench_import_{secrets.token_hex(4)}"
    support.create_database(args.server_url, name)
    url = make_url(args.server_url).set(database=name).render_as_string(hide_password=False)
    try:
        support.migrate(url)
        load = os.getloadavg()
        figures = asyncio.run(measure(url, args.redis_url, args.rows, args.update_pass))
    finally:
        support.drop_database(args.server_url, name)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "at": stamp,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": load},
        **figures,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"import-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Import speed, {stamp}",
        "",
        f"{args.rows:,} customers from CSV ({figures['file_bytes']:,} bytes), good-rows mode, "
        f"key externalId; {os.cpu_count()} CPUs, load average at start "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (a shared machine: see the load).",
        "",
        "| pass | seconds | rows/s | created | updated | failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in figures["passes"]:
        c = p["counts"]
        lines.append(
            f"| {p['pass']} | {p['seconds']} | {p['rows_per_second']:,} | {c.get('created', 0):,} "
            f"| {c.get('updated', 0):,} | {c.get('failed', 0):,} |"
        )
    (RESULTS / f"import-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
