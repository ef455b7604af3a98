"""Refresh storm: concurrent reads of expiring TikTok-account tokens over two replicas.

    uv run python bench/refresh_storm.py [--grants 50] [--reads 500]

Starts an embedded PostgreSQL, the TikTok emulator and two replicas of the service (two
`serve --workers 1` processes on the one database, background worker off, so only reads
refresh), and connects `--grants` TikTok accounts. Then sends `--reads` concurrent reads,
spread evenly over the grants and both replicas, twice: while every token is fresh (the
baseline), and once every stored token is a minute from expiry, so that every read wants a
refresh. Prints the wall time of both rounds and their ratio, and the refresh calls TikTok (the
emulator) received per grant: 1.00 when each grant was refreshed once, however many readers on
however many replicas asked at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

import httpx
from running import emulator_app, free_port, get, running, service_env, settings_of

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.authorization import Origin
from tiktok_auth_service.db import migrate
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.service import open_service

REFRESH = "tt_user/oauth2/refresh_token/"


async def connect_accounts(env: dict[str, str], open_ids: list[str]) -> str:
    """Authorize each account at the emulator and store its grant; returns an API key."""
    settings = settings_of(env)
    async with (
        open_service(settings) as service,
        httpx.AsyncClient(base_url=env["TIKTOK_API_BASE_URL"].split("/open_api")[0]) as http,
    ):
        flow = service.authorization.flows[Flow.TIKTOK_ACCOUNT]
        for open_id in open_ids:
            consent = await http.get(
                "/v2/auth/authorize/",
                params={
                    "client_key": settings.tiktok_app_id,
                    "response_type": "code",
                    "scope": "user.info.basic",
                    "redirect_uri": settings.tiktok_redirect_uri,
                    "state": "bench",
                    "emulator_decision": "approve",
                    "emulator_open_id": open_id,
                },
            )
            code = httpx.URL(consent.headers["location"]).params["code"]
            await flow.store(await flow.exchange(code), Origin())
        created = await service.api_keys.create("refresh-storm", [])
    return created.key.get_secret_value()


async def expire_all(env: dict[str, str]) -> None:
    """Make every stored account token look a day old and a minute from expiry."""
    async with open_service(settings_of(env)) as service, service.db.pool.acquire() as db:
        await db.execute(
            "UPDATE oauth_grant SET refreshed_at = now() - interval '1 day',"
            " expires_at = now() + interval '1 minute' WHERE flow = 'tiktok_account'"
        )


async def read_round(replicas: list[str], open_ids: list[str], key: str, reads: int) -> float:
    """`reads` concurrent reads, round-robin over the grants and the replicas; the seconds
    until the last answer (every one must be 200)."""
    auth = {"Authorization": f"Bearer {key}"}
    urls = [
        f"{replicas[n % len(replicas)]}/tokens/accounts/{open_ids[n % len(open_ids)]}"
        for n in range(reads)
    ]
    started = time.perf_counter()
    statuses = await asyncio.gather(*(get(url, auth) for url in urls))
    seconds = time.perf_counter() - started
    if Counter(statuses) != {200: reads}:
        raise RuntimeError(f"not every read was served: {dict(Counter(statuses))}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, default=50)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args(argv)
    open_ids = [f"-000storm{n:05d}" for n in range(args.grants)]
    emulator_url = f"http://127.0.0.1:{free_port()}"
    replica_ports = [free_port(), free_port()]
    with embedded_postgres() as database_url:
        asyncio.run(migrate(database_url))
        # The emulator counts no tier here, and the budget is set far above what 50 refreshes
        # need: at the default 10 a second, reads done waiting (REFRESH_WAIT_SECONDS) would
        # be served the old token before most refreshes had their slot, and the bench would
        # measure the budget, not the single flight.
        env = service_env(
            database_url,
            emulator_url,
            WORKER_ENABLED="false",
            TIKTOK_RATE_LIMIT_QPS="1000",
            TIKTOK_RATE_LIMIT_QPM="60000",
        )
        accounts = [{"open_id": o, "display_name": o} for o in open_ids]
        emulator_env = {
            "EMULATOR_APPS": json.dumps([emulator_app(env)]),
            "EMULATOR_ACCOUNTS": json.dumps(accounts),
            "EMULATOR_QPS": "0",
            "EMULATOR_QPM": "0",
            "EMULATOR_QPD": "0",
        }
        serve = [sys.executable, "-m", "tiktok_auth_service", "serve", "--workers", "1"]
        emulator = [sys.executable, "-m", "tiktok_auth_service", "emulator"]
        with running(
            [*emulator, "--port", emulator_url.rsplit(":", 1)[1]],
            emulator_env,
            f"{emulator_url}/_emulator/clock",
        ):
            key = asyncio.run(connect_accounts(env, open_ids))
            replicas = [f"http://127.0.0.1:{port}" for port in replica_ports]
            with (
                running([*serve, "--port", str(replica_ports[0])], env, f"{replicas[0]}/healthz"),
                running([*serve, "--port", str(replica_ports[1])], env, f"{replicas[1]}/healthz"),
            ):
                asyncio.run(read_round(replicas, open_ids, key, args.reads))  # warm-up
                baseline = asyncio.run(read_round(replicas, open_ids, key, args.reads))
                asyncio.run(expire_all(env))
                storm = asyncio.run(read_round(replicas, open_ids, key, args.reads))
            calls = httpx.get(f"{emulator_url}/_emulator/calls", params={"endpoint": REFRESH})
            refreshes = calls.json()["calls"]
    presented = Counter(call["fields"]["refresh_token"] for call in refreshes)
    most = max(presented.values(), default=0)
    refused = sum(1 for call in refreshes if call["code"] != 0)
    print(
        f"refresh storm: {args.reads} concurrent reads of {args.grants} expiring grants "
        "over 2 replicas"
    )
    print(f"baseline (nothing to refresh)  {baseline:6.2f} s")
    print(f"storm (every grant expiring)   {storm:6.2f} s")
    print(f"storm / baseline wall time: {storm / baseline:.2f}")
    print(
        f"upstream refresh calls per grant: {len(refreshes) / args.grants:.2f} "
        f"({len(refreshes)} calls, a refresh token sent at most {most}x, "
        f"{refused} refused)"
    )


if __name__ == "__main__":
    main()
