"""The application factory. Nothing happens at import: `create_app(settings)` and its lifespan
open the service (database, TikTok client, use cases) and the background worker, and close
them. The app's metrics and request ids are installed here as middleware."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline

from tiktok_auth_service import __version__
from tiktok_auth_service.api import (
    browser,
    connect_sessions,
    connections,
    frontend,
    gateway,
    health,
    hot_path,
    problems,
    tokens,
)
from tiktok_auth_service.api.deps import attach_service
from tiktok_auth_service.api.limits import BodyLimit
from tiktok_auth_service.api.observability import (
    REQUEST_ID_HEADER,
    ObservedRequests,
    acceptable_request_id,
    new_request_id,
)
from tiktok_auth_service.api.security import SecurityHeaders
from tiktok_auth_service.budget import RateBudget
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.service import Service, open_service

log = logging.getLogger(__name__)

# In multiprocess mode each server process records its pool connections this often (the
# process answering a scrape records its own at that moment).
POOL_SAMPLE_SECONDS = 5.0

DESCRIPTION = """
OAuth token broker for TikTok API for Business.

* An internal caller opens a connect link (`POST /connect-sessions`); the person's browser
  follows it to `GET /authorize`, consents at TikTok and comes back through `GET /callback`.
* Internal services fetch a working token with `GET /tokens/{advertiser_id}` (or
  `/tokens/accounts/{open_id}`), authenticated with their own API key
  (`Authorization: Bearer tas_...`); `GET /connections` lists what a key may read.
* A frontend imports `GET /connect.js` and calls `connect(url)` to open a connect link in a
  popup; its backend confirms the outcome with `GET /connect-sessions/{session_id}`.

Errors are `application/problem+json` (RFC 9457) with a stable `code`; browsers get an HTML
page instead.
"""


def _complete_openapi(app: FastAPI) -> None:
    """Add what the routes reference but FastAPI does not derive: the callers' bearer scheme
    (the token routes skip running a security dependency on every request) and the Problem
    schema of every error (declared under application/problem+json, the type really sent)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            components = build().setdefault("components", {})
            components.setdefault("securitySchemes", {})["ApiKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "The caller's API key (`tas_...`), from `api-keys create`.",
            }
            components.setdefault("schemas", {})["Problem"] = problems.Problem.model_json_schema()
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


async def _sample_pools(service: Service, stop: asyncio.Event) -> None:
    while not stop.is_set():
        service.sample_pools()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=POOL_SAMPLE_SECONDS)


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    freeze_after_startup: bool = False,
    metrics: Metrics | None = None,
    budget: Callable[[Database], RateBudget] | None = None,
) -> FastAPI:
    """The service. `freeze_after_startup` (for the one app of a server process) moves
    everything alive after start-up out of the cyclic garbage collector's reach: those objects
    live as long as the process, and scanning them showed up as latency spikes on the token
    read in bench/hot_path.py. `metrics` defaults to this process's (`Metrics.for_process`).
    `budget`: see `open_service`."""
    metrics = metrics or Metrics.for_process()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_service(
            settings, clock, metrics, budget=budget, request_id=correlation_id.get
        ) as service:
            attach_service(app, service)
            if freeze_after_startup:
                gc.collect()
                gc.freeze()
            stop = asyncio.Event()
            background = [asyncio.create_task(service.audit.run(stop))]
            if settings.worker_enabled:
                background.append(asyncio.create_task(service.worker.run(stop)))
                background.append(asyncio.create_task(service.webhooks.run(stop)))
            if service.cache_listener is not None:
                background.append(asyncio.create_task(service.cache_listener.run(stop)))
            if metrics.multiprocess_dir:
                background.append(asyncio.create_task(_sample_pools(service, stop)))
            log.info("started: process %d serves requests", os.getpid())
            try:
                yield
            finally:
                stop.set()
                # The server has answered every request: what still waits for a slot is
                # the worker's, and its leases run out for another pass to take.
                service.budget.close()
                await asyncio.gather(*background)
                # The server has answered every request by now, but a read may have left
                # the refresh it stopped waiting for in flight.
                await service.tokens.refresher.finish_flights()
                metrics.process_exited()
        log.info("stopped: process %d has shut down", os.getpid())

    # FastAPIOffline serves Swagger UI and ReDoc from files in the package, not a CDN, so
    # /docs works on machines without internet access.
    app = FastAPIOffline(
        title="tiktok-auth-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Operation ids are the route functions' names (`get_advertiser_token`, ...): short,
        # stable, and what generated clients call their methods.
        generate_unique_id_function=lambda route: route.name,
        # FastAPI's native OpenTelemetry off: the service exports Prometheus metrics and JSON
        # logs, and the check whether it is on cost the token read 5 us a request.
        telemetry=NO_TELEMETRY,
    )
    _complete_openapi(app)
    problems.install(app)
    # Added innermost first: the request id is known before the request is observed and
    # logged; every response gets the security headers (a refused body's 413 too). The hot
    # path, outermost, gives its answers all three itself.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ObservedRequests, metrics=metrics)
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=REQUEST_ID_HEADER,
        validator=acceptable_request_id,
        generator=new_request_id,
    )
    app.add_middleware(hot_path.CachedTokenReads, metrics=metrics)
    app.add_middleware(gateway.GatewayRequests, metrics=metrics)
    app.include_router(connect_sessions.router)
    app.include_router(browser.router)
    app.include_router(frontend.router)
    app.include_router(tokens.router)
    app.include_router(connections.router)
    app.include_router(health.router)
    return app
