"""Likely duplicate customers: the same person entered twice, found by a normalised email,
the same phone number (E.164, as writes store it), or a similar name within the same
company; each pair with a score and the fields that matched, to be reviewed and merged
with ``customers.merge_customers`` (docs/decisions/0032).

The score is explainable: every matching field adds evidence, combined as
``1 - (1 - a)(1 - b)...``: the same mailbox ``EMAIL_WEIGHT``, the same number
``PHONE_WEIGHT x (0.3 + 0.7 x name similarity)`` (an office switchboard or a family's
number is shared by people of other names), names alike within a company
``NAME_WEIGHT x similarity``. The
weights and the default ``MIN_SCORE`` were chosen on generated data with planted
duplicates and near-misses (``tests/api/test_duplicates.py``; precision and recall in
the decision record).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations

from rapidfuzz import fuzz, process
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.enums import DuplicateField
from crm_graphql.models import Customer
from crm_graphql.services import search
from crm_graphql.services.actor import Actor, scoped
from crm_graphql.services.errors import Invalid
from crm_graphql.storage import records

EMAIL_WEIGHT = 0.9
PHONE_WEIGHT = 0.8
NAME_WEIGHT = 0.75  # times the similarity, for names alike within one company
NAME_THRESHOLD = 0.88  # similarity from which names within one company count as a match
MIN_SCORE = 0.55
# Mailboxes that ignore dots in the local part (and where a +tag reaches the same box,
# as it does for most providers).
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def email_key(email: str | None) -> str | None:
    """The mailbox an address reaches: lower-cased, without a ``+tag``, and without dots
    in the local part at providers that ignore them (``Ada.L+crm@GMail.com`` and
    ``adal@gmail.com`` are one box)."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _DOTLESS_DOMAINS:
        domain = _DOTLESS_DOMAINS[domain]
        local = local.replace(".", "")
    return f"{local}@{domain}" if local else None


_NON_DIGITS = re.compile(r"\D+")


def phone_key(phone: str | None) -> str | None:
    """The number's digits (its extension left out): equal for two spellings of one
    E.164 number, and for local numbers kept as given that differ only in punctuation."""
    if not phone:
        return None
    digits = _NON_DIGITS.sub("", phone.split(";", 1)[0])
    return digits if len(digits) >= 6 else None


def name_key(name: str) -> str:
    """Case, accents and punctuation folded, words in order (``search.tokens``), so that
    ``Lovelace, Ada`` and ``Ada Lovelace`` compare as the same words."""
    return " ".join(sorted(search.tokens(name)))


INITIALS_SIMILARITY = 0.9  # ``K. Dijkstra`` and ``Katherine Dijkstra``


def _initials_agree(a: str, b: str) -> bool:
    """The words two names do not share are initials of each other's (at least one word
    shared, at least one initial): ``k dijkstra`` and ``dijkstra katherine``."""
    left, right = a.split(), b.split()
    shared = [w for w in left if w in right]
    if not shared:
        return False
    for word in shared:
        left.remove(word)
        right.remove(word)
    if not left or len(left) != len(right):
        return False
    short, long = (left, right) if all(len(w) == 1 for w in left) else (right, left)
    if not all(len(w) == 1 for w in short):
        return False
    return sorted(short) == sorted(w[0] for w in long)


def name_similarity(a: str, b: str) -> float:
    """0 to 1: how alike two folded names (``name_key``) are, word order ignored, an
    initial matching the word it stands for."""
    similar = float(fuzz.token_sort_ratio(a, b)) / 100
    if similar < INITIALS_SIMILARITY and _initials_agree(a, b):
        return INITIALS_SIMILARITY
    return similar


@dataclass(frozen=True)
class Match:
    """A field two customers agree on: ``email`` (the same mailbox), ``phone`` (the same
    number) or ``name`` (similar names within the same company), with how alike the
    values are (1 for the same mailbox or number)."""

    field: DuplicateField
    similarity: float


@dataclass(frozen=True)
class Candidate:
    """Two customers that are likely one person: ``customer`` (the older, suggested to
    survive a merge) and ``duplicate``."""

    customer_id: uuid.UUID
    duplicate_id: uuid.UUID
    score: float
    matches: list[Match]
    name_similarity: float

    @property
    def cursor(self) -> str:
        raw = f"dup:{self.score!r}:{self.customer_id}:{self.duplicate_id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def sort_key(self) -> tuple[float, str, str]:
        return (-self.score, str(self.customer_id), str(self.duplicate_id))


def _decode_cursor(cursor: str) -> tuple[float, str, str]:
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
        tag, score, first, second = raw.split(":")
        if tag != "dup":
            raise ValueError(tag)
        return (-float(score), str(uuid.UUID(first)), str(uuid.UUID(second)))
    except (ValueError, UnicodeDecodeError, binascii.Error) as error:
        raise Invalid("Invalid cursor: pass the `cursor` of a candidate", "after") from error


