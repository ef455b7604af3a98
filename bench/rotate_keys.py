"""How long `rotate-keys` takes over many grants, with `--check` before and after.

    uv run python bench/rotate_keys.py [--grants 10000] [--batch-size 500]

Starts an embedded PostgreSQL, stores `--grants` grants sealed with an old key `k1` (one in
twenty a TikTok account, with a refresh token, the rest advertisers), then runs the real
command line with the new key `k2` first: `rotate-keys --check`, `rotate-keys` (timed, the
whole process including start-up), `rotate-keys --check`, and finally `--check` with `k2`
alone, as after removing the old key. Prints each command's output and the time.
`--interrupt` then also kills a run with SIGKILL after its first batch and runs it again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import migrate
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus

OLD = {"k1": os.urandom(32)}
NEW = {"k2": os.urandom(32)}


def keys_setting(keys: dict[str, bytes]) -> str:
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys.items())


async def seed(database_url: str, count: int) -> None:
    sealer = TokenSealer(OLD)
    now = datetime.now(UTC)
    grants = []
    for n in range(count):
        account = n % 20 == 0
        grant = Grant(
            id=uuid.uuid4(),
            flow=Flow.TIKTOK_ACCOUNT if account else Flow.ADVERTISER,
            open_id=f"-000bench{n}" if account else None,
            key_id="",
            access_token_enc=b"",
            expires_at=now + timedelta(hours=24) if account else None,
            scope=["user.info.basic"] if account else [4],
            status=GrantStatus.ACTIVE,
            created_at=now,
            updated_at=now,
        )
        sealer.seal(
            grant,
            SecretStr(f"act.{uuid.uuid4().hex}{uuid.uuid4().hex}"),
            SecretStr(f"rft.{uuid.uuid4().hex}{uuid.uuid4().hex}") if account else None,
        )
        grants.append(grant)
    engine = create_async_engine(database_url)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            session.add_all(grants)
    finally:
        await engine.dispose()


def cli(env: dict[str, str], keys: dict[str, bytes], *args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "tiktok_auth_service", "rotate-keys", *args],
        env={**env, "TOKEN_ENCRYPTION_KEYS": keys_setting(keys)},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    print(
        f"$ TOKEN_ENCRYPTION_KEYS={','.join(keys)} tiktok-auth-service rotate-keys {' '.join(args)}"
    )
    lines = result.stderr.splitlines()
    if len(lines) > 4:  # the running total, one line per batch: first and last two
        lines = [*lines[:2], f"  ... ({len(lines) - 4} more)", *lines[-2:]]
    for line in lines:
        print(f"  (stderr) {line}")
    for line in result.stdout.splitlines():
        print(f"  {line}")
    print(f"  exit status {result.returncode}, {elapsed:.2f} s")
    return elapsed


def killed_mid_way(env: dict[str, str], keys: dict[str, bytes], batch_size: int) -> None:
    """Start rotate-keys and SIGKILL it as soon as it reports its first committed batch."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tiktok_auth_service",
            "rotate-keys",
            "--batch-size",
            str(batch_size),
        ],
        env={**env, "TOKEN_ENCRYPTION_KEYS": keys_setting(keys)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    first = process.stderr.readline().strip()
    process.kill()
    process.wait()
    print(f"$ tiktok-auth-service rotate-keys, killed (SIGKILL) after: {first!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--interrupt",
        action="store_true",
        help="afterwards, rotate back to k1, then to k2 again killing the first run mid-way",
    )
    args = parser.parse_args()
    with embedded_postgres() as database_url:
        asyncio.run(migrate(database_url))
        asyncio.run(seed(database_url, args.grants))
        env = {
            **os.environ,
            "TIKTOK_APP_ID": "bench",
            "TIKTOK_APP_SECRET": "bench-secret",
            "TIKTOK_REDIRECT_URI": "http://127.0.0.1/callback",
            "DATABASE_URL": database_url,
            "WORKER_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
        }
        print(f"{args.grants:,} grants sealed with k1")
        start_up = cli(env, NEW | OLD, "--check")
        took = cli(env, NEW | OLD, "--batch-size", str(args.batch_size))
        cli(env, NEW | OLD, "--check")
        cli(env, NEW, "--check")
        print(
            f"rotate-keys over {args.grants:,} grants: {took:.2f} s for the whole process, "
            f"about {took - start_up:.2f} s more than a --check"
        )
        if args.interrupt:
            print("\nInterrupted and resumed, back to k1 first:")
            cli(env, OLD | NEW, "--batch-size", str(args.batch_size))
            killed_mid_way(env, NEW | OLD, args.batch_size)
            cli(env, NEW | OLD, "--check")
            cli(env, NEW | OLD, "--batch-size", str(args.batch_size))


if __name__ == "__main__":
    main()
