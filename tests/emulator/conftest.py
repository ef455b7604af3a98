"""Fixtures: emulators driven in-process through httpx.ASGITransport, or served on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.helpers import served_on_loopback
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
    """An emulator served by a real uvicorn server on loopback (rate limits off), with a
    client talking HTTP to it."""
    app = create_emulator_app(EmulatorConfig(qps=0, qpm=0, qpd=0))
    async with (
        served_on_loopback(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        yield Emulator(app, client)
