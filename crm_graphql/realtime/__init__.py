"""The real-time bus: notifications after commit, fanned out between processes by Redis."""

import asyncio
import contextlib
from typing import Any

# How uvicorn must serve WebSockets (``crm-graphql serve``): the websockets-sansio
# implementation, which close_slow_consumer and realtime.fanout write to directly, and no
# permessage-deflate: a compression context per socket costs more memory than the frames
# it saves, and every pushed frame would be compressed again for each socket.
SERVER_WEBSOCKETS: dict[str, Any] = {"ws": "websockets-sansio", "ws_per_message_deflate": False}


async def wait_until_set(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set or ``timeout`` seconds pass; whether it is set. Not
    ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that comes as the
    event is set, so a busy background loop would never stop (and whoever awaits its
    cancellation, e.g. a close holding a lock, would wait forever)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()
