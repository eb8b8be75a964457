"""The raw floor: the benchmark's answers fetched with hand-written asyncpg SQL and returned
by a bare Starlette app, with no GraphQL in between. What any GraphQL server on this stack
can at best approach.

- ``POST /raw/q1`` .. ``/raw/q4``: one SQL statement each that builds the whole JSON
  response (``{"data": ...}`` of the same shape as the GraphQL queries in bench/queries/)
  in PostgreSQL; the bytes go out as they come.
- ``POST /raw/s1`` .. ``/raw/s5``, ``/raw/cf1``: issue 13's search, segment page, sales and
  service reports, revenue by owner and custom-field page, each the hand-written statement of ``bench/floors/`` (read
  from there, so the floor measured is the file), with the request's variables as its
  parameters.
- ``POST /raw/p1`` .. ``/raw/p4``: issue 14's page-shaped reads (list page with ``me``,
  inbox page, customer page, deal board), each the statement of ``bench/floors/p*.sql``;
  the caller's user id comes with the request's variables (``viewer``), as the token
  names it for our server.
- ``POST /raw/m1/activity|move|message``: the M1 writes as plain SQL transactions.
- ``POST /raw/publish``: RT2's event source: insert an activity, then publish its
  pre-encoded ``next`` frame on Redis; every process sends those same bytes to each of its
  sockets on ``/graphql`` (a minimal graphql-transport-ws: init/ack, subscribe, ping/pong).
- ``POST /raw/send``: RT1's event source: the M1 message transaction (which also reads
  the conversation's assignee), then one Redis message with the conversation, the
  assignee and two pre-encoded frames; every process sends the message frame to its
  sockets following that conversation and the inbox frame to the assignee's inbox
  sockets. A socket's user is its ``connection_init`` token (the bench passes the user's
  id: the floor checks no credentials, as it applies no visibility rule here).

    BENCH_DATABASE_URL=... BENCH_REDIS_URL=... BENCH_WORKSPACE_ID=... \\
        uvicorn bench.raw_floor:app --port 8100
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.null_fanout import Groups

CHANNEL = "bench:raw:activity"
CHAT_CHANNEL = "bench:raw:chat"


def gid(type_name: str, column: str) -> str:
    """SQL for our Relay global ID (base64url of ``Type:uuid`` without padding)."""
    return (
        f"rtrim(translate(encode(convert_to('{type_name}:' || {column}::text, 'UTF8'), 'base64'),"
        f" '+/', '-_'), '=')"
    )


def page(select_sql: str, node_sql: str, order_sql: str, limit: int) -> str:
    """Wrap a keyset page ``select_sql`` (one row per node, aliased ``p``) into
    ``{nodes, pageInfo}`` JSON: ``limit + 1`` rows read to know whether more exist."""
    return f"""
      SELECT json_build_object(
        'nodes', coalesce(json_agg({node_sql} ORDER BY p.rn) FILTER (WHERE p.rn <= {limit}), '[]'),
        'pageInfo', json_build_object(
          'hasNextPage', count(*) > {limit},
          'endCursor', replace(encode(convert_to((array_agg(p.cursor_key ORDER BY p.rn))[least(count(*), {limit})],
                                                 'UTF8'), 'base64'), E'\n', '')))
      FROM (SELECT s.*, row_number() OVER (ORDER BY {order_sql}) AS rn FROM ({select_sql}) s) p
    """


CUSTOMER_PAGE = """
  SELECT c.*, c.created_at::text || '|' || c.id::text AS cursor_key FROM customers c
  WHERE c.workspace_id = $1 AND c.archived_at IS NULL
  ORDER BY c.created_at DESC, c.id DESC LIMIT {limit}
