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
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Double,
    Integer,
    Select,
    Text,
    and_,
    any_,
    bindparam,
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
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import REAL, TSQUERY, aggregate_order_by
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
from crm_graphql.storage.querying import ListSpec, Page, PageRequest

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
    """One result: the object (an ORM row), its score and what matched. ``highlights``
    are computed when read (a page that does not show them does not pay for them)."""

    entity: SearchEntity
    node: Any
    score: float
    # (field, its text, whether it is a phone) for each field the hit can highlight.
    fields: list[tuple[str, str | None, bool]]
    terms: Sequence[str]

    @cached_property
    def highlights(self) -> list[Highlight]:
        return [
            mark
            for name, value, phone in self.fields
            if (mark := highlight(name, value, self.terms, phone=phone)) is not None
        ]


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
NAME_WEIGHTS = (WEIGHTS["A"], WEIGHTS["B"], WEIGHTS["C"])


def _tsquery(name: str) -> ColumnElement[Any]:
    return cast(bindparam(name, type_=Text), TSQUERY)


def _weight_query(index: int, weight: str, prefix: bool) -> str:
    """The parameter holding ``'term':*A`` (``'term':A`` when not ``prefix``)."""
    return f"term_{index}_{weight}_{'prefix' if prefix else 'whole'}"


def _score(terms: int, vector: Any, *, band: float) -> ColumnElement[float]:
    """tier + band + rank / 4. The tier: 3 when the query is one of the object's whole
    values, 2 when every term is a whole word of its names, else 1. The rank: the mean
    over the query's terms of the best weight of a field the term matches (as a whole word
    in tiers 3 and 2, as a prefix in tier 1)."""
    doc = SearchDocument
    tier = case(
        (bindparam("key", type_=Text) == any_(doc.exact_keys), 3),
        (doc.names.bool_op("@@")(_tsquery("whole_query")), 2),
        else_=1,
    )

    def rank(prefix: bool) -> ColumnElement[float]:
        total: ColumnElement[float] = literal(0.0, Double)
        for index in range(terms):
            best = case(
                *(
                    (vector.bool_op("@@")(_tsquery(_weight_query(index, w, prefix))), value)
                    for w, value in WEIGHTS.items()
                    if w != "D"
                ),
                else_=WEIGHTS["D"],
            )
            total = total + cast(best, Double)
        return total / (4 * terms)

    return (
        cast(tier, Double)
        + literal(band, Double)
        + case((tier >= 2, rank(False)), else_=rank(True))
    )


def _query_parameters(query: SearchQuery) -> dict[str, Any]:
    """The values of the statement's query parameters for ``query``."""
    (word, *_) = query.terms
    _, high = _prefix_range(word)
    parameters: dict[str, Any] = {
        "word": word,
        "high": high,
        "key": query.key,
        "prefix_query": query.tsquery(),
        "whole_query": query.tsquery(prefix=False),
        "any_query": query.tsquery(any_term=True),
    }
    for index, term in enumerate(query.terms):
        for w in WEIGHTS:
            if w != "D":
                parameters[_weight_query(index, w, True)] = f"'{term}':*{w}"
                parameters[_weight_query(index, w, False)] = f"'{term}':{w}"
    return parameters


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


def _visible_term(
    term_row: Any, scoped: Sequence[tuple[Source, Select[Any]]]
) -> ColumnElement[bool]:
    """The term's object is one the actor reads in its list (each kind's own scoping:
    ``scoped`` pairs each source with its list's statement for the actor)."""
    return case(
        *(
            (
                term_row.entity_type == source.entity,
                # A scalar subquery (one row at most, by primary key), not EXISTS:
                # PostgreSQL may run an EXISTS as a hash of every row of the table.
                statement.with_only_columns(true())
                .where(source.spec.model.id == term_row.id)
                .scalar_subquery()
                .is_not(None),
            )
            for source, statement in scoped
        ),
        else_=false(),
    )


def _after_cursor(score: ColumnElement[float], id: Any) -> ColumnElement[bool]:
    score_after = bindparam("score_after", type_=Double)
    return or_(score < score_after, and_(score == score_after, id > bindparam("id_after")))


