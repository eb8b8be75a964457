"""graphql-core's executor as the schema runs it, with per-event executors that leave no
state behind in the subscription's executor.

graphql-core 3.3 (``Executor.build_per_event_executor``) makes the executor of each
subscription event a shallow copy of the subscription's executor, and the copy shares its
memo of collected sub-fields, keyed by the identity of field lists that are built anew for
every event: every event executed added entries to the subscription's executor that were
never removed. A subscription that lived for hours, or a fan-out group rendering every
event of a stream with the executor of its first member, grew without bound (issue 12:
about 200 MB per 10 minutes under live-chat load). Here each event's copy gets a memo of
its own, which lives as long as the event's execution: all it is useful for, since its
keys never match across events.

The memo is graphql-core's private ``_relevant_sub_fields``: pyproject.toml pins
graphql-core to 3.3, and ``tests/realtime/test_fanout_memory.py`` fails when the library
changes in a way that matters (the memo renamed or no longer shared, state added to the
copy).
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class EventExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor; each subscription event gets a memo of its own."""

    def build_per_event_executor(self, payload: Any) -> EventExecutor:
        """graphql-core's per-event copy (``payload`` as root value, errors of its own)
        with a memo of collected sub-fields of its own. A copy, not a new executor: a new
        one would hold itself through its ``async_helpers`` (a reference cycle), left for
        the garbage collector after every event."""
        executor = cast("EventExecutor", super().build_per_event_executor(payload))
        executor._relevant_sub_fields = {}
        return executor

    def release(self) -> None:
        """The operation is over and nothing executes with this executor any more: drop
        its helpers, bound methods of itself (``async_helpers``), so that reference
        counting frees it now instead of the garbage collector some time later (a
        subscription's executor per socket, until a collection of the older
        generations: ``app.GC_THRESHOLDS``)."""
        with contextlib.suppress(AttributeError):
            del self.async_helpers

    def detached(self) -> EventExecutor:
        """An executor of the same validated operation that holds nothing of the request
        it was built for: no context, no root value, helpers and shared state of its own
        (a copy would reach this executor, and its context, through them). What a fan-out
        group keeps to render events after the member that created it has left."""
        return type(self)(
            self.schema,
            self.fragment_definitions,
            self.fragments,
            None,
            None,
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
            abort_signal=None,
            hooks=self.hooks,
            operation_extensions=self.operation_extensions,
        )