"""

Q1 = "SELECT json_build_object('data', json_build_object('customers', ({page})))::text".format(
    page=page(
        CUSTOMER_PAGE.format(limit=51),
        f"""json_build_object('id', {gid("Customer", "p.id")}, 'name', p.name, 'email', p.email,
              'lifecycleStage', upper(p.lifecycle_stage), 'tags', p.tags,
              'company', (SELECT json_build_object('id', {gid("Company", "co.id")}, 'name', co.name)
                          FROM companies co WHERE co.workspace_id = $1 AND co.id = p.company_id),
              'owner', (SELECT json_build_object('id', {gid("User", "u.id")}, 'name', u.name)
                        FROM users u WHERE u.workspace_id = $1 AND u.id = p.owner_id))""",
        "s.created_at DESC, s.id DESC",
        50,
    )
)

Q2 = f"""
SELECT json_build_object('data', json_build_object('customers', json_build_object('nodes',
  coalesce(json_agg(json_build_object(
    'id', {gid("Customer", "c.id")}, 'name', c.name, 'email', c.email,
    'lifecycleStage', upper(c.lifecycle_stage),
    'company', (SELECT json_build_object('id', {gid("Company", "co.id")}, 'name', co.name)
                FROM companies co WHERE co.workspace_id = $1 AND co.id = c.company_id),
    'deals', json_build_object('nodes', coalesce((
      SELECT json_agg(json_build_object(
        'id', {gid("Deal", "d.id")}, 'title', d.title, 'amount', d.amount::text,
        'currency', d.currency, 'status', upper(d.status),
        'stage', (SELECT json_build_object('id', {gid("Stage", "st.id")}, 'name', st.name,
                                           'probability', st.probability)
                  FROM stages st WHERE st.workspace_id = $1 AND st.id = d.stage_id),
        'activities', json_build_object('nodes', coalesce((
          SELECT json_agg(json_build_object('id', {gid("Activity", "a.id")}, 'type', upper(a.type),
                                            'subject', a.subject, 'occurredAt', a.occurred_at)
                          ORDER BY a.occurred_at DESC, a.id DESC)
          FROM (SELECT * FROM activities a WHERE a.workspace_id = $1 AND a.deal_id = d.id
                AND a.archived_at IS NULL ORDER BY a.occurred_at DESC, a.id DESC LIMIT 3) a),
          '[]'))) ORDER BY d.created_at DESC, d.id DESC)
      FROM (SELECT * FROM deals d WHERE d.workspace_id = $1 AND d.customer_id = c.id
            AND d.archived_at IS NULL ORDER BY d.created_at DESC, d.id DESC LIMIT 5) d), '[]')),
    'orders', json_build_object('nodes', coalesce((
      SELECT json_agg(json_build_object('id', {gid("Order", "o.id")}, 'number', o.number,
                                        'status', upper(o.status), 'amount', o.amount::text,
                                        'currency', o.currency, 'placedAt', o.placed_at)
                      ORDER BY o.placed_at DESC, o.id DESC)
      FROM (SELECT * FROM orders o WHERE o.workspace_id = $1 AND o.customer_id = c.id
            AND o.archived_at IS NULL ORDER BY o.placed_at DESC, o.id DESC LIMIT 5) o), '[]')),
    'purchaseSummary', (
      SELECT json_build_object(
        'orderCount', count(*),
        'totals', coalesce((
          SELECT json_agg(json_build_object('amount', t.amount::text, 'currency', t.currency)
                          ORDER BY t.currency)
          FROM (SELECT currency, sum(amount) AS amount FROM orders o2
                WHERE o2.workspace_id = $1 AND o2.customer_id = c.id
                  AND o2.status IN ('paid', 'fulfilled') AND o2.archived_at IS NULL
                GROUP BY currency) t), '[]'),
        'firstOrderAt', min(o.placed_at), 'lastOrderAt', max(o.placed_at))
      FROM orders o WHERE o.workspace_id = $1 AND o.customer_id = c.id
        AND o.status IN ('paid', 'fulfilled') AND o.archived_at IS NULL)
  ) ORDER BY c.created_at DESC, c.id DESC), '[]'))))::text
