"""The benchmark runner of issue 7: `make bench` / `make bench-quick`.

    python -m bench.run [--preset full|quick|smoke] [--servers ours,raw,postgraphile]

Generates (or reuses) the data set, starts each server pinned to core 0 (`taskset`), drives
it from core 1 (`wrk` for HTTP, bench/ws_clients.py for WebSockets), and writes
bench/results/<timestamp>.json plus a markdown table (stdout, and bench/RESULTS.md unless
--no-results-md). See docs/decisions/0005-benchmarks.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop
from sqlalchemy.engine import make_url

from bench import datagen, ws_clients
from bench.pgcount import CountingProxy
from crm_graphql import demo
from crm_graphql.global_ids import from_global_id, to_global_id
from crm_graphql.services.rfm import RfmSegment
from crm_graphql.services.segments import BUILT_INS
from crm_graphql.settings import new_encryption_key_entry

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
QUERIES = BENCH / "queries"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
SERVER_CORE = "0"
CLIENT_CORE = "1"
# The WebSocket client processes may use every core but the servers' (only core 1 on a
# two-core machine).
CLIENT_CORES = f"1-{(os.cpu_count() or 2) - 1}" if (os.cpu_count() or 2) > 2 else CLIENT_CORE
SECRET = "bench-secret-key-not-for-production-0123456789abcdef"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"  # a database number of its own


class Services:
    """Where the servers under test find Redis (set from the command line)."""

    redis_url = DEFAULT_REDIS_URL


PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Preset:
    scale: float
    duration: float  # seconds per timed HTTP run
    warmup: float
    count_requests: int  # requests per scenario in the statement-counting pass
    rt1_conversations: int
    rt1_subscribers_per_conversation: int
    rt1_inbox_subscribers: int
    rt1_rate: float  # messages per second
    rt1_seconds: float
    rt2_subscribers: int
    rt2_steps: tuple[float, ...]
    rt2_step_seconds: float
    idle_sockets: int
    startup: bool
    # False (smoke only): time the HTTP runs on the server started for statement
    # counting, i.e. through the counting proxy, to save two server starts.
    separate_count_pass: bool = True
    rt_processes: int = 2  # server processes the subscribers are spread over
    # After the last send: how long unanswered sends are waited for, and at most how long
    # to wait for deliveries to stop arriving before counting what is missing as lost.
    drain_seconds: float = 10.0
    max_connections: int = 16  # caps CONNECTIONS (smoke: a request must finish in a run)
    # RT1X: RT1's subscribers and messages with quiet sockets added up to this many (each
    # subscribed to a conversation no message is sent to).
    rt1x_sockets: int = 10_000
    # bench/ws_clients.py processes the subscribers are dealt out to (on the client cores).
    client_processes: int = 2


# RT2's ladder: the rate doubles (about) until the raw floor fails a step; the last step is
# the ceiling (a floor that holds it has not been measured to capacity).
RT2_LADDER = (1, 2, 5, 10, 20, 50, 100, 200, 400, 800, 1600)
RT2_SHARE = 0.8  # ours holds at least this share of the floor's highest rate (issue 14)
RT1X_P99_MS = 100
IDLE_SHARE = 1.2  # our memory per idle socket at most this multiple of the floor's
IDLE_WARM_SOCKETS = 50  # IDLE: subscribed (and kept) before the measured ones, both servers

PRESETS = {
    "full": Preset(10, 15, 5, 20, 300, 3, 100, 100, 20, 1000, RT2_LADDER, 10, 1000, True),
    # Quick: fewer subscribers (RT1 400, RT1X 2,000, RT2 400), shorter runs; see
    # 0005-benchmarks.md.
    "quick": Preset(
        1, 3, 1, 10, 100, 3, 100, 100, 5, 400, RT2_LADDER[1:-1], 2, 200, True,
        True, 2, 3, rt1x_sockets=2_000,
    ),
    "smoke": Preset(
        0.02, 1, 0.2, 3, 6, 2, 4, 10, 1.5, 10, (5,), 1.5, 10, False, False, 1, 1, 2,
        rt1x_sockets=30, client_processes=1,
    ),
}

# Issue 13's scenarios (S1 search, S2 segment page, S3/S4 reports, S5 revenue by owner,
# CF1 a page by custom fields) are compared with their floors in bench/floors/ only:
# PostGraphile has no equivalent. CF1 has no target of its own in the issue.
ISSUE13_SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "CF1")
# Issue 14's page-shaped reads: what a frontend's screens send in one request, each
# compared with its hand-written SQL floor (bench/floors/p*.sql) and with PostGraphile
# where it can express the page: P2 needs the caller's conversation visibility and read
# receipts, which PostGraphile has no notion of; P1's `me` becomes a user looked up by id.
PAGE_SCENARIOS = ("P1", "P2", "P3", "P4")
PAGE_DOCUMENTS = {
    "P1": "p1_list_page",
    "P2": "p2_inbox_page",
    "P3": "p3_customer_page",
    "P4": "p4_deal_board",
}
PAGE_TITLES = {
    "P1": "P1 list page (me + 50 customers)",
    "P2": "P2 inbox page (20 conversations, as an agent)",
    "P3": "P3 customer page (node with deals, activities, conversations)",
    "P4": "P4 deal board (pipeline, stages, 20 deals each)",
}
PAGE_FLOOR_SHARE = 0.7
PAGE_POSTGRAPHILE_SHARE = 1.0
PAGE_NO_POSTGRAPHILE = {
    "P2": "PostGraphile has no caller: no conversation visibility rule, no read receipts "
    "(unreadCount), no lastMessage",
}
READ_SCENARIOS = ("Q1", "Q2", "Q3", "Q4", *ISSUE13_SCENARIOS, *PAGE_SCENARIOS)
POSTGRAPHILE_SCENARIOS = ("Q1", "Q2", "Q3", "Q4", "P1", "P3", "P4")
HTTP_SCENARIOS = (*READ_SCENARIOS, "M1")
CONNECTIONS = (
    {"Q1": 16, "Q2": 16, "Q3": 4, "Q4": 4, "M1": 16}
    | dict.fromkeys(ISSUE13_SCENARIOS, 4)
    | dict.fromkeys(PAGE_SCENARIOS, 16)  # throughput targets, as Q1/Q2
)
# Latency targets of issue 13 (p95 at S=10, wrk -c4) and the share of the floor's rate.
ISSUE13_P95_MS = {"S1": 50, "S2": 150, "S3": 150, "S4": 150, "S5": 150}
ISSUE13_FLOOR_SHARE = 0.7
ISSUE13_TITLES = {
    "S1": "S1 as-you-type search",
    "S2": "S2 segment page (champions)",
    "S3": "S3 sales report",
    "S4": "S4 service report",
    "S5": "S5 revenue by month and owner",
}


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its descendants, KiB."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pids.extend(int(c) for c in children)
    return total


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    node = shutil.which("node")
    return {
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": None,  # filled in from the bench database
        "node": subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if node
        else None,
        "wrk": shutil.which("wrk") is not None,
        "loadavg_at_start": os.getloadavg(),
    }


# ------------------------------------------------------------------------ processes


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_ready(server: Server, path: str, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.base + path, timeout=2).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(
        f"{server.name} not ready after {timeout}s: {server.log.read_text()[-2000:]}"
    )


def ours_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """Production settings; the bench's long token lifetime lets one login last a run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_ENV="production",
        CRM_SECRET_KEY=SECRET,
        CRM_DATABASE_URL=database_url,
        CRM_REDIS_URL=Services.redis_url,
        CRM_DATA_DIR=str(data_dir),
        CRM_ACCESS_TOKEN_TTL_SECONDS="86400",
        # Rate limits would throttle a load generator that is one actor on one address.
        CRM_RATE_LIMITS="false",
        # Production requires encryption keys; the bench data holds no encrypted values.
        CRM_ENCRYPTION_KEYS=new_encryption_key_entry("bench"),
        CRM_SLOW_CONSUMER_SECONDS="30",
    )
    return env


def spawn_pinned(
    name: str, tag: str, workdir: Path, command: list[str], env: dict[str, str], cwd: Path
) -> Server:
    """Start a server on the servers' core; its output goes to a log in ``workdir``."""
    port = free_port()
    log = workdir / f"{name}-{tag}-{port}.log"
    args = [arg.replace("{port}", str(port)) for arg in command]
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    return Server(name, proc, port, log)


def start_ours(
    database_url: str,
    workdir: Path,
    tag: str,
    *,
    wait: bool = True,
    counting: bool = False,
) -> Server:
    """``counting``: the statement-counting pass, without the webhook dispatcher, the job
    runner and the mail dispatcher, whose polls (every second, statements and their
    transaction control, whether there is work or not) are no request's work but land in a
    request's count whenever they fall in the counted window."""
    command = [str(VENV_BIN / "crm-graphql"), "serve", "--port", "{port}", "--log-level", "warning"]
    env = ours_env(database_url, workdir / "crm-data")
    if counting:
        env["CRM_WEBHOOK_DISPATCHER"] = "false"
        env["CRM_JOB_RUNNER"] = "false"
        env["CRM_MAIL_DISPATCHER"] = "false"
    server = spawn_pinned("ours", tag, workdir, command, env, ROOT)
    if wait:
        wait_ready(server, "/readyz")
    return server


def start_raw(
    database_url: str,
    workdir: Path,
    tag: str,
    workspace: uuid.UUID,
    author: uuid.UUID,
    *,
    wait: bool = True,
) -> Server:
    env = dict(
        os.environ,
        BENCH_DATABASE_URL=database_url,
        BENCH_REDIS_URL=Services.redis_url,
        BENCH_WORKSPACE_ID=str(workspace),
        BENCH_AUTHOR_ID=str(author),
    )
    command = [sys.executable, "-m", "uvicorn", "bench.raw_floor:app", "--port", "{port}"]
    command += ["--log-level", "warning", "--no-access-log", "--ws", "websockets-sansio"]
    server = spawn_pinned("raw", tag, workdir, command, env, ROOT)
    if wait:
        wait_ready(server, "/readyz")
    return server


def started_together(servers: list[Server]) -> list[Server]:
    """Wait for servers spawned with ``wait=False`` (they start in parallel)."""
    for server in servers:
        wait_ready(server, "/readyz")
    return servers


def postgraphile_bin() -> Path | None:
    path = BENCH / "postgraphile" / "node_modules" / ".bin" / "postgraphile"
    return path if path.exists() and shutil.which("node") else None


