"""A partner integration in Python (package: httpx): an API key, every customer paged
through, RATE_LIMITED answered by waiting Retry-After, and a real webhook received on a
local HTTP server with its signature verified.

    CRM_URL=http://127.0.0.1:8000/graphql CRM_API_KEY=crm_... python examples/partner.py

The key needs the scopes customers:read, customers:write (to log the note that makes an
event) and webhooks:manage (to subscribe the receiver). Optional: CRM_PAGE_SIZE (default
50), CRM_HOOK_HOST (the address the server can reach this machine at; default 127.0.0.1).
It prints one JSON line: the customers, how many pages and rate-limit waits it took, and
the webhook event it received.

The contract it relies on is the README's "Partner contract": cursor pagination
(`pageInfo { hasNextPage endCursor }`), errors with `extensions.code`, 429 with
`Retry-After` on `RATE_LIMITED`, `X-CRM-Cost: 1` for the cost figures, and webhooks
signed `X-CRM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
body of payload version 2 (docs/events.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

CUSTOMERS = """query ($first: Int!, $after: String) {
  customers(first: $first, after: $after) {
    nodes { id name email }
    pageInfo { hasNextPage endCursor }
  }
}"""
CREATE_WEBHOOK = """mutation ($i: CreateWebhookInput!) {
  createWebhook(input: $i) { webhook { id } secret errors { code message } }
}"""
DELETE_WEBHOOK = """mutation ($i: WebhookInput!) {
  deleteWebhook(input: $i) { errors { code message } }
}"""
LOG_NOTE = """mutation ($i: CreateActivityInput!) {
  createActivity(input: $i) { activity { id } errors { code message } }
}"""
SIGNATURE_TOLERANCE_S = 300


class ApiError(Exception):
    """The API answered with errors; ``codes`` are their ``extensions.code``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.codes = [(e.get("extensions") or {}).get("code") for e in errors]
        super().__init__("; ".join(f"{e.get('message')} ({e.get('extensions')})" for e in errors))


class Api:
    """Calls /graphql with the key; waits out RATE_LIMITED (429) as Retry-After says."""

    def __init__(self, url: str, api_key: str, *, max_waits: int = 20) -> None:
        self.http = httpx.Client(
            timeout=30,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/graphql-response+json",
                "X-CRM-Cost": "1",  # extensions.cost: the query's cost and our budget left
            },
        )
        self.url = url
        self.max_waits = max_waits
        self.waits: list[int] = []
        self.last_cost: dict[str, Any] | None = None

    def __call__(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        for _ in range(self.max_waits + 1):
            response = self.http.post(self.url, json={"query": query, "variables": variables})
            if response.status_code == 429:
                # Rate limited: nothing ran. Wait what the server says, then send it again.
                wait = int(response.headers.get("Retry-After", "1"))
                self.waits.append(wait)
                print(f"rate limited; waiting {wait} s", file=sys.stderr)
                time.sleep(wait)
                continue
            body = response.json()
            self.last_cost = (body.get("extensions") or {}).get("cost")
            if body.get("errors"):
                raise ApiError(body["errors"])
            response.raise_for_status()
            return body["data"]
        raise RuntimeError(f"still rate limited after {self.max_waits} waits")

    def mutate(self, query: str, input: dict[str, Any], field: str) -> dict[str, Any]:
        """A mutation whose payload must have no ``errors`` (UserError: code, message)."""
        payload: dict[str, Any] = self(query, {"i": input})[field]
        if payload["errors"]:
            raise ApiError([{"message": e["message"], "extensions": e} for e in payload["errors"]])
        return payload


def all_customers(api: Api, page_size: int) -> tuple[list[dict[str, Any]], int]:
    """Every customer, following `endCursor` until `hasNextPage` is false: (customers,
    pages)."""
    customers: list[dict[str, Any]] = []
    after: str | None = None
    pages = 0
    while True:
        page = api(CUSTOMERS, {"first": page_size, "after": after})["customers"]
        pages += 1
        customers += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return customers, pages
        after = page["pageInfo"]["endCursor"]


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """What every receiver must do before trusting a body: the HMAC matches, and the
    timestamp is recent (an old request replayed fails)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > SIGNATURE_TOLERANCE_S:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Receiver:
    """A local HTTP server that takes webhook POSTs: answers 204 to a verified one
    (the server retries anything else) and queues it."""

    def __init__(self, host: str) -> None:
        self.secret = ""
        self.received: queue.Queue[tuple[dict[str, str], bytes, bool]] = queue.Queue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = verify_signature(
                    receiver.secret, self.headers.get("X-CRM-Signature", ""), body
                )
                self.send_response(204 if ok else 401)
                self.end_headers()
                receiver.received.put(({k.lower(): v for k, v in self.headers.items()}, body, ok))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/crm-webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float) -> tuple[dict[str, str], bytes, bool]:
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def receive_one_event(api: Api, customer_id: str, host: str) -> dict[str, Any]:
    """Subscribe a local receiver to `activity.created`, log a note, and return what
    arrived (the event, whether its signature held, and that a tampered copy fails)."""
    receiver = Receiver(host)
    created = api.mutate(
        CREATE_WEBHOOK,
        {"url": receiver.url, "eventTypes": ["activity.created"]},
        "createWebhook",
    )
    receiver.secret = created["secret"]  # shown once: store it like a password
    try:
        note = api.mutate(
            LOG_NOTE,
            {"type": "NOTE", "subject": "Synced by the partner", "customerId": customer_id},
            "createActivity",
        )
        headers, body, verified = receiver.next(timeout=60)
        event = json.loads(body)
        return {
            "verified": verified,
            "tamperedVerifies": verify_signature(
                receiver.secret, headers["x-crm-signature"], body.replace(b"NOTE", b"CALL")
            ),
            "deliveryHeader": headers["x-crm-delivery"],
            "noteId": note["activity"]["id"],
            "body": event,
        }
    finally:
        api.mutate(DELETE_WEBHOOK, {"id": created["webhook"]["id"]}, "deleteWebhook")
        receiver.close()


def main() -> int:
    url = os.environ.get("CRM_URL", "http://127.0.0.1:8000/graphql")
    api = Api(url, os.environ["CRM_API_KEY"])
    customers, pages = all_customers(api, int(os.environ.get("CRM_PAGE_SIZE", "50")))
    print(f"{len(customers)} customers in {pages} pages", file=sys.stderr)
    webhook = None
    if customers:
        webhook = receive_one_event(
            api, customers[0]["id"], os.environ.get("CRM_HOOK_HOST", "127.0.0.1")
        )
    print(
        json.dumps(
            {
                "customers": [c["name"] for c in customers],
                "pages": pages,
                "rateLimitedWaits": api.waits,
                "lastCost": api.last_cost,
                "webhook": webhook,
            }
        )
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ApiError as error:
        print(f"the API refused: {error}", file=sys.stderr)
        sys.exit(2)
