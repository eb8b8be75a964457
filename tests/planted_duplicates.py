"""Generated customers with planted duplicates and near-misses, for measuring how well
``duplicateCandidates`` finds the one and leaves the other (precision and recall).

People work at companies (some at none); each has a name, a mailbox and a phone number
in one of several spellings. Planted duplicates are the same person entered again the
ways it happens: the address with other case or a ``+tag`` (or dots at Gmail), the
number spelled differently, a typo or another word order in the name, an initial for
the first name, a maiden name with the same phone. Near-misses are different people who
look alike: colleagues with one family name, namesakes at other companies, colleagues
sharing the office's switchboard number. Same seed, same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FIRST = (
    "Ada Grace Alan Linus Margaret Ken Barbara Dennis Frances Edsger Radia Tim Katherine "
    "Donald Hedy John Sophie Niklaus Annie Claude Mary Guido Lynn Bjarne Shafi Yukihiro "
    "Karen Leslie Jean Fran Anita Evelyn Joan Mae Susan Carol Ellen Ruth Adele Elena "
    "Amara Chidi Ingrid Lars Mateo Lucia Hiroshi Priya Arjun Fatima Omar Zofia Tomasz"
).split()
LAST = (
    "Lovelace Hopper Turing Torvalds Hamilton Thompson Liskov Ritchie Allen Dijkstra "
    "Perlman Berners-Lee Johnson Knuth Lamarr McCarthy Wilson Wirth Easley Shannon Jackson "
    "Rossum Conway Stroustrup Goldwasser Matsumoto Jones Lamport Sammet Bilas Borg Clarke "
    "Clarke Jemison Estrin Shaw Kaufman Spertus Goldberg Petrova Okafor Nwosu Larsen "
    "Andersen Garcia Fernandez Tanaka Sharma Patel Haddad Rahman Nowak Kowalski"
).split()
DOMAINS = ("example.com", "example.org", "mail.example", "gmail.com")
TYPOS = {"a": "e", "e": "a", "i": "y", "o": "u", "n": "m", "l": "ll", "s": "ss", "t": "tt"}


@dataclass
class Row:
    key: str  # who this row is (the person), for scoring
    name: str
    email: str | None
    phone: str | None
    company: int | None


@dataclass
class Planted:
    rows: list[Row] = field(default_factory=list)
    # unordered pairs of row indexes that are one person
    duplicates: set[frozenset[int]] = field(default_factory=set)
    kinds: dict[frozenset[int], str] = field(default_factory=dict)

    def add(self, row: Row) -> int:
        self.rows.append(row)
        return len(self.rows) - 1


def _phone(rng: random.Random, taken: set[str]) -> str:
    """A number nobody else in the data has (test data: never dialled)."""
    while True:
        country = rng.choice(("uk", "us", "de"))
        if country == "uk":
            phone = f"+44 20 {rng.randrange(3000, 9000)} {rng.randrange(10**4):04d}"
        elif country == "us":
            phone = f"+1 {rng.choice((202, 415, 312))} {rng.randrange(200, 999)} {rng.randrange(10**4):04d}"
        else:
            phone = f"+49 30 {rng.randrange(10**7, 10**8)}"
        if phone not in taken:
            taken.add(phone)
            return phone


def _respell(phone: str, rng: random.Random) -> str:
    """The same number written another way."""
    digits = phone.replace(" ", "")
    return rng.choice(
        (
            digits,
            "00" + digits[1:],
            phone.replace(" ", "-", 1),
            "{} ({}) {}".format(*phone.split(" ", 2)),
        )
    )


def _typo(name: str, rng: random.Random) -> str:
    first, _, last = name.partition(" ")
    positions = [i for i, c in enumerate(last) if c.lower() in TYPOS and i > 0]
    if not positions:
        return name + "e"
    i = rng.choice(positions)
    return f"{first} {last[:i]}{TYPOS[last[i].lower()]}{last[i + 1 :]}"


def generate(seed: int = 17, people: int = 600, companies: int = 60) -> Planted:
    rng = random.Random(seed)
    planted = Planted()
    used: set[tuple[str, int | None]] = set()
    emails: set[str] = set()
    base: list[int] = []
    phones: set[str] = set()
    for n in range(people):
        company = rng.randrange(companies) if rng.random() < 0.8 else None
        while True:  # one name per company (namesakes without a company are not compared)
            first, last = rng.choice(FIRST), rng.choice(LAST)
            if company is None or (f"{first} {last}", company) not in used:
                break
        used.add((f"{first} {last}", company))
        domain = rng.choice(DOMAINS)
        local = f"{first}.{last}{n}".lower()
        email = f"{local}@{domain}" if rng.random() < 0.85 else None
        if email:
            emails.add(email)
        phone = _phone(rng, phones) if rng.random() < 0.7 else None
        base.append(planted.add(Row(f"p{n}", f"{first} {last}", email, phone, company)))

    def duplicate(of: int, kind: str, **changes: object) -> None:
        original = planted.rows[of]
        row = Row(original.key, original.name, None, None, original.company)
        for key, value in changes.items():
            setattr(row, key, value)
        pair = frozenset({of, planted.add(row)})
        planted.duplicates.add(pair)
        planted.kinds[pair] = kind

    with_email = [i for i in base if planted.rows[i].email]
    with_phone = [i for i in base if planted.rows[i].phone]
    at_company = [i for i in base if planted.rows[i].company is not None]
    chosen: set[int] = set()

    def pick(pool: list[int]) -> int:
        while True:
            i = rng.choice(pool)
            if i not in chosen:
                chosen.add(i)
                return i

    for _ in range(25):  # the address in other case or with a +tag (or dots at Gmail)
        i = pick(with_email)
        local, _, domain = planted.rows[i].email.partition("@")  # type: ignore[union-attr]
        # (the same address in other case is refused on write: emails are unique)
        if domain == "gmail.com" and rng.random() < 0.5:
            variant = f"{local.replace('.', '')}@{domain}"
        else:
            variant = f"{local}+{rng.choice(('crm', 'news', 'shop'))}@{domain.upper()}"
        duplicate(i, "email", email=variant, company=rng.choice((planted.rows[i].company, None)))
    for _ in range(25):  # the number spelled differently, elsewhere or with no company
        i = pick(with_phone)
        phone = _respell(planted.rows[i].phone, rng)  # type: ignore[arg-type]
        duplicate(i, "phone", phone=phone, company=None)
    for _ in range(20):  # a typo in the name, same company
        i = pick(at_company)
        duplicate(i, "name typo", name=_typo(planted.rows[i].name, rng))
    for _ in range(15):  # the family name first, same company
        i = pick(at_company)
        first, last = planted.rows[i].name.split(" ", 1)
        duplicate(i, "name order", name=f"{last}, {first}")
    for _ in range(15):  # an initial for the first name, same company, same phone if any
        i = pick(at_company)
        first, last = planted.rows[i].name.split(" ", 1)
        duplicate(i, "initial", name=f"{first[0]}. {last}", phone=planted.rows[i].phone)
    for _ in range(10):  # a new family name, the same mobile number
        i = pick(with_phone)
        first = planted.rows[i].name.split(" ", 1)[0]
        duplicate(i, "new name", name=f"{first} {rng.choice(LAST)}", phone=planted.rows[i].phone)

    # Near-misses: different people who look alike.
    for n in range(40):  # colleagues with the same family name
        i = rng.choice(at_company)
        last = planted.rows[i].name.split(" ", 1)[1]
        company = planted.rows[i].company
        for first in rng.sample(FIRST, len(FIRST)):
            if (f"{first} {last}", company) not in used and first[0] != planted.rows[i].name[0]:
                break
        used.add((f"{first} {last}", company))
        planted.add(Row(f"n{n}", f"{first} {last}", None, None, company))
    for n in range(40):  # a namesake at another company
        i = rng.choice(at_company)
        name = planted.rows[i].name
        other = (planted.rows[i].company + 1 + rng.randrange(companies - 1)) % companies  # type: ignore[operator]
        if (name, other) in used:
            continue
        used.add((name, other))
        email = f"namesake{n}@example.net"
        planted.add(Row(f"s{n}", name, email, _phone(rng, phones), other))
    for n in range(15):  # colleagues sharing the switchboard number
        company = rng.randrange(companies)
        switchboard = _phone(rng, phones)
        for k in range(2):
            while (name := f"{rng.choice(FIRST)} {rng.choice(LAST)}", company) in used:
                pass
            used.add((name, company))
            planted.add(Row(f"b{n}.{k}", name, None, switchboard, company))
    return planted