def _named_by_terms(
    actor: Actor,
    scoped: Sequence[tuple[Source, Select[Any]]],
    *,
    bounded: bool,
    paged: bool,
) -> Select[Any]:
    """The best ``limit`` visible documents whose names the one word of the query starts,
    read from ``search_terms`` (migration 0017) without ranking every match.

    A one-word score takes seven values, best first: the word is a whole value (3.5 +
    weight / 4), a whole word of weight A, B or C (2.5 + weight / 4), or starts a longer
    word of weight A, B or C (1.5 + weight / 4): the scores ``_score`` gives from the
    tsvectors. Within each the order is the id's, which is the index's: a stage reads,
    for each term of its range (found by skipping through the index), the first ``limit``
    visible documents of the term. A stage of longer words runs only when the stages
    before it found less than ``limit`` documents (a one-time filter), so a two-letter
    prefix of a common name reads the names of weight A and stops there, whatever the
    number of emails or subjects it also starts. A document's score is its best over the
    stages; every document of the page is among those read (one before it in a term's
    list scores at least as much)."""
    word = bindparam("word", type_=Text)
    high = bindparam("high", type_=Text)
    limit = bindparam("limit", type_=Integer)
    kinds = [source.entity for source, _ in scoped]

    def in_range(column: Any, *, strict: bool) -> list[ColumnElement[bool]]:
        start = column > word if strict else column >= word
        return [start, column < high] if bounded else [start]

    def entries(row: Any, score: ColumnElement[Any], *conditions: Any) -> Select[Any]:
        stmt: Select[Any] = select(row.id, row.entity_type, score.label("score")).where(
            row.workspace_id == actor.workspace_id,
            *conditions,
            row.entity_type.in_(kinds),
            _visible_term(row, scoped),
        )
        if paged:
            # The document's score over all its terms: one of a previous page may have
            # a lower term after the cursor.
            other = aliased(SearchTerm)
            tier = case((other.term == word, case((other.exact, 3), else_=2)), else_=1)
            best = (
                select(func.max(cast(tier, Double) + 0.5 + cast(other.weight, Double) / 4))
                .where(other.id == row.id, *in_range(other.term, strict=False))
                .scalar_subquery()
            )
            stmt = stmt.where(_after_cursor(best, row.id))
        return stmt

    stages: list[Select[Any]] = []
    exact = aliased(SearchTerm)
    stages.append(
        entries(exact, 3.5 + cast(exact.weight, Double) / 4, exact.term == word, exact.exact)
        .order_by(exact.weight.desc(), exact.id)
        .limit(limit)
    )
    # Whole words, one list per weight.
    weights = union_all(*(select(literal(w, REAL).label("weight")) for w in NAME_WEIGHTS)).subquery(
        "weights"
    )
    whole = aliased(SearchTerm)
    per_weight = (
        entries(
            whole,
            2.5 + cast(whole.weight, Double) / 4,
            whole.weight == weights.c.weight,
            whole.term == word,
            ~whole.exact,
        )
        .order_by(whole.id)
        .limit(limit)
        .lateral("whole_words")
    )
    stages.append(
        select(per_weight.c.id, per_weight.c.entity_type, per_weight.c.score).select_from(
            weights.join(per_weight, true())
        )
    )
    for weight in NAME_WEIGHTS:
        # The terms of this weight after the word, to the range's end.
        name = f"terms_{weight:g}".replace(".", "_")
        head = aliased(SearchTerm)
        vocabulary = (
            select(head.term)
            .where(
                head.workspace_id == actor.workspace_id,
                head.weight == literal(weight, REAL),
                *in_range(head.term, strict=True),
            )
            .order_by(head.term)
            .limit(1)
            .cte(name, recursive=True)
        )
        step = aliased(SearchTerm)
        next_term = (
            select(step.term)
            .where(
                step.workspace_id == actor.workspace_id,
                step.weight == literal(weight, REAL),
                step.term > vocabulary.c.term,
                *([step.term < high] if bounded else []),
            )
            .order_by(step.term)
            .limit(1)
            .scalar_subquery()
        )
        vocabulary = vocabulary.union_all(select(next_term).where(vocabulary.c.term.is_not(None)))
        row = aliased(SearchTerm)
        per_term = (
            entries(
                row,
                literal(1.5 + weight / 4, Double),
                row.weight == literal(weight, REAL),
                row.term == vocabulary.c.term,
            )
            .order_by(row.id)
            .limit(limit)
            .lateral(f"{name}_hits")
        )
        stages.append(
            select(per_term.c.id, per_term.c.entity_type, per_term.c.score).select_from(
                vocabulary.join(per_term, true())
            )
        )

    found: list[Any] = []
    for number, stage in enumerate(stages):
        if found:
            earlier = union_all(*(select(f.c.id) for f in found)).subquery()
            enough = select(func.count(earlier.c.id.distinct())).scalar_subquery() >= limit
            stage = select(stage.subquery()).where(~enough)
        found.append(stage.cte(f"stage_{number}"))
    hits = union_all(*(select(f.c.id, f.c.entity_type, f.c.score) for f in found)).subquery(
        "term_hits"
    )
    best_score = func.max(hits.c.score).label("score")
    return (
        select(hits.c.id, hits.c.entity_type, best_score)
        .group_by(hits.c.id, hits.c.entity_type)
        .order_by(best_score.desc(), hits.c.id)
        .limit(limit)
    )


