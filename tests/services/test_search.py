"""Search folding: the Python table the query uses and the database function that folds
documents (migration 0010) agree, character by character and token by token."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import text

from crm_graphql.services import search


async def test_python_and_database_fold_every_character_alike(session: Any) -> None:
    chars = sorted(
        set(search.FOLD_FROM)
        | set(search.FOLD_DROP)
        | {c for c, _ in search.FOLD_EXPAND}
        | {chr(c) for c in range(1, 0x250)}
        | set("ЖжΣσςẞǄǅǆ中文🙂\u2028\u3000")
    )
    rows = await session.execute(
        text("SELECT c, crm_search_fold(c) FROM unnest(CAST(:chars AS text[])) AS c"),
        {"chars": chars},
    )
    mismatches = {c: (folded, search.fold(c)) for c, folded in rows if folded != search.fold(c)}
    assert mismatches == {}


async def test_python_and_database_tokenise_text_alike(session: Any) -> None:
    rng = random.Random(7)
    alphabet = "aAéÉßŒøØ ,.-@+()'\"\\:*&|!0123456789ΣЖ\u0301\u00ad🙂\t"
    samples = [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 90))) for _ in range(300)
    ]
    samples += ["x" * 200, "Aisha.Williams@Example.COM", "+1 (415) 555-0199", "José Núñez"]
    rows = await session.execute(
        text(
            "SELECT s, crm_search_tokens(s), crm_search_digits(s), crm_search_digit_suffixes(s) "
            "FROM unnest(CAST(:samples AS text[])) AS s"
        ),
        {"samples": samples},
    )
    for sample, tokens, digits, suffixes in rows:
        assert tokens == search.tokens(sample), sample
        assert digits == search.digits(sample), sample
        assert suffixes == [digits[i:] for i in range(len(digits) - 2)], sample


def test_queries_are_sanitised_into_quoted_prefixes() -> None:
    query = search.parse_query("  O'Brien & (Ais*) | !wil: ")
    assert query.terms == ("o", "brien", "ais", "wil")
    assert query.tsquery() == "'o':* & 'brien':* & 'ais':* & 'wil':*"
    assert search.parse_query("& | ! : * ( )").terms == ()
    assert search.parse_query("\u0000\u0000").terms == ()


def test_highlight_marks_matched_prefixes_in_the_original_text() -> None:
    mark = search.highlight("name", "José Núñez-García", ["jos", "garcia"])
    assert mark == search.Highlight("name", "<mark>Jos</mark>é Núñez-<mark>García</mark>")
    decomposed = search.highlight("name", "Jose\u0301 Ruiz", ["jose"])
    assert decomposed is not None and decomposed.snippet == "<mark>Jose\u0301</mark> Ruiz"
    assert search.highlight("name", "Groß", ["gross"]) == search.Highlight(
        "name", "<mark>Groß</mark>"
    )
    assert search.highlight("name", "nothing here", ["zzz"]) is None


def test_the_migration_indexes_the_rows_that_exist(server_database_url: str) -> None:
    """Rows written before revision 0010 are found after it (the backfill)."""
    import asyncio
    import secrets
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    from tests import support

    name = f"crm_mig_search_{secrets.token_hex(4)}"
    support.create_database(server_database_url, name)
    url = make_url(server_database_url).set(database=name).render_as_string(hide_password=False)
    try:
        support.migrate(url, "0009")
        workspace, company, customer = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

        async def write() -> None:
            conn = await asyncpg.connect(support.asyncpg_dsn(url))
            try:
                await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'W')", workspace)
                await conn.execute(
                    "INSERT INTO companies (id, workspace_id, name, version) "
                    "VALUES ($1, $2, 'Möbius AG', 1)",
                    company,
                    workspace,
                )
                await conn.execute(
                    "INSERT INTO customers (id, workspace_id, name, email, phone, company_id, "
                    "lifecycle_stage, version) "
                    "VALUES ($1, $2, 'Zoë Old', 'zoe@old.example', '+1 415-555-0100', $3, "
                    "'lead', 1)",
                    customer,
                    workspace,
                    company,
                )
            finally:
                await conn.close()

        async def read() -> list[Any]:
            conn = await asyncpg.connect(support.asyncpg_dsn(url))
            try:
                return list(
                    await conn.fetch(
                        "SELECT id, entity_type FROM search_documents "
                        "WHERE document @@ $1::tsquery ORDER BY entity_type",
                        "'mobius':*",
                    )
                )
            finally:
                await conn.close()

        asyncio.run(write())
        support.migrate(url, "head")
        found = asyncio.run(read())
        assert [(r["id"], r["entity_type"]) for r in found] == [
            (company, "company"),
            (customer, "customer"),
        ]
    finally:
        support.drop_database(server_database_url, name)


async def test_one_update_statement_reindexes_exactly_the_rows_whose_search_values_changed(
    sessionmaker: Any, admin: Any
) -> None:
    """Updates are indexed per statement (migration 0027): one statement changing many
    customers and companies leaves each document as a fresh index of its row would, and
    a change of a custom field no definition makes searchable rebuilds nothing."""
    from crm_graphql.services import companies, custom_fields, customers

    async with sessionmaker() as session, session.begin():
        for key, searchable in (("codename", True), ("source", False)):
            await custom_fields.create_definition(
                admin,
                session,
                {
                    "entity": "customer",
                    "key": key,
                    "label": key,
                    "type": "text",
                    "searchable": searchable,
                },
            )
        wombat = await companies.create_company(admin, session, {"name": "Wombat Works"})
        koala = await companies.create_company(admin, session, {"name": "Koala Kilns"})
        made = [
            await customers.create_customer(
                admin,
                session,
                {
                    "name": name,
                    "company_id": company.id,
                    "custom_fields": {"codename": code, "source": "fair"},
                },
            )
            for name, code, company in (
                ("Ada Alpha", "heron", wombat),
                ("Bo Beta", "ibis", koala),
                ("Cy Gamma", "stork", wombat),
            )
        ]
    ada, bo, cy = (c.id for c in made)

    async def documents() -> dict[Any, tuple[str, Any]]:
        async with sessionmaker() as session:
            rows = await session.execute(
                text(
                    "SELECT id, names::text, updated_at FROM search_documents WHERE id = ANY(:ids)"
                ),
                {"ids": [ada, bo, cy, wombat.id, koala.id]},
            )
            return {row.id: (row.names, row.updated_at) for row in rows}

    async def terms(id: Any) -> set[str]:
        async with sessionmaker() as session:
            found = await session.scalars(
                text("SELECT term FROM search_terms WHERE id = :id"), {"id": id}
            )
            return set(found)

    before = await documents()
    async with sessionmaker() as session, session.begin():
        # One statement: a new name, a new searchable value, a new unsearchable value.
        await session.execute(
            text(
                "UPDATE customers c SET name = v.name, custom_fields = v.custom::jsonb "
                "FROM (VALUES (CAST(:ada AS uuid), 'Ada Renamed', "
                '\'{"codename": "heron", "source": "fair"}\'), '
                '(CAST(:bo AS uuid), \'Bo Beta\', \'{"codename": "egret", "source": "fair"}\'), '
                '(CAST(:cy AS uuid), \'Cy Gamma\', \'{"codename": "stork", "source": "web"}\')'
                ") AS v(id, name, custom) WHERE c.id = v.id"
            ),
            {"ada": ada, "bo": bo, "cy": cy},
        )
    after = await documents()
    assert {"renamed", "ada"} <= await terms(ada)
    assert "alpha" not in await terms(ada)
    assert "egret" in await terms(bo) and "ibis" not in await terms(bo)
    assert after[cy] == before[cy]  # only `source` changed: not searchable, not rebuilt
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE companies SET name = CASE id WHEN :w THEN 'Platypus Partners' "
                "ELSE 'Numbat Nets' END WHERE id IN (:w, :k)"
            ),
            {"w": wombat.id, "k": koala.id},
        )
    for customer, company in ((ada, "platypus"), (cy, "platypus"), (bo, "numbat")):
        found = await terms(customer)
        assert company in found and not {"wombat", "koala"} & found, (customer, found)
    async with sessionmaker() as session:
        # Every document equals a fresh index of its row (rebuilt here, then rolled back).
        kept = (await documents()).items()
        await session.execute(
            text("SELECT crm_search_refresh_customers(CAST(:ids AS uuid[]))"),
            {"ids": [ada, bo, cy]},
        )
        rebuilt = await session.execute(
            text("SELECT id, names::text FROM search_documents WHERE id = ANY(:ids)"),
            {"ids": [ada, bo, cy]},
        )
        assert dict(rebuilt.tuples().all()) == {
            id: names for id, (names, _) in kept if id in (ada, bo, cy)
        }
        await session.rollback()
