"""Search: one ranked list over customers, companies, deals, conversations and activities.

Documents are kept by triggers in the writing transaction (migrations 0010 and 0016:
customers', companies' and deals' custom fields marked ``searchable`` too); this module
folds the query the same way the database folds documents, builds the ``tsquery`` from the
folded tokens (never from the user's text), and reads one page of hits with their rows in
one statement, each kind of object scoped by its own list (``ListSpec.statement``: tenant,
role or API-key scope, private conversations, archived rows). Ranking: an exact match of
a whole value (name, email, phone, title) first, then every term matching whole words,
then prefixes; within a tier, ``ts_rank`` over the field weights (name before email
before company and tags before bodies). See docs/decisions/0011-search.md.
"""

from __future__ import annotations

import base64
import binascii
import html
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Double,
    Select,
    and_,
    any_,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import TSQUERY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm_graphql.models import (
    Company,
    Conversation,
    Customer,
    CustomFieldDefinition,
    Message,
    SearchDocument,
    SearchEntity,
    SearchTerm,
)
from crm_graphql.services import (
    activities,
    companies,
    conversations,
    custom_fields,
    customers,
    deals,
)
from crm_graphql.services.actor import Actor, in_workspace
from crm_graphql.services.errors import Invalid
from crm_graphql.services.policy import READ_ACTIONS, allows, authorize_read
from crm_graphql.services.querying import ListSpec, Page, PageRequest

# ------------------------------------------------------------------------------ folding
# The character table of ``crm_search_fold`` (migration 0010), generated once from Unicode
# decompositions: capitals to small letters, accented Latin, Greek and Cyrillic letters to
# their base letter, punctuation and spaces to a space (the token separator), combining
# marks and invisible characters dropped, a few letters expanded (``ß`` -> ``ss``).
# Characters not listed stay as they are. tests/services/test_search.py compares this
# table with the database function, character by character.