def start_postgraphile(database_url: str, workdir: Path, tag: str) -> Server:
    binary = postgraphile_bin()
    assert binary is not None
    command = ["node", str(binary), "-c", database_url, "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--schema", "public", "--append-plugins"]
    command += ["@graphile-contrib/pg-simplify-inflector,postgraphile-plugin-connection-filter"]
    command += ["--disable-default-mutations", "--disable-query-log", "--dynamic-json"]
    command += ["--legacy-relations", "omit"]
    server = spawn_pinned(
        "postgraphile", tag, workdir, command, dict(os.environ), BENCH / "postgraphile"
    )
    wait_ready_graphql(server)
    return server


def wait_ready_graphql(server: Server, timeout: float = 60) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(server.base + "/graphql", json={"query": "{__typename}"}, timeout=2)
            if r.status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready: {server.log.read_text()[-2000:]}")


# ------------------------------------------------------------------------ data set facts


@dataclass
class Facts:
    workspace: uuid.UUID
    admin: uuid.UUID
    customers: list[uuid.UUID]
    deals: list[tuple[uuid.UUID, list[uuid.UUID]]]  # open deal, stages it may move to
    rt_conversations: list[tuple[uuid.UUID, uuid.UUID]]  # (conversation, assignee)
    agent_emails: dict[uuid.UUID, str]
    admin_email: str
    server_version: str
    pipelines: list[uuid.UUID]  # by position: Sales, Renewals
    # Every conversation of the workspace (RT1X's quiet sockets follow those RT1 sends
    # nothing to).
    conversations: list[uuid.UUID] = dataclasses.field(default_factory=list)


async def load_facts(url: str) -> Facts:
    conn = await asyncpg.connect(datagen.asyncpg_dsn(url))
    try:
        # PostGraphile's Customer.purchaseSummary (a computed column); harmless to others.
        await conn.execute((BENCH / "postgraphile" / "purchase_summary.sql").read_text())
        version = await conn.fetchval("SHOW server_version")
        ws = await conn.fetchval(
            "SELECT id FROM workspaces WHERE name = $1", datagen.MAIN_WORKSPACE
        )
        admin = await conn.fetchrow(
            "SELECT id, email FROM users WHERE workspace_id = $1 AND role = 'admin'", ws
        )
        customers = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM customers WHERE workspace_id = $1 ORDER BY md5(id::text) LIMIT 1000",
                ws,
            )
        ]
        stages: dict[uuid.UUID, list[uuid.UUID]] = {}
        for r in await conn.fetch(
            "SELECT id, pipeline_id FROM stages WHERE workspace_id = $1 ORDER BY position", ws
        ):
            stages.setdefault(r["pipeline_id"], []).append(r["id"])
        deals = [
            (r["id"], stages[r["pipeline_id"]][:-2])
            for r in await conn.fetch(
                "SELECT id, pipeline_id FROM deals WHERE workspace_id = $1 AND status = 'open'"
                " ORDER BY md5(id::text) LIMIT 1000",
                ws,
            )
        ]
        rt = [
            (r["id"], r["assignee_id"])
            for r in await conn.fetch(
                "SELECT id, assignee_id FROM conversations WHERE workspace_id = $1 AND is_private"
                " ORDER BY created_at, id",
                ws,
            )
        ]
        agents = {
            r["id"]: r["email"]
            for r in await conn.fetch(
                "SELECT id, email FROM users WHERE workspace_id = $1 AND role = 'agent'", ws
            )
        }
        pipelines = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM pipelines WHERE workspace_id = $1 ORDER BY position, id", ws
            )
        ]
        conversations = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM conversations WHERE workspace_id = $1 ORDER BY created_at, id", ws
            )
        ]
        return Facts(
            ws,
            admin["id"],
            customers,
            deals,
            rt,
            agents,
            admin["email"],
            version,
            pipelines,
            conversations,
        )
    finally:
        await conn.close()


def login(base: str, email: str) -> str:
    r = httpx.post(
        base + "/graphql",
        json={
            "query": "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { accessToken errors { code message } } }",
            "variables": {"e": email, "p": datagen.PASSWORD},
        },
        timeout=30,
    )
    token = r.json()["data"]["login"]["accessToken"]
    if not token:
        raise RuntimeError(f"login {email} failed: {r.text}")
    return str(token)


# ------------------------------------------------------------------------ request bodies


def document(
    name: str, pg: bool = False, workspace: uuid.UUID | None = None, me: uuid.UUID | None = None
) -> str:
    path = QUERIES / ("postgraphile" if pg else "") / f"{name}.graphql"
    text = path.read_text()
    if me:
        text = text.replace("$ME", str(me))
    return text.replace("$WORKSPACE", str(workspace)) if workspace else text


def page_viewer(scenario: str, facts: Facts) -> uuid.UUID:
    """Who sends a page: the inbox (P2) is an agent's, the first live-chat conversation's
    assignee (private conversations of other agents are hidden from them); the other pages
    are the admin's, like every other read scenario."""
    return facts.rt_conversations[0][1] if scenario == "P2" else facts.admin


def page_bodies(server: str, scenario: str, facts: Facts) -> tuple[str, list[str]]:
    """Issue 14's pages: P3 varies the customer (as Q3), P4 the pipeline; the raw floor
    gets database ids and the caller's user id (which our server takes from the token)."""
    pg = server == "postgraphile"
    viewer = str(page_viewer(scenario, facts))
    if pg and scenario not in POSTGRAPHILE_SCENARIOS:
        raise ValueError(f"PostGraphile has no {scenario}")
    ids: list[tuple[str, uuid.UUID | None]] = [("", None)]
    if scenario == "P3":
        ids = [("Customer", cid) for cid in facts.customers[:500]]
    elif scenario == "P4":
        ids = [("Pipeline", pid) for pid in facts.pipelines]
    lines = []
    for type_name, id_ in ids:
        if server == "raw":
            v: dict[str, Any] = {"viewer": viewer}
            if id_ is not None:
                v["id"] = str(id_)
            lines.append(json.dumps({"variables": v}))
            continue
        body: dict[str, Any] = {
            "query": document(
                PAGE_DOCUMENTS[scenario], pg, facts.workspace if pg else None, facts.admin
            )
        }
        if id_ is not None:
            body["variables"] = {"id": str(id_) if pg else to_global_id(type_name, id_)}
        lines.append(json.dumps(body))
    return ("/graphql" if server != "raw" else f"/raw/{scenario.lower()}"), lines


Q4_NAMES = ("an", "ar", "el", "ma", "ri", "on", "ia", "er", "li", "us")
Q4_STAGES = (
    ("LEAD", "QUALIFIED"),
    ("CUSTOMER",),
    ("OPPORTUNITY", "CUSTOMER", "EVANGELIST"),
    ("SUBSCRIBER", "LEAD"),
)


def q4_variables(rng: random.Random) -> dict[str, Any]:
    start = datagen.START_TIME + timedelta(days=rng.randrange(0, 360))
    return {
        "name": rng.choice(Q4_NAMES),
        "stages": list(rng.choice(Q4_STAGES)),
        "from": start.isoformat(),
        "to": (start + timedelta(days=180)).isoformat(),
    }


def s1_words() -> list[str]:
    """As-you-type queries: the first 2, 3 or 4 letters of the data set's common first and
    last names (those whose prefix is plain ASCII letters, e.g. "Ma", "Smi", "Will")."""
    words = set()
    for name in (*demo.FIRST_NAMES, *demo.LAST_NAMES):
        for length in (2, 3, 4):
            prefix = name[:length]
            if len(prefix) == length and prefix.isascii() and prefix.isalpha():
                words.add(prefix)
    return sorted(words)


CHAMPIONS = next(b.id for b in BUILT_INS if b.rfm_segment == RfmSegment.CHAMPIONS)
# Report periods: the quarters of the generated history (it ends at datagen.BASE_TIME).
QUARTERS = (
    ("2024-10-01", "2024-12-31"),
    ("2025-01-01", "2025-03-31"),
    ("2025-04-01", "2025-06-30"),
    ("2025-07-01", "2025-09-30"),
    ("2025-10-01", "2025-12-31"),
)
TIME_ZONES = ("UTC", "Europe/Berlin", "America/New_York")


def issue13_variables(scenario: str, rng: random.Random, facts: Facts) -> dict[str, Any]:
    """One request's variables as our server takes them (the raw floor's: ``raw_variables``)."""
    if scenario == "S1":
        return {"q": rng.choice(s1_words())}
    if scenario == "S2":
        return {"segment": to_global_id("Segment", CHAMPIONS)}
    if scenario == "S3":
        start, end = rng.choice(QUARTERS)
        pipeline = facts.pipelines[0] if rng.random() < 0.8 else facts.pipelines[-1]
        return {
            "pipeline": to_global_id("Pipeline", pipeline),
            "from": start,
            "to": end,
            "tz": rng.choice(TIME_ZONES),
        }
    if scenario == "S4":
        start, end = rng.choice(QUARTERS)
        return {"from": start, "to": end, "tz": rng.choice(TIME_ZONES)}
    if scenario == "CF1":
        # Two sources, and the first letter of a job title (customers sorted by title).
        return {
            "sources": rng.sample(demo.SOURCES, 2),
            "prefix": rng.choice(sorted({t[0] for t in demo.JOB_TITLES})),
        }
    if scenario == "S5":
        # Two years of revenue, month by month in the zone, per owner.
        return {
            "from": "2024-01-01T00:00:00+00:00",
            "to": "2026-01-01T00:00:00+00:00",
            "timeZone": rng.choice(TIME_ZONES),
        }
    raise ValueError(scenario)


