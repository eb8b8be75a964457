"""The GraphQL schema: declarations per domain (``schema.customers``, ...) assembled in
``schema.root``. ``crm_graphql.schema.schema`` builds it on first use, so importing one
declaration module (a resolver's lazy types, a scalar) does not build the whole schema,
which imports the resolvers back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crm_graphql.schema.root import CrmSchema, Mutation, Query, build_schema, schema

__all__ = ["CrmSchema", "Mutation", "Query", "build_schema", "schema"]
_ROOT = frozenset(__all__)


def __getattr__(name: str) -> Any:
    if name in _ROOT:
        from crm_graphql.schema import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
