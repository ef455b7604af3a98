"""Telling the product when a connection changes: signed webhooks (Standard Webhooks 1.0) from
an outbox.

`emit` adds the event to the outbox in the caller's transaction, so an event exists exactly
when the change that causes it was committed. The worker delivers it at least once to every
WEBHOOK_URL, in order per subject and receiver (a later event waits until the earlier one is
delivered or given up), retrying network errors and non-2xx answers with exponential backoff
from WEBHOOK_RETRY_BASE_SECONDS for up to a day, then marking it failed.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models import Grant, WebhookDelivery
from tiktok_auth_service.repository import Repository

log = logging.getLogger(__name__)

GIVE_UP_AFTER = timedelta(hours=24)
BACKOFF_CAP = timedelta(hours=1)


def emit(
    repo: Repository, settings: Settings, now: datetime, event_type: str, grant: Grant, **data: Any
) -> None:
    """Put `event_type` about `grant` in the outbox, in the caller's transaction. The body
    names the connection (never a token); `data` adds event-specific fields."""
    if not settings.webhook_url:
        return
    subject = grant.open_id or str(grant.id)
    body = {
        "type": event_type,
        "timestamp": now.isoformat(),
        "data": {
            "subject": subject,
            "grant_id": str(grant.id),
            "flow": grant.flow.value,
            "status": grant.status.value,
            "advertiser_ids": list(grant.advertiser_ids),
            "connected_by": grant.connected_by,
            "end_user": grant.end_user,
            **data,
        },
    }
    event_id = "msg_" + secrets.token_urlsafe(18)
    payload = orjson.dumps(body).decode()
    for url in settings.webhook_url:
        repo.session.add(
            WebhookDelivery(
                event_id=event_id,
                url=url,
                subject=subject,
                event_type=event_type,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
            )
        )


@dataclass(eq=False)
class WebhookSender:
    """Delivers what the outbox holds (run by the worker)."""

    settings: Settings
    db: Database
    http: httpx.AsyncClient
    clock: Clock
    metrics: Metrics

    async def deliver_due(self, limit: int = 20) -> int:
        """Deliver the deliveries due now (each the oldest pending of its subject and
        receiver); returns how many were attempted."""
        if self.settings.webhook_secret is None:
            return 0
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            due = await repo.claim_deliveries(
                now, now + timedelta(seconds=self.settings.lease_seconds), limit
            )
            self.metrics.webhook_outbox_backlog.set(await repo.outbox_backlog())
        signer = Webhook(self.settings.webhook_secret.get_secret_value())
        for delivery in due:
            await self._deliver(signer, delivery)
        return len(due)

    async def _deliver(self, signer: Webhook, delivery: WebhookDelivery) -> None:
        # Real time, not the service clock: receivers check the signature's timestamp against
        # their own clock to refuse replays.
        sent_at = datetime.now(UTC)
        headers = {
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signer.sign(delivery.event_id, sent_at, delivery.payload),
            "content-type": "application/json",
        }
        try:
            response = await self.http.post(
                delivery.url, content=delivery.payload.encode(), headers=headers
            )
            error = None if response.is_success else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            row = await session.get(WebhookDelivery, delivery.seq, with_for_update=True)
            assert row is not None
            row.attempts += 1
            row.lease_until = None
            if error is None:
                row.status, row.delivered_at, row.last_error = "delivered", now, None
            elif now - row.created_at >= GIVE_UP_AFTER:
                row.status, row.last_error = "failed", error
            else:
                backoff = timedelta(
                    seconds=self.settings.webhook_retry_base_seconds * 2 ** (row.attempts - 1)
                )
                row.next_attempt_at, row.last_error = now + min(backoff, BACKOFF_CAP), error
        outcome = "delivered" if error is None else row.status
        self.metrics.webhook_deliveries.labels(
            "retrying" if outcome == "pending" else outcome
        ).inc()
        log.info(
            "webhook %s %s to %s: %s (attempt %d)",
            delivery.event_type,
            delivery.event_id,
            # Host only: a receiver's URL may carry credentials (user:pass@, a query token).
            urlsplit(delivery.url).hostname,
            outcome if error is None else f"{outcome}, {error}",
            row.attempts,
        )
