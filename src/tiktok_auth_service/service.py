"""The composition root: every part of the service built once, wired together, closed together.

`open_service` is used by the app's lifespan and by the command line; no part builds another.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tiktok_auth_service import __version__
from tiktok_auth_service.authorization import (
    AccountFlow,
    AdvertiserFlow,
    Authorization,
    ConnectSessions,
    ConsentFlow,
)
from tiktok_auth_service.budget import RateBudget
from tiktok_auth_service.clock import Clock, SystemClock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.connections.service import Connections
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database, lost_connection
from tiktok_auth_service.gateway import Gateway
from tiktok_auth_service.grants.liveness import LivenessChecker
from tiktok_auth_service.grants.refresh import AccountRefresher
from tiktok_auth_service.grants.revocation import Revoker
from tiktok_auth_service.grants.worker import Worker
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import Flow, GrantStatus
from tiktok_auth_service.ops.api_keys import ApiKeys
from tiktok_auth_service.ops.audit import AuditLog
from tiktok_auth_service.ops.key_rotation import KeyRotation
from tiktok_auth_service.ops.webhooks import WebhookSender
from tiktok_auth_service.repository import database_answers, grant_counts
from tiktok_auth_service.tiktok import RetryPolicy, TikTokClient, http_client
from tiktok_auth_service.tiktok.forward import Forwarder, gateway_transport
from tiktok_auth_service.tokens.cache import CacheListener, TokenCache
from tiktok_auth_service.tokens.revocation import Revocations
from tiktok_auth_service.tokens.service import TokenService

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Service:
    """The use cases, over the resources `open_service` opened."""

    settings: Settings
    db: Database
    sealer: TokenSealer
    authorization: Authorization
    connect_sessions: ConnectSessions
    tokens: TokenService
    connections: Connections
    revocations: Revocations
    audit: AuditLog
    api_keys: ApiKeys
    key_rotation: KeyRotation
    worker: Worker
    webhooks: WebhookSender
    gateway: Gateway
    metrics: Metrics
    budget: RateBudget
    # Run by the app's lifespan; None when the cache is off (see Settings.token_cache_listen_url).
    cache_listener: CacheListener | None

    async def database_ready(self) -> bool:
        return await database_answers(self.db)

    def sample_pools(self) -> None:
        """Record this process's database pool connections in the metrics."""
        for pool, (in_use, idle) in self.db.pool_connections().items():
            self.metrics.db_pool(pool, in_use, idle)

    async def render_metrics(self) -> bytes:
        """The Prometheus exposition, with the grants counted now (one query; left out, and
        logged, when the database does not answer) and this process's pools sampled now."""
        grants: dict[tuple[str, str], int] | None
        try:
            grants = await grant_counts(self.db)
        except Exception as exc:
            if not lost_connection(exc):
                raise
            log.warning(
                "metrics: grants not counted, the database is unavailable (%s)",
                type(exc).__name__,
                extra={"event": "metrics_grants_unavailable", "error": type(exc).__name__},
            )
            grants = None
        else:
            zeros = {(str(flow), str(status)): 0 for flow in Flow for status in GrantStatus}
            grants = zeros | grants
        self.sample_pools()
        return self.metrics.render(grants)


@asynccontextmanager
async def open_service(
    settings: Settings,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    *,
    budget: Callable[[Database], RateBudget] | None = None,
    request_id: Callable[[], str | None] = lambda: None,
) -> AsyncIterator[Service]:
    """Open the database and the TikTok client, build every use case over them, and close
    both on exit. `metrics` defaults to this process's (`Metrics.for_process`). `budget`
    builds the app's TikTok call budget over the database (tests build one on a fake
    clock); by default it is the settings' (`RateBudget.of`). `request_id`: the id of the
    request being served, for the audit (the app's)."""
    clock = clock or SystemClock()
    metrics = metrics or Metrics.for_process()
    db = await Database.connect(
        settings.database_url.get_secret_value(),
        pool_size=settings.database_pool_size,
        pgbouncer=settings.database_pgbouncer,
        timeout_seconds=settings.database_timeout_seconds,
    )
    rate_budget = (budget or (lambda db: RateBudget.of(settings, db, metrics)))(db)
    try:
        user_agent = f"tiktok-auth-service/{__version__}"
        async with (
            http_client(settings.tiktok_timeout_seconds, user_agent) as http,
            # Receivers get their own client: a slow receiver must not hold TikTok's connections.
            http_client(settings.webhook_timeout_seconds, user_agent) as webhook_http,
            gateway_transport() as gateway_connections,
        ):
            retry = RetryPolicy(
                max_attempts=settings.tiktok_retry_attempts,
                base_delay=settings.tiktok_retry_base_delay,
                max_total=settings.tiktok_retry_budget_seconds,
            )
            tiktok = TikTokClient(
                http,
                app_id=settings.tiktok_app_id,
                app_secret=settings.tiktok_app_secret,
                api_base_url=settings.tiktok_api_base_url,
                clock=clock,
                retry=retry,
                metrics=metrics,
                budget=rate_budget,
                cool_down=settings.tiktok_cool_down_seconds,
            )
            sealer = TokenSealer(settings.encryption_keys)
            refresher = AccountRefresher(settings, db, tiktok, sealer, clock, metrics)
            liveness = LivenessChecker(settings, db, tiktok, sealer, clock, metrics)
            audit = AuditLog(
                db, clock, timedelta(days=settings.audit_retention_days), metrics, request_id
            )
            revoker = Revoker(settings, db, tiktok, sealer, clock)
            cache = TokenCache(settings.token_cache_max_mb * 2**20, metrics)
            listen_url = settings.token_cache_listen_url
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
                connect_sessions=ConnectSessions(settings, db, clock),
                tokens=TokenService(
                    settings, db, sealer, refresher, liveness, audit, clock, metrics, cache
                ),
                connections=Connections(db),
                revocations=Revocations(settings, db, revoker, audit, clock),
                audit=audit,
                api_keys=ApiKeys(db, clock),
                key_rotation=KeyRotation(db, sealer),
                worker=Worker(
                    settings,
                    db,
                    refresher,
                    liveness,
                    revoker,
                    audit,
                    rate_budget,
                    clock,
                    metrics,
                ),
                webhooks=WebhookSender(settings, db, webhook_http, clock, metrics),
                gateway=Gateway(
                    settings,
                    db,
                    sealer,
                    cache,
                    liveness,
                    rate_budget,
                    Forwarder(gateway_connections, settings.tiktok_api_base_url, user_agent),
                    audit,
                    metrics,
                    retry,
                ),
                metrics=metrics,
                budget=rate_budget,
                cache_listener=CacheListener(cache, listen_url, metrics) if listen_url else None,
            )
    finally:
        rate_budget.close()
        await db.close()
