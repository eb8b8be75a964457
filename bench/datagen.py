"""Generate the benchmark data set at a scale factor, in its own database, with COPY.

S=1: 10k customers, 2k companies, 20k deals, 100k activities, 30k orders, 2k conversations
with 50k messages in the bench workspace; S=10 is ten times that. Two small other
workspaces (2% of the rows each) make the tenant predicates do real work.

The database is created at the current Alembic head with the project's migrations, rows
are written with asyncpg ``copy_records_to_table`` and derived columns the product keeps
(``customers.last_activity_at``, ``conversations.last_message_seq/_at``) are computed
before the COPY. A comment on the database records scale, seed, schema revision and the
generator version: a second run with the same values reuses the database.

    python -m bench.datagen --scale 1 [--seed 42] [--server postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from crm_graphql import demo
from crm_graphql.services.auth import hash_password
from crm_graphql.services.products import order_lines_from_items

ROOT = Path(__file__).resolve().parent.parent
DATAGEN_VERSION = 7
PASSWORD = "bench-password"
BASE_TIME = demo.BASE_TIME
START_TIME = demo.START_TIME
HISTORY_SECONDS = int(demo.HISTORY.total_seconds())
MAIN_WORKSPACE = "Bench"
MAIN_DOMAIN = "bench.example"
# Conversations of the live-chat scenario (RT1): private, open, assigned round-robin to
# the first RT_AGENTS agents, so each agent's inbox sees a tenth of them.
RT_CONVERSATIONS = 300
RT_AGENTS = 10

PER_SCALE = {
    "companies": 2_000,
    "customers": 10_000,
    "deals": 20_000,
    "activities": 100_000,
    "orders": 30_000,
    "conversations": 2_000,
    "messages": 50_000,
}
USERS = (("admin", 1), ("manager", 3), ("agent", 20), ("viewer", 3))


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_name(scale: float, seed: int) -> str:
    return f"crm_bench_s{scale:g}_seed{seed}".replace(".", "_")


def database_url(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def schema_head() -> str:
    """The schema the data set was made at: the head revision and the chain that leads to
    it (``0014<0012<0011<...``). The head's id alone is not enough: branches re-chained at
    a merge keep their ids, and a database made on a branch (0014 after 0009) must not be
    reused for main (0014 after 0012, with search documents and segments)."""
    from alembic.script import ScriptDirectory

    from crm_graphql.cli import alembic_config

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/x"))
    return "<".join(str(r.revision) for r in script.walk_revisions())


def marker(scale: float, seed: int, head: str) -> str:
    return json.dumps(
        {"crm_bench": DATAGEN_VERSION, "scale": float(scale), "seed": seed, "revision": head},
        sort_keys=True,
    )


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


class Ids:
    """Time-ordered UUIDs (version 7 layout) drawn from the seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def at(self, ts: datetime) -> uuid.UUID:
        ms = int(ts.timestamp() * 1000)
        rand = self.rng.getrandbits(74)
        value = (ms & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76
        value |= ((rand >> 62) & 0xFFF) << 64
        value |= 0b10 << 62
        value |= rand & ((1 << 62) - 1)
        return uuid.UUID(int=value)


@dataclass
class Tables:
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, table: str, columns: tuple[str, ...], row: tuple[Any, ...]) -> None:
        self.columns.setdefault(table, columns)
        self.rows.setdefault(table, []).append(row)