FOLD_FROM = (
    "\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f!\"#$%&'()*+,-./:;<=>?@ABCDEFG"
    "HIJKLMNOPQRSTUVWXYZ[\\]^_`{|}~\x7f\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d"
    "\x9e\x9f\xa0¡¢£¤¥¦§¨©ª«¬®¯°±²³´µ¶·¸¹º»¿ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝà"
    "áâãäåçèéêëìíîïðñòóôõö÷øùúûüýÿĀāĂăĄąĆćĈĉĊċČčĎďĐđĒēĔĕĖėĘęĚěĜĝĞ"
    "ğĠġĢģĤĥĦħĨĩĪīĬĭĮįİıĴĵĶķĸĹĺĻļĽľĿŀŁłŃńŅņŇňŊŋŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞş"
    "ŠšŢţŤťŦŧŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžſƁƂƄƆƇƉƊƋƎƏƐƑƒƓƔƖƗƘƜƝƟƠơƢƤƦƧƩ"
    "ƬƮƯưƱƲƳƵƷƸƼǍǎǏǐǑǒǓǔǕǖǗǘǙǚǛǜǞǟǠǡǤǦǧǨǩǪǫǬǭǮǯǰǴǵǶǷǸǹǺǻǾǿȀȁȂȃȄȅȆ"
    "ȇȈȉȊȋȌȍȎȏȐȑȒȓȔȕȖȗȘșȚțȜȞȟȠȢȤȦȧȨȩȪȫȬȭȮȯȰȱȲȳȺȻȽȾɁɃɄɅɆɈɊɌɎͰͲʹ͵Ͷͺ"
    ";Ϳ΄΅Ά·ΈΉΊΌΎΏΐΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩΪΫάέήίΰςϊϋόύώϏϐϑϒϓϔϕϖϘϚ"
    "ϜϞϠϢϤϦϨϪϬϮϰϱϲϴϵ϶ϷϹϺϽϾϿЀЁЂЃЄЅІЇЈЉЊЋЌЍЎЏАБВГДЕЖЗИЙКЛМНОПРСТУФХ"
    "ЦЧШЩЪЫЬЭЮЯйѐёѓїќѝўѠѢѤѦѨѪѬѮѰѲѴѶѷѸѺѼѾҀ҂ҊҌҎҐҒҔҖҘҚҜҞҠҢҤҦҨҪҬҮҰҲҴҶ"
    "ҸҺҼҾӀӁӂӃӅӇӉӋӍӐӑӒӓӔӖӗӘӚӛӜӝӞӟӠӢӣӤӥӦӧӨӪӫӬӭӮӯӰӱӲӳӴӵӶӸӹӺӼӾԀԂԄԆԈԊԌ"
    "ԎԐԒԔԖԘԚԜԞԠԢԤԦԨԪԬԮḀḁḂḃḄḅḆḇḈḉḊḋḌḍḎḏḐḑḒḓḔḕḖḗḘḙḚḛḜḝḞḟḠḡḢḣḤḥḦḧḨḩḪ"
    "ḫḬḭḮḯḰḱḲḳḴḵḶḷḸḹḺḻḼḽḾḿṀṁṂṃṄṅṆṇṈṉṊṋṌṍṎṏṐṑṒṓṔṕṖṗṘṙṚṛṜṝṞṟṠṡṢṣṤṥṦ"
    "ṧṨṩṪṫṬṭṮṯṰṱṲṳṴṵṶṷṸṹṺṻṼṽṾṿẀẁẂẃẄẅẆẇẈẉẊẋẌẍẎẏẐẑẒẓẔẕẖẗẘẙẛẠạẢảẤấẦầ"
    "ẨẩẪẫẬậẮắẰằẲẳẴẵẶặẸẹẺẻẼẽẾếỀềỂểỄễỆệỈỉỊịỌọỎỏỐốỒồỔổỖỗỘộỚớỜờỞởỠỡỢợ"
    "ỤụỦủỨứỪừỬửỮữỰựỲỳỴỵỶỷỸỹỺỼỾ\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200e\u200f‐‑‒–—―‖‗‘’‚‛“”„‟†‡•‣․‥"
    "…‧\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u202f‰‱′″‴‵‶‷‸‹›※‼‽‾‿⁀⁁⁂⁃⁄⁅⁆⁇⁈⁉⁊⁋⁌⁍⁎⁏⁐⁑⁒⁓⁔⁕⁖⁗⁘⁙⁚⁛⁜⁝⁞\u205f\u2061\u2062"
    "\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206b\u206c\u206d\u206e\u206f\u3000、。，．"
)
FOLD_TO = (
    "                                                     abcdefg"
    "hijklmnopqrstuvwxyz                                         "
    "            a      23 μ   1o  aaaaaaceeeeiiiidnooooo ouuuuya"
    "aaaaaceeeeiiiidnooooo ouuuuyyaaaaaaccccccccddddeeeeeeeeeeggg"
    "ggggghhhhiiiiiiiiiijjkkkllllllllllnnnnnnnnoooooorrrrrrssssss"
    "ssttttttuuuuuuuuuuuuwwyyyzzzzzzsɓƃƅɔƈɖɗƌǝəɛffɠɣɩɨƙɯɲɵooƣƥʀƨʃ"
    "ƭʈuuʊʋƴƶʒƹƽaaiioouuuuuuuuuuaaaaǥggkkooooʒʒjggƕƿnnaaooaaaaeee"
    "eiiiioooorrrruuuussttȝhhƞȣȥaaeeooooooooyyⱥȼƚⱦɂƀʉʌɇɉɋɍɏͱͳʹ ͷ "
    " ϳ  α εηιουωιαβγδεζηθικλμνξοπρστυφχψωιυαεηιυσιυουωϗβθυυυφπϙϛ"
    "ϝϟϡϣϥϧϩϫϭϯκρσθε ϸσϻͻͼͽееђгєѕііјљњћкиуџабвгдежзииклмнопрстуфх"
    "цчшщъыьэюяиеегікиуѡѣѥѧѩѫѭѯѱѳѵѵѵѹѻѽѿҁ ҋҍҏґғҕҗҙқҝҟҡңҥҧҩҫҭүұҳҵҷ"
    "ҹһҽҿӏжжӄӆӈӊӌӎааааӕееәәәжжззӡииииооөөөээууууууччӷыыӻӽӿԁԃԅԇԉԋԍ"
    "ԏԑԓԕԗԙԛԝԟԡԣԥԧԩԫԭԯaabbbbbbccddddddddddeeeeeeeeeeffgghhhhhhhhh"
    "hiiiikkkkkkllllllllmmmmmmnnnnnnnnoooooooopppprrrrrrrrsssssss"
    "sssttttttttuuuuuuuuuuvvvvwwwwwwwwwwxxxxyyzzzzzzhtwysaaaaaaaa"
    "aaaaaaaaaaaaaaaaeeeeeeeeeeeeeeeeiiiioooooooooooooooooooooooo"
    "uuuuuuuuuuuuuuyyyyyyyyỻỽỿ                                   "
    "                                                            "
    "                 "
)
FOLD_DROP = (
    "\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308\u0309\u030a\u030b\u030c\u030d\u030e\u030f\u0310\u0311\u0312\u0313\u0314\u0315\u0316\u0317\u0318\u0319\u031a\u031b\u031c\u031d\u031e\u031f\u0320\u0321\u0322\u0323\u0324\u0325\u0326\u0327\u0328\u0329\u032a\u032b\u032c\u032d\u032e\u032f\u0330\u0331\u0332\u0333\u0334\u0335\u0336\u0337\u0338\u0339\u033a\u033b"
    "\u033c\u033d\u033e\u033f\u0340\u0341\u0342\u0343\u0344\u0345\u0346\u0347\u0348\u0349\u034a\u034b\u034c\u034d\u034e\u034f\u0350\u0351\u0352\u0353\u0354\u0355\u0356\u0357\u0358\u0359\u035a\u035b\u035c\u035d\u035e\u035f\u0360\u0361\u0362\u0363\u0364\u0365\u0366\u0367\u0368\u0369\u036a\u036b\u036c\u036d\u036e\u036f\xad\u200b\u200c\u200d\u2060\ufeff\u0483\u0484"
    "\u0485\u0486\u0487\u0488\u0489"
)
FOLD_EXPAND = (
    ("¼", "14"),
    ("½", "12"),
    ("¾", "34"),
    ("Æ", "ae"),
    ("Þ", "th"),
    ("ß", "ss"),
    ("æ", "ae"),
    ("þ", "th"),
    ("Ĳ", "ij"),
    ("ĳ", "ij"),
    ("ŉ", "ʼn"),
    ("Œ", "oe"),
    ("œ", "oe"),
    ("Ǆ", "dz"),
    ("ǅ", "dz"),
    ("ǆ", "dz"),
    ("Ǉ", "lj"),
    ("ǈ", "lj"),
    ("ǉ", "lj"),
    ("Ǌ", "nj"),
    ("ǋ", "nj"),
    ("ǌ", "nj"),
    ("Ǳ", "dz"),
    ("ǲ", "dz"),
    ("ǳ", "dz"),
    ("ẚ", "aʾ"),
    ("ẞ", "ss"),
    ("Ǣ", "ae"),
    ("ǣ", "ae"),
    ("Ǽ", "ae"),
    ("ǽ", "ae"),
)


