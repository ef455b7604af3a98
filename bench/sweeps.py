"""Sweeps: every grant due at once (refreshes of TikTok-account tokens, liveness checks of
advertiser tokens), worked off by `serve --workers N` under one upstream budget.

    uv run python bench/sweeps.py [--grants 100000] [--small 10000] [--qps 2000]
                                  [--workers 2] [--concurrency 64] [--sweep N]

Starts an embedded PostgreSQL and a TikTok emulator that already knows every token (built in
its process, not through `--grants` consents), and seeds half the grants as account grants due
for refresh and half as advertiser grants due for a check, with COPY (each token sealed with
the service's sealer, which binds it to its grant's id).

At `--small` grants and again at `--grants`, it times the worker's claim of one batch (the
`FOR UPDATE SKIP LOCKED` query, in a transaction rolled back, so nothing changes) and prints
the query plan of each claim (EXPLAIN ANALYZE, BUFFERS): the time should not grow with the
table. Then it starts `serve --workers N` with TIKTOK_RATE_LIMIT_QPS=`--qps` and waits until
the first `--sweep` grants (default: all) are handled; the emulator's record of the calls gives the
most calls in any one-second window (at most `--qps`) and the sweep's length against
n / qps (at most 1.1). A machine too small to make `--qps` calls a second shows it as the
length; `--sweep` keeps that run short.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
import uuid
from bisect import bisect_left
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
from pydantic import SecretStr
from running import APP_ID, emulator_app, free_port, running, service_env, settings_of

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database, migrate
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Claim, Repository

REFRESH = "tt_user/oauth2/refresh_token/"
CHECK = "oauth2/advertiser/get/"
GRANT_COLUMNS = (
    "id",
    "flow",
    "open_id",
    "key_id",
    "access_token_enc",
    "refresh_token_enc",
    "expires_at",
    "refresh_expires_at",
    "scope",
    "status",
    "version",
    "created_at",
    "updated_at",
    "advertiser_ids",
    "refreshed_at",
    "refresh_due_at",
    "failures",
    "next_check_at",
)


# Grant n: even numbers are TikTok accounts, odd ones advertisers; the emulator and the
# database derive the same tokens from n.
def open_id(n: int) -> str:
    return f"-000sweep{n:07d}"


def advertiser_id(n: int) -> str:
    return f"72{n:017d}"


def access_token(n: int) -> str:
    return f"act.sweep{n}" if n % 2 == 0 else f"ltt.sweep{n}"


def refresh_token(n: int) -> str:
    return f"rft.sweep{n}"


def serve_emulator(port: int, grants: int, app: dict[str, Any]) -> None:
    """The emulator (run in its own process) knowing the tokens of `grants` grants."""
    import uvicorn

    from tiktok_emulator import EmulatorAdvertiser, EmulatorApp, EmulatorConfig, create_emulator_app
    from tiktok_emulator.state import LongTermToken, UserAuthorization

    config = EmulatorConfig(
        apps=[EmulatorApp(**app)], qps=0, qpm=0, qpd=0, call_log_limit=grants + 1000
    )
    emulator = create_emulator_app(config)
    state = emulator.state.emulator
    now = state.clock.now()
    for n in range(grants):
        if n % 2 == 0:
            authorization = UserAuthorization(
                authorization_id=n,
                app_id=APP_ID,
                open_id=open_id(n),
                scope="user.info.basic",
                granted_at=now,
                refresh_expires_at=now + config.refresh_token_ttl,
                refresh_token=refresh_token(n),
            )
            state.user_authorizations.append(authorization)
            state.refresh_tokens[authorization.refresh_token] = authorization
        else:
            advertiser = EmulatorAdvertiser(
                advertiser_id=advertiser_id(n), advertiser_name=f"Sweep {n}"
            )
            state.advertisers[advertiser.advertiser_id] = advertiser
            state.long_term_tokens[access_token(n)] = LongTermToken(
                value=access_token(n),
                app_id=APP_ID,
                advertiser_ids=[advertiser.advertiser_id],
                scope=[4],
                issued_at=now,
            )
    # What it holds lives as long as it does: out of the collector's reach, or each full
    # collection over these objects is a pause after which the calls it records bunch up.
    gc.freeze()
    uvicorn.run(emulator, port=port, log_level="warning", access_log=False)


async def seed(database_url: str, sealer: TokenSealer, first: int, last: int) -> None:
    """Grants first..last-1, all due now, with their advertisers; then ANALYZE, as
    autovacuum would have by the time a table this size is swept."""
    now = datetime.now(UTC)
    grants, advertisers = [], []
    for n in range(first, last):
        account = n % 2 == 0
        grant = Grant(
            id=uuid.uuid4(),
            flow=Flow.TIKTOK_ACCOUNT if account else Flow.ADVERTISER,
            key_id="",
            access_token_enc=b"",
            scope=[],
            status=GrantStatus.ACTIVE,
            created_at=now,
            updated_at=now,
        )
        sealer.seal(
            grant,
            SecretStr(access_token(n)),
            SecretStr(refresh_token(n)) if account else None,
        )
        grants.append(
            (
                grant.id,
                str(grant.flow),
                open_id(n) if account else None,
                grant.key_id,
                grant.access_token_enc,
                grant.refresh_token_enc,
                now + timedelta(minutes=10) if account else None,
                now + timedelta(days=300) if account else None,
                json.dumps(["user.info.basic"] if account else [4]),
                "active",
                1,
                now,
                now,
                [] if account else [advertiser_id(n)],
                now - timedelta(days=1) if account else None,
                now - timedelta(seconds=1) if account else None,
                0,
                None if account else now - timedelta(seconds=1),
            )
        )
        if not account:
            advertisers.append((advertiser_id(n), grant.id, f"Sweep {n}", "active", now, now))
    connection = await asyncpg.connect(database_url.replace("+asyncpg", "", 1))
    try:
        await connection.copy_records_to_table("oauth_grant", records=grants, columns=GRANT_COLUMNS)
        await connection.copy_records_to_table(
            "advertiser",
            records=advertisers,
            columns=("advertiser_id", "grant_id", "name", "status", "created_at", "updated_at"),
        )
        await connection.execute("ANALYZE oauth_grant; ANALYZE advertiser")
    finally:
        await connection.close()


async def claims(database_url: str, batch: int, repeats: int) -> None:
    """Time the claim of one batch of each kind (rolled back) and print its plan."""
    db = await Database.connect(database_url)
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.lstrip().startswith("UPDATE oauth_grant"):
            statements.append((statement, parameters))

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        for kind in (Claim.REFRESH, Claim.CHECK):
            seconds = []
            for _ in range(repeats):
                now = datetime.now(UTC)
                async with db.session() as session:
                    await session.begin()
                    started = time.perf_counter()
                    claimed = await Repository(session).claim(
                        kind, now, now + timedelta(minutes=1), batch
                    )
                    seconds.append(time.perf_counter() - started)
                    await session.rollback()
            assert len(claimed) == batch, (kind, len(claimed))
            seconds.sort()
            print(
                f"  claim {kind:<7} of {batch}: median {statistics.median(seconds) * 1000:.2f} ms,"
                f" p90 {seconds[int(len(seconds) * 0.9)] * 1000:.2f} ms ({repeats} claims)"
            )
            statement, parameters = statements[-1]
            async with db.pool.acquire() as connection:
                transaction = connection.transaction()
                await transaction.start()
                plan = await connection.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *parameters
                )
                await transaction.rollback()
            for (line,) in plan:
                print(f"    {line}")
    finally:
        await db.close()


async def wait_for_sweep(database_url: str, seeded_at: datetime, grants: int) -> None:
    """Until `grants` of the grants due at `seeded_at` have been handled (not due, no lease)."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", "", 1))
    try:
        while True:
            handled = await connection.fetchval(
                "SELECT count(*) FROM oauth_grant WHERE lease_until IS NULL"
                " AND (refresh_due_at > $1 OR next_check_at > $1 OR status <> 'active')",
                seeded_at,
            )
            if handled >= grants:
                return
            await asyncio.sleep(0.5)  # polling the database for the sweep's end
    finally:
        await connection.close()


