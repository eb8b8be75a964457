"""Webhook delivery end to end: events of the log reach a real local HTTP receiver,
signed, retried after a failure, still delivered after the server restarts, and never
twice when two server processes dispatch at once."""

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
from crm_graphql.models import DeliveryStatus, Role, Webhook, WebhookDelivery
from crm_graphql.resolvers.ids import from_global_id, to_global_id
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
        got = [(r.headers.get("x-crm-delivery"), r.json["event"]["payload"]) for r in snapshot]
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
    """Log a note; its activity id as event payloads carry it."""
    input = {"type": "NOTE", "subject": subject, "customerId": customer_id}
    payload = await make(client, CREATE_ACTIVITY, "createActivity", input)
    return str(from_global_id(payload["activity"]["id"])[1])


def activities(received: list[Received]) -> list[str]:
    return [r.json["event"]["payload"].get("activity_id") for r in received]


async def test_events_arrive_signed_filtered_and_retried_after_a_500(
    as_role: dict[Role, support.GraphQLClient], receiver: Receiver, settings: Any
) -> None:
    admin = as_role[Role.ADMIN]
    hook_id, secret = await webhook(admin, receiver.url, "activity.created")
    receiver.script = [500]
    ada = await customer(admin)
    async with dispatching_app(settings):
        first = await note(admin, ada, "First call")
        edit = {"id": to_global_id("Activity", first), "subject": "Edited"}
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
        assert body["id"] == request.headers["x-crm-delivery"]
        assert body["webhook_id"] == str(from_global_id(hook_id)[1])
        assert body["event"]["type"] == "activity.created"
        assert body["event"]["entity_type"] == "Activity"
    stale = int(time.time()) - 3600
    assert not verify_signature(secret, f"t={stale},v1=00", got[0].body)

    deliveries = (await admin(DELIVERIES)).ok()["webhooks"]["nodes"][0]["deliveries"]
    assert sorted((d["status"], d["attempts"], d["lastStatusCode"]) for d in deliveries) == [
        ("DELIVERED", 1, 200),
        ("DELIVERED", 2, 200),
    ]


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
    assert got[-1].headers["x-crm-delivery"] == failed[0].headers["x-crm-delivery"] == str(row.id)
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
