"""The application factory. Nothing happens at import: `create_app(settings)` and its lifespan
own the database, the one shared httpx client and the TikTok client, and close them."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from tiktok_auth_service import __version__
from tiktok_auth_service.api import browser, health, problems, tokens
from tiktok_auth_service.clock import Clock, SystemClock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenCipher
from tiktok_auth_service.db import Database
from tiktok_auth_service.refresh import RefreshWorker
from tiktok_auth_service.service import AuthService
from tiktok_auth_service.tiktok import RetryPolicy, TikTokClient

DESCRIPTION = """
OAuth token broker for TikTok API for Business.

* A browser goes to `GET /authorize`, consents at TikTok and comes back through `GET /callback`.
* Internal services fetch a working token with `GET /tokens/{advertiser_id}`, authenticated
  with their own API key (`Authorization: Bearer tas_...`).

Errors are `application/problem+json` with a stable `code`.
"""


def tiktok_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one shared client for TikTok: explicit timeouts and connection limits."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.tiktok_timeout_seconds, connect=5.0),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        headers={"User-Agent": f"tiktok-auth-service/{__version__}"},
    )


@asynccontextmanager
async def open_service(
    settings: Settings, clock: Clock | None = None
) -> AsyncIterator[AuthService]:
    """Everything a use case needs, opened together and closed together (also used by the CLI)."""
    # httpx logs every request URL at INFO, and advertiser/get carries the app secret in its
    # query string (TikTok's design), so that logger must stay quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    db = await Database.connect(
        settings.database_url.get_secret_value(), pool_size=settings.database_pool_size
    )
    try:
        async with tiktok_http_client(settings) as http:
            clock = clock or SystemClock()
            tiktok = TikTokClient(
                http,
                app_id=settings.tiktok_app_id,
                app_secret=settings.tiktok_app_secret,
                api_base_url=settings.tiktok_api_base_url,
                clock=clock,
                retry=RetryPolicy(
                    max_attempts=settings.tiktok_retry_attempts,
                    base_delay=settings.tiktok_retry_base_delay,
                    max_total=settings.tiktok_retry_budget_seconds,
                ),
            )
            yield AuthService(
                settings=settings,
                db=db,
                tiktok=tiktok,
                cipher=TokenCipher(settings.encryption_keys),
                clock=clock,
            )
    finally:
        await db.close()


def _declare_api_key_scheme(app: FastAPI) -> None:
    """Add the callers' bearer scheme to the OpenAPI document (the token routes reference it
    without running a security dependency on every request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["ApiKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "The caller's API key (`tas_...`), from `api-keys create`.",
            }
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings, *, clock: Clock | None = None, freeze_after_startup: bool = False
) -> FastAPI:
    """The service. `freeze_after_startup` (for the one app of a server process) moves
    everything alive after start-up out of the cyclic garbage collector's reach: those objects
    live as long as the process, and scanning them showed up as latency spikes on the token
    read in bench/hot_path.py."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_service(settings, clock) as service:
            app.state.service = service
            if freeze_after_startup:
                gc.collect()
                gc.freeze()
            if not settings.worker_enabled:
                yield
                return
            stop = asyncio.Event()
            worker = asyncio.create_task(RefreshWorker(service.refresher, settings).run(stop))
            try:
                yield
            finally:
                stop.set()
                await worker

    app = FastAPI(
        title="tiktok-auth-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    _declare_api_key_scheme(app)
    problems.install(app)
    app.include_router(browser.router)
    app.include_router(tokens.router)
    app.include_router(health.router)
    return app