FROM (SELECT * FROM customers c WHERE c.workspace_id = $1 AND c.archived_at IS NULL
      ORDER BY c.created_at DESC, c.id DESC LIMIT 20) c
"""

Q3 = f"""
SELECT json_build_object('data', json_build_object('node', (
  SELECT json_build_object('id', {gid("Customer", "c.id")}, 'name', c.name, 'email', c.email,
    'phone', c.phone, 'lifecycleStage', upper(c.lifecycle_stage), 'tags', c.tags,
    'lastActivityAt', c.last_activity_at,
    'company', (SELECT json_build_object('id', {gid("Company", "co.id")}, 'name', co.name)
                FROM companies co WHERE co.workspace_id = $1 AND co.id = c.company_id),
    'owner', (SELECT json_build_object('id', {gid("User", "u.id")}, 'name', u.name)
              FROM users u WHERE u.workspace_id = $1 AND u.id = c.owner_id))
  FROM customers c WHERE c.workspace_id = $1 AND c.id = $2)))::text
"""

Q4_PAGE = """
  SELECT c.*, coalesce(c.last_activity_at::text, '') || '|' || c.id::text AS cursor_key
  FROM customers c
  WHERE c.workspace_id = $1 AND c.archived_at IS NULL
    AND c.name ILIKE '%' || $2 || '%' AND c.lifecycle_stage = ANY($3::text[])
    AND c.created_at >= $4 AND c.created_at < $5 AND c.last_activity_at IS NOT NULL
  ORDER BY c.last_activity_at DESC NULLS LAST, c.id DESC LIMIT 51
"""

Q4 = "SELECT json_build_object('data', json_build_object('customers', ({page})))::text".format(
    page=page(
        Q4_PAGE,
        f"""json_build_object('id', {gid("Customer", "p.id")}, 'name', p.name, 'email', p.email,
              'lifecycleStage', upper(p.lifecycle_stage), 'lastActivityAt', p.last_activity_at,
              'createdAt', p.created_at,
              'company', (SELECT json_build_object('id', {gid("Company", "co.id")}, 'name', co.name)
                          FROM companies co WHERE co.workspace_id = $1 AND co.id = p.company_id))""",
        "s.last_activity_at DESC NULLS LAST, s.id DESC",
        50,
    )
)

FLOORS = Path(__file__).resolve().parent / "floors"


def floor_sql(name: str, root_field: str | None = None) -> str:
    """The statement of ``bench/floors/<name>.sql``; ``root_field``: the floor returns the
    root field's object only, wrapped here into ``{"data": {root_field: ...}}``."""
    sql = (FLOORS / f"{name}.sql").read_text().strip().rstrip(";")
    if root_field is None:
        return sql
    return (
        f"SELECT json_build_object('data', json_build_object('{root_field}', f.r))::text"
        f" FROM (\n{sql}\n) AS f (r)"
    )


S1 = floor_sql("s1_search")
S2 = floor_sql("s2_segment_page")
S3 = floor_sql("s3_sales_report", "salesReport")
S4 = floor_sql("s4_service_report", "serviceReport")
S5 = floor_sql("s5_revenue_by_owner")
CF1 = floor_sql("cf1_custom_field_page")
P1 = floor_sql("p1_list_page")
P2 = floor_sql("p2_inbox_page")
P3 = floor_sql("p3_customer_page")
P4 = floor_sql("p4_deal_board")


def day_bounds(start: str, end: str, zone: str | None) -> tuple[datetime, datetime]:
    """A report's period: ``start`` 00:00 to the day after ``end`` 00:00 in ``zone``."""
    tz = ZoneInfo(zone or "UTC")
    first = datetime.combine(date.fromisoformat(start), time.min, tzinfo=tz)
    after = datetime.combine(date.fromisoformat(end) + timedelta(days=1), time.min, tzinfo=tz)
    return first.astimezone(UTC), after.astimezone(UTC)


