"""Settings of the TikTok emulator: registered apps, advertisers, accounts and behaviour switches.

Every switch covers a point where TikTok's real behaviour is unknown (marked [Inf] in
`tiktok-api-contract.md`), so a client can be tested against each plausible variant.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmulatorApp(BaseModel):
    """A developer app registered on the TikTok for Business portal."""

    app_id: str = Field(min_length=1)
    secret: str = Field(min_length=1)
    # TikTok's portal accepts at most 10 "Advertiser redirect URLs" per app.
    redirect_uris: list[str] = Field(max_length=10)
    account_redirect_uri: str | None = None
    scopes: list[int]
    blocked: bool = False


class EmulatorAdvertiser(BaseModel):
    """An ad account the emulated user can grant to apps."""

    advertiser_id: str = Field(pattern=r"^[0-9]+$")
    advertiser_name: str


class EmulatorAccount(BaseModel):
    """A TikTok account the emulated user can log in with on the tt_user consent page."""

    open_id: str = Field(min_length=1)
    display_name: str


class EndpointLimit(BaseModel):
    """Calls admitted per second, minute and UTC day (0: that window is unlimited)."""

    model_config = ConfigDict(extra="forbid")

    qps: int = Field(default=0, ge=0)
    qpm: int = Field(default=0, ge=0)
    qpd: int = Field(default=0, ge=0)


# TikTok's sandbox limits each endpoint on its own (contract §8.1).
SANDBOX_ENDPOINT_LIMIT = EndpointLimit(qps=1, qpm=30, qpd=1000)


def _default_endpoint_limits() -> dict[str, EndpointLimit]:
    # TikTok caps this endpoint below every tier (contract §13).
    return {"report/task/create/": EndpointLimit(qps=2)}


def _default_apps() -> list[EmulatorApp]:
    return [
        EmulatorApp(
            app_id="emulator-app",
            secret="emulator-secret",  # noqa: S106 - a well-known test credential
            redirect_uris=["http://127.0.0.1:8000/callback", "http://localhost:8000/callback"],
            account_redirect_uri="http://127.0.0.1:8000/callback",
            scopes=[4, 100, 200, 300],
        )
    ]


def _default_advertisers() -> list[EmulatorAdvertiser]:
    return [
        EmulatorAdvertiser(advertiser_id="7100000000000000001", advertiser_name="Acme Shoes"),
        EmulatorAdvertiser(advertiser_id="7100000000000000002", advertiser_name="Bluebird Coffee"),
        EmulatorAdvertiser(advertiser_id="7100000000000000003", advertiser_name="Cobalt Bikes"),
    ]


def _default_accounts() -> list[EmulatorAccount]:
    return [EmulatorAccount(open_id="-000emulatoropenid0001", display_name="Emulator Creator")]


class EmulatorConfig(BaseSettings):
    """Everything the emulator can be told; read from `EMULATOR_*` environment variables.

    Lists are given as JSON, e.g. `EMULATOR_APPS='[{"app_id": "a", ...}]'`. A limit of 0
    (`qps`, `qpm`, `qpd`, `advertiser_qps`) switches that limit off. `endpoint_limits` maps an
    endpoint (the path after `/open_api/v1.3/`) to limits of its own, counted per app besides
    the app's tier (`qps`, `qpm`, `qpd`); beyond them the answer is `endpoint_limit_error`.
    With `sandbox`, every endpoint without its own entry is limited to 1 QPS, 30 QPM and
    1000 QPD, as in TikTok's sandbox.
    """

    model_config = SettingsConfigDict(env_prefix="EMULATOR_", extra="forbid")

    apps: list[EmulatorApp] = Field(default_factory=_default_apps, min_length=1)
    advertisers: list[EmulatorAdvertiser] = Field(default_factory=_default_advertisers)
    accounts: list[EmulatorAccount] = Field(default_factory=_default_accounts, min_length=1)

    auth_code_ttl: int = Field(default=3600, gt=0)
    access_token_ttl: int = Field(default=86400, gt=0)
    refresh_token_ttl: int = Field(default=31536000, gt=0)
    rotate_refresh_tokens: bool = True
    reauthorize_returns_same_token: bool = False
    expired_code_error: int = 40110
    outside_grant_error: int = 40001
    deny_mode: Literal["redirect", "no_redirect"] = "redirect"
    revoke_data: Literal["empty", "app"] = "empty"
    refresh_endpoint_mode: Literal["envelope", "404"] = "envelope"
    sandbox: bool = False

    qps: int = Field(default=10, ge=0)
    qpm: int = Field(default=600, ge=0)
    qpd: int = Field(default=864000, ge=0)
    advertiser_qps: int | None = Field(default=None, ge=0)
    endpoint_limits: dict[str, EndpointLimit] = Field(default_factory=_default_endpoint_limits)
    endpoint_limit_error: int = 40100

    campaigns_per_advertiser: int = Field(default=3, ge=0)

    clock_offset: float = 0.0
    call_log_limit: int = Field(default=10000, gt=0)

    @classmethod
    def from_env(cls) -> Self:
        """Build the configuration from `EMULATOR_*` environment variables (and defaults)."""
        return cls()

    @field_validator("expired_code_error")
    @classmethod
    def _expired_code_error_is_known(cls, value: int) -> int:
        if value not in (40110, 40115):
            raise ValueError("expired_code_error must be 40110 or 40115")
        return value

    @field_validator("outside_grant_error")
    @classmethod
    def _outside_grant_error_is_known(cls, value: int) -> int:
        if value not in (40106, 40001):
            raise ValueError("outside_grant_error must be 40106 or 40001")
        return value

    @field_validator("endpoint_limit_error")
    @classmethod
    def _endpoint_limit_error_is_known(cls, value: int) -> int:
        # Which of the two TikTok answers for an endpoint's own limit is not known [Inf].
        if value not in (40100, 40016):
            raise ValueError("endpoint_limit_error must be 40100 or 40016")
        return value

    @model_validator(mode="after")
    def _ids_are_unique(self) -> Self:
        for label, ids in (
            ("app_id", [app.app_id for app in self.apps]),
            ("advertiser_id", [adv.advertiser_id for adv in self.advertisers]),
            ("open_id", [account.open_id for account in self.accounts]),
        ):
            if len(set(ids)) != len(ids):
                raise ValueError(f"duplicate {label} in emulator configuration")
        return self
