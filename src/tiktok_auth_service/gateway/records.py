"""What one proxied call leaves behind once it has ended: its audit row, its metrics and its
one log line, written from the CallRecord the call filled in as it went. Never the caller's
key nor the token: the record holds neither."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.ops.audit import AuditLog
from tiktok_auth_service.tiktok.forward import Forwarded
from tiktok_auth_service.tokens.reads import Caller

log = logging.getLogger(__name__)

# Endpoint label of calls whose endpoint a metric must not learn (refused before the key was
# known, or a path that is no endpoint).
OTHER_ENDPOINT = "other"


@dataclass(eq=False)
class CallRecord:
    """What one call leaves behind, filled in as it goes."""

    method: str
    started: float  # time.perf_counter()
    caller: Caller
    endpoint: str | None = None
    subjects: str = ""
    attempts: int = 0
    status: int | None = None
    tiktok_request_id: str | None = None


def code_label(forwarded: Forwarded) -> str:
    """The outcome of an answer: TikTok's code, or `http_<status>` when the body showed none."""
    if forwarded.code is not None:
        return str(forwarded.code)
    return f"http_{forwarded.status}"


def finish(record: CallRecord, outcome: str, audit: AuditLog, metrics: Metrics) -> None:
    """The call's audit record, metrics and log line."""
    elapsed = time.perf_counter() - record.started
    duration_ms = round(elapsed * 1000, 2)
    endpoint = record.endpoint if record.caller.name else None
    label = endpoint or OTHER_ENDPOINT
    metrics.gateway_call(label, outcome, elapsed)
    audit.record(
        f"proxy {record.method} {label}",
        record.subjects,
        record.caller.name,
        outcome,
        tiktok_request_id=record.tiktok_request_id,
        duration_ms=duration_ms,
    )
    log.info(
        "gateway %s %s %s code=%s request_id=%s attempts=%d %.1fms%s",
        record.method,
        label,
        record.subjects or "-",
        outcome,
        record.tiktok_request_id,
        record.attempts,
        elapsed * 1000,
        f" key={record.caller.name}" if record.caller.name else "",
        extra={
            "event": "gateway_call",
            "method": record.method,
            "endpoint": label,
            "subject": record.subjects,
            "code": outcome,
            "status": record.status,
            "tiktok_request_id": record.tiktok_request_id,
            "attempts": record.attempts,
            "duration_ms": duration_ms,
            "api_key_name": record.caller.name,
        },
    )
