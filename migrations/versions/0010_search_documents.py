"""search documents

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 16:00:00

Search over customers, companies, deals, conversations and activities (issue 13, point 1;
docs/decisions/0011-search.md). One row of ``search_documents`` per object, holding the
object's folded tokens as a weighted ``tsvector``; triggers keep it current in the writing
transaction (a company rename refreshes its customers, a message appends to its
conversation), and the rows that exist are indexed here.

Folding is the project's own (the embedded server has no ``unaccent``): one table of
characters, below, mapped by ``translate`` after a few expansions (``ß`` -> ``ss``). The
same table is in ``crm_graphql/services/search.py`` for the query, and a test compares the
two character by character. This revision keeps its own copy: a later change of the table
is a new revision that also rebuilds the documents.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The character table (see the docstring), as generated for this revision.
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


MAX_TOKEN = 64  # characters of a token that count (a tsvector lexeme has at most 2 kB)
MAX_APPENDED_LEXEMES = 100_000  # a conversation's document stops growing past this

TABLES = ("customers", "companies", "deals", "conversations", "activities")


def _literal(value: str) -> str:
    """An SQL escape-string literal of ``value`` (control characters as ``\\x`` escapes)."""
    out = []
    for ch in value:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "E'" + "".join(out) + "'"


def _execute(sql: str) -> None:
    # Straight to the driver: the table's characters include ``:`` and ``%``, which
    # SQLAlchemy's text() would read as parameters.
    op.get_bind().exec_driver_sql(sql)


def _fold_sql() -> str:
    ascii_pairs = [(a, b) for a, b in zip(FOLD_FROM, FOLD_TO, strict=True) if ord(a) < 0x80]
    ascii_from = "".join(a for a, _ in ascii_pairs)
    ascii_to = "".join(b for _, b in ascii_pairs)
    expanded = "value"
    for source, target in FOLD_EXPAND:
        expanded = f"replace({expanded}, {_literal(source)}, {_literal(target)})"
    # Most text is ASCII: its short table is much cheaper to scan (translate looks every
    # character up in the table, one by one).
    return f"""
        CREATE FUNCTION crm_search_fold(value text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
            SELECT CASE WHEN value ~ '[^\\x01-\\x7f]'
                THEN translate({expanded}, {_literal(FOLD_FROM + FOLD_DROP)}, {_literal(FOLD_TO)})
                ELSE translate(value, {_literal(ascii_from)}, {_literal(ascii_to)})
            END
        $fn$
    """


HELPERS = [
    # Single expressions (no FROM), so that PostgreSQL inlines them into the statements
    # that call them: a bulk load spends most of its indexing time in these functions.
    # Tokens longer than MAX_TOKEN characters are cut by the regular expression.
    f"""
    CREATE FUNCTION crm_search_tokens(value text) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT coalesce(array_remove(string_to_array(
            regexp_replace(crm_search_fold(value), '([^ ]{{{MAX_TOKEN}}})[^ ]+', '\\1', 'g'),
            ' '), ''), '{{}}')
    $fn$
    """,
    # One position per lexeme (its first), so that the weight sticks: tokens never hold
    # a quote or a backslash (both are separators), so quoting them is enough.
    """
    CREATE FUNCTION crm_search_lexemes(tokens text[], weight "char") RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT coalesce(
            setweight(string_agg('''' || t || ''':' || least(p, 16383), ' ')::tsvector, weight),
            ''::tsvector)
        FROM (SELECT t, min(n) AS p FROM unnest(tokens) WITH ORDINALITY AS u(t, n) GROUP BY t) l
    $fn$
    """,
    """
    CREATE FUNCTION crm_search_vector(value text, weight "char") RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT crm_search_lexemes(crm_search_tokens(value), weight)
    $fn$
    """,
    """
    CREATE FUNCTION crm_search_key(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT array_to_string(crm_search_tokens(value), ' ')
    $fn$
    """,
    """
    CREATE FUNCTION crm_search_digits(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT left(regexp_replace(coalesce(value, ''), '[^0-9]', '', 'g'), 20)
    $fn$
    """,
    # Every suffix of three digits or more: "+1 (415) 555-0199" is found by "5550199".
    """
    CREATE FUNCTION crm_search_digit_suffixes(value text) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT coalesce(array_agg(substr(d, i) ORDER BY i), '{}')
        FROM crm_search_digits(value) AS d, generate_series(1, length(d) - 2) AS i
    $fn$
    """,
]

UPSERT = """
    INSERT INTO search_documents AS d
        (id, workspace_id, entity_type, names, document, exact_keys)
    SELECT s.id, s.workspace_id, '{entity}', s.names, s.names || s.bodies, s.exact_keys
    FROM ({select}) AS s
    ON CONFLICT (id) DO UPDATE
    SET names = EXCLUDED.names, document = EXCLUDED.document,
        exact_keys = EXCLUDED.exact_keys, updated_at = now()
"""

# What each kind of object is found by, and with which weight: (kind, a SELECT of id,
# workspace_id, names (everything but bodies), bodies and exact_keys for the given ids).
REFRESH = {
    "customers": (
        "customer",
        """
        SELECT c.id, c.workspace_id,
            crm_search_vector(c.name, 'A') || crm_search_vector(c.email, 'B')
            || crm_search_vector(c.phone, 'B')
            || crm_search_lexemes(crm_search_digit_suffixes(c.phone), 'B')
            || crm_search_vector(co.name, 'C')
            || crm_search_vector(array_to_string(c.tags, ' '), 'C') AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(c.name), crm_search_key(c.email),
                               crm_search_key(c.phone), crm_search_digits(c.phone)], '')
                AS exact_keys
        FROM customers c LEFT JOIN companies co ON co.id = c.company_id
        WHERE c.id = ANY(ids)
        """,
    ),
    "companies": (
        "company",
        """
        SELECT co.id, co.workspace_id,
            crm_search_vector(co.name, 'A') || crm_search_vector(co.domain, 'B') AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(co.name), crm_search_key(co.domain)], '')
                AS exact_keys
        FROM companies co WHERE co.id = ANY(ids)
        """,
    ),
    "deals": (
        "deal",
        """
        SELECT dl.id, dl.workspace_id, crm_search_vector(dl.title, 'A') AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(dl.title)], '') AS exact_keys
        FROM deals dl WHERE dl.id = ANY(ids)
        """,
    ),
    "conversations": (
        "conversation",
        """
        SELECT cv.id, cv.workspace_id, crm_search_vector(cv.subject, 'B') AS names,
            crm_search_vector(
                (SELECT string_agg(m.body, ' ' ORDER BY m.seq) FROM messages m
                 WHERE m.conversation_id = cv.id), 'D') AS bodies,
            array_remove(ARRAY[crm_search_key(cv.subject)], '') AS exact_keys
        FROM conversations cv WHERE cv.id = ANY(ids)
        """,
    ),
    "activities": (
        "activity",
        """
        SELECT a.id, a.workspace_id, crm_search_vector(a.subject, 'B') AS names,
            crm_search_vector(a.body, 'D') AS bodies,
            array_remove(ARRAY[crm_search_key(a.subject)], '') AS exact_keys
        FROM activities a WHERE a.id = ANY(ids)
        """,
    ),
}

# The columns a document is made of: an update touching none of them keeps it.
WATCHED = {
    "customers": ("name", "email", "phone", "company_id", "tags"),
    "companies": ("name", "domain"),
    "deals": ("title",),
    "conversations": ("subject",),
    "activities": ("subject", "body"),
}

# A company's name is in its customers' documents.
EXTRA_ON_CHANGE = {
    "companies": """
        IF TG_OP = 'UPDATE' AND OLD.name IS DISTINCT FROM NEW.name THEN
            PERFORM crm_search_refresh_customers(ARRAY(
                SELECT id FROM customers
                WHERE workspace_id = NEW.workspace_id AND company_id = NEW.id));
        END IF;
    """,
}


def upgrade() -> None:
    op.create_table(
        "search_documents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column(
            "entity_type",
            sa.Enum(
                "customer",
                "company",
                "deal",
                "conversation",
                "activity",
                name="search_entity",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("names", postgresql.TSVECTOR(), nullable=False),
        sa.Column("document", postgresql.TSVECTOR(), nullable=False),
        sa.Column("exact_keys", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_search_documents_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_documents")),
    )
    op.create_index(
        "ix_search_documents_workspace_type",
        "search_documents",
        ["workspace_id", "entity_type", "id"],
    )
    op.create_index(
        "ix_search_documents_names", "search_documents", ["names"], postgresql_using="gin"
    )
    op.create_index(
        "ix_search_documents_document", "search_documents", ["document"], postgresql_using="gin"
    )
    _execute(_fold_sql())
    for sql in HELPERS:
        _execute(sql)
    for table, (entity, select) in REFRESH.items():
        _execute(
            f"CREATE FUNCTION crm_search_refresh_{table}(ids uuid[]) RETURNS void "
            f"LANGUAGE sql AS $fn$ {UPSERT.format(entity=entity, select=select)} $fn$"
        )
    _execute(
        """
        CREATE FUNCTION crm_search_row_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            DELETE FROM search_documents WHERE id = OLD.id;
            RETURN NULL;
        END $fn$
        """
    )
    for table in TABLES:
        _execute(
            f"""
            CREATE FUNCTION crm_search_{table}_changed() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            BEGIN
                PERFORM crm_search_refresh_{table}(ARRAY[NEW.id]);
                {EXTRA_ON_CHANGE.get(table, "")}
                RETURN NULL;
            END $fn$
            """
        )
        # Inserts per statement, over the inserted rows at once: a bulk load (COPY of
        # a data set, the demo seeder) indexes in one pass instead of row by row.
        _execute(
            f"""
            CREATE FUNCTION crm_search_{table}_inserted() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            BEGIN
                PERFORM crm_search_refresh_{table}(ARRAY(SELECT id FROM new_rows));
                RETURN NULL;
            END $fn$
            """
        )
        columns = WATCHED[table]
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
        _execute(
            f"CREATE TRIGGER search_insert AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION crm_search_{table}_inserted()"
        )
        _execute(
            f"CREATE TRIGGER search_update AFTER UPDATE OF {', '.join(columns)} ON {table} "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION crm_search_{table}_changed()"
        )
        _execute(
            f"CREATE TRIGGER search_delete AFTER DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION crm_search_row_deleted()"
        )
    # Messages: a new one adds its tokens to the conversation's document (no re-reading
    # of the whole conversation per message); a changed or removed one rebuilds it.
    _execute(
        f"""
        CREATE FUNCTION crm_search_message_inserted() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            UPDATE search_documents d
            SET document = d.document || m.vector, updated_at = now()
            FROM (SELECT conversation_id,
                         crm_search_vector(string_agg(body, ' ' ORDER BY seq), 'D') AS vector
                  FROM new_rows GROUP BY conversation_id) m
            WHERE d.id = m.conversation_id AND length(d.document) < {MAX_APPENDED_LEXEMES};
            RETURN NULL;
        END $fn$
        """
    )
    _execute(
        """
        CREATE FUNCTION crm_search_message_changed() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            PERFORM crm_search_refresh_conversations(ARRAY[OLD.conversation_id]);
            IF TG_OP = 'UPDATE' AND NEW.conversation_id <> OLD.conversation_id THEN
                PERFORM crm_search_refresh_conversations(ARRAY[NEW.conversation_id]);
            END IF;
            RETURN NULL;
        END $fn$
        """
    )
    _execute(
        "CREATE TRIGGER search_insert AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_search_message_inserted()"
    )
    _execute(
        "CREATE TRIGGER search_update AFTER UPDATE OF body, conversation_id ON messages "
        "FOR EACH ROW WHEN (OLD.body IS DISTINCT FROM NEW.body "
        "OR OLD.conversation_id IS DISTINCT FROM NEW.conversation_id) "
        "EXECUTE FUNCTION crm_search_message_changed()"
    )
    _execute(
        "CREATE TRIGGER search_delete AFTER DELETE ON messages "
        "FOR EACH ROW EXECUTE FUNCTION crm_search_message_changed()"
    )
    # Index what exists.
    for table in TABLES:
        _execute(f"SELECT crm_search_refresh_{table}(ARRAY(SELECT id FROM {table}))")


def downgrade() -> None:
    for table in (*TABLES, "messages"):
        for trigger in ("search_insert", "search_update", "search_delete"):
            _execute(f"DROP TRIGGER {trigger} ON {table}")
    _execute("DROP FUNCTION crm_search_message_inserted()")
    _execute("DROP FUNCTION crm_search_message_changed()")
    for table in TABLES:
        _execute(f"DROP FUNCTION crm_search_{table}_changed()")
        _execute(f"DROP FUNCTION crm_search_{table}_inserted()")
    _execute("DROP FUNCTION crm_search_row_deleted()")
    for table in TABLES:
        _execute(f"DROP FUNCTION crm_search_refresh_{table}(uuid[])")
    for signature in (
        "crm_search_digit_suffixes(text)",
        "crm_search_digits(text)",
        "crm_search_key(text)",
        'crm_search_vector(text, "char")',
        'crm_search_lexemes(text[], "char")',
        "crm_search_tokens(text)",
        "crm_search_fold(text)",
    ):
        _execute(f"DROP FUNCTION {signature}")
    op.drop_index("ix_search_documents_document", table_name="search_documents")
    op.drop_index("ix_search_documents_names", table_name="search_documents")
    op.drop_index("ix_search_documents_workspace_type", table_name="search_documents")
    op.drop_table("search_documents")
