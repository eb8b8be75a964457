"""The email channel's workspace From, agents' attachments and bounces
(docs/decisions/0035-email-channel.md), end to end against a real local SMTP relay
(aiosmtpd, started by the test): an admin sets the workspace's From and its mail goes out
with it (another workspace's keeps the server's); an agent's files are stored, listed,
downloadable and sent as MIME parts with RFC 2231 names, within limits that leave nothing
half-written; a delivery status notification, over HTTP or the SMTP listener, marks the
mail it reports on FAILED with the reason and is never posted as the customer's message,
while a delayed, unmatched, spoofed or malformed one changes nothing."""

from __future__ import annotations

import asyncio
import json
import smtplib
import uuid
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id
from crm_graphql.models import Event, Message, MessageAttachment, Role, User, Workspace
from crm_graphql.services import auth
from crm_graphql.services import email as email_service
from crm_graphql.services.auth import TokenConfig, issue_access_token
from tests import support
from tests.api.test_email_channel import (
    DOMAIN,
    MAIL_FROM,
    Relay,
    client_of,
    config,
    delivery_when,
    email_conversation,
    mail_app,
    mail_server,
    messages_of,
    post_mail,
    relay,
    send,
    unique_address,
)

__all__ = ["mail_server", "relay"]  # fixtures shared with test_email_channel

SET_FROM = """mutation($i: SetWorkspaceEmailFromInput!) {
  setWorkspaceEmailFrom(input: $i) {
    workspace { id name emailFrom { address name } } errors { code field message } } }"""
WORKSPACE = "{ workspace { id name emailFrom { address name } } }"
SEND_FILES = """mutation($i: SendMessageInput!) {
  sendMessage(input: $i) {
    message { id attachments { id filename contentType size url } }
    errors { code field message } } }"""
DELIVERY = """query($id: ID!) { node(id: $id) { ... on Message {
  delivery { status error bouncedAt attempts } } } }"""


async def rival(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Any
) -> tuple[Workspace, str]:
    """Another tenant with an admin, and the admin's token."""
    async with sessionmaker() as session, session.begin():
        other = await auth.create_workspace(session, name=f"Rival {uuid.uuid4().hex[:8]}")
        user = await auth.create_user(
            session,
            workspace=other,
            email=f"rival-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
            name="Rival Admin",
        )
    return other, issue_access_token(TokenConfig(secret_key=settings.secret_key), user)[0]


