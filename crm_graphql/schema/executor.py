"""graphql-core's executor as the schema runs it, with per-event executors that keep no
state of their own in the subscription's executor.

graphql-core 3.3 (``Executor.build_per_event_executor``) makes the executor of each
subscription event a shallow copy of the subscription's executor: the copy shares its
memo of collected sub-fields (keyed by the identity of field lists that are built anew
for every event), so every event executed adds entries to the subscription's executor
that are never removed. A subscription that lives for hours, or a fan-out group that
renders every event of a stream with the executor of its first member, grew without
bound (issue 12: about 200 MB per 10 minutes under live-chat load). Each event executor
here is built afresh from the subscription's validated arguments instead: the memo then
lives as long as the event's execution, which is all it is useful for (its keys never
match across events anyway).

Only public parts of graphql-core are used (the ``Executor`` constructor and its
attributes, the ``build_per_event_executor`` hook that ``subscribe`` calls per event).
``tests/realtime/test_fanout_memory.py`` fails when the library changes in a way that
matters: when a new version stops sharing the memo (this class can go), or adds state that
is not carried over here.
"""

from __future__ import annotations

from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class EventExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor; each subscription event gets an executor of its own."""

    def build_per_event_executor(self, payload: Any) -> EventExecutor:
        """The executor of one event: this operation's validated arguments (document,
        variables, resolvers, context) with ``payload`` as root value, and per-execution
        state (errors, memos, futures) of its own."""
        return type(self)(
            self.schema,
            self.fragment_definitions,
            self.fragments,
            payload,
            self.context_value,
            self.operation,
            self.variable_values,
            self.field_resolver,
            self.type_resolver,
            self.subscribe_field_resolver,
            self.enable_early_execution,
            self.middleware_manager,
            self.is_awaitable,
            self.is_async_iterable,
            hide_suggestions=self.hide_suggestions,
            abort_signal=self.abort_signal,
            hooks=self.hooks,
            operation_extensions=self.operation_extensions,
        )
