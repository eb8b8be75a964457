"""Webhook delivery end to end: events of the log reach a real local HTTP receiver,
signed, in the API's language (payload version 2, docs/events.md; version 1 for webhooks
that keep the stored form), retried after a failure, every attempt listed, sent again on
request, still delivered after the server restarts, and never twice when two server
processes dispatch at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.app import build_app
from crm_graphql.crypto import Keyring
from crm_graphql.global_ids import from_global_id, to_global_id
from crm_graphql.models import DeliveryStatus, Role, Webhook, WebhookDelivery
from crm_graphql.services.webhooks import verify_signature
from crm_graphql.settings import new_encryption_key_entry
from tests import support

CREATE_WEBHOOK = """mutation($i: CreateWebhookInput!) {
  createWebhook(input: $i) { webhook { id } secret errors { code } }
}"""
CREATE_CUSTOMER = """mutation($i: CreateCustomerInput!) {
  createCustomer(input: $i) { customer { id } errors { code } }
}"""
CREATE_ACTIVITY = """mutation($i: CreateActivityInput!) {
  createActivity(input: $i) { activity { id } errors { code } }
}"""
UPDATE_ACTIVITY = """mutation($i: UpdateActivityInput!) {
  updateActivity(input: $i) { activity { id } errors { code } }
}"""
DELIVERIES = "{ webhooks { nodes { deliveries { deliveryId status attempts lastStatusCode } } } }"
ATTEMPTS = """query($id: ID!) { node(id: $id) { ... on Webhook { deliveries {
  id status attempts lastStatusCode lastError deliveredAt
  attemptHistory { attempt statusCode error durationMs attemptedAt } } } } }"""
REDELIVER = """mutation($i: RedeliverWebhookDeliveryInput!) { redeliverWebhookDelivery(input: $i) {
  delivery { id status attempts } errors { code field message } } }"""
WAIT_S = 60.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server in a thread: records every POST, answers with the next scripted
    status (then ``default``)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.received.append(Received(headers, body))
            return self.script.pop(0) if self.script else self.default

    async def wait_for(self, done: Callable[[list[Received]], bool]) -> list[Received]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                snapshot = list(self.received)
            if done(snapshot):
                return snapshot
            await asyncio.sleep(0.05)
        got = [(r.headers.get("x-crm-delivery"), r.json["event"]) for r in snapshot]
        pytest.fail(f"the receiver did not get what was expected; got {got}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.answer({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/crm"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def dispatching_app(settings: Any) -> AsyncIterator[Any]:
    """A server process of its own (app + lifespan) whose dispatcher runs fast."""
    app = build_app(
        settings.model_copy(
            update={
                "webhook_dispatcher": True,
                "webhook_poll_seconds": 0.05,
                "webhook_retry_base_seconds": 0.2,
            }
        )
    )
    async with app.router.lifespan_context(app):
        yield app


async def make(client: support.GraphQLClient, document: str, name: str, input: Any) -> Any:
    payload = (await client(document, {"i": input})).ok()[name]
    assert payload["errors"] == [], payload
    return payload


async def webhook(client: support.GraphQLClient, url: str, *types: str) -> tuple[str, str]:
    payload = await make(
        client, CREATE_WEBHOOK, "createWebhook", {"url": url, "eventTypes": list(types)}
    )
    return payload["webhook"]["id"], payload["secret"]


async def customer(client: support.GraphQLClient) -> str:
    payload = await make(client, CREATE_CUSTOMER, "createCustomer", {"name": "Ada"})
    return payload["customer"]["id"]  # type: ignore[no-any-return]


async def note(client: support.GraphQLClient, customer_id: str, subject: str) -> str:
    """Log a note; its activity's (global) ID, as event payloads carry it."""
    input = {"type": "NOTE", "subject": subject, "customerId": customer_id}
    payload = await make(client, CREATE_ACTIVITY, "createActivity", input)
    return payload["activity"]["id"]  # type: ignore[no-any-return]


