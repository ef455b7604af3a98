"""Shared test data and doubles that need no running app: the TikTok and broker constants, a
fake clock, the log canaries, the service settings and the API-key header.

Pytest fixtures live in conftest.py; steps that drive the app or fake TikTok's answers live in
helpers.py."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tiktok_auth_service.config import Settings

TIKTOK_API = "https://tiktok.test/open_api/v1.3"
TIKTOK_AUTH = "https://tiktok.test/portal/auth"
APP_ID = "app-1234"
APP_SECRET = "app-secret-must-never-leak-0123456789"
REDIRECT_URI = "https://broker.example/callback"
FRONTEND = "https://frontend.example"
# The TikTok account that helpers.TikTokAccounts authorizes.
OPEN_ID = "-000openid0001"
KEYS = (
    "k2:"
    + base64.b64encode(b"\x02" * 32).decode()
    + ",k1:"
    + base64.b64encode(b"\x01" * 32).decode()
)


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@dataclass
class Canaries:
    """Secrets that must never appear in a log record, an exception, a metric, or a response
    that does not carry them by design (see tests/secret_scan.py)."""

    values: set[str] = field(default_factory=lambda: {APP_SECRET})

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tiktok_app_id": APP_ID,
        "tiktok_app_secret": APP_SECRET,
        "tiktok_redirect_uri": REDIRECT_URI,
        "tiktok_auth_url": TIKTOK_AUTH,
        "tiktok_api_base_url": TIKTOK_API,
        "database_url": database_url,
        "token_encryption_keys": KEYS,
        "return_to_allowed_origins": FRONTEND,
        "tiktok_retry_base_delay": 0,
        "worker_enabled": False,
        "tiktok_rate_limit_qps": 50,
        "tiktok_rate_limit_qpm": 3000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def bearer(key: str) -> dict[str, str]:
    """The headers that present an API key."""
    return {"authorization": f"Bearer {key}"}
