"""Agency scale: an advertiser callback with many advertisers already stored.

    uv run python bench/scale.py [--sizes 0,100000,1000000] [--grant 1000] [--large 5000]
                                 [--repeats 3] [--due 10000,100000] [--quick]

Starts an embedded PostgreSQL, a TikTok emulator and `serve --workers 1` (worker off), all on
loopback. At each of `--sizes` it first seeds the database up to that many stored advertisers
through SQL (COPY, then INSERT ... SELECT unnest): live grants of 100-1,000 advertisers
each, plus revoked grants that once covered 10-100 of them, until there are a hundred times
fewer grants than advertisers (10,000 grants at 1,000,000). Tokens are sealed with the
service's sealer, as the service stores them; then ANALYZE, as autovacuum would have by then.

Then it connects, through the real browser flow against the emulator (/authorize, the consent
form, /callback), `--repeats` grants of `--grant` new advertisers, one re-authorization of the
last of them (which replaces and revokes it), and one grant of `--large` advertisers, timing
each /callback request. The table shows each against the same callback with nothing stored,
and the time of GET /connections (100 a page, median of 5): the first page, a page nine tenths
of the way in, and the first page of a key restricted to 100 advertisers spread over the table.

Then, at the largest size, it runs in this process one callback, one re-authorization, one
grant of `--large` advertisers, one liveness check of that grant after a tenth of its
advertisers changed at TikTok (half withdrawn, as many added: POST /tokens/{id}/check), and
one DELETE /tokens/{id}, and prints the EXPLAIN (ANALYZE, BUFFERS) of every statement each of
them sent: each statement is explained just before it runs, inside a savepoint rolled back
afterwards, so the plan is of the data the statement really met. For the check it also counts
the rows written (their xmin is the check's), table by table. The plans of the three
GET /connections pages follow.

Last, the worker's claim (bench/sweeps.py's, timed and explained) with 10,000 and then 100,000
grants due on top of it all. `--quick` runs a small version, to check that the bench works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
import sweeps
from pydantic import SecretStr
from running import emulator_app, free_port, running, service_env, settings_of

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app
from tiktok_auth_service.clock import SystemClock
from tiktok_auth_service.connections.service import encode_cursor
from tiktok_auth_service.crypto import TokenSealer, digest
from tiktok_auth_service.db import Database, migrate
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.ops.api_keys import ApiKeys
from tiktok_auth_service.repository.reads import _LIST_CONNECTIONS_SQL

GRANT_COLUMNS = (
    "id",
    "flow",
    "key_id",
    "access_token_enc",
    "scope",
    "status",
    "version",
    "created_at",
    "updated_at",
    "last_checked_at",
    "advertiser_ids",
    "next_check_at",
)


def stored_id(n: int) -> str:
    """The n-th seeded advertiser."""
    return f"73{n:017d}"


def connected_id(n: int) -> str:
    """The n-th advertiser the bench connects through the emulator."""
    return f"74{n:017d}"


def serve_emulator(port: int, app: dict[str, Any], advertisers: int) -> None:
    """The emulator (run in its own process) listing `advertisers` advertisers to consent to."""
    import uvicorn

    from tiktok_emulator import EmulatorAdvertiser, EmulatorApp, EmulatorConfig, create_emulator_app

    config = EmulatorConfig(
        apps=[EmulatorApp(**app)],
        advertisers=[
            EmulatorAdvertiser(advertiser_id=connected_id(n), advertiser_name=f"Agency client {n}")
            for n in range(advertisers)
        ],
        qps=0,
        qpm=0,
        qpd=0,
    )
    uvicorn.run(create_emulator_app(config), port=port, log_level="warning", access_log=False)


async def seed(database_url: str, sealer: TokenSealer, first: int, last: int) -> int:
    """Stored advertisers first..last-1 in live grants of 100-1,000, and revoked grants covering
    10-100 of them until the table holds last/100 grants; returns the number of grants."""
    rng = random.Random(last)
    now = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    live: list[uuid.UUID] = []

    def grant_row(status: GrantStatus, advertiser_ids: list[str], age: timedelta) -> None:
        grant = Grant(
            id=uuid.uuid4(),
            flow=Flow.ADVERTISER,
            key_id="",
            access_token_enc=b"",
            scope=[4],
            status=status,
            created_at=now - age,
            updated_at=now - age,
        )
        sealer.seal(grant, SecretStr(f"ltt.scale.{grant.id.hex}"))
        rows.append(
            (
                grant.id,
                str(grant.flow),
                grant.key_id,
                grant.access_token_enc,
                json.dumps([4]),
                str(status),
                1,
                grant.created_at,
                grant.updated_at,
                grant.created_at,
                advertiser_ids,
                now + timedelta(hours=6),
            )
        )
        if status == GrantStatus.ACTIVE:
            live.append(grant.id)

    n = first
    while n < last:
        size = min(rng.randint(100, 1000), last - n)
        grant_row(GrantStatus.ACTIVE, [stored_id(i) for i in range(n, n + size)], timedelta(1))
        n += size
    connection = await asyncpg.connect(database_url.replace("+asyncpg", "", 1))
    try:
        grants = await connection.fetchval("SELECT count(*) FROM oauth_grant") + len(rows)
        for _ in range(max(0, last // 100 - grants)):
            start = rng.randrange(first, last)
            size = min(rng.randint(10, 100), last - start)
            ids = [stored_id(i) for i in range(start, start + size)]
            grant_row(GrantStatus.REVOKED, ids, timedelta(days=30))
        # Seeding only: no token-cache notifications, no foreign-key checks per row.
        await connection.execute("SET session_replication_role = replica")
        await connection.copy_records_to_table("oauth_grant", records=rows, columns=GRANT_COLUMNS)
        await connection.execute(
            "INSERT INTO advertiser (advertiser_id, grant_id, name, status, created_at,"
            " updated_at)"
            " SELECT a, g.id, 'Advertiser ' || a, 'active', g.created_at, g.created_at"
            " FROM oauth_grant AS g, unnest(g.advertiser_ids) AS a WHERE g.id = ANY($1)",
            live,
        )
        # What the triggers would have written: each grant's advertiser list as rows.
        await connection.execute(
            "INSERT INTO grant_coverage (advertiser_id, grant_id)"
            " SELECT DISTINCT a, g.id FROM oauth_grant AS g, unnest(g.advertiser_ids) AS a"
            " WHERE g.id = ANY($1)",
            [row[0] for row in rows],
        )
        await connection.execute("RESET session_replication_role")
        await connection.execute("ANALYZE oauth_grant; ANALYZE advertiser; ANALYZE grant_coverage")
        total: int = await connection.fetchval("SELECT count(*) FROM oauth_grant")
        return total
    finally:
        await connection.close()


@dataclass
class Browser:
    """Consents at the emulator and follows TikTok's redirect back to the service's /callback."""

    service: httpx.AsyncClient
    emulator: httpx.AsyncClient
    # Entered around the /callback request alone.
    around_callback: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext

    async def connect(self, advertiser_ids: list[str]) -> tuple[int, float]:
        """One authorization of these advertisers: the /callback's status and seconds."""
        # /authorize's page, then its button: the form it posts.
        page = await self.service.get("/authorize", params={"flow": "advertiser"})
        assert page.status_code == 200, page.text
        start = await self.service.post("/authorize", data={"flow": "advertiser"})
        assert start.status_code == 303, start.text
        # The consent form, posted: thousands of ids do not fit in a URL.
        consent = await self.emulator.post(
            start.headers["location"], data={"decision": "approve", "advertiser_id": advertiser_ids}
        )
        assert consent.status_code == 302, consent.text
        params = dict(httpx.URL(consent.headers["location"]).params)
        with self.around_callback():
            started = time.perf_counter()
            answer = await self.service.get("/callback", params=params)
            took = time.perf_counter() - started
        return answer.status_code, took


