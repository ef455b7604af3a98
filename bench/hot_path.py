"""P1 and P4 of issue #10, and the token read at size of issue #21: the token read against two
bare baselines, measured in one run.

    uv run python bench/hot_path.py [--seconds 10] [--connections 64] [--rounds 3] [--profile]
    uv run python bench/hot_path.py --advertisers 1000000 --patterns uniform,zipf [--cache-mb 512]

Needs `wrk` (Debian: apt-get install wrk). Starts an embedded PostgreSQL and seeds a realistic
table: by default 10,000 advertisers in grants of 100 and 10 API keys (seeded through SQL, so a
million takes seconds). Every request asks for an advertiser with a random key, picked either
`uniform`ly or `zipf`-like (rank r drawn as N^u for uniform u, density about 1/r: a few
advertisers hot, as reporting jobs make them; ranks are scattered over the table). Each target
is its own server process (the service on `serve`'s granian, the bare baselines on uvicorn with
uvloop and httptools), loaded with the same wrk command, rounds interleaved so that a noisy
moment hits all of them:

    (a)  the service, `serve --workers 1`, GET /tokens/{advertiser_id}: key check, permission,
         decryption, read audit, request id, access log, metrics, security headers
    (b)  bare Starlette doing one asyncpg primary-key lookup of the advertiser, same body size,
         over the same table
    (c)  bare Starlette answering the same body without the database
    (a2) the service again, `serve --workers 2` (only at the default size: its two caches
         would each need their own walk of a large table)

First a warm-up walks every advertiser once (a broker in service has been asked for them
before; at a million that takes minutes), then each round picks at random. Prints each
target's best round per pattern (requests per second, p50, p99, the server's CPU time per
request), the ratios a/b, a/c, p99(a)/p99(b) and a2/a, the peak RSS of a serving process (P4),
and its RSS with the cache full against before the walk, per cached subject. `--cache-mb` sets
TOKEN_CACHE_MAX_MB, to measure the read past the cache's bound. `--profile` samples (a) with
py-spy during one more run and prints the functions that held the most samples. Absolute
numbers depend on the machine; the ratios are what to compare between changes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import SecretStr
from running import ROOT, free_port, running
from sqlalchemy import text

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import migrate
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository

ADVERTISERS_PER_GRANT, KEYS = 100, 10
WARM_UP_SECONDS = 8


def advertiser_id(index: int) -> str:
    """The seeded advertisers are numbered; the wrk scripts spell the same ids in Lua."""
    return f"7{index:018d}"


def bench_env(database_url: str) -> dict[str, str]:
    return {
        "TIKTOK_APP_ID": "bench",
        "TIKTOK_APP_SECRET": "bench-secret",
        "TIKTOK_REDIRECT_URI": "http://127.0.0.1/callback",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": "k:" + base64.b64encode(os.urandom(32)).decode(),
        "WORKER_ENABLED": "false",
        "LOG_LEVEL": "INFO",
    }


async def seed(env: dict[str, str], advertisers: int) -> list[str]:
    """`advertisers` advertisers in grants of ADVERTISERS_PER_GRANT; returns the API keys."""
    from tiktok_auth_service.service import open_service

    settings = Settings(
        _env_file=None,
        **{k.lower(): v for k, v in env.items()},
        database_timeout_seconds=600,  # a million rows in one statement
    )
    grants = -(-advertisers // ADVERTISERS_PER_GRANT)
    async with open_service(settings) as service:
        now = datetime.now(UTC)
        async with service.db.session() as session, session.begin():
            repo = Repository(session)
            ids = []
            for g in range(grants):
                grant = Grant(
                    id=uuid.uuid4(),
                    flow=Flow.ADVERTISER,
                    key_id="",
                    access_token_enc=b"",
                    scope=[1, 2, 4],
                    status=GrantStatus.ACTIVE,
                    connected_by="bench",
                    end_user=f"customer-{g}",
                    created_at=now,
                    updated_at=now,
                )
                service.sealer.seal(grant, SecretStr(os.urandom(20).hex()))
                await repo.add(grant)
                ids.append(grant.id)
            # Advertiser i belongs to grant i // ADVERTISERS_PER_GRANT. No server process
            # listens yet, so the cache's notification trigger has nobody to tell.
            await session.execute(text("SET LOCAL session_replication_role = replica"))
            await session.execute(
                text(
                    "INSERT INTO advertiser (advertiser_id, grant_id, status, created_at, "
                    "updated_at) SELECT '7' || lpad(i::text, 18, '0'), "
                    "(CAST(:grants AS uuid[]))[i / :per + 1], 'active', :now, :now "
                    "FROM generate_series(0, :n - 1) AS i"
                ),
                {"grants": ids, "per": ADVERTISERS_PER_GRANT, "now": now, "n": advertisers},
            )
            await session.execute(
                text(
                    "UPDATE oauth_grant g SET advertiser_ids = a.ids FROM (SELECT grant_id, "
                    "array_agg(advertiser_id ORDER BY advertiser_id) AS ids FROM advertiser "
                    "GROUP BY grant_id) a WHERE a.grant_id = g.id"
                )
            )
        keys = [
            (await service.api_keys.create(f"bench-{i}", [])).key.get_secret_value()
            for i in range(KEYS)
        ]
    return keys


def lua_script(advertisers: int, keys: list[str], prefix: str, pick: str, start: int = 0) -> str:
    """A wrk script asking, with a random key on every request, for advertiser `pick`: `walk`
    (every advertiser in turn from index `start`, so that a warm-up reaches each of them),
    `uniform` or `zipf`."""
    index = {
        "walk": f"({start} + n) % {advertisers}",
        "uniform": f"math.random(0, {advertisers - 1})",
        # Rank r = N^u has density about 1/r; multiplying by a large odd number scatters the
        # hot ranks over the grants instead of packing them into the first.
        "zipf": f"(math.floor({advertisers} ^ math.random()) * 2654435761) % {advertisers}",
    }[pick]
    return (
        "local keys = {" + ",".join(f'"{k}"' for k in keys) + "}\n"
        "local n = 0\n"
        "math.randomseed(os.time())\n"
        "request = function()\n"
        "  local id = string.format('7%018d', " + index + ")\n"
        "  n = n + 1\n"
        "  return wrk.format('GET', '" + prefix + "' .. id, "
        "{['Authorization'] = 'Bearer ' .. keys[math.random(#keys)]})\n"
        "end\n"
    )


@dataclass
class Round:
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_us: float = 0.0  # the server's CPU time per request


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of `pid` and its child processes so far."""
    ticks = 0
    for each in [pid, *children(pid)]:
        fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port: int, script: Path, seconds: float, connections: int) -> Round:
    result = subprocess.run(
        [
            *("wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency"),
            *("-s", str(script), f"http://127.0.0.1:{port}"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise RuntimeError(f"wrk against port {port} failed:\n{result.stdout}{result.stderr}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", result.stdout).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s*50%\s+(\S+)", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s*99%\s+(\S+)", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    return Round(rate, _ms(p50), _ms(p99), requests)


def peak_rss_mb(pid: int) -> float:
    """The largest peak resident set (VmHWM) of `pid` and its child processes, in MB."""
    peaks = []
    for each in [pid, *children(pid)]:
        status = Path(f"/proc/{each}/status").read_text()
        peaks.append(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)))  # type: ignore[union-attr]
    return max(peaks) / 1024


def profile(pid: int, port: int, script: Path, seconds: float, connections: int) -> None:
    """Sample `pid` with py-spy during one wrk run; print the top functions by own samples and
    by samples anywhere on the stack."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        spy = subprocess.Popen(
            [
                *("py-spy", "record", "--pid", str(pid), "--subprocesses", "--format", "raw"),
                *("--rate", "250"),
                *("--output", out.name, "--duration", str(round(seconds)), "--nonblocking"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wrk(port, script, seconds, connections)
        spy.wait()
        own: collections.Counter[str] = collections.Counter()
        anywhere: collections.Counter[str] = collections.Counter()
        total = 0
        for line in Path(out.name).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [
                re.sub(r" \(.*?/site-packages/| \(.*?/src/", " (", f) for f in stack.split(";")
            ]
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                anywhere[frame] += int(count)
    print(f"\nprofile of the service ({total} samples), top by own samples:")
    for frame, count in own.most_common(15):
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print("top by samples anywhere on the stack:")
    for frame, count in anywhere.most_common(25):
        print(f"  {100 * count / total:5.1f}%  {frame}")


def rss_mb(pid: int) -> float:
    """The resident set (VmRSS) of the largest of `pid` and its child processes now, in MB."""
    sizes = []
    for each in [pid, *children(pid)]:
        status = Path(f"/proc/{each}/status").read_text()
        sizes.append(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)))  # type: ignore[union-attr]
    return max(sizes) / 1024


def warm_up(
    port: int, scratch: Path, advertisers: int, keys: list[str], prefix: str, c: int
) -> None:
    """Walk every advertiser once, in runs of WARM_UP_SECONDS each going on where the last
    stopped (and at least one run, which covers a small table several times over)."""
    walked = 0
    while walked < advertisers or walked == 0:
        script = scratch / f"walk-{port}.lua"
        script.write_text(lua_script(advertisers, keys, prefix, "walk", walked))
        walked += wrk(port, script, WARM_UP_SECONDS, c).requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--advertisers", type=int, default=10_000)
    parser.add_argument("--patterns", default="uniform", help="comma-separated: uniform, zipf")
    parser.add_argument("--cache-mb", type=int, help="TOKEN_CACHE_MAX_MB of the service")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    patterns = args.patterns.split(",")
    if shutil.which("wrk") is None:
        sys.exit("bench/hot_path.py needs wrk: apt-get install wrk")
    with (
        embedded_postgres() as database_url,
        tempfile.TemporaryDirectory() as scratch_dir,
        contextlib.ExitStack() as servers,
    ):
        scratch = Path(scratch_dir)
        asyncio.run(migrate(database_url))
        env = bench_env(database_url)
        if args.cache_mb:
            env["TOKEN_CACHE_MAX_MB"] = str(args.cache_mb)
        keys = asyncio.run(seed(env, args.advertisers))
        scripts = {}
        for prefix in ("/tokens/", "/constant/"):
            for pattern in patterns:
                scripts[prefix, pattern] = scratch / f"{prefix.strip('/')}-{pattern}.lua"
                scripts[prefix, pattern].write_text(
                    lua_script(args.advertisers, keys, prefix, pattern)
                )

        def start(name: str, command: list[str], extra_env: dict[str, str]) -> tuple[int, int]:
            port = free_port()
            process = servers.enter_context(
                running(
                    [*command, "--port", str(port)],
                    {**env, **extra_env},
                    f"http://127.0.0.1:{port}/healthz",
                    scratch / f"{name}.log",
                )
            )
            return port, process.pid

        serve = [sys.executable, "-m", "tiktok_auth_service", "serve", "--workers"]
        workers = (1, 2) if args.advertisers <= 10_000 else (1,)
        service = {n: start(f"serve-{n}", [*serve, str(n)], {}) for n in workers}
        answer = httpx.get(
            f"http://127.0.0.1:{service[1][0]}/tokens/{advertiser_id(0)}",
            headers={"authorization": f"Bearer {keys[0]}"},
        )
        answer.raise_for_status()
        uvicorn = [sys.executable, "-m", "uvicorn", "--no-access-log"]
        baseline = start(
            "baseline",
            [*uvicorn, "--app-dir", str(ROOT / "bench"), "baseline_app:app"],
            {"BENCH_BODY_BYTES": str(len(answer.content))},
        )
        targets = {
            "(a) service": (*service[1], "/tokens/"),
            "(b) asyncpg": (*baseline, "/tokens/"),
            "(c) constant": (*baseline, "/constant/"),
        }
        if 2 in service:
            targets["(a2) 2 workers"] = (*service[2], "/tokens/")
        grants = -(-args.advertisers // ADVERTISERS_PER_GRANT)
        print(
            f"wrk: {args.connections} connections, {args.seconds} s a round, {args.rounds} "
            f"rounds; {args.advertisers} advertisers in {grants} grants, {KEYS} keys; "
            f"body {len(answer.content)} bytes; (a) on granian, (b) and (c) on uvicorn; "
            f"TOKEN_CACHE_MAX_MB {env.get('TOKEN_CACHE_MAX_MB', 'default')}"
        )
        cold_rss = rss_mb(service[1][1])
        for port, _, prefix in targets.values():
            warm_up(port, scratch, args.advertisers, keys, prefix, args.connections)
        warm_rss = rss_mb(service[1][1])
        rounds: dict[tuple[str, str], list[Round]] = {}
        for _ in range(args.rounds):
            for pattern in patterns:
                for name, (port, pid, prefix) in targets.items():
                    cpu = cpu_seconds(pid)
                    measured = wrk(port, scripts[prefix, pattern], args.seconds, args.connections)
                    measured.cpu_us = (cpu_seconds(pid) - cpu) / measured.requests * 1e6
                    rounds.setdefault((pattern, name), []).append(measured)
        for pattern in patterns:
            best = {name: max(rounds[pattern, name], key=lambda r: r.rate) for name in targets}
            print(f"-- {pattern}")
            for name, r in best.items():
                print(
                    f"{name:<15} {r.rate:8.0f} req/s   p50 {r.p50_ms:7.2f} ms   "
                    f"p99 {r.p99_ms:7.2f} ms   server CPU {r.cpu_us:5.0f} us/request"
                )
            a, b, c = best["(a) service"], best["(b) asyncpg"], best["(c) constant"]
            print(
                f"a/b {a.rate / b.rate:.2f} (target >= 1.0)   a/c {a.rate / c.rate:.2f} "
                f"(target >= 0.5)   p99(a)/p99(b) {a.p99_ms / b.p99_ms:.2f} (target <= 2)"
                + (
                    f"   2 workers/1 worker {best['(a2) 2 workers'].rate / a.rate:.2f}"
                    if "(a2) 2 workers" in best
                    else ""
                )
            )
        print(
            f"P4 peak RSS of a serving process: {peak_rss_mb(service[1][1]):.0f} MB (target <= 150"
            " at the default size)"
        )
        print(
            f"RSS of the service before the walk {cold_rss:.0f} MB, with every advertiser read "
            f"{warm_rss:.0f} MB: {(warm_rss - cold_rss) * 2**20 / args.advertisers:.0f} bytes "
            "per advertiser read"
        )
        if args.profile:
            port, pid = service[1]
            profile(pid, port, scripts["/tokens/", patterns[0]], args.seconds, args.connections)


if __name__ == "__main__":
    main()
