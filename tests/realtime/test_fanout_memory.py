"""Memory stays flat over a long run (issue 12, point 9): rendering events leaves nothing
behind in a fan-out group or a subscription, and a group keeps nothing of the members
that left it. Counts, not timings: the graphql-core objects alive in this process (the
app is served by a real uvicorn inside the test process) and the request contexts of
sockets.

Also the contract with graphql-core that ``crm_graphql.schema.executor`` relies on: these
fail when the library changes in a way that matters (see that module)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from graphql import build_schema, parse
from starlette.applications import Starlette
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from crm_graphql.models import Role, User
from crm_graphql.realtime import SERVER_WEBSOCKETS
from crm_graphql.realtime.hub import Member, Stream
from crm_graphql.resolvers.context import Context
from crm_graphql.schema.executor import EventExecutor
from crm_graphql.services.actor import Actor
from tests.realtime.processes import serving_in_process, wait_for
from tests.realtime.streams import assert_in_order_once
from tests.realtime.test_fanout import (
    FEED,
    _customer,
    _feed,
    _frames,
    _hub,
    _notes,
    _subscribe,
    _token,
    served,
)

__all__ = ["served"]  # the fixture, shared with test_fanout

# Events rendered between two counts. Before the fix every rendered event left about ten
# graphql-core objects (its collected sub-fields) in the executor that rendered it.
EVENTS = 40
# What may appear between two counts without a leak: caches filling once, the odd object
# of a request in flight. Far below one object per event.
SLACK = 25


def _graphql_objects() -> int:
    """graphql-core objects alive in this process (after a full collection)."""
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if str(getattr(type(o), "__module__", "")).startswith("graphql.")
    )


def _socket_contexts() -> int:
    """Request contexts of WebSocket connections still alive (after a full collection)."""
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if type(o) is Context and o.websocket is not None and o.parent is None
    )


async def test_a_long_lived_group_keeps_nothing_per_rendered_event(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    base_url, app = served
    hub = _hub(app)
    token = _token(settings, users[Role.AGENT])
    customer = await _customer(app, actors[Role.AGENT])
    sockets = [await _subscribe(base_url, token, FEED) for _ in range(3)]
    try:
        await wait_for(lambda: hub.stats()["members"] == 3, what="subscribed")
        assert hub.stats()["groups"] == 1, hub.stats()
        # Warm-up: statements prepared, caches filled.
        await _notes(app, actors[Role.AGENT], customer, *[f"warm {i}" for i in range(5)])
        for ws in sockets:
            await _frames(ws, 5)
        before, renders = _graphql_objects(), hub.stats()["renders"]
        subjects = [f"note {i}" for i in range(EVENTS)]
        await _notes(app, actors[Role.AGENT], customer, *subjects)
        got = [_feed(await _frames(ws, EVENTS, timeout=20)) for ws in sockets]
        grown = _graphql_objects() - before
        assert hub.stats()["renders"] - renders == EVENTS  # one group: once per event
        # The window keeps payloads (bytes, which the collector does not walk), not the
        # tasks that rendered them.
        (group,) = [g for s in hub.streams.values() for g in s.groups.values()]
        kept = list(group.rendered.values())
        assert len(kept) == 5 + EVENTS, len(kept)
        assert all(type(payload) is bytes for payload in kept), {type(p) for p in kept}
    finally:
        for ws in sockets:
            await ws.close()
    assert got[0] == got[1] == got[2]
    assert [e["activity"]["subject"] for e in got[0]] == subjects
    assert_in_order_once(got[0])
    assert grown < SLACK, f"{grown} graphql-core objects more after {EVENTS} events"


async def test_a_group_keeps_nothing_of_members_that_left(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    """Members come and go, one at a time, while the group never empties (as when clients
    trickle in and out): neither the first member's request (its socket's context) nor
    anything of the events rendered meanwhile stays alive."""
    base_url, app = served
    hub = _hub(app)
    token = _token(settings, users[Role.AGENT])
    customer = await _customer(app, actors[Role.AGENT])
    sockets = [await _subscribe(base_url, token, FEED) for _ in range(2)]
    counts: list[int] = []
    try:
        await wait_for(lambda: hub.stats()["members"] == 2, what="subscribed")
        rounds = 12
        for round in range(rounds):
            # A member joins, an event is rendered for everyone, the oldest one leaves.
            sockets.append(await _subscribe(base_url, token, FEED))
            await wait_for(lambda: hub.stats()["members"] == 3, what="joined")
            subjects = [f"round {round} event {i}" for i in range(3)]
            await _notes(app, actors[Role.AGENT], customer, *subjects)
            for ws in sockets:
                assert [e["activity"]["subject"] for e in _feed(await _frames(ws, 3))] == subjects
            leaving = sockets.pop(0)
            await leaving.close()
            await wait_for(lambda: hub.stats()["members"] == 2, what="left")
            assert hub.stats()["groups"] == 1, hub.stats()
            if round in (2, rounds - 1):
                counts.append(_graphql_objects())
        contexts = _socket_contexts()
    finally:
        for ws in sockets:
            await ws.close()
    # Two sockets are open: the contexts of the 12 that closed, the group's creator among
    # them, are gone.
    assert contexts == len(sockets), f"{contexts} socket contexts alive, {len(sockets)} open"
    grown = counts[1] - counts[0]
    assert grown < SLACK, f"{grown} graphql-core objects more after {3 * (rounds - 3)} events"


async def test_nothing_of_a_departed_subscriber_outlives_its_stream(
    settings: Any, users: dict[Role, User], actors: dict[Role, Actor]
) -> None:
    """Once the last subscriber of a stream has left, neither it (its socket's context,
    through its slow-consumer handler) nor the stream (its window of events) stays
    reachable, however long the process then serves no stream. The slow-consumer
    watchdog runs every 0.2 s here, so it has looked at the subscriber many times."""
    quick_watchdog = settings.model_copy(update={"slow_consumer_seconds": 0.4})
    async with serving_in_process(quick_watchdog, SERVER_WEBSOCKETS) as (base_url, app):
        hub = _hub(app)
        token = _token(settings, users[Role.AGENT])
        customer = await _customer(app, actors[Role.AGENT])
        ws = await _subscribe(base_url, token, FEED)
        try:
            await wait_for(lambda: hub.stats()["members"] == 1, what="subscribed")
            await _notes(app, actors[Role.AGENT], customer, "one", "two")
            await _frames(ws, 2)
            await asyncio.sleep(1)  # the watchdog's turns while the subscriber is there
        finally:
            await ws.close()
        await wait_for(lambda: not hub.streams, what="the stream closed")

        def left_behind() -> list[Any]:
            gc.collect()
            return [
                o
                for o in gc.get_objects()
                if (type(o) is Member and o.group is not None and o.group.stream.hub is hub)
                or (type(o) is Stream and o.hub is hub)
            ]

        await wait_for(lambda: not left_behind(), 5, interval=0.5, what="nothing of it left")
        assert _socket_contexts() == 0


async def test_a_subscription_resolved_per_subscriber_keeps_nothing_per_event(
    settings: Any, users: dict[Role, User], actors: dict[Role, Actor]
) -> None:
    """Under a server that cannot be pushed to (uvicorn's wsproto), Strawberry runs each
    event with the subscription's own executor: nothing may accumulate there either."""
    async with serving_in_process(settings, {"ws": "wsproto"}) as (base_url, app):
        hub = _hub(app)
        token = _token(settings, users[Role.AGENT])
        customer = await _customer(app, actors[Role.AGENT])
        ws = await _subscribe(base_url, token, FEED)
        try:
            await wait_for(lambda: sum(len(s.subscribers) for s in hub.streams.values()) == 1)
            await _notes(app, actors[Role.AGENT], customer, *[f"warm {i}" for i in range(5)])
            await _frames(ws, 5)
            before = _graphql_objects()
            await _notes(app, actors[Role.AGENT], customer, *[f"n {i}" for i in range(EVENTS)])
            got = _feed(await _frames(ws, EVENTS, timeout=20))
            grown = _graphql_objects() - before
            assert hub.stats()["groups"] == 0, hub.stats()
        finally:
            await ws.close()
    assert [e["activity"]["subject"] for e in got] == [f"n {i}" for i in range(EVENTS)]
    assert grown < SLACK, f"{grown} graphql-core objects more after {EVENTS} events"


# ------------------------------------------------- the contract with graphql-core

SCHEMA = build_schema(
    """
    type Query { unused: Int }
    type Leaf { z: Int }
    type Inner { x: Int, leaves: [Leaf] }
    type Event { cursor: String, inner: Inner }
    type Subscription { event(n: Int): Event }
    """
)
DOCUMENT = parse("subscription($n: Int) { event(n: $n) { cursor inner { x leaves { z } } } }")
PAYLOAD = {"event": {"cursor": "c", "inner": {"x": 1, "leaves": [{"z": 1}, {"z": 2}]}}}
# What an executor does not share with the one it was made from: graphql-core's
# per-execution state (errors, memos, pending work).
OWN_STATE = frozenset(
    {
        "collected_errors",
        "async_helpers",
        "pending_incremental_futures",
        "background_futures",
        "async_work_finished_hook_task",
        "_relevant_sub_fields",
        "_stream_usages",
        "_initial_execution_plans",
        "_deferred_execution_plans",
        "defer_usage_set",
        "groups",
        "tasks",
        "streams",
    }
)
REQUEST = frozenset({"root_value", "context_value", "abort_signal"})


def _subscription(executor_class: Any) -> Any:
    executor = executor_class.build(
        SCHEMA, DOCUMENT, context_value=object(), raw_variable_values={"n": 3}
    )
    assert not isinstance(executor, list), executor
    executor.operation_extensions = {"trace": True}  # Strawberry's, carried too
    return executor


def _sizes(executor: Any) -> dict[str, int]:
    """The sizes of the executor's attributes that have one (memos, sets, lists)."""
    return {
        name: len(value)
        for name, value in vars(executor).items()
        if hasattr(value, "__len__") and name not in ("variable_values", "fragments")
    }


def test_graphql_core_per_event_executors_still_share_the_subscriptions_memo() -> None:
    """Why ``EventExecutor`` exists: graphql-core's own per-event copies grow the
    subscription's executor by every event, in its ``_relevant_sub_fields``. When this
    fails, the library has changed: the memo is no longer shared (``EventExecutor`` can
    go) or has another name (``EventExecutor`` must follow)."""
    subscription = _subscription(StrawberryGraphQLCoreExecutionContext)
    for _ in range(10):
        result = subscription.build_per_event_executor(PAYLOAD).execute_operation(False)
        assert result.data == PAYLOAD and not result.errors
    grown = {name: size for name, size in _sizes(subscription).items() if size}
    assert grown.get("_relevant_sub_fields", 0) >= 10, grown


def test_event_executors_leave_the_subscriptions_executor_as_it_was() -> None:
    subscription = _subscription(EventExecutor)
    before = _sizes(subscription)
    for _ in range(10):
        run = subscription.build_per_event_executor(PAYLOAD)
        assert type(run) is EventExecutor
        assert run.execute_operation(False).data == PAYLOAD
    assert _sizes(subscription) == before


def test_an_event_executor_is_graphql_cores_copy_but_for_its_memo() -> None:
    """An attribute the library adds to its copy (a new memo shared with the original)
    fails here until ``EventExecutor`` handles it."""
    subscription = _subscription(EventExecutor)
    ours = vars(subscription.build_per_event_executor(PAYLOAD))
    theirs = vars(
        StrawberryGraphQLCoreExecutionContext.build_per_event_executor(subscription, PAYLOAD)
    )
    assert ours.keys() == theirs.keys()
    differing = {name for name, value in theirs.items() if ours[name] is not value}
    assert differing == {"collected_errors", "_relevant_sub_fields"}, differing
    assert theirs["_relevant_sub_fields"] is subscription._relevant_sub_fields
    assert ours["root_value"] is PAYLOAD


def test_a_detached_executor_runs_the_operation_and_holds_no_request() -> None:
    """What a fan-out group keeps: the operation's validated arguments, none of the
    request (context, root value) and no way back to the executor it came from."""
    subscription = _subscription(EventExecutor)
    detached = subscription.detached()
    mine, original = vars(detached), vars(subscription)
    assert mine.keys() == original.keys()
    differing = {name for name, value in original.items() if mine[name] is not value}
    assert differing <= OWN_STATE | REQUEST, differing - OWN_STATE - REQUEST
    assert all(mine[name] is None for name in REQUEST), {n: mine[n] for n in REQUEST}
    assert detached.async_helpers.gather.__self__ is detached
    assert not any(value is subscription for value in mine.values())
    result = detached.build_per_event_executor(PAYLOAD).execute_operation(False)
    assert result.data == PAYLOAD and not result.errors


def _operation_state() -> tuple[int, int]:
    """What an operation's execution leaves alive in this process (after a full
    collection): executors with a request context (a fan-out group's detached executor
    has none), and tasks still running a WebSocket operation's Strawberry code."""
    gc.collect()
    executors = sum(
        1
        for o in gc.get_objects()
        if isinstance(o, StrawberryGraphQLCoreExecutionContext) and o.context_value is not None
    )
    names = ("run_operation", "handle_async_results")
    tasks = sum(
        1 for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "").endswith(names)
    )
    return executors, tasks


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_an_idle_pushed_subscription_keeps_no_execution_of_its_operation(
    served: tuple[str, Starlette],
    settings: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
    protocol: str,
) -> None:
    """Once subscribed, a pushed subscription runs in a task of its connection's
    (realtime/ws.py ``_Adopting``): its operation's task, graphql-core's executor and
    Strawberry's state of it are gone while the socket is idle (decision 0031, "Memory of
    an idle socket"). Before, each idle subscription kept them for the socket's life.
    The operation still behaves as one: events arrive, the client stops it and nothing
    more comes (the legacy protocol answers ``complete``), and its id can be used again."""
    base_url, app = served
    hub = _hub(app)
    token = _token(settings, users[Role.AGENT])
    customer = await _customer(app, actors[Role.AGENT])
    sockets = [await _subscribe(base_url, token, FEED, protocol=protocol) for _ in range(4)]
    try:
        await wait_for(lambda: hub.stats()["members"] == 4, what="subscribed")
        await wait_for(lambda: _operation_state() == (0, 0), what="operations handed over")
        await _notes(app, actors[Role.AGENT], customer, "after the hand-over")
        for ws in sockets:
            frames = _feed(await _frames(ws, 1))
            assert [e["activity"]["subject"] for e in frames] == ["after the hand-over"]
        # The client stops the operation: its member leaves, nothing more is sent.
        stopping = sockets[0]
        stop = "complete" if protocol == "graphql-transport-ws" else "stop"
        await stopping.send({"id": "1", "type": stop})
        if protocol == "graphql-ws":
            assert await stopping.receive() == {"type": "complete", "id": "1"}
        await wait_for(lambda: hub.stats()["members"] == 3, what="stopped")
        # The same id subscribes again (its earlier operation is forgotten).
        kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
        await stopping.send({"id": "1", "type": kind, "payload": {"query": FEED}})
        await wait_for(lambda: hub.stats()["members"] == 4, what="subscribed again")
        await _notes(app, actors[Role.AGENT], customer, "after the stop")
        for ws in sockets:
            frames = _feed(await _frames(ws, 1))
            assert [e["activity"]["subject"] for e in frames] == ["after the stop"]
        assert _operation_state() == (0, 0)
    finally:
        for ws in sockets:
            await ws.close()
    await wait_for(lambda: hub.stats()["members"] == 0, what="closed")


async def test_a_document_whose_literal_fails_to_parse_keeps_nothing_of_its_socket(
    served: tuple[str, Starlette], settings: Any, users: dict[Role, User]
) -> None:
    """Validation results are cached by document: an error raised by a scalar's literal
    parse (DateTime on "yesterday") is cached without its traceback, whose frames hold
    the request's context, for a WebSocket its connection."""
    base_url, _ = served
    token = _token(settings, users[Role.AGENT])
    document = """subscription { activityFeed { activity { customer { activities(filter:
      {occurredAt: {gte: "yesterday"}}) { totalCount } } } } }"""
    before = _socket_contexts()
    for _ in range(3):
        ws = await _subscribe(base_url, token, document)
        try:
            message = await ws.receive()
            assert message["type"] == "error", message
            assert "DateTime" in message["payload"][0]["message"], message
        finally:
            await ws.close()
    await wait_for(lambda: _socket_contexts() == before, what="socket contexts released")