INSERT_ACTIVITY = """
  INSERT INTO activities (id, workspace_id, type, subject, customer_id, author_id, occurred_at, version)
  VALUES ($1, $2, 'note', $3, $4, $5, now(), 1) RETURNING id, occurred_at
"""


class Floor:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.redis: aioredis.Redis | None = None
        self.workspace = uuid.UUID(os.environ["BENCH_WORKSPACE_ID"])
        self.author = uuid.UUID(os.environ["BENCH_AUTHOR_ID"])
        self.groups: Groups[WebSocket] = Groups()
        self.listener: asyncio.Task[None] | None = None

    async def json(self, sql: str, *args: Any) -> Response:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            body = await conn.fetchval(sql, self.workspace, *args)
        return Response(body, media_type="application/json")

    async def listen(self) -> None:
        assert self.redis is not None
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(CHANNEL, CHAT_CHANNEL)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            if message["channel"] == CHAT_CHANNEL.encode():
                chat = json.loads(message["data"])
                await self.broadcast(self.groups.conversations.get(chat["c"], ()), chat["m"])
                await self.broadcast(self.groups.inboxes.get(chat["a"] or "", ()), chat["i"])
                continue
            await self.broadcast(self.groups.feed, message["data"].decode())

    @staticmethod
    async def broadcast(sockets: Any, text: str) -> None:
        for ws in list(sockets):
            # The same pre-encoded frame goes to every socket.
            with contextlib.suppress(Exception):
                await ws.send_text(text)


floor = Floor()


async def q1(request: Request) -> Response:
    return await floor.json(Q1)


async def q2(request: Request) -> Response:
    return await floor.json(Q2)


async def q3(request: Request) -> Response:
    variables = (await request.json())["variables"]
    return await floor.json(Q3, uuid.UUID(variables["id"]))


async def q4(request: Request) -> Response:

    v = (await request.json())["variables"]
    stages = [s.lower() for s in v["stages"]]
    return await floor.json(
        Q4, v["name"], stages, datetime.fromisoformat(v["from"]), datetime.fromisoformat(v["to"])
    )


async def s1(request: Request) -> Response:
    # The bench's queries are 2-4 ASCII letters: their folded word is the lower-case form.
    word = (await request.json())["variables"]["q"].lower()
    upper = word[:-1] + chr(ord(word[-1]) + 1)
    return await floor.json(S1, word, upper, f"'{word}':*")


async def s2(request: Request) -> Response:
    return await floor.json(S2)


async def s3(request: Request) -> Response:
    v = (await request.json())["variables"]
    first, after = day_bounds(v["from"], v["to"], v.get("tz"))
    return await floor.json(
        S3,
        uuid.UUID(v["pipeline"]),
        first,
        after,
        date.fromisoformat(v["from"]),
        date.fromisoformat(v["to"]),
    )


async def s4(request: Request) -> Response:
    v = (await request.json())["variables"]
    first, after = day_bounds(v["from"], v["to"], v.get("tz"))
    return await floor.json(S4, first, after, datetime.now(UTC))


async def s5(request: Request) -> Response:
    v = (await request.json())["variables"]
    return await floor.json(
        S5, datetime.fromisoformat(v["from"]), datetime.fromisoformat(v["to"]), v["timeZone"]
    )


async def cf1(request: Request) -> Response:
    v = (await request.json())["variables"]
    return await floor.json(CF1, json.dumps(v["sources"]), v["prefix"])


async def p1(request: Request) -> Response:
    v = (await request.json())["variables"]
    return await floor.json(P1, uuid.UUID(v["viewer"]))


async def p2(request: Request) -> Response:
    v = (await request.json())["variables"]
    return await floor.json(P2, uuid.UUID(v["viewer"]))


async def p3(request: Request) -> Response:
    v = (await request.json())["variables"]
    return await floor.json(P3, uuid.UUID(v["id"]), uuid.UUID(v["viewer"]))


async def p4(request: Request) -> Response:
    v = (await request.json())["variables"]
    return await floor.json(P4, uuid.UUID(v["id"]))


