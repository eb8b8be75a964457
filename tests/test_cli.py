"""The ``crm-graphql`` command, run as a real child process against scratch databases."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from crm_graphql import cli as cli_module
from tests import support

TIMEOUT_S = 120


@dataclass
class Run:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:  # shown by failing asserts
        return f"crm-graphql {' '.join(self.args)} -> {self.returncode}\n{self.output}"


class Cli:
    """Runs ``python -m crm_graphql.cli`` from the repo root with a clean CRM_* environment:
    only the database URL (when given) and a private data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def env(self, database_url: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        env["CRM_DATA_DIR"] = str(self.data_dir)
        if database_url:
            env["CRM_DATABASE_URL"] = database_url
        return env

    def start(self, args: Sequence[str], database_url: str | None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "crm_graphql.cli", *args],
            cwd=support.ROOT,
            env=self.env(database_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def many(self, *commands: Sequence[str], database_url: str | None = None) -> list[Run]:
        """Run independent commands side by side (each one pays the interpreter start)."""
        return self.each([(args, database_url) for args in commands])

    def each(self, commands: Sequence[tuple[Sequence[str], str | None]]) -> list[Run]:
        """Run (arguments, database URL) pairs side by side; results in the same order."""
        procs = [(args, self.start(args, url)) for args, url in commands]
        runs = []
        for args, proc in procs:
            try:
                stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
                pytest.fail(f"crm-graphql {' '.join(args)} timed out:\n{stdout}{stderr}")
            runs.append(Run(args, proc.returncode, stdout, stderr))
        return runs

    def __call__(self, *args: str, database_url: str | None = None) -> Run:
        return self.many(args, database_url=database_url)[0]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "crm-data")


@pytest.fixture
def scratch_database(server_database_url: str) -> Iterator[Callable[[], str]]:
    """Factory of empty databases on the test server, dropped after the test."""
    names: list[str] = []

    def create() -> str:
        name = f"crm_cli_{secrets.token_hex(4)}"
        support.create_database(server_database_url, name)
        names.append(name)
        return make_url(server_database_url).set(database=name).render_as_string(False)

    yield create
    for name in names:
        support.drop_database(server_database_url, name)


@pytest.fixture
def migrated_database(scratch_database: Callable[[], str]) -> str:
    url = scratch_database()
    support.migrate(url)
    return url


def _fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def _tables(url: str) -> set[str]:
    rows = _fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row[0] for row in rows}


# ------------------------------------------------------------------------------- help

HELP_MENTIONS: dict[str, tuple[str, ...]] = {
    "serve": (
        "--host",
        "--port",
        "--workers",
        "--reload",
        "--migrate",
        "--demo",
        "--seed",
        "--log-level",
    ),
    "migrate": ("revision", "--downgrade", "head"),
    "seed-demo": ("--seed", "--if-empty"),
    "export-schema": ("--out", "schema.graphql"),
    "create-workspace": ("NAME",),
    "create-user": (
        "--workspace",
        "--email",
        "--password",
        "--role",
        "--name",
        "admin",
        "manager",
        "agent",
        "viewer",
    ),
    "backup": ("--out", "FILE", "pg_dump"),
    "restore": ("FILE", "--force"),
    "new-encryption-key": ("--kid", "CRM_ENCRYPTION_KEYS"),
    "rotate-encryption-key": ("--batch-size", "CRM_ENCRYPTION_KEYS"),
}


