"""Does an export run in constant memory? (decision 0034)

On a scratch database (created, migrated, dropped), a workspace gets ``--rows`` generated
customers (one ``INSERT ... SELECT generate_series``, triggers off: the change feed and
search documents are not what is measured). Then, for each size of ``--sizes`` (the
customers are tagged so that a filter selects exactly that many):

- ``cli``: ``crm-graphql export --format csv`` in a child process, its resident set
  (VmRSS of /proc) sampled every 50 ms;
- ``http``: a ``crm-graphql serve`` process, a download link signed for the workspace's
  admin, the file streamed over HTTP by a client that throws the bytes away, the server's
  resident set sampled the same way (its RSS before the download subtracted).

Peak RSS that does not grow with the rows is constant memory.

    python -m bench.export_memory --server-url postgresql://postgres@127.0.0.1:5432/postgres \
        [--rows 1000000] [--sizes 10000 1000000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import Role
from crm_graphql.services import auth, exports
from crm_graphql.services.actor import Actor
from crm_graphql.settings import new_encryption_key_entry
from tests import support

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler:
    """The peak resident set of a process, sampled every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


async def seed(url: str, rows: int, sizes: list[int]) -> tuple[Actor, str]:
    engine = make_engine(url, pool_size=1)
    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker() as s, s.begin():
        name = f"Export bench {secrets.token_hex(3)}"
        workspace = await auth.create_workspace(s, name=name)
        admin = await auth.create_user(
            s, workspace=workspace, email=f"{secrets.token_hex(4)}@example.com",
            password="export-bench-password", role=Role.ADMIN, name="Admin",
        )  # fmt: skip
    async with sessionmaker() as s, s.begin():
        await s.execute(text("SET LOCAL session_replication_role = replica"))
        # Row g carries the tag s<size> of every size it falls within.
        tags = ", ".join(f"CASE WHEN g <= {n} THEN 's{n}' END" for n in sizes)
        await s.execute(
            text(
                f"""
                INSERT INTO customers (id, workspace_id, name, email, phone, lifecycle_stage,
                    tags, needs, preferences, custom_fields, address, version,
                    created_at, updated_at)
                SELECT gen_random_uuid(), :ws, 'Customer ' || g, 'c' || g || '@example.com',
                    '+4420794' || lpad((g % 100000)::text, 5, '0'), 'lead',
                    array_remove(ARRAY[{tags}], NULL), ARRAY['coffee'],
                    '{{"channel": "email"}}'::jsonb, '{{}}'::jsonb,
                    '{{"city": "London", "country": "GB"}}'::jsonb, 1,
                    now() - g * interval '1 second', now()
                FROM generate_series(1, :n) g
                """
            ),
            {"ws": workspace.id, "n": rows},
        )
    await engine.dispose()
    return Actor(workspace_id=workspace.id, role=Role.ADMIN, user_id=admin.id), name


def cli_export(env: dict[str, str], workspace: str, size: int) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp()) / "export.csv"
    args = [sys.executable, "-m", "crm_graphql.cli", "export", "--workspace", workspace,
            "--type", "customers", "--format", "csv", "--out", str(out),
            "--filter", json.dumps({"tags": {"anyOf": [f"s{size}"]}})]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    with Sampler(proc.pid) as sampler:
        _, err = proc.communicate()
    seconds = time.monotonic() - started
    assert proc.returncode == 0, err
    lines = sum(1 for _ in out.open("rb")) - 1
    size_bytes = out.stat().st_size
    out.unlink()
    return {"path": "cli", "rows": lines, "seconds": round(seconds, 2),
            "peak_rss_mib": round(sampler.peak / 1024, 1),
            "bytes": size_bytes}  # fmt: skip


def http_export(base: str, pid: int, secret: str, admin: Actor, size: int) -> dict[str, Any]:
    request = exports.ExportRequest(
        type="customers", format="csv", filter={"tags": {"anyOf": [f"s{size}"]}}
    )
    token, _ = exports.sign_link(secret, admin, request, ttl_seconds=3600)
    before = rss_kib(pid)
    lines = 0
    received = 0
    started = time.monotonic()
    with Sampler(pid) as sampler, httpx.stream("GET", f"{base}/exports/{token}", timeout=600) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw():
            lines += chunk.count(b"\n")
            received += len(chunk)
    return {"path": "http", "rows": lines - 1, "seconds": round(time.monotonic() - started, 2),
            "server_rss_before_mib": round(before / 1024, 1),
            "server_peak_rss_mib": round(sampler.peak / 1024, 1),
            "server_growth_mib": round((sampler.peak - before) / 1024, 1),
            "bytes": received}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", required=True, help="a PostgreSQL server (any database)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes))
    assert sizes[-1] <= args.rows
    name = f"crm_bench_export_{secrets.token_hex(4)}"
    support.create_database(args.server_url, name)
    url = make_url(args.server_url).set(database=name).render_as_string(hide_password=False)
    secret = secrets.token_hex(32)
    env = {**os.environ, "CRM_DATABASE_URL": url, "CRM_REDIS_URL": args.redis_url,
           "CRM_SECRET_KEY": secret, "CRM_ENCRYPTION_KEYS": new_encryption_key_entry("bench"),
           "CRM_DATA_DIR": tempfile.mkdtemp(), "CRM_ENV": "test",
           "CRM_WEBHOOK_DISPATCHER": "false", "CRM_RATE_LIMITS": "false"}  # fmt: skip
    results: list[dict[str, Any]] = []
    try:
        support.migrate(url)
        started = time.monotonic()
        admin, workspace = asyncio.run(seed(url, args.rows, sizes))
        seeded = round(time.monotonic() - started, 1)
        for size in sizes:
            results.append({"size": size, **cli_export(env, workspace, size)})
            print(results[-1], flush=True)
        port = support.free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "crm_graphql.cli", "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
            for size in sizes:
                results.append({"size": size, **http_export(base, server.pid, secret, admin, size)})
                print(results[-1], flush=True)
        finally:
            server.terminate()
            server.wait(30)
    finally:
        support.drop_database(args.server_url, name)
    report = {
        "bench": "export_memory",
        "rows_in_workspace": args.rows,
        "seed_seconds": seeded,
        "chunk_rows": exports.CHUNK_ROWS,
        "machine": "2 cores, shared with other sessions' work",
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export-memory.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Export memory (bench/export_memory.py)",
        "",
        f"{args.rows:,} generated customers in one workspace; CSV of all the fields; "
        f"chunks of {exports.CHUNK_ROWS} rows. 2-core machine shared with other work.",
        "",
        "| path | rows | seconds | peak RSS (MiB) | server growth (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        peak = r.get("peak_rss_mib", r.get("server_peak_rss_mib"))
        growth = r.get("server_growth_mib", "")
        lines.append(f"| {r['path']} | {r['rows']:,} | {r['seconds']} | {peak} | {growth} |")
    (out / "export-memory.md").write_text("\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    main()
