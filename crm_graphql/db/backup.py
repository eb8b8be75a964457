"""Logical backup and restore of the whole database, in pure Python (no ``pg_dump``).

A backup is one zip file: ``tables/<table>.copy`` per table (PostgreSQL's binary COPY
format, read in one repeatable-read snapshot so the tables agree with each other) and a
``manifest.json`` (format version, Alembic revision, creation time, per table: columns,
row count, SHA-256 of the data). Works the same against the embedded PostgreSQL and an
external one, and needs only the database connection the server already has.

Restore goes into a database migrated to the backup's revision (an empty database is
migrated first by the CLI), refuses one that holds data unless forced, checks every
checksum before touching anything, then loads every table in foreign-key order inside ONE
transaction: a restore that fails leaves the database as it was.
"""

from __future__ import annotations

import graphlib
import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

FORMAT = "crm-graphql-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1 << 20
# Rows a server writes on its own (the webhook dispatcher's cursor): a database holding
# only these still counts as empty.
BOOKKEEPING = frozenset({"webhook_dispatch_cursor"})
# Tables whose triggers refuse TRUNCATE (migration 0003).
APPEND_ONLY = frozenset({"audit_log"})


class BackupError(Exception):
    """A backup or restore cannot proceed; the message says why and what to do."""


@dataclass(frozen=True)
class TableDump:
    name: str
    columns: list[str]
    rows: int
    sha256: str

    @property
    def member(self) -> str:
        return f"tables/{self.name}.copy"


@dataclass(frozen=True)
class Manifest:
    revision: str
    created_at: str
    tables: list[TableDump]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "alembic_revision": self.revision,
            "created_at": self.created_at,
            "tables": [
                {"name": t.name, "columns": t.columns, "rows": t.rows, "sha256": t.sha256}
                for t in self.tables
            ],
        }

    @staticmethod
    def from_json(data: Any) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError("not a crm-graphql backup (manifest.json has no backup format)")
        if data.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"backup format version {data.get('format_version')!r} is not supported "
                f"(this version reads {FORMAT_VERSION})"
            )
        try:
            tables = [
                TableDump(
                    str(t["name"]), [str(c) for c in t["columns"]], int(t["rows"]), t["sha256"]
                )
                for t in data["tables"]
            ]
            return Manifest(str(data["alembic_revision"]), str(data["created_at"]), tables)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"the backup's manifest is damaged ({exc!r})") from exc

    @property
    def row_count(self) -> int:
        return sum(t.rows for t in self.tables)


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def table_order(conn: asyncpg.Connection) -> list[str]:
    """Tables of the ``public`` schema (Alembic's own excepted), referenced ones first."""
    names = [
        r["relname"]
        for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
            "AND c.relname <> 'alembic_version' ORDER BY c.relname"
        )
    ]
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in names:
        sorter.add(name)
    for r in await conn.fetch(
        "SELECT src.relname AS child, dst.relname AS parent FROM pg_constraint k "
        "JOIN pg_class src ON src.oid = k.conrelid JOIN pg_class dst ON dst.oid = k.confrelid "
        "JOIN pg_namespace n ON n.oid = src.relnamespace "
        "WHERE k.contype = 'f' AND n.nspname = 'public' ORDER BY 1, 2"
    ):
        if r["child"] != r["parent"]:  # a self-reference is checked at the end of its COPY
            sorter.add(r["child"], r["parent"])
    return list(sorter.static_order())


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        _quote(table),
    )
    return [r["attname"] for r in rows]


async def _revision(conn: asyncpg.Connection) -> str | None:
    exists = await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL")
    if not exists:
        return None
    value = await conn.fetchval("SELECT version_num FROM alembic_version")
    return str(value) if value else None


async def database_revision(database_url: str) -> str | None:
    """The Alembic revision of a database (None: never migrated)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await _revision(conn)
    finally:
        await conn.close()


async def backup(database_url: str, out: Path) -> Manifest:
    """Write a backup of the database to ``out`` (atomically: a partial file never bears
    the final name)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    partial = out.with_name(out.name + ".partial")
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            revision = await _revision(conn)
            if revision is None:
                raise BackupError("the database is not migrated: nothing to back up")
            created_at = datetime.now(UTC).isoformat()
            tables: list[TableDump] = []
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                for name in await table_order(conn):
                    columns = await _columns(conn, name)
                    digest = hashlib.sha256()
                    with archive.open(f"tables/{name}.copy", "w", force_zip64=True) as member:

                        async def sink(
                            chunk: bytes, member: Any = member, digest: Any = digest
                        ) -> None:
                            digest.update(chunk)
                            member.write(chunk)

                        status = await conn.copy_from_table(
                            name, columns=columns, output=sink, format="binary"
                        )
                    tables.append(
                        TableDump(name, columns, int(status.split()[-1]), digest.hexdigest())
                    )
                manifest = Manifest(revision, created_at, tables)
                archive.writestr(MANIFEST, json.dumps(manifest.to_json(), indent=2))
        os.replace(partial, out)
        return manifest
    finally:
        partial.unlink(missing_ok=True)
        await conn.close()


