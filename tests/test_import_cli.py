"""``crm-graphql import``: CSV and JSON Lines files imported by the command as a job, with
its progress bar, summary and exit status (a real child process against the session's
database and Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.enums import JobStatus
from crm_graphql.models import Customer, Job, Role, User, Workspace
from tests import support


def run_import(settings: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        {
            "CRM_DATABASE_URL": settings.database_url,
            "CRM_REDIS_URL": settings.redis_url,
            "CRM_ENCRYPTION_KEYS": ",".join(settings.encryption_keys),
            "CRM_DATA_DIR": str(tmp_path / "crm-data"),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "crm_graphql.cli", "import", *args],
        cwd=support.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _customers(
    sessionmaker: async_sessionmaker[AsyncSession], workspace: Workspace
) -> dict[str, Customer]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Customer).where(Customer.workspace_id == workspace.id))
        return {c.name: c for c in rows}


async def test_a_csv_file_with_a_bad_row_and_a_dry_run(
    settings: Any,
    tmp_path: Path,
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
    users: dict[Role, User],
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Name,Email,Tags\nAda,ada@example.com,a;b\nBroken,nope,\nGrace,,\n")
    common = ["--type", "customers", "--workspace", workspace.name]
    dry = run_import(settings, tmp_path, str(path), *common, "--dry-run")
    assert dry.returncode == 2, dry.stdout + dry.stderr
    assert "Dry run: nothing was written." in dry.stdout
    assert "line 3 email:" in dry.stdout
    assert await _customers(sessionmaker, workspace) == {}

    done = run_import(settings, tmp_path, str(path), *common, "--as", users[Role.AGENT].email)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Import succeeded: 3 rows; 2 created, 0 updated, 0 unchanged, 1 failed" in done.stdout
    assert "/ 3 rows" in done.stderr  # the progress bar
    people = await _customers(sessionmaker, workspace)
    assert sorted(people) == ["Ada", "Grace"] and people["Ada"].tags == ["a", "b"]
    async with sessionmaker() as session:
        job = await session.scalar(
            select(Job)
            .where(Job.workspace_id == workspace.id, Job.status == JobStatus.SUCCEEDED)
            .order_by(Job.created_at.desc())
        )
    assert job is not None and job.created_by_id == users[Role.AGENT].id

    refused = run_import(settings, tmp_path, str(path), *common, "--as", users[Role.VIEWER].email)
    assert refused.returncode == 1 and "viewer role cannot" in refused.stdout


async def test_a_json_lines_file_with_a_mapping_and_an_external_id_key(
    settings: Any,
    tmp_path: Path,
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    path = tmp_path / "people.jsonl"
    path.write_text(
        '{"fullName": "Ada", "id": "A-1", "email": "ada@example.com"}\n'
        '{"fullName": "Grace", "id": "A-2"}\n'
        "\n"
        '{"fullName": "Ada Lovelace", "id": "A-1"}\n'
    )
    args = [
        str(path),
        "--type=customers",
        f"--workspace={workspace.name}",
        "--mapping",
        "fullName=name",
        "--mapping",
        "id=externalId",
        "--key=externalId",
        "--mode=all-or-nothing",
        "--quiet",
    ]
    bad = run_import(settings, tmp_path, *args)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "Nothing was written" in bad.stdout and "line 4 externalId" in bad.stdout
    assert await _customers(sessionmaker, workspace) == {}
    path.write_text(path.read_text().replace('"A-1"}', '"A-3"}'))
    good = run_import(settings, tmp_path, *args)
    assert good.returncode == 0, good.stdout + good.stderr
    assert sorted(
        (c.name, c.external_id) for c in (await _customers(sessionmaker, workspace)).values()
    ) == [("Ada", "A-1"), ("Ada Lovelace", "A-3"), ("Grace", "A-2")]
