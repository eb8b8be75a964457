"""`crm-graphql backup` / `restore`: a pure-Python logical backup that survives a wiped
database, refuses damaged files and never leaves a half-restored database."""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from crm_graphql import crypto
from crm_graphql.crypto import Keyring
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import Customer, Role, Workspace
from crm_graphql.services import activities, webhooks
from crm_graphql.services.actor import Actor
from crm_graphql.settings import new_encryption_key_entry
from tests import support
from tests.test_cli import Cli, _fetch, cli, scratch_database  # noqa: F401

Fingerprint = dict[str, tuple[int, str]]


def fingerprint(url: str) -> Fingerprint:
    """Row count and MD5 of the ordered rows of every table (Alembic's included)."""
    tables = [
        r[0] for r in _fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]
    result: Fingerprint = {}
    for table in sorted(tables):
        count, digest = _fetch(
            url,
            f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
            f'FROM "{table}" t',
        )[0]
        result[table] = (count, digest)
    return result


def rows_outside_alembic(url: str) -> int:
    return sum(n for table, (n, _) in fingerprint(url).items() if table != "alembic_version")


async def add_activity_and_webhook(url: str) -> None:
    """Rows the demo has none of: an event, audit rows, an encrypted webhook secret."""
    engine = make_engine(url, pool_size=1)
    try:
        sessionmaker = make_sessionmaker(engine)
        crypto.attach(sessionmaker, Keyring.from_entries([new_encryption_key_entry()]))
        async with sessionmaker() as session, session.begin():
            workspace = await session.scalar(select(Workspace))
            customer = await session.scalar(select(Customer).order_by(Customer.id))
            assert workspace is not None and customer is not None
            actor = Actor(workspace_id=workspace.id, role=Role.ADMIN, request_id="test")
            await activities.create_activity(
                actor, session, {"type": "note", "subject": "Hi", "customer_id": customer.id}
            )
            await webhooks.create_webhook(actor, session, url="http://127.0.0.1:9/x")
    finally:
        await engine.dispose()


def wipe(server_database_url: str, url: str) -> None:
    """Drop the database and create it again, empty (not even migrated)."""
    name = make_url(url).database
    assert name
    support.drop_database(server_database_url, name)
    support.create_database(server_database_url, name)


def test_backup_wipe_restore_gives_back_every_row(
    cli: Cli,  # noqa: F811
    scratch_database: Callable[[], str],  # noqa: F811
    server_database_url: str,
    tmp_path: Path,
) -> None:
    url = scratch_database()
    assert cli("migrate", database_url=url).returncode == 0
    seeded = cli("seed-demo", "--seed", "7", database_url=url)
    assert seeded.returncode == 0, seeded
    asyncio.run(add_activity_and_webhook(url))
    before = fingerprint(url)
    assert all(before[t][0] > 0 for t in ("customers", "events", "audit_log", "webhooks"))
    out = tmp_path / "crm.backup"

    made = cli("backup", "--out", str(out), database_url=url)
    assert made.returncode == 0, made
    assert "Wrote" in made.stdout
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format_version"] == 1
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == {
        name: n for name, (n, _) in before.items() if name != "alembic_version"
    }

    wipe(server_database_url, url)
    assert fingerprint(url) == {}
    restored = cli("restore", str(out), database_url=url)
    assert restored.returncode == 0, restored
    assert fingerprint(url) == before

    # Identity columns continue after the restored rows.
    next_id, top = _fetch(
        url, "SELECT nextval(pg_get_serial_sequence('events', 'id')), (SELECT max(id) FROM events)"
    )[0]
    assert next_id > top

    # A database with data is refused unless forced; forced, it ends up the same.
    refused = cli("restore", str(out), database_url=url)
    assert refused.returncode == 1, refused
    assert "already holds data" in refused.stdout
    forced = cli("restore", "--force", str(out), database_url=url)
    assert forced.returncode == 0, forced
    assert fingerprint(url) == before
    # The audit log's append-only triggers, off during the forced load, are on again.
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="append-only"):
        _fetch(url, "DELETE FROM audit_log")


def _rewrite(source: Path, target: Path, change: Callable[[str, bytes], bytes]) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            new.writestr(item.filename, change(item.filename, old.read(item.filename)))


@pytest.fixture
def small_backup(cli: Cli, scratch_database: Callable[[], str], tmp_path: Path) -> Path:  # noqa: F811
    url = scratch_database()
    assert cli("migrate", database_url=url).returncode == 0
    made = cli("create-workspace", "Acme", database_url=url)
    assert made.returncode == 0, made
    out = tmp_path / "small.backup"
    assert cli("backup", "--out", str(out), database_url=url).returncode == 0
    return out


def test_damaged_backups_are_refused_and_leave_the_database_empty(
    cli: Cli,  # noqa: F811
    scratch_database: Callable[[], str],  # noqa: F811
    small_backup: Path,
    tmp_path: Path,
) -> None:
    truncated = tmp_path / "truncated.backup"
    truncated.write_bytes(small_backup.read_bytes()[: small_backup.stat().st_size // 2])
    corrupt = tmp_path / "corrupt.backup"
    _rewrite(
        small_backup,
        corrupt,
        lambda name, data: (
            data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:]
            if name == "tables/workspaces.copy"
            else data
        ),
    )
    # Checksums agree but the rows are garbage: loading fails after earlier tables loaded.
    garbage = tmp_path / "garbage.backup"

    def break_users(name: str, data: bytes) -> bytes:
        if name == "tables/users.copy":
            return b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + b"\x00\x05garbage"
        if name == "manifest.json":
            import hashlib

            manifest = json.loads(data)
            for table in manifest["tables"]:
                if table["name"] == "users":
                    table["sha256"] = hashlib.sha256(
                        break_users("tables/users.copy", b"")
                    ).hexdigest()
            return json.dumps(manifest).encode()
        return data

    _rewrite(small_backup, garbage, break_users)
    other_revision = tmp_path / "other-revision.backup"
    _rewrite(
        small_backup,
        other_revision,
        lambda name, data: (
            data.replace(b'"alembic_revision": "', b'"alembic_revision": "x')
            if name == "manifest.json"
            else data
        ),
    )
    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello")

    cases = [
        (truncated, "damaged or truncated"),
        (corrupt, "table workspaces is corrupt"),
        (garbage, "table users could not be loaded"),
        (other_revision, "crm-graphql migrate"),
        (not_a_backup, "damaged or truncated"),
        (tmp_path / "missing.backup", "does not exist"),
    ]
    targets = [scratch_database() for _ in cases]
    for url in targets:
        support.migrate(url)
    runs = cli.each(
        [(["restore", str(path)], url) for (path, _), url in zip(cases, targets, strict=True)]
    )
    for run, (_, message), url in zip(runs, cases, targets, strict=True):
        assert run.returncode == 1, run
        assert message in run.stdout, run
        assert rows_outside_alembic(url) == 0, run


def test_a_database_a_server_only_started_on_counts_as_empty(
    cli: Cli,  # noqa: F811
    scratch_database: Callable[[], str],  # noqa: F811
    small_backup: Path,
) -> None:
    url = scratch_database()
    support.migrate(url)
    _fetch(url, "INSERT INTO webhook_dispatch_cursor (id, txid, event_id) VALUES (1, 5, 5)")
    restored = cli("restore", str(small_backup), database_url=url)
    assert restored.returncode == 0, restored
    assert [r[0] for r in _fetch(url, "SELECT name FROM workspaces")] == ["Acme"]
