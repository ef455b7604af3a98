"""What the benchmarks start: the service's settings
for a TikTok emulator, and processes that serve HTTP for the length of a `with` block."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tiktok_auth_service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "bench-app"
APP_SECRET = "bench-secret"  # noqa: S105 - the emulator's, made up here


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def service_env(database_url: str, emulator_url: str, **settings: str) -> dict[str, str]:
    """The service's environment, with the emulator as TikTok (more `settings` by name)."""
    return {
        "TIKTOK_APP_ID": APP_ID,
        "TIKTOK_APP_SECRET": APP_SECRET,
        "TIKTOK_REDIRECT_URI": "http://127.0.0.1:1/callback",
        "TIKTOK_AUTH_URL": f"{emulator_url}/portal/auth",
        "TIKTOK_ACCOUNT_AUTH_URL": f"{emulator_url}/v2/auth/authorize/",
        "TIKTOK_API_BASE_URL": f"{emulator_url}/open_api/v1.3",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": "k:" + base64.b64encode(os.urandom(32)).decode(),
        "LOG_LEVEL": "WARNING",
        **settings,
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(_env_file=None, **{name.lower(): value for name, value in env.items()})


def emulator_app(env: dict[str, str]) -> dict[str, object]:
    """The emulator's registration of the app `env` configures."""
    return {
        "app_id": APP_ID,
        "secret": APP_SECRET,
        "redirect_uris": [env["TIKTOK_REDIRECT_URI"]],
        "account_redirect_uri": env["TIKTOK_REDIRECT_URI"],
        "scopes": [4],
    }


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], ready_url: str, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends; returns once `ready_url` answers. Its output is
    discarded, or written to the file `log`: never to a pipe, which a benchmark draining it
    would slow down whenever the benchmark fell behind."""
    with open(log or os.devnull, "wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(ready_url, timeout=5)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command} did not start") from None
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


async def get(url: str, headers: dict[str, str]) -> int:
    """GET `url` on a connection of its own (HTTP/1.1, `Connection: close`); the status.

    Written on asyncio's streams rather than with httpx: on this machine httpx's pool took
    about 6 s to send 500 concurrent requests that the service answered in 0.3 s, so the
    client, not the service, would have been measured."""
    target = httpx.URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        lines = [f"GET {target.raw_path.decode()} HTTP/1.1", f"Host: {target.netloc.decode()}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join([*lines, "Connection: close", "", ""])).encode())
        answer = await reader.read()
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1])
