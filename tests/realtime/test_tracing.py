"""Traces (issue 16, point 7): a real uvicorn serving the app in this process with the
OpenTelemetry SDK's in-memory exporter; and a server process exporting over OTLP/HTTP
to a real local receiver when ``CRM_OTEL_ENDPOINT`` is set."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from crm_graphql.models import Role
from crm_graphql.observability import tracing
from crm_graphql.services import activities
from tests import support
from tests.realtime.processes import Spawn, serving_in_process, wait_for
from tests.realtime.streams import FEED, head_cursor, subscribed, take

PAGE = "query CustomerPage { customers(first: 5) { edges { node { id name } } } }"
REQUEST_ID = tracing.REQUEST_ID_ATTRIBUTE


@dataclass
class TracedServer:
    url: str
    spans: InMemorySpanExporter

    def finished(self, request_id: str) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans.get_finished_spans()
            if (s.attributes or {}).get(REQUEST_ID) == request_id
        ]


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """This process traces into memory while the module runs (then stops tracing)."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.install(provider)
    try:
        yield spans
    finally:
        tracing.uninstall()
        spans.shutdown()


@pytest.fixture(scope="module")
async def traced(settings: Any, exporter: InMemorySpanExporter) -> AsyncIterator[TracedServer]:
    """The app, built while tracing, served by uvicorn on a free port of this process."""
    async with serving_in_process(settings) as (url, _):
        yield TracedServer(url, exporter)