@contextlib.asynccontextmanager
async def browser(service_url: str, emulator_url: str, **service: Any) -> AsyncIterator[Browser]:
    async with (
        httpx.AsyncClient(base_url=service_url, timeout=600, **service) as service_http,
        httpx.AsyncClient(timeout=60) as emulator_http,
    ):
        yield Browser(service_http, emulator_http)


class Ids:
    """Hands out the emulator's advertisers, each once."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, count: int) -> list[str]:
        ids = [connected_id(n) for n in range(self.next, self.next + count)]
        self.next += count
        return ids


@dataclass
class Row:
    stored: int
    grants: int
    callbacks: list[tuple[int, float]]
    reauthorization: tuple[int, float]
    large: tuple[int, float]
    pages: Pages


@dataclass
class Pages:
    """GET /connections pages: the status (the first other than 200, if any) and the median
    seconds of each (None: no such page at this size)."""

    first: tuple[int, float] | None
    deep: tuple[int, float] | None
    restricted: tuple[int, float] | None


@dataclass
class Keys:
    """An unrestricted API key, and one restricted to 100 advertisers spread over the table."""

    unrestricted: str
    restricted: str | None


def deep_cursor(stored: int) -> str | None:
    """The cursor of a page nine tenths of the way through the stored advertisers."""
    return encode_cursor("advertiser", stored_id(stored * 9 // 10)) if stored else None


async def make_keys(api_keys: ApiKeys, name: str, stored: int) -> Keys:
    unrestricted = await api_keys.create(name, [])
    spread = [stored_id(n * stored // 100) for n in range(100)] if stored else []
    restricted = await api_keys.create(f"{name}-restricted", spread) if spread else None
    return Keys(
        unrestricted.key.get_secret_value(),
        restricted.key.get_secret_value() if restricted else None,
    )


async def stored_keys(database_url: str, stored: int) -> Keys:
    db = await Database.connect(database_url)
    try:
        return await make_keys(ApiKeys(db, SystemClock()), f"bench-scale-{stored}", stored)
    finally:
        await db.close()


async def page_seconds(
    http: httpx.AsyncClient, key: str | None, cursor: str | None
) -> tuple[int, float] | None:
    """5 GET /connections of 100 items after `cursor`: a status, the median seconds."""
    if key is None:
        return None
    params = {"limit": "100", **({"next": cursor} if cursor else {})}
    took, statuses = [], []
    for _ in range(5):
        started = time.perf_counter()
        answer = await http.get(
            "/connections", params=params, headers={"authorization": f"Bearer {key}"}
        )
        took.append(time.perf_counter() - started)
        statuses.append(answer.status_code)
        assert answer.status_code != 200 or answer.json()["items"], answer.text
    return next((s for s in statuses if s != 200), 200), statistics.median(took)


async def pages(http: httpx.AsyncClient, keys: Keys, stored: int) -> Pages:
    deep = deep_cursor(stored)
    return Pages(
        first=await page_seconds(http, keys.unrestricted, None),
        deep=await page_seconds(http, keys.unrestricted, deep) if deep else None,
        restricted=await page_seconds(http, keys.restricted, None),
    )


def seconds(result: tuple[int, float]) -> str:
    status, took = result
    return f"{took:6.2f} s" if status == 200 else f"{took:6.2f} s ({status})"


def milliseconds(result: tuple[int, float] | None) -> str:
    if result is None:
        return "-"
    status, took = result
    return f"{took * 1000:.1f} ms" if status == 200 else f"{took * 1000:.0f} ms ({status})"


def print_table(rows: list[Row], grant: int, large: int) -> None:
    base = statistics.median(took for _, took in rows[0].callbacks)
    print(
        f"\n{'stored':>10} {'grants':>7}  {f'callback {grant:,}':>22}  {'x empty':>7}"
        f"  {f're-auth {grant:,}':>16}  {f'callback {large:,}':>16}"
        f"  {'page 1':>14} {'page 9/10':>14} {'restricted':>14}"
    )
    for row in rows:
        median = statistics.median(took for _, took in row.callbacks)
        statuses = {status for status, _ in row.callbacks}
        failed = "" if statuses == {200} else f" {sorted(statuses)}"
        worst = max(took for _, took in row.callbacks)
        print(
            f"{row.stored:>10,} {row.grants:>7,}  {median:6.2f} s (max {worst:5.2f}){failed:>4}"
            f"  {median / base:6.1f}x  {seconds(row.reauthorization):>16}"
            f"  {seconds(row.large):>16}  {milliseconds(row.pages.first):>14}"
            f" {milliseconds(row.pages.deep):>14} {milliseconds(row.pages.restricted):>14}"
        )
    print(
        f"(median of {len(rows[0].callbacks)} callbacks; a status other than 200 is shown;"
        " pages of GET /connections, median of 5)"
    )


@dataclass
class Statement:
    sql: str
    runs: int = 0
    milliseconds: float = 0.0
    slowest: float = -1.0
    plan: list[str] = field(default_factory=list)


_ARRAY = re.compile(r"'\{[^}]{80,}\}'")


def _short(line: str) -> str:
    return _ARRAY.sub(
        lambda m: f"'{{{m.group(0)[2:22]}... ({m.group(0).count(',') + 1} ids)}}'", line
    )


class Plans:
    """Explains each statement the engine sends during a phase, just before it runs."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.phases: dict[str, dict[str, Statement]] = {}

    @contextlib.contextmanager
    def recording(self, phase: str) -> Iterator[None]:
        self.phase = phase
        self.phases[phase] = {}
        try:
            yield
        finally:
            self.phase = None

    def before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if self.phase is None or many or verb not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            return
        explain = conn.connection.dbapi_connection.cursor()
        explain.execute("SAVEPOINT bench_explain")
        try:
            explain.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
            plan = [row[0] for row in explain.fetchall()]
        finally:
            explain.execute("ROLLBACK TO SAVEPOINT bench_explain")
            explain.execute("RELEASE SAVEPOINT bench_explain")
        took = next(float(line.split()[2]) for line in plan if line.startswith("Execution Time"))
        sql = " ".join(statement.split())
        recorded = self.phases[self.phase].setdefault(sql, Statement(sql))
        recorded.runs += 1
        recorded.milliseconds += took
        if took > recorded.slowest:
            recorded.slowest, recorded.plan = took, plan

    def print(self) -> None:
        for phase, statements in self.phases.items():
            total = sum(s.milliseconds for s in statements.values())
            runs = sum(s.runs for s in statements.values())
            print(f"\n===== {phase}: {runs} statements, {total:.1f} ms executing")
            for recorded in statements.values():
                sql = recorded.sql if len(recorded.sql) <= 300 else recorded.sql[:300] + " ..."
                print(
                    f"\n-- {recorded.runs} x, {recorded.milliseconds:.1f} ms in all"
                    f" (plan of the slowest): {sql}"
                )
                for line in recorded.plan:
                    print(f"   {_short(line)}")