@dataclass(frozen=True)
class _Person:
    id: uuid.UUID
    created_at: datetime
    name: str
    company_id: uuid.UUID | None
    email: str | None
    phone: str | None


def score(matches: Iterable[Match], similarity: float) -> float:
    """The pair's score from the fields that matched and how alike the names are."""
    doubt = 1.0
    for match in matches:
        if match.field is DuplicateField.EMAIL:
            weight = EMAIL_WEIGHT
        elif match.field is DuplicateField.PHONE:
            weight = PHONE_WEIGHT * (0.3 + 0.7 * similarity)
        else:
            weight = NAME_WEIGHT * match.similarity
        doubt *= 1 - weight
    return round(1 - doubt, 4)


def _pairs_by_key(people: list[_Person], key: dict[uuid.UUID, str | None]) -> set[tuple[int, int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, person in enumerate(people):
        value = key[person.id]
        if value is not None:
            groups[value].append(index)
    return {pair for members in groups.values() for pair in combinations(members, 2)}


def find_candidates(people: list[_Person], min_score: float) -> list[Candidate]:
    """Every pair of ``people`` scoring at least ``min_score``, best first."""
    names = {p.id: name_key(p.name) for p in people}
    by_email = _pairs_by_key(people, {p.id: email_key(p.email) for p in people})
    by_phone = _pairs_by_key(people, {p.id: phone_key(p.phone) for p in people})
    by_name: dict[tuple[int, int], float] = {}
    companies: dict[uuid.UUID, list[int]] = defaultdict(list)
    for index, person in enumerate(people):
        if person.company_id is not None:
            companies[person.company_id].append(index)
    cutoff = NAME_THRESHOLD * 100
    for members in companies.values():
        keys = [names[people[i].id] for i in members]
        for position, i in enumerate(members[:-1]):
            for _, similar, offset in process.extract(
                keys[position],
                keys[position + 1 :],
                scorer=fuzz.token_sort_ratio,
                score_cutoff=cutoff,
                limit=None,
            ):
                by_name[(i, members[position + 1 + offset])] = float(similar) / 100
        # Initials are rare: the few names with one are compared with the whole company.
        initialled = [p for p, key in enumerate(keys) if any(len(w) == 1 for w in key.split())]
        for p in initialled:
            for q in range(len(members)):
                pair = (members[min(p, q)], members[max(p, q)])
                if p != q and pair not in by_name and _initials_agree(keys[p], keys[q]):
                    by_name[pair] = INITIALS_SIMILARITY
    found: list[Candidate] = []
    for i, j in by_email | by_phone | set(by_name):
        a, b = people[i], people[j]
        similarity = by_name.get((i, j)) or name_similarity(names[a.id], names[b.id])
        matches = []
        if (i, j) in by_email:
            matches.append(Match(DuplicateField.EMAIL, 1.0))
        if (i, j) in by_phone:
            matches.append(Match(DuplicateField.PHONE, 1.0))
        if (i, j) in by_name:
            matches.append(Match(DuplicateField.NAME, similarity))
        value = score(matches, similarity)
        if value < min_score:
            continue
        older, newer = sorted((a, b), key=lambda p: (p.created_at, str(p.id)))
        found.append(Candidate(older.id, newer.id, value, matches, similarity))
    found.sort(key=Candidate.sort_key)
    return found


@dataclass(frozen=True)
class CandidatePage:
    candidates: list[Candidate]
    has_next_page: bool


async def duplicate_candidates(
    actor: Actor,
    session: AsyncSession,
    *,
    first: int,
    after: str | None = None,
    customer_id: uuid.UUID | None = None,
    min_score: float = MIN_SCORE,
) -> CandidatePage:
    """Likely duplicates among the live customers (not archived, merged or erased) the
    actor may read, best first, ``first`` at a time after the cursor ``after``; only the
    pairs of ``customer_id`` when given."""
    if not 0 <= min_score <= 1:
        raise Invalid("`minScore` must be between 0 and 1", "minScore")
    start = _decode_cursor(after) if after else None
    if customer_id is not None:
        await records.get(actor, session, Customer, customer_id, field="customerId")
    rows = await session.execute(
        scoped(Customer, actor)
        .with_only_columns(
            Customer.id,
            Customer.created_at,
            Customer.name,
            Customer.company_id,
            Customer.email,
            Customer.phone,
        )
        .where(
            Customer.archived_at.is_(None),
            Customer.merged_into_id.is_(None),
            Customer.erased_at.is_(None),
        )
        .order_by(Customer.created_at, Customer.id)
    )
    people = [_Person(*row) for row in rows.all()]
    found = find_candidates(people, min_score)
    if customer_id is not None:
        found = [c for c in found if customer_id in (c.customer_id, c.duplicate_id)]
    if start is not None:
        found = [c for c in found if c.sort_key() > start]
    return CandidatePage(found[:first], len(found) > first)