async def m1_activity(request: Request) -> Response:
    v = (await request.json())["variables"]
    assert floor.pool is not None
    async with floor.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            INSERT_ACTIVITY,
            uuid.uuid4(),
            floor.workspace,
            v["subject"],
            uuid.UUID(v["customerId"]),
            floor.author,
        )
        await conn.execute(
            "UPDATE customers SET last_activity_at = greatest(last_activity_at, $3)"
            " WHERE workspace_id = $1 AND id = $2",
            floor.workspace,
            uuid.UUID(v["customerId"]),
            row["occurred_at"],
        )
    return JSONResponse(
        {"data": {"createActivity": {"activity": {"id": str(row["id"])}, "errors": []}}}
    )


async def m1_move(request: Request) -> Response:
    v = (await request.json())["variables"]
    assert floor.pool is not None
    async with floor.pool.acquire() as conn, conn.transaction():
        version = await conn.fetchval(
            "UPDATE deals SET stage_id = $3, version = version + 1, updated_at = now()"
            " WHERE workspace_id = $1 AND id = $2 RETURNING version",
            floor.workspace,
            uuid.UUID(v["id"]),
            uuid.UUID(v["stageId"]),
        )
    return JSONResponse(
        {"data": {"moveDeal": {"deal": {"id": v["id"], "version": version}, "errors": []}}}
    )


async def m1_message(request: Request) -> Response:
    v = (await request.json())["variables"]
    assert floor.pool is not None
    async with floor.pool.acquire() as conn, conn.transaction():
        seq = await conn.fetchval(
            "UPDATE conversations SET last_message_seq = last_message_seq + 1, last_message_at = now()"
            " WHERE workspace_id = $1 AND id = $2 RETURNING last_message_seq",
            floor.workspace,
            uuid.UUID(v["conversationId"]),
        )
        await conn.execute(
            "INSERT INTO messages (id, workspace_id, conversation_id, seq, author_type, author_user_id, body)"
            " VALUES ($1, $2, $3, $4, 'agent', $5, $6)",
            uuid.uuid4(),
            floor.workspace,
            uuid.UUID(v["conversationId"]),
            seq,
            floor.author,
            v["body"],
        )
    return JSONResponse({"data": {"sendMessage": {"message": {"seq": seq}, "errors": []}}})


async def publish(request: Request) -> Response:
    """RT2's event: write the activity, then broadcast one pre-encoded frame."""
    v = (await request.json())["variables"]
    assert floor.pool is not None and floor.redis is not None
    async with floor.pool.acquire() as conn:
        row = await conn.fetchrow(
            INSERT_ACTIVITY, uuid.uuid4(), floor.workspace, v["subject"], None, floor.author
        )
    payload = {
        "activityFeed": {
            "cursor": str(row["id"]),
            "type": "activity.created",
            "activity": {"id": str(row["id"]), "type": "NOTE", "subject": v["subject"]},
        }
    }
    frame = json.dumps({"id": "1", "type": "next", "payload": {"data": payload}})
    await floor.redis.publish(CHANNEL, frame)
    return JSONResponse(
        {"data": {"createActivity": {"activity": {"id": str(row["id"])}, "errors": []}}}
    )


