"""Settings, read once from the environment (and `.env`) by the entry points, never at import."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urljoin, urlsplit

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# TikTok-account access tokens live 24 h (tt_user `expires_in`).
ACCOUNT_TOKEN_LIFETIME_SECONDS = 86400
# prometheus-client's own variable, read when the library is first imported: the directory
# of its multiprocess mode (metrics.py), which `serve` sets before that import (cli.py).
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Grants `rotate-keys` re-encrypts per transaction unless told otherwise (ops/key_rotation.py);
# here so that the command line has it without importing the database layer.
ROTATION_BATCH_SIZE = 500

# TikTok's sandbox: its own host (tokens look the same; only the host tells them apart), and
# 1 QPS / 30 QPM for each endpoint on its own, "*" standing for every endpoint (contract §11,
# §8.1).
SANDBOX_API_BASE_URL = "https://sandbox-ads.tiktok.com/open_api/v1.3"
SANDBOX_ENDPOINT_LIMITS: dict[str, tuple[int, int]] = {"*": (1, 30)}

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
# `json`: one JSON object per line (serve, worker); `text`: for people (dev).
LogFormat = Literal["json", "text"]


class ConfigError(Exception):
    """A required setting is missing or malformed; the message names the variable."""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) origin")
    return f"{parts.scheme}://{parts.netloc}".lower()


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class LoggingSettings(BaseSettings):
    """How the process logs: the part of the settings `dev` and `emulator` read too (from the
    environment only), validated by the same rules."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    log_level: LogLevel = "INFO"
    log_format: LogFormat = "json"

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_name(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class DevLoggingSettings(LoggingSettings):
    """The development tools log for people by default."""

    log_format: LogFormat = "text"


class Settings(LoggingSettings):
    tiktok_app_id: str = Field(min_length=1)
    tiktok_app_secret: SecretStr
    tiktok_redirect_uri: str
    tiktok_auth_url: str = "https://business-api.tiktok.com/portal/auth"
    tiktok_account_auth_url: str = "https://www.tiktok.com/v2/auth/authorize/"
    tiktok_account_scopes: Annotated[list[str], NoDecode] = ["user.info.basic"]
    tiktok_api_base_url: str = "https://business-api.tiktok.com/open_api/v1.3"
    # TikTok's sandbox: its host unless TIKTOK_API_BASE_URL is given, its per-endpoint limits,
    # and a liveness check it answers (it has no oauth2/advertiser/get/).
    tiktok_sandbox: bool = False
    tiktok_timeout_seconds: float = Field(default=10.0, gt=0)
    tiktok_retry_attempts: int = Field(default=4, ge=1)
    tiktok_retry_base_delay: float = Field(default=0.5, ge=0)
    tiktok_retry_budget_seconds: float = Field(default=20.0, ge=0)
    # The app's tier (contract §8.1), shared by every caller, replica and the worker.
    tiktok_rate_limit_qps: float = Field(default=10, gt=0)
    tiktok_rate_limit_qpm: float = Field(default=600, gt=0)
    # How long every replica pauses when TikTok throttles the app (40100/40133), before the
    # budget doubles it for repeats; 0 turns cool-downs off.
    tiktok_cool_down_seconds: float = Field(default=1.0, ge=0)
    # Endpoints with lower limits of their own, as calls a second: "path=QPS" or
    # "path=QPS/QPM", comma-separated; "*" gives every endpoint its own (the sandbox's).
    tiktok_rate_limit_endpoints: Annotated[dict[str, float], NoDecode] = {
        "report/task/create/": 2.0
    }

    # The gateway (/proxy/open_api/v1.3/...): the largest request body it takes (held whole:
    # the subject may be a form field after the file, and a repeat sends it again), the
    # caller's deadline for the whole call (retries included; X-Broker-Timeout shortens it),
    # and how often a grant's token may be checked because a proxied call was refused
    # 40104/40105.
    gateway_max_request_bytes: int = Field(default=64 * 2**20, ge=1024)
    gateway_timeout_seconds: float = Field(default=30.0, gt=0)
    gateway_dead_token_checks_per_minute: int = Field(default=2, ge=1)

    database_url: SecretStr
    database_pool_size: int = Field(default=10, ge=1)
    # The longest one wait on the database may take (a connection, a pooled one, a statement).
    database_timeout_seconds: float = Field(default=5.0, gt=0)
    # DATABASE_URL is PgBouncer in transaction pooling mode: no prepared-statement caches.
    database_pgbouncer: bool = False
    # The token cache (tokens/cache.py) LISTENs on a connection of its own, to DATABASE_URL.
    # LISTEN needs a session, which PgBouncer in transaction pooling mode does not keep: there,
    # give a direct URL here, or the cache stays off and every read asks the database.
    database_listen_url: SecretStr | None = None
    token_cache_enabled: bool = True
    # The memory each server process's token cache may take (tokens/cache.py counts it).
    token_cache_max_mb: int = Field(default=512, ge=1)

    token_encryption_keys: SecretStr
    return_to_allowed_origins: Annotated[list[str], NoDecode] = []
    state_ttl_seconds: int = Field(default=600, gt=0)
    connect_sessions_required: bool = True
    # The largest request body taken (the largest today is a connect session's JSON).
    max_body_bytes: int = Field(default=65_536, ge=1024)
    # `serve` closes a connection that has not sent a whole request head this long after it
    # opened or after its last answer (granian's HTTP/1 header read timeout, at most 60 s).
    header_read_timeout_seconds: int = Field(default=10, ge=1, le=60)
    # The connections one server process holds at once; lowered to fit its open file limit.
    max_connections: int = Field(default=10_000, ge=1)
    # Peers whose X-Forwarded-For and X-Forwarded-Proto are believed: comma-separated
    # addresses or networks, or "*" (the proxy in front; uvicorn's variable and default).
    forwarded_allow_ips: str = "127.0.0.1"

    refresh_leeway_seconds: int = Field(default=300, ge=0)
    refresh_wait_seconds: float = Field(default=2.0, ge=0)
    refresh_expiry_warning_days: int = Field(default=14, ge=0)
    worker_enabled: bool = True
    worker_concurrency: int = Field(default=4, ge=1)
    worker_refresh_ahead_seconds: int = Field(default=600, ge=0)
    worker_poll_seconds: float = Field(default=30.0, gt=0)
    liveness_interval_seconds: int = Field(default=21600, gt=0)
    audit_retention_days: int = Field(default=90, gt=0)
    webhook_url: Annotated[list[str], NoDecode] = []
    webhook_secret: SecretStr | None = None
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # At most the connections the receivers' HTTP client keeps (tiktok.http_client).
    webhook_concurrency: int = Field(default=4, ge=1, le=50)

    @model_validator(mode="before")
    @classmethod
    def _sandbox_host(cls, data: Any) -> Any:
        # Before validation, as the host is a plain setting read everywhere; the flag is still
        # the raw value here, so it is read by the rules it is validated with.
        if isinstance(data, dict) and not data.get("tiktok_api_base_url"):
            try:
                sandbox = TypeAdapter(bool).validate_python(data.get("tiktok_sandbox", False))
            except ValidationError:
                return data  # reported by the field's own validation
            if sandbox:
                return {**data, "tiktok_api_base_url": SANDBOX_API_BASE_URL}
        return data

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Settings:
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError("WEBHOOK_URL needs WEBHOOK_SECRET (whsec_...) to sign deliveries")
        return self

    @model_validator(mode="after")
    def _refresh_window_fits(self) -> Settings:
        ahead = self.refresh_leeway_seconds + self.worker_refresh_ahead_seconds
        if ahead >= ACCOUNT_TOKEN_LIFETIME_SECONDS:
            raise ValueError(
                f"REFRESH_LEEWAY_SECONDS + WORKER_REFRESH_AHEAD_SECONDS ({ahead}) must be less "
                f"than TikTok's account token lifetime ({ACCOUNT_TOKEN_LIFETIME_SECONDS} s)"
            )
        return self

    @field_validator(
        "tiktok_redirect_uri", "tiktok_auth_url", "tiktok_account_auth_url", "tiktok_api_base_url"
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        _origin(value)
        return value

    @field_validator("tiktok_account_scopes", mode="before")
    @classmethod
    def _scopes(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("tiktok_rate_limit_endpoints", mode="before")
    @classmethod
    def _endpoint_limits(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        limits: dict[str, float] = {}
        for item in _split_list(value):
            path, _, rates = item.partition("=")
            path = path.strip()
            if not (path == "*" or (path.endswith("/") and not path.startswith("/"))):
                raise ValueError(
                    f"{path!r}: an endpoint is TikTok's path below /open_api/v1.3/, ending in "
                    "a slash (report/task/create/), or *"
                )
            qps, _, qpm = rates.partition("/")
            try:
                per_second = float(qps) if not qpm else min(float(qps), float(qpm) / 60)
            except ValueError:
                raise ValueError(f"{item!r}: expected path=QPS or path=QPS/QPM") from None
            if not per_second > 0:
                raise ValueError(f"{item!r}: a limit is more than 0 calls")
            limits[path] = per_second
        return limits

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _webhook_urls(cls, value: Any) -> Any:
        urls = _split_list(value)
        for url in urls:
            _origin(url)
        return urls

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Standard Webhooks secrets: "whsec_" and the base64 of the signing key.
        if value is not None:
            raw = value.get_secret_value()
            try:
                key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not raw.startswith("whsec_") or len(key) < 24:
                raise ValueError("must be whsec_ followed by the base64 of at least 24 bytes")
        return value

    @field_validator("return_to_allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return [_origin(item) for item in _split_list(value)]

    @field_validator("database_listen_url", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("database_url", "database_listen_url")
    @classmethod
    def _asyncpg_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("postgresql+asyncpg://"):
            raise ValueError("must start with postgresql+asyncpg://")
        return value

    @field_validator("token_encryption_keys")
    @classmethod
    def _keys(cls, value: SecretStr) -> SecretStr:
        parse_encryption_keys(value.get_secret_value())
        return value

    @property
    def encryption_keys(self) -> dict[str, bytes]:
        """Key id -> 32-byte key; the first entry is the one that encrypts."""
        return parse_encryption_keys(self.token_encryption_keys.get_secret_value())

    @property
    def token_cache_listen_url(self) -> str | None:
        """Where the token cache listens; None: the cache stays off."""
        if not self.token_cache_enabled:
            return None
        if self.database_listen_url is not None:
            return self.database_listen_url.get_secret_value()
        return None if self.database_pgbouncer else self.database_url.get_secret_value()

    @property
    def sandbox_endpoint_limits(self) -> dict[str, tuple[int, int]]:
        """(QPS, QPM) per TikTok endpoint (the path below /open_api/v1.3/) that the sandbox
        imposes, `"*"` for every endpoint; empty outside the sandbox."""
        return dict(SANDBOX_ENDPOINT_LIMITS) if self.tiktok_sandbox else {}

    @property
    def refresh_ahead(self) -> timedelta:
        """How long before expiry the worker refreshes an account token."""
        return timedelta(seconds=self.refresh_leeway_seconds + self.worker_refresh_ahead_seconds)

    @property
    def tiktok_call_seconds(self) -> float:
        """The longest one TikTok call may take: every attempt at its timeout, and the whole
        backoff budget between them."""
        attempts = self.tiktok_retry_attempts * self.tiktok_timeout_seconds
        return attempts + self.tiktok_retry_budget_seconds

    @property
    def lease_seconds(self) -> float:
        """How long one process may own a TikTok conversation about a grant: one call with
        its retries, plus time to write the answer back through a database blip."""
        return self.tiktok_call_seconds + 30.0

    @property
    def webhook_lease_seconds(self) -> float:
        """How long one process owns a webhook delivery: its deadline, plus time to record
        the outcome through a database blip."""
        return self.webhook_timeout_seconds + 30.0

    def public_url(self, path: str) -> str:
        """A URL of this service, next to the public `/callback` (TIKTOK_REDIRECT_URI)."""
        return urljoin(self.tiktok_redirect_uri.rstrip("/"), path)

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.tiktok_redirect_uri).scheme.lower() == "https"


def parse_encryption_keys(raw: str) -> dict[str, bytes]:
    """Parse `id1:base64key,id2:base64key`; every key must decode to 32 bytes (AES-256)."""
    keys: dict[str, bytes] = {}
    for item in _split_list(raw):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise ValueError("each entry must look like <key id>:<base64 32-byte key>")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not valid base64") from None
        if len(key) != 32:
            raise ValueError(f"key {key_id!r} must be 32 bytes, got {len(key)}")
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} appears twice")
        keys[key_id] = key
    if not keys:
        raise ValueError("at least one key is required")
    return keys


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, turning validation errors into one readable line."""
    return _load(Settings, **overrides)


def load_dev_logging_settings() -> DevLoggingSettings:
    """LOG_LEVEL and LOG_FORMAT for `dev` and `emulator`, from the environment only (a `.env`
    there is meant for the service), with the errors of `load_settings`."""
    return _load(DevLoggingSettings, _env_file=None)


_S = TypeVar("_S", bound=BaseSettings)


def _load(kind: type[_S], **overrides: Any) -> _S:
    try:
        return kind(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            reason = "is required but not set" if error["type"] == "missing" else error["msg"]
            if error["loc"]:
                problems.append(f"{str(error['loc'][0]).upper()} {reason}")
            else:
                problems.append(reason.removeprefix("Value error, "))
        raise ConfigError("configuration error: " + "; ".join(problems)) from None
