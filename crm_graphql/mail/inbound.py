"""Inbound mail: ``POST /inbound/email`` (raw MIME posted by a mail system, signed with
the shared secret ``CRM_INBOUND_EMAIL_SECRET``), the optional built-in SMTP listener
(``CRM_SMTP_LISTEN``), and ``GET /attachments/{id}`` (an attachment's bytes, to whoever
may see its conversation). Both inbound paths hand the mail to ``email.receive``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from crm_graphql.global_ids import decode_id, to_global_id
from crm_graphql.resolvers.credentials import actor_for_credentials
from crm_graphql.services import email, webhooks
from crm_graphql.services.errors import DomainError, NotFound

log = logging.getLogger(__name__)
SIGNATURE_HEADER = webhooks.SIGNATURE_HEADER  # the same scheme as outgoing webhooks
ENVELOPE_HEADER = "X-CRM-Envelope-To"  # optional: the SMTP envelope's recipients
# What an inbound answer's HTTP status becomes in SMTP (RFC 5321 reply codes).
_SMTP_REPLIES = {
    400: "554 5.6.0",
    403: "550 5.7.1",
    413: "552 5.3.4",
    422: "550 5.1.1",
}


@dataclass
class MailChannel:
    """The email channel of one app: its configuration and what receives mail."""

    sessionmaker: async_sessionmaker[AsyncSession]
    config: email.EmailConfig
    inbound_secret: str | None

    async def receive(
        self, raw: bytes, recipients: Sequence[str] = ()
    ) -> email.Received | email.Bounced:
        """``email.receive`` in a transaction of its own (events published after commit).
        The same mail posted twice at once: the second transaction meets the first's
        unique Message-ID and rolls back; tried again, it finds the mail received."""
        for attempt in (1, 2):
            try:
                async with self.sessionmaker() as session, session.begin():
                    return await email.receive(
                        session, self.config, raw, envelope_recipients=recipients
                    )
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _error(status: int, message: str, code: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status)


_CODES = {400: "BAD_MAIL", 403: "FORBIDDEN", 413: "TOO_LARGE", 422: "UNROUTABLE"}


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def inbound_email_endpoint(request: Request) -> Response:
    """``POST /inbound/email``: 201 with where the mail went (200 for a mail received
    before), 401 unsigned or badly signed, 413 too large, 4xx with a message for a mail
    that cannot be taken. Not found while no secret is configured."""
    channel: MailChannel = request.app.state.mail
    if not channel.inbound_secret:
        return _error(404, "Inbound email is not enabled (CRM_INBOUND_EMAIL_SECRET)", "NOT_FOUND")
    try:
        raw = await _body(request, channel.config.max_mail_bytes)
    except ClientDisconnect:
        return _error(400, "The request ended before its body", "BAD_REQUEST")
    if raw is None:
        limit = channel.config.max_mail_bytes
        return _error(413, f"A mail is at most {limit:,} bytes", "TOO_LARGE")
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return _error(401, f"Sign the request: {SIGNATURE_HEADER} is missing", "UNAUTHENTICATED")
    if not webhooks.verify_signature(channel.inbound_secret, signature, raw):
        return _error(
            401, f"{SIGNATURE_HEADER} does not match the body (or is too old)", "UNAUTHENTICATED"
        )
    envelope = [a.strip() for a in request.headers.get(ENVELOPE_HEADER, "").split(",") if a]
    try:
        received = await channel.receive(raw, envelope)
    except email.MailRejected as rejected:
        code = rejected.code or _CODES.get(rejected.status, "BAD_MAIL")
        return _error(rejected.status, rejected.message, code)
    except DomainError as error:  # a rule of the path the message goes through
        return _error(422, error.message, error.code)
    if isinstance(received, email.Bounced):
        return JSONResponse(_bounce_answer(received), 200)
    return JSONResponse(
        {
            "conversationId": to_global_id("Conversation", received.conversation_id),
            "messageId": to_global_id("Message", received.message_id),
            "startedConversation": received.started_conversation,
            "duplicate": received.duplicate,
        },
        200 if received.duplicate else 201,
    )


def _bounce_answer(bounced: email.Bounced) -> dict[str, Any]:
    """What a delivery status notification did, as ``POST /inbound/email`` answers it."""
    return {
        "report": {
            "conversationId": to_global_id("Conversation", bounced.conversation_id),
            "messageId": to_global_id("Message", bounced.message_id),
            "action": bounced.action,
            "markedFailed": bounced.changed,
            "reason": bounced.reason,
        }
    }


async def attachment_endpoint(request: Request) -> Response:
    """``GET /attachments/{id}``: the file, to a caller (``Authorization: Bearer``) who
    may see the message's conversation; 404 otherwise, as for an unknown id."""
    crm = request.app.state.crm
    try:
        actor = await actor_for_credentials(
            crm,
            request.headers.get("authorization"),
            client_ip=request.client.host if request.client else None,
        )
    except DomainError as error:
        return _error(401, error.message, error.code)
    if actor is None:
        return _error(
            401, "Use `Authorization: Bearer <accessToken or API key>`", "UNAUTHENTICATED"
        )
    attachment_id = decode_id(request.path_params["id"], "MessageAttachment")
    try:
        async with crm.sessionmaker() as session:
            found = await email.attachment_for_download(actor, session, attachment_id)
    except NotFound as error:
        return _error(404, error.message, error.code)
    except DomainError as error:
        return _error(403, error.message, error.code)
    quoted = found.filename.replace("\\", "_").replace('"', "_")
    return Response(
        found.content,
        media_type=found.content_type,
        headers={
            # Never rendered by the browser in our origin: always a download.
            "Content-Disposition": f'attachment; filename="{quoted}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


class _Handler:
    """aiosmtpd's handler: recipients of ours only; the data through ``email.receive``."""

    def __init__(self, channel: MailChannel) -> None:
        self._channel = channel

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if email.route_of(self._channel.config, address) is None:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            received = await self._channel.receive(raw, list(envelope.rcpt_tos))
        except email.MailRejected as rejected:
            reply = _SMTP_REPLIES.get(rejected.status, "550 5.6.0")
            return f"{reply} {_ascii(rejected.message)}"
        except DomainError as error:
            return f"550 5.6.0 {_ascii(error.message)}"
        except Exception:  # the database may be away: the sender keeps it and retries
            log.exception("inbound mail not stored")
            return "451 4.3.0 Temporary failure, try again later"
        if isinstance(received, email.Bounced):
            return f"250 OK delivery report: {received.action}"
        return f"250 OK {to_global_id('Message', received.message_id)}"


def _ascii(text: str) -> str:
    """An SMTP reply's text: one line of ASCII."""
    return " ".join(text.split()).encode("ascii", "replace").decode()


class SmtpListener:
    """The built-in SMTP server for inbound mail, on the app's own event loop."""

    def __init__(self, channel: MailChannel, host: str, port: int) -> None:
        self._channel = channel
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        handler = _Handler(self._channel)
        limit = self._channel.config.max_mail_bytes
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                handler,
                data_size_limit=limit,
                hostname=self._channel.config.domain,
                ident="crm-graphql",
            ),
            self._host,
            self._port,
        )
        log.info("SMTP listener for inbound mail on %s:%s", self._host, self._port)

    @property
    def port(self) -> int:
        """The port listened on (useful when 0 was asked for)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
