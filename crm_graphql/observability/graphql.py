"""Spans of one GraphQL operation's steps, while the process traces (added to each
operation's extensions by ``CrmSchema.get_extensions`` only then).

Strawberry's own OpenTelemetry extension records the whole document on its span, and a
document's literals may be personal data; it also turns every resolver into a coroutine.
These spans carry names and paths only, and a synchronous resolver stays synchronous."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from inspect import isawaitable
from typing import Any

from graphql import GraphQLResolveInfo
from opentelemetry import trace
from strawberry.extensions import SchemaExtension
from strawberry.extensions.tracing.utils import should_skip_tracing

from crm_graphql.observability.tracing import tracer


class OperationSpans(SchemaExtension):
    """``graphql.parse``, ``graphql.validate``, ``graphql.execute`` and a
    ``graphql.resolve`` span per resolver call (plain attribute reads left out), each
    under the current span (the request's ``graphql.operation``)."""

    def on_parse(self) -> Iterator[None]:
        with tracer.start_as_current_span("graphql.parse"):
            yield

    def on_validate(self) -> Iterator[None]:
        with tracer.start_as_current_span("graphql.validate"):
            yield

    def on_execute(self) -> Iterator[None]:
        with tracer.start_as_current_span("graphql.execute"):
            yield

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if should_skip_tracing(_next, info):
            return _next(root, info, *args, **kwargs)
        span = tracer.start_span(
            f"graphql.resolve {info.parent_type.name}.{info.field_name}",
            attributes={"graphql.field.path": ".".join(str(p) for p in info.path.as_list())},
        )
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True):
                result = _next(root, info, *args, **kwargs)
        except BaseException:
            span.end()
            raise
        if isawaitable(result):
            return _ended_after(result, span)
        span.end()
        return result


async def _ended_after(result: Awaitable[Any], span: trace.Span) -> Any:
    """Await a resolver's result with its span current (its database calls are under it)."""
    with trace.use_span(span, end_on_exit=True, record_exception=True):
        return await result
