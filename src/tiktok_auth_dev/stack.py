"""The local stack: embedded PostgreSQL, the TikTok emulator and the service, wired together.

Used by `tiktok-auth-service dev` and by the end-to-end tests. This module (with the emulator)
is development tooling: the service itself never imports either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.api_keys import ApiKeys
from tiktok_auth_service.app import create_app
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import migrate
from tiktok_auth_service.models import Flow
from tiktok_emulator import EmulatorApp, EmulatorConfig, create_emulator_app


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner (so two can share one event loop)
    and says when it is ready to accept connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass(frozen=True)
class Stack:
    service_url: str
    emulator_url: str
    settings: Settings
    service: FastAPI
    emulator: Starlette


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving(app: Any, sock: socket.socket) -> AsyncIterator[None]:
    """Serve `app` on an already bound socket for the duration of the block."""
    server = QuietServer(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        await task  # raises the startup error
        raise RuntimeError("server stopped during startup")
    try:
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def run_stack(
    *,
    database_url: str,
    encryption_keys: str,
    host: str = "127.0.0.1",
    service_port: int = 0,
    emulator_port: int = 0,
    emulator_config: dict[str, Any] | None = None,
    clock: Clock | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[Stack]:
    """Serve the emulator and the service on loopback, each configured to reach the other.

    Port 0 picks free ports (the tests); the sockets are bound before either app is configured
    so each can be told the other's real address.
    """
    emulator_sock, service_sock = bind_socket(host, emulator_port), bind_socket(host, service_port)
    emulator_url = f"http://{host}:{emulator_sock.getsockname()[1]}"
    service_url = f"http://{host}:{service_sock.getsockname()[1]}"
    callback = f"{service_url}/callback"
    app_entry = EmulatorApp(
        app_id="emulator-app",
        secret="emulator-secret",  # noqa: S106 - the emulator's well-known dev credential
        redirect_uris=[callback],
        account_redirect_uri=callback,
        scopes=[4, 100, 200, 300],
    )
    emulator = create_emulator_app(EmulatorConfig(apps=[app_entry], **(emulator_config or {})))
    settings = Settings(
        _env_file=None,
        tiktok_app_id=app_entry.app_id,
        tiktok_app_secret=app_entry.secret,
        tiktok_redirect_uri=callback,
        tiktok_auth_url=f"{emulator_url}/portal/auth",
        tiktok_account_auth_url=f"{emulator_url}/v2/auth/authorize/",
        tiktok_api_base_url=f"{emulator_url}/open_api/v1.3",
        database_url=database_url,
        token_encryption_keys=encryption_keys,
        return_to_allowed_origins=[service_url],
        **settings_overrides,
    )
    service = create_app(settings, clock=clock)
    async with serving(emulator, emulator_sock), serving(service, service_sock):
        yield Stack(service_url, emulator_url, settings, service, emulator)


def _read_or_create(path: Path, make: Any) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


async def _dev_api_key(api_keys: ApiKeys, path: Path) -> str:
    """The local API key, created once and kept in the data folder."""
    if path.exists():
        key = path.read_text().strip()
        if await api_keys.is_active(key):
            return key
    created = await api_keys.create(f"dev-{os.urandom(4).hex()}", [])
    key = created.key.get_secret_value()
    path.write_text(key)
    path.chmod(0o600)
    return key


async def _dev(data_dir: Path, host: str, port: int, emulator_port: int) -> None:
    keys = _read_or_create(
        data_dir / "encryption-keys",
        lambda: "dev:" + base64.b64encode(os.urandom(32)).decode(),
    )
    with embedded_postgres(data_dir / "postgres") as database_url:
        await migrate(database_url)
        async with run_stack(
            database_url=database_url,
            encryption_keys=keys,
            host=host,
            service_port=port,
            emulator_port=emulator_port,
        ) as stack:
            service = app_service(stack.service)
            key = await _dev_api_key(service.api_keys, data_dir / "api-key")
            link = await service.authorization.open_session(key, Flow.ADVERTISER, None, "dev")
            advertiser = "7100000000000000001"
            sessions = f"{stack.service_url}/connect-sessions"
            print(
                "\ntiktok-auth-service is running with a local TikTok emulator.\n\n"
                f"  Connect advertisers:  {link.url}\n"
                "                        (works once, for "
                f"{stack.settings.state_ttl_seconds // 60} minutes; open another with\n"
                f"                        curl -H 'Authorization: Bearer {key}' "
                "-H 'Content-Type: application/json'\n"
                f'                          -d \'{{"flow": "advertiser"}}\' {sessions}\n'
                '                        or "tiktok_account" to connect a TikTok account)\n'
                f"  API docs:             {stack.service_url}/docs\n"
                f"  Emulator state:       {stack.emulator_url}/_emulator/state\n"
                f"  Fetch a token:        curl -H 'Authorization: Bearer {key}' "
                f"{stack.service_url}/tokens/{advertiser}\n\n"
                f"Data is kept in {data_dir}/ between runs. Press Ctrl-C to stop.\n",
                flush=True,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (2, 15):  # SIGINT, SIGTERM
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
    print("stopped", flush=True)


def main(data_dir: Path, host: str, port: int, emulator_port: int) -> None:
    """Run the local stack until Ctrl-C or SIGTERM."""
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_dev(data_dir.resolve(), host, port, emulator_port))
