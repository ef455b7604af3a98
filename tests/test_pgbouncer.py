"""DATABASE_PGBOUNCER=true: the service through PgBouncer in transaction pooling mode.

There a client connection is handed a different server connection for each transaction, so
asyncpg's cached, numbered prepared statements break ("prepared statement
\"__asyncpg_stmt_1__\" does not exist" / "already exists"). Debian's `pgbouncer` runs in front
of the test database with fewer server connections than the service's two pools hold, so
client connections really do share server connections; every database path of the service
(the advertiser callback, the token read, refresh on read, the worker, migrations) then runs
through it, many times and concurrently.

pgbouncer is installed with apt-get when missing and we run as root on Debian (as
tests/debian.py does for Chromium); anywhere else the test fails with instructions: it
is never skipped.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import respx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.debian import ensure_program
from tests.fixtures import FRONTEND, OPEN_ID, TIKTOK_API, Canaries, FakeClock, bearer, make_settings
from tests.helpers import TikTokAccounts, connect_account, envelope, start_authorization
from tests.test_authorization import ADVERTISERS, grant_token
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database, migrate
from tiktok_auth_service.service import Service

# A PgBouncer in front of PostgreSQL: among the long runs.
pytestmark = pytest.mark.slow

# Fewer server connections than the service's pools have clients (2 x DATABASE_POOL_SIZE),
# so consecutive transactions of one client land on different server connections.
SERVER_CONNECTIONS = 2
ROUNDS = 3
READERS = 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _unprivileged_user(host: str) -> pwd.struct_passwd | None:
    """Whom pgbouncer runs as: it refuses root. The owner of a Unix-socket directory (the
    embedded server's user: pgserver or postgres) can always reach the socket in it."""
    if os.geteuid() != 0:
        return None
    owner = os.stat(host).st_uid if host.startswith("/") else 0
    return pwd.getpwuid(owner) if owner != 0 else pwd.getpwnam("nobody")


@pytest.fixture(scope="module")
def pgbouncer(migrated: str) -> Iterator[str]:
    """PgBouncer in transaction pooling mode in front of the test database; yields its URL."""
    binary = ensure_program("pgbouncer", "pgbouncer", Path("/usr/sbin/pgbouncer"))
    target = make_url(migrated)
    host = str(target.query.get("host") or target.host or "localhost")
    user = _unprivileged_user(host)
    workdir = Path(tempfile.mkdtemp(prefix="tas-pgbouncer-"))  # outside pytest's 0700 tmp
    port = _free_port()
    (workdir / "userlist.txt").write_text(f'"{target.username}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
{target.database} = host={host} port={target.port or 5432} dbname={target.database}
* = host={host} port={target.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
admin_users = {target.username}
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 200
logfile = {workdir}/pgbouncer.log
"""
    )
    if user is not None:
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
    process = subprocess.Popen(
        [binary, str(workdir / "pgbouncer.ini")],
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                log = workdir / "pgbouncer.log"
                text = log.read_text() if log.exists() else ""
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not start (exit {process.poll()}):\n{text}")
                time.sleep(0.05)
        yield f"postgresql+asyncpg://{target.username}@127.0.0.1:{port}/{target.database}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def settings(pgbouncer: str) -> Settings:
    """Overrides conftest's: the `app`, `service`, `client` and `api_key` fixtures go through
    PgBouncer (`pg`, used for assertions and emptying the tables, goes direct). The tests
    start authorizations at /authorize directly: no connect session required."""
    return make_settings(pgbouncer, database_pgbouncer=True, connect_sessions_required=False)


@pytest.fixture
def tiktok() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        # Each round's new grant replaces the last one, whose token is then revoked.
        mock.post("/oauth2/revoke_token/").respond(json=envelope())
        yield mock


async def test_migrations_run_through_pgbouncer(
    pgbouncer: str, empty_database: str, pg: asyncpg.Connection
) -> None:
    """Every migration, from an empty database to head, through transaction pooling."""
    name = make_url(empty_database).database
    await migrate(make_url(pgbouncer).set(database=name).render_as_string(False), pgbouncer=True)
    migrated = await asyncpg.connect(empty_database.replace("+asyncpg", "", 1))
    try:
        head = await pg.fetchval("SELECT version_num FROM alembic_version")
        assert await migrated.fetchval("SELECT version_num FROM alembic_version") == head
        tables = (
            "SELECT array_agg(tablename ORDER BY tablename) FROM pg_tables"
            " WHERE schemaname = 'public'"
        )
        assert await migrated.fetchval(tables) == await pg.fetchval(tables)
    finally:
        await migrated.close()


async def test_advertiser_flow_and_concurrent_token_reads(
    client: httpx.AsyncClient, tiktok: respx.MockRouter, canaries: Canaries, api_key: str
) -> None:
    for _ in range(ROUNDS):
        token = grant_token(tiktok, canaries)
        state = await start_authorization(client, return_to=f"{FRONTEND}/done")
        callback = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert callback.status_code == 302, callback.text
        assert "status=connected" in callback.headers["location"]
        reads = await asyncio.gather(
            *(
                client.get(f"/tokens/{ADVERTISERS[i % 2]}", headers=bearer(api_key))
                for i in range(READERS)
            )
        )
        assert [r.status_code for r in reads] == [200] * READERS, reads[0].text
        assert {r.json()["access_token"] for r in reads} == {token}


async def test_account_refresh_on_read_and_by_the_worker(
    client: httpx.AsyncClient,
    canaries: Canaries,
    clock: FakeClock,
    api_key: str,
    service: Service,
) -> None:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        tiktok = TikTokAccounts(mock, canaries, clock)
        assert (await connect_account(client)).status_code == 302
        url = f"/tokens/accounts/{OPEN_ID}"
        for round_ in range(1, ROUNDS + 1):
            clock.advance(hours=24)  # expired: every concurrent reader waits for one refresh
            reads = await asyncio.gather(
                *(client.get(url, headers=bearer(api_key)) for _ in range(READERS))
            )
            assert [r.status_code for r in reads] == [200] * READERS, reads[0].text
            assert {r.json()["access_token"] for r in reads} == {tiktok.access_tokens[-1]}
            assert tiktok.refresh.call_count == round_
        for round_ in range(ROUNDS + 1, 2 * ROUNDS + 1):
            clock.advance(hours=23, minutes=50)  # due for the worker (leeway + ahead)
            assert await service.worker.drain() == 1
            assert tiktok.refresh.call_count == round_
        served = await client.get(url, headers=bearer(api_key))
        assert served.json()["access_token"] == tiktok.access_tokens[-1]


@pytest.mark.parametrize("setting", [False, True])
async def test_only_the_setting_survives_a_change_of_server_connection(
    pgbouncer: str, setting: bool
) -> None:
    """Deterministic proof that the setting is what matters: a statement runs, PgBouncer's
    RECONNECT makes the next transaction use a new server connection, and the statement runs
    again. Without the setting each pool reuses its cached prepared statement, which the new
    server connection has never seen."""
    db = await Database.connect(pgbouncer, pool_size=1, pgbouncer=setting)
    # The admin console (database "pgbouncer") speaks only the simple query protocol, which
    # asyncpg uses for an execute() without arguments.
    admin = await asyncpg.connect(
        f"{pgbouncer.rsplit('/', 1)[0]}/pgbouncer".replace("+asyncpg", "")
    )

    async def token_read_pool() -> object:
        return await db.pool.fetchval("SELECT 1")

    async def write_engine() -> object:
        async with db.session() as session:
            return await session.scalar(text("SELECT 1"))

    try:
        for select in (token_read_pool, write_engine):
            assert await select() == 1
            await admin.execute("RECONNECT")
            if setting:
                assert await select() == 1
            else:
                with pytest.raises(
                    (asyncpg.InvalidSQLStatementNameError, DBAPIError),
                    match=r'prepared statement "__asyncpg_stmt_\w+__" does not exist',
                ):
                    await select()
    finally:
        await admin.close()
        await db.close()