def raw_variables(scenario: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The raw floor takes database ids where our server takes global IDs."""
    if scenario == "S3":
        return dict(variables, pipeline=str(from_global_id(variables["pipeline"])[1]))
    return variables


ISSUE13_DOCUMENTS = {
    "S1": "s1_search",
    "S2": "s2_segment_page",
    "S3": "s3_sales_report",
    "S4": "s4_service_report",
    "S5": "s5_revenue_by_owner",
    "CF1": "cf1_custom_field_page",
}


def bodies(server: str, scenario: str, facts: Facts) -> tuple[str, list[str]]:
    """(URL path, request lines) for wrk; a line may start with its own path and a tab."""
    rng = random.Random(f"{scenario}-bodies")
    pg = server == "postgraphile"
    ws = facts.workspace
    if scenario in PAGE_SCENARIOS:
        return page_bodies(server, scenario, facts)
    if scenario in ISSUE13_SCENARIOS:
        if pg:
            raise ValueError(f"PostGraphile has no {scenario}")
        lines = []
        for _ in range(200):
            v = issue13_variables(scenario, rng, facts)
            if server == "ours":
                doc = document(ISSUE13_DOCUMENTS[scenario])
                lines.append(json.dumps({"query": doc, "variables": v}))
            else:
                lines.append(json.dumps({"variables": raw_variables(scenario, v)}))
        return ("/graphql" if server == "ours" else f"/raw/{scenario.lower()}"), lines
    if scenario in ("Q1", "Q2"):
        name = {"Q1": "q1_list", "Q2": "q2_deep"}[scenario]
        if server == "raw":
            return f"/raw/{scenario.lower()}", ["{}"]
        return "/graphql", [json.dumps({"query": document(name, pg, ws)})]
    if scenario == "Q3":
        lines = []
        for cid in facts.customers[:500]:
            if server == "ours":
                lines.append(
                    json.dumps(
                        {
                            "query": document("q3_node"),
                            "variables": {"id": to_global_id("Customer", cid)},
                        }
                    )
                )
            elif server == "raw":
                lines.append(json.dumps({"variables": {"id": str(cid)}}))
            else:
                lines.append(
                    json.dumps({"query": document("q3_node", True), "variables": {"id": str(cid)}})
                )
        return ("/raw/q3" if server == "raw" else "/graphql"), lines
    if scenario == "Q4":
        lines = []
        for _ in range(200):
            v = q4_variables(rng)
            if server == "ours":
                lines.append(json.dumps({"query": document("q4_filtered"), "variables": v}))
            elif server == "raw":
                lines.append(json.dumps({"variables": v}))
            else:
                v = dict(v, stages=[s.lower() for s in v["stages"]])
                lines.append(
                    json.dumps({"query": document("q4_filtered", True, ws), "variables": v})
                )
        return ("/raw/q4" if server == "raw" else "/graphql"), lines
    if scenario == "M1":
        lines = []
        for i in range(600):
            kind = i % 3
            if kind == 0:
                v = {"customerId": str(rng.choice(facts.customers)), "subject": f"Bench note {i}"}
                doc, path = "m1_create_activity", "/raw/m1/activity"
                if server == "ours":
                    v["customerId"] = to_global_id("Customer", uuid.UUID(v["customerId"]))
            elif kind == 1:
                deal, stage_ids = rng.choice(facts.deals)
                v = {"id": str(deal), "stageId": str(rng.choice(stage_ids))}
                doc, path = "m1_move_deal", "/raw/m1/move"
                if server == "ours":
                    v = {
                        "id": to_global_id("Deal", deal),
                        "stageId": to_global_id("Stage", uuid.UUID(v["stageId"])),
                    }
            else:
                conv, _ = rng.choice(facts.rt_conversations)
                v = {"conversationId": str(conv), "body": f"Bench message {i}"}
                doc, path = "m1_send_message", "/raw/m1/message"
                if server == "ours":
                    v["conversationId"] = to_global_id("Conversation", conv)
            if server == "ours":
                lines.append(json.dumps({"query": document(doc), "variables": v}))
            else:
                lines.append(f"{path}\t" + json.dumps({"variables": v}))
        return "/graphql", lines
    raise ValueError(scenario)


FINGERPRINT_KEYS = ("name", "title", "subject", "number", "amount", "orderCount", "hasNextPage")


def fingerprint(value: Any) -> list[Any]:
    """The values that must agree between servers whose IDs and cursors differ in form:
    names, titles, subjects, order numbers, amounts, counts, in document order."""
    found: list[Any] = []
    if isinstance(value, dict):
        for key in sorted(value):
            if key in FINGERPRINT_KEYS:
                found.append((key, value[key]))
            found.extend(fingerprint(value[key]))
    elif isinstance(value, list):
        for item in value:
            found.extend(fingerprint(item))
    return found


# Left out of the full comparison: ids and cursors (global IDs here, database ids or
# other cursor forms there) and drill-down filters (ours only: they are the API's own).
UNCOMPARED_KEYS = frozenset({"id", "cursor", "endCursor", "drillDown"})


INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?([+-]\d\d:\d\d|Z)")


def canonical(value: Any) -> Any:
    """Every value of an answer but ids and cursors, with numbers in one form: a decimal
    string (``"120.50"``) and a JSON number (``120.5``) are the same amount, and floats
    computed in Python or in PostgreSQL agree to 9 significant digits. Instants are
    compared as instants: PostgreSQL's JSON drops trailing zeros of the fraction of a
    second (``.1234``) where the API prints ``.123400``, and writes the session's offset."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items()) if k not in UNCOMPARED_KEYS}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(f"{value:.9g}")
    if isinstance(value, str) and value.lstrip("-").replace(".", "", 1).isdecimal():
        return float(f"{float(value):.9g}")
    if isinstance(value, str) and INSTANT.fullmatch(value):
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    return value


def first_difference(a: Any, b: Any, at: str = "") -> str | None:
    """Where two answers first differ (a path and both values), for the log."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_difference(a.get(key), b.get(key), f"{at}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, f"{at}[{i}]")
            if found:
                return found
        return None if len(a) == len(b) else f"{at}: {len(a)} items vs {len(b)}"
    return None if a == b else f"{at}: {str(a)[:120]} vs {str(b)[:120]}"


def answer_key(scenario: str, answers: list[Any]) -> Any:
    """What must agree between servers, of the checked requests' answers: for Q1-Q4 the
    names, titles, amounts and counts of the first one in document order (their answers
    differ in form elsewhere); for issue 13's scenarios each whole answer but ids and
    cursors (``canonical``); for issue 14's pages both: the whole answers for the raw
    floor, the fingerprint of the first for PostGraphile (``comparable``)."""
    if scenario in ISSUE13_SCENARIOS:
        return [canonical(a) for a in answers]
    if scenario in PAGE_SCENARIOS:
        return {
            "values": [canonical(a) for a in answers],
            "fingerprint": fingerprint(answers[0]) if answers else [],
        }
    return fingerprint(answers[0]) if answers else []


def comparable(key: Any, server: str) -> Any:
    """The part of an ``answer_key`` compared with ``server``'s: PostGraphile's answers
    differ in form (enum case, connections for lists, ids), so only their fingerprint."""
    if isinstance(key, dict) and "values" in key:
        return key["fingerprint"] if server == "postgraphile" else key["values"]
    return key


def check_answers(
    server: Server, path: str, lines: list[str], auth: str | None, scenario: str = ""
) -> Any:
    """Every kind of request gets a real answer (no errors) before it is timed; returns the
    comparable form of the answers (``answer_key``, to compare servers)."""
    headers = {"Authorization": auth} if auth else {}
    answers: list[Any] = []
    for line in lines[:3]:
        p, body = line.split("\t", 1) if "\t" in line else (path, line)
        r = httpx.post(
            server.base + p,
            content=body,
            headers={**headers, "Content-Type": "application/json"},
            timeout=30,
        )
        answer = r.json()
        if r.status_code != 200 or answer.get("errors") or not answer.get("data"):
            raise RuntimeError(f"{server.name} {p}: bad answer {r.status_code} {r.text[:500]}")
        for value in (answer["data"] or {}).values():
            if isinstance(value, dict) and value.get("errors"):
                raise RuntimeError(f"{server.name} {p}: user errors {r.text[:500]}")
        answers.append(answer["data"])
    return answer_key(scenario, answers)


# ------------------------------------------------------------------------ HTTP scenarios


def run_wrk(
    url: str, bodies_file: Path, auth: str | None, seconds: float, connections: int
) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        CLIENT_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "loadgen" / "bodies.lua"),
        url,
        "--",
        str(bodies_file),
        auth or "",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    raw = json.loads(line[len("WRK_JSON ") :])
    duration = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in raw if k.startswith("errors_"))
    if raw["requests"] == 0:  # wrk's histogram is then all zeros: no latency was measured
        for key in ("p50_us", "p95_us", "p99_us"):
            raw[key] = None
    ms = {
        k: (raw[f"{k}_us"] / 1000 if raw[f"{k}_us"] is not None else None)
        for k in ("p50", "p95", "p99")
    }
    return {
        "requests": raw["requests"],
        "duration_s": round(duration, 2),
        "req_per_s": round(raw["requests"] / duration, 1),
        "p50_ms": ms["p50"],
        "p95_ms": ms["p95"],
        "p99_ms": ms["p99"],
        "errors": errors,
        "connections": connections,
    }


def count_statements(
    server: Server, proxy: CountingProxy, path: str, lines: list[str], auth: str | None, n: int
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:

        def send(i: int) -> None:
            line = lines[i % len(lines)]
            p, body = line.split("\t", 1) if "\t" in line else (path, line)
            client.post(p, content=body).raise_for_status()

        for i in range(3):  # pools connected, caches warm
            send(i)
        time.sleep(0.2)
        proxy.reset()
        for i in range(n):
            send(i + 3)
        time.sleep(0.2)
        counts = proxy.reset()
    return {
        "sql_per_request": round(counts.work / n, 2),
        "tx_control_per_request": round(counts.control / n, 2),
        "sample_sql": counts.texts[:3],
    }


class HttpRunner:
    """One comparator's HTTP scenarios: a counting pass (statements per request and the
    answers, through the counting proxy) and a timed pass (direct connections)."""

    def __init__(
        self,
        name: str,
        facts: Facts,
        db_url: str,
        preset: Preset,
        workdir: Path,
        proxy: CountingProxy,
    ) -> None:
        self.name, self.facts, self.db_url = name, facts, db_url
        self.preset, self.workdir, self.proxy = preset, workdir, proxy
        self.results: dict[str, dict[str, Any]] = {}
        self.auth: str | None = None  # the admin's (every scenario but P2)
        self.page_auth: dict[uuid.UUID, str] = {}  # other callers of issue 14's pages
        self.prepared: dict[str, tuple[str, list[str]]] = {}

    @contextlib.contextmanager
    def started(self, *, counting: bool) -> Iterator[Server]:
        url = self.db_url
        if counting:
            proxied = make_url(self.db_url).set(host="127.0.0.1", port=self.proxy.port)
            url = proxied.render_as_string(hide_password=False)
        tag = "count" if counting else "timed"
        if self.name == "ours":
            server = start_ours(url, self.workdir, tag, counting=counting)
        elif self.name == "raw":
            server = start_raw(url, self.workdir, tag, self.facts.workspace, self.facts.admin)
        else:
            server = start_postgraphile(url, self.workdir, tag)
        try:
            if self.name == "ours" and self.auth is None:
                self.auth = "Bearer " + login(server.base, self.facts.admin_email)
                agent = page_viewer("P2", self.facts)
                self.page_auth[agent] = "Bearer " + login(
                    server.base, self.facts.agent_emails[agent]
                )
            yield server
        finally:
            server.stop()

    def auth_for(self, scenario: str) -> str | None:
        """The credentials a scenario's requests carry (the raw floor and PostGraphile
        take none: a page's caller is in the raw floor's variables)."""
        if scenario in PAGE_SCENARIOS:
            viewer = page_viewer(scenario, self.facts)
            if viewer != self.facts.admin:
                return self.page_auth.get(viewer)
        return self.auth

    def request_lines(self, scenario: str) -> tuple[str, list[str]]:
        if scenario not in self.prepared:
            self.prepared[scenario] = bodies(self.name, scenario, self.facts)
        return self.prepared[scenario]

    def count(self, server: Server, scenarios: list[str]) -> None:
        for s in scenarios:
            path, lines = self.request_lines(s)
            auth = self.auth_for(s)
            answer = check_answers(server, path, lines, auth, s)
            figures = self.results.setdefault(s, {})
            figures.update(
                count_statements(server, self.proxy, path, lines, auth, self.preset.count_requests)
            )
            if s in READ_SCENARIOS:
                figures["answer_fingerprint"] = answer

    def timed(self, server: Server, scenarios: list[str]) -> None:
        for s in scenarios:
            path, lines = self.request_lines(s)
            auth = self.auth_for(s)
            if s not in READ_SCENARIOS:
                check_answers(server, path, lines, auth)
            bodies_file = self.workdir / f"{self.name}-{s}.txt"
            bodies_file.write_text("\n".join(lines) + "\n")
            conns = min(CONNECTIONS[s], self.preset.max_connections)
            run_wrk(server.base + path, bodies_file, auth, self.preset.warmup, conns)
            cpu0 = cpu_seconds(server.proc.pid)
            timed = run_wrk(server.base + path, bodies_file, auth, self.preset.duration, conns)
            timed["server_cpu_percent"] = round(
                100 * (cpu_seconds(server.proc.pid) - cpu0) / timed["duration_s"], 1
            )
            timed["rss_kib"] = rss_kib(server.proc.pid)
            self.results.setdefault(s, {}).update(timed)
            say(
                f"{self.name} {s}: {timed['req_per_s']} req/s, p50 {fmt(timed['p50_ms'])} ms, "
                f"p99 {fmt(timed['p99_ms'])} ms, errors {timed['errors']}"
            )


def http_scenarios(
    servers: list[str],
    scenarios: list[str],
    facts: Facts,
    db_url: str,
    preset: Preset,
    workdir: Path,
    proxy: CountingProxy,
) -> dict[str, dict[str, Any]]:
    """Every server answers (and is counted on) the reads before any server writes, so all
    read the same rows; the writes (M1) come last. PostGraphile has no M1."""
    all_reads = [s for s in scenarios if s in READ_SCENARIOS]
    writes = [s for s in scenarios if s == "M1"]
    runners = [HttpRunner(name, facts, db_url, preset, workdir, proxy) for name in servers]

    def reads_of(runner: HttpRunner) -> list[str]:
        if runner.name == "postgraphile":
            return [s for s in all_reads if s in POSTGRAPHILE_SCENARIOS]
        return all_reads

    def writes_of(runner: HttpRunner) -> list[str]:
        return [] if runner.name == "postgraphile" else writes

    if preset.separate_count_pass:
        for runner in runners:
            if reads_of(runner):
                with runner.started(counting=True) as server:
                    runner.count(server, reads_of(runner))
        for runner in runners:
            if reads_of(runner) or writes_of(runner):
                with runner.started(counting=False) as server:
                    runner.timed(server, reads_of(runner) + writes_of(runner))
        for runner in runners:
            if writes_of(runner):
                with runner.started(counting=True) as server:
                    runner.count(server, writes_of(runner))
    else:  # smoke: one server per comparator, timed through the proxy
        for runner in runners:
            if not (reads_of(runner) or writes_of(runner)):
                continue
            with runner.started(counting=True) as server:
                runner.count(server, reads_of(runner))
                runner.timed(server, reads_of(runner))
                runner.count(server, writes_of(runner))
                runner.timed(server, writes_of(runner))
    http = {runner.name: runner.results for runner in runners if runner.results}
    compare_answers(http)
    for runner in runners:
        for s, figures in runner.results.items():
            say(f"{runner.name} {s}: {figures.get('sql_per_request')} SQL/req")
    return http


def compare_answers(http: dict[str, dict[str, Any]]) -> None:
    """Mark each comparator's read answers as matching ours or not (names, amounts, counts
    of the first request of each scenario); the fingerprints themselves are dropped."""
    for s in READ_SCENARIOS:
        ours = http.get("ours", {}).get(s, {}).get("answer_fingerprint")
        for name, scenarios in http.items():
            r = scenarios.get(s)
            if r is None:
                continue
            mine = comparable(r.pop("answer_fingerprint", None), name)
            if name != "ours" and ours is not None:
                expected = comparable(ours, name)
                r["same_answer_as_ours"] = mine == expected
                if mine != expected:
                    say(f"{name} {s}: answer differs from ours: {first_difference(expected, mine)}")
    for scenarios in http.values():
        for r in scenarios.values():
            if isinstance(r, dict):
                r.pop("answer_fingerprint", None)


# ------------------------------------------------------------------------ WebSocket scenarios


class Clients:
    """bench/ws_clients.py processes pinned to the client core, the subscriptions dealt
    out round-robin; commands go to every process and reports are merged."""

    def __init__(
        self, workdir: Path, tag: str, subscriptions: list[dict[str, Any]], processes: int = 1
    ) -> None:
        self.workdir = workdir
        self.tag = tag
        self.reports = 0
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        processes = max(1, min(processes, len(subscriptions)))
        for i in range(processes):
            name = tag if processes == 1 else f"{tag}-{i}"
            config = workdir / f"ws-{name}.json"
            config.write_text(json.dumps({"subscriptions": subscriptions[i::processes]}))
            log = workdir / f"ws-{name}.log"
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    ["taskset", "-c", CLIENT_CORES, sys.executable, "-m", "bench.ws_clients", str(config)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log.open("wb"),
                    cwd=ROOT,
                    text=True,
                )
            )

    def failure(self, line: Any) -> RuntimeError:
        tails = " | ".join(log.read_text()[-1000:] for log in self.logs)
        return RuntimeError(f"ws clients: {line!r} {tails}")

    def ready(self) -> tuple[int, int]:
        opened = failed = 0
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            if not line or line[0] != "READY":
                raise self.failure(line)
            opened, failed = opened + int(line[1]), failed + int(line[2])
        return opened, failed

    def ask(self, text: str) -> list[str]:
        """Send ``text`` to every process, then read one answer line of each."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
        lines = []
        for proc in self.procs:
            assert proc.stdout is not None
            lines.append(proc.stdout.readline().strip())
        return lines

    def command(self, text: str, expect: str) -> None:
        for line in self.ask(text):
            if line != expect:
                raise self.failure(line)

    def count(self) -> int:
        total = 0
        for line in self.ask("count"):
            if not line.startswith("COUNT "):
                raise self.failure(line)
            total += int(line.split()[1])
        return total

    def drain(self, most_seconds: float) -> None:
        """Wait until no delivery arrived for two seconds (at most ``most_seconds``): late
        deliveries count as late, not lost."""
        deadline = time.monotonic() + most_seconds
        last, still_since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.count()
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= 2.0:
                return

    def report(self, sent: list[dict[str, Any]]) -> dict[str, Any]:
        self.reports += 1
        sent_file = self.workdir / f"sent-{self.tag}-{self.reports}.json"
        sent_file.write_text(json.dumps(sent))
        outs = [
            self.workdir / f"report-{self.tag}-{self.reports}-{i}.json"
            for i in range(len(self.procs))
        ]
        for proc, out in zip(self.procs, outs, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(f"report {sent_file} {out}\n")
            proc.stdin.flush()
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "REPORTED":
                raise self.failure(line)
        return ws_clients.merge([json.loads(out.read_text()) for out in outs])

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    assert proc.stdin is not None
                    proc.stdin.write("quit\n")
                    proc.stdin.flush()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Sender:
    """A minimal HTTP/1.1 keep-alive client for the open-loop sender: httpx cost about a
    millisecond of the client core per request, which RT2's higher steps (hundreds of
    events a second, on the core that also receives) cannot afford."""

    def __init__(self, base: str, headers: dict[str, str], connections: int = 64) -> None:
        url = httpx.URL(base)
        self.host, self.port = url.host, url.port or 80
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.most = connections
        self.freed = asyncio.Condition()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        async with self.freed:
            # A connection the server closed while idle (its keep-alive timeout) is dropped.
            while self.idle and (self.idle[-1][0].at_eof() or self.idle[-1][1].is_closing()):
                self.idle.pop()[1].close()
                self.open -= 1
            while not self.idle and self.open >= self.most:
                await self.freed.wait()
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                self.open += 1
                try:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                except OSError:
                    self.open -= 1
                    raise
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.head}"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if length is None:
                raise OSError(f"no Content-Length in {head[:200]!r}")
            answer = await reader.readexactly(int(length.group(1)))
        except BaseException:
            writer.close()
            async with self.freed:
                self.open -= 1
                self.freed.notify()
            raise
        async with self.freed:
            self.idle.append((reader, writer))
            self.freed.notify()
        return status, answer

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def send_events(
    base: str,
    path: str,
    auth: str | None,
    rate: float,
    seconds: float,
    make: Any,
    start_n: int,
    max_wait: float,
) -> list[dict[str, Any]]:
    """Open-loop sender: one request every 1/rate s for ``seconds``; each event's text
    carries ``bench:<n>:<send time ns>``. Returns the events whose request succeeded."""
    sent: list[dict[str, Any]] = []
    failures: list[str] = []
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    sender = Sender(base, headers)

    async def one(n: int) -> None:
        ts = time.time_ns()
        body, group = make(n, f"bench:{n}:{ts}")
        try:
            status, text = await sender.post(path, json.dumps(body).encode())
            answer = json.loads(text)
            data = answer.get("data") or {}
            if (
                status != 200
                or answer.get("errors")
                or any(isinstance(v, dict) and v.get("errors") for v in data.values())
            ):
                failures.append(text[:300].decode(errors="replace"))
                return
            sent.append({"n": n, "ts": ts, "group": group})
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            failures.append(repr(error))

    tasks = []
    total = max(1, round(rate * seconds))
    t0 = time.monotonic()
    for i in range(total):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(start_n + i)))
    # Requests still unanswered long after the last send are given up: their events
    # do not count as sent (the step is then not held).
    _, pending = await asyncio.wait(tasks, timeout=max_wait) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    sender.close()
    if pending:
        failures.append(f"{len(pending)} requests unanswered {max_wait:.0f} s after the last send")
    if failures:
        say(f"  {len(failures)} sends failed, e.g. {failures[0]}")
    return sent


