"""`crm-graphql rotate-encryption-key`: values written under key A, configuration [B, A],
rotate, then [B] alone reads everything; idempotent; refuses when a key is missing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from crm_graphql import crypto
from crm_graphql.crypto import Keyring
from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import Customer, Role, Webhook
from crm_graphql.services import auth, customers, privacy, webhooks
from crm_graphql.services.actor import Actor
from crm_graphql.settings import new_encryption_key_entry
from tests import support
from tests.test_cli import Cli, Run, _fetch, cli, scratch_database  # noqa: F401

KEY_A = new_encryption_key_entry("keyA")
KEY_B = new_encryption_key_entry("keyB")
SECRET_VALUES = [f"NI-{n:04d}-secret" for n in range(3)]


def rotate(cli: Cli, url: str, keys: list[str], *args: str) -> Run:  # noqa: F811
    env = {**cli.env(url), "CRM_ENCRYPTION_KEYS": ",".join(keys)}
    command = ["rotate-encryption-key", *args]
    done = subprocess.run(
        [sys.executable, "-m", "crm_graphql.cli", *command],
        cwd=support.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Run(command, done.returncode, done.stdout, done.stderr)


async def write_under(url: str, keys: list[str]) -> list[str]:
    """A workspace whose customers hold a sensitive field and a webhook; its secret."""
    engine = make_engine(url, pool_size=1)
    try:
        sessionmaker = make_sessionmaker(engine)
        crypto.attach(sessionmaker, Keyring.from_entries(keys))
        async with sessionmaker() as session, session.begin():
            workspace = await auth.create_workspace(session, name="Rotating")
            actor = Actor(workspace_id=workspace.id, role=Role.ADMIN, request_id="test")
            await privacy.set_sensitive_custom_fields(actor, session, ["nationalId"])
            for value in SECRET_VALUES:
                await customers.create_customer(
                    actor, session, {"name": "Ada", "custom_fields": {"nationalId": value}}
                )
            _, secret = await webhooks.create_webhook(actor, session, url="http://127.0.0.1:9")
        return [secret]
    finally:
        await engine.dispose()


async def read_with(url: str, keys: list[str]) -> tuple[list[str], list[str], set[str]]:
    """Decrypted sensitive values and webhook secrets, and the key ids in use."""
    ring = Keyring.from_entries(keys)
    engine = make_engine(url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            sealed = list(await session.scalars(select(Customer.custom_fields_encrypted)))
            secrets = list(await session.scalars(select(Webhook.secret_encrypted)))
    finally:
        await engine.dispose()
    values = sorted(ring.decrypt_json(s)["nationalId"] for s in sealed if s)
    kids = {crypto.key_id(s) for s in [*sealed, *secrets] if s}
    return values, [ring.decrypt(s) for s in secrets], kids


def test_rotate_then_drop_the_old_key(
    cli: Cli,  # noqa: F811
    scratch_database: Callable[[], str],  # noqa: F811
    tmp_path: Path,
) -> None:
    url = scratch_database()
    support.migrate(url)
    secrets = asyncio.run(write_under(url, [KEY_A]))
    raw = "".join(
        r[0]
        for r in _fetch(
            url, "SELECT t::text FROM customers t UNION ALL SELECT t::text FROM webhooks t"
        )
    )
    assert not [v for v in [*SECRET_VALUES, *secrets] if v in raw]

    missing = rotate(cli, url, [KEY_B])
    assert missing.returncode == 1, missing
    assert "keyA" in missing.stdout

    rotated = rotate(cli, url, [KEY_B, KEY_A], "--batch-size", "2")
    assert rotated.returncode == 0, rotated
    assert "Re-encrypted 4 values" in rotated.stdout

    values, webhook_secrets, kids = asyncio.run(read_with(url, [KEY_B]))
    assert values == SECRET_VALUES and webhook_secrets == secrets and kids == {"keyB"}

    again = rotate(cli, url, [KEY_B])
    assert again.returncode == 0, again
    assert "Re-encrypted 0 values" in again.stdout and "(4 already current)" in again.stdout
