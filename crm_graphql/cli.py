"""``crm-graphql``: serve, migrate, seed-demo, export-schema, export-events, check-schema,
create-workspace, create-user, create-api-key, email-address, backup, restore,
new-encryption-key, rotate-encryption-key, import, export."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.db.embedded import EmbeddedServers, start_embedded
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.services.api_keys import SCOPES as SCOPE_NAMES
from crm_graphql.settings import (
    ConfigurationError,
    Settings,
    new_encryption_key_entry,
    resolve_encryption_keys,
    resolve_secret_key,
)

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def _say(message: str) -> None:
    print(message, flush=True)


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def with_services(
    settings: Settings, *, need_redis: bool = True
) -> tuple[Settings, EmbeddedServers | None]:
    """Fill in embedded PostgreSQL/Redis for URLs the configuration leaves unset, and say
    which servers are in use. Child processes inherit the URLs through the environment."""
    need_pg = not settings.database_url
    need_r = need_redis and not settings.redis_url
    servers = None
    if need_pg or need_r:
        servers = start_embedded(settings.data_dir, postgres=need_pg, redis=need_r)
        settings = settings.model_copy(
            update={
                "database_url": settings.database_url or servers.database_url,
                "redis_url": settings.redis_url or servers.redis_url,
            }
        )
    assert settings.database_url
    os.environ["CRM_DATABASE_URL"] = settings.database_url
    origin = "embedded" if need_pg else "configured"
    _say(f"PostgreSQL ({origin}): {_safe_url(settings.database_url)}")
    if need_redis:
        assert settings.redis_url
        os.environ["CRM_REDIS_URL"] = settings.redis_url
        _say(f"Redis ({'embedded' if need_r else 'configured'}): {settings.redis_url}")
    return settings, servers


def alembic_config(database_url: str) -> Any:
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


async def _with_session(database_url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def seed_demo(database_url: str, *, seed: int, only_if_empty: bool) -> bool:
    """Load demo data; with ``only_if_empty`` nothing happens when a workspace exists."""
    from crm_graphql import demo

    async def work(session: AsyncSession) -> bool:
        if only_if_empty and not await demo.database_is_empty(session):
            return False
        summary = await demo.seed_demo(session, seed=seed, now=demo.today())
        counts = ", ".join(f"{n} {table}" for table, n in summary.counts.items())
        _say(f"Loaded demo workspace {summary.workspace_name!r} (seed {seed}): {counts}")
        return True

    return asyncio.run(_with_session(database_url, work))


def print_demo_logins() -> None:
    from crm_graphql import demo

    _say("Demo logins (email / password / role):")
    for email, password, role in demo.DEMO_LOGINS:
        _say(f"  {email} / {password} / {role.value}")


# ------------------------------------------------------------------------- commands


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from crm_graphql.realtime import SERVER_WEBSOCKETS

    # A single-process uvicorn re-raises the SIGTERM it handled once it has shut down;
    # with the default disposition that kills the process before atexit handlers run and
    # leaves the embedded PostgreSQL and Redis running. Exit like on Ctrl-C instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings, servers = with_services(Settings())
    assert settings.database_url
    # Resolved once here so that every worker process signs tokens with the same key.
    os.environ["CRM_SECRET_KEY"] = resolve_secret_key(settings)
    os.environ["CRM_ENCRYPTION_KEYS"] = ",".join(resolve_encryption_keys(settings))
    if args.migrate:
        migrate(settings.database_url)
        _say("Database migrated to head")
    if args.demo:
        seed_demo(settings.database_url, seed=args.seed, only_if_empty=True)
        print_demo_logins()
    host = args.host or settings.host
    port = args.port or settings.port
    _say(f"GraphQL API and explorer: http://{host}:{port}/graphql")
    _say(f"Web console: http://{host}:{port}/app")
    metrics_dir = None
    if args.workers > 1 and not args.reload and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers behind one port: /metrics adds theirs up, whichever answers (README).
        metrics_dir = tempfile.mkdtemp(prefix="crm-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "crm_graphql.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=args.workers if not args.reload else None,
            reload=args.reload,
            log_level=args.log_level,
            lifespan="on",
            **SERVER_WEBSOCKETS,
            timeout_graceful_shutdown=10,
            ws_max_size=settings.max_request_bytes,  # the same cap as HTTP bodies
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default (or from
            # FORWARDED_ALLOW_IPS): off, the app trusts CRM_TRUSTED_PROXIES alone.
            proxy_headers=False,
        )
    finally:
        if servers is not None:
            servers.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url
    if args.downgrade:
        from alembic import command

        command.downgrade(alembic_config(settings.database_url), args.revision)
        _say(f"Database downgraded to {args.revision}")
    else:
        migrate(settings.database_url, args.revision)
        _say(f"Database migrated to {args.revision}")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url
    if not seed_demo(settings.database_url, seed=args.seed, only_if_empty=args.if_empty):
        _say("Database already has data; nothing loaded (drop --if-empty to add a demo workspace)")
    print_demo_logins()
    return 0


def _export(text: str, out: str) -> int:
    """Write a generated file to ``out`` (``-``: stdout)."""
    if out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)
        _say(f"Wrote {out}")
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from crm_graphql.schema import schema

    return _export(schema.as_str() + "\n", args.out)


def cmd_export_events(args: argparse.Namespace) -> int:
    from crm_graphql.event_catalogue import markdown

    return _export(markdown(), args.out)


def cmd_check_schema(args: argparse.Namespace) -> int:
    from crm_graphql import schema_contract

    problems = schema_contract.check_files(
        Path(args.schema), Path(args.released), Path(args.changelog)
    )
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        _say(f"{args.schema} keeps the contract of {args.released}")
    return 1 if problems else 0


def cmd_create_workspace(args: argparse.Namespace) -> int:
    from crm_graphql.services import auth
    from crm_graphql.services.errors import DomainError

    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url

    async def work(session: AsyncSession) -> Any:
        return await auth.create_workspace(session, name=args.name)

    try:
        workspace = asyncio.run(_with_session(settings.database_url, work))
    except DomainError as error:
        _say(f"error: {error.message}")
        return 1
    except IntegrityError:
        _say(f"error: a workspace named {args.name!r} already exists")
        return 1
    _say(f"Created workspace {workspace.name!r} ({workspace.id})")
    return 0


async def _workspace_named(session: AsyncSession, name: str) -> Any:
    """The workspace called ``name`` (any case), or a NOT_FOUND domain error."""
    from sqlalchemy import func, select

    from crm_graphql.models import Workspace
    from crm_graphql.services.errors import DomainError

    workspace = await session.scalar(
        select(Workspace).where(func.lower(Workspace.name) == name.lower())
    )
    if workspace is None:
        raise DomainError(f"no workspace named {name!r}", "workspace", "NOT_FOUND")
    return workspace


def cmd_create_user(args: argparse.Namespace) -> int:

    from crm_graphql.models import Role
    from crm_graphql.services import auth, fields
    from crm_graphql.services.errors import DomainError

    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url

    async def work(session: AsyncSession) -> Any:
        workspace = await _workspace_named(session, args.workspace)
        email = fields.email(args.email)
        if not email:
            raise DomainError("an email is required", "email")
        return await auth.create_user(
            session,
            workspace=workspace,
            email=email,
            password=args.password,
            role=Role(args.role),
            name=args.name,
        )

    if len(args.password) < 8:
        _say("error: the password needs at least 8 characters")
        return 1
    try:
        user = asyncio.run(_with_session(settings.database_url, work))
    except DomainError as error:
        _say(f"error: {error.message}")
        return 1
    except IntegrityError:
        _say(f"error: a user with email {args.email!r} already exists")
        return 1
    _say(f"Created {user.role.value} {user.email} ({user.id})")
    return 0


def cmd_create_api_key(args: argparse.Namespace) -> int:

    from crm_graphql.models import Role
    from crm_graphql.services import api_keys
    from crm_graphql.services.actor import Actor
    from crm_graphql.services.errors import DomainError

    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url

    async def work(session: AsyncSession) -> Any:
        workspace = await _workspace_named(session, args.workspace)
        # The operator at the command line acts as an admin of the workspace (the audit
        # row names no user and carries the request id "cli").
        operator = Actor(workspace_id=workspace.id, role=Role.ADMIN, request_id="cli")
        return await api_keys.create_api_key(operator, session, name=args.name, scopes=args.scope)

    try:
        key, token = asyncio.run(_with_session(settings.database_url, work))
    except DomainError as error:
        _say(f"error: {error.message}")
        return 1
    _say(f"Created API key {key.name!r} ({key.id}) with scopes {', '.join(key.scopes)}")
    _say("Token (shown only this once; send it as `Authorization: Bearer <token>`):")
    _say(token)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a CSV or JSON Lines file as a job run by this process, with a progress bar
    and a summary (docs/decisions/0033-jobs-and-import.md)."""
    from crm_graphql import crypto
    from crm_graphql.enums import ImportMode, ImportType
    from crm_graphql.services.errors import DomainError

    path = Path(args.file)
    try:
        content = path.read_bytes()
    except OSError as error:
        _say(f"error: cannot read {args.file}: {error.strerror}")
        return 1
    mapping: dict[str, str] = {}
    for item in args.mapping or []:
        column, sep, target = item.partition("=")
        if not sep or not column.strip():
            _say(f"error: --mapping {item!r}: write COLUMN=FIELD (or COLUMN= to skip it)")
            return 1
        mapping[column.strip()] = target.strip()
    settings, _servers = with_services(Settings())
    assert settings.database_url and settings.redis_url
    try:
        keyring = crypto.Keyring.from_entries(resolve_encryption_keys(settings))
    except (ConfigurationError, crypto.KeyringError) as error:
        _say(f"error: {error}")
        return 1
    bar = ProgressBar(sys.stderr, enabled=not args.quiet)

    async def work() -> Any:
        from crm_graphql.app import settle_garbage_collector
        from crm_graphql.job_runner import JobRunner, RunnerSettings
        from crm_graphql.models import Job
        from crm_graphql.realtime.bus import Bus
        from crm_graphql.services import imports, jobs

        # The server's collector settings (decision 0009): the job builds and drops large
        # chunks of rows, and with Python's default thresholds the collector's passes
        # over them took 40 % of a 20,000-row import (decision 0033).
        settle_garbage_collector(settings.gc_thresholds)

        engine = make_engine(settings.database_url or "", pool_size=3)
        bus = Bus.from_url(settings.redis_url or "")
        try:
            sessionmaker = make_sessionmaker(engine)
            crypto.attach(sessionmaker, keyring)
            async with sessionmaker() as session, session.begin():
                actor = await _cli_actor(session, args.workspace, args.as_user)
                options = imports.ImportOptions(
                    type=ImportType(args.type),
                    format=imports.file_format(path.name, args.format),
                    mapping=mapping,
                    key=args.key,
                    mode=ImportMode(args.mode),
                    dry_run=args.dry_run,
                )
                job = await imports.start_import(
                    actor, session, options, file_name=path.name, content=content
                )
                claimed = await jobs.claim_new(session, job, actor)
            runner = JobRunner(sessionmaker, bus, RunnerSettings(), on_progress=bar.update)
            await runner.run(claimed)
            async with sessionmaker() as session:
                return await session.get(Job, claimed.id)
        finally:
            await bus.close()
            await engine.dispose()

    try:
        job = asyncio.run(work())
    except DomainError as error:
        _say(f"error: {error.message}")
        return 1
    bar.close()
    return _import_summary(job, args.errors)