async def upload(
    client: support.GraphQLClient,
    variables: dict[str, Any],
    files: list[tuple[str, bytes, str]],
) -> dict[str, Any]:
    """``sendMessage`` as a GraphQL multipart request carrying ``files``."""
    operations = {
        "query": SEND_FILES,
        "variables": {"i": {**variables, "attachments": [None] * len(files)}},
    }
    response = await client.http.post(
        "/graphql",
        headers={"Authorization": f"Bearer {client.token}"},
        data={
            "operations": json.dumps(operations),
            "map": json.dumps(
                {str(i): [f"variables.i.attachments.{i}"] for i in range(len(files))}
            ),
        },
        files={str(i): file for i, file in enumerate(files)},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["sendMessage"]  # type: ignore[no-any-return]


async def counts(
    sessionmaker: async_sessionmaker[AsyncSession], conversation: str
) -> tuple[int, int]:
    """(messages, attachments) of a conversation."""
    id = from_global_id(conversation)[1]
    async with sessionmaker() as session:
        messages = await session.scalar(
            select(func.count()).select_from(Message).where(Message.conversation_id == id)
        )
        files = await session.scalar(
            select(func.count())
            .select_from(MessageAttachment)
            .join(Message, Message.id == MessageAttachment.message_id)
            .where(Message.conversation_id == id)
        )
    return int(messages or 0), int(files or 0)


# ------------------------------------------------------------------ the From address


async def test_an_admin_sets_the_workspace_from_and_its_mail_goes_out_with_it(
    settings: Any,
    relay: Relay,
    tokens: dict[Role, str],
    users: dict[Role, User],
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    other, other_token = await rival(sessionmaker, settings)
    async with (
        mail_app(settings, relay.port) as app,
        client_of(app, tokens[Role.ADMIN]) as admin,
        client_of(app, tokens[Role.AGENT]) as agent,
        client_of(app, other_token) as stranger,
    ):
        before = (await admin(WORKSPACE)).ok()["workspace"]
        assert before["emailFrom"] is None and before["name"] == workspace.name
        # Hostile or malformed input: a clear VALIDATION, nothing changed.
        bad = [
            ({"address": "Acme <help@acme.example>"}, "address"),
            ({"address": "no-at-sign.example"}, "address"),
            ({"address": "help@127.0.0.1"}, "address"),
            ({"address": "he lp@acme.example"}, "address"),
            ({"address": "a..b@acme.example"}, "address"),
            ({"address": "help@acme"}, "address"),
            ({"address": "x" * 65 + "@acme.example"}, "address"),
            ({"address": "help@acme.example", "name": "Acme\r\nBcc: victim@x.test"}, "name"),
            ({"address": None, "name": "Just a name"}, "name"),
        ]
        for given, field in bad:
            answer = (await admin(SET_FROM, {"i": given})).ok()["setWorkspaceEmailFrom"]
            assert answer["workspace"] is None, (given, answer)
            assert [(e["code"], e["field"]) for e in answer["errors"]] == [("VALIDATION", field)], (
                given,
                answer,
            )
        # Agents may neither set nor read it; the rest of the workspace reads as usual.
        refused = (await agent(SET_FROM, {"i": {"address": "x@acme.example"}})).ok()
        assert [e["code"] for e in refused["setWorkspaceEmailFrom"]["errors"]] == ["FORBIDDEN"]
        read = await agent(WORKSPACE)
        assert read.data["workspace"]["name"] == workspace.name
        assert read.data["workspace"]["emailFrom"] is None
        assert [e["extensions"]["code"] for e in read.errors] == ["FORBIDDEN"]
        # Set, normalised: the domain in lower case and its IDNA form.
        set_ = (
            await admin(
                SET_FROM,
                {"i": {"address": "  Help.Desk@Acme.Example ", "name": "  Acme   Help "}},
            )
        ).ok()["setWorkspaceEmailFrom"]
        assert set_["errors"] == []
        assert set_["workspace"]["emailFrom"] == {
            "address": "Help.Desk@acme.example",
            "name": "Acme Help",
        }
        idna = (await admin(SET_FROM, {"i": {"address": "kontakt@bücher.example"}})).ok()[
            "setWorkspaceEmailFrom"
        ]
        assert idna["workspace"]["emailFrom"]["address"] == "kontakt@xn--bcher-kva.example"
        await admin(SET_FROM, {"i": {"address": "Help.Desk@acme.example", "name": "Acme Help"}})
        assert (await admin(WORKSPACE)).ok()["workspace"]["emailFrom"]["name"] == "Acme Help"
        # The other tenant sees its own workspace, untouched.
        theirs = (await stranger(WORKSPACE)).ok()["workspace"]
        assert theirs["emailFrom"] is None and theirs["name"] == other.name
        # Mail of this workspace goes out with it; the other's with the server's.
        ada, bob = unique_address(), unique_address()
        conversation = await email_conversation(agent, ada)
        sent = await send(agent, conversation, "From our own address")
        await send(stranger, await email_conversation(stranger, bob), "From the server's")
        [(envelope, mail)] = await relay.wait_for(1, ada)
        [(_, theirs_mail)] = await relay.wait_for(1, bob)
        delivery = await delivery_when(agent, sent, lambda d: d["status"] == "SENT", "SENT")
        # Back to the server's From.
        cleared = (await admin(SET_FROM, {"i": {"address": None}})).ok()
        assert cleared["setWorkspaceEmailFrom"]["workspace"]["emailFrom"] is None
        audit = (
            await admin(
                """{ auditLog(first: 10, filter: {action: {eq: "setWorkspaceEmailFrom"}}) {
                  edges { node { entityType changes } } } }"""
            )
        ).ok()["auditLog"]["edges"]
    assert mail["From"].addresses[0].addr_spec == "Help.Desk@acme.example"
    assert mail["From"].addresses[0].display_name == "Agent User (Acme Help)"
    assert delivery["attempts"] == 1
    # Replies still come back here, threaded.
    reply_to = str(mail["Reply-To"])
    assert reply_to.startswith("reply+") and reply_to.endswith("@" + DOMAIN)
    assert str(mail["Message-ID"]).endswith(f"@{DOMAIN}>")
    bounce = email_service.route_of(config(settings), envelope.mail_from)
    assert bounce is not None and bounce.kind == "bounce"
    assert theirs_mail["From"].addresses[0].addr_spec == f"support@{DOMAIN}"
    assert theirs_mail["From"].addresses[0].display_name == "Rival Admin (Acme Support)"
    # Every change audited, with what it was before.
    assert all(e["node"]["entityType"] == "Workspace" for e in audit)
    # (four changes; the refused ones wrote nothing)
    assert len(audit) == 4
    latest = audit[0]["node"]["changes"]
    assert latest["emailFromAddress"] == {"before": "Help.Desk@acme.example", "after": None}
    assert latest["emailFromName"] == {"before": "Acme Help", "after": None}


async def test_the_server_may_restrict_the_domains_a_workspace_sends_as(
    settings: Any, relay: Relay, tokens: dict[Role, str]
) -> None:
    async with (
        mail_app(settings, relay.port, mail_from_domains=["acme.example"]) as app,
        client_of(app, tokens[Role.ADMIN]) as admin,
    ):
        elsewhere = (await admin(SET_FROM, {"i": {"address": "ceo@bank.example"}})).ok()
        lookalike = (await admin(SET_FROM, {"i": {"address": "x@evilacme.example"}})).ok()
        subdomain = (await admin(SET_FROM, {"i": {"address": "help@eu.acme.example"}})).ok()
    for refused in (elsewhere, lookalike):
        errors = refused["setWorkspaceEmailFrom"]["errors"]
        assert [(e["code"], e["field"]) for e in errors] == [("VALIDATION", "address")]
        assert "acme.example" in errors[0]["message"]
    assert subdomain["setWorkspaceEmailFrom"]["errors"] == []


# --------------------------------------------------------------------- attachments

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
NOTES = "Zusammenfassung: Größe, Maße.\n".encode()


async def test_an_agents_files_are_stored_listed_downloadable_and_mailed(
    settings: Any,
    relay: Relay,
    tokens: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    other, other_token = await rival(sessionmaker, settings)
    async with (
        mail_app(settings, relay.port) as app,
        client_of(app, tokens[Role.AGENT]) as agent,
        client_of(app, other_token) as stranger,
    ):
        ada = unique_address()
        conversation = await email_conversation(agent, ada)
        sent = await upload(
            agent,
            {"conversationId": conversation, "body": "Your invoice and my notes."},
            [
                ("invoice 42.pdf", PDF, "application/pdf"),
                ("Résumé été.txt", NOTES, "text/plain; charset=utf-8"),
                ("../../etc/passwd", b"root", "application/octet-stream"),
            ],
        )
        assert sent["errors"] == [], sent
        files = sent["message"]["attachments"]
        listed = await messages_of(agent, conversation)
        downloads = [
            await agent.http.get(f["url"], headers={"Authorization": f"Bearer {agent.token}"})
            for f in files
        ]
        foreign = await stranger.http.get(
            files[0]["url"], headers={"Authorization": f"Bearer {other_token}"}
        )
        foreign_node = (
            await stranger("query($id: ID!) { node(id: $id) { id } }", {"id": files[0]["id"]})
        ).ok()
        [(_, mail)] = await relay.wait_for(1, ada)
        raw = mail.as_bytes()
    assert [(f["filename"], f["contentType"], f["size"]) for f in files] == [
        ("invoice 42.pdf", "application/pdf", len(PDF)),
        ("Résumé été.txt", "text/plain", len(NOTES)),
        (".._.._etc_passwd", "application/octet-stream", 4),
    ]
    [message] = [e["node"] for e in listed["messages"]["edges"]]
    assert message["attachments"] == files
    assert [d.status_code for d in downloads] == [200, 200, 200]
    assert [d.content for d in downloads] == [PDF, NOTES, b"root"]
    assert downloads[0].headers["content-type"] == "application/pdf"
    # Another tenant can neither download nor see it.
    assert foreign.status_code == 404 and foreign_node["node"] is None
    # The mail: the text, then each file as a part of its own, names RFC 2231-encoded.
    assert mail.get_content_type() == "multipart/mixed"
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == "Your invoice and my notes."
    parts = list(mail.iter_attachments())
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        ("invoice 42.pdf", "application/pdf"),
        ("Résumé été.txt", "text/plain"),
        (".._.._etc_passwd", "application/octet-stream"),
    ]
    assert [p.get_payload(decode=True) for p in parts] == [PDF, NOTES, b"root"]
    assert b"filename*=utf-8''R%C3%A9sum%C3%A9%20%C3%A9t%C3%A9.txt" in raw
    assert other.id != from_global_id(conversation)[1]


async def test_files_over_a_limit_or_of_a_wrong_type_leave_nothing_written(
    settings: Any,
    relay: Relay,
    tokens: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    limits = {
        "message_attachments_max_count": 2,
        "message_attachment_max_bytes": 1000,
        "message_attachments_max_total_bytes": 1500,
    }
    async with (
        mail_app(settings, relay.port, **limits) as app,
        client_of(app, tokens[Role.AGENT]) as agent,
        client_of(app, tokens[Role.VIEWER]) as viewer,
    ):
        ada = unique_address()
        conversation = await email_conversation(agent, ada)
        target = {"conversationId": conversation, "body": "With files"}
        huge = b"x" * 3_000_000
        refused = {
            "huge file": [("huge.bin", huge, "application/octet-stream")],
            "over the total": [
                ("a.txt", b"a" * 900, "text/plain"),
                ("b.txt", b"b" * 900, "text/plain"),
            ],
            "too many": [(f"{i}.txt", b"i", "text/plain") for i in range(3)],
            "no MIME type": [("x.html", b"<b>", "text/html<script>")],
            "multipart": [("x.eml", b"--b--", "multipart/mixed")],
        }
        answers = {what: await upload(agent, target, files) for what, files in refused.items()}
        # Not an upload at all (a string in the JSON variables).
        as_text = (await agent(SEND_FILES, {"i": {**target, "attachments": ["not a file"]}})).ok()[
            "sendMessage"
        ]
        by_viewer = await upload(viewer, target, [("a.txt", b"a", "text/plain")])
        after = await counts(sessionmaker, conversation)
        # A chat conversation keeps files too (stored and listed, nothing mailed).
        customer = (
            await agent(
                "query($id: ID!) { node(id: $id) { ... on Conversation { customer { id } } } }",
                {"id": conversation},
            )
        ).ok()["node"]["customer"]["id"]
        chat = (
            await agent(
                """mutation($i: StartConversationInput!) {
                  startConversation(input: $i) { conversation { id } errors { code } } }""",
                {"i": {"customerId": customer, "channel": "CHAT"}},
            )
        ).ok()["startConversation"]["conversation"]["id"]
        in_chat = await upload(
            agent, {"conversationId": chat, "body": "a file"}, [("a.txt", b"a", "text/plain")]
        )
        await asyncio.sleep(0.5)  # the dispatcher would have sent anything there was
    for what, answer in answers.items():
        assert answer["message"] is None, (what, answer)
        assert [(e["code"], e["field"]) for e in answer["errors"]] == [
            ("VALIDATION", "attachments")
        ], (what, answer)
    assert "1,000 bytes" in answers["huge file"]["errors"][0]["message"]
    assert "1,500 bytes" in answers["over the total"]["errors"][0]["message"]
    assert as_text["message"] is None
    assert [e["code"] for e in as_text["errors"]] == ["VALIDATION"]
    assert [e["code"] for e in by_viewer["errors"]] == ["FORBIDDEN"]
    # Nothing half-written: no message without its files, no files without a message.
    assert after == (0, 0)
    assert in_chat["errors"] == [] and [
        a["filename"] for a in in_chat["message"]["attachments"]
    ] == ["a.txt"]
    with relay.lock:
        assert not [e for e, _ in relay.received if ada in e.rcpt_tos]


# ------------------------------------------------------------------------- bounces


def dsn(
    *,
    to: str,
    recipient: str,
    original: EmailMessage | None,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown",
    original_message_id: str | None = None,
    broken_fields: bool = False,
) -> bytes:
    """A delivery status notification (RFC 3464) as Postfix writes one."""
    fields = "Reporting-MTA: dns; mx.customer.test\r\n"
    if original_message_id:
        fields += f"Original-Message-ID: <{original_message_id}>\r\n"
    fields += (
        f"\r\nFinal-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}"
        f"\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: {diagnostic.format(r=recipient)}\r\n"
    )
    if broken_fields:
        fields = "\x01 garbage without any field \x02\r\n\r\n\x03\r\n"
    returned = ""
    if original is not None:
        headers = "".join(f"{k}: {v}\r\n" for k, v in original.items())
        returned = (
            "--rep\r\nContent-Description: Undelivered Message Headers\r\n"
            f"Content-Type: text/rfc822-headers\r\n\r\n{headers}\r\n"
        )
    text = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4()}@mx.customer.test>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="rep"\r\n'
        "\r\nThis is a MIME-encapsulated message.\r\n\r\n"
        "--rep\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.customer.test.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        "--rep\r\nContent-Description: Delivery report\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n{fields}\r\n"
        f"{returned}--rep--\r\n"
    )
    return text.encode()


def failed_recipients_bounce(*, to: str, recipient: str, original: EmailMessage) -> bytes:
    """A non-standard bounce (Exim, qmail style): ``X-Failed-Recipients`` and the
    original's headers quoted in the text."""
    bounce = EmailMessage()
    bounce["From"] = "Mail Delivery System <Mailer-Daemon@relay.customer.test>"
    bounce["To"] = to
    bounce["Subject"] = "Mail delivery failed: returning message to sender"
    bounce["X-Failed-Recipients"] = recipient
    quoted = "".join(f"{k}: {v}\n" for k, v in original.items())
    bounce.set_content(
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its recipients.\n\n"
        f"  {recipient}\n    host mx.customer.test [192.0.2.1]\n"
        "    SMTP error from remote mail server after RCPT TO:\n"
        "    550 5.2.2 Mailbox full\n\n"
        "------ This is a copy of the message, including all the headers. ------\n\n" + quoted
    )
    return bounce.as_bytes()


async def event_types(
    sessionmaker: async_sessionmaker[AsyncSession], conversation: str
) -> list[str]:
    id = from_global_id(conversation)[1]
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Event.payload["delivery_status"].astext)
            .where(Event.entity_id == id, Event.type == "message.delivery_changed")
            .order_by(Event.id)
        )
        return [str(r) for r in rows]


