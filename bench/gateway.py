"""Issue 19's gateway bench: what `/proxy/open_api/v1.3/...` adds over calling TikTok (the
emulator) directly, and its throughput against a bare forwarder, measured in one run.

    uv run python bench/gateway.py [--seconds 10] [--connections 64] [--rounds 3] [--profile]

Needs `wrk` (Debian: apt-get install wrk). Starts an embedded PostgreSQL, the emulator in its
own process (no rate limits, knowing one advertiser and its token) and three targets, each its
own server process, all asking the emulator's GET advertiser/info/ for that advertiser:

    (t) the emulator itself, called with the real token (uvicorn)
    (g) the service's app, GET /proxy/open_api/v1.3/advertiser/info/ with the broker key:
        key check, grant selection from the JSON list, token, a slot in the budget (one
        statement in PostgreSQL; TIKTOK_RATE_LIMIT_QPS/QPM far above what the run reaches),
        forwarding with the shared client, envelope peek, audit, metrics, log line
    (g0) the same app with the budget off (a budget whose every slot is free at once)
    (b) a bare forwarder written below: Starlette + one httpx.AsyncClient, the token fixed, the
        answer read whole and returned (uvicorn)

Latency is measured with one connection (what one call waits): added p50/p99 = (g) - (t), and
the budget's slot (g) - (g0). Throughput with `--connections`, budget off: (g0)/(b). Every
server runs on uvicorn (uvloop, httptools), so that only the app differs. Rounds are
interleaved so that a noisy moment hits all targets; each target's best round is printed.
Targets: added p50 <= 1 ms; (g0)/(b) >= 0.8.
`--profile` samples (g0) with py-spy during one more run with one connection (what one
proxied call costs) and prints the top functions.
Absolute numbers depend on the machine; the ratios are what to compare between changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from hot_path import Round, profile, wrk
from pydantic import SecretStr
from running import APP_ID, emulator_app, free_port, running, service_env, settings_of
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.app import create_app
from tiktok_auth_service.budget import RateBudget
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import migrate
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository

ADVERTISER = "7300000000000000001"
TOKEN = "ltt.gateway-bench-token"  # noqa: S105 - the emulator's, made up here
ENDPOINT = "advertiser/info/"
QUERY = "advertiser_ids=" + quote(json.dumps([ADVERTISER]))
BENCH = str(Path(__file__).resolve().parent)


def serve_emulator(port: int, app: dict[str, Any], qps: int = 0) -> None:
    """The emulator (run in its own process) knowing ADVERTISER and TOKEN; without limits, or
    with the app's tier at `qps` a second and 60 x `qps` a minute."""
    import uvicorn

    from tiktok_emulator import EmulatorAdvertiser, EmulatorApp, EmulatorConfig, create_emulator_app
    from tiktok_emulator.state import LongTermToken

    config = EmulatorConfig(apps=[EmulatorApp(**app)], qps=qps, qpm=60 * qps, qpd=0)
    emulator = create_emulator_app(config)
    state = emulator.state.emulator
    state.advertisers[ADVERTISER] = EmulatorAdvertiser(
        advertiser_id=ADVERTISER, advertiser_name="Bench"
    )
    state.long_term_tokens[TOKEN] = LongTermToken(
        value=TOKEN,
        app_id=APP_ID,
        advertiser_ids=[ADVERTISER],
        scope=[4],
        issued_at=state.clock.now(),
    )
    gc.freeze()
    uvicorn.run(emulator, port=port, log_level="warning", access_log=False)


# -- (b) the bare forwarder, run by uvicorn as `gateway:bare` ---------------------------------


@contextlib.asynccontextmanager
async def _bare_lifespan(app: Starlette) -> AsyncIterator[None]:
    async with httpx.AsyncClient(
        base_url=os.environ["BENCH_UPSTREAM"],
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
    ) as http:
        app.state.http = http
        yield


async def _bare_forward(request: Request) -> Response:
    http: httpx.AsyncClient = request.app.state.http
    answer = await http.request(
        request.method,
        "/open_api/v1.3/" + request.path_params["path"],
        params=request.query_params,
        headers={"access-token": TOKEN},
        content=await request.body(),
    )
    return Response(answer.content, answer.status_code, media_type="application/json")


