"""How operations are executed: the same request gives the same answer, byte for byte.

graphql-core 3.3 awaits the fields of an object (and the items of a list) with
``gather_with_cancel``: when one of them fails with an error that propagates (a non-null
field), the siblings still running are cancelled. Which siblings had finished by then,
and so which errors were recorded, depends on timing; a cancelled sibling could also be
interrupted in the middle of a statement on the request's session. ``gather_settled``
lets every sibling finish (their work is bounded: one page of one request) and then
propagates the first error *in field order*. ``response_order`` lists the errors in the
order of the fields they belong to, whatever order they happened in.

``resolve_lazy_types_once`` keeps what Strawberry's lazy types resolve to (it resolved
them for every argument of every call).

Replacing ``graphql.execution.executor.gather_with_cancel`` reaches into graphql-core:
the version is pinned in ``pyproject.toml`` (``graphql-core>=3.3.2,<3.4``) and
``tests/test_execution.py`` fails when the executor no longer goes through that name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from graphql import GraphQLError
from graphql.execution import executor as graphql_executor
from strawberry.types.lazy_type import LazyType


async def gather_settled(*awaitables: Awaitable[Any]) -> list[Any]:
    """The results of ``awaitables`` once every one has finished; if any failed, the
    exception of the first failed one in their order."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def settle_siblings() -> None:
    """Make graphql-core let sibling fields finish instead of cancelling them."""
    graphql_executor.gather_with_cancel = gather_settled


def resolve_lazy_types_once() -> None:
    """Make Strawberry resolve each ``strawberry.lazy`` type once per process.

    Strawberry converts a field's arguments on every call, and an argument annotated with
    a lazy type (``Annotated["CreateActivityInput", strawberry.lazy(...)]``, as the
    resolvers' inputs are, against circular imports) is resolved each time:
    ``LazyType.resolve_type`` imports the module and compares ``__main__``'s file with
    it by ``Path.samefile`` (two ``stat`` calls). Under the M1 mix that was 5-8 % of a
    mutation's CPU (issue 14, point 4). A type, once found, stays what its module
    defines; a failed lookup (a circular import still running) is not kept.
    ``tests/test_execution.py`` fails when Strawberry stops resolving through it."""
    if LazyType.resolve_type is not _resolve_once:
        LazyType.resolve_type = _resolve_once  # type: ignore[method-assign]


_resolve = LazyType.resolve_type
_resolved: dict[LazyType[Any, Any], type[Any]] = {}


def _resolve_once(self: LazyType[Any, Any]) -> type[Any]:
    found = _resolved.get(self)
    if found is None:
        found = _resolved[self] = _resolve(self)
    return found


def response_order(errors: Sequence[GraphQLError], data: Any) -> list[GraphQLError]:
    """``errors`` in the order of the response: by the position of each error's path in
    ``data`` (keys in response order, list items by index); below a null (where the
    path leaves the data) by the field's place in the document. Errors without a path
    (the request's own) keep their order, first."""
    return sorted(errors, key=lambda error: _position(error, data))


def _position(error: GraphQLError, data: Any) -> tuple[Any, ...]:
    path = error.path or []
    if not path:
        return (False,)  # sorted() is stable: the request's errors keep their order
    key: list[tuple[Any, ...]] = []
    node = data
    for depth, segment in enumerate(path):
        if isinstance(node, dict) and segment in node:
            key.append((0, list(node).index(segment)))
            node = node[segment]
        elif isinstance(node, list) and isinstance(segment, int) and segment < len(node):
            key.append((0, segment))
            node = node[segment]
        else:
            location = error.locations[0] if error.locations else None
            key.append((1, location.line, location.column) if location else (1, 0, 0))
            key.extend((2, 0, s) if isinstance(s, int) else (2, 1, s) for s in path[depth:])
            break
    return (True, tuple(key), error.message)
