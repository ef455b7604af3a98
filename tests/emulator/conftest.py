"""Fixtures: emulators driven in-process through httpx.ASGITransport, or served on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from tiktok_emulator import EmulatorConfig, create_emulator_app

from .helpers import Emulator, MakeEmulator


@pytest.fixture
async def make_emulator() -> AsyncIterator[MakeEmulator]:
    """Factory: `await make_emulator(**config)`. Rate limits are off unless given."""
    clients: list[httpx.AsyncClient] = []

    async def make(**config: Any) -> Emulator:
        settings = {"qps": 0, "qpm": 0, "qpd": 0, **config}
        app = create_emulator_app(EmulatorConfig(**settings))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://emulator"
        )
        clients.append(client)
        return Emulator(app, client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def emu(make_emulator: MakeEmulator) -> Emulator:
    """An emulator with the default apps and advertisers, rate limits off."""
    return await make_emulator()


@pytest.fixture
async def served_emulator() -> AsyncIterator[Emulator]:
    """An emulator served by a real uvicorn server on an ephemeral loopback port (rate limits
    off), in the test's own event loop, with a client talking HTTP to it."""
    app = create_emulator_app(EmulatorConfig(qps=0, qpm=0, qpd=0))
    # log_config=None: uvicorn's records reach the root logger (and the secret scan).
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    # Bind and listen before starting, so the kernel queues our first requests until uvicorn
    # accepts them: no need to poll for readiness.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield Emulator(app, client)
    server.should_exit = True
    await task
    sock.close()
