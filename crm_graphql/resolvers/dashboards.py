"""The ``dashboard`` subscription: a selection of reports and aggregates, kept live by
``realtime.dashboards`` (docs/decisions/0018-live-dashboards.md).

A board is one distinct (document, variables, visibility): every variable counts, since
the fields' arguments choose the numbers. Visibility is what the services decide from the
actor (workspace, role, API key or user, scopes), and the user only where a selected
field counts conversations, which agents and viewers see per user (private ones), or
lists segments (private ones are their owner's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator, Hashable
from typing import TYPE_CHECKING, Any, cast

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    Visitor,
    print_ast,
    visit,
)

from crm_graphql.jsonbytes import kept
from crm_graphql.masking import unavailable_service
from crm_graphql.realtime import fanout
from crm_graphql.realtime.dashboards import Render, Rendering
from crm_graphql.realtime.groups import (
    document_key,
    event_executor,
    execute_detached,
    reading_actor,
    variable_values,
    visibility,
)
from crm_graphql.realtime.ws import PROTOCOL_KEY
from crm_graphql.resolvers.context import Context
from crm_graphql.resolvers.info import Info
from crm_graphql.services import changes, conversations
from crm_graphql.services.actor import Actor

if TYPE_CHECKING:
    from crm_graphql.compiled import CompiledReads

# Dashboard fields whose numbers count conversations: agents and viewers see those per
# user (private conversations), so their boards are per user. Checked against what each
# field reads in tests/realtime/test_dashboards.py.
CONVERSATION_FIELDS = frozenset({"serviceReport", "conversationsAggregate"})
# Fields every user sees per user: private segments are their owner's.
PER_USER_FIELDS = frozenset({"segments"})


@dataclasses.dataclass(frozen=True)
class DashboardValue:
    """The root of a dashboard rendering: its fields resolve from the arguments alone."""


def _field_names(executor: Any) -> frozenset[str]:
    names: set[str] = set()

    class Collect(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            names.add(node.name.value)

    operation = executor.operation
    visit(DocumentNode(definitions=(operation, *executor.fragments.values())), Collect())
    return frozenset(names)


def board_key(executor: Any, actor: Actor) -> Hashable:
    values = variable_values(executor)
    variables = tuple(sorted((name, repr(value)) for name, value in values.items()))
    per_user = not conversations.sees_every_conversation(
        actor
    ) and not CONVERSATION_FIELDS.isdisjoint(_field_names(executor))
    return (document_key(executor), variables, visibility(actor, per_user=per_user))


@dataclasses.dataclass(frozen=True)
class _AsQuery:
    """A board's selection as a query operation, which the compiled read path answers:
    ``Dashboard`` has ``Query``'s fields (the same declarations and resolvers)."""

    text: str
    key: bytes  # the response key of the ``dashboard`` field, as JSON
    variables: dict[str, Any]


def _as_query(executor: Any) -> _AsQuery | None:
    """None when the selection is not one plain ``dashboard`` field (the executed path
    renders it, as it does whatever the compiled path declines)."""
    operation = executor.operation
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    field = selections[0]
    if field.directives or field.selection_set is None:
        return None
    sources = getattr(executor.variable_values, "sources", None)
    if sources is None:
        return None
    query = OperationDefinitionNode(
        operation=OperationType.QUERY,
        name=operation.name,
        variable_definitions=operation.variable_definitions,
        directives=(),
        selection_set=field.selection_set,
    )
    document = DocumentNode(definitions=(query, *executor.fragment_definitions.values()))
    key = field.alias.value if field.alias else field.name.value
    # As sent: a variable left to its default is left out, and the default applies again.
    variables = {n: s.value for n, s in sources.items() if s.value is not Undefined}
    return _AsQuery(print_ast(document), orjson.dumps(key), variables)


async def _compiled_rendering(
    compiled: CompiledReads, reader: Actor, query: _AsQuery
) -> Rendering | None:
    """The rendering from one compiled statement on the primary, the tables it reads
    found in its text as a session notes them (``changes.read_by_statement``); None:
    the executed path renders (and retries when the database is away)."""
    plan = compiled.plan(query.text, None, query.variables, reader)
    if plan is None:
        return None
    body = await compiled.execute(reader, query.text, query.variables, None, primary=True)
    if body is None:
        return None
    data = body[len(b'{"data":') : -1]
    payload = kept(b'{"data":{' + query.key + b":" + data + b"}}")
    return Rendering(payload, changes.read_by_statement(plan.sql))


def _renderer(info: Info, executor: Any, actor: Actor) -> Render:
    """Render the subscription's selection once, as ``actor``: as one compiled statement
    when the compiled path answers it, else executed in a scope of its own whose sessions
    note the tables they read. Keeps nothing of the subscriber's request (the board
    outlives it): an executor of the same operation without its context."""
    app = info.context.app
    schema = getattr(info, "schema", None)
    production = app.settings.is_production
    operation = executor.detached()
    reader = reading_actor(actor)
    compiled = app.compiled
    as_query = _as_query(executor) if compiled is not None else None

    async def render() -> Rendering:
        if compiled is not None and as_query is not None:
            rendering = await _compiled_rendering(compiled, reader, as_query)
            if rendering is not None:
                return rendering
        reads = changes.reading()
        scope = Context(
            app=app,
            actor=reader,
            request_id=uuid.uuid4().hex,
            sessions=cast(Any, functools.partial(app.hub.sessionmaker, info=reads)),
        )
        try:
            data, errors = await execute_detached(operation, DashboardValue(), scope, schema)
        finally:
            await scope.close()
        if any(unavailable_service(e.original_error or e) for e in errors or ()):
            return Rendering(b"", None, retry=True)
        payload = fanout.encode_result(data, errors, production=production)
        return Rendering(payload, changes.read_by(reads) if not errors else None)

    return render


async def dashboard(info: Info) -> AsyncIterator[DashboardValue]:
    """The selection now, then again whenever its numbers change (at most once a
    second). On our WebSocket server the board writes its rendering to the socket; on
    another, each change is yielded and executed per subscriber."""
    context: Context = info.context
    actor = context.require_actor()
    executor = event_executor(info)
    dashboards = context.app.hub.dashboards
    if executor is None:  # not graphql-core's executor: no rendering to share
        raise RuntimeError("the dashboard subscription needs the schema's executor")
    key = board_key(executor, actor)
    render = _renderer(info, executor, actor)
    websocket = context.websocket
    protocol = websocket.scope.get(PROTOCOL_KEY) if websocket is not None else None
    # A WebSocket of our server, or an event stream (realtime/sse.py): frames pushed.
    operation = fanout.OPERATION.get()
    sink = fanout.SocketSink.attach(protocol, operation) or context.event_stream
    if sink is not None:
        sink = fanout.owing(sink)  # its first frame with extensions.cost, when asked
        pushing = dashboards.push(
            actor.workspace_id, key, render, sink, credential=context.credential
        )
        if operation is not None and operation.adopt is not None:
            # The connection runs it from here on (realtime.ws), as ``streams.subscribe``
            # hands over the event subscriptions: nothing of this execution stays.
            operation.executor = executor
            operation.adopt(pushing)
            return
        await pushing
        return
    async for _ in dashboards.follow(actor.workspace_id, key, render, context.credential):
        scope = context.enter_event_scope()  # fresh loaders and a session, each time
        try:
            yield DashboardValue()  # resumed once it is executed and sent
        finally:
            with contextlib.suppress(Exception):  # a dead connection is the pool's problem
                await scope.close()