class ProgressBar:
    """``[#####-----]  45,000 / 100,000 rows`` on a terminal, redrawn in place."""

    def __init__(self, stream: Any, *, enabled: bool, width: int = 30) -> None:
        self.stream = stream
        self.enabled = enabled
        self.width = width
        self.drawn = False

    def update(self, progress: Any) -> None:
        if not self.enabled:
            return
        total = max(progress.total or 0, progress.done, 1)
        filled = int(self.width * progress.done / total)
        failed = progress.counts.get("failed", 0)
        self.stream.write(
            f"\r[{'#' * filled}{'-' * (self.width - filled)}] {progress.done:,} / {total:,} "
            f"rows, {failed:,} bad"
        )
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


async def _cli_actor(session: AsyncSession, workspace_name: str, email: str | None) -> Any:
    """Who a CLI import acts as: the user ``email`` of the workspace (with their role),
    else the operator as an admin of the workspace (audited with request id "cli")."""
    from sqlalchemy import func, select

    from crm_graphql.models import Role, User
    from crm_graphql.services.actor import Actor
    from crm_graphql.services.errors import DomainError

    workspace = await _workspace_named(session, workspace_name)
    if email is None:
        return Actor(workspace_id=workspace.id, role=Role.ADMIN, request_id="cli")
    user = await session.scalar(
        select(User).where(
            User.workspace_id == workspace.id, func.lower(User.email) == email.lower()
        )
    )
    if user is None or not user.is_active:
        raise DomainError(f"no active user {email!r} in {workspace_name!r}", "as", "NOT_FOUND")
    return Actor(workspace_id=workspace.id, role=user.role, user_id=user.id, request_id="cli")