async def explain_paths(
    env: dict[str, str],
    service_url: str,
    emulator_url: str,
    ids: Ids,
    args: argparse.Namespace,
    plans: Plans,
) -> None:
    """Callback, re-authorization, a large grant, its syncing liveness check and DELETE, in
    this process; then the plans of the listing's pages."""
    settings = settings_of({**env, "DATABASE_TIMEOUT_SECONDS": "900"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        service = app_service(app)
        keys = await make_keys(service.api_keys, "bench-scale-explained", args.sizes[-1])
        auth = {"authorization": f"Bearer {keys.unrestricted}"}
        sa.event.listen(
            service.db.engine.sync_engine, "before_cursor_execute", plans.before_cursor_execute
        )
        transport = httpx.ASGITransport(app=app)
        async with browser(service_url, emulator_url, transport=transport) as b:
            connected = ids.take(args.grant)
            for phase in ("callback", "re-authorization"):
                b.around_callback = functools.partial(
                    plans.recording, f"GET /callback: {phase} of {args.grant:,} advertisers"
                )
                status, took = await b.connect(connected)
                print(f"{phase} (explained, in this process): {status} in {took:.2f} s")
            large = ids.take(args.large)
            b.around_callback = functools.partial(
                plans.recording, f"GET /callback: a grant of {args.large:,} advertisers"
            )
            status, took = await b.connect(large)
            print(
                f"a grant of {args.large:,} (explained, in this process): {status} in {took:.2f} s"
            )
            token = await _access_token(service, large[0])
            changed = len(large) // 20
            for withdrawn in large[:changed]:
                answer = await b.emulator.post(
                    f"{emulator_url}/_emulator/advertisers/cancel",
                    json={"access_token": token, "advertiser_id": withdrawn},
                )
                assert answer.status_code == 200, answer.text
            for added in ids.take(changed):
                answer = await b.emulator.post(
                    f"{emulator_url}/_emulator/advertisers/grant",
                    json={"access_token": token, "advertiser_id": added},
                )
                assert answer.status_code == 200, answer.text
            since, before = await row_counts(service.db)
            with plans.recording(
                f"POST /tokens/{{advertiser_id}}/check: {args.large:,} advertisers,"
                f" {changed:,} withdrawn and {changed:,} added at TikTok"
            ):
                check = await b.service.post(f"/tokens/{large[-1]}/check", headers=auth)
            print(f"check: {check.status_code}")
            await print_rows_written(service.db, since, before)
            with plans.recording("DELETE /tokens/{advertiser_id}"):
                deleted = await b.service.delete(f"/tokens/{connected[0]}", headers=auth)
            print(f"DELETE: {deleted.status_code}")
        await explain_listing(service.db, keys, args.sizes[-1])


# The tables a liveness check writes to.
WRITTEN_TABLES = ("oauth_grant", "advertiser", "grant_coverage")


async def row_counts(db: Database) -> tuple[int, dict[str, int]]:
    """A transaction id older than any that follows, and each table's row count."""
    async with db.pool.acquire() as connection:
        since: int = await connection.fetchval("SELECT txid_current()")
        counts = {
            table: await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
            for table in WRITTEN_TABLES
        }
    return since, counts


async def print_rows_written(db: Database, since: int, before: dict[str, int]) -> None:
    """Rows inserted or updated since the transaction `since` (a row's xmin is the transaction
    that wrote its version; nothing else writes to these tables meanwhile)."""
    print("rows written by the check:")
    async with db.pool.acquire() as connection:
        for table in WRITTEN_TABLES:
            written = await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE xmin::text::bigint > $1",  # noqa: S608
                since % 2**32,
            )
            after = await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
            print(
                f"  {table}: {written:,} written ({before[table]:,} rows before, {after:,} after)"
            )


async def explain_listing(db: Database, keys: Keys, stored: int) -> None:
    """The plans of GET /connections' query for the pages the table times."""
    deep = ("advertiser", stored_id(stored * 9 // 10)) if stored else None
    listed = [
        ("first page", keys.unrestricted, ("", "")),
        ("a page nine tenths in", keys.unrestricted, deep),
        ("first page of a key restricted to 100 advertisers", keys.restricted, ("", "")),
    ]
    async with db.pool.acquire() as connection:
        for title, key, after in listed:
            if key is None or after is None:
                continue
            plan = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS) {_LIST_CONNECTIONS_SQL}",
                digest(key),
                None,
                None,
                *after,
                101,
                None,  # healthy: either
            )
            print(f"\n===== GET /connections, {title}")
            for (line,) in plan:
                print(f"   {line}")


async def _access_token(service: Any, advertiser_id: str) -> str:
    async with service.db.pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT g.id, g.key_id, g.access_token_enc FROM advertiser AS a"
            " JOIN oauth_grant AS g ON g.id = a.grant_id WHERE a.advertiser_id = $1",
            advertiser_id,
        )
    token: str = service.sealer.open_access_token(row["id"], row["key_id"], row["access_token_enc"])
    return token