bare = Starlette(
    routes=[Route("/proxy/open_api/v1.3/{path:path}", _bare_forward, methods=["GET", "POST"])],
    lifespan=_bare_lifespan,
)


# -- (g0) the service with the budget off, run by uvicorn as `gateway:unbudgeted` -------------


@dataclass(eq=False)
class _NoBudget(RateBudget):
    """Every slot at once: the service's path without the budget's round trip."""

    async def acquire(self, endpoint: str, caller: str, *, within: float | None = None) -> None:
        return None


def budgeted() -> FastAPI:
    """The service's app (settings from the environment), its budget as configured."""
    return create_app(Settings())  # type: ignore[call-arg]


def unbudgeted() -> FastAPI:
    """The service's app (settings from the environment) with the budget off."""
    settings = Settings()  # type: ignore[call-arg]
    return create_app(
        settings,
        budget=lambda db: _NoBudget(db, settings.tiktok_app_id, qps=1, qpm=60, metrics=Metrics()),
    )


# -- the run ----------------------------------------------------------------------------------


async def seed(env: dict[str, str]) -> str:
    """The grant of ADVERTISER (its token TOKEN) and one unrestricted key; returns the key."""
    from tiktok_auth_service.service import open_service

    async with open_service(settings_of(env)) as service:
        now = datetime.now(UTC)
        grant = Grant(
            id=uuid.uuid4(),
            flow=Flow.ADVERTISER,
            key_id="",
            access_token_enc=b"",
            scope=[4],
            status=GrantStatus.ACTIVE,
            created_at=now,
            updated_at=now,
            advertiser_ids=[ADVERTISER],
        )
        service.sealer.seal(grant, SecretStr(TOKEN))
        async with service.db.session() as session, session.begin():
            repo = Repository(session)
            await repo.add(grant)
            await repo.assign_advertisers(grant.id, [ADVERTISER], now)
        created = await service.api_keys.create("bench", [])
        return created.key.get_secret_value()


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]  # the service's settings
    emulator_url: str
    key: str  # an unrestricted broker key


@contextlib.contextmanager
def emulated(qps: int, emulator_qps: int) -> Iterator[tuple[Stack, contextlib.ExitStack, Path]]:
    """An embedded PostgreSQL, migrated; the emulator in its own process (`serve_emulator`,
    its tier at `emulator_qps`, 0: none) and the service's settings with the budget at `qps`
    a second, 60 x that a minute, no worker; ADVERTISER's grant and a key (`seed`). Also the
    stack the caller's servers join and a scratch folder."""
    emulator_port = free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    with (
        embedded_postgres() as database_url,
        tempfile.TemporaryDirectory() as scratch_dir,
        contextlib.ExitStack() as servers,
    ):
        asyncio.run(migrate(database_url))
        env = service_env(
            database_url,
            emulator_url,
            WORKER_ENABLED="false",
            LOG_LEVEL="WARNING",
            TIKTOK_RATE_LIMIT_QPS=str(qps),
            TIKTOK_RATE_LIMIT_QPM=str(60 * qps),
        )
        child = (
            f"import sys; sys.path.insert(0, {BENCH!r}); import gateway; "
            f"gateway.serve_emulator({emulator_port}, {emulator_app(env)!r}, {emulator_qps})"
        )
        servers.enter_context(
            running([sys.executable, "-c", child], {}, f"{emulator_url}/_emulator/clock")
        )
        key = asyncio.run(seed(env))
        yield Stack(env, emulator_url, key), servers, Path(scratch_dir)


def lua(path: str, header: str, value: str) -> str:
    return f'wrk.method = "GET"\nwrk.path = "{path}"\nwrk.headers["{header}"] = "{value}"\n'


