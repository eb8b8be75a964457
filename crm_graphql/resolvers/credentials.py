"""Who is calling: HTTP's ``Authorization`` header and a WebSocket's ``connection_init``
payload take the same credentials, read by the same code. A WebSocket's are also checked
against the database and followed while it is open (``connection_credentials``)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from crm_graphql.services import api_keys, credentials
from crm_graphql.services.actor import Actor
from crm_graphql.services.auth import actor_from_access_token, verify_access_token
from crm_graphql.services.errors import Unauthenticated

if TYPE_CHECKING:
    from crm_graphql.resolvers.context import AppState


class MalformedCredentials(Unauthenticated):
    """The value is not ``Bearer <token>`` at all (as opposed to a bad token)."""

    def __init__(self) -> None:
        super().__init__("Use `Authorization: Bearer <accessToken or API key>`")


async def actor_for_credentials(
    app_state: AppState,
    authorization: str | None,
    *,
    request_id: str | None = None,
    client_ip: str | None = None,
) -> Actor | None:
    """The actor of an ``Authorization`` value, ``Bearer <token>``: a token starting with
    ``crm_`` is a partner API key (checked in the database), anything else a JWT access
    token (checked by signature alone). None when no credentials are given;
    ``Unauthenticated`` (``MalformedCredentials`` for a value that is not a bearer token)
    when they are given but do not hold."""
    token = _bearer(authorization)
    if token is None:
        return None
    if api_keys.is_api_key_token(token):
        async with app_state.sessionmaker() as session, session.begin():
            return await api_keys.authenticate_api_key(
                session, token, request_id=request_id, client_ip=client_ip
            )
    return actor_from_access_token(
        app_state.tokens, token, request_id=request_id, client_ip=client_ip
    )


async def connection_credentials(
    app_state: AppState,
    authorization: str | None,
    *,
    request_id: str | None = None,
    client_ip: str | None = None,
) -> tuple[Actor, credentials.Grant] | None:
    """``actor_for_credentials`` for a WebSocket's ``connection_init``, and what the
    connection stands on from then on (``credentials.Grant``): an access token is also
    checked against the database (user still active with the token's role, its login not
    ended), since the connection may outlive the token's signature check by hours."""
    token = _bearer(authorization)
    if token is None:
        return None
    async with app_state.sessionmaker() as session, session.begin():
        if api_keys.is_api_key_token(token):
            actor = await api_keys.authenticate_api_key(
                session, token, request_id=request_id, client_ip=client_ip
            )
            return actor, await credentials.api_key_grant(session, actor)
        verified = verify_access_token(app_state.tokens, token)
        grant = await credentials.access_token_grant(session, verified)
    actor = dataclasses.replace(verified.actor, request_id=request_id, client_ip=client_ip)
    return actor, grant


def _bearer(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>``; None for no value; ``MalformedCredentials`` for a
    value that is not a bearer token."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MalformedCredentials()
    return token