def _import_summary(job: Any, shown: int) -> int:
    """Print what the import did; 0 when every row was good, 2 with bad rows, 1 when it
    failed."""
    result = job.result or {}
    counts = job.counts or {}
    _say(
        f"Import {job.status.value}: {job.done:,} rows; "
        + ", ".join(
            f"{counts.get(k, 0):,} {k}" for k in ("created", "updated", "unchanged", "failed")
        )
    )
    if result.get("dryRun"):
        _say("Dry run: nothing was written.")
    elif result and not result.get("written", True):
        _say("Nothing was written: all-or-nothing, and some rows are bad.")
    if result.get("message"):
        _say(f"error: {result['message']}")
    for error in job.errors[:shown]:
        where = f"line {error['line']}" if error.get("line") else "file"
        field = f" {error['field']}" if error.get("field") else ""
        _say(f"  {where}{field}: {error['message']} ({error['code']})")
    if job.error_count > shown:
        _say(f"  ... and {job.error_count - shown:,} more bad rows")
    if job.status.value != "succeeded":
        return 1
    return 2 if job.error_count else 0


def cmd_email_address(args: argparse.Namespace) -> int:
    """The workspace's inbound address (docs/decisions/0035-email-channel.md)."""
    from crm_graphql.mail.channel import email_config
    from crm_graphql.services import email
    from crm_graphql.services.errors import DomainError
    from crm_graphql.settings import resolve_secret_key

    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url

    async def work(session: AsyncSession) -> Any:
        return await _workspace_named(session, args.workspace)

    try:
        workspace = asyncio.run(_with_session(settings.database_url, work))
    except DomainError as error:
        _say(f"error: {error.message}")
        return 1
    config = email_config(settings, resolve_secret_key(settings))
    _say(email.inbox_address(config, workspace.id))
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from crm_graphql.db import backup

    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url
    out = Path(args.out)
    try:
        manifest = asyncio.run(backup.backup(settings.database_url, out))
    except backup.BackupError as error:
        _say(f"error: {error}")
        return 1
    _say(
        f"Wrote {out}: {len(manifest.tables)} tables, {manifest.row_count} rows, "
        f"migration {manifest.revision}"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from crm_graphql.db import backup

    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url
    path = Path(args.file)
    try:
        manifest = backup.read_manifest(path)
        if asyncio.run(backup.database_revision(settings.database_url)) is None:
            migrate(settings.database_url, manifest.revision)
            _say(f"Database migrated to {manifest.revision} (the backup's migration)")
        manifest = asyncio.run(backup.restore(settings.database_url, path, force=args.force))
    except backup.BackupError as error:
        _say(f"error: {error}")
        return 1
    _say(
        f"Restored {path} (made {manifest.created_at}): {len(manifest.tables)} tables, "
        f"{manifest.row_count} rows; run `crm-graphql migrate` if the code is newer"
    )
    return 0


def cmd_new_encryption_key(args: argparse.Namespace) -> int:
    _say(new_encryption_key_entry(args.kid))
    return 0


def cmd_rotate_encryption_key(args: argparse.Namespace) -> int:
    from crm_graphql import crypto
    from crm_graphql.services import privacy

    settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url
    try:
        keyring = crypto.Keyring.from_entries(resolve_encryption_keys(settings))
    except (ConfigurationError, crypto.KeyringError) as error:
        _say(f"error: {error}")
        return 1

    async def work() -> privacy.RotationReport:
        engine = make_engine(settings.database_url or "", pool_size=1)
        try:
            sessionmaker = make_sessionmaker(engine)
            crypto.attach(sessionmaker, keyring)
            return await privacy.rotate_encryption_key(sessionmaker, batch_size=args.batch_size)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(work())
    except crypto.DecryptionError as error:
        _say(f"error: {error}; list every key still in use in CRM_ENCRYPTION_KEYS")
        return 1
    _say(
        f"Re-encrypted {report.reencrypted} values with key {keyring.current_kid!r} "
        f"({report.current} already current); older keys can now be removed"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Stream a list (filtered, segmented) to a file or stdout, as the workspace's operator
    (an admin: what an admin reads through the API), audited with the row count."""
    import contextlib
    import json

    from crm_graphql import crypto
    from crm_graphql.models import Role
    from crm_graphql.resolvers.exports import plan_of
    from crm_graphql.schema import schema
    from crm_graphql.services import exports
    from crm_graphql.services.actor import Actor
    from crm_graphql.services.errors import DomainError

    with contextlib.redirect_stdout(sys.stderr):  # standard output may be the file itself
        settings, _servers = with_services(Settings(), need_redis=False)
    assert settings.database_url
    try:
        filter_value = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as error:
        _say(f"error: --filter is not JSON: {error}")
        return 2
    request = exports.ExportRequest(
        type=args.type,
        format=args.format,
        filter=filter_value,
        segment_id=args.segment,
        fields=tuple(f.strip() for f in args.fields.split(",")) if args.fields else None,
    )
    keyring = crypto.Keyring.from_entries(resolve_encryption_keys(settings))
    # ``-`` is standard output, as for ``export-schema`` (and the default).
    target = None if args.out in (None, "-") else args.out

    async def work() -> int:
        engine = make_engine(settings.database_url or "", pool_size=2)
        sessionmaker = make_sessionmaker(engine)
        crypto.attach(sessionmaker, keyring)
        # A blocking file, written a chunk at a time between the cursor's round trips.
        out = open(target, "wb") if target else sys.stdout.buffer  # noqa: ASYNC230
        try:
            async with sessionmaker() as session, session.begin():
                workspace = await _workspace_named(session, args.workspace)
                operator = Actor(workspace_id=workspace.id, role=Role.ADMIN, request_id="cli")
                plan = await plan_of(schema, operator, session, request)
                async for chunk in exports.encoded(plan, session):
                    out.write(chunk)
                exports.record_export(plan, session, via="cli", completed=True)
            out.flush()
            return plan.rows
        finally:
            if target:
                out.close()
            await engine.dispose()

    try:
        rows = asyncio.run(work())
    except DomainError as error:
        _say(f"error: {error.field + ': ' if error.field else ''}{error.message}")
        return 1
    print(
        f"Exported {rows} {args.type} as {args.format}" + (f" to {target}" if target else ""),
        file=sys.stderr,
        flush=True,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-graphql",
        description="A CRM whose whole surface is one GraphQL API. Configuration comes from "
        "CRM_* environment variables; without CRM_DATABASE_URL / CRM_REDIS_URL embedded "
        "servers are started in CRM_DATA_DIR (default ./.crm-data).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve the API and the explorer",
        description="Serve /graphql with the GraphiQL explorer.",
    )
    serve.add_argument("--host", default=None, help="bind address (default CRM_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default CRM_PORT or 8000)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.add_argument(
        "--reload", action="store_true", help="restart on code changes (development)"
    )
    serve.add_argument("--migrate", action="store_true", help="migrate the database first")
    serve.add_argument(
        "--demo", action="store_true", help="load demo data if the database is empty"
    )
    serve.add_argument("--seed", type=int, default=42, help="demo data seed (default 42)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    exp = sub.add_parser(
        "export",
        help="export customers, companies or deals to CSV or JSON Lines",
        description="Stream a list, filtered as the API's list filter (JSON) or by a segment, "
        "to CSV or JSON Lines, in constant memory; audited with the number of rows.",
    )
    exp.add_argument("--workspace", required=True, help="workspace NAME")
    exp.add_argument("--type", required=True, choices=["customers", "companies", "deals"])
    exp.add_argument("--format", default="csv", choices=["csv", "jsonl"], help="default csv")
    exp.add_argument(
        "--filter",
        default=None,
        help='the list\'s filter as JSON, e.g. \'{"tags": {"anyOf": ["vip"]}}\'',
    )
    exp.add_argument("--segment", default=None, help="a segment's ID (customers only)")
    exp.add_argument("--fields", default=None, help="comma-separated API field names")
    exp.add_argument(
        "--out", default=None, help="file to write, or - for standard output (the default)"
    )
    exp.set_defaults(func=cmd_export)

    mig = sub.add_parser(
        "migrate",
        help="apply database migrations",
        description="Upgrade (or downgrade) the database schema with Alembic.",
    )
    mig.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    mig.add_argument("--downgrade", action="store_true", help="downgrade to REVISION (e.g. base)")
    mig.set_defaults(func=cmd_migrate)

    seed = sub.add_parser(
        "seed-demo",
        help="load deterministic demo data",
        description=(
            "Load a demo workspace: users of every role, customers, companies, "
            "pipelines, deals, activities, orders and conversations."
        ),
    )
    seed.add_argument(
        "--seed", type=int, default=42, help="random seed; same seed, same data (default 42)"
    )
    seed.add_argument(
        "--if-empty", action="store_true", help="only when the database has no workspace"
    )
    seed.set_defaults(func=cmd_seed_demo)

    export = sub.add_parser(
        "export-schema",
        help="write the GraphQL SDL",
        description="Write the schema's SDL (schema.graphql).",
    )
    export.add_argument(
        "--out", default="schema.graphql", help="file, or - for stdout (default schema.graphql)"
    )
    export.set_defaults(func=cmd_export_schema)

    events = sub.add_parser(
        "export-events",
        help="write the webhook event catalogue",
        description="Write the webhook event catalogue (docs/events.md).",
    )
    events.add_argument(
        "--out", default="docs/events.md", help="file, or - for stdout (default docs/events.md)"
    )
    events.set_defaults(func=cmd_export_events)
    contract = sub.add_parser(
        "check-schema",
        help="refuse breaking schema changes the changelog does not list",
        description="Compare the SDL with the last released schema: every breaking change "
        "must be listed in CHANGELOG.md (Unreleased, Breaking) with its deprecation "
        "(docs/decisions/0030-schema-contract.md). Exits 1 when one is not.",
    )
    contract.add_argument("--schema", default="schema.graphql", help="the SDL to check")
    contract.add_argument(
        "--released", default="schema/released.graphql", help="the last release's SDL"
    )
    contract.add_argument("--changelog", default="CHANGELOG.md", help="the changelog")
    contract.set_defaults(func=cmd_check_schema)

    ws = sub.add_parser(
        "create-workspace", help="create a workspace (tenant)", description="Create a workspace."
    )
    ws.add_argument("name", metavar="NAME", help="workspace name, unique")
    ws.set_defaults(func=cmd_create_workspace)

    user = sub.add_parser(
        "create-user",
        help="create a user in a workspace",
        description="Create a user who can log in.",
    )
    user.add_argument("--workspace", required=True, help="workspace NAME")
    user.add_argument("--email", required=True, help="login email (unique)")
    user.add_argument("--password", required=True, help="password (8+ characters)")
    user.add_argument("--role", required=True, choices=["admin", "manager", "agent", "viewer"])
    user.add_argument("--name", default=None, help="display name (default: from the email)")
    user.set_defaults(func=cmd_create_user)

    key = sub.add_parser(
        "create-api-key",
        help="create a partner API key in a workspace",
        description="Create a scoped API key and print its token once. Scopes: "
        + ", ".join(sorted(SCOPE_NAMES))
        + ".",
    )
    key.add_argument("--workspace", required=True, help="workspace NAME")
    key.add_argument("--name", required=True, help="what the key is for, e.g. the integration")
    key.add_argument(
        "--scope",
        required=True,
        action="append",
        choices=sorted(SCOPE_NAMES),
        metavar="SCOPE",
        help="a scope the key holds; repeat for several",
    )
    key.set_defaults(func=cmd_create_api_key)

    inbox = sub.add_parser(
        "email-address",
        help="print a workspace's inbound email address",
        description="Print the address whose mail opens conversations in the workspace "
        "(forward the support mailbox there). Uses CRM_SECRET_KEY, CRM_MAIL_FROM and "
        "CRM_MAIL_REPLY_DOMAIN as the server does.",
    )
    inbox.add_argument("--workspace", required=True, help="workspace NAME")
    inbox.set_defaults(func=cmd_email_address)

    dump = sub.add_parser(
        "backup",
        help="write a backup of the whole database to a file",
        description="Write every table (one consistent snapshot) and a manifest to one zip "
        "file. Pure Python: no pg_dump needed; works with embedded and external PostgreSQL.",
    )
    dump.add_argument("--out", required=True, metavar="FILE", help="backup file to write")
    dump.set_defaults(func=cmd_backup)

    load = sub.add_parser(
        "restore",
        help="restore a backup file into the database",
        description="Load a backup into an empty database (migrated to the backup's "
        "migration first if it has no tables), all or nothing.",
    )
    load.add_argument("file", metavar="FILE", help="backup file written by `backup`")
    load.add_argument(
        "--force", action="store_true", help="replace the data of a database that is not empty"
    )
    load.set_defaults(func=cmd_restore)

    newkey = sub.add_parser(
        "new-encryption-key",
        help="print a new entry for CRM_ENCRYPTION_KEYS",
        description="Print `kid:base64key` (a random 256-bit key). Put it first in "
        "CRM_ENCRYPTION_KEYS, keep the old keys after it, then run rotate-encryption-key.",
    )
    newkey.add_argument("--kid", default=None, help="key id (default: dated and random)")
    newkey.set_defaults(func=cmd_new_encryption_key)

    rotate = sub.add_parser(
        "rotate-encryption-key",
        help="re-encrypt sensitive values with the current key",
        description="Re-encrypt every sensitive value (webhook secrets, sensitive custom "
        "fields) with the first key of CRM_ENCRYPTION_KEYS, in batches; idempotent. "
        "Afterwards the older keys can be removed from the configuration.",
    )
    rotate.add_argument("--batch-size", type=int, default=500, help="rows per transaction")
    rotate.set_defaults(func=cmd_rotate_encryption_key)

    imp = sub.add_parser(
        "import",
        help="import customers, companies, deals, orders or activities from CSV or JSONL",
        description="Import a CSV (header row) or JSON Lines file into a workspace, as a "
        "job run by this command, with a progress bar and a summary. Columns match the "
        "API's field names (case, spaces, _ and - ignored), custom.<key> for custom "
        "fields, address.<part> for address parts. Exit status: 0 every row imported, "
        "2 some rows bad (listed), 1 failed.",
    )
    imp.add_argument("file", metavar="FILE", help="the .csv or .jsonl file")
    imp.add_argument(
        "--type", required=True, choices=["customers", "companies", "deals", "orders", "activities"]
    )
    imp.add_argument("--workspace", required=True, help="workspace NAME")
    imp.add_argument(
        "--as",
        dest="as_user",
        metavar="EMAIL",
        help="act as this user of the workspace (default: the operator, as an admin)",
    )
    imp.add_argument(
        "--mapping",
        action="append",
        metavar="COLUMN=FIELD",
        help="map a column to a field (COLUMN= skips it); repeatable",
    )
    imp.add_argument(
        "--key",
        help="customers' upsert key: email (default), externalId or custom:<field>",
    )
    imp.add_argument(
        "--mode",
        choices=["all-or-nothing", "good-rows"],
        default="good-rows",
        help="with bad rows: write nothing, or write the good ones (default)",
    )
    imp.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    imp.add_argument("--format", choices=["csv", "jsonl"], help="default: by the file's extension")
    imp.add_argument("--errors", type=int, default=20, help="bad rows to list (default 20)")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as error:  # CRM_* settings: what is wrong, without a traceback
        for problem in error.errors():
            names = [f"CRM_{str(part).upper()}" for part in problem["loc"][:1]]
            message = problem["msg"].removeprefix("Value error, ")
            _say(f"error: {names[0] + ': ' if names else ''}{message}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
