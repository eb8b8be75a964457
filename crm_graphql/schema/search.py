"""Search in GraphQL: one ranked list of customers, companies, deals, conversations and
activities, with a score and highlighted snippets per hit."""

from __future__ import annotations

import enum
from typing import Annotated

import strawberry

from crm_graphql.resolvers import search as resolve
from crm_graphql.schema.activities import Activity
from crm_graphql.schema.companies import Company
from crm_graphql.schema.conversations import Conversation
from crm_graphql.schema.customers import Customer
from crm_graphql.schema.deals import Deal
from crm_graphql.schema.relay import PageInfo


@strawberry.enum(description="Kinds of objects search returns.")
class SearchType(enum.Enum):
    CUSTOMER = strawberry.enum_value("customer", description="Customers.")
    COMPANY = strawberry.enum_value("company", description="Companies.")
    DEAL = strawberry.enum_value("deal", description="Deals.")
    CONVERSATION = strawberry.enum_value(
        "conversation", description="Conversations the caller may see."
    )
    ACTIVITY = strawberry.enum_value("activity", description="Timeline activities.")


SearchResult = Annotated[
    Customer | Company | Deal | Conversation | Activity,
    strawberry.union("SearchResult", description="An object search found."),
]


@strawberry.type(description="A field of the hit that matched the search.")
class SearchHighlight:
    field: str = strawberry.field(
        description="Which field: name, email, phone, company, tags, domain, title, subject, "
        "message, body, or `customFields.<key>` for a custom field marked searchable."
    )
    snippet: str = strawberry.field(
        description="The field's text around the match, HTML-escaped, each matched part "
        "wrapped in <mark>...</mark> (an ellipsis where the text was cut): safe to insert "
        "as HTML."
    )


@strawberry.type(description="One search result with the cursor that points at it.")
class SearchHit:
    cursor: str = strawberry.field(description="Pass as `after` for the hits after this one.")
    node: SearchResult = strawberry.field(description="The object found.")
    score: float = strawberry.field(
        description="Relevance, higher first: 3.5 to 4 for an exact match of a whole name, "
        "email, phone or title, 2.5 to 3 when every word is a whole word outside bodies, "
        "1.5 to 2 for prefixes outside bodies, 1 to 1.5 for hits that need activity or "
        "message bodies; within a band, names before emails and subjects before company "
        "names and tags before bodies."
    )
    highlights: list[SearchHighlight] = strawberry.field(
        description="The fields that matched, in the object's field order."
    )


@strawberry.type(
    description="A page of search results, best first (a forward-only connection: `edges` and "
    "`pageInfo`)."
)
class SearchResults:
    edges: list[SearchHit] = strawberry.field(description="The page's hits with their cursors.")
    page_info: PageInfo = strawberry.field(description="Cursors and whether more hits exist.")


@strawberry.type
class SearchQuery:
    search = strawberry.field(
        resolver=resolve.search,
        graphql_type=SearchResults,
        description="Find customers (name, email, phone, company, tags), companies (name, "
        "domain), deals (title), conversations (subject, messages) and activities (subject, "
        "body), and customers, companies and deals by their custom fields marked "
        "`searchable`, as you type: every word must start a word of the object, case and accents "
        "ignored (`ais wil` finds Aisha Williams, `5550199` a phone number, `example.com` "
        "an email). Only what the caller may read in its lists; `types` narrows the kinds "
        "(a kind the caller may not read is FORBIDDEN). Pages forward with `first`/`after`.",
    )
