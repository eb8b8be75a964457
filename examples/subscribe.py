"""Follow the agent inbox from Python over graphql-transport-ws (package: websockets).

    CRM_TOKEN=<accessToken> CRM_REFRESH_TOKEN=<refreshToken> python examples/subscribe.py

Optional: CRM_URL (default ws://127.0.0.1:8000/graphql), CRM_AFTER (resume cursor),
CRM_MAX_EVENTS (stop after that many events), CRM_REFRESH_TOKEN (renew the access token
when the server closes the socket because it expired).

When the socket closes, it reconnects and resumes after the last cursor it saw, so it
misses nothing: with a fresh access token after 4440 (the token expired or the user's
role changed), as it was after 1001 (server shutting down), 1006 (connection lost) or
4008 (too slow). It stops on 4401 (API key revoked, user disabled, logged out).
"""

import asyncio
import json
import os
import sys
import urllib.request

import websockets

QUERY = """subscription ($after: String) {
  inbox(after: $after) {
    cursor
    type
    conversation { id subject status }
    message { seq body authorType }
  }
}"""
RENEW = {4440, 4403}  # expired or role changed; refused at connection (expired meanwhile)
RECONNECT = {1001, 1006, 1011, 1012, 1013, 4008}


def refresh(url: str, refresh_token: str) -> tuple[str, str]:
    """A new access token and refresh token (a refresh token works once)."""
    body = json.dumps(
        {
            "query": "mutation ($t: String!) { refreshToken(input: {refreshToken: $t}) "
            "{ accessToken refreshToken errors { message } } }",
            "variables": {"t": refresh_token},
        }
    ).encode()
    http_url = url.replace("ws", "http", 1)
    request = urllib.request.Request(
        http_url, body, {"Content-Type": "application/json", "Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result = json.load(response)["data"]["refreshToken"]
    if not result["accessToken"]:
        raise SystemExit(f"refreshToken failed: {result['errors']}")
    return result["accessToken"], result["refreshToken"]


class Inbox:
    """The subscription across reconnections: the last cursor seen, the events printed."""

    def __init__(self, after: str | None, limit: int | None) -> None:
        self.after = after
        self.limit = limit
        self.seen = 0

    async def follow(self, url: str, token: str) -> None:
        """Print events until the limit, an error or the end; raises ConnectionClosed
        when the socket closes (after ``connected`` once it was acknowledged)."""
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            print("connected", file=sys.stderr, flush=True)
            payload = {"query": QUERY, "variables": {"after": self.after}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif message["type"] == "next":
                    print(json.dumps(message["payload"]), flush=True)
                    self.after = message["payload"]["data"]["inbox"]["cursor"]
                    self.seen += 1
                    if self.limit and self.seen >= self.limit:
                        return
                elif message["type"] in ("error", "complete"):
                    print(json.dumps(message), flush=True)
                    return


async def main() -> None:
    url = os.environ.get("CRM_URL", "ws://127.0.0.1:8000/graphql")
    token = os.environ["CRM_TOKEN"]
    refresh_token = os.environ.get("CRM_REFRESH_TOKEN")
    inbox = Inbox(os.environ.get("CRM_AFTER"), int(os.environ.get("CRM_MAX_EVENTS", "0")) or None)
    attempts = 0
    while True:
        seen = inbox.seen
        try:
            await inbox.follow(url, token)
            return
        except (websockets.ConnectionClosed, OSError) as error:
            received = getattr(error, "rcvd", None)
            code, reason = (received.code, received.reason) if received else (1006, "")
            print(f"closed {code} {reason}", file=sys.stderr, flush=True)
            attempts = 0 if inbox.seen > seen else attempts + 1
            if attempts > 5:
                raise SystemExit("giving up after 5 attempts without an event") from error
            if code in RENEW and refresh_token:
                token, refresh_token = await asyncio.to_thread(refresh, url, refresh_token)
            elif code not in RECONNECT:
                raise SystemExit(f"closed for good: {code} {reason}") from error
        await asyncio.sleep(1)  # then resume after the last cursor seen


if __name__ == "__main__":
    asyncio.run(main())
