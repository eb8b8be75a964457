"""The labels an operation is counted under at /metrics (``observability.metrics``)."""

from __future__ import annotations

from crm_graphql.observability.metrics import describe, outcome_of


def test_an_operation_is_described_by_its_document() -> None:
    two = "query A { x } mutation B { y }"
    assert describe(two, "B", 5000) == ("B", "mutation")
    assert describe(two, None, 5000) == ("", "unknown")  # several, none chosen
    assert describe("{ x }", None, 5000) == ("", "query")
    assert describe("subscription Live { feed }", None, 5000) == ("Live", "subscription")
    assert describe("query {", "Given", 5000) == ("Given", "unknown")  # does not parse
    assert describe("{" * 3000 + "}" * 3000, None, 0) == ("", "unknown")  # too deep to parse


def test_the_outcome_is_ok_or_the_first_error_code() -> None:
    assert outcome_of(b'{"data":{"customers":[]}}', 200) == "ok"
    assert outcome_of({"data": {"x": 1}}, 200) == "ok"
    first = {"errors": [{"extensions": {"code": "FORBIDDEN"}}, {"extensions": {"code": "X"}}]}
    assert outcome_of(first, 200) == "FORBIDDEN"
    assert outcome_of({"errors": [{"message": "no code"}]}, 200) == "ERROR"