class HorizonWatch:
    """Samples, twice a second, the oldest open write transaction in the whole PostgreSQL
    cluster. Our event streams are read below the cluster-wide xid horizon (decision
    0002), so a long transaction in *any* database (another test run on a shared server)
    holds our deliveries back; the report shows it next to each RT measurement."""

    SQL = """
        SELECT datname, extract(epoch FROM now() - xact_start) AS age FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
        ORDER BY xact_start LIMIT 1
    """

    def __init__(self, db_url: str) -> None:
        self.dsn = datagen.asyncpg_dsn(db_url)
        self.worst: tuple[float, str | None] = (0.0, None)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            while not self.stop.is_set():
                row = await conn.fetchrow(self.SQL)
                if row is not None and row["age"] is not None and row["age"] > self.worst[0]:
                    self.worst = (float(row["age"]), row["datname"])
                await asyncio.sleep(0.5)
        finally:
            await conn.close()

    def take(self) -> dict[str, Any]:
        age, database = self.worst
        self.worst = (0.0, None)
        return {"oldest_write_transaction_s": round(age, 1), "in_database": database}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


class CoreBusy:
    """How busy a core was between ``__init__`` (or the last ``take``) and ``take``, in
    percent of its time (``/proc/stat``: everything but idle and iowait). The servers'
    core near 100 % means the servers (and whatever else ran there) had no time to spare:
    a latency tail then comes from waiting for the CPU, not from one slow step."""

    def __init__(self, core: str) -> None:
        self.core = f"cpu{core}"
        self.last = self._ticks()

    def _ticks(self) -> tuple[int, int]:
        for line in Path("/proc/stat").read_text().splitlines():
            fields = line.split()
            if fields[0] == self.core:
                ticks = [int(x) for x in fields[1:]]
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
        return 0, 0

    def take(self) -> float | None:
        (busy0, all0), (busy1, all1) = self.last, self._ticks()
        self.last = (busy1, all1)
        return round(100 * (busy1 - busy0) / (all1 - all0), 1) if all1 > all0 else None