def generate_workspace(
    tables: Tables, rng: random.Random, *, name: str, domain: str, scale: float, pw_hash: str
) -> uuid.UUID:
    """Append one workspace's rows to ``tables``; returns the workspace id."""
    ids = Ids(rng)
    n = {k: max(1, round(v * scale)) for k, v in PER_SCALE.items()}
    ws_created = START_TIME - timedelta(days=30)
    ws = ids.at(ws_created)
    tables.add(
        "workspaces", ("id", "name", "created_at", "updated_at"), (ws, name, ws_created, ws_created)
    )

    def when(lo: datetime = START_TIME) -> datetime:
        span = max(1, int((BASE_TIME - lo).total_seconds()))
        return lo + timedelta(seconds=rng.randrange(span))

    # Typed custom-field definitions over the customers' generated values (bench CF1):
    # ids derived from the workspace, so the seeded stream (and every other row) is unchanged.
    fcols = (
        "id", "workspace_id", "entity", "key", "label", "type", "options", "required",
        "searchable", "exportable", "version", "created_at", "updated_at",
    )  # fmt: skip
    for key, label, kind, options in (
        ("source", "Source", "single_select", list(demo.SOURCES)),
        ("title", "Job title", "text", []),
    ):
        tables.add(
            "custom_field_definitions",
            fcols,
            (
                uuid.uuid5(ws, f"customer:{key}"),
                ws,
                "customer",
                key,
                label,
                kind,
                options,
                False,
                False,
                True,
                1,
                ws_created,
                ws_created,
            ),
        )

    # Users of every role.
    users: dict[str, list[uuid.UUID]] = {}
    ucols = (
        "id",
        "workspace_id",
        "email",
        "name",
        "password_hash",
        "role",
        "is_active",
        "created_at",
        "updated_at",
    )
    for role, count in USERS:
        for i in range(count):
            created = ws_created + timedelta(minutes=len(tables.rows.get("users", [])))
            uid = ids.at(created)
            person = f"{rng.choice(demo.FIRST_NAMES)} {rng.choice(demo.LAST_NAMES)}"
            tables.add(
                "users",
                ucols,
                (uid, ws, f"{role}{i + 1}@{domain}", person, pw_hash, role, True, created, created),
            )
            users.setdefault(role, []).append(uid)
    sales = users["manager"] + users["agent"]

    # Companies.
    companies: list[uuid.UUID] = []
    ccols = (
        "id",
        "workspace_id",
        "name",
        "domain",
        "industry",
        "employee_count",
        "phone",
        "website",
        "owner_id",
        "tags",
        "custom_fields",
        "version",
        "created_at",
        "updated_at",
    )
    for i in range(n["companies"]):
        created = when()
        cid = ids.at(created)
        prefix = rng.choice(demo.COMPANY_PREFIXES)
        word, industry = rng.choice(demo.COMPANY_KINDS)
        cname = f"{prefix} {word}" if i < 500 else f"{prefix} {word} {i}"
        cdomain = f"{ascii_slug(prefix + word)}{i}.example"
        tags = rng.sample(demo.COMPANY_TAGS, rng.randint(0, 3))
        tables.add(
            "companies",
            ccols,
            (
                cid,
                ws,
                cname,
                cdomain,
                industry,
                rng.choice((8, 25, 60, 150, 400, 1200, 5000)),
                f"+1-555-01{rng.randrange(100):02d}",
                f"https://{cdomain}",
                rng.choice(sales),
                tags,
                json.dumps({"source": rng.choice(demo.SOURCES)}),
                1,
                created,
                created,
            ),
        )
        companies.append(cid)

    # Customers (last_activity_at filled in after the activities).
    stages = [s.value for s, _ in demo.LIFECYCLE_WEIGHTS]
    stage_w = [w for _, w in demo.LIFECYCLE_WEIGHTS]
    buying = {s.value for s in demo.BUYING_STAGES}
    customers: list[list[Any]] = []
    for i in range(n["customers"]):
        created = when()
        first, last = rng.choice(demo.FIRST_NAMES), rng.choice(demo.LAST_NAMES)
        email = (
            f"{ascii_slug(first)}.{ascii_slug(last)}.{i}@{domain}" if rng.random() < 0.95 else None
        )
        customers.append(
            [
                ids.at(created),
                ws,
                f"{first} {last}",
                email,
                f"+1-555-{rng.randrange(10000):04d}",
                rng.choices(stages, weights=stage_w)[0],
                rng.choice(sales) if rng.random() < 0.9 else None,
                rng.choice(companies) if rng.random() < 0.85 else None,
                rng.sample(demo.CUSTOMER_TAGS, rng.choice((0, 1, 1, 2, 2, 3))),
                rng.sample(demo.NEEDS, rng.randint(0, 2)),
                json.dumps(
                    {
                        "language": rng.choice(("en", "de", "fr", "es")),
                        "channel": rng.choice(("email", "phone", "chat")),
                    }
                ),
                json.dumps(
                    {"source": rng.choice(demo.SOURCES), "title": rng.choice(demo.JOB_TITLES)}
                ),
                None,
                1,
                created,
                created,
            ]
        )
    last_activity: dict[int, datetime] = {}

    def skewed(count: int) -> int:
        # A few customers have much history, most have a little.
        return min(count - 1, int(count * rng.random() ** 1.6))

    # Pipelines and stages.
    pcols = ("id", "workspace_id", "name", "position", "version", "created_at", "updated_at")
    scols = (
        "id",
        "workspace_id",
        "pipeline_id",
        "name",
        "position",
        "probability",
        "version",
        "created_at",
        "updated_at",
    )
    pipelines: list[tuple[uuid.UUID, list[uuid.UUID]]] = []
    for position, (pname, pstages) in enumerate(
        (("Sales", demo.SALES_STAGES), ("Renewals", demo.RENEWAL_STAGES))
    ):
        pid = ids.at(ws_created)
        tables.add("pipelines", pcols, (pid, ws, pname, position, 1, ws_created, ws_created))
        stage_ids = []
        for spos, (sname, prob) in enumerate(pstages):
            sid = ids.at(ws_created)
            tables.add(
                "stages", scols, (sid, ws, pid, sname, spos, prob, 1, ws_created, ws_created)
            )
            stage_ids.append(sid)
        pipelines.append((pid, stage_ids))

    # Deals.
    dcols = (
        "id",
        "workspace_id",
        "title",
        "pipeline_id",
        "stage_id",
        "customer_id",
        "company_id",
        "owner_id",
        "amount",
        "currency",
        "status",
        "expected_close_date",
        "closed_at",
        "lost_reason",
        "version",
        "created_at",
        "updated_at",
    )
    hcols = (
        "id",
        "workspace_id",
        "deal_id",
        "from_stage_id",
        "to_stage_id",
        "changed_at",
        "created_at",
        "updated_at",
    )
    extra = random.Random(str(ws))  # the report columns' own stream (see below)
    deals: list[tuple[uuid.UUID, int, datetime]] = []
    for _ in range(n["deals"]):
        ci = skewed(len(customers))
        cust = customers[ci]
        created = when(cust[14])
        pid, stage_ids = pipelines[0] if rng.random() < 0.8 else pipelines[1]
        si = rng.randrange(len(stage_ids))
        status = (
            "won" if si == len(stage_ids) - 2 else "lost" if si == len(stage_ids) - 1 else "open"
        )
        closed = when(created) if status != "open" else None
        did = ids.at(created)
        tables.add(
            "deals",
            dcols,
            (
                did,
                ws,
                f"{rng.choice(demo.SALES_OFFERS)} for {cust[2]}",
                pid,
                stage_ids[si],
                cust[0],
                cust[7],
                cust[6] or rng.choice(sales),
                Decimal(rng.randrange(500, 120_000)),
                rng.choice(("USD", "USD", "EUR", "GBP")),
                status,
                (created + timedelta(days=rng.randrange(10, 120))).date(),
                closed,
                rng.choice(demo.LOST_REASONS) if status == "lost" else None,
                1,
                created,
                closed or created,
            ),
        )
        deals.append((did, ci, created))
        # Stage history (``deal_stage_changes``): from the first stage forward, now and then
        # skipping one, up to the deal's stage. Drawn from ``extra`` so the rest of the data
        # set stays what it was.
        position, moved = 0, created
        while position < si:
            target = min(si, position + (2 if extra.random() < 0.2 else 1))
            moved = moved + timedelta(hours=extra.randrange(1, 24 * 20))
            tables.add(
                "deal_stage_changes",
                hcols,
                (
                    uuid.UUID(int=extra.getrandbits(128), version=4),
                    ws,
                    did,
                    stage_ids[position],
                    stage_ids[target],
                    moved,
                    moved,
                    moved,
                ),
            )
            position = target

    # Activities: 40% on a deal (and its customer), the rest on a customer.
    atypes = [t.value for t, _ in demo.ACTIVITY_WEIGHTS]
    aweights = [w for _, w in demo.ACTIVITY_WEIGHTS]
    subjects = {t.value: s for t, s in demo.ACTIVITY_SUBJECTS.items()}
    acols = (
        "id",
        "workspace_id",
        "type",
        "subject",
        "body",
        "customer_id",
        "deal_id",
        "author_id",
        "occurred_at",
        "due_at",
        "completed_at",
        "details",
        "version",
        "created_at",
        "updated_at",
    )
    for _ in range(n["activities"]):
        if deals and rng.random() < 0.4:
            did, ci, lo = deals[rng.randrange(len(deals))]
        else:
            did, ci = None, skewed(len(customers))
            lo = customers[ci][14]
        cust = customers[ci]
        occurred = when(lo)
        atype = rng.choices(atypes, weights=aweights)[0]
        subject = rng.choice(subjects[atype]).format(
            first=cust[2].split(" ")[0], offer=rng.choice(demo.SALES_OFFERS)
        )
        due = occurred + timedelta(days=rng.randrange(1, 14)) if atype == "task" else None
        done = due if due is not None and due < BASE_TIME and rng.random() < 0.7 else None
        tables.add(
            "activities",
            acols,
            (
                ids.at(occurred),
                ws,
                atype,
                subject,
                rng.choice(demo.ACTIVITY_BODIES).format(
                    company="the company", offer="the offer", first=cust[2].split(" ")[0]
                )
                if rng.random() < 0.6
                else None,
                cust[0],
                did,
                rng.choice(sales),
                occurred,
                due,
                done,
                "{}",
                1,
                occurred,
                occurred,
            ),
        )
        if ci not in last_activity or last_activity[ci] < occurred:
            last_activity[ci] = occurred

    # Orders of buying customers (or anyone if none buys at this scale).
    buyers = [i for i, c in enumerate(customers) if c[5] in buying] or list(range(len(customers)))
    ocols = (
        "id",
        "workspace_id",
        "customer_id",
        "number",
        "status",
        "amount",
        "currency",
        "placed_at",
        "items",
        "version",
        "created_at",
        "updated_at",
    )
    statuses = (
        "paid",
        "paid",
        "fulfilled",
        "fulfilled",
        "fulfilled",
        "pending",
        "cancelled",
        "refunded",
    )
    for i in range(n["orders"]):
        cust = customers[buyers[min(len(buyers) - 1, int(len(buyers) * rng.random() ** 1.4))]]
        placed = when(cust[14])
        items, total = [], Decimal(0)
        for sku, pname, price, seats in rng.sample(demo.PRODUCTS, rng.randint(1, 3)):
            qty = rng.randint(1, 40) if seats else 1
            items.append({"sku": sku, "name": pname, "quantity": qty, "unitPrice": str(price)})
            total += price * qty
        tables.add(
            "orders",
            ocols,
            (
                ids.at(placed),
                ws,
                cust[0],
                f"SO-{i + 1:07d}",
                rng.choice(statuses),
                total,
                rng.choice(("USD", "EUR")),
                placed,
                json.dumps(items),
                1,
                placed,
                placed,
            ),
        )

    # Conversations with messages (per-conversation seq); the first RT_CONVERSATIONS are
    # the live-chat scenario's (private, open, assigned to one of RT_AGENTS agents).
    vcols = (
        "id",
        "workspace_id",
        "customer_id",
        "channel",
        "status",
        "subject",
        "assignee_id",
        "is_private",
        "last_message_seq",
        "last_message_at",
        "version",
        "created_at",
        "updated_at",
        "first_customer_message_at",
        "first_response_at",
        "closed_at",
        "rating_score",
        "rating_comment",
        "rated_at",
    )
    mcols = (
        "id",
        "workspace_id",
        "conversation_id",
        "seq",
        "author_type",
        "author_user_id",
        "body",
        "created_at",
        "updated_at",
    )
    agents = users["agent"]
    # Read receipts (generator version 7) from a stream of their own, so every other row
    # stays as it was: the assignee has read most conversations nearly to the end, and
    # each live-chat agent has read some others, so an agent's inbox has unread counts
    # that differ from the last message's seq.
    reads = random.Random(f"{ws}:reads")
    rcols = ("workspace_id", "conversation_id", "user_id", "last_read_seq", "read_at")
    conv_n = n["conversations"]
    per_conv = [0] * conv_n
    for _ in range(n["messages"]):
        per_conv[rng.randrange(conv_n)] += 1
    for i in range(conv_n):
        cust = customers[rng.randrange(len(customers))]
        created = when(cust[14])
        rt = i < RT_CONVERSATIONS
        assignee = (
            agents[i % RT_AGENTS] if rt else (rng.choice(agents) if rng.random() < 0.8 else None)
        )
        cid = ids.at(created)
        at = created
        author = assignee or rng.choice(agents)
        first_asked = first_answer = None
        for seq in range(1, per_conv[i] + 1):
            at = at + timedelta(seconds=rng.randrange(20, 3600))
            by_customer = seq % 2 == 1
            if seq == 1:
                first_asked = at
            elif seq == 2:
                first_answer = at
            tables.add(
                "messages",
                mcols,
                (
                    ids.at(at),
                    ws,
                    cid,
                    seq,
                    "customer" if by_customer else "agent",
                    None if by_customer else author,
                    f"Message {seq} about {rng.choice(demo.NEEDS)}",
                    at,
                    at,
                ),
            )
        status = "open" if rt else rng.choice(("open", "pending", "closed", "closed"))
        closed_at = score = rated_at = None
        if status == "closed":
            closed_at = at + timedelta(minutes=extra.randrange(5, 60 * 24 * 3))
            if extra.random() < 0.6:
                score = extra.choice((1, 2, 3, 4, 4, 5, 5, 5))
                rated_at = closed_at + timedelta(minutes=extra.randrange(1, 600))
        readers = {assignee} if assignee and reads.random() < 0.8 else set()
        readers |= {a for a in agents[:RT_AGENTS] if reads.random() < 0.3}
        for reader in sorted(readers) if per_conv[i] else ():
            tables.add(
                "conversation_reads",
                rcols,
                (ws, cid, reader, reads.randint(max(0, per_conv[i] - 4), per_conv[i]), at),
            )
        tables.add(
            "conversations",
            vcols,
            (
                cid,
                ws,
                cust[0],
                rng.choice(("chat", "chat", "email", "phone", "social")),
                status,
                f"Question about {rng.choice(demo.NEEDS)}",
                assignee,
                rt,
                per_conv[i],
                at if per_conv[i] else None,
                1,
                created,
                at,
                first_asked,
                first_answer,
                closed_at,
                score,
                "Thanks" if score else None,
                rated_at,
            ),
        )

    ccols2 = (
        "id",
        "workspace_id",
        "name",
        "email",
        "phone",
        "lifecycle_stage",
        "owner_id",
        "company_id",
        "tags",
        "needs",
        "preferences",
        "custom_fields",
        "last_activity_at",
        "version",
        "created_at",
        "updated_at",
    )
    for i, c in enumerate(customers):
        c[12] = last_activity.get(i)
        tables.add("customers", ccols2, tuple(c))

    # The catalogue behind the orders' items, as in the demo (ids from the SKU, no draw
    # from the generator: every other row stays as it was). Order lines come from the
    # items after the COPY (``_load``), by the same statement as the upgrade.
    pcols = (
        "id", "workspace_id", "sku", "name", "category", "price", "currency", "version",
        "created_at", "updated_at",
    )  # fmt: skip
    for sku, pname, price, _ in demo.PRODUCTS:
        category = demo.PRODUCT_CATEGORIES[sku.split("-")[0]]
        row = (uuid.uuid5(ws, sku), ws, sku, pname, category, price, demo.CATALOGUE_CURRENCY, 1)
        tables.add("products", pcols, (*row, ws_created, ws_created))
    return ws


