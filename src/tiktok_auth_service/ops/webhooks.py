"""Telling the product when a connection changes: signed webhooks (Standard Webhooks 1.0) from
an outbox.

`emit` adds the event to the outbox in the caller's transaction, so an event exists exactly
when the change that causes it was committed. `WebhookSender` delivers it at least once to every
WEBHOOK_URL, in order per subject and receiver (a later event waits until the earlier one is
delivered or given up), retrying network errors, non-2xx answers and attempts cut off at
WEBHOOK_TIMEOUT_SECONDS with exponential backoff from WEBHOOK_RETRY_BASE_SECONDS for up to a
day, then marking it failed. It runs beside the worker, not inside its pass: a receiver that
answers slowly holds one of WEBHOOK_CONCURRENCY delivery slots until its deadline, and delays
no refresh, check or revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from tiktok_auth_service.backoff import Backoff
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import Grant
from tiktok_auth_service.models.outbox import WebhookDelivery
from tiktok_auth_service.repository import Repository, transaction

log = logging.getLogger(__name__)

GIVE_UP_AFTER = timedelta(hours=24)
BACKOFF_CAP = timedelta(hours=1)
# Only the status of a receiver's answer counts. A body this small is read whole, so that the
# connection can carry the next delivery; a larger one is not worth reading.
ANSWER_BYTES = 4096


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
            "tags": grant.tags,
            **data,
        },
    }
    event_id = "msg_" + secrets.token_urlsafe(18)
    payload = orjson.dumps(body).decode()
    repo.enqueue(
        WebhookDelivery(
            event_id=event_id,
            url=url,
            subject=subject,
            event_type=event_type,
            payload=payload,
            created_at=now,
            next_attempt_at=now,
        )
        for url in settings.webhook_url
    )


@dataclass(eq=False)
class WebhookSender:
    """Delivers what the outbox holds, in a loop of its own started beside the worker."""

    settings: Settings
    db: Database
    http: httpx.AsyncClient
    clock: Clock
    metrics: Metrics

    async def run(self, stop: asyncio.Event) -> None:
        """Drain, then wait for the next poll (WORKER_POLL_SECONDS) or `stop`, until `stop` is
        set. Deliveries under way then are finished, each within its deadline."""
        while not stop.is_set():
            try:
                await self.drain(stop)
            except Exception:
                log.exception("webhook delivery failed; trying again at the next poll")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.worker_poll_seconds)

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Deliver what is due, up to WEBHOOK_CONCURRENCY at once, claiming more whenever one
        ends (it may have let the next event of its subject go), until none is due or `stop`
        is set and none is under way; returns how many attempts were made."""
        if self.settings.webhook_secret is None:
            return 0
        signer = Webhook(self.settings.webhook_secret.get_secret_value())
        attempted = 0
        under_way: set[asyncio.Task[None]] = set()
        try:
            while True:
                free = self.settings.webhook_concurrency - len(under_way)
                if free and (stop is None or not stop.is_set()):
                    for delivery in await self._claim(free):
                        under_way.add(asyncio.create_task(self._deliver(signer, delivery)))
                        attempted += 1
                if not under_way:
                    return attempted
                _, under_way = await asyncio.wait(under_way, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A failed claim leaves the attempts under way to finish and record their outcome.
            await asyncio.gather(*under_way)

    async def _claim(self, limit: int) -> list[WebhookDelivery]:
        """Lease up to `limit` due deliveries, each the oldest pending one of its subject and
        receiver (so one subject's events never go out concurrently)."""
        now = self.clock.now()
        async with transaction(self.db) as repo:
            due = await repo.claim_deliveries(
                now, now + timedelta(seconds=self.settings.webhook_lease_seconds), limit
            )
            self.metrics.webhook_outbox_backlog.set(await repo.outbox_backlog())
        return due

    async def _deliver(self, signer: Webhook, delivery: WebhookDelivery) -> None:
        # Never raises: the other deliveries under way go on. Unrecorded, the attempt is made
        # again once its lease runs out.
        try:
            error = await self._post(signer, delivery)
            await self._record(delivery, error)
        except Exception:
            log.exception("webhook %s: its attempt was not recorded", delivery.event_id)

    async def _post(self, signer: Webhook, delivery: WebhookDelivery) -> str | None:
        """Send the delivery; None when the receiver answered 2xx within the deadline, else
        what went wrong."""
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
            # One deadline for the whole exchange: httpx's own timeouts start again with every
            # byte, so a receiver dripping its answer would never reach them.
            async with (
                asyncio.timeout(self.settings.webhook_timeout_seconds),
                self.http.stream(
                    "POST", delivery.url, content=delivery.payload.encode(), headers=headers
                ) as response,
            ):
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= ANSWER_BYTES:
                        break
        except TimeoutError:
            return "timeout"
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if response.is_success else f"HTTP {response.status_code}"

    async def _record(self, delivery: WebhookDelivery, error: str | None) -> None:
        now = self.clock.now()
        async with transaction(self.db) as repo:
            row = await repo.lock_delivery(delivery.seq)
            assert row is not None
            row.attempts += 1
            row.lease_until = None
            if error is None:
                row.status, row.delivered_at, row.last_error = "delivered", now, None
            elif now - row.created_at >= GIVE_UP_AFTER:
                row.status, row.last_error = "failed", error
            else:
                backoff = Backoff(
                    self.settings.webhook_retry_base_seconds, BACKOFF_CAP.total_seconds()
                )
                wait = timedelta(seconds=backoff.delay(row.attempts))
                row.next_attempt_at, row.last_error = now + wait, error
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
