"""Search through GraphQL: prefixes as the user types, folding, email and phone fragments,
ranking, highlights, freshness at commit, scoping (workspace, role, private
conversations, API-key scopes, archived and merged rows), paging and hostile text."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Channel, Role, User, Workspace
from crm_graphql.services import (
    activities,
    api_keys,
    auth,
    companies,
    conversations,
    customers,
    deals,
    fields,
)
from crm_graphql.services.actor import Actor
from crm_graphql.services.search import tokens
from tests import support
from tests.api.conftest import StatementCounter
from tests.documents import CREATE_CUSTOMER, START_CONVERSATION, UPDATE_CUSTOMER

Sessions = async_sessionmaker[AsyncSession]
Clients = dict[Role, support.GraphQLClient]

SEARCH = """query($q: String!, $types: [SearchType!], $first: Int, $after: String) {
  search(query: $q, types: $types, first: $first, after: $after) {
    edges {
      cursor score
      highlights { field snippet }
      node {
        __typename
        ... on Node { id }
        ... on Customer { name email }
        ... on Company { name }
        ... on Deal { title }
        ... on Conversation { subject }
        ... on Activity { activitySubject: subject }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def search(client: support.GraphQLClient, q: str, **variables: Any) -> list[dict[str, Any]]:
    result = (await client(SEARCH, {"q": q, **variables})).ok()
    return result["search"]["edges"]  # type: ignore[no-any-return]


def names(edges: list[dict[str, Any]]) -> list[str]:
    return [
        next(n[k] for k in ("name", "title", "subject", "activitySubject") if k in n)
        for n in (e["node"] for e in edges)
    ]


def admin_of(users: dict[Role, User]) -> Actor:
    user = users[Role.ADMIN]
    return Actor(workspace_id=user.workspace_id, role=Role.ADMIN, user_id=user.id)


async def make_customers(sessionmaker: Sessions, actor: Actor, *rows: dict[str, Any]) -> list[Any]:
    async with sessionmaker() as session, session.begin():
        return [await customers.create_customer(actor, session, row) for row in rows]


async def test_every_term_prefixes_a_word(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    await make_customers(
        sessionmaker,
        admin_of(users),
        {"name": "Aisha Williams"},
        {"name": "Aisha Brown"},
        {"name": "Wilma Stone"},
    )
    agent = as_role[Role.AGENT]
    assert names(await search(agent, "ais wil")) == ["Aisha Williams"]
    assert sorted(names(await search(agent, "ais"))) == ["Aisha Brown", "Aisha Williams"]
    assert sorted(names(await search(agent, "wil"))) == ["Aisha Williams", "Wilma Stone"]
    assert await search(agent, "ais zz") == []
    assert await search(agent, "isha") == []  # prefixes, not infixes


async def test_case_and_accents_fold_both_ways(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    await make_customers(
        sessionmaker,
        admin_of(users),
        {"name": "José Núñez"},
        {"name": "zoe quinn"},
        {"name": "Jürgen Groß"},
        {"name": "Ǆemal Łukasz Ørsted"},
    )
    agent = as_role[Role.AGENT]
    assert names(await search(agent, "Jose")) == ["José Núñez"]
    assert names(await search(agent, "NUNEZ")) == ["José Núñez"]
    assert names(await search(agent, "ZOË")) == ["zoe quinn"]
    assert names(await search(agent, "jurgen gross")) == ["Jürgen Groß"]
    assert names(await search(agent, "dzemal lukasz orsted")) == ["Ǆemal Łukasz Ørsted"]
    # A decomposed accent (e + combining acute) is the same letter.
    assert names(await search(agent, "Jose\u0301")) == ["José Núñez"]


async def test_email_and_phone_fragments(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    await make_customers(
        sessionmaker,
        admin_of(users),
        {"name": "Aisha W", "email": "aisha.williams@example.com", "phone": "+1 (415) 555-0199"},
        {"name": "Other Person", "email": "other@elsewhere.org", "phone": "+44 20 7946 0000"},
    )
    agent = as_role[Role.AGENT]
    for query in (
        "wil",
        "example.com",
        "aisha.williams@example.com",
        "5550199",
        "555",
        "415 555",
        "+1 (415) 555-0199",
        "4155550199",
        "0199",
    ):
        assert names(await search(agent, query)) == ["Aisha W"], query
    hit = (await search(agent, "5550199"))[0]
    # stored in E.164 (+14155550199): the digits after the country code matched
    assert {"field": "phone", "snippet": "+1415<mark>5550199</mark>"} in hit["highlights"]
    hit = (await search(agent, "example.com"))[0]
    assert {
        "field": "email",
        "snippet": "aisha.williams@<mark>example</mark>.<mark>com</mark>",
    } in hit["highlights"]


async def test_exact_then_words_then_prefixes(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    await make_customers(
        sessionmaker,
        admin_of(users),
        {"name": "Annabel Lee"},
        {"name": "Ann"},
        {"name": "Ann Marie Smith"},
        {"name": "Someone", "email": "ann@mail.example"},
    )
    edges = await search(as_role[Role.VIEWER], "ann")
    assert names(edges) == ["Ann", "Ann Marie Smith", "Someone", "Annabel Lee"]
    tiers = [int(e["score"]) for e in edges]
    assert tiers == [3, 2, 2, 1]
    # The email is an exact value too.
    edges = await search(as_role[Role.VIEWER], "ann@mail.example")
    assert names(edges) == ["Someone"] and edges[0]["score"] >= 3
    # Within a tier, a name match outranks an email match.
    assert edges_scores_descending(await search(as_role[Role.VIEWER], "ann"))


def edges_scores_descending(edges: list[dict[str, Any]]) -> bool:
    scores = [e["score"] for e in edges]
    return scores == sorted(scores, reverse=True)


async def _pipeline(session: AsyncSession, actor: Actor) -> Any:
    return await deals.create_pipeline(
        actor, session, {"name": "Sales", "stages": [{"name": "New", "probability": 10}]}
    )


async def test_every_kind_is_found_with_highlights(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    admin = admin_of(users)
    async with sessionmaker() as session, session.begin():
        company = await companies.create_company(
            admin, session, {"name": "Quokka Labs", "domain": "quokka.example"}
        )
        customer = await customers.create_customer(
            admin, session, {"name": "Pat Kowalski", "company_id": company.id, "tags": ["platinum"]}
        )
        pipeline = await _pipeline(session, admin)
        await deals.create_deal(
            admin,
            session,
            {
                "title": "Quokka renewal",
                "pipeline_id": pipeline.id,
                "customer_id": customer.id,
                "currency": "EUR",
                "amount": Decimal("100"),
            },
        )
        await activities.create_activity(
            admin,
            session,
            {
                "type": "note",
                "subject": "Called Pat",
                "body": "Talked about the quokka migration & <script>",
                "customer_id": customer.id,
            },
        )
        conversation = await conversations.start_conversation(
            admin,
            session,
            {
                "customer_id": customer.id,
                "channel": Channel.CHAT,
                "subject": "Login trouble",
                "body": "I cannot find the zebrafish button",
            },
        )
    async with sessionmaker() as session, session.begin():
        await conversations.send_message(
            admin, session, conversation.id, body="Try the quokka menu"
        )
    agent = as_role[Role.AGENT]
    found = {e["node"]["__typename"]: e for e in await search(agent, "quokka")}
    assert set(found) == {"Company", "Customer", "Deal", "Conversation", "Activity"}
    assert found["Company"]["highlights"] == [
        {"field": "name", "snippet": "<mark>Quokka</mark> Labs"},
        {"field": "domain", "snippet": "<mark>quokka</mark>.example"},
    ]
    assert found["Customer"]["highlights"] == [
        {"field": "company", "snippet": "<mark>Quokka</mark> Labs"}
    ]
    assert found["Deal"]["highlights"] == [
        {"field": "title", "snippet": "<mark>Quokka</mark> renewal"}
    ]
    assert found["Activity"]["highlights"] == [
        {
            "field": "body",
            "snippet": "Talked about the <mark>quokka</mark> migration &amp; &lt;script&gt;",
        }
    ]
    assert found["Conversation"]["highlights"] == [
        {"field": "message", "snippet": "Try the <mark>quokka</mark> menu"}
    ]
    assert found["Customer"]["node"]["id"] == to_global_id("Customer", customer.id)
    # Earlier messages count too, and tags.
    assert names(await search(agent, "zebraf")) == ["Login trouble"]
    assert names(await search(agent, "platin")) == ["Pat Kowalski"]
    assert {
        e["node"]["__typename"] for e in await search(agent, "quokka", types=["DEAL", "ACTIVITY"])
    } == {"Deal", "Activity"}


async def test_highlights_are_html_safe(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    await make_customers(sessionmaker, admin_of(users), {"name": '<b>Bobby</b> & "Co"'})
    hit = (await search(as_role[Role.AGENT], "bob"))[0]
    assert hit["highlights"] == [
        {"field": "name", "snippet": "&lt;b&gt;<mark>Bob</mark>by&lt;/b&gt; &amp; &quot;Co&quot;"}
    ]
    long_body = "lorem ipsum " * 40 + "the hidden narwhal appears " + "dolor sit " * 40
    admin = admin_of(users)
    (bobby,) = await make_customers(sessionmaker, admin, {"name": "Long Text"})
    async with sessionmaker() as session, session.begin():
        await activities.create_activity(
            admin,
            session,
            {"type": "note", "subject": "Long", "body": long_body, "customer_id": bobby.id},
        )
    hit = (await search(as_role[Role.AGENT], "narwhal"))[0]
    snippet = hit["highlights"][0]["snippet"]
    assert snippet.startswith("…") and snippet.endswith("…") and "<mark>narwhal</mark>" in snippet
    assert len(snippet) < 200


UPDATE_COMPANY = """mutation($i: UpdateCompanyInput!) {
  updateCompany(input: $i) { company { id } errors { code } } }"""
CREATE_COMPANY = """mutation($i: CreateCompanyInput!) {
  createCompany(input: $i) { company { id } errors { code } } }"""
SEND = """mutation($i: SendMessageInput!) {
  sendMessage(input: $i) { message { id } errors { code } } }"""


async def test_writes_are_found_by_the_next_request(as_role: Clients) -> None:
    agent = as_role[Role.AGENT]
    company = (await agent(CREATE_COMPANY, {"i": {"name": "Wombat Works"}})).ok()["createCompany"][
        "company"
    ]["id"]
    customer = (
        await agent(CREATE_CUSTOMER, {"i": {"name": "Kim Fresh", "companyId": company}})
    ).ok()["createCustomer"]["customer"]["id"]
    assert names(await search(agent, "kim fre")) == ["Kim Fresh"]
    assert sorted(names(await search(agent, "wombat"))) == ["Kim Fresh", "Wombat Works"]
    # A company rename refreshes its customers' documents in the same transaction.
    (await agent(UPDATE_COMPANY, {"i": {"id": company, "name": "Platypus Partners"}})).ok()
    assert await search(agent, "wombat") == []
    assert sorted(names(await search(agent, "platypus"))) == ["Kim Fresh", "Platypus Partners"]
    (await agent(UPDATE_CUSTOMER, {"i": {"id": customer, "name": "Kim Renamed"}})).ok()
    assert await search(agent, "fresh") == []
    assert names(await search(agent, "renamed")) == ["Kim Renamed"]
    conversation = (
        await agent(
            START_CONVERSATION,
            {"i": {"customerId": customer, "channel": "CHAT", "subject": "Hello"}},
        )
    ).ok()["startConversation"]["conversation"]["id"]
    (
        await agent(SEND, {"i": {"conversationId": conversation, "body": "Your capybara shipped"}})
    ).ok()
    assert names(await search(agent, "capyb")) == ["Hello"]


async def test_other_workspaces_are_invisible(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    async with sessionmaker() as session, session.begin():
        other = await auth.create_workspace(session, name=f"Other {uuid.uuid4().hex[:8]}")
        stranger = await auth.create_user(
            session,
            workspace=other,
            email=f"o-{uuid.uuid4().hex[:8]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
    outsider = Actor(workspace_id=other.id, role=Role.ADMIN, user_id=stranger.id)
    await make_customers(
        sessionmaker, outsider, {"name": "Xenia Secret", "email": "xenia@secret.example"}
    )
    await make_customers(sessionmaker, admin_of(users), {"name": "Xenia Visible"})
    for role in Role:
        assert names(await search(as_role[role], "xenia")) == ["Xenia Visible"], role
        assert await search(as_role[role], "secret") == []


async def test_archived_merged_and_erased_customers_are_not_found(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    admin = admin_of(users)
    kept, archived, merged, erased = await make_customers(
        sessionmaker,
        admin,
        {"name": "Yolanda Kept"},
        {"name": "Yolanda Archived"},
        {"name": "Yolanda Merged"},
        {"name": "Yolanda Erased", "email": "yolanda.erased@example.com"},
    )
    from crm_graphql.services import privacy

    async with sessionmaker() as session, session.begin():
        await customers.archive_customer(admin, session, archived.id)
        await customers.merge_customers(admin, session, kept.id, [merged.id])
        await privacy.erase_customer(admin, session, erased.id)
    agent = as_role[Role.AGENT]
    assert names(await search(agent, "yolanda")) == ["Yolanda Kept"]
    assert await search(agent, "yolanda.erased") == []


async def test_private_conversations_follow_the_inbox_rules(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients, env: Any
) -> None:
    admin = admin_of(users)
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(admin, session, {"name": "Quinn"})
        await conversations.start_conversation(
            admin,
            session,
            {
                "customer_id": customer.id,
                "channel": Channel.EMAIL,
                "subject": "Private ocelot",
                "is_private": True,
                "assignee_id": users[Role.AGENT].id,
            },
        )
        await conversations.start_conversation(
            admin,
            session,
            {"customer_id": customer.id, "channel": Channel.EMAIL, "subject": "Public ocelot"},
        )
    seen = {role: sorted(names(await search(as_role[role], "ocelot"))) for role in Role}
    both = ["Private ocelot", "Public ocelot"]
    assert seen == {
        Role.ADMIN: both,
        Role.MANAGER: both,
        Role.AGENT: both,
        Role.VIEWER: ["Public ocelot"],
    }
    key, _ = await env.api_key(api_keys.CONVERSATIONS_READ)
    assert names(await search(key, "ocelot")) == ["Public ocelot"]
    # Another agent, not assigned, sees only the public one.
    async with sessionmaker() as session, session.begin():
        workspace = await session.get(Workspace, users[Role.ADMIN].workspace_id)
        other = await auth.create_user(
            session,
            workspace=workspace,
            email=f"a2-{uuid.uuid4().hex[:8]}@example.com",
            password=support.PASSWORD,
            role=Role.AGENT,
        )
    other_agent = await as_role[Role.ADMIN].logged_in(other.email, support.PASSWORD)
    assert names(await search(other_agent, "ocelot")) == ["Public ocelot"]


async def test_api_keys_find_only_the_kinds_their_scopes_read(
    sessionmaker: Sessions, users: dict[Role, User], env: Any
) -> None:
    admin = admin_of(users)
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(admin, session, {"name": "Ibis Customer"})
        pipeline = await _pipeline(session, admin)
        await deals.create_deal(
            admin,
            session,
            {
                "title": "Ibis deal",
                "pipeline_id": pipeline.id,
                "customer_id": customer.id,
                "currency": "EUR",
                "amount": Decimal("1"),
            },
        )
        await conversations.start_conversation(
            admin,
            session,
            {"customer_id": customer.id, "channel": Channel.CHAT, "subject": "Ibis chat"},
        )
    customers_key, _ = await env.api_key(api_keys.CUSTOMERS_READ)
    assert names(await search(customers_key, "ibis")) == ["Ibis Customer"]
    deals_key, _ = await env.api_key(api_keys.DEALS_READ)
    assert names(await search(deals_key, "ibis")) == ["Ibis deal"]
    refused = await deals_key(SEARCH, {"q": "ibis", "types": ["CUSTOMER"]})
    assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]
    webhooks_key, _ = await env.api_key(api_keys.WEBHOOKS_MANAGE)
    refused = await webhooks_key(SEARCH, {"q": "ibis"})
    assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]


async def test_pages_are_complete_stable_and_cost_one_statement(
    app: Any, sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    async with sessionmaker() as session, session.begin():
        zoo = await companies.create_company(admin_of(users), session, {"name": "Zoo Inc"})
    rows: list[dict[str, Any]] = [
        {"name": f"Pangolin {i:02d}", "email": f"p{i}@pangolin.example", "company_id": zoo.id}
        for i in range(23)
    ]
    rows += [{"name": "Pangolin"}, {"name": "Pangolins Club"}]
    await make_customers(sessionmaker, admin_of(users), *rows)
    agent = as_role[Role.AGENT]
    everything = await search(agent, "pangolin", first=100)
    assert len(everything) == 25
    assert names(everything)[0] == "Pangolin"
    assert edges_scores_descending(everything)
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        result = (await agent(SEARCH, {"q": "pangolin", "first": 7, "after": after})).ok()["search"]
        seen.extend(result["edges"])
        if not result["pageInfo"]["hasNextPage"]:
            break
        after = result["pageInfo"]["endCursor"]
    assert [e["node"]["id"] for e in seen] == [e["node"]["id"] for e in everything]

    # Hits and their rows in one statement; relations of the nodes through the loaders.
    with_relations = """query($q: String!, $first: Int) { search(query: $q, first: $first) {
      edges { score highlights { snippet } node { ... on Customer { name company { name }
        owner { name } deals(first: 3) { totalCount } } } } } }"""
    engine = app.state.crm.sessionmaker.kw["bind"].sync_engine
    counter = StatementCounter()
    event.listen(engine, "before_cursor_execute", counter)
    try:
        counts = {}
        for first in (2, 25):
            counter.statements.clear()
            result = await agent(with_relations, {"q": "pangolin", "first": first})
            assert len(result.ok()["search"]["edges"]) == first
            counts[first] = list(counter.statements)
    finally:
        event.remove(engine, "before_cursor_execute", counter)
    assert len(counts[2]) == len(counts[25]), counts
    assert any("companies" in s and "search_documents" not in s for s in counts[25])
    assert len([s for s in counts[25] if "search_documents" in s]) == 1, counts[25]


async def test_bad_paging_arguments_are_validation_errors(as_role: Clients) -> None:
    agent = as_role[Role.AGENT]
    for variables in ({"first": 1000}, {"first": -1}, {"after": "not-a-cursor"}, {"after": "e30"}):
        result = await agent(SEARCH, {"q": "x", **variables})
        assert [e["extensions"]["code"] for e in result.errors] == ["VALIDATION"], variables
    # A cursor of another search is refused rather than misread.
    await agent(CREATE_CUSTOMER, {"i": {"name": "Cursor One"}})
    await agent(CREATE_CUSTOMER, {"i": {"name": "Cursor Two"}})
    result = (await agent(SEARCH, {"q": "cursor", "first": 1})).ok()
    cursor = result["search"]["pageInfo"]["endCursor"]
    other = await agent(SEARCH, {"q": "curs", "first": 1, "after": cursor})
    assert [e["extensions"]["code"] for e in other.errors] == ["VALIDATION"]


async def test_results_match_an_independent_computation(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    """Hit sets and tiers against a plain Python reading of the rules, over generated
    customers: every term starts a word of name, email, phone, company or tags; exact
    when the query is a whole value, words when every term is a whole word."""
    rng = random.Random(1313)
    first_names = ["Ana", "Anaïs", "Bea", "Béatrice", "Carl", "Carla", "Dora", "Dorian"]
    last_names = ["Moreau", "Moreno", "Smith", "Smithson", "Öztürk", "Oz"]
    marker = uuid.uuid4().hex[:6]
    rows = []
    for i in range(40):
        name = f"{rng.choice(first_names)} {rng.choice(last_names)}"
        rows.append(
            {
                "name": name,
                "email": f"{name.split()[0].lower()}.{i}@{marker}.example",
                "phone": f"+33 6 {rng.randrange(10**7, 10**8)}",
                "tags": [rng.choice(["gold", "golden", "silver"])],
            }
        )
    await make_customers(sessionmaker, admin_of(users), *rows)

    def words(row: dict[str, Any]) -> list[str]:
        return (
            tokens(row["name"])
            + tokens(row["email"])
            + tokens(row["phone"])
            + tokens(" ".join(row["tags"]))
        )

    def expected_tier(row: dict[str, Any], query: str) -> int | None:
        terms = tokens(query)
        found = words(row)
        digits = "".join(c for c in row["phone"] if c.isdigit())
        suffixes = [digits[i:] for i in range(len(digits) - 2)]
        if not all(any(w.startswith(t) for w in found + suffixes) for t in terms):
            return None
        whole = " ".join(terms)
        if whole in (
            " ".join(tokens(row["name"])),
            " ".join(tokens(row["email"])),
            " ".join(tokens(row["phone"])),
            digits,
        ):
            return 3
        if all(t in found + suffixes for t in terms):
            return 2
        return 1

    agent = as_role[Role.AGENT]
    queries = [
        "ana",
        "ANAIS",
        "smith",
        "smi mor",
        "bea sm",
        "dor oz",
        "gold",
        "golden carl",
        f"{marker}",
        "carla moreno",
        "öz",
        rows[0]["name"],
        rows[1]["email"],
    ]
    for query in queries:
        edges = await search(
            agent, f"{query} {marker}" if marker not in query else query, first=100
        )
        full_query = f"{query} {marker}" if marker not in query else query
        got = {e["node"]["email"]: int(e["score"]) for e in edges}
        want = {
            row["email"]: tier
            for row in rows
            if (tier := expected_tier(row, full_query)) is not None
        }
        assert got == want, query


HOSTILE = [
    "",
    " ",
    "     ",
    "&",
    "|",
    "!",
    ":",
    "*",
    "(",
    ")",
    "& | ! : * ( )",
    "'",
    '"',
    "\\",
    "\\'",
    "a:*",
    "a & b",
    "a | b",
    "!a",
    "(a",
    "a)",
    "'a'",
    "a'b",
    "a\\b",
    "🙂",
    "🙂 ana",
    "\u0000",
    "a\u0000b",
    "x" * 10_000,
    "ana " * 3000,
    "-",
    "<->",
    "a <-> b",
    "a:A",
    "a:*B",
    "%",
    "_",
    "' OR 1=1 --",
    "\u202e",
    "\ud7ff",
    "\U0010ffff",
    "\u0301",
    "ß" * 100,
    "Ǆ" * 100,
    " ".join(str(i) for i in range(40)),
    "$$",
    "$fn$",
    "E'\\x00'",
]


def _generated(rng: random.Random, count: int) -> list[str]:
    alphabet = "&|!:*()'\"\\<->%_ aeéß0123456789🙂\u0000\t\n,.;@+#$"
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(count)
    ]


async def test_hostile_text_gives_results_or_validation_on_the_real_server(
    settings: Any, users: dict[Role, User], sessionmaker: Sessions
) -> None:
    await make_customers(
        sessionmaker, admin_of(users), {"name": "Ana Hostile", "email": "a&b@example.com"}
    )
    rng = random.Random(13)
    with support.run_uvicorn(settings) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            client = await support.GraphQLClient(http).logged_in(
                users[Role.AGENT].email, support.PASSWORD
            )
            for text in HOSTILE + _generated(rng, 150):
                result = await client(SEARCH, {"q": text, "first": 5})
                codes = [e.get("extensions", {}).get("code") for e in result.errors]
                if codes:  # NUL is refused by the HTTP layer already (400)
                    assert codes == ["VALIDATION"], (text, result.body)
                    assert result.status in (200, 400), (text, result.body)
                else:
                    assert result.status == 200, (text, result.body)
                    assert isinstance(result.data["search"]["edges"], list), text
            found = await client(SEARCH, {"q": "a&b@example.com"})
            assert [e["node"]["name"] for e in found.ok()["search"]["edges"]] == ["Ana Hostile"]


async def test_names_rank_above_bodies_and_pages_cross_from_one_to_the_other(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    admin = admin_of(users)
    okapis = await make_customers(
        sessionmaker, admin, {"name": "Okapi One"}, {"name": "Okapi Two"}, {"name": "Okapi Three"}
    )
    async with sessionmaker() as session, session.begin():
        for body in ("We saw an oka today", "The okapi enclosure"):
            await activities.create_activity(
                admin,
                session,
                {"type": "note", "subject": "Zoo", "body": body, "customer_id": okapis[0].id},
            )
    agent = as_role[Role.AGENT]
    everything = await search(agent, "oka", first=10)
    # A whole word in a body ranks below any prefix of a name.
    assert [e["node"]["__typename"] for e in everything] == ["Customer"] * 3 + ["Activity"] * 2
    assert all(e["score"] >= 1.5 for e in everything[:3])
    assert all(1 <= e["score"] < 1.5 for e in everything[3:])
    seen: list[str] = []
    after = None
    for _ in range(5):
        result = (await agent(SEARCH, {"q": "oka", "first": 2, "after": after})).ok()["search"]
        seen.extend(e["node"]["id"] for e in result["edges"])
        if not result["pageInfo"]["hasNextPage"]:
            break
        after = result["pageInfo"]["endCursor"]
    assert seen == [e["node"]["id"] for e in everything]


def _stored_phone(row: dict[str, Any]) -> str:
    """The phone number as writes store it (E.164 when it names its country)."""
    return fields.phone(row.get("phone")) or ""


def _weights_of(row: dict[str, Any]) -> list[tuple[list[str], float]]:
    """The tokens of each field a customer is found by, with the field's weight (name A,
    email and phone B, its digits' suffixes B, tags C)."""
    digits = "".join(c for c in _stored_phone(row) if c.isdigit())
    return [
        (tokens(row["name"]), 1.0),
        (tokens(row.get("email")), 0.5),
        (tokens(_stored_phone(row)), 0.5),
        ([digits[i:] for i in range(len(digits) - 2)], 0.5),
        (tokens(" ".join(row.get("tags", []))), 0.25),
    ]


def expected_score(row: dict[str, Any], query: str) -> float | None:
    """Score of decision 0019, computed in Python: tier + 0.5 (names) + the mean over the
    terms of the best weight of a field the term matches (as a whole word in the exact and
    whole-word tiers, as a prefix otherwise) / 4."""
    terms = list(dict.fromkeys(tokens(query)))
    fields = _weights_of(row)

    def best(term: str, whole: bool) -> float | None:
        found = [
            weight
            for words, weight in fields
            if any(w == term if whole else w.startswith(term) for w in words)
        ]
        return max(found, default=None)

    if any(best(t, whole=False) is None for t in terms):
        return None
    digits = "".join(c for c in _stored_phone(row) if c.isdigit())
    exact_values = {" ".join(tokens(row["name"])), " ".join(tokens(row.get("email"))), digits}
    exact_values.add(" ".join(tokens(_stored_phone(row))))
    whole = all(best(t, whole=True) is not None for t in terms)
    tier = 3 if " ".join(tokens(query)) in exact_values else 2 if whole else 1
    total = 0.0
    for term in terms:
        total += best(term, whole=tier >= 2) or 0.0
    return tier + 0.5 + total / (4 * len(terms))


async def test_scores_match_an_independent_computation(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    """Every score, to the bit, against the rule computed in Python: one-word queries
    (read through the terms table) and several words (through the tsvectors) alike."""
    rng = random.Random(1919)
    marker = "q" + uuid.uuid4().hex[:6]
    firsts = ["Mara", "Marek", "Maren", "Mo", "Tomas", "Tom"]
    lasts = ["Marsh", "Marlow", "Tomlin", "Mo", "Oak"]
    rows: list[dict[str, Any]] = []
    for i in range(36):
        first, last = rng.choice(firsts), rng.choice(lasts)
        rows.append(
            {
                "name": f"{first} {last} {marker}",
                "email": f"{rng.choice(['mar', 'tom', 'mo', 'oak'])}{i}@{marker}.example",
                "phone": f"+44 20 {rng.randrange(10**7, 10**8)}",
                "tags": [rng.choice(["marine", "tomato", "mo", "oak"])],
            }
        )
    rows.append({"name": marker, "tags": ["mar"]})
    await make_customers(sessionmaker, admin_of(users), *rows)
    by_email = {row.get("email"): row for row in rows}
    agent = as_role[Role.AGENT]
    for query in (marker, "mar", "mo", "tom", "oak", "marsh", "ma", "mar mo", "tom oak", "44 20"):
        full = query if marker in query else f"{query} {marker}"
        for text in {full, query} if query != "44 20" else {full}:
            edges = await search(agent, text, first=100)
            got = {e["node"]["email"]: e["score"] for e in edges}
            want = {
                row.get("email"): score
                for row in rows
                if (score := expected_score(row, text)) is not None
            }
            if marker in text:
                assert got == want, text
            else:  # other tests' customers may match the bare word too
                assert {k: v for k, v in got.items() if k in by_email} == want, text


async def test_pages_of_a_prefix_cross_terms_without_loss_or_repeat(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    """A prefix's hits come from several terms (``mar`` from marsh, marlow, marek ...),
    one object from several of them: small pages give the same hits in the same order
    as one big page, every object once, archived ones never."""
    admin = admin_of(users)
    rng = random.Random(7)
    marker = "p" + uuid.uuid4().hex[:6]
    words = ["Marsh", "Marlow", "Marek", "Maren", "Marigold", "Mar", "Martha"]
    rows = [
        {
            "name": f"{rng.choice(words)} {rng.choice(words)}",
            "email": f"{rng.choice(words).lower()}.{i}@{marker}.example",
            "tags": [rng.choice(words)],
        }
        for i in range(40)
    ]
    made = await make_customers(sessionmaker, admin, *rows)
    async with sessionmaker() as session, session.begin():
        for customer in made[::5]:
            await customers.archive_customer(admin, session, customer.id)
    hidden = {to_global_id("Customer", c.id) for c in made[::5]}
    agent = as_role[Role.AGENT]
    for query in (f"mar {marker}", "mar"):
        everything = await search(agent, query, first=100)
        assert edges_scores_descending(everything)
        ids = [e["node"]["id"] for e in everything]
        assert len(ids) == len(set(ids)) and not hidden & set(ids)
        if marker in query:
            assert len(ids) == len(made) - len(hidden)
        for first in (1, 3, 7):
            seen: list[str] = []
            after = None
            while True:
                variables = {"q": query, "first": first, "after": after}
                result = (await agent(SEARCH, variables)).ok()["search"]
                seen.extend(e["node"]["id"] for e in result["edges"])
                if not result["pageInfo"]["hasNextPage"]:
                    break
                after = result["pageInfo"]["endCursor"]
            assert seen == ids, (query, first)


def _lexemes(vector: str) -> dict[str, float]:
    """``'ana':1A 'smith':2A,5B`` -> {lexeme: best weight}, read from the tsvector's text."""
    weights = {"A": 1.0, "B": 0.5, "C": 0.25}
    found: dict[str, float] = {}
    for item in vector.split(" "):
        if not item:
            continue
        lexeme, _, positions = item.rpartition(":")
        marks = [p[-1] if p[-1] in weights else "D" for p in positions.split(",")]
        found[lexeme.strip("'")] = max(weights.get(m, 0.125) for m in marks)
    return found


async def test_the_terms_table_follows_every_write(
    sessionmaker: Sessions, users: dict[Role, User], as_role: Clients
) -> None:
    """``search_terms`` holds, after creates, renames, a company rename, tags, messages,
    merges, erasure and archiving, exactly the lexemes of each document's names with
    their best weight and whether they are a whole value (read here from the documents'
    text, not with the triggers' SQL)."""
    from sqlalchemy import text

    from crm_graphql.services import privacy

    agent = as_role[Role.AGENT]
    admin = admin_of(users)
    company = (await agent(CREATE_COMPANY, {"i": {"name": "Quokka Quarry"}})).ok()["createCompany"][
        "company"
    ]["id"]
    one, two, three = await make_customers(
        sessionmaker,
        admin,
        {"name": "Ada Quokka", "email": "ada@quokka.example", "tags": ["vip", "ada"]},
        {"name": "Bo", "phone": "+1 (415) 555-0199"},
        {"name": "Cy Erased", "email": "cy@erase.example"},
    )
    customer = to_global_id("Customer", one.id)
    (await agent(UPDATE_CUSTOMER, {"i": {"id": customer, "companyId": company}})).ok()
    (await agent(UPDATE_COMPANY, {"i": {"id": company, "name": "Wallaby Works"}})).ok()
    (await agent(UPDATE_CUSTOMER, {"i": {"id": customer, "name": "Ada Renamed"}})).ok()
    conversation = (
        await agent(
            START_CONVERSATION, {"i": {"customerId": customer, "channel": "CHAT", "subject": "Hi"}}
        )
    ).ok()["startConversation"]["conversation"]["id"]
    (await agent(SEND, {"i": {"conversationId": conversation, "body": "quokka body"}})).ok()
    async with sessionmaker() as session, session.begin():
        await customers.merge_customers(admin, session, one.id, [two.id])
        await privacy.erase_customer(admin, session, three.id)
    async with sessionmaker() as session:
        documents = (
            await session.execute(
                text(
                    "SELECT id, workspace_id, entity_type, names::text, exact_keys "
                    "FROM search_documents"
                )
            )
        ).all()
        stored = (
            await session.execute(
                text("SELECT id, term, workspace_id, entity_type, weight, exact FROM search_terms")
            )
        ).all()
    want = {
        (d.id, lexeme, d.workspace_id, d.entity_type, weight, lexeme in d.exact_keys)
        for d in documents
        for lexeme, weight in _lexemes(d.names).items()
    }
    assert {tuple(row) for row in stored} == want
    mine = {row.term for row in stored if row.id == one.id}
    assert {"renamed", "wallaby"} <= mine and not {"quarry", "bo"} & mine
