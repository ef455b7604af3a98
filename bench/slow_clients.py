"""Slow clients against a real `serve` (item 3 of issue 17): N connections that each send a
request line and then one header line every few seconds, never finishing their headers, and
open again whenever the server closes them, while fresh token reads and /readyz are measured.

    uv run python bench/slow_clients.py [--connections 1500 ...] [--seconds 25] [--interval 5]
        [--quiet-seconds 5] [--fd-limit SOFT[:HARD]] [--env NAME=VALUE ...] [--command ...]

Starts an embedded PostgreSQL, seeds one advertiser grant and one API key, and runs
`serve --workers 1` (WORKER_ENABLED=false; TikTok is never called) with its log in a file.
`--fd-limit` starts the server at that RLIMIT_NOFILE (1024: a common default soft limit;
1024:20000, a soft limit below the hard one). `--command` runs another server command line
instead (its words after `--command`; `{port}` is replaced), to compare servers or versions
on the same load. For each N, on a fresh server: twice a second a token read and a /readyz
each go out on a new connection (`Connection: close`, 3 s limit), first alone for
`--quiet-seconds`, then while the N slow clients run for `--seconds`. Prints per N: the slow
clients' connections opened and closed by the server, the most held at once, the reads'
p50/p99 in ms alone and under the load, their max and failures, /readyz answered and failed,
the serving process's open file descriptors at their peak (/proc/PID/fd) and its soft open
file limit, and the log's ERROR lines and "Too many open files".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import SecretStr
from running import ROOT, free_port

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import migrate
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository

ADVERTISER = "7100000000000000001"
PROBE_TIMEOUT = 3.0
BATCH = 200  # connections opened at once, within the listen backlog


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


async def seed(env: dict[str, str]) -> str:
    """One advertiser grant and an API key; returns the key."""
    from tiktok_auth_service.service import open_service

    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})
    async with open_service(settings) as service:
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
        )
        service.sealer.seal(grant, SecretStr(os.urandom(20).hex()))
        async with service.db.session() as session, session.begin():
            repo = Repository(session)
            await repo.add(grant)
            await repo.assign_advertisers(grant.id, [ADVERTISER], now)
        return (await service.api_keys.create("bench", [])).key.get_secret_value()


@dataclass
class Run:
    held: int = 0  # the slow clients' connections open now (the kernel took the handshake)
    peak_held: int = 0  # the most of them open at once, sampled with the probes
    accepted: int = 0  # connections opened, reopened ones included
    closed_by_server: int = 0
    quiet_reads: list[float] = field(default_factory=list)  # seconds, before the slow clients
    reads: list[float] = field(default_factory=list)  # seconds, the successful ones
    read_failures: int = 0
    ready: list[float] = field(default_factory=list)
    ready_failures: int = 0
    fds: int = 0


async def probe(port: int, path: str, headers: dict[str, str]) -> float | None:
    """GET `path` on a new connection; its latency in seconds if answered 200 in time."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
                lines += [f"{name}: {value}" for name, value in headers.items()]
                writer.write("\r\n".join([*lines, "Connection: close", "", ""]).encode())
                answer = await reader.read()
            finally:
                writer.close()
    except (TimeoutError, OSError):
        return None
    if answer.split(b" ", 2)[1:2] != [b"200"]:
        return None
    return time.monotonic() - started


async def slow_client(
    port: int, interval: float, until: float, run: Run, opened: asyncio.Semaphore
) -> None:
    """One slow client until `until`: a connection sending a header line every `interval` s,
    never ending its headers, opened again whenever the server closes it (as an attacker
    would). Counts the connections it got and those the server closed."""
    first = True
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if first:
                opened.release()
                first = False
            await asyncio.sleep(interval)
            continue
        run.accepted += 1
        run.held += 1
        if first:
            opened.release()
            first = False
        try:
            writer.write(f"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
            line = 0
            while time.monotonic() < until:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, min(interval, until - time.monotonic()))):
                        if not await reader.read(1024):
                            run.closed_by_server += 1
                            break
                        continue
                line += 1
                writer.write(f"X-Slow-{line}: 1\r\n".encode())
        except OSError:
            run.closed_by_server += 1
        finally:
            run.held -= 1
            writer.close()


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def probes(pid: int, port: int, key: str, until: float, run: Run, quiet: bool) -> None:
    """Twice a second until `until`: a token read and a /readyz, each on a new connection."""
    token_headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < until:
        read, ready, _ = await asyncio.gather(
            probe(port, f"/tokens/{ADVERTISER}", token_headers),
            probe(port, "/readyz", {}),
            asyncio.sleep(0.5),
        )
        if quiet:
            if read is not None:
                run.quiet_reads.append(read)
            continue
        if read is None:
            run.read_failures += 1
        else:
            run.reads.append(read)
        if ready is None:
            run.ready_failures += 1
        else:
            run.ready.append(ready)
        run.fds = max(run.fds, open_fds(pid))
        run.peak_held = max(run.peak_held, run.held)