MAX_TOKEN = 64  # characters of a token that count, as in the migration
MAX_QUERY_LENGTH = 500
MAX_TERMS = 16
DIGITS = "0123456789"

_FOLD: dict[int, str | None] = {ord(a): b for a, b in zip(FOLD_FROM, FOLD_TO, strict=True)}
_FOLD.update({ord(c): None for c in FOLD_DROP})
_FOLD.update({ord(c): r for c, r in FOLD_EXPAND})
_FOLD[0] = " "  # PostgreSQL text holds no NUL; in a query it separates like a space


def fold(text: str) -> str:
    """Case and accents folded, separators turned into spaces (``crm_search_fold``)."""
    return text.translate(_FOLD)


def tokens(text: str | None) -> list[str]:
    """The tokens of ``text``, as the database indexes them (``crm_search_tokens``)."""
    if not text:
        return []
    return [t[:MAX_TOKEN] for t in fold(text).split(" ") if t]


def digits(text: str | None) -> str:
    """A phone number's digits (``crm_search_digits``)."""
    return "".join(c for c in text or "" if c in DIGITS)[:20]


# ------------------------------------------------------------------------------- query


@dataclass(frozen=True)
class SearchQuery:
    """A parsed query: its distinct terms, and the whole of it as an exact value."""

    terms: tuple[str, ...]
    key: str

    def tsquery(self, *, prefix: bool = True, any_term: bool = False) -> str:
        """``'t1':* & 't2':*`` (tokens hold no quote or backslash: both separate)."""
        suffix = ":*" if prefix else ""
        return (" | " if any_term else " & ").join(f"'{t}'{suffix}" for t in self.terms)


