"""Per-request DataLoaders: each relation of a page loads in one statement, whatever the
page size. Keys are scoped by the request's actor, hence by workspace."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from strawberry.dataloader import DataLoader

from crm_graphql import models
from crm_graphql.services import conversations, customers, orders
from crm_graphql.services import recommendations as recommendation_service
from crm_graphql.storage import querying, records

if TYPE_CHECKING:
    from crm_graphql.resolvers.context import Context

T = TypeVar("T")
Batch = Callable[[Any, Any, Sequence[uuid.UUID]], Awaitable[dict[uuid.UUID, Any]]]


@dataclass(frozen=True)
class ListArgs:
    """The arguments of a nested list, hashable so equal requests share one batch."""

    filter_key: str
    order: tuple[tuple[str, bool], ...]
    page: querying.PageRequest

    @staticmethod
    def of(
        filter: dict[str, Any] | None,
        order: Sequence[tuple[str, bool]] | None,
        page: querying.PageRequest,
    ) -> ListArgs:
        key = orjson.dumps(filter, default=str, option=orjson.OPT_SORT_KEYS).decode()
        return ListArgs(key, tuple(order or ()), page)


class Loaders:
    def __init__(self, context: Context) -> None:
        self.context = context
        self._loaders: dict[Any, DataLoader[Any, Any]] = {}
        self._filters: dict[str, dict[str, Any] | None] = {}
        self._shared: dict[Any, Any] = {}

    def clear(self) -> None:
        """Forget every loader: each holds this object through its batch function (a
        reference cycle), so a request's or a live event's loaded rows would otherwise
        wait for the garbage collector (issue 12: its pauses)."""
        self._loaders.clear()
        self._shared.clear()

    def shared(self, key: Any, make: Callable[[], T]) -> T:
        """A per-request batching object owned by a resolver module (the customers of
        many segments), made on first use and forgotten with the loaders."""
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = make()
        return found

    def _get(self, key: Any, load_fn: Any) -> DataLoader[Any, Any]:
        loader = self._loaders.get(key)
        if loader is None:
            loader = self._loaders[key] = DataLoader(load_fn=load_fn)
        return loader

    def by_id(self, model: type[Any]) -> DataLoader[uuid.UUID, Any]:
        """``CompanyByIdLoader`` and friends: rows by primary key, None when absent."""

        # Conversations and their messages have a visibility rule beyond the workspace.
        # Renderings of live events load on plain connections (the hot path).
        visible = model in (models.Conversation, models.Message)
        fetch = conversations.get_many_visible if visible else records.get_many
        fetch_plain = conversations.fetch_many_visible if visible else records.fetch_many

        async def load(ids: list[uuid.UUID]) -> list[Any]:
            actor = self.context.require_actor()
            async with self.context.plain_read() as conn:
                if conn is not None:
                    found = await fetch_plain(actor, conn, model, ids)
                    return [found.get(i) for i in ids]
            async with self.context.read() as session:
                found = await fetch(actor, session, model, ids)
            return [found.get(i) for i in ids]

        return self._get(("by_id", model), load)

    def per_key(self, name: str, batch: Batch) -> DataLoader[uuid.UUID, Any]:
        """A loader of one value per id computed by a service batch function
        (``UnreadCountByConversationIdLoader`` ...): one call for a whole page."""

        async def load(ids: list[uuid.UUID]) -> list[Any]:
            actor = self.context.require_actor()
            async with self.context.read() as session:
                found = await batch(actor, session, ids)
            return [found.get(i) for i in ids]

        return self._get(("per_key", name), load)

    def remember_filter(self, args: ListArgs, filter: dict[str, Any] | None) -> ListArgs:
        self._filters[args.filter_key] = filter
        return args

    def pages(self, spec: querying.ListSpec[Any], parent: str) -> DataLoader[Any, Any]:
        """``DealsByCustomerIdLoader`` and friends: keyed by (parent id, ListArgs)."""

        async def load(keys: list[tuple[uuid.UUID, ListArgs]]) -> list[Any]:
            actor = self.context.require_actor()
            groups: dict[ListArgs, list[uuid.UUID]] = defaultdict(list)
            for parent_id, args in keys:
                groups[args].append(parent_id)
            results: dict[tuple[uuid.UUID, ListArgs], Any] = {}
            async with self.context.read() as session:
                for args, ids in groups.items():
                    pages = await querying.pages_by_parent(
                        actor,
                        session,
                        spec,
                        parent,
                        ids,
                        filter=self._filters.get(args.filter_key),
                        order=list(args.order) or None,
                        page=args.page,
                    )
                    for pid in ids:
                        results[(pid, args)] = pages[pid]
            return [results[k] for k in keys]

        return self._get(("pages", spec.model, parent), load)

    def counts(self, spec: querying.ListSpec[Any], parent: str) -> DataLoader[Any, int]:
        async def load(keys: list[tuple[uuid.UUID, str]]) -> list[int]:
            actor = self.context.require_actor()
            groups: dict[str, list[uuid.UUID]] = defaultdict(list)
            for parent_id, filter_key in keys:
                groups[filter_key].append(parent_id)
            results: dict[tuple[uuid.UUID, str], int] = {}
            async with self.context.read() as session:
                for filter_key, ids in groups.items():
                    counted = await querying.counts_by_parent(
                        actor, session, spec, parent, ids, filter=self._filters.get(filter_key)
                    )
                    results.update({(pid, filter_key): counted[pid] for pid in ids})
            return [results[k] for k in keys]

        return self._get(("counts", spec.model, parent), load)

    @property
    def purchase_summary(self) -> DataLoader[uuid.UUID, customers.PurchaseSummary]:
        return self.per_key("purchase_summary", customers.purchase_summaries)

    @property
    def order_lines(self) -> DataLoader[uuid.UUID, list[models.OrderLine]]:
        return self.per_key("order_lines", orders.lines_by_order)

    def recommendations(
        self, first: int
    ) -> DataLoader[uuid.UUID, list[recommendation_service.Recommendation] | None]:
        """``RecommendationsByCustomerIdLoader``, one per ``first`` asked for."""

        async def batch(actor: Any, session: Any, ids: Sequence[uuid.UUID]) -> dict[Any, Any]:
            return await recommendation_service.recommendations_for(actor, session, ids, first)

        return self.per_key(f"recommendations:{first}", batch)

    @property
    def churn_risk(self) -> DataLoader[uuid.UUID, recommendation_service.ChurnRisk | None]:
        return self.per_key("churn_risk", recommendation_service.churn_risks)
