"""``search``: arguments to the search service, hits to connection values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crm_graphql.resolvers.arguments import page_request
from crm_graphql.resolvers.lists import PageInfoValue
from crm_graphql.services import search as search_service
from crm_graphql.services.search import Highlight, SearchEntity, SearchHit


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
    info: Any, query: str, types: Sequence[Any] | None, first: int | None, after: str | None
) -> SearchConnectionValue:
    context = info.context
    actor = context.require_actor()
    entities = [SearchEntity(t.value) for t in types] if types else None
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