async def send(request: Request) -> Response:
    """RT1's event: the M1 message transaction, then one broadcast of two pre-encoded
    frames (the conversation's, the assignee's inbox's)."""
    v = (await request.json())["variables"]
    assert floor.pool is not None and floor.redis is not None
    conversation = uuid.UUID(v["conversationId"])
    async with floor.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE conversations SET last_message_seq = last_message_seq + 1, last_message_at = now()"
            " WHERE workspace_id = $1 AND id = $2 RETURNING last_message_seq, assignee_id",
            floor.workspace,
            conversation,
        )
        message_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO messages (id, workspace_id, conversation_id, seq, author_type, author_user_id, body)"
            " VALUES ($1, $2, $3, $4, 'agent', $5, $6)",
            message_id,
            floor.workspace,
            conversation,
            row["last_message_seq"],
            floor.author,
            v["body"],
        )
    message = {"id": str(message_id), "seq": row["last_message_seq"], "body": v["body"]}
    events = {
        "conversationEvents": {"cursor": str(message_id), "type": "message.created", "message": message},
    }
    inbox = {
        "inbox": {
            "cursor": str(message_id),
            "type": "message.created",
            "conversation": {"id": str(conversation)},
            "message": message,
        }
    }
    chat = {
        "c": str(conversation),
        "a": str(row["assignee_id"]) if row["assignee_id"] else None,
        "m": json.dumps({"id": "1", "type": "next", "payload": {"data": events}}),
        "i": json.dumps({"id": "1", "type": "next", "payload": {"data": inbox}}),
    }
    await floor.redis.publish(CHAT_CHANNEL, json.dumps(chat))
    return JSONResponse({"data": {"sendMessage": {"message": {"seq": row["last_message_seq"]}, "errors": []}}})


async def websocket(ws: WebSocket) -> None:
    """graphql-transport-ws, just enough for the bench client (it subscribes with id "1"):
    a subscription naming a ``conversationId`` follows that conversation, one whose
    document asks for ``inbox`` follows its user's inbox, any other the activity feed."""
    await ws.accept(subprotocol="graphql-transport-ws")
    user = ""
    try:
        while True:
            message = json.loads(await ws.receive_text())
            kind = message.get("type")
            if kind == "connection_init":
                token = str((message.get("payload") or {}).get("Authorization", ""))
                user = token.removeprefix("Bearer ")
                await ws.send_text('{"type":"connection_ack"}')
            elif kind == "subscribe":
                floor.groups.subscribe(ws, message.get("payload") or {}, user)
            elif kind == "ping":
                await ws.send_text('{"type":"pong"}')
            elif kind == "complete":
                floor.groups.forget(ws)
    except WebSocketDisconnect:
        pass
    finally:
        floor.groups.forget(ws)


async def readyz(request: Request) -> Response:
    return JSONResponse({"ok": True})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # JIT off, as our server runs (crm_graphql/db/engine.py): compiling a generic plan of
    # a large statement (the S1 floor's stages) takes seconds per execution.
    floor.pool = await asyncpg.create_pool(
        os.environ["BENCH_DATABASE_URL"],
        min_size=2,
        max_size=10,
        server_settings={"jit": "off"},
    )
    floor.redis = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    floor.listener = asyncio.create_task(floor.listen())
    yield
    floor.listener.cancel()
    await floor.pool.close()
    await floor.redis.aclose()


app = Starlette(
    routes=[
        Route("/raw/q1", q1, methods=["POST"]),
        Route("/raw/q2", q2, methods=["POST"]),
        Route("/raw/q3", q3, methods=["POST"]),
        Route("/raw/q4", q4, methods=["POST"]),
        Route("/raw/s1", s1, methods=["POST"]),
        Route("/raw/s2", s2, methods=["POST"]),
        Route("/raw/s3", s3, methods=["POST"]),
        Route("/raw/s4", s4, methods=["POST"]),
        Route("/raw/s5", s5, methods=["POST"]),
        Route("/raw/cf1", cf1, methods=["POST"]),
        Route("/raw/p1", p1, methods=["POST"]),
        Route("/raw/p2", p2, methods=["POST"]),
        Route("/raw/p3", p3, methods=["POST"]),
        Route("/raw/p4", p4, methods=["POST"]),
        Route("/raw/m1/activity", m1_activity, methods=["POST"]),
        Route("/raw/m1/move", m1_move, methods=["POST"]),
        Route("/raw/m1/message", m1_message, methods=["POST"]),
        Route("/raw/publish", publish, methods=["POST"]),
        Route("/raw/send", send, methods=["POST"]),
        Route("/readyz", readyz),
        WebSocketRoute("/graphql", websocket),
    ],
    lifespan=lifespan,
)