def test_every_command_has_help(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    # The command as a user runs it, once; each command's help from the same parser in
    # this process (a child process per command paid the interpreter start 15 times).
    top = cli("--help")
    assert top.returncode == 0, top
    assert top.stdout.startswith("usage: crm-graphql"), top
    for command in HELP_MENTIONS:
        assert command in top.stdout, (command, top.stdout)
    assert "CRM_DATABASE_URL" in top.stdout
    for command, mentions in HELP_MENTIONS.items():
        with pytest.raises(SystemExit) as exited:
            cli_module.main([command, "--help"])
        assert exited.value.code == 0, command
        out, err = capsys.readouterr()
        assert out.startswith(f"usage: crm-graphql {command}"), out
        for mention in mentions:
            assert mention in out, (command, mention, out)
        assert err == "", err


def test_no_command_is_a_usage_error(cli: Cli) -> None:
    run = cli()
    assert run.returncode == 2, run
    assert "usage: crm-graphql" in run.stderr


def test_a_bad_setting_is_one_line_naming_the_variable(cli: Cli) -> None:
    """Not a traceback: what is wrong and with which variable, exit code 2."""
    for value, said in (
        ("1", "error: CRM_DB_POOL_SIZE must be at least 2 while this process runs background"),
        ("ten", "error: CRM_DB_POOL_SIZE: Input should be a valid integer"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "crm_graphql.cli", "migrate"],
            cwd=support.ROOT,
            env={**cli.env(None), "CRM_DB_POOL_SIZE": value},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert run.returncode == 2, run.stdout + run.stderr
        assert run.stdout.startswith(said) and "Traceback" not in run.stderr, run.stdout


# ---------------------------------------------------------------------------- migrate


def test_migrate_downgrade_and_migrate_again(cli: Cli, scratch_database: Callable[[], str]) -> None:
    url = scratch_database()
    assert _tables(url) == set()

    up = cli("migrate", database_url=url)
    assert up.returncode == 0, up
    assert "PostgreSQL (configured)" in up.stdout, up
    assert "Database migrated to head" in up.stdout, up
    assert "Redis" not in up.stdout, up  # migrate needs no Redis, embedded or not
    tables = _tables(url)
    assert {"workspaces", "users", "customers", "deals", "alembic_version"} <= tables

    down = cli("migrate", "base", "--downgrade", database_url=url)
    assert down.returncode == 0, down
    assert "Database downgraded to base" in down.stdout, down
    assert _tables(url) <= {"alembic_version"}

    again = cli("migrate", database_url=url)
    assert again.returncode == 0, again
    assert _tables(url) == tables
    # The CLI used the configured server: nothing embedded was started.
    assert not (cli.data_dir / "postgres").exists()


# ------------------------------------------------------------ workspaces and users


def test_create_workspace_once(cli: Cli, migrated_database: str) -> None:
    created = cli("create-workspace", "Acme", database_url=migrated_database)
    assert created.returncode == 0, created
    assert "Created workspace 'Acme'" in created.stdout, created

    again, other_case = cli.many(
        ["create-workspace", "Acme"], ["create-workspace", "ACME"], database_url=migrated_database
    )
    assert again.returncode == 1, again
    assert "error: a workspace named 'Acme' already exists" in again.output, again
    assert "Traceback" not in again.output, again
    # Names are unique regardless of case.
    assert other_case.returncode == 1, other_case
    assert "already exists" in other_case.output, other_case

    rows = _fetch(migrated_database, "SELECT name FROM workspaces")
    assert [row["name"] for row in rows] == ["Acme"]


def test_create_user_then_log_in(cli: Cli, migrated_database: str) -> None:
    assert cli("create-workspace", "Acme", database_url=migrated_database).returncode == 0
    created = cli(
        "create-user",
        "--workspace",
        "Acme",
        "--email",
        "a@x.example",
        "--password",
        "longenough",
        "--role",
        "agent",
        database_url=migrated_database,
    )
    assert created.returncode == 0, created
    assert "Created agent a@x.example" in created.stdout, created

    from crm_graphql.db.engine import make_engine, make_sessionmaker
    from crm_graphql.models import Role
    from crm_graphql.services import auth

    async def log_in() -> auth.TokenPair:
        engine = make_engine(migrated_database, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                return await auth.login(
                    session,
                    auth.TokenConfig(
                        secret_key="cli-test-" + "k" * 32,
                        access_ttl=timedelta(minutes=15),
                        refresh_ttl=timedelta(days=1),
                    ),
                    email="A@X.example",
                    password="longenough",
                )
        finally:
            await engine.dispose()

    pair = asyncio.run(log_in())
    assert pair.user.email == "a@x.example"
    assert pair.user.role is Role.AGENT
    assert pair.user.name == "a"  # from the email when --name is not given
    workspace = _fetch(
        migrated_database, "SELECT name FROM workspaces WHERE id = $1", pair.user.workspace_id
    )
    assert workspace[0]["name"] == "Acme"


def test_create_user_rejections(cli: Cli, migrated_database: str) -> None:
    def user(workspace: str, email: str, password: str, role: str) -> list[str]:
        return [
            "create-user",
            "--workspace",
            workspace,
            "--email",
            email,
            "--password",
            password,
            "--role",
            role,
        ]

    assert cli("create-workspace", "Acme", database_url=migrated_database).returncode == 0
    first = cli(*user("acme", "a@x.example", "longenough", "agent"), database_url=migrated_database)
    assert first.returncode == 0, first  # workspace names match regardless of case

    unknown_ws, bad_email, short_password, duplicate, bad_role = cli.many(
        user("Nope", "b@x.example", "longenough", "agent"),
        user("Acme", "not-an-email", "longenough", "agent"),
        user("Acme", "c@x.example", "short", "agent"),
        user("Acme", "A@X.example", "longenough", "viewer"),
        user("Acme", "d@x.example", "longenough", "superuser"),
        database_url=migrated_database,
    )
    assert unknown_ws.returncode == 1, unknown_ws
    assert "error: no workspace named 'Nope'" in unknown_ws.output, unknown_ws
    assert bad_email.returncode == 1, bad_email
    assert "error: `not-an-email` is not a valid email address" in bad_email.output, bad_email
    assert short_password.returncode == 1, short_password
    assert "error: the password needs at least 8 characters" in short_password.output
    assert duplicate.returncode == 1, duplicate
    assert "error: a user with email 'A@X.example' already exists" in duplicate.output
    for run in (unknown_ws, bad_email, short_password, duplicate):
        assert "Traceback" not in run.output, run
    # argparse rejects the role before anything runs.
    assert bad_role.returncode == 2, bad_role
    assert "invalid choice: 'superuser'" in bad_role.stderr, bad_role

    rows = _fetch(migrated_database, "SELECT email FROM users")
    assert [row["email"] for row in rows] == ["a@x.example"]


# -------------------------------------------------------------------------- demo data

CUSTOMERS_IN_ORDER = "SELECT name FROM customers ORDER BY created_at, email, name"


def test_seed_demo_is_deterministic_and_if_empty_loads_nothing(
    cli: Cli, scratch_database: Callable[[], str]
) -> None:
    first_url, second_url = scratch_database(), scratch_database()
    support.migrate(first_url)
    support.migrate(second_url)

    seed_5 = ["seed-demo", "--seed", "5"]
    first, second = cli.each([(seed_5, first_url), (seed_5, second_url)])
    for run in (first, second):
        assert run.returncode == 0, run
        assert "Loaded demo workspace" in run.stdout and "(seed 5)" in run.stdout, run
        assert "admin@demo.example / demo-admin / admin" in run.stdout, run

    names = [row["name"] for row in _fetch(first_url, CUSTOMERS_IN_ORDER)]
    assert len(names) > 10
    assert names == [row["name"] for row in _fetch(second_url, CUSTOMERS_IN_ORDER)]

    counts_query = (
        "SELECT (SELECT count(*) FROM workspaces) AS workspaces,"
        " (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM users) AS users"
    )
    before = dict(_fetch(first_url, counts_query)[0])
    assert before["workspaces"] == 1

    again = cli("seed-demo", "--if-empty", database_url=first_url)
    assert again.returncode == 0, again
    assert "nothing loaded" in again.stdout, again
    assert "Loaded demo" not in again.stdout, again
    assert dict(_fetch(first_url, counts_query)[0]) == before


# --------------------------------------------------------------------- export-schema


def test_export_schema(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "exported.graphql"
    to_stdout, to_file = cli.many(
        ["export-schema", "--out", "-"], ["export-schema", "--out", str(out)]
    )
    stored = (support.ROOT / "schema.graphql").read_text()
    assert to_stdout.returncode == 0, to_stdout
    assert to_stdout.stdout == stored
    assert to_file.returncode == 0, to_file
    assert out.read_text() == stored
    assert f"Wrote {out}" in to_file.stdout
    # Exporting needs no database: nothing embedded was started.
    assert not cli.data_dir.exists()


def test_create_workspace_rejects_blank_and_overlong_names(
    cli: Cli, migrated_database: str
) -> None:
    blank, long = cli.many(
        ["create-workspace", "   "], ["create-workspace", "x" * 201], database_url=migrated_database
    )
    assert blank.returncode == 1 and "must not be blank" in blank.output, blank
    assert long.returncode == 1 and "longer than 200" in long.output, long
    assert "Traceback" not in blank.output + long.output
    assert _fetch(migrated_database, "SELECT name FROM workspaces") == []
