"""The composition root: every part of the service built once, wired together, closed together.

`open_service` is used by the app's lifespan and by the command line; no part builds another.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tiktok_auth_service import __version__
from tiktok_auth_service.api_keys import ApiKeys
from tiktok_auth_service.authorization import (
    AccountFlow,
    AdvertiserFlow,
    Authorization,
    ConsentFlow,
)
from tiktok_auth_service.clock import Clock, SystemClock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.connections import Connections
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database
from tiktok_auth_service.key_rotation import KeyRotation
from tiktok_auth_service.liveness import LivenessChecker
from tiktok_auth_service.refresh import AccountRefresher
from tiktok_auth_service.repository import database_answers
from tiktok_auth_service.revocation import Revoker
from tiktok_auth_service.scheduling import Pacer, Worker
from tiktok_auth_service.tiktok import RetryPolicy, TikTokClient, http_client
from tiktok_auth_service.tokens import TokenService


@dataclass(frozen=True, eq=False)
class Service:
    """The use cases, over the resources `open_service` opened."""

    settings: Settings
    db: Database
    sealer: TokenSealer
    authorization: Authorization
    tokens: TokenService
    connections: Connections
    revoker: Revoker
    api_keys: ApiKeys
    key_rotation: KeyRotation
    worker: Worker

    async def database_ready(self) -> bool:
        return await database_answers(self.db.pool)


@asynccontextmanager
async def open_service(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Service]:
    """Open the database and the TikTok client, build every use case over them, and close
    both on exit."""
    # httpx logs every request URL at INFO, and advertiser/get carries the app secret in its
    # query string (TikTok's design), so that logger must stay quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    clock = clock or SystemClock()
    db = await Database.connect(
        settings.database_url.get_secret_value(),
        pool_size=settings.database_pool_size,
        pgbouncer=settings.database_pgbouncer,
    )
    try:
        async with http_client(
            settings.tiktok_timeout_seconds, f"tiktok-auth-service/{__version__}"
        ) as http:
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
            sealer = TokenSealer(settings.encryption_keys)
            refresher = AccountRefresher(settings, db, tiktok, sealer, clock)
            liveness = LivenessChecker(settings, db, tiktok, sealer, clock)
            revoker = Revoker(settings, db, tiktok, sealer, clock)
            flows: list[ConsentFlow[Any]] = [
                AdvertiserFlow(settings, db, tiktok, sealer, clock),
                AccountFlow(settings, db, tiktok, sealer, clock),
            ]
            yield Service(
                settings=settings,
                db=db,
                sealer=sealer,
                authorization=Authorization(
                    settings, db, clock, {flow.flow: flow for flow in flows}, revoker
                ),
                tokens=TokenService(settings, db, sealer, refresher, liveness, clock),
                connections=Connections(db),
                revoker=revoker,
                api_keys=ApiKeys(db, clock),
                key_rotation=KeyRotation(db, sealer),
                worker=Worker(
                    settings,
                    db,
                    refresher,
                    liveness,
                    revoker,
                    Pacer(settings.worker_qps),
                    clock,
                ),
            )
    finally:
        await db.close()
