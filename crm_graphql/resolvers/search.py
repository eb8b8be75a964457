"""``search``: arguments to the search service, hits to connection values."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql.resolvers.arguments import page_request
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import PageInfoValue
from crm_graphql.services import search as search_service
from crm_graphql.services.search import Highlight, SearchEntity, SearchHit

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.search import SearchType

_search = "crm_graphql.schema.search"


@dataclass
class SearchHitValue:
    cursor: str
    hit: SearchHit

    @property
    def node(self) -> Any:
        return self.hit.node

    @property
    def score(self) -> float:
        return self.hit.score

    @property
    def highlights(self) -> list[Highlight]:
        return self.hit.highlights  # computed only when the query selects them


@dataclass
class SearchConnectionValue:
    edges: list[SearchHitValue]
    page_info: PageInfoValue


async def search(
    info: Info,
    query: Annotated[
        str, strawberry.argument(description="The words to find, as the user types them.")
    ],
    types: Annotated[
        list[Annotated["SearchType", strawberry.lazy(_search)]] | None,
        strawberry.argument(description="Only these kinds of objects (all when left out)."),
    ] = None,
    first: Annotated[
        int | None,
        strawberry.argument(
            description="How many results, 0 to the maximum page size (the default page "
            "size when left out)."
        ),
    ] = None,
    after: Annotated[
        str | None,
        strawberry.argument(
            description="`pageInfo.endCursor` of the previous page of results: the page after it."
        ),
    ] = None,
) -> SearchConnectionValue:
    context = info.context
    actor = context.require_actor()
    entities = [SearchEntity[t.name] for t in types] if types else None
    request = page_request(info, first=first, after=after)
    async with context.read() as session:
        page = await search_service.search(actor, session, query, entities=entities, page=request)
    edges = [
        SearchHitValue(cursor, hit) for cursor, hit in zip(page.cursors, page.items, strict=True)
    ]
    return SearchConnectionValue(
        edges=edges,
        page_info=PageInfoValue.of(
            page.cursors, has_next=page.has_next_page, has_previous=page.has_previous_page
        ),
    )