async def post(base_url: str, token: str, query: str, request_id: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.post(
            "/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
        )


async def test_a_compiled_read_is_one_trace_of_request_operation_statement(
    traced: TracedServer, tokens: dict[Role, str]
) -> None:
    request_id = f"read-{uuid.uuid4().hex[:12]}"
    response = await post(traced.url, tokens[Role.MANAGER], PAGE, request_id)
    assert response.status_code == 200 and response.headers["x-crm-read-path"] == "compiled"
    spans = await wait_for(lambda: _with_names(traced, request_id, {"POST /graphql"}))
    by_name = {s.name: s for s in spans}
    request, operation = by_name["POST /graphql"], by_name["graphql.operation"]
    statement = by_name["compiled statement"]
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.name"] == "CustomerPage"
    assert operation.attributes["graphql.operation.type"] == "query"
    assert operation.attributes["crm.read_path"] == "compiled"
    # One trace: request > operation > compiled statement > the database call.
    assert {s.context.trace_id for s in spans} == {request.context.trace_id}
    assert operation.parent is not None and operation.parent.span_id in _descendants(request, spans)
    assert statement.parent is not None and statement.parent.span_id == operation.context.span_id
    database = [
        s for s in spans if s.parent is not None and s.parent.span_id == statement.context.span_id
    ]
    assert database and (database[0].attributes or {}).get("db.system") == "postgresql", database
    # Nothing executed by resolvers for a compiled read.
    assert not any(s.name.startswith("graphql.resolve") for s in spans)


async def test_an_executed_mutation_traces_parse_validate_resolvers_database_and_redis(
    traced: TracedServer, tokens: dict[Role, str]
) -> None:
    request_id = f"write-{uuid.uuid4().hex[:12]}"
    secret_name = f"Traced {uuid.uuid4().hex[:6]}"
    mutation = (
        f'mutation CreateTraced {{ createCustomer(input: {{name: "{secret_name}"}}) '
        "{ customer { id } errors { code } } }"
    )
    response = await post(traced.url, tokens[Role.MANAGER], mutation, request_id)
    assert response.status_code == 200 and not response.json().get("errors"), response.text
    spans = await wait_for(lambda: _with_names(traced, request_id, {"POST /graphql"}))
    names = [s.name for s in spans]
    assert {"graphql.parse", "graphql.validate", "graphql.execute"} <= set(names), names
    assert "graphql.resolve Mutation.createCustomer" in names, names
    operation = next(s for s in spans if s.name == "graphql.operation")
    assert (operation.attributes or {})["crm.read_path"] == "executed"
    systems = {(s.attributes or {}).get("db.system") for s in spans}
    assert "postgresql" in systems and "redis" in systems, (names, systems)
    trace_ids = {s.context.trace_id for s in spans}
    assert len(trace_ids) == 1
    # Arguments stay out of spans (they hold personal data and passwords).
    assert not [
        (s.name, dict(s.attributes or {}))
        for s in spans
        if secret_name in str(dict(s.attributes or {}))
    ]


async def test_live_delivery_is_traced(
    traced: TracedServer,
    api: Any,
    tokens: dict[Role, str],
    sessionmaker: Any,
    workspace_id: uuid.UUID,
) -> None:
    async with api(traced) as on:
        customer = await on.customer("Traced feed")
        after = await head_cursor(sessionmaker, workspace_id, activities.TOPIC)
        ws = await subscribed(traced.url, tokens[Role.AGENT], FEED, {"after": after})

        def live_deliveries() -> list[ReadableSpan]:
            return [
                s
                for s in traced.spans.get_finished_spans()
                if s.name == "event delivery"
                and (s.attributes or {}).get("crm.topic") == activities.TOPIC
                and (s.attributes or {}).get("crm.deliveries", 0) >= 1
            ]

        try:
            # A subscriber that has just started may still be catching up from its cursor
            # when the first note commits (the catch-up sends it, untraced): notes are
            # written until one is delivered live, by the stream's reader.
            deliveries: list[ReadableSpan] = []
            for n in range(5):
                await on.note(customer, f"traced note {n}")
                got = await take(ws, "activityFeed", 1)
                assert got[0]["activity"]["subject"] == f"traced note {n}"
                with contextlib.suppress(AssertionError):
                    deliveries = await wait_for(
                        live_deliveries, timeout=2, what="an event delivery span"
                    )
                if deliveries:
                    break
        finally:
            await ws.close()
    assert deliveries, "no live delivery was traced"
    assert (deliveries[0].attributes or {})["crm.events"] >= 1


def _with_names(
    traced: TracedServer, request_id: str, names: set[str]
) -> list[ReadableSpan] | None:
    spans = traced.finished(request_id)
    return spans if names <= {s.name for s in spans} else None


def _descendants(root: ReadableSpan, spans: list[ReadableSpan]) -> set[int]:
    """Span ids of ``root`` and everything below it."""
    ids = {root.context.span_id}
    grew = True
    while grew:
        grew = False
        for s in spans:
            if s.parent is not None and s.parent.span_id in ids and s.context.span_id not in ids:
                ids.add(s.context.span_id)
                grew = True
    return ids


# ------------------------------------------------------------------------------- OTLP


class _Receiver(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A local OTLP/HTTP receiver: its traces URL and what it received."""
    received: list[ExportTraceServiceRequest] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}/v1/traces", received
    finally:
        http.shutdown()
        http.server_close()


async def test_a_server_exports_its_spans_over_otlp_when_an_endpoint_is_set(
    spawn: Spawn,
    collector: tuple[str, list[ExportTraceServiceRequest]],
    tokens: dict[Role, str],
) -> None:
    endpoint, received = collector
    server = await spawn(
        "otlp",
        CRM_OTEL_ENDPOINT=endpoint,
        CRM_OTEL_SERVICE_NAME="crm-under-test",
        OTEL_BSP_SCHEDULE_DELAY="200",  # the SDK's batch interval, ms (5 s by default)
    )
    request_id = f"otlp-{uuid.uuid4().hex[:12]}"
    assert (await post(server.url, tokens[Role.MANAGER], PAGE, request_id)).status_code == 200

    def exported() -> dict[str, Any] | None:
        for request in list(received):
            for resource_spans in request.resource_spans:
                service = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }.get("service.name")
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: a.value.string_value for a in span.attributes}
                        if (
                            span.name == "graphql.operation"
                            and attributes.get(REQUEST_ID) == request_id
                        ):
                            return {"service": service, **attributes}
        return None

    span = await wait_for(exported, timeout=20, what="the operation's span at the receiver")
    assert span["service"] == "crm-under-test"
    assert span["graphql.operation.name"] == "CustomerPage"


async def test_the_webhook_dispatchers_polls_start_no_traces(
    settings: Any, exporter: InMemorySpanExporter
) -> None:
    polling = {"webhook_dispatcher": True, "webhook_poll_seconds": 0.02}
    exporter.clear()
    async with support.app_client(settings, **polling) as client:
        await asyncio.sleep(0.5)  # the app's dispatcher polls about 25 times meanwhile
        assert (await client.http.get("/healthz")).status_code == 200
    spans = exporter.get_finished_spans()
    statements = [str((s.attributes or {}).get("db.statement", "")) for s in spans]
    assert not [st for st in statements if "webhook" in st.lower()], statements


async def test_a_websocket_connection_keeps_the_request_id_it_came_with(
    traced: TracedServer, tokens: dict[Role, str]
) -> None:
    import websockets

    request_id = f"socket-{uuid.uuid4().hex[:12]}"
    url = traced.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url,
        subprotocols=["graphql-transport-ws"],
        additional_headers={"X-Request-Id": request_id},  # type: ignore[list-item]
    ) as ws:
        ws_client = support.WSClient(ws, "graphql-transport-ws")
        await ws_client.send(
            {
                "type": "connection_init",
                "payload": {"Authorization": f"Bearer {tokens[Role.AGENT]}"},
            }
        )
        await ws_client.acknowledged()
    # The connection's span, and the Redis and database calls of its credential check.
    spans = await wait_for(lambda: _with_names(traced, request_id, {"HTTP /graphql"}))
    assert any((s.attributes or {}).get("db.system") for s in spans), [s.name for s in spans]