def read_manifest(path: Path) -> Manifest:
    """The manifest of a backup file, after checking every table's checksum."""
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                manifest = Manifest.from_json(json.loads(archive.read(MANIFEST)))
            except KeyError:
                raise BackupError(
                    f"{path} has no manifest.json: not a crm-graphql backup"
                ) from None
            for table in manifest.tables:
                digest = hashlib.sha256()
                with archive.open(table.member) as member:
                    while chunk := member.read(CHUNK):
                        digest.update(chunk)
                if digest.hexdigest() != table.sha256:
                    raise BackupError(
                        f"{path}: the data of table {table.name} is corrupt (checksum)"
                    )
            return manifest
    except FileNotFoundError:
        raise BackupError(f"{path} does not exist") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError) as exc:
        raise BackupError(f"{path} is damaged or truncated ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path}: manifest.json is not valid JSON") from exc


async def restore(database_url: str, path: Path, *, force: bool = False) -> Manifest:
    """Load a backup into the database (migrated to the backup's revision), all or nothing.
    A database holding data is refused unless ``force`` (its rows are then replaced)."""
    manifest = read_manifest(path)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        revision = await _revision(conn)
        if revision != manifest.revision:
            raise BackupError(
                f"the backup is at migration {manifest.revision}, the database at {revision}: "
                f"restore into a database migrated to {manifest.revision} "
                f"(`crm-graphql migrate {manifest.revision}`), then migrate to head"
            )
        async with conn.transaction():
            present = await table_order(conn)
            expected = {t.name for t in manifest.tables}
            if set(present) != expected:
                raise BackupError(
                    "the database's tables differ from the backup's: "
                    f"missing {sorted(expected - set(present))}, "
                    f"extra {sorted(set(present) - expected)}"
                )
            holding = [
                name
                for name in present
                if name not in BOOKKEEPING
                and await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {_quote(name)})")
            ]
            if holding and not force:
                raise BackupError(
                    f"the database already holds data (tables {', '.join(holding)}); restore "
                    "into an empty database, or pass --force to replace everything"
                )
            await _empty(conn, present)
            await _load(conn, path, manifest.tables)
            await _reset_sequences(conn, present)
        return manifest
    finally:
        await conn.close()


async def _empty(conn: asyncpg.Connection, tables: Sequence[str]) -> None:
    """Remove every row (a forced restore, or the cursor of a server that only started).
    The audit log refuses TRUNCATE by trigger; a forced restore replaces the whole
    database on its owner's say-so, so its triggers are off for this transaction only
    (DDL is transactional: nobody else ever sees them off)."""
    holding = [
        name
        for name in tables
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {_quote(name)})")
    ]
    if set(holding) <= BOOKKEEPING:
        for name in holding:
            await conn.execute(f"DELETE FROM {_quote(name)}")
        return
    guarded = [name for name in tables if name in APPEND_ONLY]
    for name in guarded:
        await conn.execute(f"ALTER TABLE {_quote(name)} DISABLE TRIGGER USER")
    await conn.execute(f"TRUNCATE {', '.join(_quote(n) for n in tables)}")
    for name in guarded:
        await conn.execute(f"ALTER TABLE {_quote(name)} ENABLE TRIGGER USER")


async def _load(conn: asyncpg.Connection, path: Path, tables: Sequence[TableDump]) -> None:
    """COPY every table as it was backed up. Triggers that derive rows from others (the
    search documents of migration 0010) are off while loading, for this transaction
    only: the rows they would write are in the backup already, as they were."""
    for table in tables:
        await conn.execute(f"ALTER TABLE {_quote(table.name)} DISABLE TRIGGER USER")
    with zipfile.ZipFile(path) as archive:
        for table in tables:  # in the backup's foreign-key order
            with archive.open(table.member) as member:
                try:
                    status = await conn.copy_to_table(
                        table.name, source=member, columns=table.columns, format="binary"
                    )
                except (asyncpg.PostgresError, ValueError) as exc:
                    raise BackupError(f"table {table.name} could not be loaded: {exc}") from exc
            loaded = int(status.split()[-1])
            if loaded != table.rows:
                raise BackupError(
                    f"table {table.name}: loaded {loaded} rows, expected {table.rows}"
                )
    for table in tables:
        await conn.execute(f"ALTER TABLE {_quote(table.name)} ENABLE TRIGGER USER")


async def _reset_sequences(conn: asyncpg.Connection, tables: Sequence[str]) -> None:
    """Identity and serial columns continue after the highest restored value."""
    for table in tables:
        for column in await _columns(conn, table):
            sequence = await conn.fetchval(
                "SELECT pg_get_serial_sequence($1, $2)", _quote(table), column
            )
            if sequence:
                await conn.execute(
                    f"SELECT setval($1, COALESCE((SELECT max({_quote(column)}) FROM "
                    f"{_quote(table)}), 1), (SELECT max({_quote(column)}) FROM "
                    f"{_quote(table)}) IS NOT NULL)",
                    sequence,
                )