def activities(received: list[Received]) -> list[str]:
    """The activity of each request: ``activityId`` (version 2) or the raw UUID of
    ``activity_id`` (version 1) as a global ID."""
    found = []
    for r in received:
        event = r.json["event"]
        if "data" in event:
            found.append(event["data"].get("activityId"))
        else:
            found.append(to_global_id("Activity", event["payload"]["activity_id"]))
    return found


async def test_events_arrive_signed_filtered_and_retried_after_a_500(
    as_role: dict[Role, support.GraphQLClient], receiver: Receiver, settings: Any
) -> None:
    admin = as_role[Role.ADMIN]
    hook_id, secret = await webhook(admin, receiver.url, "activity.created")
    receiver.script = [500]
    ada = await customer(admin)
    async with dispatching_app(settings):
        first = await note(admin, ada, "First call")
        edit = {"id": first, "subject": "Edited"}
        await make(admin, UPDATE_ACTIVITY, "updateActivity", edit)
        second = await note(admin, ada, "Second call")
        got = await receiver.wait_for(
            lambda r: len(r) >= 3 and {first, second} <= set(activities(r))
        )
        await asyncio.sleep(0.3)  # time for an unexpected extra request to show up

    # The update was not subscribed. The two notes went out side by side: the one that
    # met the 500 was retried, with the same delivery id.
    got = list(receiver.received)
    assert sorted(activities(got)) in (
        sorted([first, first, second]),
        sorted([first, second, second]),
    )
    failed = got[0]
    retried = [r for r in got if activities([r]) == activities([failed])]
    other = [r for r in got if activities([r]) != activities([failed])]
    assert len(retried) == 2 and len(other) == 1
    assert retried[0].headers["x-crm-delivery"] == retried[1].headers["x-crm-delivery"]
    assert other[0].headers["x-crm-delivery"] != failed.headers["x-crm-delivery"]
    for request in got:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-crm-event"] == "activity.created"
        assert verify_signature(secret, request.headers["x-crm-signature"], request.body)
        assert not verify_signature("whsec_other", request.headers["x-crm-signature"], request.body)
        assert not verify_signature(secret, request.headers["x-crm-signature"], request.body + b" ")
        body = request.json
        assert body["payloadVersion"] == 2
        assert body["deliveryId"] == request.headers["x-crm-delivery"]
        assert from_global_id(body["deliveryId"])[0] == "WebhookDelivery"
        assert body["webhookId"] == hook_id
        event = body["event"]
        assert event["type"] == "activity.created"
        assert event["entityType"] == "Activity"
        assert event["entityId"] == event["data"]["activityId"]
        assert isinstance(event["id"], int) and event["createdAt"].endswith("+00:00")
        # The catalogue's fields, in the API's names and values (docs/events.md).
        data = event["data"]
        assert set(data) == {
            "activityId",
            "type",
            "customerId",
            "dealId",
            "authorId",
            "occurredAt",
            "version",
        }
        assert data["type"] == "NOTE" and data["customerId"] == ada and data["dealId"] is None
        assert from_global_id(data["authorId"])[0] == "User"
    stale = int(time.time()) - 3600
    assert not verify_signature(secret, f"t={stale},v1=00", got[0].body)

    deliveries = (await admin(DELIVERIES)).ok()["webhooks"]["nodes"][0]["deliveries"]
    assert sorted((d["status"], d["attempts"], d["lastStatusCode"]) for d in deliveries) == [
        ("DELIVERED", 1, 200),
        ("DELIVERED", 2, 200),
    ]
    # Every attempt is listed, with its status code, error, duration and time.
    listed = (await admin(ATTEMPTS, {"id": hook_id})).ok()["node"]["deliveries"]
    by_id = {d["id"]: d for d in listed}
    history = by_id[failed.headers["x-crm-delivery"]]["attemptHistory"]
    assert [(a["attempt"], a["statusCode"], a["error"]) for a in history] == [
        (1, 500, "HTTP 500"),
        (2, 200, None),
    ]
    assert all(a["durationMs"] >= 0 for a in history)
    assert history[0]["attemptedAt"] < history[1]["attemptedAt"]
    single = by_id[other[0].headers["x-crm-delivery"]]["attemptHistory"]
    assert [(a["attempt"], a["statusCode"]) for a in single] == [(1, 200)]


