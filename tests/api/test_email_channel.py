"""The email channel end to end (docs/decisions/0035-email-channel.md): an agent's
message in an EMAIL conversation reaches a real local SMTP relay (aiosmtpd, started by the
test) with threading headers and a signed reply address; a relay that is down means
RETRYING, then SENT once it is up, or FAILED with the reason after the attempt limit;
the customer's reply, posted as signed raw MIME or handed to the built-in SMTP listener,
threads into the conversation, is delivered live to a subscribed agent, and keeps its
attachments; hostile mail gets a clear 4xx, never a 500 and never another tenant's
conversation."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.app import build_app
from crm_graphql.global_ids import from_global_id
from crm_graphql.mail.channel import email_config
from crm_graphql.models import Conversation, Message, Role, User, Workspace
from crm_graphql.services import auth
from crm_graphql.services import email as email_service
from crm_graphql.services.webhooks import sign
from tests import support

SECRET = "inbound-test-secret"
DOMAIN = "mail.crm.test"
MAIL_FROM = f"Acme Support <support@{DOMAIN}>"
WAIT_S = 30.0

START = """mutation($i: StartConversationInput!) {
  startConversation(input: $i) { conversation { id } errors { code message } } }"""
SEND = """mutation($c: ID!, $b: String!) {
  sendMessage(input: {conversationId: $c, body: $b}) { message { id } errors { code } } }"""
CUSTOMER = """mutation($i: CreateCustomerInput!) {
  createCustomer(input: $i) { customer { id } errors { code } } }"""
DELIVERY = """query($id: ID!) { node(id: $id) { ... on Message {
  body delivery { direction status attempts error sentAt nextAttemptAt rfcMessageId
                  sender recipients subject } } } }"""
MESSAGES = """query($id: ID!) { node(id: $id) { ... on Conversation {
  subject channel customer { email name }
  messages { edges { node { id seq authorType body
    delivery { direction rfcMessageId sender subject }
    attachments { id filename contentType size url } } } } } } }"""
EVENTS = """subscription($c: ID!) { conversationEvents(conversationId: $c) {
  type message { body authorType delivery { status } } } }"""


# ---------------------------------------------------------------------------- relay


@dataclass
class Relay:
    """A real SMTP server (aiosmtpd in a thread) standing in for the mail relay."""

    port: int
    received: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    refuse_with: str | None = None  # an RCPT answer, e.g. "550 5.1.1 No such user"
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse_with:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        with self.lock:
            self.received.append((envelope, parsed))  # type: ignore[arg-type]
        return "250 Message accepted"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def wait_for(self, count: int, to: str) -> list[tuple[Envelope, EmailMessage]]:
        """The mails to ``to`` once there are ``count`` (the shared database may hold
        other tests' unsent mail, which a dispatcher here sends too)."""
        deadline = time.monotonic() + WAIT_S
        mine: list[tuple[Envelope, EmailMessage]] = []
        while time.monotonic() < deadline:
            with self.lock:
                mine = [(e, m) for e, m in self.received if to in e.rcpt_tos]
            if len(mine) >= count:
                await asyncio.sleep(0.2)  # an unexpected extra mail has time to show
                with self.lock:
                    return [(e, m) for e, m in self.received if to in e.rcpt_tos]
            await asyncio.sleep(0.05)
        pytest.fail(f"the relay got {len(mine)} mails to {to}, expected {count}")


@pytest.fixture
def relay() -> Iterator[Relay]:
    state = Relay(support.free_port())
    state.start()
    yield state
    state.stop()


@contextlib.asynccontextmanager
async def mail_app(settings: Any, relay_port: int, **overrides: Any) -> AsyncIterator[Any]:
    """An app of its own (a server process's lifespan: dispatcher included) sending to
    the relay on ``relay_port``, with fast polls and retries."""
    values = {
        "smtp_host": "127.0.0.1",
        "smtp_port": relay_port,
        "smtp_starttls": False,
        "smtp_timeout_seconds": 2.0,
        "mail_from": MAIL_FROM,
        "mail_poll_seconds": 0.05,
        "mail_retry_base_seconds": 0.2,
        "inbound_email_secret": SECRET,
        **overrides,
    }
    app = build_app(settings.model_copy(update=values))
    async with app.router.lifespan_context(app):
        yield app


@contextlib.asynccontextmanager
async def client_of(app: Any, token: str | None = None) -> AsyncIterator[support.GraphQLClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield support.GraphQLClient(http, token)


def config(settings: Any) -> email_service.EmailConfig:
    return email_config(settings.model_copy(update={"mail_from": MAIL_FROM}), settings.secret_key)


def unique_address() -> str:
    return f"ada-{uuid.uuid4().hex[:10]}@customer.test"


async def email_conversation(client: support.GraphQLClient, address: str | None) -> str:
    data: dict[str, Any] = {"name": "Ada Lovelace"}
    if address:
        data["email"] = address
    created = (await client(CUSTOMER, {"i": data})).ok()["createCustomer"]
    assert created["errors"] == [], created
    started = (
        await client(
            START,
            {
                "i": {
                    "customerId": created["customer"]["id"],
                    "channel": "EMAIL",
                    "subject": "Invoice 42",
                }
            },
        )
    ).ok()["startConversation"]
    assert started["errors"] == [], started
    return started["conversation"]["id"]  # type: ignore[no-any-return]


async def send(client: support.GraphQLClient, conversation: str, body: str) -> str:
    sent = (await client(SEND, {"c": conversation, "b": body})).ok()["sendMessage"]
    assert sent["errors"] == [], sent
    return sent["message"]["id"]  # type: ignore[no-any-return]


async def delivery_when(
    client: support.GraphQLClient, message: str, done: Any, what: str
) -> dict[str, Any]:
    """The message's delivery once ``done(delivery)`` holds."""
    deadline = time.monotonic() + WAIT_S
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = (await client(DELIVERY, {"id": message})).ok()["node"]["delivery"]
        if done(seen):
            return seen
        await asyncio.sleep(0.05)
    pytest.fail(f"the delivery never became {what}: {seen}")


# ------------------------------------------------------------------------- outbound


async def test_an_agents_message_is_mailed_with_threading_headers_and_a_reply_address(
    settings: Any, relay: Relay, tokens: dict[Role, str], users: dict[Role, User]
) -> None:
    async with mail_app(settings, relay.port) as app, client_of(app, tokens[Role.AGENT]) as agent:
        ada = unique_address()
        conversation = await email_conversation(agent, ada)
        first = await send(agent, conversation, "Hello Ada,\nyour invoice is attached.")
        pending = (await agent(DELIVERY, {"id": first})).ok()["node"]["delivery"]
        assert pending["direction"] == "OUTBOUND"
        assert pending["status"] in ("PENDING", "SENT")  # the dispatcher may be quick
        [(envelope, mail)] = await relay.wait_for(1, ada)
        second = await send(agent, conversation, "Did it arrive?")
        received = await relay.wait_for(2, ada)
        sent = await delivery_when(agent, first, lambda d: d["status"] == "SENT", "SENT")

    assert envelope.rcpt_tos == [ada] and len(received) == 2
    # The envelope sender is the mail's own signed bounce address (VERP): reports of
    # its delivery come back to this server and name the mail.
    bounce = email_service.route_of(config(settings), envelope.mail_from)
    assert bounce is not None and bounce.kind == "bounce", envelope.mail_from
    assert mail["To"] == ada
    assert mail["Subject"] == "Invoice 42"
    assert "Agent User" in mail["From"] and f"support@{DOMAIN}" in mail["From"]
    # SMTP's line ends are CRLF.
    assert mail.get_content().split() == "Hello Ada,\nyour invoice is attached.".split()
    assert mail.get_content_type() == "text/plain"
    first_id = str(mail["Message-ID"]).strip("<>")
    assert first_id == sent["rfcMessageId"] and first_id.endswith("@" + DOMAIN)
    assert sent["attempts"] == 1 and sent["error"] is None and sent["sentAt"]
    # The reply address names this conversation, signed: it routes back here.
    reply_to = str(mail["Reply-To"])
    assert reply_to.startswith("reply+") and reply_to.endswith("@" + DOMAIN)
    route = email_service.route_of(config(settings), reply_to)
    assert route is not None and uuid.UUID(bytes=route.token) == from_global_id(conversation)[1]
    # The second mail threads under the first.
    follow_up = received[1][1]
    assert str(follow_up["In-Reply-To"]) == f"<{first_id}>"
    assert str(follow_up["References"]) == f"<{first_id}>"
    assert follow_up["Subject"] == "Re: Invoice 42"
    assert str(follow_up["Reply-To"]) == reply_to
    assert second != first


async def test_a_relay_that_is_down_means_retrying_then_sent_once_it_is_up(
    settings: Any, tokens: dict[Role, str]
) -> None:
    relay = Relay(support.free_port())  # not started: connections are refused
    try:
        async with (
            mail_app(settings, relay.port, mail_max_attempts=50) as app,
            client_of(app, tokens[Role.AGENT]) as agent,
        ):
            ada = unique_address()
            conversation = await email_conversation(agent, ada)
            message = await send(agent, conversation, "Are you there?")
            retrying = await delivery_when(
                agent,
                message,
                lambda d: d["status"] == "RETRYING" and d["attempts"] >= 2,
                "RETRYING twice",
            )
            assert retrying["error"] and retrying["nextAttemptAt"]
            # An attempt is counted when it is claimed, before it connects: the one seen
            # may still be on its way and would reach a relay started now. Once the next
            # one is claimed, the one seen has failed.
            await delivery_when(
                agent,
                message,
                lambda d: d["attempts"] > retrying["attempts"],
                "the attempt after the one seen",
            )
            relay.start()
            sent = await delivery_when(agent, message, lambda d: d["status"] == "SENT", "SENT")
            [(_, mail)] = await relay.wait_for(1, ada)
    finally:
        relay.stop()
    assert sent["attempts"] > retrying["attempts"] and sent["error"] is None
    assert mail.get_content().strip() == "Are you there?"


async def test_mail_fails_with_the_reason_after_the_attempt_limit_or_a_refusal(
    settings: Any, relay: Relay, tokens: dict[Role, str]
) -> None:
    down = support.free_port()
    async with (
        mail_app(settings, down, mail_max_attempts=2) as app,
        client_of(app, tokens[Role.AGENT]) as agent,
    ):
        conversation = await email_conversation(agent, unique_address())
        message = await send(agent, conversation, "Anyone?")
        failed = await delivery_when(agent, message, lambda d: d["status"] == "FAILED", "FAILED")
        assert failed["attempts"] == 2 and failed["error"]
        assert failed["nextAttemptAt"] is None
        # Nobody to write to: failed at once, with the reason.
        no_address = await email_conversation(agent, address=None)
        orphan = await send(agent, no_address, "To whom?")
        at_once = (await agent(DELIVERY, {"id": orphan})).ok()["node"]["delivery"]
        assert at_once["status"] == "FAILED" and "no email address" in at_once["error"]
    relay.refuse_with = "550 5.1.1 No such user here"
    async with mail_app(settings, relay.port) as app, client_of(app, tokens[Role.AGENT]) as agent:
        conversation = await email_conversation(agent, unique_address())
        message = await send(agent, conversation, "Hello?")
        refused = await delivery_when(agent, message, lambda d: d["status"] == "FAILED", "FAILED")
    assert refused["attempts"] == 1 and "No such user here" in refused["error"]


async def test_mail_is_not_lost_while_nobody_sends_or_when_a_sender_dies_mid_send(
    settings: Any,
    relay: Relay,
    client: support.GraphQLClient,
    tokens: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # Written through a server that sends no mail (the shared app has no relay).
    agent = support.GraphQLClient(client.http, tokens[Role.AGENT])
    ada = unique_address()
    conversation = await email_conversation(agent, ada)
    message = await send(agent, conversation, "Written while nobody sends")
    # A process claims it and dies before sending: its lease runs out.
    async with sessionmaker() as session, session.begin():
        claimed = await email_service.claim_due(
            session, config(settings), limit=1000, lease=timedelta(seconds=1)
        )
    assert from_global_id(message)[1] in {job.message_id for job in claimed}
    async with mail_app(settings, relay.port) as app, client_of(app, tokens[Role.AGENT]) as fresh:
        [(_, mail)] = await relay.wait_for(1, ada)
        sent = await delivery_when(fresh, message, lambda d: d["status"] == "SENT", "SENT")
    assert mail.get_content().strip() == "Written while nobody sends"
    assert sent["attempts"] == 2  # the dead process's claim, then the one that sent


# -------------------------------------------------------------------------- inbound


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-CRM-Signature": sign(secret, int(time.time()), body)}


def mime(
    *,
    to: str,
    sender: str = "Ada Lovelace <ada@customer.test>",
    subject: str = "Re: Invoice 42",
    body: str = "Thanks, got it!",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = message_id or f"<{uuid.uuid4()}@customer.test>"
    if in_reply_to:
        mail["In-Reply-To"] = f"<{in_reply_to}>"
        mail["References"] = f"<{in_reply_to}>"
    mail.set_content(body)
    for filename, content_type, content in attachments:
        maintype, subtype = content_type.split("/")
        mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes()


async def post_mail(http: httpx.AsyncClient, raw: bytes, **headers: str) -> httpx.Response:
    return await http.post(
        "/inbound/email",
        content=raw,
        headers={"Content-Type": "message/rfc822", **signed(raw), **headers},
    )


async def messages_of(client: support.GraphQLClient, conversation: str) -> dict[str, Any]:
    return (await client(MESSAGES, {"id": conversation})).ok()["node"]  # type: ignore[no-any-return]


async def test_a_signed_reply_threads_into_the_conversation_with_its_attachments(
    settings: Any,
    relay: Relay,
    tokens: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    pdf = b"%PDF-1.4 invoice " + bytes(range(256)) * 4
    async with mail_app(settings, relay.port) as app, client_of(app, tokens[Role.AGENT]) as agent:
        ada = unique_address()
        conversation = await email_conversation(agent, ada)
        first = await send(agent, conversation, "Please find the invoice.")
        [(_, sent)] = await relay.wait_for(1, ada)
        reply = mime(
            to=str(sent["Reply-To"]),
            sender=f"Ada Lovelace <{ada}>",
            in_reply_to=str(sent["Message-ID"]).strip("<>"),
            body="Thanks! Here is the signed copy.",
            attachments=[("signed invoice.pdf", "application/pdf", pdf)],
        )
        answer = await post_mail(agent.http, reply)
        assert answer.status_code == 201, answer.text
        assert answer.json()["conversationId"] == conversation
        assert answer.json()["startedConversation"] is False
        again = await post_mail(agent.http, reply)  # the mail system retries: not twice
        assert again.status_code == 200 and again.json()["duplicate"] is True
        thread = await messages_of(agent, conversation)
        [attachment] = thread["messages"]["edges"][1]["node"]["attachments"]
        download = await agent.http.get(
            attachment["url"], headers={"Authorization": f"Bearer {tokens[Role.AGENT]}"}
        )
        anonymous = await agent.http.get(attachment["url"])
        # Another workspace's admin: the attachment does not exist for them.
        async with sessionmaker() as session, session.begin():
            other = await auth.create_workspace(session, name=f"Other {uuid.uuid4().hex[:8]}")
            outsider = await auth.create_user(
                session,
                workspace=other,
                email=f"outsider-{uuid.uuid4().hex[:8]}@example.com",
                password=support.PASSWORD,
                role=Role.ADMIN,
            )
        outsider_token = auth.issue_access_token(
            auth.TokenConfig(secret_key=settings.secret_key), outsider
        )[0]
        foreign = await agent.http.get(
            attachment["url"], headers={"Authorization": f"Bearer {outsider_token}"}
        )
    edges = [e["node"] for e in thread["messages"]["edges"]]
    assert [(m["authorType"], m["body"]) for m in edges] == [
        ("AGENT", "Please find the invoice."),
        ("CUSTOMER", "Thanks! Here is the signed copy."),
    ]
    assert edges[0]["id"] == first
    assert edges[1]["delivery"]["direction"] == "INBOUND"
    assert edges[1]["delivery"]["sender"] == ada
    assert attachment["filename"] == "signed invoice.pdf"
    assert attachment["contentType"] == "application/pdf" and attachment["size"] == len(pdf)
    assert download.status_code == 200 and download.content == pdf
    assert download.headers["content-type"] == "application/pdf"
    assert "attachment;" in download.headers["content-disposition"]
    assert anonymous.status_code == 401
    assert foreign.status_code == 404


async def test_mail_to_the_inbox_address_opens_a_conversation_for_a_new_customer(
    settings: Any, relay: Relay, tokens: dict[Role, str], workspace: Workspace
) -> None:
    inbox = email_service.inbox_address(config(settings), workspace.id)
    raw = mime(
        to=inbox,
        sender="Grace Hopper <Grace@Navy.test>",
        subject="Fwd: Re: My order is late",
        body="Where is my order?",
    )
    async with mail_app(settings, relay.port) as app, client_of(app, tokens[Role.AGENT]) as agent:
        answer = await post_mail(agent.http, raw)
        assert answer.status_code == 201, answer.text
        assert answer.json()["startedConversation"] is True
        conversation = answer.json()["conversationId"]
        thread = await messages_of(agent, conversation)
        # Her next mail, to the inbox address again, naming the first: the same thread.
        first_id = thread["messages"]["edges"][0]["node"]["delivery"]["rfcMessageId"]
        follow = mime(to=inbox, sender="grace@navy.test", body="Any news?", in_reply_to=first_id)
        threaded = await post_mail(agent.http, follow)
        # Someone else naming her mail's Message-ID does not get into her conversation.
        intruder = mime(
            to=inbox, sender="mallory@evil.test", body="Let me in", in_reply_to=first_id
        )
        apart = await post_mail(agent.http, intruder)
    assert thread["channel"] == "EMAIL" and thread["subject"] == "My order is late"
    assert thread["customer"] == {"email": "grace@navy.test", "name": "Grace Hopper"}
    assert [e["node"]["body"] for e in thread["messages"]["edges"]] == ["Where is my order?"]
    assert threaded.status_code == 201 and threaded.json()["conversationId"] == conversation
    assert apart.status_code == 201 and apart.json()["conversationId"] != conversation


async def test_hostile_mail_gets_a_clear_4xx_and_never_another_tenants_conversation(
    settings: Any,
    relay: Relay,
    tokens: dict[Role, str],
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    mail_config = config(settings)
    inbox = email_service.inbox_address(mail_config, workspace.id)
    async with (
        mail_app(settings, relay.port, inbound_email_max_bytes=200_000) as app,
        client_of(app, tokens[Role.AGENT]) as agent,
    ):
        # Another tenant's conversation, and one of its mails' Message-ID.
        async with sessionmaker() as session, session.begin():
            other = await auth.create_workspace(session, name=f"Rival {uuid.uuid4().hex[:8]}")
        rival_raw = mime(to=email_service.inbox_address(mail_config, other.id))
        rival = (await post_mail(agent.http, rival_raw)).json()
        rival_id = email.message_from_bytes(rival_raw)["Message-ID"].strip("<>")
        ada = unique_address()
        mine = await email_conversation(agent, ada)
        http = agent.http
        plain = mime(to=inbox)
        unsigned = await http.post("/inbound/email", content=plain)
        badly_signed = await http.post(
            "/inbound/email", content=plain, headers=signed(plain, "wrong")
        )
        stale = await http.post(
            "/inbound/email",
            content=plain,
            headers={"X-CRM-Signature": sign(SECRET, int(time.time()) - 3600, plain)},
        )
        huge = mime(to=inbox, attachments=[("big.bin", "application/octet-stream", b"x" * 300_000)])
        too_big = await post_mail(http, huge)
        no_headers = await post_mail(http, b"just some text without any header\r\n")
        empty = await post_mail(http, b"")
        nowhere = await post_mail(http, mime(to="someone@elsewhere.test"))
        # A reply address for our conversation with a forged signature.
        forged_address = email_service.reply_address(
            email_service.EmailConfig(mail_from=MAIL_FROM, signing_key=b"guess"),
            workspace.id,
            from_global_id(mine)[1],
        )
        forged = await post_mail(http, mime(to=forged_address))
        # A reply address of the rival's conversation signed for our workspace.
        crossed_address = email_service.reply_address(
            mail_config, workspace.id, from_global_id(rival["conversationId"])[1]
        )
        crossed = await post_mail(http, mime(to=crossed_address))
        # Naming the rival's Message-ID from our inbox: a conversation of our own.
        spoofed = await post_mail(http, mime(to=inbox, sender=ada, in_reply_to=rival_id))
        charset = (
            f"From: ada@customer.test\r\nTo: {inbox}\r\nSubject: =?x-unknown?q?Hi?=\r\n"
            "Message-ID: <charset-1@customer.test>\r\n"
            "Content-Type: text/plain; charset=x-klingon\r\n\r\nCaf\xe9 ok\r\n"
        ).encode("latin-1")
        odd_charset = await post_mail(http, charset)
        broken = (
            f"From: ada@customer.test\r\nTo: {inbox}\r\nMessage-ID: <broken-1@customer.test>\r\n"
            'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
            "--never-closed\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64"
            "\r\n\r\n!!!not base64!!!\r\n"
        ).encode()
        broken_mime = await post_mail(http, broken)
        odd_thread = await messages_of(agent, odd_charset.json()["conversationId"])
        broken_thread = await messages_of(agent, broken_mime.json()["conversationId"])

    for response in (unsigned, badly_signed, stale):
        assert response.status_code == 401 and response.json()["error"]["message"]
    assert too_big.status_code == 413 and "at most 200,000 bytes" in too_big.text
    assert no_headers.status_code == 422 and "no sender" in no_headers.json()["error"]["message"]
    assert empty.status_code == 400
    assert nowhere.status_code == 422 and DOMAIN in nowhere.json()["error"]["message"]
    assert forged.status_code == 403 and crossed.status_code == 403
    assert spoofed.status_code == 201
    assert spoofed.json()["conversationId"] not in (rival["conversationId"], mine)
    assert odd_charset.status_code == 201
    assert odd_thread["messages"]["edges"][0]["node"]["body"] == "Caf\ufffd ok"
    assert broken_mime.status_code == 201
    # The rival's conversation got nothing from us.
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Conversation.workspace_id == other.id)
        )
    assert count == 1
    assert broken_thread["messages"]["edges"][0]["node"]["body"]


# ------------------------------------------------------------- live server, SMTP in


@pytest.fixture(scope="module")
def mail_server(settings: Any) -> Iterator[tuple[str, int, Relay]]:
    """A real uvicorn sending to a relay of the test's, taking inbound mail over HTTP
    and with the built-in SMTP listener."""
    smtp_port = support.free_port()
    relay = Relay(support.free_port())
    relay.start()
    extra = {
        "CRM_WEBHOOK_DISPATCHER": "false",
        "CRM_MAIL_FROM": MAIL_FROM,
        "CRM_SMTP_HOST": "127.0.0.1",
        "CRM_SMTP_PORT": str(relay.port),
        "CRM_SMTP_STARTTLS": "false",
        "CRM_MAIL_POLL_SECONDS": "0.1",
        "CRM_INBOUND_EMAIL_SECRET": SECRET,
        "CRM_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
    }
    try:
        with support.run_uvicorn(settings, extra_env=extra) as base_url:
            yield base_url, smtp_port, relay
    finally:
        relay.stop()


async def test_delivery_and_replies_are_live_and_the_smtp_listener_takes_mail_too(
    settings: Any,
    mail_server: tuple[str, int, Relay],
    tokens: dict[Role, str],
    workspace: Workspace,
) -> None:
    base_url, smtp_port, relay = mail_server
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
        agent = support.GraphQLClient(http, tokens[Role.AGENT])
        ada = unique_address()
        conversation = await email_conversation(agent, ada)
        reply_to = email_service.reply_address(
            config(settings), workspace.id, from_global_id(conversation)[1]
        )
        ws = await support.WSClient.connect(base_url, tokens[Role.AGENT])
        try:
            await ws.acknowledged()
            await ws.subscribe(EVENTS, {"c": conversation})
            await asyncio.sleep(0.3)
            # The agent's answer, then its delivery, live.
            await send(agent, conversation, "We are on it")
            created = (await ws.next_data())["conversationEvents"]
            assert created["type"] == "message.created"
            assert created["message"]["body"] == "We are on it"
            changed = (await ws.next_data())["conversationEvents"]
            assert changed["type"] == "message.delivery_changed"
            assert changed["message"]["delivery"] == {"status": "SENT"}
            [(_, sent)] = await relay.wait_for(1, ada)
            assert str(sent["Reply-To"]) == reply_to
            posted = await post_mail(http, mime(to=reply_to, body="Posted over HTTP"))
            assert posted.status_code == 201, posted.text
            live = (await ws.next_data())["conversationEvents"]
            assert live["type"] == "message.created"
            assert live["message"]["body"] == "Posted over HTTP"
            assert live["message"]["authorType"] == "CUSTOMER"
            assert live["message"]["delivery"] == {"status": None}
            # The same, handed to the SMTP listener by a mail server.
            over_smtp = mime(to=reply_to, body="Delivered over SMTP")
            await asyncio.to_thread(_smtp_send, smtp_port, reply_to, over_smtp)
            live = (await ws.next_data())["conversationEvents"]
            assert live["message"]["body"] == "Delivered over SMTP"
            refused = await asyncio.to_thread(
                _smtp_refusal, smtp_port, "nobody@elsewhere.test", over_smtp
            )
            forged = email_service.reply_address(
                email_service.EmailConfig(mail_from=MAIL_FROM, signing_key=b"guess"),
                workspace.id,
                from_global_id(conversation)[1],
            )
            refused_forged = await asyncio.to_thread(_smtp_refusal, smtp_port, forged, over_smtp)
        finally:
            await ws.close()
        thread = await messages_of(agent, conversation)
    assert [e["node"]["body"] for e in thread["messages"]["edges"]] == [
        "We are on it",
        "Posted over HTTP",
        "Delivered over SMTP",
    ]
    assert refused.startswith("550")
    assert refused_forged.startswith("550")


def _smtp_send(port: int, recipient: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("ada@customer.test", [recipient], raw)


def _smtp_refusal(port: int, recipient: str, raw: bytes) -> str:
    """The listener's answer to a recipient it must refuse."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        try:
            client.sendmail("ada@customer.test", [recipient], raw)
        except smtplib.SMTPRecipientsRefused as refused:
            code, message = refused.recipients[recipient]
            return f"{code} {message.decode()}"
        except smtplib.SMTPDataError as error:
            return f"{error.smtp_code} {error.smtp_error.decode()}"
    return "250 accepted"


def test_the_cli_prints_the_workspace_inbox_address(settings: Any, workspace: Workspace) -> None:
    env = {
        **os.environ,
        "CRM_DATABASE_URL": settings.database_url,
        "CRM_SECRET_KEY": settings.secret_key,
        "CRM_MAIL_FROM": MAIL_FROM,
        "CRM_DATA_DIR": str(settings.data_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "crm_graphql.cli", "email-address", "--workspace", workspace.name],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The last line (the first ones say which PostgreSQL was used).
    printed = done.stdout.strip().splitlines()[-1]
    assert printed == email_service.inbox_address(config(settings), workspace.id)
