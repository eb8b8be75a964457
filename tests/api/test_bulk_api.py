"""``bulkCustomerChangePreview``: the set of a filter or segment a bulk change would go
over, counted and shown, under the change's own permissions; nothing changes."""

from __future__ import annotations

from crm_graphql.models import Role
from tests import support
from tests.factories import create_customer

PREVIEW = """query($i: BulkCustomerChangeInput!, $n: Int!) {
  bulkCustomerChangePreview(input: $i, sample: $n) { count customers { id name tags } }
}"""


async def test_preview_counts_a_segment_within_a_filter_and_changes_nothing(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    manager = as_role[Role.MANAGER]
    lin = await create_customer(manager, "Lin", tags=["vip"], email="lin@example.com")
    kim = await create_customer(manager, "Kim", tags=["vip"], email="kim@example.com")
    await create_customer(manager, "Max", tags=["vip"])
    await create_customer(manager, "Ola", email="ola@example.com")
    segment = (
        await manager(
            """mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } } }""",
            {"i": {"name": "VIPs", "filter": {"tags": {"anyOf": ["vip"]}}, "shared": True}},
        )
    ).ok()["createSegment"]["segment"]["id"]
    change = {
        "segmentId": segment,
        "filter": {"email": {"isNull": False}},
        "addTags": ["reviewed"],
        "archive": True,
    }
    found = (await manager(PREVIEW, {"i": change, "n": 1})).ok()["bulkCustomerChangePreview"]
    assert found["count"] == 2
    assert found["customers"] == [{"id": kim, "name": "Kim", "tags": ["vip"]}]
    again = (await manager(PREVIEW, {"i": change, "n": 5})).ok()["bulkCustomerChangePreview"]
    assert [c["id"] for c in again["customers"]] == [kim, lin]  # still as they were

    refused = await as_role[Role.AGENT](PREVIEW, {"i": change, "n": 1})  # agents cannot archive
    assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]
    nothing = await manager(PREVIEW, {"i": {"segmentId": segment}, "n": 1})
    assert [e["extensions"]["code"] for e in nothing.errors] == ["VALIDATION"]
