"""Follow the agent inbox from Python over graphql-transport-ws (package: websockets).

    CRM_TOKEN=<accessToken> python examples/subscribe.py

Optional: CRM_URL (default ws://127.0.0.1:8000/graphql), CRM_AFTER (resume cursor),
CRM_MAX_EVENTS (stop after that many events).
"""

import asyncio
import json
import os

import websockets

QUERY = """subscription ($after: String) {
  inbox(after: $after) {
    cursor
    type
    conversation { id subject status }
    message { seq body authorType }
  }
}"""


async def main() -> None:
    url = os.environ.get("CRM_URL", "ws://127.0.0.1:8000/graphql")
    limit = int(os.environ.get("CRM_MAX_EVENTS", "0")) or None
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        token = os.environ["CRM_TOKEN"]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        variables = {"after": os.environ.get("CRM_AFTER")}
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": QUERY, "variables": variables},
                }
            )
        )
        seen = 0
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next":
                # Keep data.inbox.cursor: subscribe again with it as `after` to miss nothing.
                print(json.dumps(message["payload"]), flush=True)
                seen += 1
                if limit and seen >= limit:
                    break
            elif message["type"] in ("error", "complete"):
                print(json.dumps(message), flush=True)
                break


if __name__ == "__main__":
    asyncio.run(main())