def raise_open_files(needed: int, what: str) -> int:
    """Raise this process's RLIMIT_NOFILE (inherited by the servers and clients it spawns)
    to at least ``needed``; a clear error when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"{what} needs {needed} open files per process but the hard limit is {hard}: "
            "raise it (`ulimit -Hn`, /etc/security/limits.conf or the container's nofile "
            "limit) or run a smaller preset"
        )
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def start_rt_servers(
    server_name: str, facts: Facts, db_url: str, preset: Preset, workdir: Path, tag: str
) -> list[Server]:
    """The real-time scenarios' server processes, started in parallel: ours, the raw
    floor, or (``null``) the load generator's reference that only broadcasts."""
    count = 1 if server_name == "null" else preset.rt_processes
    spawned = []
    for i in range(count):
        if server_name == "ours":
            spawned.append(start_ours(db_url, workdir, f"{tag}-{i}", wait=False))
        elif server_name == "raw":
            spawned.append(
                start_raw(db_url, workdir, f"{tag}-{i}", facts.workspace, facts.admin, wait=False)
            )
        else:
            command = [sys.executable, "-m", "bench.null_fanout", "{port}"]
            spawned.append(spawn_pinned("null", f"{tag}-{i}", workdir, command, dict(os.environ), ROOT))
    return started_together(spawned)