@dataclass(frozen=True)
class _Shape:
    """What a search statement is built from: who asks (everything its scoping reads), the
    kinds, and the query's form. The query's own values are parameters."""

    workspace_id: uuid.UUID
    role: Any
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    scopes: frozenset[str]
    kinds: tuple[SearchEntity, ...]
    terms: int
    bounded: bool
    paged: bool


# Built statements, per shape: building one (seven stages, five scopes each) costs more
# than running it. The parameters are bound at execution.
_STATEMENTS: OrderedDict[_Shape, tuple[Select[Any], dict[SearchEntity, Any]]] = OrderedDict()
_STATEMENTS_KEPT = 256


def _statement(
    actor: Actor, sources: Sequence[Source], shape: _Shape
) -> tuple[Select[Any], dict[SearchEntity, Any]]:
    cached = _STATEMENTS.get(shape)
    if cached is not None:
        _STATEMENTS.move_to_end(shape)
        return cached
    built = _build_statement(actor, sources, shape)
    _STATEMENTS[shape] = built
    if len(_STATEMENTS) > _STATEMENTS_KEPT:
        _STATEMENTS.popitem(last=False)
    return built


def _found(actor: Actor, sources: Sequence[Source], shape: _Shape) -> Any:
    """The hits (``id``, ``entity_type``, ``score``) of one page and one more, unordered;
    the query's values are parameters (``_query_parameters``, ``limit`` and the cursor's)."""
    doc = SearchDocument
    scoped = [(source, source.spec.statement(actor)) for source in sources]
    matches = _tsquery("prefix_query")
    outside_bodies = doc.names.bool_op("@@")(matches)
    limit = bindparam("limit", type_=Integer)

    def ranked(condition: ColumnElement[bool], score: ColumnElement[float]) -> Select[Any]:
        """The best ``limit`` visible documents meeting ``condition`` (after the cursor):
        each kind joins its row under the conditions its own list applies for this
        actor."""
        score = score.label("score")
        stmt: Any = select(doc.id, doc.entity_type, score)
        visible = []
        for source, statement in scoped:
            model = source.spec.model
            stmt = stmt.outerjoin(
                model,
                and_(doc.entity_type == source.entity, model.id == doc.id, _conditions(statement)),
            )
            visible.append(model.id.is_not(None))
        stmt = stmt.where(
            _conditions(in_workspace(SearchDocument, actor)),
            doc.entity_type.in_(shape.kinds),
            condition,
            or_(false(), *visible),
        )
        if shape.paged:
            stmt = stmt.where(_after_cursor(score, doc.id))
        return stmt.order_by(score.desc(), doc.id).limit(limit)

    # Every hit outside the bodies scores above every hit in bodies only (the band), so
    # the names answer alone whenever they fill the page; the bodies are read only when
    # they do not (a one-time filter of the second branch). A one-word query (as you
    # type) reads the names through the terms table, in score order; more words are
    # selective enough for the tsvectors' index.
    if shape.terms == 1:
        named = _named_by_terms(actor, scoped, bounded=shape.bounded, paged=shape.paged)
    else:
        named = ranked(outside_bodies, _score(shape.terms, doc.names, band=0.5))
    named_cte = named.cte("named")
    page_full = select(func.count()).select_from(named_cte).scalar_subquery() >= limit
    in_bodies = ranked(
        and_(doc.document.bool_op("@@")(matches), ~outside_bodies, ~page_full),
        _score(shape.terms, doc.document, band=0.0),
    ).subquery("in_bodies")
    return union_all(
        select(named_cte.c.id, named_cte.c.entity_type, named_cte.c.score),
        select(in_bodies.c.id, in_bodies.c.entity_type, in_bodies.c.score),
    ).subquery("found")


