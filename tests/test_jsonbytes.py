"""JSON bytes that are kept are right-sized (``crm_graphql.jsonbytes``): orjson's own
output keeps its working buffer, at least about 4 KiB, whatever the JSON's length."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from collections.abc import Callable

import orjson

from crm_graphql.compiled import CompiledReads
from crm_graphql.jsonbytes import dumps_kept, kept
from crm_graphql.realtime.fanout import encode_result

EVENT = {"conversationEvents": {"cursor": "MTIz", "type": "MESSAGE_POSTED", "body": "hi " * 30}}


def _bytes_held(make: Callable[[], bytes], n: int = 500) -> float:
    """Bytes allocated per value while ``n`` of them are alive."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        values = [make() for _ in range(n)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(values) == n
    return held / n


def test_kept_bytes_are_equal_and_right_sized() -> None:
    raw = orjson.dumps(EVENT)
    assert kept(raw) == raw and dumps_kept(EVENT) == raw
    assert dumps_kept({"b": 1, "a": 2}, option=orjson.OPT_SORT_KEYS) == b'{"a":2,"b":1}'
    # The premise: orjson's output holds far more than its length ...
    assert _bytes_held(lambda: orjson.dumps(EVENT)) > 2_000
    # ... and a kept copy about its length (plus the object header).
    assert _bytes_held(lambda: dumps_kept(EVENT)) < len(raw) + 100


def test_a_rendered_event_payload_is_right_sized() -> None:
    """Groups keep up to ``rendered_kept`` payloads each, dashboards their last one."""
    payload = encode_result(EVENT, None, production=True)
    assert orjson.loads(payload) == {"data": EVENT}
    assert _bytes_held(lambda: encode_result(EVENT, None, production=True)) < len(payload) + 100


def test_a_cached_plan_holds_about_a_kilobyte() -> None:
    """Plans are cached per set of variables (a customer page per customer id): the key's
    JSON is right-sized, and the query text is the parsed document's, held once however
    many requests sent it (each request's body is a string of its own)."""
    from crm_graphql.enums import Role
    from crm_graphql.global_ids import to_global_id
    from crm_graphql.schema import schema
    from crm_graphql.services.actor import Actor
    from crm_graphql.settings import Settings

    reads = CompiledReads(schema, Settings(database_url="postgresql://unused@127.0.0.1/x"), {})
    actor = Actor(workspace_id=uuid.uuid4(), role=Role.AGENT, user_id=uuid.uuid4())
    query = "query Page($id: ID!) { node(id: $id) { id ... on Customer { name email } } }"

    def plan() -> None:
        variables = {"id": to_global_id("Customer", uuid.uuid4())}
        assert reads.plan("".join(list(query)), None, variables, actor) is not None

    plan()  # parsed and validated once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(300):
            plan()
        gc.collect()  # the compiler's temporaries in reference cycles are not kept
        per_plan = (tracemalloc.get_traced_memory()[0] - before) / 300
    finally:
        tracemalloc.stop()
    assert len(reads._plans) == 301
    assert per_plan < 1_500, per_plan  # 5,171 bytes before (4 KiB of it orjson's buffer)
