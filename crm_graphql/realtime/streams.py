"""The stream contract, as a subscription sees it (DESIGN.md, Real time; 0002, 0031).

A subscription follows one stream (``topic``) of its caller's workspace from a cursor
(``after``, or an event stream's ``Last-Event-ID``, which wins: it is later) or from now,
receives every event its ``verdicts.Rule`` gives it, in order, once, and ends after the
event that ended its access. On our WebSocket server and over SSE the events are pushed
(``Hub.push``): judged and rendered once per fan-out group (``realtime.groups``) and
written to each socket directly. Elsewhere each event is judged for the subscriber and
yielded, and its selection resolved in a scope of its own.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from graphql import GraphQLError

from crm_graphql.realtime import fanout, groups
from crm_graphql.realtime.connections import LiveContext
from crm_graphql.realtime.groups import EventValue
from crm_graphql.realtime.verdicts import Rule, Selection, audience
from crm_graphql.realtime.ws import PROTOCOL_KEY, close_slow_consumer
from crm_graphql.services.errors import DomainError
from crm_graphql.services.events import Position


def graphql_error(error: DomainError) -> GraphQLError:
    """A domain error that stops a subscription from starting, as a GraphQL error with its
    code (and field)."""
    extensions: dict[str, Any] = {"code": error.code}
    if error.field:
        extensions["field"] = error.field
    return GraphQLError(error.message, extensions=extensions)


def position(cursor: str | None) -> Position | None:
    """Where a cursor points (None: none given); a bad one is a GraphQL error."""
    try:
        return Position.decode(cursor) if cursor else None
    except DomainError as error:
        raise graphql_error(error) from error


def _slow_handler(websocket: Any, event_stream: Any) -> Callable[[], Awaitable[None]]:
    """What cuts off the subscriber when it does not read (a small object, not a closure
    over the subscription's frame: a pushed member keeps it while it lives)."""
    if websocket is not None:
        return functools.partial(close_slow_consumer, websocket)
    if event_stream is not None:
        return functools.partial(_slow_stream, event_stream)
    return _nothing


async def _slow_stream(event_stream: Any) -> None:
    event_stream.slow()


async def _nothing() -> None:
    return None


async def subscribe(
    info: Any,
    topic: str,
    after: str | None,
    rule: Rule,
    *,
    entity: uuid.UUID | None = None,
    selects: Selection | None = None,
) -> AsyncIterator[EventValue]:
    """The events of ``topic`` after ``after`` (or from now) that ``rule`` gives the
    caller. With ``entity``, only that entity's events (one conversation); with
    ``selects``, only those it chooses (a filter)."""
    context: LiveContext = info.context
    actor = context.require_actor()
    websocket = context.websocket
    event_stream = context.event_stream  # over SSE: Last-Event-ID resumes like `after`
    start = position(event_stream.resume_after if event_stream else None) or position(after)
    hub = context.app.hub

    on_slow = _slow_handler(websocket, event_stream)
    executor = groups.event_executor(info)
    protocol = websocket.scope.get(PROTOCOL_KEY) if websocket is not None else None
    operation = fanout.OPERATION.get()
    # A WebSocket of our server, or an event stream (realtime/sse.py): frames pushed.
    sink = fanout.SocketSink.attach(protocol, operation) or event_stream
    if sink is not None and executor is not None:
        sink = fanout.owing(sink)  # its first frame with extensions.cost, when asked
        plan = groups.plan(info, executor, actor, rule)
        pushing = hub.push(
            actor.workspace_id,
            topic,
            start,
            group_key=plan.group_key,
            render=plan.render,
            judge=plan.judge,
            user=actor.user_id,
            own=plan.own,
            entity=entity,
            selects=selects,
            sink=sink,
            on_slow=on_slow,
            credential=context.credential,
        )
        if operation is not None and operation.adopt is not None:
            # The connection runs it from here on (realtime.ws): this generator, the
            # resolver's and graphql-core's end now and keep nothing of an idle socket.
            operation.executor = executor  # released once the operation's task is over
            operation.adopt(pushing)
            return
        await pushing
        return

    judged_as = audience(actor)
    async for event in hub.follow(
        actor.workspace_id, topic, start, on_slow=on_slow, credential=context.credential
    ):
        if entity is not None and event.entity_id != entity:
            continue
        if selects is not None and not selects(event):
            continue
        take = rule(event, judged_as).take(actor.user_id)
        if take is None:
            continue
        scope = context.enter_event_scope()
        if event_stream is not None:
            event_stream.cursor = event.cursor
        try:
            # Resumed once the event's selection is resolved and sent: hand the
            # connection back before waiting for the next event.
            yield EventValue(event)
        finally:
            with contextlib.suppress(Exception):  # a dead connection is the pool's problem
                await scope.close()
        if take.last:
            return
