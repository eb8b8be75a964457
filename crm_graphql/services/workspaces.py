"""The workspace itself: what every member may read of it (its id and name) and the
settings its admins keep, such as the From of its outgoing mail
(docs/decisions/0035-email-channel.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import Workspace
from crm_graphql.services import audit, email
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid, NotFound
from crm_graphql.services.policy import Action, authorize

MAX_LOCAL_PART = 64  # RFC 5321, 4.5.3.1.1
MAX_ADDRESS = 254  # RFC 5321's path limit, less its angle brackets
MAX_SENDER_NAME = 200  # the column's width
# An address as mail systems take it without SMTPUTF8: a dot-atom local part of ASCII
# letters, digits and RFC 5322's atext symbols (no quoted strings, no comments), and a
# domain of LDH labels (an internationalised domain comes in, or is turned into, its
# A-labels: ``xn--...``), with at least one dot.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class EmailFrom:
    """A workspace's From: the mailbox and the name shown with it (None: the
    workspace's name)."""

    address: str
    name: str | None


async def get_workspace(actor: Actor, session: AsyncSession) -> Workspace:
    """The actor's workspace (every member and key reads its id and name)."""
    workspace = await session.get(Workspace, actor.workspace_id)
    if workspace is None:
        raise NotFound("Workspace not found")
    return workspace


def authorize_settings(actor: Actor) -> None:
    """Only admins read and change the workspace's settings (``Forbidden`` otherwise)."""
    authorize(actor, Action.MANAGE_WORKSPACE_SETTINGS)


def email_from_of(actor: Actor, workspace: Workspace) -> EmailFrom | None:
    """The workspace's own From (admins only), None while it uses the server's."""
    authorize_settings(actor)
    if workspace.email_from_address is None:
        return None
    return EmailFrom(workspace.email_from_address, workspace.email_from_name)


def sender_address(value: str, field: str = "address") -> str:
    """A From address as mail systems take it, normalised: trimmed, the domain in lower
    case and in its ASCII (IDNA) form; the local part as given (its case may matter to
    the receiving system). ``Invalid`` with the reason otherwise."""
    text = value.strip()
    if "<" in text or ">" in text or " " in text:
        raise Invalid(
            "Give the bare address (`support@example.com`); the display name goes in `name`",
            field,
        )
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise Invalid(f"`{value}` is not an email address (no `@`)", field)
    if not _LOCAL_PART.match(local):
        raise Invalid(
            f"The part before `@` of `{value}` must be ASCII letters, digits, dots and "
            "!#$%&'*+/=?^_`{|}~- (no spaces, quotes or consecutive dots)",
            field,
        )
    if len(local) > MAX_LOCAL_PART:
        raise Invalid(f"The part before `@` is at most {MAX_LOCAL_PART} characters", field)
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise Invalid(f"`{domain}` is not a valid domain name", field) from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise Invalid(f"`{domain}` is not a valid domain name (like `example.com`)", field)
    if labels[-1].isdigit():
        raise Invalid(f"`{domain}` is not a domain name (an IP address cannot send mail)", field)
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_ADDRESS:
        raise Invalid(f"An address is at most {MAX_ADDRESS} characters", field)
    return address


def sender_name(value: str | None, field: str = "name") -> str | None:
    """A display name: one line of text without control characters (a line break in a
    header is how headers are injected), spaces runs made one; blank is None."""
    if value is None:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Invalid("The name must be one line, without control characters", field)
    cleaned = " ".join(value.split())
    if len(cleaned) > MAX_SENDER_NAME:
        raise Invalid(f"The name is at most {MAX_SENDER_NAME} characters", field)
    return cleaned or None


async def set_email_from(
    actor: Actor,
    session: AsyncSession,
    *,
    address: str | None,
    name: str | None,
) -> Workspace:
    """Set the From of the workspace's outgoing mail (admins): ``address`` null (or
    blank) goes back to the server's ``CRM_MAIL_FROM``, and then ``name`` must be null
    too. The domain must be one of ``CRM_MAIL_FROM_DOMAINS`` (or a subdomain of one) when
    the server names some. Audited; the mail queued afterwards uses it."""
    authorize(actor, Action.MANAGE_WORKSPACE_SETTINGS)
    allowed_domains = email.config_of(session).from_domains
    cleaned_name = sender_name(name)
    cleaned_address = None
    if address is not None and address.strip():
        cleaned_address = sender_address(address)
        domain = cleaned_address.rpartition("@")[2]
        if allowed_domains and not any(
            domain == allowed or domain.endswith("." + allowed) for allowed in allowed_domains
        ):
            raise Invalid(
                f"This server sends mail only as {', '.join(sorted(allowed_domains))} "
                "(CRM_MAIL_FROM_DOMAINS)",
                "address",
            )
    elif cleaned_name is not None:
        raise Invalid("A name needs an address (no address: the server's From is used)", "name")
    workspace = await session.scalar(
        select(Workspace).where(Workspace.id == actor.workspace_id).with_for_update()
    )
    if workspace is None:
        raise NotFound("Workspace not found")
    before = {
        "email_from_address": workspace.email_from_address,
        "email_from_name": workspace.email_from_name,
    }
    workspace.email_from_address = cleaned_address
    workspace.email_from_name = cleaned_name
    after = {"email_from_address": cleaned_address, "email_from_name": cleaned_name}
    await session.flush()
    audit.record(
        actor,
        session,
        action="setWorkspaceEmailFrom",
        entity_type="Workspace",
        entity_id=workspace.id,
        before=before,
        after=after,
    )
    return workspace
