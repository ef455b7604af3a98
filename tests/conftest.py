"""Shared fixtures: a real PostgreSQL (embedded unless TEST_DATABASE_URL is set), migrated once
by Alembic and emptied before each test; the app over ASGITransport; a fake clock; and a guard
that fails any test whose logs contain a secret. Only fixtures live here: the data and doubles they
build on are in fixtures.py, the steps tests share in helpers.py."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures import Canaries, FakeClock, make_settings
from tests.openapi_check import CHECKED, OpenApiCheck
from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import migrate
from tiktok_auth_service.service import Service

API_KEY_PATTERN = re.compile(r"tas_[A-Za-z0-9_-]{20,}")
WORD = re.compile(r"[A-Za-z0-9_.\-]{8,}")


# What every LogRecord has; anything else on a record came from `extra={...}`.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        # The structured fields too: the JSON formatter writes each of them out.
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES}
        if extras:
            text += " " + " ".join(f"{key}={value}" for key, value in extras.items())
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture
def canaries() -> Canaries:
    return Canaries()


@pytest.fixture(autouse=True)
def leak_guard(canaries: Canaries) -> Iterator[None]:
    collector = _Collector()
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(collector)
    try:
        yield
    finally:
        root.removeHandler(collector)
        root.setLevel(previous)
    text = "\n".join(collector.lines)
    # Tokens are whole words: compare the log's words with the canaries (linear in the log).
    found = WORD.findall(text)
    words = set(found) | {word.strip("._-") for word in found}
    leaks = sorted(canaries.values & words) + API_KEY_PATTERN.findall(text)
    assert not leaks, f"{len(leaks)} secrets in logs, e.g. {leaks[0][:8]}..."


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    with embedded_postgres() as url:
        yield url


@pytest.fixture(scope="session")
async def migrated(database_url: str) -> str:
    await migrate(database_url)
    return database_url


@pytest.fixture
async def pg(migrated: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection for assertions, on a database emptied before the test."""
    connection = await asyncpg.connect(migrated.replace("+asyncpg", ""))
    await connection.execute(
        "TRUNCATE oauth_grant, advertiser, oauth_state, api_client, token_access,"
        " webhook_delivery CASCADE"
    )
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(migrated: str) -> Settings:
    return make_settings(migrated)


@pytest.fixture
async def app(
    settings: Settings, clock: FakeClock, pg: asyncpg.Connection
) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def service(app: FastAPI) -> Service:
    return app_service(app)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI; every response it gives is checked against its OpenAPI document."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="https://broker.example",
        event_hooks={"response": [OpenApiCheck(app.openapi()).on_response]},
    ) as http:
        yield http


@pytest.fixture
async def api_key(service: Service, canaries: Canaries) -> str:
    created = await service.api_keys.create("reporting", [])
    key = created.key.get_secret_value()
    canaries.add(key)
    return key


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How much of the API the OpenAPI check saw (see tests/openapi_check.py)."""
    if CHECKED:
        terminalreporter.write_line(
            f"OpenAPI check: {sum(CHECKED.values())} responses matched the document, "
            f"{len(CHECKED)} distinct (operation, status) pairs"
        )
