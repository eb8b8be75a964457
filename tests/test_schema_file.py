"""schema.graphql at the repository root is the current SDL."""

from __future__ import annotations

from crm_graphql.schema import schema
from tests import support


def test_schema_graphql_is_current() -> None:
    current = schema.as_str() + "\n"
    stored = (support.ROOT / "schema.graphql").read_text()
    assert stored == current, (
        "schema.graphql is stale: run `make schema` (crm-graphql export-schema)"
    )


def test_every_field_and_type_is_documented() -> None:
    """The explorer's docs come from descriptions: every object field of ours has one."""
    from graphql import GraphQLObjectType

    missing = []
    for name, type_ in schema._schema.type_map.items():
        if name.startswith("__") or not isinstance(type_, GraphQLObjectType):
            continue
        for field_name, field in type_.fields.items():
            if not field.description and name in ("Query", "Mutation"):
                missing.append(f"{name}.{field_name}")
    assert missing == []
