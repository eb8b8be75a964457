"""What the live path needs of a connection's GraphQL context, without importing the
resolvers layer (which imports this package): the app hands the concrete context class
and credentials check in (``Connections``, on ``app.state.connections``).

A WebSocket (realtime/ws.py) or an event stream (realtime/sse.py) builds its context
with ``Connections.context`` and checks its credentials with
``Connections.authenticate``; a subscription (realtime/streams.py) reads the caller, the
socket or stream and the connection's ``Credential`` from it, and gets scopes of its own
for resolving events from it (``LiveContext``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from crm_graphql.services.actor import Actor
from crm_graphql.services.credentials import Grant

if TYPE_CHECKING:
    from crm_graphql.ratelimit import Decision
    from crm_graphql.realtime.credentials import Credential
    from crm_graphql.realtime.sse import EventStream


class Scope(Protocol):
    """A short-lived context for resolving one event (fresh loaders, its own session)."""

    async def close(self) -> None: ...


class LiveContext(Protocol):
    """The GraphQL context of a WebSocket connection or an event stream, as the live path
    uses it (``resolvers.context.Context`` is the one served)."""

    app: Any  # the process's resources (``resolvers.context.AppState``)
    actor: Actor | None
    request_id: str
    client_ip: str | None
    connection_params: dict[str, Any] | None
    websocket: Any
    credential: Credential | None
    event_stream: EventStream | None
    cost_wanted: bool  # asked for extensions.cost (limits.OwedCost)
    rate_decision: Decision | None  # an event stream's, made by its request

    def require_actor(self) -> Actor: ...

    def enter_event_scope(self) -> Scope:
        """A scope for the event about to be resolved per subscriber, in force for this
        task until the next one."""
        ...

    def rendering_scopes(self) -> Callable[[Actor], Scope]:
        """Makes scopes for renderings shared by a fan-out group, as an actor, reading
        through the hub's pool; keeps nothing of this context's request."""
        ...

    async def close(self) -> None: ...


# ``Authorization`` value -> the caller and what the connection stands on, or None for no
# credentials; raises ``Unauthenticated`` for bad ones.
Authenticate = Callable[..., Awaitable[tuple[Actor, Grant] | None]]


@dataclass(frozen=True)
class Connections:
    """How a connection becomes a GraphQL context (set by ``app.build_app``)."""

    context: Callable[..., LiveContext]
    authenticate: Authenticate


def of(app: Any) -> Connections:
    """The ``Connections`` of a Starlette app."""
    connections: Connections = app.state.connections
    return connections