async def measure(
    database_url: str, sealer: TokenSealer, b: Browser, ids: Ids, args: argparse.Namespace
) -> list[Row]:
    rows, stored = [], 0
    for size in args.sizes:
        started = time.perf_counter()
        grants = await seed(database_url, sealer, stored, size)
        took = time.perf_counter() - started
        print(f"{size:,} advertisers in {grants:,} grants (seeded in {took:.1f} s)")
        stored = size
        callbacks = []
        for _ in range(args.repeats):
            connected = ids.take(args.grant)
            callbacks.append(await b.connect(connected))
        reauthorization = await b.connect(connected)
        large = await b.connect(ids.take(args.large))
        listed = await pages(b.service, await stored_keys(database_url, size), size)
        row = Row(size, grants, callbacks, reauthorization, large, listed)
        print(
            f"  callbacks {[seconds(c) for c in callbacks]}, re-auth {seconds(reauthorization)},"
            f" {args.large:,}: {seconds(large)}; pages {milliseconds(listed.first)},"
            f" {milliseconds(listed.deep)}, restricted {milliseconds(listed.restricted)}",
            flush=True,
        )
        rows.append(row)
    return rows


async def timed(
    database_url: str,
    sealer: TokenSealer,
    service_url: str,
    emulator_url: str,
    ids: Ids,
    args: argparse.Namespace,
) -> list[Row]:
    async with browser(service_url, emulator_url) as b:
        return await measure(database_url, sealer, b, ids, args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="0,100000,1000000")
    parser.add_argument("--grant", type=int, default=1000)
    parser.add_argument("--large", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--due", default="10000,100000", help="grants due for the claim")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.large, args.repeats, args.due = "0,10000", 2000, 1, "1000,10000"
    args.sizes = [int(size) for size in args.sizes.split(",")]
    args.due = [int(size) for size in args.due.split(",")]
    emulator_port, service_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    service_url = f"http://127.0.0.1:{service_port}"
    # Enough of the emulator's advertisers for every authorization the bench makes.
    needed = (len(args.sizes) + 1) * (args.repeats * args.grant + args.large) + args.large
    with embedded_postgres() as database_url:
        asyncio.run(migrate(database_url))
        env = service_env(
            database_url,
            emulator_url,
            TIKTOK_REDIRECT_URI=f"{service_url}/callback",
            CONNECT_SESSIONS_REQUIRED="false",
            WORKER_ENABLED="false",
        )
        sealer = TokenSealer(settings_of(env).encryption_keys)
        bench = str(Path(__file__).resolve().parent)
        child = (
            f"import sys; sys.path.insert(0, {bench!r}); import scale; "
            f"scale.serve_emulator({emulator_port}, {emulator_app(env)!r}, {needed})"
        )
        serve = [sys.executable, "-m", "tiktok_auth_service", "serve", "--workers", "1"]
        ids = Ids()
        with running([sys.executable, "-c", child], {}, f"{emulator_url}/_emulator/clock"):
            with running([*serve, "--port", str(service_port)], env, f"{service_url}/healthz"):
                rows = asyncio.run(
                    timed(database_url, sealer, service_url, emulator_url, ids, args)
                )
            print_table(rows, args.grant, args.large)
            plans = Plans()
            asyncio.run(explain_paths(env, service_url, emulator_url, ids, args, plans))
        plans.print()
        print("\nThe worker's claim (bench/sweeps.py's), with grants due on top of all the above:")
        due = 0
        for size in args.due:
            asyncio.run(sweeps.seed(database_url, sealer, due, size))
            due = size
            print(f"{size:,} grants due:")
            asyncio.run(sweeps.claims(database_url, batch=64, repeats=20))


if __name__ == "__main__":
    main()