def most_in_one_second(times: list[float]) -> int:
    """The most of `times` (sorted) inside any window one second long."""
    return max((bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--qps", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sweep", type=int, help="grants the sweep handles (default: all)")
    parser.add_argument("--claims", type=int, default=50, help="claims timed at each size")
    args = parser.parse_args(argv)
    sweep = args.sweep or args.grants
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    with embedded_postgres() as database_url:
        asyncio.run(migrate(database_url))
        env = service_env(
            database_url,
            emulator_url,
            TIKTOK_RATE_LIMIT_QPS=str(args.qps),
            TIKTOK_RATE_LIMIT_QPM=str(args.qps * 60),
            WORKER_CONCURRENCY=str(args.concurrency),
            WORKER_POLL_SECONDS="0.5",
            TIKTOK_RETRY_ATTEMPTS="1",
        )
        settings = settings_of(env)
        sealer = TokenSealer(settings.encryption_keys)
        batch = max(1, min(args.qps, args.concurrency))
        bench = str(Path(__file__).resolve().parent)
        child = (
            f"import sys; sys.path.insert(0, {bench!r}); import sweeps; "
            f"sweeps.serve_emulator({port}, {args.grants}, {emulator_app(env)!r})"
        )
        with running([sys.executable, "-c", child], {}, f"{emulator_url}/_emulator/clock"):
            seeded = 0
            for size in dict.fromkeys([args.small, args.grants]):
                started = time.perf_counter()
                asyncio.run(seed(database_url, sealer, seeded, size))
                print(f"{size} grants due (seeded in {time.perf_counter() - started:.1f} s)")
                seeded = size
                asyncio.run(claims(database_url, batch, args.claims))
            seeded_at = datetime.now(UTC)
            serve = [sys.executable, "-m", "tiktok_auth_service", "serve"]
            service_port = free_port()
            with running(
                [*serve, "--port", str(service_port), "--workers", str(args.workers)],
                env,
                f"http://127.0.0.1:{service_port}/healthz",
            ):
                asyncio.run(wait_for_sweep(database_url, seeded_at, sweep))
            records = [
                call
                for endpoint in (REFRESH, CHECK)
                for call in httpx.get(
                    f"{emulator_url}/_emulator/calls", params={"endpoint": endpoint}, timeout=60
                ).json()["calls"]
            ]
    times = sorted(call["wall_time"] for call in records)
    counts = Counter(call["endpoint"] for call in records)
    refused = sum(1 for call in records if call["code"] != 0)
    calls = len(times)
    # Whole seconds inside the sweep: a pace under the budget there means a busy machine.
    per_second = Counter(int(t - times[0]) for t in times)
    seconds = sorted(per_second[n] for n in sorted(per_second)[1:-1]) or [calls]
    length = times[-1] - times[0]
    ideal = calls / args.qps
    print(
        f"sweep: {calls} upstream calls ({dict(counts)}, {refused} refused) by "
        f"`serve --workers {args.workers}`, TIKTOK_RATE_LIMIT_QPS={args.qps}, "
        f"WORKER_CONCURRENCY={args.concurrency}"
    )
    print(f"most calls in any one second: {most_in_one_second(times)} (budget {args.qps})")
    print(
        f"calls per whole second: median {statistics.median(seconds):.0f}, "
        f"lowest {seconds[0]}, highest {seconds[-1]}"
    )
    print(f"sweep length {length:.1f} s, n/Q {ideal:.1f} s: {length / ideal:.2f} x n/Q")


if __name__ == "__main__":
    main()