def parse_query(text: str) -> SearchQuery:
    """Fold and split the user's text; ``Invalid`` when it is too long to be a search."""
    if len(text) > MAX_QUERY_LENGTH:
        raise Invalid(f"A search is at most {MAX_QUERY_LENGTH} characters", "query")
    found = tokens(text)
    terms = tuple(dict.fromkeys(found))
    if len(terms) > MAX_TERMS:
        raise Invalid(f"A search has at most {MAX_TERMS} words", "query")
    return SearchQuery(terms, " ".join(found))


# ------------------------------------------------------------------------- highlights


@dataclass(frozen=True)
class Highlight:
    """One field that matched: HTML-escaped text around the match, matched parts in
    ``<mark>``."""

    field: str
    snippet: str


SNIPPET_LENGTH = 160
SNIPPET_LEAD = 60


def _matched_spans(text: str, terms: Sequence[str], *, phone: bool) -> list[tuple[int, int]]:
    """Character ranges of ``text`` that the terms match as prefixes of its tokens (and,
    for a phone, as runs of its digits)."""
    folded: list[tuple[str, int]] = []  # (folded character, index in text)
    for index, char in enumerate(text):
        folded.extend((f, index) for f in char.translate(_FOLD))
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(folded):
        if folded[start][0] == " ":
            start += 1
            continue
        end = start
        while end < len(folded) and folded[end][0] != " ":
            end += 1
        token = "".join(f for f, _ in folded[start:end])[:MAX_TOKEN]
        longest = max((len(t) for t in terms if token.startswith(t)), default=0)
        if longest:
            # Up to the next folded character's source (combining marks after the last
            # matched letter included), or the end of the text.
            last = folded[start + longest - 1][1]
            if start + longest < len(folded):
                following = folded[start + longest][1]
                stop = following if following > last else last + 1
            else:
                stop = len(text)
            spans.append((folded[start][1], stop))
        start = end
    if phone:
        places = [i for i, c in enumerate(text) if c in DIGITS]
        number = "".join(text[i] for i in places)
        for term in terms:
            if len(term) >= 3 and all(c in DIGITS for c in term):
                at = number.find(term)
                while at >= 0:
                    spans.append((places[at], places[at + len(term) - 1] + 1))
                    at = number.find(term, at + 1)
    return _merged(spans)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def highlight(
    field: str, text: str | None, terms: Sequence[str], *, phone: bool = False
) -> Highlight | None:
    """The field's snippet, or None when no term matches in it."""
    if not text:
        return None
    spans = _matched_spans(text, terms, phone=phone)
    if not spans:
        return None
    begin = 0
    if len(text) > SNIPPET_LENGTH:
        begin = max(0, min(spans[0][0] - SNIPPET_LEAD, len(text) - SNIPPET_LENGTH))
    end = min(len(text), begin + SNIPPET_LENGTH)
    parts = ["…"] if begin > 0 else []
    at = begin
    for start, stop in spans:
        start, stop = max(start, begin), min(stop, end)
        if start >= stop:
            continue
        parts.append(html.escape(text[at:start]))
        parts.append(f"<mark>{html.escape(text[start:stop])}</mark>")
        at = stop
    parts.append(html.escape(text[at:end]))
    if end < len(text):
        parts.append("…")
    return Highlight(field, "".join(parts))


