"""The ``info`` every resolver takes: Strawberry's, typed with this project's context (so
``info.context.loaders``, ``info.context.require_actor()`` ... are checked by mypy)."""

from __future__ import annotations

from strawberry.types import Info as StrawberryInfo

from crm_graphql.resolvers.context import Context

Info = StrawberryInfo[Context, None]
