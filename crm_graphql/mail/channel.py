"""The email channel of one app, opened and closed by its lifespan: the configuration
the services read (``email.attach``), the outbox dispatcher when a relay is configured,
and the SMTP listener when one is asked for."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.mail.dispatcher import MailDispatcher, RelaySettings
from crm_graphql.mail.inbound import MailChannel, SmtpListener
from crm_graphql.realtime.outbox import DispatcherSettings
from crm_graphql.services import email
from crm_graphql.settings import ConfigurationError, Settings


def email_config(settings: Settings, secret_key: str) -> email.EmailConfig:
    """The channel's configuration; reply addresses are signed with a key derived from
    the server's secret key (a key of its own: a reply token is no access token)."""
    return email.EmailConfig(
        mail_from=settings.mail_from,
        reply_domain=settings.mail_reply_domain,
        signing_key=hashlib.sha256(
            b"crm-graphql email reply addresses\0" + secret_key.encode()
        ).digest(),
        max_mail_bytes=settings.inbound_email_max_bytes,
        max_attachments=settings.message_attachments_max_count,
        max_attachment_bytes=settings.message_attachment_max_bytes,
        max_attachments_total_bytes=settings.message_attachments_max_total_bytes,
        from_domains=frozenset(settings.mail_from_domains),
    )


def listen_address(value: str) -> tuple[str, int]:
    """``host:port`` of ``CRM_SMTP_LISTEN`` (``[::1]:2525`` for IPv6)."""
    host, _, port = value.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"CRM_SMTP_LISTEN must be host:port, not {value!r}")
    return host.strip("[]"), int(port)


@dataclass
class OpenChannel:
    channel: MailChannel
    dispatcher: MailDispatcher | None
    listener: SmtpListener | None

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        if self.dispatcher is not None:
            await self.dispatcher.close()


async def open_channel(
    settings: Settings, config: email.EmailConfig, sessionmaker: async_sessionmaker[AsyncSession]
) -> OpenChannel:
    """Attach the configuration to ``sessionmaker`` and start what the settings ask for."""
    email.attach(sessionmaker, config)
    channel = MailChannel(sessionmaker, config, settings.inbound_email_secret)
    dispatcher = None
    if settings.smtp_host and settings.mail_dispatcher:
        dispatcher = MailDispatcher(
            sessionmaker,
            config,
            RelaySettings(
                host=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_user,
                password=settings.smtp_password,
                starttls=settings.smtp_starttls,
                use_tls=settings.smtp_tls,
                pacing=DispatcherSettings(
                    poll_seconds=settings.mail_poll_seconds,
                    timeout_seconds=settings.smtp_timeout_seconds,
                    max_attempts=settings.mail_max_attempts,
                    retry_base_seconds=settings.mail_retry_base_seconds,
                    batch_size=20,
                ),
            ),
        )
        await dispatcher.start()
    listener = None
    if settings.smtp_listen:
        host, port = listen_address(settings.smtp_listen)
        listener = SmtpListener(channel, host, port)
        await listener.start()
    return OpenChannel(channel, dispatcher, listener)