async def test_a_pending_delivery_is_made_after_a_restart(
    as_role: dict[Role, support.GraphQLClient],
    receiver: Receiver,
    settings: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = as_role[Role.ADMIN]
    hook_id, secret = await webhook(admin, receiver.url)
    receiver.default = 503  # the receiver is down
    ada = await customer(admin)
    async with dispatching_app(settings):
        down = await note(admin, ada, "While down")
        failed = await receiver.wait_for(lambda r: len(r) >= 1)
    # The server is gone; the delivery waits in PostgreSQL.
    async with sessionmaker() as session:
        row = await session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == from_global_id(hook_id)[1])
        )
    assert row is not None and row.status is DeliveryStatus.PENDING
    receiver.default = 200
    count = len(receiver.received)
    async with dispatching_app(settings):  # a new server process
        got = await receiver.wait_for(lambda r: len(r) > count and activities(r)[-1] == down)
    delivery_id = to_global_id("WebhookDelivery", row.id)
    assert got[-1].headers["x-crm-delivery"] == failed[0].headers["x-crm-delivery"] == delivery_id
    assert verify_signature(secret, got[-1].headers["x-crm-signature"], got[-1].body)
    async with sessionmaker() as session:
        status = await session.scalar(
            select(WebhookDelivery.status).where(WebhookDelivery.id == row.id)
        )
    assert status is DeliveryStatus.DELIVERED


