"""Exports (issue 17, point 3): ``createExport`` hands out a signed, expiring link; the
download streams the list as the caller reads it through the API (filter, segment,
sensitive fields, exportable custom fields), re-checks the creator at download time and
is audited with its row count; the CLI writes the same file."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import AuditLog, Customer, Role, User, Workspace
from crm_graphql.services import api_keys, custom_fields, exports
from crm_graphql.services.actor import Actor
from tests import support
from tests.factories import create_customer

CREATE_EXPORT = """mutation($i: CreateExportInput!) {
  createExport(input: $i) {
    export { url expiresAt type format fields }
    errors { code field message }
  }
}"""


async def _link(client: support.GraphQLClient, **input: Any) -> dict[str, Any]:
    result = (await client(CREATE_EXPORT, {"i": input})).ok()["createExport"]
    assert result["errors"] == [], result
    return result["export"]  # type: ignore[no-any-return]


async def _download(client: support.GraphQLClient, url: str) -> httpx.Response:
    return await client.http.get(url)


def _csv(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


def _jsonl(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.decode().splitlines()]


async def test_csv_and_jsonl_follow_the_lists_filter_newest_first(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    agent = as_role[Role.AGENT]
    ada = await create_customer(agent, 'Ada, "the first"', email="ada@example.com", tags=["vip"])
    await create_customer(agent, "Bob", tags=["churned"])
    grace = await create_customer(
        agent, "Grace", email="grace@example.com", tags=["vip", "navy"], phone="+1 202 555 0100"
    )
    vip = {"tags": {"anyOf": ["vip"]}}
    link = await _link(agent, type="CUSTOMERS", format="CSV", filter=vip)
    assert link["type"] == "CUSTOMERS" and link["format"] == "CSV"
    assert link["url"].startswith("http://testserver/exports/")
    response = await _download(agent, link["url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="customers.csv"'
    rows = _csv(response.content)
    assert [r["id"] for r in rows] == [grace, ada]  # newest first, Bob filtered out
    assert list(rows[0]) == link["fields"]
    assert rows[0]["phone"] == "+12025550100" and json.loads(rows[0]["tags"]) == ["vip", "navy"]
    assert rows[1]["name"] == 'Ada, "the first"' and rows[1]["lifecycleStage"] == "LEAD"

    link = await _link(agent, type="CUSTOMERS", format="JSONL", filter=vip, fields=["email", "id"])
    assert link["fields"] == ["email", "id"]  # in the order asked
    response = await _download(agent, link["url"])
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert _jsonl(response.content) == [
        {"id": grace, "email": "grace@example.com"},
        {"id": ada, "email": "ada@example.com"},
    ]

    # Audited: the link when made, the download with its rows.
    async with sessionmaker() as session:
        audit = list(
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.workspace_id == workspace.id, AuditLog.action == exports.ACTION)
                .order_by(AuditLog.id)
            )
        )
    assert [(a.entity_type, a.changes["rows"], a.changes["format"]) for a in audit] == [
        ("Customer", 2, "csv"),
        ("Customer", 2, "jsonl"),
    ]


async def test_bad_filter_fields_and_segment_of_deals_are_user_errors(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    cases = [
        ({"filter": {"name": {"contans": "x"}}}, "filter.name"),
        ({"fields": ["id", "password"]}, "fields.1"),
        ({"expiresInSeconds": 0}, "expiresInSeconds"),
    ]
    for extra, field in cases:
        result = await agent(CREATE_EXPORT, {"i": {"type": "CUSTOMERS", "format": "CSV", **extra}})
        payload = result.ok()["createExport"]
        assert payload["export"] is None
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", field)]
    segment_id = to_global_id("Segment", uuid.uuid4())
    payload = (
        await agent(
            CREATE_EXPORT, {"i": {"type": "DEALS", "format": "CSV", "segmentId": segment_id}}
        )
    ).ok()["createExport"]
    assert [e["field"] for e in payload["errors"]] == ["segmentId"]


async def test_segment_export_is_its_members_within_the_filter(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    manager = as_role[Role.MANAGER]
    in_both = await create_customer(manager, "Lin", tags=["vip"], email="lin@example.com")
    await create_customer(manager, "Max", tags=["vip"])
    await create_customer(manager, "Ola", email="ola@example.com")
    segment = (
        await manager(
            """mutation($i: CreateSegmentInput!) { createSegment(input: $i) {
                 segment { id } errors { code field message } } }""",
            {"i": {"name": "VIPs", "filter": {"tags": {"anyOf": ["vip"]}}, "shared": True}},
        )
    ).ok()["createSegment"]["segment"]["id"]
    link = await _link(
        manager,
        type="CUSTOMERS",
        format="JSONL",
        segmentId=segment,
        filter={"email": {"isNull": False}},
        fields=["id"],
    )
    assert _jsonl((await _download(manager, link["url"])).content) == [{"id": in_both}]


async def test_sensitive_fields_are_null_for_viewers_and_keys_and_unexportable_ones_left_out(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    admin: Actor,
    workspace: Workspace,
) -> None:
    async with sessionmaker() as session, session.begin():
        for key, exportable in (("tier", True), ("income", True), ("internal", False)):
            await custom_fields.create_definition(
                admin,
                session,
                {"entity": "customer", "key": key, "label": key, "type": "text",
                 "exportable": exportable},
            )  # fmt: skip
        _, token = await api_keys.create_api_key(
            admin, session, name="Partner", scopes=[api_keys.CUSTOMERS_READ]
        )
    sensitive = await as_role[Role.ADMIN](
        """mutation($i: SetSensitiveCustomFieldsInput!) {
             setSensitiveCustomFields(input: $i) { keys errors { code } } }""",
        {"i": {"keys": ["income"]}},
    )
    assert sensitive.ok()["setSensitiveCustomFields"]["keys"] == ["income"]
    agent = as_role[Role.AGENT]
    values = {"tier": "gold", "income": "90000", "internal": "x"}
    ada = await create_customer(agent, "Ada", customFields=values)
    partner = support.GraphQLClient(agent.http, token)
    seen = {}
    for name, client in (
        ("agent", agent),
        ("viewer", as_role[Role.VIEWER]),
        ("key", partner),
    ):
        link = await _link(client, type="CUSTOMERS", format="JSONL", fields=["id", "customFields"])
        assert link["fields"] == ["id", "custom.tier", "custom.income"]
        seen[name] = _jsonl((await _download(client, link["url"])).content)
        csv_link = await _link(client, type="CUSTOMERS", format="CSV", fields=["customFields"])
        assert _csv((await _download(client, csv_link["url"])).content) == [
            {"custom.tier": "gold", "custom.income": "90000" if name == "agent" else ""}
        ]
    assert seen["agent"] == [{"id": ada, "customFields": {"tier": "gold", "income": "90000"}}]
    assert (
        seen["viewer"]
        == seen["key"]
        == [{"id": ada, "customFields": {"tier": "gold", "income": None}}]
    )


async def test_a_key_without_the_lists_scope_gets_no_link(
    client: support.GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession], admin: Actor
) -> None:
    async with sessionmaker() as session, session.begin():
        _, token = await api_keys.create_api_key(
            admin, session, name="Deals only", scopes=[api_keys.DEALS_READ]
        )
    keyed = support.GraphQLClient(client.http, token)
    payload = (await keyed(CREATE_EXPORT, {"i": {"type": "CUSTOMERS", "format": "CSV"}})).ok()
    assert [e["code"] for e in payload["createExport"]["errors"]] == ["FORBIDDEN"]
    link = await _link(keyed, type="DEALS", format="CSV")
    assert (await _download(keyed, link["url"])).status_code == 200


async def test_expired_altered_and_orphaned_links_are_refused(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Any,
    admin: Actor,
    users: dict[Role, User],
) -> None:
    agent = as_role[Role.AGENT]
    await create_customer(agent, "Ada")
    request = exports.ExportRequest(type="customers", format="csv")
    secret = settings.secret_key
    # A fake clock: the link was made 16 minutes ago and lived 15.
    token, _ = exports.sign_link(
        secret, Actor(admin.workspace_id, Role.AGENT, user_id=users[Role.AGENT].id),
        request, now=time.time() - 16 * 60,
    )  # fmt: skip
    expired = await agent.http.get(f"/exports/{token}")
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "LINK_EXPIRED"

    link = await _link(agent, type="CUSTOMERS", format="CSV")
    body, _, mac = link["url"].rpartition("/")[2].partition(".")
    claims = json.loads(exports._unb64(body))
    claims["t"] = "deals"  # another list, same signature
    forged = f"{exports._b64(json.dumps(claims).encode())}.{mac}"
    for bad in (forged, link["url"].rpartition("/")[2][:-2] + "xx", "garbage"):
        refused = await agent.http.get(f"/exports/{bad}")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "LINK_INVALID"
    assert (await agent.http.get(link["url"])).status_code == 200

    # The creator disabled after making it: the link gives nothing.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == users[Role.AGENT].id).values(is_active=False)
        )
    gone = await agent.http.get(link["url"])
    assert gone.status_code == 403 and gone.json()["error"]["code"] == "FORBIDDEN"

    async with sessionmaker() as session, session.begin():
        key, token = await api_keys.create_api_key(
            admin, session, name="Partner", scopes=[api_keys.CUSTOMERS_READ]
        )
    partner_link = await _link(
        support.GraphQLClient(agent.http, token), type="CUSTOMERS", format="CSV"
    )
    assert (await agent.http.get(partner_link["url"])).status_code == 200
    async with sessionmaker() as session, session.begin():
        await api_keys.revoke_api_key(admin, session, key.id)
    revoked = await agent.http.get(partner_link["url"])
    assert revoked.status_code == 403 and "revoked" in revoked.json()["error"]["message"]


async def test_download_streams_many_chunks_over_real_http(
    live_server: str,
    live_admin: tuple[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    rows = exports.CHUNK_ROWS * 3 + 7
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as http:
        admin = await support.GraphQLClient(http).logged_in(*live_admin)
        async with sessionmaker() as session, session.begin():
            workspace_id = await session.scalar(
                select(User.workspace_id).where(User.email == live_admin[0])
            )
            tag = uuid.uuid4().hex[:8]
            await session.execute(
                insert(Customer),
                [
                    {"workspace_id": workspace_id, "name": f"Bulk {i}", "tags": [tag]}
                    for i in range(rows)
                ],
            )
        link = await _link(
            admin, type="CUSTOMERS", format="JSONL", filter={"tags": {"anyOf": [tag]}}
        )
        assert link["url"].startswith(live_server + "/exports/")
        chunks = 0
        lines = 0
        async with http.stream("GET", link["url"]) as response:
            assert response.status_code == 200
            assert response.headers.get("transfer-encoding") == "chunked"
            async for chunk in response.aiter_raw():
                chunks += 1
                lines += chunk.count(b"\n")
        assert lines == rows
        assert chunks > 1


def test_cli_export_writes_the_file_and_audits_it(
    settings: Any, tmp_path: Any, workspace: Workspace, admin: Actor
) -> None:
    import asyncio

    from tests.factories import make_customer

    async def seed() -> None:
        from crm_graphql import crypto
        from crm_graphql.db.engine import make_engine, make_sessionmaker

        engine = make_engine(settings.database_url, pool_size=1)
        maker = make_sessionmaker(engine)
        crypto.attach(maker, crypto.Keyring.from_entries(settings.encryption_keys))
        await make_customer(maker, admin, "Cli One", tags=["cli"])
        await make_customer(maker, admin, "Cli Two")
        await engine.dispose()

    asyncio.run(seed())
    out = tmp_path / "customers.csv"
    env = {
        "PATH": "/usr/bin:/bin",
        "CRM_DATABASE_URL": settings.database_url,
        "CRM_ENCRYPTION_KEYS": ",".join(settings.encryption_keys),
        "CRM_DATA_DIR": str(tmp_path),
    }
    common = [sys.executable, "-m", "crm_graphql.cli", "export", "--workspace", workspace.name]
    done = subprocess.run(
        [*common, "--type", "customers", "--filter", '{"tags": {"anyOf": ["cli"]}}',
         "--format", "csv", "--out", str(out)],
        env=env, cwd=support.ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Exported 1 customers as csv" in done.stderr
    assert [r["name"] for r in _csv(out.read_bytes())] == ["Cli One"]
    for out_option in ([], ["--out", "-"]):  # standard output, also when named ``-``
        to_stdout = subprocess.run(
            [*common, "--type", "customers", "--format", "jsonl", "--fields", "name",
             *out_option],
            env=env, cwd=support.ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert to_stdout.returncode == 0, to_stdout.stderr
        assert [json.loads(line) for line in to_stdout.stdout.splitlines()] == [
            {"name": "Cli Two"},
            {"name": "Cli One"},
        ]
    assert not (support.ROOT / "-").exists()
    bad = subprocess.run(
        [*common, "--type", "customers", "--filter", '{"nope": 1}'],
        env=env, cwd=support.ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1 and "filter" in bad.stdout


async def test_companies_and_deals_export_with_their_own_filters(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    manager = as_role[Role.MANAGER]
    made = await manager(
        "mutation($i: CreateCompanyInput!) { createCompany(input: $i) { company { id } } }",
        {"i": {"name": "Acme", "domain": "acme.example", "industry": "Retail"}},
    )
    acme = made.ok()["createCompany"]["company"]["id"]
    await manager(
        "mutation($i: CreateCompanyInput!) { createCompany(input: $i) { company { id } } }",
        {"i": {"name": "Globex", "industry": "Energy"}},
    )
    link = await _link(
        manager, type="COMPANIES", format="JSONL", filter={"industry": {"eq": "Retail"}},
        fields=["id", "name", "domain"],
    )  # fmt: skip
    assert _jsonl((await _download(manager, link["url"])).content) == [
        {"id": acme, "name": "Acme", "domain": "acme.example"}
    ]
    stage = (
        await manager(
            """mutation($i: CreatePipelineInput!) {
                 createPipeline(input: $i) { pipeline { stages { id } } } }""",
            {"i": {"name": "Sales", "stages": [{"name": "Lead"}]}},
        )
    ).ok()["createPipeline"]["pipeline"]["stages"][0]["id"]
    for title, amount in (("Small", "10.50"), ("Big", "9000")):
        await manager(
            "mutation($i: CreateDealInput!) { createDeal(input: $i) { deal { id } } }",
            {"i": {"title": title, "stageId": stage, "currency": "EUR", "amount": amount,
                   "companyId": acme}},
        )  # fmt: skip
    link = await _link(
        manager, type="DEALS", format="CSV", filter={"amount": {"gt": "100"}},
        fields=["title", "amount", "currency", "status", "stageId", "companyId"],
    )  # fmt: skip
    rows = _csv((await _download(manager, link["url"])).content)
    assert rows == [
        {"title": "Big", "amount": "9000.00", "currency": "EUR", "status": "OPEN",
         "stageId": stage, "companyId": acme}
    ]  # fmt: skip
