"""Root and nested lists as Relay connections."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crm_graphql.resolvers.arguments import filter_spec, order_spec, page_request
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.loaders import ListArgs
from crm_graphql.storage import querying


@dataclass
class EdgeValue:
    cursor: str
    node: Any


@dataclass
class PageInfoValue:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @staticmethod
    def of(cursors: Sequence[str], *, has_next: bool, has_previous: bool) -> PageInfoValue:
        """The page info of a page whose items have these cursors."""
        return PageInfoValue(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )


class ConnectionValue:
    """What a ``Connection`` type reads. ``total_count`` is an awaitable made on access,
    so the count query runs only for clients that select ``totalCount``."""

    def __init__(self, page: querying.Page[Any], counter: Callable[[], Awaitable[int]]) -> None:
        self.page = page
        self._counter = counter

    @property
    def edges(self) -> list[EdgeValue]:
        return [EdgeValue(c, n) for c, n in zip(self.page.cursors, self.page.items, strict=True)]

    @property
    def nodes(self) -> list[Any]:
        return self.page.items

    @property
    def page_info(self) -> PageInfoValue:
        return PageInfoValue.of(
            self.page.cursors,
            has_next=self.page.has_next_page,
            has_previous=self.page.has_previous_page,
        )

    @property
    def total_count(self) -> Awaitable[int]:
        return self._counter()


async def root_list(
    info: Info,
    spec: querying.ListSpec[Any],
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Any = None,
    order_by: Sequence[Any] | None = None,
    include_archived: bool = False,
    *,
    within: querying.FilterSpec | None = None,
) -> ConnectionValue:
    """A root list (``customers``, ``deals`` ...) page by keyset. The arguments come in
    the order every root list field declares them; ``within`` (a segment's filter)
    is ANDed with the client's filter."""
    context = info.context
    actor = context.require_actor()
    request = page_request(info, first=first, after=after, last=last, before=before)
    spec_filter = filter_spec(filter)
    if within is not None:
        spec_filter = {"and": [within, spec_filter]} if spec_filter else dict(within)
    async with context.read() as session:
        page = await querying.list_page(
            actor,
            session,
            spec,
            filter=spec_filter,
            order=order_spec(order_by),
            page=request,
            include_archived=include_archived,
        )

    async def counter() -> int:
        assert page.count_statement is not None
        async with context.read() as session:
            return await querying.count(session, page.count_statement)

    return ConnectionValue(page, counter)


async def child_list(
    info: Info,
    spec: querying.ListSpec[Any],
    parent: str,
    parent_id: uuid.UUID,
    first: int | None = None,
    after: str | None = None,
    filter: Any = None,
    order_by: Sequence[Any] | None = None,
) -> ConnectionValue:
    """A nested list (a customer's deals ...): batched over all parents of the page. The
    arguments come in the order every nested list field declares them."""
    loaders = info.context.loaders
    spec_filter = filter_spec(filter)
    args = loaders.remember_filter(
        ListArgs.of(
            spec_filter, order_spec(order_by), page_request(info, first=first, after=after)
        ),
        spec_filter,
    )
    page = await loaders.pages(spec, parent).load((parent_id, args))

    async def counter() -> int:
        return int(await loaders.counts(spec, parent).load((parent_id, args.filter_key)))

    return ConnectionValue(page, counter)


async def by_id(info: Info, model: type[Any], id: uuid.UUID | None) -> Any:
    """A related row through the per-request loader (None when unset or invisible)."""
    if id is None:
        return None
    return await info.context.loaders.by_id(model).load(id)
