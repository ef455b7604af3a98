"""Shared fixtures: a real PostgreSQL (embedded unless TEST_DATABASE_URL is set), migrated once
by Alembic and emptied before each test; the app over ASGITransport; a fake clock; and the
secret scan every test runs under (tests/secret_scan.py). Only fixtures live here: the data and
doubles they build on are in fixtures.py, the steps tests share in helpers.py."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tests.fixtures import Canaries, FakeClock, make_settings
from tests.openapi_check import CHECKED, OpenApiCheck
from tests.secret_scan import ScannedTransport, SecretScan, run_at_debug, summary
from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import migrate
from tiktok_auth_service.service import Service


@pytest.fixture
def canaries() -> Canaries:
    return Canaries()


@pytest.fixture(autouse=True)
def leak_guard(canaries: Canaries) -> Iterator[SecretScan]:
    """Every test runs at DEBUG under the secret scan (tests/secret_scan.py)."""
    scan = SecretScan(canaries)
    restore = run_at_debug()
    root = logging.getLogger()
    root.addHandler(scan)
    try:
        yield scan
    finally:
        root.removeHandler(scan)
        restore()
    scan.assert_clean()


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
    """A raw connection for assertions, on a database emptied before the test (the call
    budget's row too: a cool-down of one test must not hold the next)."""
    connection = await asyncpg.connect(migrated.replace("+asyncpg", ""))
    await connection.execute(
        "TRUNCATE oauth_grant, advertiser, oauth_state, api_client, token_access,"
        " webhook_delivery, rate_budget CASCADE"
    )
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A new, empty database on the test server (the shared, migrated one stays untouched);
    its URL. Dropped at the end."""
    name = f"empty_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(database_url.replace("+asyncpg", "", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(database_url).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(migrated: str, request: pytest.FixtureRequest) -> Settings:
    """The production defaults, but for what the test's `settings` marker overrides."""
    marker = request.node.get_closest_marker("settings")
    return make_settings(migrated, **(marker.kwargs if marker else {}))


@pytest.fixture
async def app(
    settings: Settings, clock: FakeClock, pg: asyncpg.Connection, leak_guard: SecretScan
) -> AsyncIterator[FastAPI]:
    """The service, started; when the test ends its metrics go to the secret scan."""
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application
        leak_guard.metrics(await app_service(application).render_metrics())


@pytest.fixture
def service(app: FastAPI) -> Service:
    return app_service(app)


@pytest.fixture
async def client(app: FastAPI, leak_guard: SecretScan) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI; every response it gives is checked against its OpenAPI document
    and scanned for secrets, and so is every exception it raises."""
    base_url = "https://broker.example"
    async with httpx.AsyncClient(
        transport=ScannedTransport(app, leak_guard),
        base_url=base_url,
        event_hooks={
            "response": [
                OpenApiCheck(app.openapi()).on_response,
                leak_guard.response_hook(base_url),
            ]
        },
    ) as http:
        yield http


@pytest.fixture
async def api_key(service: Service, canaries: Canaries) -> str:
    created = await service.api_keys.create("reporting", [])
    key = created.key.get_secret_value()
    canaries.add(key)
    return key


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How much of the API the OpenAPI check saw (see tests/openapi_check.py), and what the
    secret scan read (tests/secret_scan.py)."""
    scanned = summary()
    if scanned:
        terminalreporter.write_line(scanned)
    if CHECKED:
        terminalreporter.write_line(
            f"OpenAPI check: {sum(CHECKED.values())} responses matched the document, "
            f"{len(CHECKED)} distinct (operation, status) pairs"
        )
