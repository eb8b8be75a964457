"""The webhook event catalogue (crm_graphql/event_catalogue.py) is the contract: its
document is current, every event type the services write is in it, and a payload reads in
the API's names. That every event each mutation writes translates with no field left
undeclared is checked with its audit (tests/api/test_mutation_audit.py)."""

from __future__ import annotations

import re
import uuid

from crm_graphql import event_catalogue
from crm_graphql.enums import DealStatus
from crm_graphql.global_ids import to_global_id
from tests import support

# An event type as services name it, in a string literal.
_TYPE = re.compile(r'"([a-z]+\.[a-z_]+)"')


def test_docs_events_md_is_current() -> None:
    stored = (support.ROOT / "docs" / "events.md").read_text()
    assert stored == event_catalogue.markdown(), (
        "docs/events.md is stale: run `crm-graphql export-events`"
    )


def test_every_event_type_the_services_write_is_in_the_catalogue() -> None:
    written: set[str] = set()
    for path in (support.ROOT / "crm_graphql" / "services").glob("*.py"):
        source = path.read_text()
        for line in source.splitlines():
            if "action=" in line or "logger" in line:
                continue
            written |= {t for t in _TYPE.findall(line) if t.split(".")[0] in _ENTITIES}
    assert written, "no event type found: the pattern is wrong"
    assert written - set(event_catalogue.CATALOGUE) == set()
    assert set(event_catalogue.CATALOGUE) - written == set()


_ENTITIES = {t.split(".")[0] for t in event_catalogue.CATALOGUE}


def test_a_payload_reads_in_the_apis_names_and_values() -> None:
    deal, stage, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stored = {
        "deal_id": str(deal),
        "pipeline_id": None,
        "stage_id": str(stage),
        "status": "won",
        "version": 3,
        "changed": ["expected_close_date", "stage_id"],
    }
    assert event_catalogue.partner_payload("deal.updated", stored) == {
        "dealId": to_global_id("Deal", deal),
        "pipelineId": None,
        "stageId": to_global_id("Stage", stage),
        "status": DealStatus.WON.name,
        "version": 3,
        "changed": ["expectedCloseDate", "stageId"],
    }
    erased = event_catalogue.partner_payload(
        "customer.erased",
        {"customer_id": str(other), "erased_ids": [str(other)], "counts": {"customers": 1}},
    )
    assert erased["erasedIds"] == [to_global_id("Customer", other)]
    assert erased["counts"] == {"customers": 1}


def test_a_type_or_field_outside_the_catalogue_is_refused() -> None:
    for event_type, payload in (("deal.exploded", {}), ("deal.created", {"secret": 1})):
        try:
            event_catalogue.partner_payload(event_type, payload)
        except event_catalogue.UnknownEvent:
            continue
        raise AssertionError(f"{event_type} {payload} was translated")