def _build_statement(
    actor: Actor, sources: Sequence[Source], shape: _Shape
) -> tuple[Select[Any], dict[SearchEntity, Any]]:
    """One page of hits with their rows (and the ORM entity of each kind)."""
    found = _found(actor, sources, shape)
    limit = bindparam("limit", type_=Integer)
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
        latest_match = (
            conversations.MESSAGES.statement(actor)
            .with_only_columns(Message.body)
            .where(
                Message.conversation_id == Conversation.id,
                func.crm_search_vector(Message.body, literal_column("'D'")).bool_op("@@")(
                    _tsquery("any_query")
                ),
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
    return stmt.order_by(found.c.score.desc(), found.c.id).limit(limit), rows


@dataclass(frozen=True)
class _Request:
    """What a search runs: the sources, the parsed query, the page size, the cursor's
    position, and the statement's shape and parameters (None: an empty page, for no
    terms or ``first: 0``)."""

    sources: list[Source]
    query: SearchQuery
    size: int
    after: tuple[float, uuid.UUID] | None
    shape: _Shape | None
    parameters: dict[str, Any]


def _request(
    actor: Actor, text: str, entities: Sequence[SearchEntity] | None, page: PageRequest
) -> _Request:
    """A search of ``text`` checked (``Invalid`` arguments, ``Forbidden`` kinds)."""
    sources = readable_sources(actor, entities)
    query = parse_query(text)
    if page.last is not None or page.before is not None:
        raise Invalid("Search pages forward only: use `first` and `after`", "last")
    size, _, cursor = page.validated()
    after = _after(cursor, query, sources) if cursor is not None else None
    if not query.terms or size == 0:
        return _Request(sources, query, size, after, None, {})
    parameters = _query_parameters(query)
    shape = _Shape(
        workspace_id=actor.workspace_id,
        role=actor.role,
        user_id=actor.user_id,
        api_key_id=actor.api_key_id,
        scopes=frozenset(actor.scopes),
        kinds=tuple(s.entity for s in sources),
        terms=len(query.terms),
        bounded=parameters["high"] is not None,
        paged=after is not None,
    )
    parameters["limit"] = size + 1
    if after is not None:
        parameters["score_after"], parameters["id_after"] = after
    return _Request(sources, query, size, after, shape, parameters)


@dataclass(frozen=True)
class HitsStatement:
    """A search as the compiled read path runs it: ``statement`` gives the page's hits and
    one more (``id``, ``entity_type``, ``score``, best first) with every value bound;
    ``signature`` is what its cursors carry (``_cursor``). The statement's binds take
    ``parameters``, by name."""

    statement: Select[Any]
    parameters: dict[str, Any]
    size: int
    signature: str
    after: bool


def hits_statement(
    actor: Actor, text: str, entities: Sequence[SearchEntity] | None, page: PageRequest
) -> HitsStatement | None:
    """``search``'s hits for ``text`` in one statement (None: an empty page)."""
    request = _request(actor, text, entities, page)
    shape = request.shape
    if shape is None:
        return None
    found = _found(actor, request.sources, shape)
    statement = (
        select(found.c.id, found.c.entity_type, found.c.score)
        .order_by(found.c.score.desc(), found.c.id)
        .limit(bindparam("limit", type_=Integer))
    )
    return HitsStatement(
        statement,
        request.parameters,
        request.size,
        _signature(request.query, request.sources),
        request.after is not None,
    )


def cursor_prefix(signature: str) -> str:
    """The JSON text a hit's cursor starts with, before its ``score, "id"]}``."""
    return orjson.dumps({"q": signature}).decode()[:-1] + ',"v":['


async def search(
    actor: Actor,
    session: AsyncSession,
    text: str,
    *,
    entities: Sequence[SearchEntity] | None = None,
    page: PageRequest,
) -> Page[SearchHit]:
    """One page of hits for ``text``, best first, in one statement."""
    request = _request(actor, text, entities, page)
    sources, query, size, after, shape = (
        request.sources,
        request.query,
        request.size,
        request.after,
        request.shape,
    )
    if shape is None:
        return Page(items=[], cursors=[], has_next_page=False, has_previous_page=after is not None)
    parameters = request.parameters
    stmt, rows = _statement(actor, sources, shape)
    if shape.terms == 1:
        # The one-word statement's plan is the same whatever the word (index probes in
        # stages): planned once per connection, not for every keystroke (its custom
        # plans cost more than running it). Back to the default for the request's other
        # reads, which share this transaction.
        await session.execute(sql_text("SET LOCAL plan_cache_mode = force_generic_plan"))
        try:
            result = (await session.execute(stmt, parameters)).all()
        finally:
            await session.execute(sql_text("SET LOCAL plan_cache_mode TO DEFAULT"))
    else:
        result = (await session.execute(stmt, parameters)).all()
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
        fields = [
            (name, value, name == "phone") for name, value in SOURCES[entity].fields(node, extras)
        ]
        for key in row.searchable_keys or ():
            text = custom_fields.searchable_text([key], node.custom_fields or {})
            fields.append((custom_fields.field_name(key), text, False))
        hits.append(SearchHit(entity, node, float(row.score), fields, query.terms))
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
