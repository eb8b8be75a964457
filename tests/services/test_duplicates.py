"""The duplicate rules, and how well they find planted duplicates among generated
customers without flagging look-alikes (precision and recall, with floors; the figures
are in docs/decisions/0032-sync-and-clean-data.md)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.enums import DuplicateField
from crm_graphql.models import Role
from crm_graphql.services import companies, customers, duplicates
from crm_graphql.services.actor import Actor
from crm_graphql.services.duplicates import Match
from tests.planted_duplicates import generate


def test_a_mailbox_is_the_address_without_case_tags_or_gmail_dots() -> None:
    key = duplicates.email_key
    assert key("Ada.Lovelace+crm@Example.COM") == "ada.lovelace@example.com"
    assert key("ada.lovelace@example.com") != key("adalovelace@example.com")
    assert key("Ada.L+x@googlemail.com") == key("adal@gmail.com") == "adal@gmail.com"
    assert key("+crm@example.com") is None and key(None) is None and key("nope") is None


def test_a_number_is_its_digits_without_the_extension() -> None:
    key = duplicates.phone_key
    assert key("+442079460000") == key("+44 20 7946 0000") == "442079460000"
    assert key("+12025550100;ext=12") == "12025550100"
    assert key("12") is None and key(None) is None


def test_names_compare_folded_in_any_order_with_initials() -> None:
    def similarity(a: str, b: str) -> float:
        return duplicates.name_similarity(duplicates.name_key(a), duplicates.name_key(b))

    assert similarity("Turing, Alan", "alan TURING") == 1
    assert similarity("José Núñez", "Jose Nunez") == 1
    assert similarity("K. Dijkstra", "Katherine Dijkstra") == duplicates.INITIALS_SIMILARITY
    assert similarity("K. Dijkstra", "Edsger Dijkstra") < duplicates.NAME_THRESHOLD
    assert similarity("Shafi McCarthy", "Shafi McCerthy") >= duplicates.NAME_THRESHOLD
    assert similarity("Margaret Thompson", "Amara Tanaka") < 0.5


def test_the_score_adds_evidence_and_a_shared_number_needs_alike_names() -> None:
    email, phone = Match(DuplicateField.EMAIL, 1), Match(DuplicateField.PHONE, 1)
    assert duplicates.score([email], 0.2) == 0.9
    assert duplicates.score([phone], 1.0) == 0.8
    assert duplicates.score([phone], 0.3) < duplicates.MIN_SCORE  # a switchboard
    assert duplicates.score([email, phone], 1.0) == 0.98
    assert duplicates.score([Match(DuplicateField.NAME, 0.9)], 0.9) == 0.675


async def test_planted_duplicates_are_found_and_look_alikes_are_not(
    sessionmaker: async_sessionmaker[AsyncSession], outsider: Actor
) -> None:
    """819 generated customers at 60 companies, 110 of them planted duplicates of others
    (another +tag or Gmail dots, the number spelled otherwise, a typo, the family name
    first, an initial, a new family name with the same number), among colleagues with
    one family name, namesakes at other companies and colleagues sharing a switchboard.
    Written through the services (so normalised as any write), then read back."""
    planted = generate(seed=17)
    admin = Actor(workspace_id=outsider.workspace_id, role=Role.ADMIN, user_id=outsider.user_id)
    ids: dict[uuid.UUID, int] = {}
    async with sessionmaker() as session, session.begin():
        made = {}
        for index in sorted({r.company for r in planted.rows if r.company is not None}):
            made[index] = (
                await companies.create_company(admin, session, {"name": f"Company {index}"})
            ).id
        for index, row in enumerate(planted.rows):
            customer = await customers.create_customer(
                admin,
                session,
                {
                    "name": row.name,
                    "email": row.email,
                    "phone": row.phone,
                    "company_id": made[row.company] if row.company is not None else None,
                },
            )
            ids[customer.id] = index
    async with sessionmaker() as session:
        page = await duplicates.duplicate_candidates(admin, session, first=10_000)
    flagged = {frozenset({ids[c.customer_id], ids[c.duplicate_id]}) for c in page.candidates}
    true = flagged & planted.duplicates
    precision = len(true) / len(flagged)
    recall = len(true) / len(planted.duplicates)
    print(f"\nduplicates: {len(flagged)} flagged, {len(true)} planted found of "
          f"{len(planted.duplicates)}: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95
    assert recall >= 0.9