async def load(pid: int, port: int, key: str, args: argparse.Namespace, n: int) -> Run:
    """Probes alone for `--quiet-seconds`, then with `n` slow clients for `--seconds`."""
    run = Run()
    await probes(pid, port, key, time.monotonic() + args.quiet_seconds, run, quiet=True)
    until = time.monotonic() + args.seconds
    opened = asyncio.Semaphore(BATCH)
    clients = []
    for _ in range(n):
        await opened.acquire()
        clients.append(asyncio.create_task(slow_client(port, args.interval, until, run, opened)))
    await probes(pid, port, key, until, run, quiet=False)
    await asyncio.gather(*clients)
    return run


def fd_limit(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    soft, _, hard = text.partition(":")
    return int(soft), int(hard or soft)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, nargs="+", default=[1500])
    parser.add_argument("--seconds", type=float, default=30, help="s the slow clients run")
    parser.add_argument("--quiet-seconds", type=float, default=5, help="s of probes before")
    parser.add_argument("--interval", type=float, default=5, help="s between header lines")
    parser.add_argument("--fd-limit", help="the server's RLIMIT_NOFILE, SOFT[:HARD]")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--command", nargs=argparse.REMAINDER, help="another server command")
    args = parser.parse_args(argv)
    limit = fd_limit(args.fd_limit)
    own_soft, own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max(args.connections) + 100
    if own_soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, own_hard), own_hard))
    with embedded_postgres() as database_url, tempfile.TemporaryDirectory() as scratch:
        asyncio.run(migrate(database_url))
        env = {**bench_env(database_url), **dict(e.split("=", 1) for e in args.env)}
        key = asyncio.run(seed(env))
        print(
            f"slow clients: one header line every {args.interval:g} s, held {args.seconds:g} s;"
            f" server fd limit {limit or resource.getrlimit(resource.RLIMIT_NOFILE)};"
            f" probes every 0.5 s, {PROBE_TIMEOUT:g} s limit"
        )
        print(
            f"{'N':>6} {'opened':>7} {'closed':>7} {'held':>6} {'quiet p50/p99':>14}"
            f" {'loaded p50/p99':>15} {'max':>7} {'failed':>6} {'readyz':>6} {'failed':>6}"
            f" {'fds':>6} {'nofile':>6} {'errors':>6} {'EMFILE':>6}"
        )
        for n in args.connections:
            port = free_port()
            command = (
                [word.replace("{port}", str(port)) for word in args.command]
                if args.command
                else [
                    *(sys.executable, "-m", "tiktok_auth_service", "serve"),
                    *("--workers", "1", "--port", str(port)),
                ]
            )
            log_path = Path(scratch) / f"serve-{n}.log"
            with open(log_path, "wb") as out:
                process = subprocess.Popen(
                    command,
                    env={**os.environ, **env},
                    cwd=ROOT,
                    stdout=out,
                    stderr=out,
                    preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
                    if limit
                    else None,
                )
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                        break
                    except httpx.TransportError:
                        if process.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError(f"{command} did not start") from None
                        time.sleep(0.2)
                pid = server_pid(process.pid)
                nofile = soft_nofile(pid)
                run = asyncio.run(load(pid, port, key, args, n))
            finally:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            text = log_path.read_text(errors="replace")
            if os.environ.get("BENCH_KEEP_LOG"):
                Path(os.environ["BENCH_KEEP_LOG"]).write_text(text)
            errors = sum("ERROR" in line for line in text.splitlines())

            print(
                f"{n:>6} {run.accepted:>7} {run.closed_by_server:>7} {run.peak_held:>6}"
                f" {p50_p99(run.quiet_reads):>14} {p50_p99(run.reads):>15}"
                f" {ms(max(run.reads, default=None)):>7} {run.read_failures:>6}"
                f" {len(run.ready):>6} {run.ready_failures:>6} {run.fds:>6} {nofile:>6}"
                f" {errors:>6} {text.count('Too many open files'):>6}",
                flush=True,
            )


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def p50_p99(values: list[float]) -> str:
    """Median and 99th percentile in ms."""
    if len(values) < 2:
        return "-"
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98]
    return f"{ms(statistics.median(values))}/{ms(p99)}"


def soft_nofile(pid: int) -> int:
    """The soft RLIMIT_NOFILE of `pid`."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 0


def server_pid(pid: int) -> int:
    """The process that serves: `pid` itself, or its one child when it supervises."""
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return children[0] if len(children) == 1 else pid


if __name__ == "__main__":
    main()