# ------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class Source:
    """One kind of searchable object: the list whose scoping it shares, and the fields a
    hit shows as highlights (the same fields the migration indexes)."""

    entity: SearchEntity
    spec: ListSpec[Any]
    fields: Callable[[Any, dict[str, Any]], list[tuple[str, str | None]]]


def _customer_fields(row: Customer, extra: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        ("name", row.name),
        ("email", row.email),
        ("phone", row.phone),
        ("company", extra.get("company_name")),
        ("tags", ", ".join(row.tags or [])),
    ]


SOURCES: dict[SearchEntity, Source] = {
    source.entity: source
    for source in (
        Source(SearchEntity.CUSTOMER, customers.CUSTOMERS, _customer_fields),
        Source(
            SearchEntity.COMPANY,
            companies.COMPANIES,
            lambda row, _: [("name", row.name), ("domain", row.domain)],
        ),
        Source(SearchEntity.DEAL, deals.DEALS, lambda row, _: [("title", row.title)]),
        Source(
            SearchEntity.CONVERSATION,
            conversations.CONVERSATIONS,
            lambda row, extra: [("subject", row.subject), ("message", extra.get("message"))],
        ),
        Source(
            SearchEntity.ACTIVITY,
            activities.ACTIVITIES,
            lambda row, _: [("subject", row.subject), ("body", row.body)],
        ),
    )
}


def readable_sources(actor: Actor, entities: Sequence[SearchEntity] | None) -> list[Source]:
    """The kinds the actor searches: the ones asked for (``Forbidden`` if one of them is
    not readable, as its list would answer), else every kind it may read (``Forbidden``
    when none)."""
    if entities:
        for entity in entities:
            authorize_read(actor, SOURCES[entity].spec.model)
        return [SOURCES[e] for e in SearchEntity if e in set(entities)]
    chosen = [s for s in SOURCES.values() if allows(actor, READ_ACTIONS[s.spec.model])]
    if not chosen:
        authorize_read(actor, Customer)  # raises with the reason
    return chosen


# ------------------------------------------------------------------------------ cursors


