"""Throughput and latency of GET /tokens/{advertiser_id}, against a baseline in the same run.

    uv run python bench/hot_path.py [--seconds 10] [--connections 64]

Needs `wrk` (Debian: apt-get install wrk). Starts an embedded PostgreSQL, seeds one grant and
one API key, then serves (each in its own process, uvicorn with uvloop) first the bare baseline
(bench/baseline_app.py) and then the real service, and loads each with the same wrk command.
Prints requests per second and latency percentiles for both, and the service's share of the
baseline. Absolute numbers depend on the machine; the ratio is what to compare between changes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import migrate
from tiktok_auth_service.models import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository

ROOT = Path(__file__).resolve().parents[1]
ADVERTISER = "7100000000000000001"
PORT = 8765


async def seed(env: dict[str, str]) -> tuple[str, str]:
    """One stored grant and one API key; returns (grant id, key)."""
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
        service.sealer.seal(grant, SecretStr("f" * 40))
        async with service.db.session() as session, session.begin():
            repo = Repository(session)
            await repo.add(grant)
            await repo.assign_advertisers(grant.id, [ADVERTISER], now)
        key = (await service.api_keys.create(f"bench-{os.getpid()}", [])).key
    return str(grant.id), key.get_secret_value()


def wrk(url: str, key: str, seconds: float, connections: int) -> tuple[float, str, str]:
    """Run wrk; returns (requests per second, p50, p99)."""
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {key}",
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stdout}{result.stderr}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s*50%\s+(\S+)", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s*99%\s+(\S+)", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    if "Non-2xx" in result.stdout:
        raise RuntimeError(f"{url} answered errors:\n{result.stdout}")
    return rate, p50, p99


def serve(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, cwd=ROOT)
    assert process.stderr is not None
    for line in process.stderr:
        if b"Uvicorn running on" in line:
            # The service logs every request (its access log): keep reading, or the pipe fills
            # up and the server stalls on its next line.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process
    raise RuntimeError(f"{command[2]} did not start")


def measure(
    name: str, command: list[str], env: dict[str, str], args: argparse.Namespace, key: str
) -> float:
    process = serve(command, env)
    try:
        url = f"http://127.0.0.1:{PORT}/tokens/{ADVERTISER}"
        wrk(url, key, 2, args.connections)  # warm-up
        rate, p50, p99 = wrk(url, key, args.seconds, args.connections)
    finally:
        process.terminate()
        process.wait()
    print(f"{name:<10} {rate:8.0f} req/s   p50 {p50:>8}   p99 {p99:>8}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/hot_path.py needs wrk: apt-get install wrk")
    with embedded_postgres() as database_url:
        asyncio.run(migrate(database_url))
        env = {
            "TIKTOK_APP_ID": "bench",
            "TIKTOK_APP_SECRET": "bench-secret",
            "TIKTOK_REDIRECT_URI": "http://127.0.0.1/callback",
            "DATABASE_URL": database_url,
            "TOKEN_ENCRYPTION_KEYS": "k:" + base64.b64encode(os.urandom(32)).decode(),
            "WORKER_ENABLED": "false",
            "LOG_LEVEL": "INFO",
        }
        grant_id, key = asyncio.run(seed(env))
        run_env = {**os.environ, **env, "BENCH_GRANT_ID": grant_id}
        uvicorn = [
            sys.executable,
            "-m",
            "uvicorn",
            "--port",
            str(PORT),
            "--no-access-log",
            "--app-dir",
            str(ROOT / "bench"),
            "baseline_app:app",
        ]
        print(f"wrk: {args.connections} connections, {args.seconds:.0f} s per target")
        baseline = measure("baseline", uvicorn, run_env, args, key)
        service = measure(
            "service",
            [sys.executable, "-m", "tiktok_auth_service", "serve", "--port", str(PORT)],
            run_env,
            args,
            key,
        )
        print(f"service / baseline throughput: {service / baseline:.2f}")


if __name__ == "__main__":
    main()