COPY_ORDER = (
    "workspaces",
    "custom_field_definitions",
    "users",
    "companies",
    "customers",
    "pipelines",
    "stages",
    "deals",
    "deal_stage_changes",
    "activities",
    "products",
    "orders",
    "conversations",
    "messages",
    "conversation_reads",
)


async def _create(server_url: str, name: str, comment: str | None) -> bool:
    """Drop and recreate ``name`` unless its comment equals ``comment``; True if created."""
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        current = await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", name
        )
        if comment is not None and current == comment:
            return False
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


# Order lines of every loaded order from its items (``services.products``), as SQL text.
ORDER_LINES = str(
    order_lines_from_items().compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
)


async def _load(url: str, tables: Tables) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction():
            for table in (t for t in COPY_ORDER if tables.rows.get(t)):
                await conn.copy_records_to_table(
                    table, records=tables.rows[table], columns=list(tables.columns[table])
                )
            await conn.execute(ORDER_LINES)
        # As autovacuum leaves a settled table: statistics, and the visibility map that
        # index-only scans rely on.
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()


async def _set_comment(server_url: str, name: str, comment: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'COMMENT ON DATABASE "{name}" IS {_quote(comment)}')
    finally:
        await conn.close()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ensure_dataset(
    server_url: str,
    scale: float,
    seed: int = 42,
    *,
    force: bool = False,
    say: Any = print,
    name: str | None = None,
) -> str:
    """The URL of a database holding the data set (created unless it already exists);
    ``name`` for a database of another name than the benchmark's own."""
    from crm_graphql.cli import migrate

    name = name or database_name(scale, seed)
    url = database_url(server_url, name)
    comment = marker(scale, seed, schema_head())
    if not asyncio.run(_create(server_url, name, None if force else comment)):
        say(f"data set {name} already generated (scale {scale}, seed {seed}): reused")
        return url
    started = time.monotonic()
    migrate(url)
    rng = random.Random(seed)
    pw_hash = hash_password(PASSWORD)
    tables = Tables()
    generate_workspace(
        tables, rng, name=MAIN_WORKSPACE, domain=MAIN_DOMAIN, scale=scale, pw_hash=pw_hash
    )
    for k in (1, 2):
        generate_workspace(
            tables,
            rng,
            name=f"Bench other {k}",
            domain=f"other{k}.bench.example",
            scale=scale * 0.02,
            pw_hash=pw_hash,
        )
    generated = time.monotonic()
    asyncio.run(_load(url, tables))
    asyncio.run(_set_comment(server_url, name, comment))
    counts = ", ".join(f"{len(tables.rows.get(t, []))} {t}" for t in COPY_ORDER)
    say(
        f"generated {name} in {time.monotonic() - started:.1f}s "
        f"(rows built in {generated - started:.1f}s): {counts}"
    )
    return url


def drop_dataset(server_url: str, scale: float, seed: int = 42, *, name: str | None = None) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await conn.execute(
                f'DROP DATABASE IF EXISTS "{name or database_name(scale, seed)}" WITH (FORCE)'
            )
        finally:
            await conn.close()

    asyncio.run(drop())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--force", action="store_true", help="regenerate even if it exists")
    args = parser.parse_args()
    print(ensure_dataset(args.server, args.scale, args.seed, force=args.force))


if __name__ == "__main__":
    main()