class Chat:
    """RT1's subscribers and messages on one kind of server: ours speaks GraphQL with
    tokens and global ids; the raw floor (and the null server) take the user's id as the
    token and database ids, and send with ``POST /raw/send``."""

    def __init__(self, server_name: str, servers: list[Server], facts: Facts) -> None:
        self.ours = server_name == "ours"
        self.servers = servers
        self.facts = facts
        self.tokens: dict[uuid.UUID, str] = {}

    def token(self, user: uuid.UUID, email: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = login(self.servers[0].base, email) if self.ours else str(user)
        return self.tokens[user]

    def conversation(self, conversation: uuid.UUID) -> str:
        return to_global_id("Conversation", conversation) if self.ours else str(conversation)

    def url(self, k: int) -> str:
        return f"ws://127.0.0.1:{self.servers[k % len(self.servers)].port}/graphql"

    def sender(self) -> tuple[str, str | None]:
        if self.ours:
            return "/graphql", "Bearer " + self.token(self.facts.admin, self.facts.admin_email)
        return "/raw/send", None


def rt1(
    server_name: str,
    facts: Facts,
    db_url: str,
    preset: Preset,
    workdir: Path,
    sockets: int | None = None,
) -> dict[str, Any]:
    """Live chat: conversationEvents x3 per conversation + inbox subscribers per agent,
    over two server processes; messages sent at a fixed rate to the first process.
    ``sockets`` (RT1X): quiet sockets added up to that many, each following a conversation
    no message is sent to (as the admin), dealt over the processes like the others."""
    scenario = "RT1X" if sockets else "RT1"
    tag = f"{scenario.lower()}-{server_name}"
    convs = facts.rt_conversations[: preset.rt1_conversations]
    servers = start_rt_servers(server_name, facts, db_url, preset, workdir, tag)
    chat = Chat(server_name, servers, facts)
    clients = None
    try:
        agents = sorted({a for _, a in convs})
        subs: list[dict[str, Any]] = []
        conv_doc, inbox_doc = document("rt1_conversation"), document("rt1_inbox")
        k = 0
        for index, (conv, agent) in enumerate(convs):
            for _ in range(preset.rt1_subscribers_per_conversation):
                subs.append(
                    {
                        "url": chat.url(k),
                        "token": chat.token(agent, facts.agent_emails[agent]),
                        "query": conv_doc,
                        "variables": {"conversationId": chat.conversation(conv)},
                        "groups": [index],
                    }
                )
                k += 1
        for i in range(preset.rt1_inbox_subscribers):
            agent = agents[i % len(agents)]
            groups = [index for index, (_, a) in enumerate(convs) if a == agent]
            subs.append(
                {
                    "url": chat.url(k),
                    "token": chat.token(agent, facts.agent_emails[agent]),
                    "query": inbox_doc,
                    "variables": {},
                    "groups": groups,
                }
            )
            k += 1
        active = len(subs)
        if sockets:
            sending = {c for c, _ in convs}
            quiet = [c for c in facts.conversations if c not in sending]
            if not quiet:
                raise RuntimeError("RT1X: the data set has no conversation beyond RT1's")
            admin = chat.token(facts.admin, facts.admin_email)
            for i in range(max(0, sockets - active)):
                subs.append(
                    {
                        "url": chat.url(k),
                        "token": admin,
                        "query": conv_doc,
                        "variables": {"conversationId": chat.conversation(quiet[i % len(quiet)])},
                        "groups": [],
                    }
                )
                k += 1
        clients = Clients(workdir, tag, subs, preset.client_processes)
        opened, failed = clients.ready()
        say(
            f"{scenario} {server_name}: {opened} subscribers ready ({failed} failed) on "
            f"{len(servers)} processes, {len(clients.procs)} client processes"
        )
        rss_before = [rss_kib(s.proc.pid) for s in servers]
        path, auth = chat.sender()
        doc = document("m1_send_message")

        def make(n: int, mark: str) -> tuple[dict[str, Any], int]:
            index = n % len(convs)
            variables = {"conversationId": chat.conversation(convs[index][0]), "body": f"RT1 {mark}"}
            if not chat.ours:
                variables["assignee"] = str(convs[index][1])  # the null server's inbox
                return {"variables": variables}, index
            return {"query": doc, "variables": variables}, index

        # Warm-up at the same rate, not counted (like the HTTP runs' warm-up): the first
        # messages of a fresh process prepare statements and fill caches.
        warm = uvloop.run(
            send_events(
                servers[0].base,
                path,
                auth,
                preset.rt1_rate,
                preset.warmup,
                make,
                1_000_000,
                preset.drain_seconds,
            )
        )
        clients.drain(preset.drain_seconds)
        say(f"{scenario} {server_name}: warm-up of {preset.warmup:g} s done ({len(warm)} messages, not counted)")
        clients.command("reset", "RESET")
        cpu0 = [cpu_seconds(s.proc.pid) for s in servers]
        t0 = time.monotonic()
        watch = HorizonWatch(db_url)
        core = CoreBusy(SERVER_CORE)
        sent = uvloop.run(
            send_events(
                servers[0].base,
                path,
                auth,
                preset.rt1_rate,
                preset.rt1_seconds,
                make,
                1,
                preset.drain_seconds,
            )
        )
        clients.drain(preset.drain_seconds)
        wall = time.monotonic() - t0
        watch.close()
        result = clients.report(sent)
        result.update(
            **watch.take(),
            server_core_busy_percent=core.take(),
            rate_per_s=preset.rt1_rate,
            seconds=preset.rt1_seconds,
            warmup_seconds=preset.warmup,
            subscribers_failed=failed,
            active_subscribers=active,
            server_processes=len(servers),
            server_cpu_percent=[
                round(100 * (cpu_seconds(s.proc.pid) - c) / wall, 1)
                for s, c in zip(servers, cpu0, strict=True)
            ],
            # Per message sent, each process (the first one also runs every send):
            # both share one core, so their sum must stay well under 1000 / rate ms.
            server_cpu_ms_per_message=[
                round(1000 * (cpu_seconds(s.proc.pid) - c) / len(sent), 2) if sent else None
                for s, c in zip(servers, cpu0, strict=True)
            ],
            rss_kib=[rss_kib(s.proc.pid) for s in servers],
            rss_before_send_kib=rss_before,
            loadavg=os.getloadavg()[0],
        )
        say(
            f"{scenario} {server_name}: {result['deliveries']}/{result['deliveries_expected']} delivered, "
            f"lost {result['lost']}, dup {result['duplicates']}, p99 {result['latency_ms']['p99']} ms, "
            f"client CPU {result['client_cpu_percent']}%, servers' core {result['server_core_busy_percent']}% busy, "
            f"load {result['loadavg']:.1f}"
        )
        return result
    finally:
        if clients:
            clients.close()
        for s in servers:
            s.stop()


def rt2_plan(server_name: str, ladder: tuple[float, ...], floor: dict[str, Any] | None) -> list[float]:
    """The rates a server is stepped through: the ladder; for ours also the target step
    (``RT2_SHARE`` of the floor's highest held rate) when the ladder lacks it; for the
    null server the ladder up to the step the floor failed (all it has to show is that
    the load generator holds that step)."""
    steps = list(ladder)
    if floor is None:
        return steps
    if server_name == "ours" and floor["highest_rate_held"]:
        target = round(RT2_SHARE * floor["highest_rate_held"], 1)
        if target not in steps:
            steps = sorted({*steps, target})
    if server_name == "null":
        failed = floor.get("first_rate_failed")
        steps = [r for r in steps if failed is None or r < failed]
        steps += [] if failed is None else [failed]
    return steps


def halfway(steps: list[dict[str, Any]]) -> float | None:
    """The floor's one refining step: halfway between its highest held rate and the rate
    it failed, when the ladder left more than a third of a gap (20 and 50: 35)."""
    held = [s["rate_per_s"] for s in steps if s["held"]]
    failed = [s["rate_per_s"] for s in steps if not s["held"]]
    if not held or not failed or failed[-1] <= max(held) * 1.5:
        return None
    return float(round((max(held) + failed[-1]) / 2))


def rt2(
    server_name: str,
    facts: Facts,
    db_url: str,
    preset: Preset,
    workdir: Path,
    floor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Broadcast: activityFeed subscribers over two processes, the event rate stepped up
    the ladder. The raw floor stops at its first failed step, after one more step halfway
    between it and the last held one when the ladder's gap is wide (``halfway``; its
    capacity is its highest held step); ours stops after two failed steps in a row, a
    step far past capacity (more than half lost), or the step the floor failed; ``null``
    (the load generator's own ceiling) runs up to the step the floor failed."""
    servers = start_rt_servers(server_name, facts, db_url, preset, workdir, f"rt2-{server_name}")
    clients = None
    try:
        agents = sorted(facts.agent_emails)[: min(10, preset.rt2_subscribers)]
        tokens = (
            [login(servers[0].base, facts.agent_emails[a]) for a in agents]
            if server_name == "ours"
            else ["-"]
        )
        doc = document("rt2_activity_feed")
        subs = [
            {
                "url": f"ws://127.0.0.1:{servers[i % len(servers)].port}/graphql",
                "token": tokens[i % len(tokens)],
                "query": doc,
                "variables": {},
                "groups": [0],
            }
            for i in range(preset.rt2_subscribers)
        ]
        clients = Clients(workdir, f"rt2-{server_name}", subs, preset.client_processes)
        opened, failed = clients.ready()
        say(f"RT2 {server_name}: {opened} subscribers ready ({failed} failed)")
        auth = (
            "Bearer " + login(servers[0].base, facts.admin_email) if server_name == "ours" else None
        )
        path = "/graphql" if server_name == "ours" else "/raw/publish"
        create = document("m1_create_activity")
        customer = to_global_id("Customer", facts.customers[0])

        def make(n: int, mark: str) -> tuple[dict[str, Any], int]:
            if server_name == "ours":
                return {
                    "query": create,
                    "variables": {"customerId": customer, "subject": f"RT2 {mark}"},
                }, 0
            return {"variables": {"subject": f"RT2 {mark}"}}, 0

        steps = []
        n = 1
        clients.command("reset", "RESET")
        watch = HorizonWatch(db_url)
        failed_in_a_row = 0
        plan = rt2_plan(server_name, preset.rt2_steps, floor)
        while plan:
            rate = plan.pop(0)
            cpu0 = [cpu_seconds(s.proc.pid) for s in servers]
            core = CoreBusy(SERVER_CORE)
            t0 = time.monotonic()
            t0_ns = time.time_ns()
            sent = uvloop.run(
                send_events(
                    servers[0].base,
                    path,
                    auth,
                    rate,
                    preset.rt2_step_seconds,
                    make,
                    n,
                    preset.drain_seconds,
                )
            )
            n += round(rate * preset.rt2_step_seconds) + 1
            clients.drain(preset.drain_seconds)
            wall = time.monotonic() - t0
            step = clients.report(sent)
            step.update(
                **watch.take(),
                server_core_busy_percent=core.take(),
                rate_per_s=rate,
                # Over the time from the first send to the last delivery (not the send
                # window: a server that falls behind keeps delivering after it).
                deliveries_per_s=round(
                    step["deliveries"]
                    / max(
                        preset.rt2_step_seconds, ((step["last_receipt_ns"] or t0_ns) - t0_ns) / 1e9
                    ),
                    1,
                ),
                server_cpu_percent=[
                    round(100 * (cpu_seconds(s.proc.pid) - c) / wall, 1)
                    for s, c in zip(servers, cpu0, strict=True)
                ],
                loadavg=os.getloadavg()[0],
            )
            p99 = step["latency_ms"]["p99"]
            step["held"] = bool(
                step["lost"] == 0
                and step["duplicates"] == 0
                and p99 is not None
                and p99 < 250
                and len(sent) == round(rate * preset.rt2_step_seconds)
            )
            steps.append(step)
            say(
                f"RT2 {server_name} {rate}/s: {step['deliveries_per_s']} deliveries/s, p50 {step['latency_ms']['p50']} "
                f"p99 {p99} ms, lost {step['lost']}, held {step['held']}, client CPU {step['client_cpu_percent']}%, "
                f"server CPU {step['server_cpu_percent']}%, load {step['loadavg']:.1f}"
            )
            failed_in_a_row = 0 if step["held"] else failed_in_a_row + 1
            if step["held"]:
                continue
            if server_name == "raw":
                # The ladder's gap at the floor's failure is refined once (halfway), then
                # the floor stops.
                middle = halfway(steps) if failed_in_a_row == 1 and len(steps) > 1 else None
                if middle is not None and middle not in [s["rate_per_s"] for s in steps]:
                    plan = [middle]
                    continue
                break
            if failed_in_a_row >= 2:
                break
            if step["lost"] > step["deliveries_expected"] * 0.5:
                break  # far past capacity: higher steps only pile up
            if floor and floor.get("first_rate_failed") and rate >= floor["first_rate_failed"]:
                break
        watch.close()
        held = [s["rate_per_s"] for s in steps if s["held"]]
        not_held = [s["rate_per_s"] for s in steps if not s["held"]]
        return {
            "subscribers": opened,
            "subscribers_failed": failed,
            "steps": steps,
            "highest_rate_held": max(held) if held else 0,
            "first_rate_failed": min(not_held) if not_held else None,
        }
    finally:
        if clients:
            clients.close()
        for s in servers:
            s.stop()


def rt2_all(
    servers: Sequence[str], facts: Facts, db_url: str, preset: Preset, workdir: Path
) -> dict[str, Any]:
    """The raw floor first (its capacity decides ours' target step), then ours, then the
    null server up to the step the floor failed (is the load generator the limit?)."""
    out: dict[str, Any] = {}
    if "raw" in servers:
        out["raw"] = rt2("raw", facts, db_url, preset, workdir)
    if "ours" in servers:
        out["ours"] = rt2("ours", facts, db_url, preset, workdir, out.get("raw"))
    if "raw" in servers and out["raw"]["first_rate_failed"] is not None:
        out["null"] = rt2("null", facts, db_url, preset, workdir, out["raw"])
    return out


def idle_memory(
    server_name: str, facts: Facts, db_url: str, preset: Preset, workdir: Path
) -> dict[str, Any]:
    """RSS per idle subscribed socket of one server process: ours, or the raw floor."""
    if server_name == "ours":
        server = start_ours(db_url, workdir, "idle")
    else:
        server = start_raw(db_url, workdir, "idle", facts.workspace, facts.admin)
    clients = None
    try:
        token = login(server.base, facts.admin_email) if server_name == "ours" else "-"
        spec = {
            "url": f"ws://127.0.0.1:{server.port}/graphql",
            "token": token,
            "query": document("rt2_activity_feed"),
            "variables": {},
            "groups": [0],
        }
        # Warm the process first (schema, pools) with a burst of subscribers like the one
        # measured, so that what grows once (database pools opened to their size by
        # concurrent connects) is not counted per socket; then measure N more.
        warm = Clients(
            workdir,
            f"idle-warm-{server_name}",
            [spec] * min(IDLE_WARM_SOCKETS, preset.idle_sockets),
            preset.client_processes,
        )
        warm.ready()
        time.sleep(1)
        before = rss_kib(server.proc.pid)
        clients = Clients(
            workdir, f"idle-{server_name}", [spec] * preset.idle_sockets, preset.client_processes
        )
        opened, failed = clients.ready()
        time.sleep(2)
        after = rss_kib(server.proc.pid)
        warm.close()
        per = (after - before) / max(1, opened)
        say(
            f"idle {server_name}: {opened} subscribed sockets: RSS {before} -> {after} KiB, "
            f"{per:.1f} KiB each"
        )
        return {
            "sockets": opened,
            "failed": failed,
            "warm_sockets": min(IDLE_WARM_SOCKETS, preset.idle_sockets),
            "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_connection": round(per, 1),
            "loadavg": os.getloadavg()[0],
        }
    finally:
        if clients:
            clients.close()
        server.stop()


def startup(workdir: Path) -> dict[str, Any]:
    """Embedded mode: spawn `crm-graphql serve` without database/Redis URLs, time until
    /readyz answers 200: a first start with ``--migrate`` in a new data dir (initdb and
    migrations included), then a plain restart on the same data dir (the target)."""
    data = workdir / "embedded-data"
    times = []
    for attempt, extra in (("first", ["--migrate"]), ("second", [])):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        env.update(CRM_DATA_DIR=str(data))
        port = free_port()
        log = workdir / f"startup-{attempt}.log"
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [str(VENV_BIN / "crm-graphql"), "serve", "--port", str(port), *extra],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        server = Server("embedded", proc, port, log)
        try:
            wait_ready(server, "/readyz", timeout=120)
            times.append(round(time.monotonic() - t0, 2))
        finally:
            server.stop()
    say(f"startup (embedded): first {times[0]} s, second {times[1]} s")
    return {"first_start_s": times[0], "second_start_s": times[1]}


# ------------------------------------------------------------------------ report


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def rt_by_server(figures: dict[str, Any] | None) -> dict[str, Any]:
    """RT1/RT1X figures by server (results before the raw floor ran RT1 held ours' only)."""
    if not figures:
        return {}
    return {"ours": figures} if "latency_ms" in figures else figures


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    http = result["http"]
    ours, raw, pgl = http.get("ours", {}), http.get("raw", {}), http.get("postgraphile", {})
    targets = []

    def add(name: str, value: Any, goal: str, met: bool | None, note: str = "") -> None:
        targets.append(
            {
                "target": name,
                "value": value,
                "goal": goal,
                "status": "n/a" if met is None else ("met" if met else "missed"),
                "note": note,
            }
        )

    for s in ("Q1", "Q2"):
        if s not in ours:
            continue
        r = ratio(ours.get(s, {}).get("req_per_s"), pgl.get(s, {}).get("req_per_s"))
        add(
            f"{s} throughput vs PostGraphile",
            r,
            ">= 0.5x",
            None if r is None else r >= 0.5,
            f"ours/raw floor {ratio(ours.get(s, {}).get('req_per_s'), raw.get(s, {}).get('req_per_s'))}",
        )
    q3 = ours.get("Q3", {}).get("p50_ms")
    if "Q3" in ours:
        add(
            "Q3 node(id) p50",
            q3,
            "< 5 ms",
            None if q3 is None else q3 < 5,
            f"wrk -c{CONNECTIONS['Q3']}",
        )
    at10 = result["scale"] >= 10
    q4 = ours.get("Q4", {}).get("p95_ms")
    if "Q4" in ours:
        add(
            "Q4 filtered list p95",
            q4,
            "< 50 ms at S=10",
            None if q4 is None or not at10 else q4 < 50,
            "" if at10 else f"measured at S={result['scale']:g}, target is for S=10",
        )
    for s in ISSUE13_P95_MS:
        if s not in ours:
            continue
        p95, goal = ours[s].get("p95_ms"), ISSUE13_P95_MS[s]
        add(
            f"{ISSUE13_TITLES[s]} p95",
            p95,
            f"< {goal} ms at S=10",
            None if p95 is None or not at10 else p95 < goal,
            f"wrk -c{CONNECTIONS[s]}"
            + ("" if at10 else f"; measured at S={result['scale']:g}, target is for S=10"),
        )
        share = ratio(ours[s].get("req_per_s"), raw.get(s, {}).get("req_per_s"))
        same = raw.get(s, {}).get("same_answer_as_ours")
        add(
            f"{s} throughput vs its SQL floor",
            share,
            f">= {ISSUE13_FLOOR_SHARE}x",
            None if share is None else share >= ISSUE13_FLOOR_SHARE,
            f"floor bench/floors/{ISSUE13_DOCUMENTS[s]}.sql on the raw floor server; "
            f"same answer: {'–' if same is None else 'yes' if same else '**no**'}",
        )
    for s in PAGE_SCENARIOS:
        if s not in ours:
            continue
        share = ratio(ours[s].get("req_per_s"), raw.get(s, {}).get("req_per_s"))
        same = raw.get(s, {}).get("same_answer_as_ours")
        add(
            f"{PAGE_TITLES[s]} throughput vs its SQL floor",
            share,
            f">= {PAGE_FLOOR_SHARE}x",
            None if share is None else share >= PAGE_FLOOR_SHARE,
            f"floor bench/floors/{PAGE_DOCUMENTS[s]}.sql on the raw floor server; "
            f"same answer: {'–' if same is None else 'yes' if same else '**no**'}",
        )
        pg_share = ratio(ours[s].get("req_per_s"), pgl.get(s, {}).get("req_per_s"))
        pg_same = pgl.get(s, {}).get("same_answer_as_ours")
        add(
            f"{s} throughput vs PostGraphile",
            pg_share,
            f">= {PAGE_POSTGRAPHILE_SHARE}x",
            None if pg_share is None else pg_share >= PAGE_POSTGRAPHILE_SHARE,
            PAGE_NO_POSTGRAPHILE.get(s)
            or f"same answer (names, titles, amounts, counts): "
            f"{'–' if pg_same is None else 'yes' if pg_same else '**no**'}",
        )
    for key, title in (("rt1", "RT1 live chat"), ("rt1x", "RT1X live chat, many sockets")):
        for name, r in rt_by_server(result.get(key)).items():
            p99 = r["latency_ms"]["p99"]
            attempted = round(r["rate_per_s"] * r["seconds"])
            held = (
                p99 is not None
                and p99 < RT1X_P99_MS
                and r["lost"] == 0
                and r["duplicates"] == 0
                and r["events_sent"] == attempted
                and not r.get("subscribers_failed")
            )
            add(
                f"{title} ({name}, {r['subscribers']} sockets)",
                f"p99 {p99} ms, lost {r['lost']}, dup {r['duplicates']}, "
                f"{r['events_sent']} of {attempted} sends answered",
                f"p99 < {RT1X_P99_MS} ms, 0 lost, 0 dup, every send answered",
                held if name == "ours" else None,
                f"load {r['loadavg']:.1f}; " * ("loadavg" in r)
                + f"servers' core {r.get('server_core_busy_percent')} % busy; "
                * (r.get("server_core_busy_percent") is not None)
                + (
                    "the raw floor, for comparison; "
                    if name == "raw"
                    else f"sends unanswered {result['preset_values']['drain_seconds']:g} s after "
                    "the last one are given up; lost = not delivered by the end of the drain"
                ),
            )
    rt2r = result.get("rt2", {})
    if "ours" in rt2r:
        o = rt2r["ours"]["highest_rate_held"]
        floor = rt2r.get("raw")
        r = floor["highest_rate_held"] if floor else None
        found = floor is not None and floor.get("first_rate_failed") is not None
        generator = rt2r.get("null")
        generator_held = (
            generator is not None
            and found
            and any(s["held"] and s["rate_per_s"] >= floor["first_rate_failed"] for s in generator["steps"])
        )
        note = (
            "the floor held every step up to the ceiling: capacity not found"
            if floor and not found
            else f"the floor failed {floor['first_rate_failed']}/s; the load generator alone "
            f"(null server) {'held' if generator_held else '**did not hold**'} that step"
            if floor
            else "no raw floor run"
        )
        add(
            "RT2 highest rate held vs raw floor",
            f"{o}/s vs {r}/s ({fmt(ratio(o, r)) if o and r else '–'}x)",
            f">= {RT2_SHARE}x, 0 lost, floor stepped until it failed",
            None if not r or not found else o >= RT2_SHARE * r,
            note,
        )
    idle = result.get("idle") or (
        {"ours": result["idle_memory"]} if result.get("idle_memory") else {}
    )
    if "ours" in idle:
        ours_kib = idle["ours"]["kib_per_connection"]
        add(
            "memory per idle subscribed connection",
            f"{ours_kib} KiB",
            "<= 100 KiB",
            ours_kib <= 100,
        )
        raw_kib = idle.get("raw", {}).get("kib_per_connection")
        if raw_kib is not None:
            share = round(ours_kib / raw_kib, 2) if raw_kib > 0 else None
            add(
                "memory per idle socket vs raw floor",
                f"{ours_kib} vs {raw_kib} KiB ({fmt(share)}x)",
                f"<= {IDLE_SHARE}x, same run",
                None if share is None else share <= IDLE_SHARE,
                f"{idle['ours']['sockets']} sockets each, one process",
            )
    st = result.get("startup")
    if st:
        add(
            "embedded serve ready",
            f"{st['second_start_s']} s (first start with initdb {st['first_start_s']} s)",
            "< 5 s",
            st["second_start_s"] < 5,
            "judged on a start with an existing data dir",
        )
    return targets


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"
    return str(value)


def horizon(figures: dict[str, Any]) -> str:
    age = figures.get("oldest_write_transaction_s")
    if age is None:
        return "–"
    return f"{age} s ({figures['in_database']})" if figures.get("in_database") else f"{age} s"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [
        f"# Benchmark results ({result['preset']}, {result['started_at']})",
        "",
        f"Machine: {m['hostname']}, {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, PostgreSQL {m['postgresql']}, Node {m['node']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}. Scale S={result['scale']:g}. "
        f"Servers on core {SERVER_CORE}, load generator on core {CLIENT_CORE} (`taskset`); PostgreSQL and Redis unpinned.",
        "",
        "## HTTP scenarios",
        "",
        "| scenario | server | req/s | p50 ms | p95 ms | p99 ms | SQL/req (+ctl) | RSS MiB | server CPU % | errors | same answer as ours | ours/raw | ours/PostGraphile |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    http = result["http"]
    for s in HTTP_SCENARIOS:
        for name in ("ours", "raw", "postgraphile"):
            r = http.get(name, {}).get(s)
            if not r or "req_per_s" not in r:
                continue
            ours = http.get("ours", {}).get(s, {}).get("req_per_s")
            rr = http.get("raw", {}).get(s, {}).get("req_per_s")
            pg = http.get("postgraphile", {}).get(s, {}).get("req_per_s")
            out.append(
                f"| {s} | {name} | {fmt(r['req_per_s'])} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | "
                f"{fmt(r['sql_per_request'])} (+{fmt(r['tx_control_per_request'])}) | {fmt(r['rss_kib'] / 1024)} | "
                f"{fmt(r['server_cpu_percent'])} | {r['errors']} | {fmt(r.get('same_answer_as_ours'))} | "
                f"{fmt(ratio(ours, rr)) if name == 'ours' else ''} | {fmt(ratio(ours, pg)) if name == 'ours' else ''} |"
            )
    for key, title in (("rt1", "RT1 live chat"), ("rt1x", "RT1X live chat, many sockets")):
        rows = rt_by_server(result.get(key))
        if not rows:
            continue
        out += [
            "",
            f"## {title}",
            "",
            "| server | sockets (active) | msgs/s | sends answered | deliveries | expected | lost | dup | p50 ms | p95 ms | p99 ms | server CPU % | CPU ms/msg | servers' core busy % | client CPU % | load | oldest write tx in cluster |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|",
        ]
        for name, r in rows.items():
            out.append(
                f"| {name} | {r['subscribers']} ({r.get('active_subscribers', r['subscribers'])}) | "
                f"{r['rate_per_s']} | {r['events_sent']} of {round(r['rate_per_s'] * r['seconds'])} | "
                f"{r['deliveries']} | {r['deliveries_expected']} | {r['lost']} | "
                f"{r['duplicates']} | {fmt(r['latency_ms']['p50'])} | {fmt(r['latency_ms']['p95'])} | "
                f"{fmt(r['latency_ms']['p99'])} | {r['server_cpu_percent']} | {r.get('server_cpu_ms_per_message')} | "
                f"{fmt(r.get('server_core_busy_percent'))} | {r['client_cpu_percent']} | {fmt(r.get('loadavg'))} | {horizon(r)} |"
            )
        first = next(iter(rows.values()))
        if first.get("warmup_seconds"):
            out += [
                "",
                f"Measured after a warm-up of {first['warmup_seconds']:g} s at the same rate (not counted). "
                "CPU ms/msg: server CPU per message sent, per process (the first one also runs every send; "
                f"both on core {SERVER_CORE}). Servers' core busy: that core's time not idle during the "
                "measurement, whatever ran there; near 100 %, a latency tail is time spent waiting for the CPU."
                + (
                    " Active sockets follow the conversations messages are sent to (and the agents' "
                    "inboxes); the others follow a conversation nothing is sent to."
                    if key == "rt1x"
                    else ""
                ),
            ]
    if result.get("rt2"):
        out += [
            "",
            "## RT2 broadcast capacity",
            "",
            "| server | events/s | sends answered | deliveries/s | p50 ms | p99 ms | lost | dup | held | server CPU % | servers' core busy % | client CPU % | load | oldest write tx in cluster |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|",
        ]
        for name, r in result["rt2"].items():
            label = "load generator alone (null server)" if name == "null" else name
            for st in r["steps"]:
                out.append(
                    f"| {label} ({r['subscribers']} subs) | {st['rate_per_s']} | {st['events_sent']} of "
                    f"{round(st['rate_per_s'] * result['preset_values']['rt2_step_seconds'])} | {fmt(st['deliveries_per_s'])} | "
                    f"{fmt(st['latency_ms']['p50'])} | {fmt(st['latency_ms']['p99'])} | {st['lost']} | "
                    f"{st['duplicates']} | {'yes' if st['held'] else 'no'} | {st['server_cpu_percent']} | "
                    f"{fmt(st.get('server_core_busy_percent'))} | {st['client_cpu_percent']} | {fmt(st.get('loadavg'))} | {horizon(st)} |"
                )
            out.append(
                f"| {label}: highest rate held | {r['highest_rate_held']} | | | | | | | | | | | | |"
            )
    idle = result.get("idle") or (
        {"ours": result["idle_memory"]} if result.get("idle_memory") else {}
    )
    if idle:
        out += [
            "",
            "## Idle subscribed sockets (one process)",
            "",
            "| server | sockets | RSS before KiB | RSS after KiB | KiB per socket | load |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, r in idle.items():
            out.append(
                f"| {name} | {r['sockets']} | {r['rss_before_kib']} | {r['rss_after_kib']} | "
                f"{r['kib_per_connection']} | {fmt(r.get('loadavg'))} |"
            )
    out += [
        "",
        "## Targets",
        "",
        "| target | measured | goal | status | note |",
        "|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        out.append(
            f"| {t['target']} | {fmt(t['value'])} | {t['goal']} | **{t['status']}** | {t['note']} |"
        )
    out += ["", *result.get("notes", [])]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--servers", default="ours,raw,postgraphile")
    parser.add_argument(
        "--scenarios",
        default="Q1,Q2,Q3,Q4,S1,S2,S3,S4,S5,CF1,P1,P2,P3,P4,M1,RT1,RT1X,RT2,IDLE,STARTUP",
    )
    parser.add_argument("--scale", type=float, default=None, help="override the preset's scale")
    parser.add_argument("--seed", type=int, default=42, help="data set seed (default 42)")
    parser.add_argument(
        "--drop-data", action="store_true", help="drop the data set's database at the end"
    )
    parser.add_argument(
        "--server-url", default=PG_SERVER, help="PostgreSQL server (TCP) for the bench database"
    )
    parser.add_argument(
        "--redis-url", default=None, help=f"Redis for the servers (default {DEFAULT_REDIS_URL})"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-results-md", action="store_true", help="do not rewrite bench/RESULTS.md"
    )
    parser.add_argument(
        "--render", type=Path, default=None, help="only re-render a result JSON as markdown"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        result["targets"] = evaluate(result)
        table = markdown(result)
        args.render.with_suffix(".md").write_text(table)
        if not args.no_results_md:
            (BENCH / "RESULTS.md").write_text(table)
        print(table)
        return dict(result)
    preset = PRESETS[args.preset]
    Services.redis_url = args.redis_url or DEFAULT_REDIS_URL
    # The runner sends RT events itself: it belongs on the load generator's core (the
    # servers it spawns are pinned to theirs by taskset).
    with contextlib.suppress(OSError, ValueError):
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    if args.scale is not None:
        preset = Preset(**{**asdict(preset), "scale": args.scale})
    servers = [s for s in args.servers.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    notes: list[str] = []
    if "postgraphile" in servers and postgraphile_bin() is None:
        servers.remove("postgraphile")
        notes.append(
            "PostGraphile skipped: bench/postgraphile/node_modules missing (run `npm ci --prefix bench/postgraphile`)."
        )
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "preset": args.preset,
        "started_at": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "scale": preset.scale,
        "preset_values": asdict(preset),
        "machine": machine_info(),
        "servers": servers,
        "http": {},
        "notes": notes,
    }
    say(f"preset {args.preset}: S={preset.scale:g}, servers {servers}")
    db_url = datagen.ensure_dataset(args.server_url, preset.scale, args.seed, say=say)
    try:
        return run_all(args, preset, servers, scenarios, result, notes, db_url, started)
    finally:
        if args.drop_data:
            datagen.drop_dataset(args.server_url, preset.scale, args.seed)


def run_all(
    args: argparse.Namespace,
    preset: Preset,
    servers: list[str],
    scenarios: list[str],
    result: dict[str, Any],
    notes: list[str],
    db_url: str,
    started: datetime,
) -> dict[str, Any]:
    facts = asyncio.run(load_facts(db_url))
    result["machine"]["postgresql"] = facts.server_version
    upstream = make_url(args.server_url)
    proxy = CountingProxy(upstream.host or "127.0.0.1", upstream.port or 5432)
    proxy.start()
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        workdir = Path(tmp)
        try:
            http_list = [s for s in scenarios if s in HTTP_SCENARIOS]
            if http_list:
                result["http"] = http_scenarios(
                    servers, http_list, facts, db_url, preset, workdir, proxy
                )
            rt_servers = [name for name in ("ours", "raw") if name in servers]
            if "RT1" in scenarios and rt_servers:
                result["rt1"] = {
                    name: rt1(name, facts, db_url, preset, workdir) for name in rt_servers
                }
            if "RT1X" in scenarios and rt_servers:
                # Every socket is a file descriptor in a client process and in a server
                # process; the runner's limit is inherited by both.
                result["rt1x_open_files"] = raise_open_files(
                    preset.rt1x_sockets + 1024, f"RT1X ({preset.rt1x_sockets} sockets)"
                )
                result["rt1x"] = {
                    name: rt1(name, facts, db_url, preset, workdir, preset.rt1x_sockets)
                    for name in rt_servers
                }
            if "RT2" in scenarios and rt_servers:
                result["rt2"] = rt2_all(rt_servers, facts, db_url, preset, workdir)
            if "IDLE" in scenarios and rt_servers:
                raise_open_files(preset.idle_sockets + 1024, f"IDLE ({preset.idle_sockets} sockets)")
                result["idle"] = {
                    name: idle_memory(name, facts, db_url, preset, workdir) for name in rt_servers
                }
                if "ours" in result["idle"]:  # the key earlier results used
                    result["idle_memory"] = result["idle"]["ours"]
            if "STARTUP" in scenarios and preset.startup:
                result["startup"] = startup(workdir)
        except Exception:
            say("failed; see the logs below")
            raise
        finally:
            proxy.stop()
            # Server, client and sender logs, request bodies and per-step reports.
            keep = args.out / f"{started.strftime('%Y%m%dT%H%M%SZ')}-logs"
            shutil.copytree(
                workdir, keep, ignore=shutil.ignore_patterns("crm-data", "embedded-data")
            )
            say(f"logs in {keep}")
    result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    notes += [
        "Load: wrk (Debian 4.1.0) with bench/loadgen/bodies.lua, 1 thread; -c16 for Q1, Q2, P1-P4, M1 (throughput), "
        "-c4 for Q3, Q4, S1-S5, CF1 (latency targets); fixed duration after a warm-up run.",
        "S1-S5 and CF1 (issue 13) are compared with their hand-written SQL floors (bench/floors/, served by the "
        "raw floor server): same answer = every value of the first three answers but ids, cursors and "
        "drill-down filters, numbers compared as numbers. PostGraphile has no equivalent of them.",
        "P1-P4 (issue 14's pages: list page with `me`, an agent's inbox, a customer page, a deal board; "
        "wrk -c16) are compared with their hand-written SQL floors (bench/floors/p*.sql) value by value as "
        "S1-S5, and with PostGraphile (P1 with `me` as a user looked up by id, P3, P4; not P2) by names, "
        "titles, amounts and counts as Q1-Q4.",
        "SQL/req: counted in a separate pass through a PostgreSQL wire-protocol proxy (bench/pgcount.py): "
        "Query and Execute messages; transaction control, pool pings and pool resets (BEGIN/COMMIT/SET, `;`, "
        "asyncpg's reset) shown apart as +ctl.",
        "PostGraphile 4.14.1 (v5.1.5 failed on this database, see the decision record) with pg-simplify-inflector "
        "and connection-filter; tenant predicate as `condition: {workspaceId}`; purchaseSummary as a SQL computed column. "
        "No M1 or subscriptions for PostGraphile (its CRUD mutations are not equivalent).",
    ]
    load = result["machine"]["loadavg_at_start"][0]
    if load > 0.5:
        notes.insert(
            0,
            f"**Noisy run**: other work was running on the machine (load average {load:.2f} at "
            "the start, for 2 cores); compare ratios from one run rather than absolute numbers.",
        )
    result["targets"] = evaluate(result)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path = args.out / f"{stamp}.json"
    json_path.write_text(json.dumps(result, indent=2, default=str))
    table = markdown(result)
    (args.out / f"{stamp}.md").write_text(table)
    if not args.no_results_md:
        (BENCH / "RESULTS.md").write_text(table)
    print(table)
    say(f"wrote {json_path}")
    return result


if __name__ == "__main__":
    main()
