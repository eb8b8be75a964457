"""OpenTelemetry traces (docs/decisions/0025, README "Metrics and traces").

Off unless ``CRM_OTEL_ENDPOINT`` names an OTLP/HTTP traces endpoint (or a test installs a
provider of its own): then this process gets an SDK tracer provider exporting in batches,
and the server spans each HTTP request and WebSocket connection (the ASGI
instrumentation), each GraphQL operation (``graphql.operation``: its name, type and the
read path that answered), parsing, validation, execution and resolvers
(``observability.graphql``: neither the document nor the arguments, which may hold
personal data and passwords), the compiled
statement, every PostgreSQL statement (the asyncpg instrumentation: SQLAlchemy's
statements too, since it runs on asyncpg) and Redis command, and the live delivery of
events and webhooks. Every span started while a request runs carries its request id
(``crm.request_id``), which is also in every log line of the request.

Off, nothing is instrumented and ``span`` is a ``nullcontext``: no tracer is asked."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from crm_graphql.observability.requests import current_request_id

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from strawberry.extensions import SchemaExtension

    from crm_graphql.settings import Settings

REQUEST_ID_ATTRIBUTE = "crm.request_id"

tracer = trace.get_tracer("crm_graphql")
_installed = False


def enabled() -> bool:
    """Whether this process traces."""
    return _installed


class RequestIdSpanProcessor(SpanProcessor):
    """Puts the current request id on every span that starts while a request runs."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        request_id = current_request_id()
        if request_id is not None:
            span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)

    def on_end(self, span: ReadableSpan) -> None:
        pass


def install(provider: TracerProvider) -> None:
    """Trace with ``provider`` from now on, in this whole process (OpenTelemetry's tracer
    provider is one per process): the request id on every span, PostgreSQL and Redis
    calls instrumented. Once per process; later calls change nothing."""
    global _installed
    if _installed:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    provider.add_span_processor(RequestIdSpanProcessor())
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument()
    RedisInstrumentor().instrument()
    _installed = True


def uninstall() -> None:
    """Stop tracing in this process (tests that installed a provider of their own): the
    instrumentations are removed; OpenTelemetry keeps its provider, which nothing asks."""
    global _installed
    if not _installed:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    _installed = False


def configure(settings: Settings) -> None:
    """Install an OTLP-exporting provider when ``CRM_OTEL_ENDPOINT`` is set."""
    if settings.otel_endpoint is None or _installed:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
    )
    install(provider)


def middleware() -> list[Middleware]:
    """The ASGI instrumentation (a server span per HTTP request or WebSocket
    connection), when tracing; nothing otherwise."""
    if not _installed:
        return []
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from starlette.middleware import Middleware

    # One span per request, not one more per message received or sent.
    return [Middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"])]


def graphql_extension() -> SchemaExtension:
    """Spans for one operation's parsing, validation, execution and each resolver that is
    not a plain attribute read (``OperationSpans``)."""
    from crm_graphql.observability.graphql import OperationSpans

    return OperationSpans()


def quiet() -> contextlib.AbstractContextManager[None]:
    """No database or Redis spans inside (a background poll, every second, that would
    otherwise start a trace of its own each time)."""
    if not _installed:
        return contextlib.nullcontext()
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span | None]:
    """A span of the current trace while tracing; None (and no cost) otherwise."""
    if not _installed:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current