async def test_a_delivery_report_marks_the_mail_failed_and_is_no_customer_message(
    settings: Any,
    relay: Relay,
    tokens: dict[Role, str],
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    mail_config = config(settings)
    inbox = email_service.inbox_address(mail_config, workspace.id)
    async with (
        mail_app(settings, relay.port) as app,
        client_of(app, tokens[Role.AGENT]) as agent,
    ):
        http = agent.http
        ada, bob, cy = unique_address(), unique_address(), unique_address()
        first = await email_conversation(agent, ada)
        to_ada = await send(agent, first, "Hello Ada")
        second = await email_conversation(agent, bob)
        to_bob = await send(agent, second, "Hello Bob")
        third = await email_conversation(agent, cy)
        to_cy = await send(agent, third, "Hello Cy")
        [(envelope, mail)] = await relay.wait_for(1, ada)
        [(_, bob_mail)] = await relay.wait_for(1, bob)
        [(_, cy_mail)] = await relay.wait_for(1, cy)
        for message in (to_ada, to_bob, to_cy):
            await delivery_when(agent, message, lambda d: d["status"] == "SENT", "SENT")
        # 1. RFC 3464, to the mail's bounce address (the envelope sender: VERP).
        report = dsn(to=envelope.mail_from, recipient=ada, original=mail)
        applied = await post_mail(http, report, **{"X-CRM-Envelope-To": envelope.mail_from})
        again = await post_mail(http, report, **{"X-CRM-Envelope-To": envelope.mail_from})
        ada_delivery = (await agent(DELIVERY, {"id": to_ada})).ok()["node"]["delivery"]
        # 2. A delayed report changes nothing.
        delayed = await post_mail(
            http,
            dsn(
                to=inbox,
                recipient=bob,
                original=bob_mail,
                action="delayed",
                status="4.4.1",
                diagnostic="smtp; 451 4.4.1 Connection timed out",
            ),
        )
        bob_delivery = (await agent(DELIVERY, {"id": to_bob})).ok()["node"]["delivery"]
        # 3. A non-standard bounce to the inbox address, naming the mail in its text.
        nonstandard = await post_mail(
            http, failed_recipients_bounce(to=inbox, recipient=cy, original=cy_mail)
        )
        cy_delivery = (await agent(DELIVERY, {"id": to_cy})).ok()["node"]["delivery"]
        threads = [await messages_of(agent, c) for c in (first, second, third)]
        events = [await event_types(sessionmaker, c) for c in (first, second, third)]
    assert applied.status_code == 200, applied.text
    answer = applied.json()["report"]
    assert answer["messageId"] == to_ada and answer["conversationId"] == first
    assert answer["action"] == "failed" and answer["markedFailed"] is True
    assert again.status_code == 200 and again.json()["report"]["markedFailed"] is False
    assert ada_delivery["status"] == "FAILED" and ada_delivery["bouncedAt"]
    assert "5.1.1" in ada_delivery["error"] and "User unknown" in ada_delivery["error"]
    assert ada in ada_delivery["error"]
    assert delayed.status_code == 200, delayed.text
    assert delayed.json()["report"] == {
        "conversationId": second,
        "messageId": to_bob,
        "action": "delayed",
        "markedFailed": False,
        "reason": None,
    }
    assert bob_delivery["status"] == "SENT" and bob_delivery["bouncedAt"] is None
    assert nonstandard.status_code == 200, nonstandard.text
    assert cy_delivery["status"] == "FAILED"
    assert "5.2.2" in cy_delivery["error"] and "Mailbox full" in cy_delivery["error"]
    # No report became a message; each failure is one delivery event more (live to agents
    # and webhooks like any delivery change), a report received twice only one.
    for thread in threads:
        assert [e["node"]["authorType"] for e in thread["messages"]["edges"]] == ["AGENT"]
    assert events == [["sent", "failed"], ["sent"], ["sent", "failed"]]


async def test_unmatched_spoofed_or_malformed_reports_change_nothing(
    settings: Any,
    relay: Relay,
    tokens: dict[Role, str],
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    mail_config = config(settings)
    inbox = email_service.inbox_address(mail_config, workspace.id)
    other, other_token = await rival(sessionmaker, settings)
    async with (
        mail_app(settings, relay.port) as app,
        client_of(app, tokens[Role.AGENT]) as agent,
        client_of(app, other_token) as stranger,
    ):
        http = agent.http
        ada, bob = unique_address(), unique_address()
        mine = await email_conversation(agent, ada)
        to_ada = await send(agent, mine, "Hello Ada")
        theirs = await email_conversation(stranger, bob)
        to_bob = await send(stranger, theirs, "Hello Bob")
        [(envelope, mail)] = await relay.wait_for(1, ada)
        [(their_envelope, their_mail)] = await relay.wait_for(1, bob)
        await delivery_when(agent, to_ada, lambda d: d["status"] == "SENT", "SENT")
        await delivery_when(stranger, to_bob, lambda d: d["status"] == "SENT", "SENT")
        their_id = str(their_mail["Message-ID"]).strip("<>")
        answers = {
            # Another tenant's mail named to this workspace's inbox address.
            "cross-tenant": await post_mail(
                http, dsn(to=inbox, recipient=bob, original=their_mail)
            ),
            "cross-tenant id": await post_mail(
                http, dsn(to=inbox, recipient=bob, original=None, original_message_id=their_id)
            ),
            # This workspace's mail, but a recipient it never went to.
            "other recipient": await post_mail(
                http, dsn(to=inbox, recipient="someone@else.test", original=mail)
            ),
            "no such mail": await post_mail(
                http,
                dsn(to=inbox, recipient=ada, original=None, original_message_id="nope@x.test"),
            ),
            # A bounce address whose signature is not ours.
            "forged bounce address": await post_mail(
                http,
                dsn(
                    to=envelope.mail_from.replace("bounce+", "bounce+a", 1)[:-1],
                    recipient=ada,
                    original=mail,
                ),
                **{
                    "X-CRM-Envelope-To": email_service.bounce_address(
                        email_service.EmailConfig(mail_from=MAIL_FROM, signing_key=b"guess"),
                        other.id,
                        uuid.uuid4(),
                    )
                },
            ),
            "malformed": await post_mail(
                http, dsn(to=inbox, recipient=ada, original=mail, broken_fields=True)
            ),
        }
        truncated = dsn(to=inbox, recipient=ada, original=mail)
        answers["truncated"] = await post_mail(http, truncated[: len(truncated) // 2])
        deliveries = [
            (await agent(DELIVERY, {"id": to_ada})).ok()["node"]["delivery"],
            (await stranger(DELIVERY, {"id": to_bob})).ok()["node"]["delivery"],
        ]
        threads = [await messages_of(agent, mine), await messages_of(stranger, theirs)]
    statuses = {what: (r.status_code, r.json()["error"]["code"]) for what, r in answers.items()}
    assert statuses == {
        "cross-tenant": (422, "UNMATCHED_REPORT"),
        "cross-tenant id": (422, "UNMATCHED_REPORT"),
        "other recipient": (422, "UNMATCHED_REPORT"),
        "no such mail": (422, "UNMATCHED_REPORT"),
        "forged bounce address": (403, "FORBIDDEN"),
        "malformed": (400, "BAD_REPORT"),
        "truncated": statuses["truncated"],
    }, {w: r.text for w, r in answers.items()}
    # A report cut in half (its returned headers lost) is refused too: never a message.
    assert statuses["truncated"][0] in (400, 422), answers["truncated"].text
    assert [d["status"] for d in deliveries] == ["SENT", "SENT"]
    assert [d["bouncedAt"] for d in deliveries] == [None, None]
    for thread in threads:
        assert [e["node"]["authorType"] for e in thread["messages"]["edges"]] == ["AGENT"]
    assert their_envelope.mail_from != envelope.mail_from


async def test_the_smtp_listener_takes_delivery_reports_at_the_bounce_address(
    settings: Any,
    mail_server: tuple[str, int, Relay],
    tokens: dict[Role, str],
) -> None:
    base_url, smtp_port, relay = mail_server
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
        agent = support.GraphQLClient(http, tokens[Role.AGENT])
        ada = unique_address()
        conversation = await email_conversation(agent, ada)
        message = await send(agent, conversation, "Hello Ada")
        [(envelope, mail)] = await relay.wait_for(1, ada)
        await delivery_when(agent, message, lambda d: d["status"] == "SENT", "SENT")
        report = dsn(
            to=envelope.mail_from,
            recipient=ada,
            original=mail,
            status="5.7.1",
            diagnostic="smtp; 550 5.7.1 Message rejected as spam",
        )
        reply = await asyncio.to_thread(_smtp_report, smtp_port, envelope.mail_from, report)
        delivery = await delivery_when(agent, message, lambda d: d["status"] == "FAILED", "FAILED")
        thread = await messages_of(agent, conversation)
    assert reply == (250, "OK delivery report: failed")
    assert "5.7.1" in delivery["error"] and "rejected as spam" in delivery["error"]
    assert [e["node"]["body"] for e in thread["messages"]["edges"]] == ["Hello Ada"]


def _smtp_report(port: int, recipient: str, raw: bytes) -> tuple[int, str]:
    """Hand a report to the listener as a mail server does: from the null sender."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("<>")
        client.rcpt(recipient)
        code, text = client.data(raw)
        return code, text.decode()
