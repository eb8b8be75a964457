"""The email channel's rules on their own: reply and inbox addresses (signed, case-proof,
refused when tampered with), reading hostile mail without raising, and the outbox rows
written in the message's transaction (and only for agents' messages of EMAIL
conversations)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage as MimeMessage

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.enums import EmailDeliveryStatus, EmailDirection
from crm_graphql.models import EmailMessage, Message, MessageAttachment, Workspace
from crm_graphql.services import conversations, customers, email, privacy
from crm_graphql.services.actor import Actor

CONFIG = email.EmailConfig(mail_from="Acme <support@acme.test>", signing_key=b"k" * 32)


def test_a_reply_address_names_its_conversation_and_survives_case_folding() -> None:
    workspace, conversation = uuid.uuid4(), uuid.uuid4()
    address = email.reply_address(CONFIG, workspace, conversation)
    local = address.split("@")[0]
    assert address.endswith("@acme.test") and len(local) <= 64
    route = email.route_of(CONFIG, address.upper())
    assert route is not None and route.kind == "reply"
    assert uuid.UUID(bytes=route.token) == conversation
    assert email.route_of(CONFIG, address.replace("@acme.test", "@other.test")) is None
    assert email.route_of(CONFIG, "support@acme.test") is None
    assert email.route_of(CONFIG, "reply+short.sig@acme.test") is None


def test_a_claim_takes_mails_with_files_up_to_its_budget_and_always_one() -> None:
    assert email.within_budget([], 100) == []
    assert email.within_budget([0, 0, 0], 0) == [True, True, True]
    # The first always (a mail larger than the budget is still sent, alone) ...
    assert email.within_budget([500, 10, 0], 100) == [True, False, True]
    # ... then what still fits, in order; mails without files always fit.
    assert email.within_budget([60, 50, 40, 0, 1], 100) == [True, False, True, True, False]


def test_a_bounce_address_names_its_mail_and_a_report_is_read_defensively() -> None:
    workspace, mail = uuid.uuid4(), uuid.uuid4()
    address = email.bounce_address(CONFIG, workspace, mail)
    assert len(address.split("@")[0]) <= 64
    route = email.route_of(CONFIG, address.upper())
    assert route is not None and route.kind == "bounce"
    assert uuid.UUID(bytes=route.token) == mail
    # Not a report: an ordinary mail, a report of another kind (read receipts).
    assert email.delivery_report(_mail(From="a@b.test")) is None
    mdn = (
        b"From: a@b.test\r\nContent-Type: multipart/report; report-type=disposition-notification;"
        b' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nRead.\r\n--b--\r\n'
    )
    assert email.delivery_report(mdn) is None
    # Broken ones read as far as they go, never raising.
    for raw in (
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary",
        b'Content-Type: multipart/report; report-type="delivery-status"; boundary="b"\r\n'
        b"\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n\xff\xfe\x00\r\n",
        b"X-Failed-Recipients: not an address\r\n\r\nsomething failed",
    ):
        report = email.delivery_report(raw)
        assert report is not None and report.failed == [], raw
    exim = email.delivery_report(
        b"X-Failed-Recipients: Ada <ADA@customer.test>\r\n\r\n"
        b"    SMTP error from remote mail server after RCPT TO:\r\n"
        b"    550 5.1.1 No such user\r\n\r\nMessage-ID: <M1@mail.test>\r\n"
    )
    assert exim is not None and exim.message_ids == ["m1@mail.test"]
    [failed] = exim.failed
    assert (failed.recipient, failed.status) == ("ada@customer.test", "5.1.1")
    assert failed.diagnostic == "550 5.1.1 No such user"


def _mail(**headers: str) -> bytes:
    mail = MimeMessage()
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content("Hello")
    return mail.as_bytes()


def test_hostile_mail_is_read_without_raising() -> None:
    nul = email.parse_mail(b"From: a@b.test\r\nSubject: x\x00y\r\n\r\nnul\x00here\r\n")
    assert nul.body == "nulhere" and nul.subject == "xy"
    html = email.parse_mail(
        b"From: a@b.test\r\nContent-Type: text/html\r\n\r\n"
        b"<p>One &amp; two</p><script>alert(1)</script><p>three</p>"
    )
    assert html.body == "One & two\nthree"
    long = email.parse_mail(b"From: a@b.test\r\n\r\n" + b"x" * 20_000)
    assert len(long.body) <= conversations.MAX_BODY_LENGTH and long.kept_original
    assert long.attachments[-1][0] == "original.eml"
    bare = email.parse_mail(b"\r\n\r\n")
    assert bare.sender == "" and bare.body == "(empty message)"
    # Without a Message-ID, the same bytes always get the same one (retries dedupe).
    assert bare.rfc_message_id == email.parse_mail(b"\r\n\r\n").rfc_message_id
    named = email.parse_mail(
        _mail(From="a@b.test", In_Reply_To="<X@Y>", References="<a@b> <c@d>", Message_ID="<M@N>")
    )
    assert (named.rfc_message_id, named.in_reply_to, named.references) == (
        "m@n",
        ["x@y"],
        ["a@b", "c@d"],
    )


async def test_only_agents_messages_of_email_conversations_go_to_the_outbox(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor
) -> None:
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(
            agent, session, {"name": "Ada", "email": "ada@customer.test"}
        )
        by_mail = await conversations.start_conversation(
            agent,
            session,
            {"customer_id": customer.id, "channel": "email", "subject": "Hi", "body": "One"},
        )
        chat = await conversations.start_conversation(
            agent, session, {"customer_id": customer.id, "channel": "chat", "body": "Two"}
        )
    for conversation, body in ((by_mail, "Three"), (chat, "Four")):
        async with sessionmaker() as session, session.begin():
            await conversations.send_message(agent, session, conversation.id, body=body)
    async with sessionmaker() as session:
        rows = list(
            await session.scalars(
                select(EmailMessage)
                .where(EmailMessage.workspace_id == agent.workspace_id)
                .order_by(EmailMessage.created_at)
            )
        )
    assert [(r.conversation_id, r.direction, r.status) for r in rows] == [
        (by_mail.id, EmailDirection.OUTBOUND, EmailDeliveryStatus.PENDING),
        (by_mail.id, EmailDirection.OUTBOUND, EmailDeliveryStatus.PENDING),
    ]
    assert rows[0].recipients == ["ada@customer.test"] and rows[0].subject == "Hi"
    # The second names the first, as a reply to it.
    assert rows[1].references == [rows[0].rfc_message_id]
    assert rows[1].in_reply_to == rows[0].rfc_message_id and rows[1].subject == "Re: Hi"


async def test_a_message_rolled_back_leaves_nothing_to_send(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor
) -> None:
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(
            agent, session, {"name": "Bo", "email": "bo@c.test"}
        )
        conversation = await conversations.start_conversation(
            agent, session, {"customer_id": customer.id, "channel": "email"}
        )
    with pytest.raises(RuntimeError):
        async with sessionmaker() as session, session.begin():
            await conversations.send_message(agent, session, conversation.id, body="Oops")
            raise RuntimeError("the request failed after the message was written")
    async with sessionmaker() as session:
        found = await session.scalar(
            select(EmailMessage).where(EmailMessage.conversation_id == conversation.id)
        )
    assert found is None


async def test_a_reply_reaches_a_private_conversation_once(
    sessionmaker: async_sessionmaker[AsyncSession], manager: Actor
) -> None:
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(
            manager, session, {"name": "Cy", "email": "cy@c.test"}
        )
        conversation = await conversations.start_conversation(
            manager,
            session,
            {"customer_id": customer.id, "channel": "email", "is_private": True},
        )
    raw = _mail(
        From="Cy <CY@c.test>",
        To=email.reply_address(CONFIG, manager.workspace_id, conversation.id),
        Message_ID="<reply-1@c.test>",
    )
    async with sessionmaker() as session, session.begin():
        received = await email.receive(session, CONFIG, raw)
    async with sessionmaker() as session, session.begin():
        again = await email.receive(session, CONFIG, raw)
    assert received.conversation_id == conversation.id
    assert not received.started_conversation and not received.duplicate
    assert again.duplicate and again.message_id == received.message_id
    async with sessionmaker() as session:
        messages = await conversations.get_visible(manager, session, conversation.id)
    assert messages.last_message_seq == 1


def test_a_subject_or_name_cannot_add_headers() -> None:
    row = EmailMessage(
        workspace_id=uuid.uuid4(),
        message_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        rfc_message_id="m@acme.test",
        sender="support@acme.test",
        recipients=["ada@customer.test"],
        subject="Invoice\r\nBcc: everyone@example.com",
        references=[],
    )
    message = Message(body="Hello", created_at=None)
    raw = email.outbound_mime(CONFIG, row, message, "Acme", "Eve\nBcc: x@y.test")
    headers = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "\r\nBcc:" not in headers and "Subject: Invoice Bcc: everyone@example.com" in headers


async def test_erasing_the_customer_erases_their_mail_and_stops_what_is_unsent(
    sessionmaker: async_sessionmaker[AsyncSession], admin: Actor
) -> None:
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(
            admin, session, {"name": "Di", "email": "di@c.test"}
        )
        conversation = await conversations.start_conversation(
            admin, session, {"customer_id": customer.id, "channel": "email", "subject": "Di"}
        )
    raw = _mail(
        From="Di <di@c.test>",
        To=email.reply_address(CONFIG, admin.workspace_id, conversation.id),
        Subject="Private matters",
        Message_ID="<di-1@c.test>",
    )
    async with sessionmaker() as session, session.begin():
        received = await email.receive(session, CONFIG, raw)
        session.add(
            MessageAttachment(
                workspace_id=admin.workspace_id,
                message_id=received.message_id,
                position=1,
                filename="passport.jpg",
                content_type="image/jpeg",
                size=3,
                content=b"abc",
            )
        )
    async with sessionmaker() as session, session.begin():
        await conversations.send_message(admin, session, conversation.id, body="Answer")
    async with sessionmaker() as session, session.begin():
        await privacy.erase_customer(admin, session, customer.id)
    async with sessionmaker() as session:
        rows = list(
            await session.scalars(
                select(EmailMessage).where(EmailMessage.conversation_id == conversation.id)
            )
        )
        attachments = await session.scalar(
            select(func.count())
            .select_from(MessageAttachment)
            .where(MessageAttachment.message_id == received.message_id)
        )
    assert len(rows) == 2 and attachments == 0
    assert all(r.sender == "[erased]" and r.recipients == [] and r.subject is None for r in rows)
    [outbound] = [r for r in rows if r.direction is EmailDirection.OUTBOUND]
    assert outbound.status is EmailDeliveryStatus.FAILED and "erased" in (outbound.last_error or "")


async def _outbox(session: AsyncSession, conversation_id: uuid.UUID) -> list[EmailMessage]:
    """The conversation's mails, oldest first."""
    return list(
        await session.scalars(
            select(EmailMessage)
            .where(EmailMessage.conversation_id == conversation_id)
            .order_by(EmailMessage.created_at, EmailMessage.id)
        )
    )


