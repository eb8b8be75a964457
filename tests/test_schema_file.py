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