async def test_two_dispatching_servers_deliver_each_event_once(
    as_role: dict[Role, support.GraphQLClient], receiver: Receiver, settings: Any
) -> None:
    admin = as_role[Role.ADMIN]
    await webhook(admin, receiver.url, "activity.created")
    ada = await customer(admin)
    async with dispatching_app(settings), dispatching_app(settings):
        made = [await note(admin, ada, f"Note {i}") for i in range(20)]
        got = await receiver.wait_for(lambda r: set(made) <= set(activities(r)))
        await asyncio.sleep(0.5)  # time for a duplicate to show up, if there were one
    ids = [r.headers["x-crm-delivery"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 20, ids
    assert sorted(activities(got)) == sorted(made)


async def test_inactive_webhooks_receive_nothing(
    as_role: dict[Role, support.GraphQLClient], receiver: Receiver, settings: Any
) -> None:
    admin = as_role[Role.ADMIN]
    payload = await make(
        admin, CREATE_WEBHOOK, "createWebhook", {"url": receiver.url, "isActive": False}
    )
    assert payload["webhook"]["id"]
    async with dispatching_app(settings) as app:
        ada = await customer(admin)
        await note(admin, ada, "Nobody listens")
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            listed = await support.GraphQLClient(http, admin.token)(DELIVERIES)
    assert receiver.received == []
    assert listed.ok()["webhooks"]["nodes"][0]["deliveries"] == []


async def test_a_secret_that_does_not_decrypt_blocks_only_its_own_webhook(
    as_role: dict[Role, support.GraphQLClient],
    receiver: Receiver,
    settings: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = as_role[Role.ADMIN]
    broken, _ = await webhook(admin, receiver.url + "?broken", "activity.created")
    await webhook(admin, receiver.url, "activity.created")
    foreign = Keyring.from_entries([new_encryption_key_entry("gone")]).encrypt("whsec_x")
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Webhook)
            .where(Webhook.id == from_global_id(broken)[1])
            .values(secret_encrypted=foreign)
        )
    ada = await customer(admin)
    async with dispatching_app(settings):
        made = [await note(admin, ada, f"Note {i}") for i in range(3)]
        got = await receiver.wait_for(lambda r: set(made) <= set(activities(r)))
    assert len(got) == 3  # all three to the working webhook, none to the broken one
    async with sessionmaker() as session:
        errors = list(
            await session.scalars(
                select(WebhookDelivery.last_error).where(
                    WebhookDelivery.webhook_id == from_global_id(broken)[1]
                )
            )
        )
    assert len(errors) == 3 and all(e and "'gone'" in e for e in errors)


async def test_attempts_are_counted_at_metrics_by_outcome(
    as_role: dict[Role, support.GraphQLClient], receiver: Receiver, settings: Any
) -> None:
    admin = as_role[Role.ADMIN]
    await webhook(admin, receiver.url, "activity.created")
    receiver.script = [500]
    ada = await customer(admin)
    attempts = "crm_graphql_webhook_attempts_total"
    async with dispatching_app(settings) as app:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

            async def scrape() -> support.MetricSamples:
                return support.metric_samples((await http.get("/metrics")).text)

            before = await scrape()
            await note(admin, ada, "Metered call")
            await receiver.wait_for(lambda r: len(r) >= 2)  # the 500, then the retry
            deadline = time.monotonic() + WAIT_S

            def counted(samples: support.MetricSamples) -> set[str]:
                return {
                    outcome
                    for outcome in ("retry", "delivered")
                    if support.metric(samples, attempts, outcome=outcome)
                    >= support.metric(before, attempts, outcome=outcome) + 1
                }

            # Outcomes are counted once their round has committed, which can be after the
            # receiver saw the request; other apps of this process count in the same
            # registry, so wait for both outcomes rather than for any delivery.
            while counted(after := await scrape()) != {"retry", "delivered"}:
                assert time.monotonic() < deadline, counted(after)
                await asyncio.sleep(0.05)
    assert ("crm_graphql_webhook_backlog", frozenset()) in after


async def _deliveries(admin: support.GraphQLClient, hook_id: str) -> list[dict[str, Any]]:
    return (await admin(ATTEMPTS, {"id": hook_id})).ok()["node"]["deliveries"]  # type: ignore[no-any-return]


async def _until(
    admin: support.GraphQLClient, hook_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The webhook's one delivery, once ``done`` holds for it (outcomes are recorded after
    the receiver saw the request)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        listed = await _deliveries(admin, hook_id)
        if len(listed) == 1 and done(listed[0]):
            return listed[0]
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.05)


async def test_a_finished_delivery_is_sent_again_on_request(
    as_role: dict[Role, support.GraphQLClient], receiver: Receiver, settings: Any
) -> None:
    admin = as_role[Role.ADMIN]
    hook_id, secret = await webhook(admin, receiver.url, "activity.created")
    ada = await customer(admin)
    async with dispatching_app(settings):
        made = await note(admin, ada, "Once")
        first = await receiver.wait_for(lambda r: len(r) >= 1)
        delivery = await _until(admin, hook_id, lambda d: d["status"] == "DELIVERED")
        assert delivery["id"] == first[0].headers["x-crm-delivery"]
        redone = (await admin(REDELIVER, {"i": {"id": delivery["id"]}})).ok()
        payload = redone["redeliverWebhookDelivery"]
        assert payload["errors"] == []
        assert payload["delivery"]["status"] == "PENDING"
        again = await receiver.wait_for(lambda r: len(r) >= 2)
        done = await _until(
            admin, hook_id, lambda d: d["status"] == "DELIVERED" and d["attempts"] == 2
        )
    # The same delivery, the same event, signed anew.
    assert again[1].headers["x-crm-delivery"] == delivery["id"]
    assert again[1].json == again[0].json
    assert activities(again) == [made, made]
    assert verify_signature(secret, again[1].headers["x-crm-signature"], again[1].body)
    assert [(a["attempt"], a["statusCode"]) for a in done["attemptHistory"]] == [
        (1, 200),
        (2, 200),
    ]
    # Audited, in the API's names.
    entries = (
        await admin(
            """{ auditLog(filter: {action: {eq: "redeliverWebhookDelivery"}}) {
              nodes { entityId entityType changes } } }"""
        )
    ).ok()["auditLog"]["nodes"]
    assert entries == [
        {
            "entityId": delivery["id"],
            "entityType": "WebhookDelivery",
            "changes": {"status": {"before": "DELIVERED", "after": "PENDING"}},
        }
    ]


