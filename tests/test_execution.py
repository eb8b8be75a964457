"""``crm_graphql.execution``: graphql-core lets sibling fields finish before an error
propagates (it goes through ``gather_with_cancel``, which we replace: this fails when a
graphql-core release stops doing so), and errors come in response order."""

from __future__ import annotations

import asyncio
from typing import Any

import graphql
from graphql import GraphQLError, build_schema
from graphql.execution import executor as graphql_executor

from crm_graphql.execution import gather_settled, response_order, settle_siblings
from crm_graphql.schema import schema

SDL = """type Query { a: A  b: [B!] }
type A { fails: String!  slow: String  slower: String! }
type B { n: Int!  fails: String! }"""


async def test_the_schema_installs_settled_gathering() -> None:
    assert schema is not None
    assert graphql_executor.gather_with_cancel is gather_settled


async def test_siblings_of_a_failing_non_null_field_finish() -> None:
    settle_siblings()
    finished: list[str] = []

    async def fails(*_: Any) -> str:
        await asyncio.sleep(0)
        raise ValueError("boom")

    async def slow(*_: Any) -> str:
        await asyncio.sleep(0.05)
        finished.append("slow")
        return "done"

    async def slower(*_: Any) -> str:
        await asyncio.sleep(0.1)
        finished.append("slower")
        raise ValueError("second")

    test_schema = build_schema(SDL)
    a = test_schema.type_map["A"]
    a.fields["fails"].resolve = fails  # type: ignore[union-attr]
    a.fields["slow"].resolve = slow  # type: ignore[union-attr]
    a.fields["slower"].resolve = slower  # type: ignore[union-attr]
    result = await graphql.graphql(test_schema, "{ a { slower fails slow } }", root_value={"a": {}})
    assert result.data == {"a": None}
    assert sorted(finished) == ["slow", "slower"]  # not cancelled
    # The error that propagates is the first in field order, not the first in time.
    assert [e.message for e in result.errors or []] == ["second"]


async def test_the_first_error_in_order_propagates_from_a_list() -> None:
    settle_siblings()

    async def fails(item: Any, *_: Any) -> str:
        await asyncio.sleep(0.01 * (5 - item["n"]))  # the last item fails first
        raise ValueError(f"item {item['n']}")

    test_schema = build_schema(SDL)
    test_schema.type_map["B"].fields["fails"].resolve = fails  # type: ignore[union-attr]
    root = {"b": [{"n": n} for n in range(5)]}
    for _ in range(3):
        result = await graphql.graphql(test_schema, "{ b { n fails } }", root_value=root)
        assert result.data == {"b": None}
        assert [e.message for e in result.errors or []] == ["item 0"]


def test_errors_come_in_response_order() -> None:
    data = {"z": {"y": [None, {"x": None, "w": None}]}, "a": None}
    errors = [
        GraphQLError("below a null", path=["a", "deep", 3]),
        GraphQLError("w", path=["z", "y", 1, "w"]),
        GraphQLError("x", path=["z", "y", 1, "x"]),
        GraphQLError("item", path=["z", "y", 0]),
        GraphQLError("a", path=["a"]),
        GraphQLError("request: second"),
        GraphQLError("request: first"),
    ]
    ordered = [e.message for e in response_order(errors, data)]
    assert ordered == ["request: second", "request: first", "item", "x", "w", "a", "below a null"]


def test_lazy_types_resolve_once(monkeypatch: Any) -> None:
    """Strawberry converts a lazily typed argument through ``LazyType.resolve_type`` on
    every call (``Path.samefile`` each time); once the schema is built, a type is looked
    up once and then kept (issue 14, point 4)."""
    import pathlib

    from strawberry.types import arguments
    from strawberry.types.lazy_type import LazyType

    from crm_graphql.execution import resolve_lazy_types_once

    resolve_lazy_types_once()
    assert arguments.LazyType is LazyType  # convert_argument still resolves through it
    lazy = LazyType("CreateActivityInput", "crm_graphql.schema.activities")
    first = lazy.resolve_type()
    stats: list[str] = []
    samefile = pathlib.Path.samefile

    def counted(self: pathlib.Path, other: Any) -> bool:
        stats.append(str(self))
        return samefile(self, other)

    monkeypatch.setattr(pathlib.Path, "samefile", counted)
    again = LazyType("CreateActivityInput", "crm_graphql.schema.activities").resolve_type()
    assert again is first and stats == []