async def test_a_mail_threads_on_the_last_mails_and_names_the_newest_received_one(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor
) -> None:
    """References: the conversation's last ``MAX_REFERENCES`` Message-IDs, oldest first;
    In-Reply-To: the newest received mail's, even with sent ones after it; a subject that
    is a reply already is not prefixed again; the workspace's own From is the sender."""
    count = email.MAX_REFERENCES + 4
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(
            agent, session, {"name": "Cy", "email": "cy@customer.test"}
        )
        conversation = await conversations.start_conversation(
            agent,
            session,
            {"customer_id": customer.id, "channel": "email", "subject": "RE: Invoice"},
        )
        await session.execute(
            update(Workspace)
            .where(Workspace.id == agent.workspace_id)
            .values(email_from_address="desk@shop.test")
        )
    for n in range(count):  # a message's transaction writes that message alone
        async with sessionmaker() as session, session.begin():
            await conversations.send_message(agent, session, conversation.id, body=f"m{n}")
    # The thread so far: a second apart, two of them received from the customer.
    async with sessionmaker() as session, session.begin():
        for n, row in enumerate(await _outbox(session, conversation.id)):
            row.rfc_message_id = f"older-{n}@thread.test"
            row.created_at = datetime.now(UTC) - timedelta(seconds=100 - n)
            if n in (3, count - 3):
                row.direction, row.status = EmailDirection.INBOUND, None
    async with sessionmaker() as session, session.begin():
        await conversations.send_message(agent, session, conversation.id, body="The reply")
    async with sessionmaker() as session:
        sent = (await _outbox(session, conversation.id))[-1]
    assert sent.references == [
        f"older-{n}@thread.test" for n in range(count - email.MAX_REFERENCES, count)
    ]
    assert sent.in_reply_to == f"older-{count - 3}@thread.test"
    assert (sent.subject, sent.sender, sent.recipients) == (
        "RE: Invoice",
        "desk@shop.test",
        ["cy@customer.test"],
    )
    assert (sent.direction, sent.status, sent.attempts) == (
        EmailDirection.OUTBOUND,
        EmailDeliveryStatus.PENDING,
        0,
    )
    assert sent.next_attempt_at is not None and sent.last_error is None


async def test_a_customer_without_an_address_fails_the_mail_at_once(
    sessionmaker: async_sessionmaker[AsyncSession], agent: Actor
) -> None:
    """No address (none, or an empty one): the mail is failed with the reason, never
    tried; the first mail of a thread names no other and keeps its subject; without a
    workspace From, the server's is the sender."""
    async with sessionmaker() as session, session.begin():
        nobody = await customers.create_customer(agent, session, {"name": "Di"})
        conversation = await conversations.start_conversation(
            agent, session, {"customer_id": nobody.id, "channel": "email", "subject": "Hi"}
        )
    async with sessionmaker() as session, session.begin():
        await conversations.send_message(agent, session, conversation.id, body="Hello?")
    async with sessionmaker() as session:
        (failed,) = await _outbox(session, conversation.id)
    assert (failed.status, failed.last_error, failed.next_attempt_at, failed.recipients) == (
        EmailDeliveryStatus.FAILED,
        "The customer has no email address",
        None,
        [],
    )
    assert (failed.subject, failed.in_reply_to, failed.references) == ("Hi", None, [])
    assert failed.sender == email.server_sender(email.EmailConfig())
