"""The real-time bus: notifications after commit, fanned out between processes by Redis."""

from typing import Any

# How uvicorn must serve WebSockets (``crm-graphql serve``): the websockets-sansio
# implementation, which close_slow_consumer and realtime.fanout write to directly, and no
# permessage-deflate: a compression context per socket costs more memory than the frames
# it saves, and every pushed frame would be compressed again for each socket.
SERVER_WEBSOCKETS: dict[str, Any] = {"ws": "websockets-sansio", "ws_per_message_deflate": False}