async def test_redelivery_is_refused_while_pending_and_for_an_inactive_webhook(
    as_role: dict[Role, support.GraphQLClient], receiver: Receiver, settings: Any
) -> None:
    admin = as_role[Role.ADMIN]
    hook_id, _ = await webhook(admin, receiver.url, "activity.created")
    receiver.default = 503
    ada = await customer(admin)
    async with dispatching_app(settings):
        await note(admin, ada, "Refused")
        await receiver.wait_for(lambda r: len(r) >= 1)
        pending = await _until(admin, hook_id, lambda d: len(d["attemptHistory"]) >= 1)
        assert pending["status"] == "PENDING"
        refused = (await admin(REDELIVER, {"i": {"id": pending["id"]}})).ok()
        assert [(e["code"], e["field"]) for e in refused["redeliverWebhookDelivery"]["errors"]] == [
            ("CONFLICT", "id")
        ]
        # Deactivated: its pending delivery fails, and cannot be sent again.
        update = """mutation($i: UpdateWebhookInput!) { updateWebhook(input: $i) {
          errors { code } } }"""
        await admin(update, {"i": {"id": hook_id, "isActive": False}})
        failed = await _until(admin, hook_id, lambda d: d["status"] == "FAILED")
    inactive = (await admin(REDELIVER, {"i": {"id": failed["id"]}})).ok()
    assert [e["code"] for e in inactive["redeliverWebhookDelivery"]["errors"]] == ["VALIDATION"]
    history = failed["attemptHistory"]
    assert history and all(a["statusCode"] == 503 and a["error"] == "HTTP 503" for a in history)


async def test_a_version_1_webhook_keeps_the_stored_form_until_moved(
    as_role: dict[Role, support.GraphQLClient], receiver: Receiver, settings: Any
) -> None:
    admin = as_role[Role.ADMIN]
    created = await make(
        admin,
        CREATE_WEBHOOK,
        "createWebhook",
        {"url": receiver.url, "eventTypes": ["activity.created"], "payloadVersion": 1},
    )
    hook_id = created["webhook"]["id"]
    ada = await customer(admin)
    async with dispatching_app(settings):
        old = await note(admin, ada, "Old form")
        got = await receiver.wait_for(lambda r: len(r) >= 1)
        body = got[0].json
        assert set(body) == {"id", "webhook_id", "workspace_id", "event"}
        assert body["id"] == got[0].headers["x-crm-delivery"]
        assert to_global_id("WebhookDelivery", body["id"]) != body["id"]
        assert body["webhook_id"] == str(from_global_id(hook_id)[1])
        assert body["event"]["payload"]["activity_id"] == str(from_global_id(old)[1])
        assert body["event"]["payload"]["type"] == "note"

        update = """mutation($i: UpdateWebhookInput!) { updateWebhook(input: $i) {
          webhook { payloadVersion } errors { code field } } }"""
        wrong = (await admin(update, {"i": {"id": hook_id, "payloadVersion": 3}})).ok()
        assert wrong["updateWebhook"]["errors"] == [
            {"code": "VALIDATION", "field": "payloadVersion"}
        ]
        moved = (await admin(update, {"i": {"id": hook_id, "payloadVersion": 2}})).ok()
        assert moved["updateWebhook"]["webhook"] == {"payloadVersion": 2}
        new = await note(admin, ada, "New form")
        got = await receiver.wait_for(lambda r: len(r) >= 2)
    assert got[1].json["payloadVersion"] == 2
    assert got[1].json["event"]["data"]["activityId"] == new