def show(name: str, r: Round) -> None:
    print(f"{name:<20} {r.rate:8.0f} req/s   p50 {r.p50_ms:7.2f} ms   p99 {r.p99_ms:7.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench/gateway.py needs wrk: apt-get install wrk")
    with emulated(qps=1_000_000, emulator_qps=0) as (stack, servers, scratch):
        env, emulator_url, key = stack.env, stack.emulator_url, stack.key
        emulator_port = httpx.URL(emulator_url).port

        def start(name: str, command: list[str], extra: dict[str, str]) -> tuple[int, int]:
            port = free_port()
            process = servers.enter_context(
                running(
                    [*command, "--port", str(port)],
                    {**env, **extra},
                    f"http://127.0.0.1:{port}/healthz"
                    if name != "bare"
                    else f"http://127.0.0.1:{port}/proxy/open_api/v1.3/{ENDPOINT}?{QUERY}",
                    scratch / f"{name}.log",
                )
            )
            return port, process.pid

        uvicorn = [sys.executable, "-m", "uvicorn", "--no-access-log", "--app-dir", BENCH]
        services = {
            "(g) gateway": start("g", [*uvicorn, "--factory", "gateway:budgeted"], {}),
            "(g0) gateway, no budget": start(
                "g0", [*uvicorn, "--factory", "gateway:unbudgeted"], {}
            ),
        }
        forwarder = start("bare", [*uvicorn, "gateway:bare"], {"BENCH_UPSTREAM": emulator_url})
        proxied = f"/proxy/open_api/v1.3/{ENDPOINT}?{QUERY}"
        scripts = {
            "(t) emulator": lua(f"/open_api/v1.3/{ENDPOINT}?{QUERY}", "Access-Token", TOKEN),
            **{name: lua(proxied, "Access-Token", key) for name in services},
            "(b) bare forwarder": lua(proxied, "Access-Token", "unused"),
        }
        ports = {
            "(t) emulator": emulator_port,
            **{name: port for name, (port, _) in services.items()},
            "(b) bare forwarder": forwarder[0],
        }
        paths = {}
        for name, script in scripts.items():
            paths[name] = scratch / f"{name.split()[0].strip('()')}.lua"
            paths[name].write_text(script)
        for name, (port, _) in services.items():
            check = httpx.get(
                f"http://127.0.0.1:{port}{proxied}", headers={"access-token": key}, timeout=10
            )
            if check.headers.get("x-tiktok-code") != "0":
                raise RuntimeError(f"{name}'s answer is not TikTok's success: {check.text}")
        print(
            f"wrk: latency with 1 connection, throughput with {args.connections}; "
            f"{args.seconds} s a round, {args.rounds} rounds; GET {ENDPOINT} "
            f"({len(check.content)} bytes); every server on uvicorn (uvloop, httptools)"
        )
        latency: dict[str, list[Round]] = {}
        throughput: dict[str, list[Round]] = {}
        for _ in range(args.rounds):
            for name in scripts:
                latency.setdefault(name, []).append(wrk(ports[name], paths[name], args.seconds, 1))
            for name in ("(t) emulator", "(g0) gateway, no budget", "(b) bare forwarder"):
                measured = wrk(ports[name], paths[name], args.seconds, args.connections)
                throughput.setdefault(name, []).append(measured)
        best_latency = {name: min(each, key=lambda r: r.p50_ms) for name, each in latency.items()}
        best_rate = {name: max(each, key=lambda r: r.rate) for name, each in throughput.items()}
        print("-- one connection")
        for name, r in best_latency.items():
            show(name, r)
        t, g = best_latency["(t) emulator"], best_latency["(g) gateway"]
        g0 = best_latency["(g0) gateway, no budget"]
        print(
            f"added by the gateway: p50 {g.p50_ms - t.p50_ms:.2f} ms (target <= 1), "
            f"p99 {g.p99_ms - t.p99_ms:.2f} ms; without the budget p50 "
            f"{g0.p50_ms - t.p50_ms:.2f} ms, p99 {g0.p99_ms - t.p99_ms:.2f} ms; the budget's "
            f"slot: p50 {g.p50_ms - g0.p50_ms:.2f} ms a call"
        )
        print(f"-- {args.connections} connections")
        for name, r in best_rate.items():
            show(name, r)
        ratio = best_rate["(g0) gateway, no budget"].rate / best_rate["(b) bare forwarder"].rate
        print(f"gateway/bare throughput, budget off: {ratio:.2f} (target >= 0.8)")
        if args.profile:
            port, pid = services["(g0) gateway, no budget"]
            profile(pid, port, paths["(g0) gateway, no budget"], args.seconds, 1)


if __name__ == "__main__":
    main()