def _cursor(query: SearchQuery, entities: Sequence[Source], score: float, id: uuid.UUID) -> str:
    raw = orjson.dumps({"q": _signature(query, entities), "v": [score, str(id)]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _signature(query: SearchQuery, entities: Sequence[Source]) -> str:
    return f"{query.key}|{','.join(s.entity.value for s in entities)}"


def _after(cursor: str, query: SearchQuery, entities: Sequence[Source]) -> tuple[float, uuid.UUID]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        score, id = data["v"]
        if data["q"] != _signature(query, entities):
            raise ValueError("a cursor of another search")
        if (
            not isinstance(score, float | int)
            or isinstance(score, bool)
            or not math.isfinite(score)
        ):
            raise ValueError("not a score")
        return float(score), uuid.UUID(id)
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        binascii.Error,
        orjson.JSONDecodeError,
    ) as exc:
        raise Invalid("Invalid cursor: pass a cursor this search returned", "after") from exc


# ------------------------------------------------------------------------------- search


@dataclass
class SearchHit:
    """One result: the object (an ORM row), its score and what matched."""

    entity: SearchEntity
    node: Any
    score: float
    highlights: list[Highlight]


def _conditions(statement: Select[Any]) -> ColumnElement[bool]:
    """The WHERE of a scoped statement, to apply to its table joined elsewhere."""
    clause = statement.whereclause
    assert clause is not None, "a scoped statement has a WHERE"
    return clause


# The weight of a lexeme by its field (A name or title, B email, phone, domain, subject,
# C company name, tags and custom fields, D bodies), as migration 0017 stores it in
# ``search_terms``: powers of two, so that a score computed from the terms table and one
# computed from the tsvectors are the same double.
WEIGHTS = {"A": 1.0, "B": 0.5, "C": 0.25, "D": 0.125}


def _best_weight(vector: Any, term: str, *, prefix: bool) -> ColumnElement[float]:
    """The weight of the best field in which ``term`` (a token) starts (or, not
    ``prefix``, is) a word of ``vector``."""
    star = ":*" if prefix else ":"
    return case(
        *(
            (vector.bool_op("@@")(cast(literal(f"'{term}'{star}{w}"), TSQUERY)), value)
            for w, value in WEIGHTS.items()
            if w != "D"
        ),
        else_=WEIGHTS["D"],
    )


def _tier(query: SearchQuery) -> ColumnElement[int]:
    doc = SearchDocument
    return case(
        (literal(query.key) == any_(doc.exact_keys), 3),
        (doc.names.bool_op("@@")(cast(literal(query.tsquery(prefix=False)), TSQUERY)), 2),
        else_=1,
    )


def _score(query: SearchQuery, vector: Any, *, band: ColumnElement[Any]) -> ColumnElement[float]:
    """tier + band + rank / 4. The rank is the mean over the query's terms of the best
    weight of a field the term matches: as a whole word for the exact and whole-word
    tiers, as a prefix otherwise."""
    tier = _tier(query)

    def rank(prefix: bool) -> ColumnElement[float]:
        total: ColumnElement[float] = literal(0.0, Double)
        for term in query.terms:
            total = total + cast(_best_weight(vector, term, prefix=prefix), Double)
        return total / (4 * len(query.terms))

    return (
        cast(tier, Double) + cast(band, Double) + case((tier >= 2, rank(False)), else_=rank(True))
    )


def _prefix_range(term: str) -> tuple[str, str | None]:
    """``[term, upper)``: the strings that start with ``term``, compared code point by code
    point (byte-wise UTF-8, the terms' "C" collation); ``None`` when unbounded."""
    chars = list(term)
    while chars:
        last = ord(chars.pop()) + 1
        if 0xD800 <= last <= 0xDFFF:  # no surrogate is a character of a text
            last = 0xE000
        if last <= 0x10FFFF:
            return term, "".join(chars) + chr(last)
    return term, None


def _visible_term(term_row: Any, sources: Sequence[Source], actor: Actor) -> ColumnElement[bool]:
    """The term's object is one the actor reads in its list (each kind's own scoping)."""
    return case(
        *(
            (
                term_row.entity_type == source.entity,
                source.spec.statement(actor)
                .with_only_columns(literal(1))
                .where(source.spec.model.id == term_row.id)
                .exists(),
            )
            for source in sources
        ),
        else_=false(),
    )


def _named_by_terms(
    actor: Actor,
    query: SearchQuery,
    sources: Sequence[Source],
    size: int,
    after: tuple[float, uuid.UUID] | None,
) -> Select[Any]:
    """The best ``size + 1`` visible documents whose names one term prefixes, read from
    ``search_terms`` (migration 0017) without ranking every match: for each term of the
    prefix's range (found by skipping through the index), its first ``size + 1`` visible
    documents in the index's order, which is their score's order for that term; a
    document's score is its best over the terms. Every document of the page is among
    them (one with a better score in a term's list has a better score overall).

    Same scores as ``_score`` gives from the tsvectors for a one-word query: the whole
    word (tier 2, or 3 when it is a whole value) or the prefix (tier 1), plus the names'
    band, plus the term's best weight / 4."""
    (word,) = query.terms
    low, high = _prefix_range(word)
    term = SearchTerm
    kinds = [s.entity for s in sources]
    workspace = term.workspace_id == actor.workspace_id

    def in_range(column: Any) -> ColumnElement[bool]:
        return and_(column >= low, column < high) if high is not None else column >= low

    def entry_score(row: Any) -> ColumnElement[float]:
        tier = case((row.term == word, case((row.exact, 3), else_=2)), else_=1)
        return cast(tier, Double) + 0.5 + cast(row.weight, Double) / 4

    first = select(term.term).where(workspace, in_range(term.term)).order_by(term.term).limit(1)
    vocabulary = first.cte("vocabulary", recursive=True)
    following = aliased(SearchTerm)
    next_term = (
        select(following.term)
        .where(
            following.workspace_id == actor.workspace_id,
            following.term > vocabulary.c.term,
            *([following.term < high] if high is not None else []),
        )
        .order_by(following.term)
        .limit(1)
        .scalar_subquery()
    )
    vocabulary = vocabulary.union_all(select(next_term).where(vocabulary.c.term.is_not(None)))

    def entries(*conditions: ColumnElement[bool]) -> Select[Any]:
        row = aliased(SearchTerm)
        stmt = select(row.id, row.entity_type, entry_score(row).label("score")).where(
            row.workspace_id == actor.workspace_id,
            row.entity_type.in_(kinds),
            *[c(row) for c in conditions],  # type: ignore[operator]
            _visible_term(row, sources, actor),
        )
        if after is not None:
            # The document's score over all its terms, for the documents after the
            # cursor only (one of a previous page may have a lower term here).
            score_after, id_after = after
            other = aliased(SearchTerm)
            best = (
                select(func.max(entry_score(other)))
                .where(other.id == row.id, in_range(other.term))
                .scalar_subquery()
            )
            stmt = stmt.where(or_(best < score_after, and_(best == score_after, row.id > id_after)))
        return stmt.order_by(row.weight.desc(), row.id).limit(size + 1)

    per_term = entries(lambda row: row.term == vocabulary.c.term).lateral("per_term")
    by_term = select(per_term.c.id, per_term.c.entity_type, per_term.c.score).select_from(
        vocabulary.join(per_term, true())
    )
    # Whole values equal to the word rank first: they may sit anywhere in their term's
    # list, which is ordered by weight alone.
    exact = entries(lambda row: row.term == word, lambda row: row.exact).subquery("exact")
    hits = union_all(by_term, select(exact.c.id, exact.c.entity_type, exact.c.score)).subquery(
        "term_hits"
    )
    best_score = func.max(hits.c.score).label("score")
    return (
        select(hits.c.id, hits.c.entity_type, best_score)
        .group_by(hits.c.id, hits.c.entity_type)
        .order_by(best_score.desc(), hits.c.id)
        .limit(size + 1)
    )


async def search(
    actor: Actor,
    session: AsyncSession,
    text: str,
    *,
    entities: Sequence[SearchEntity] | None = None,
    page: PageRequest,
) -> Page[SearchHit]:
    """One page of hits for ``text``, best first, in one statement."""
    sources = readable_sources(actor, entities)
    query = parse_query(text)
    if page.last is not None or page.before is not None:
        raise Invalid("Search pages forward only: use `first` and `after`", "last")
    size, _, cursor = page.validated()
    after = _after(cursor, query, sources) if cursor is not None else None
    if not query.terms or size == 0:
        return Page(items=[], cursors=[], has_next_page=False, has_previous_page=after is not None)

    doc = SearchDocument
    matches = cast(literal(query.tsquery()), TSQUERY)
    outside_bodies = doc.names.bool_op("@@")(matches)

    def ranked(condition: ColumnElement[bool], score: ColumnElement[float]) -> Select[Any]:
        """The best ``size + 1`` visible documents meeting ``condition`` (after the
        cursor): each kind joins its row under the conditions its own list applies for
        this actor."""
        score = score.label("score")
        stmt = select(doc.id, doc.entity_type, score)
        visible = []
        for source in sources:
            model = source.spec.model
            scope = _conditions(source.spec.statement(actor))
            stmt = stmt.outerjoin(
                model, and_(doc.entity_type == source.entity, model.id == doc.id, scope)
            )
            visible.append(model.id.is_not(None))
        stmt = stmt.where(
            _conditions(in_workspace(SearchDocument, actor)),
            doc.entity_type.in_([s.entity for s in sources]),
            condition,
            or_(false(), *visible),
        )
        if after is not None:
            score_after, id_after = after
            stmt = stmt.where(
                or_(score < score_after, and_(score == score_after, doc.id > id_after))
            )
        return stmt.order_by(score.desc(), doc.id).limit(size + 1)

    # Every hit outside the bodies scores above every hit in bodies only (the band), so
    # the names answer alone whenever they fill the page; the bodies are read only when
    # they do not (a one-time filter of the second branch). A one-word query (as you
    # type) reads the names through the terms table, in score order; more words are
    # selective enough for the tsvectors' index.
    if len(query.terms) == 1:
        named = _named_by_terms(actor, query, sources, size, after).cte("named")
    else:
        named = ranked(outside_bodies, _score(query, doc.names, band=literal(0.5))).cte("named")
    page_full = select(func.count()).select_from(named).scalar_subquery() > size
    in_bodies = ranked(
        and_(doc.document.bool_op("@@")(matches), ~outside_bodies, ~page_full),
        _score(query, doc.document, band=literal(0.0)),
    ).subquery("in_bodies")
    found = union_all(
        select(named.c.id, named.c.entity_type, named.c.score),
        select(in_bodies.c.id, in_bodies.c.entity_type, in_bodies.c.score),
    ).subquery("found")

    rows: dict[SearchEntity, Any] = {}
    stmt = select(found.c.id, found.c.entity_type, found.c.score)
    for source in sources:
        model = source.spec.model
        stmt = stmt.outerjoin(
            model, and_(found.c.entity_type == source.entity, model.id == found.c.id)
        ).add_columns(model)
        rows[source.entity] = model
    if SearchEntity.CUSTOMER in rows:
        company = aliased(Company)
        stmt = stmt.outerjoin(company, company.id == Customer.company_id).add_columns(
            company.name.label("company_name")
        )
    if SearchEntity.CONVERSATION in rows:
        any_term = cast(literal(query.tsquery(any_term=True)), TSQUERY)
        latest_match = (
            conversations.MESSAGES.statement(actor)
            .with_only_columns(Message.body)
            .where(
                Message.conversation_id == Conversation.id,
                func.crm_search_vector(Message.body, literal_column("'D'")).bool_op("@@")(any_term),
            )
            .order_by(Message.seq.desc())
            .limit(1)
            .correlate(Conversation)
            .scalar_subquery()
        )
        stmt = stmt.add_columns(case((Conversation.id.is_not(None), latest_match)).label("message"))
    # The searchable custom fields of the hit's kind (none for conversations and
    # activities): what its document holds of its ``custom_fields``, to highlight.
    definition = CustomFieldDefinition
    searchable = (
        select(
            func.array_agg(aggregate_order_by(definition.key, definition.created_at, definition.id))
        )
        .where(
            definition.workspace_id == actor.workspace_id,
            definition.entity == found.c.entity_type,
            definition.searchable,
            definition.archived_at.is_(None),
        )
        .scalar_subquery()
    )
    stmt = stmt.add_columns(searchable.label("searchable_keys"))
    stmt = stmt.order_by(found.c.score.desc(), found.c.id).limit(size + 1)

    result = (await session.execute(stmt)).all()
    more = len(result) > size
    hits: list[SearchHit] = []
    cursors: list[str] = []
    for row in result[:size]:
        entity = SearchEntity(row.entity_type)
        node = getattr(row, rows[entity].__name__)
        extra = row._mapping
        extras = {
            "company_name": extra.get("company_name"),
            "message": extra.get("message"),
        }
        marks = [
            mark
            for name, value in SOURCES[entity].fields(node, extras)
            if (mark := highlight(name, value, query.terms, phone=name == "phone")) is not None
        ]
        for key in row.searchable_keys or ():
            text = custom_fields.searchable_text([key], node.custom_fields or {})
            mark = highlight(custom_fields.field_name(key), text, query.terms)
            if mark is not None:
                marks.append(mark)
        hits.append(SearchHit(entity, node, float(row.score), marks))
        cursors.append(_cursor(query, sources, float(row.score), row.id))
    return Page(
        items=hits, cursors=cursors, has_next_page=more, has_previous_page=after is not None
    )


__all__ = [
    "Highlight",
    "SearchEntity",
    "SearchHit",
    "SearchQuery",
    "fold",
    "highlight",
    "parse_query",
    "search",
    "tokens",
]
