"""Server CPU per mutation of the M1 mix, per kind (issue 14, point 4).

Starts one ``crm-graphql serve`` on the bench data set (as ``bench.run`` starts ours),
then, for each of M1's three mutations in turn, sends N requests from a few concurrent
keep-alive clients and divides the server process's CPU time (user + system, from
``/proc``) by N. CPU time is what the process itself spent, so the figure holds on a busy
machine (wall throughput would not). Rounds alternate the kinds so that drift hits all.

    python -m bench.m1_cost [--scale 1] [--seed 42] [-n 300] [--rounds 3] [--concurrency 8]
        [--py-spy DIR]   # also record a py-spy profile of each kind (speedscope JSON)
        [--compare DIR]  # and a server of another checkout's crm_graphql/, rounds alternating

``--compare``: a copy of another version's package (``git archive <commit> crm_graphql |
tar -x -C DIR``), run by this venv with the editable install set aside, measured in the
same rounds as this one (A/B on one busy machine: both meet the same load).

The requests are M1's own bodies (``bench.run.bodies("ours", "M1")``), but for moveDeal:
M1's 200 moves repeat, and a repeated move is to the stage the deal is in already, which
changes nothing; here every move moves its deal (``real_moves``). The data set is
``bench.datagen``'s (generated if missing, as ``bench.run`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from bench import datagen, run

KINDS = ("createActivity", "moveDeal", "sendMessage")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


async def send_all(base: str, token: str, lines: list[str], concurrency: int) -> int:
    """Send every line (a JSON body) over ``concurrency`` keep-alive connections; the
    number of answers with errors (in ``errors`` or a payload's ``errors``)."""
    queue = list(reversed(lines))
    failed = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failed
        while queue:
            body = queue.pop()
            r = await client.post("/graphql", content=body, headers=headers)
            answer = r.json()
            payload = next(iter((answer.get("data") or {}).values()), None)
            payload = payload if isinstance(payload, dict) else {}
            if r.status_code != 200 or answer.get("errors") or payload.get("errors"):
                failed += 1
                if failed <= 3:
                    print("error:", r.status_code, r.text[:300])

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default=run.DEFAULT_REDIS_URL)
    parser.add_argument("-n", type=int, default=300, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--py-spy", type=Path, default=None, help="profile each kind into DIR")
    parser.add_argument("--compare", type=Path, default=None, help="another crm_graphql copy")
    args = parser.parse_args()
    run.Services.redis_url = args.redis_url
    url = datagen.ensure_dataset(args.server_url, args.scale, args.seed)
    facts = asyncio.run(run.load_facts(url))
    _, lines = run.bodies("ours", "M1", facts)
    by_kind = {kind: lines[i::3] for i, kind in enumerate(KINDS)}
    servers = {"this": None} if args.compare is None else {"this": None, "compared": args.compare}
    with tempfile.TemporaryDirectory(prefix="m1-cost-") as tmp:
        started = {name: start(url, Path(tmp), name, other) for name, other in servers.items()}
        try:
            tokens = {name: run.login(s.base, facts.admin_email) for name, s in started.items()}
            for name, server in started.items():  # warm-up: statements prepared, caches
                for kind_lines in by_kind.values():
                    asyncio.run(
                        send_all(server.base, tokens[name], kind_lines[:60], args.concurrency)
                    )
            per: dict[tuple[str, str], list[float]] = {
                (name, kind): [] for name in started for kind in KINDS
            }
            for r in range(args.rounds):
                for kind in KINDS:
                    for index, (name, server) in enumerate(started.items()):
                        if kind == "moveDeal":
                            batch = asyncio.run(real_moves(url, facts, args.n, index, len(started)))
                        else:
                            batch = [by_kind[kind][i % len(by_kind[kind])] for i in range(args.n)]
                        pid = server.proc.pid  # taskset execs the server: its pid
                        spy = None
                        if args.py_spy is not None and r == args.rounds - 1:
                            args.py_spy.mkdir(parents=True, exist_ok=True)
                            out = args.py_spy / f"{name}-{kind}.json"
                            spy = subprocess.Popen(
                                [str(run.VENV_BIN / "py-spy"), "record", "-r", "200", "-p",
                                 str(pid), "--format", "speedscope", "-o", str(out)],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                            )  # fmt: skip
                            time.sleep(1)
                        (u0, s0), w0 = cpu_split(pid), time.perf_counter()
                        failed = asyncio.run(
                            send_all(server.base, tokens[name], batch, args.concurrency)
                        )
                        (u1, s1), w1 = cpu_split(pid), time.perf_counter()
                        if spy is not None:
                            spy.send_signal(2)
                            spy.wait(30)
                        per[(name, kind)].append((u1 - u0 + s1 - s0) / args.n * 1000)
                        print(
                            f"round {r} {name:8} {kind:15} {per[(name, kind)][-1]:6.2f} ms "
                            f"CPU/mutation ({(s1 - s0) / args.n * 1000:.2f} system), "
                            f"{args.n / (w1 - w0):6.0f} req/s wall, {failed} failed",
                            flush=True,
                        )
        finally:
            for server in started.values():
                server.stop()
    print(f"load average at the end: {os.getloadavg()}")
    for name in started:
        medians = {kind: statistics.median(per[(name, kind)]) for kind in KINDS}
        mix = statistics.mean(medians.values())
        shown = ", ".join(f"{kind} {value:.2f}" for kind, value in medians.items())
        print(f"{name}: {shown}; M1 mix (1:1:1) {mix:.2f} ms CPU per mutation (medians)")


async def real_moves(url: str, facts: run.Facts, n: int, index: int, servers: int) -> list[str]:
    """``n`` moveDeal bodies that each move a deal (M1's own bodies repeat their (deal,
    stage) pairs, and a move to the stage a deal is in changes nothing): deals of the
    ``index``-th of ``servers`` slices of M1's deals, each to an open stage of its
    pipeline other than the one it is in now, at most one move per deal."""
    share = facts.deals[index::servers][:n]
    if len(share) < n:
        raise SystemExit(f"-n {n} is more than the {len(share)} deals of a server's share")
    conn = await asyncpg.connect(datagen.asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT id, stage_id FROM deals WHERE id = ANY($1::uuid[])", [d for d, _ in share]
        )
    finally:
        await conn.close()
    current = {r["id"]: r["stage_id"] for r in rows}
    bodies = []
    for deal, stages in share:
        target = next(s for s in stages if s != current[deal])
        variables = {
            "id": run.to_global_id("Deal", deal),
            "stageId": run.to_global_id("Stage", target),
        }
        bodies.append(json.dumps({"query": run.document("m1_move_deal"), "variables": variables}))
    return bodies


def start(url: str, workdir: Path, tag: str, other: Path | None) -> run.Server:
    """Our server as ``bench.run`` starts it; with ``other``, that copy's package."""
    if other is None:
        return run.start_ours(url, workdir, tag)
    code = (
        "import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in "
        f"repr(f).lower()]; sys.path.insert(0, {str(other.resolve())!r}); "
        "from crm_graphql.cli import main; sys.argv[0] = 'crm-graphql'; main()"
    )
    command = [sys.executable, "-c", code, "serve", "--port", "{port}", "--log-level", "warning"]
    env = run.ours_env(url, workdir / f"crm-data-{tag}")
    server = run.spawn_pinned("ours", tag, workdir, command, env, run.ROOT)
    run.wait_ready(server, "/readyz")
    return server


if __name__ == "__main__":
    main()
