"""The emulator's in-memory world: apps, auth codes, tokens, tt_user authorizations, history.

Only the world lives here; how the admin API shows it is in `views.py`. All mutation happens
between awaits on one event loop, so no locks are needed.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from .calls import CallLog
from .clock import EmulatorClock, tiktok_time
from .config import (
    SANDBOX_ENDPOINT_LIMIT,
    EmulatorAccount,
    EmulatorAdvertiser,
    EmulatorApp,
    EmulatorConfig,
    EndpointLimit,
)
from .envelope import ApiError
from .faults import FaultQueues, HangingCalls
from .limits import RateLimiter

# Which consent page a code came from, and so which token endpoint accepts it.
AuthFlow = Literal["advertiser", "tt_user"]


@dataclass
class AuthCode:
    """An authorization code from a consent page, bound to what the user granted."""

    value: str
    flow: AuthFlow
    app_id: str
    redirect_uri: str
    issued_at: float
    advertiser_ids: list[str] = field(default_factory=list)
    scope: list[int] = field(default_factory=list)
    open_id: str | None = None
    account_scope: str = ""
    used_at: float | None = None


@dataclass
class LongTermToken:
    """An advertiser (Marketing API) long-term token: no expiry; dies when revoked or cancelled."""

    value: str
    app_id: str
    advertiser_ids: list[str]
    scope: list[int]
    issued_at: float
    dead_since: float | None = None
    dead_reason: str | None = None

    @property
    def alive(self) -> bool:
        """True until revoked or cancelled."""
        return self.dead_since is None


@dataclass
class UserAccessToken:
    """A tt_user access token; an authorization has one per exchange or refresh."""

    value: str
    authorization: UserAuthorization
    issued_at: float
    expires_at: float


@dataclass
class UserAuthorization:
    """One tt_user authorization (consent): its access tokens and refresh token chain.

    The chain lives until `refresh_expires_at` (a year after `granted_at` by default).
    """

    authorization_id: int
    app_id: str
    open_id: str
    scope: str
    granted_at: float
    refresh_expires_at: float
    refresh_token: str
    retired_refresh_tokens: list[str] = field(default_factory=list)
    access_tokens: list[UserAccessToken] = field(default_factory=list)
    revoked_at: float | None = None


@dataclass
class RevocationRecord:
    """A long-term token or tt_user authorization that stopped working, and why."""

    kind: Literal["advertiser_token", "tt_user_grant"]
    token: str
    app_id: str
    reason: str
    at: float


# Seeded campaigns cycle through these, so lists and reports are not all alike.
_OBJECTIVES = ("TRAFFIC", "REACH", "VIDEO_VIEWS", "WEB_CONVERSIONS", "APP_PROMOTION")


def _random_hex() -> str:
    return secrets.token_hex(20)


class EmulatorState:
    """Everything the emulator knows; `reset` returns it to the configured starting point."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = EmulatorClock(config.clock_offset)
        self.hanging = HangingCalls()
        self.faults = FaultQueues()
        self.advertisers: dict[str, EmulatorAdvertiser] = {
            adv.advertiser_id: adv for adv in config.advertisers
        }
        self.accounts: dict[str, EmulatorAccount] = {acc.open_id: acc for acc in config.accounts}
        self.reset()

    def reset(self) -> None:
        """Forget codes, tokens, authorizations, calls, faults and limiter counts; keep the config.

        Held calls are released (and answered normally), app blocks lifted, and the clock
        set back to the configured offset.
        """
        self.hanging.release()
        self.faults.clear()
        self.clock.offset = self.config.clock_offset
        self.apps: dict[str, EmulatorApp] = {
            app.app_id: app.model_copy(deep=True) for app in self.config.apps
        }
        self.codes: dict[str, AuthCode] = {}
        self.long_term_tokens: dict[str, LongTermToken] = {}
        self.user_authorizations: list[UserAuthorization] = []
        self.user_access_tokens: dict[str, UserAccessToken] = {}
        self.refresh_tokens: dict[str, UserAuthorization] = {}
        self.revocations: list[RevocationRecord] = []
        self.calls = CallLog(self.config.call_log_limit)
        self.limiter = RateLimiter(
            self.clock,
            app_limit=EndpointLimit(qps=self.config.qps, qpm=self.config.qpm, qpd=self.config.qpd),
            endpoint_limits=self.config.endpoint_limits,
            every_endpoint_limit=SANDBOX_ENDPOINT_LIMIT if self.config.sandbox else None,
            endpoint_limit_error=self.config.endpoint_limit_error,
            advertiser_qps=self.config.advertiser_qps,
        )
        self.throttle: tuple[float, int] | None = None
        self._authorization_ids = itertools.count(1)
        self._object_ids = itertools.count(1)
        self.campaigns: dict[str, list[dict[str, Any]]] = {adv: [] for adv in self.advertisers}
        self.created_campaigns: Counter[str] = Counter()
        for adv in self.advertisers.values():
            for n in range(1, self.config.campaigns_per_advertiser + 1):
                self._add_campaign(
                    adv.advertiser_id,
                    campaign_name=f"{adv.advertiser_name} campaign {n}",
                    objective_type=_OBJECTIVES[(n - 1) % len(_OBJECTIVES)],
                    budget_mode="BUDGET_MODE_DAY",
                    budget=float(50 * n),
                )

    # --- throttling ------------------------------------------------------------------------

    def throttle_code(self) -> int | None:
        """The code every API call is answered with while a throttle set by the admin API lasts."""
        if self.throttle is None:
            return None
        until, code = self.throttle
        if self.clock.now() >= until:
            self.throttle = None
            return None
        return code

    # --- Marketing API objects -------------------------------------------------------------

    def new_object_id(self) -> str:
        """A fresh id in TikTok's style for campaigns and images: 19 digits."""
        return str(1800000000000000000 + next(self._object_ids))

    def create_campaign(self, advertiser_id: str, **fields: Any) -> dict[str, Any]:
        """A campaign made by `campaign/create/`, counted for the admin API."""
        self.created_campaigns[advertiser_id] += 1
        return self._add_campaign(advertiser_id, **fields)

    def _add_campaign(
        self,
        advertiser_id: str,
        *,
        campaign_name: str,
        objective_type: str,
        budget_mode: str,
        budget: float,
    ) -> dict[str, Any]:
        now = tiktok_time(self.clock.now())
        campaign = {
            "advertiser_id": advertiser_id,
            "campaign_id": self.new_object_id(),
            "campaign_name": campaign_name,
            "campaign_type": "REGULAR_CAMPAIGN",
            "objective_type": objective_type,
            "budget_mode": budget_mode,
            "budget": budget,
            "operation_status": "ENABLE",
            "secondary_status": "CAMPAIGN_STATUS_ENABLE",
            "is_new_structure": True,
            "is_smart_performance_campaign": False,
            "create_time": now,
            "modify_time": now,
        }
        self.campaigns.setdefault(advertiser_id, []).append(campaign)
        return campaign

    # --- apps -----------------------------------------------------------------------------

    def app_for(self, app_id: str) -> EmulatorApp:
        """The app `app_id`; 40113 when it is unknown or blocked."""
        app = self.apps.get(app_id)
        if app is None or app.blocked:
            raise ApiError(40113)
        return app

    def authenticate(self, app_id: str, secret: str) -> EmulatorApp:
        """The app, if `secret` is its secret; 40113 (unknown/blocked) or 40101 otherwise."""
        app = self.app_for(app_id)
        if not secrets.compare_digest(app.secret.encode(), secret.encode()):
            raise ApiError(40101, "The secret does not match the app_id.")
        return app

    # --- authorization codes ----------------------------------------------------------------

    def issue_advertiser_code(
        self, app: EmulatorApp, redirect_uri: str, advertiser_ids: list[str], scope: list[int]
    ) -> AuthCode:
        """A fresh code for the advertiser flow."""
        code = AuthCode(
            value=_random_hex(),
            flow="advertiser",
            app_id=app.app_id,
            redirect_uri=redirect_uri,
            issued_at=self.clock.now(),
            advertiser_ids=advertiser_ids,
            scope=scope,
        )
        self.codes[code.value] = code
        return code

    def issue_account_code(
        self, app: EmulatorApp, redirect_uri: str, open_id: str, scope: str
    ) -> AuthCode:
        """A fresh code for the tt_user flow."""
        code = AuthCode(
            value=_random_hex(),
            flow="tt_user",
            app_id=app.app_id,
            redirect_uri=redirect_uri,
            issued_at=self.clock.now(),
            open_id=open_id,
            account_scope=scope,
        )
        self.codes[code.value] = code
        return code

    def redeem_code(
        self, value: str, app: EmulatorApp, flow: AuthFlow, *, redirect_uri: str | None = None
    ) -> AuthCode:
        """Check a presented code and mark it used (codes are single use).

        `redirect_uri`, when given, must equal the one the code was issued for (tt_user flow).
        """
        code = self.codes.get(value)
        if code is None:
            raise ApiError(40110)
        if code.app_id != app.app_id:
            raise ApiError(40113, "The auth_code was issued to another app.")
        if code.flow != flow:
            # TikTok's 40115 also covers "code used at the wrong endpoint".
            raise ApiError(40115, "The auth_code was issued for another endpoint.")
        if code.used_at is not None:
            raise ApiError(40110, "The auth_code has already been used.")
        now = self.clock.now()
        if now - code.issued_at >= self.config.auth_code_ttl:
            raise ApiError(self.config.expired_code_error, "The auth_code has expired.")
        if redirect_uri is not None and redirect_uri != code.redirect_uri:
            raise ApiError(40101, "The redirect_uri does not match the authorization request.")
        code.used_at = now
        return code

    # --- advertiser long-term tokens -------------------------------------------------------

    def issue_long_term_token(self, code: AuthCode) -> LongTermToken:
        """The long-term token for a redeemed advertiser code.

        With `reauthorize_returns_same_token`, a live token of the same app (the one emulated
        user then holds at most one per app) is handed out again: its advertiser list gains
        the newly selected advertisers and its scope becomes the newly approved permissions.
        """
        if self.config.reauthorize_returns_same_token:
            for token in self.long_term_tokens.values():
                if token.app_id == code.app_id and token.alive:
                    token.advertiser_ids += [
                        adv for adv in code.advertiser_ids if adv not in token.advertiser_ids
                    ]
                    token.scope = list(code.scope)
                    return token
        token = LongTermToken(
            value=_random_hex(),
            app_id=code.app_id,
            advertiser_ids=list(code.advertiser_ids),
            scope=list(code.scope),
            issued_at=self.clock.now(),
        )
        self.long_term_tokens[token.value] = token
        return token

    def live_long_term_token(self, value: str) -> LongTermToken:
        """The token `value` if it still works; 40105 otherwise."""
        token = self.long_term_tokens.get(value)
        if token is None or not token.alive:
            raise ApiError(40105)
        return token

    def kill_long_term_token(self, token: LongTermToken, reason: str) -> None:
        """Make `token` fail with 40105 from now on."""
        token.dead_since = self.clock.now()
        token.dead_reason = reason
        self.revocations.append(
            RevocationRecord(
                "advertiser_token", token.value, token.app_id, reason, token.dead_since
            )
        )

    def cancel_authorization(self, tokens: list[LongTermToken], advertiser_id: str | None) -> None:
        """The advertiser side withdraws: one advertiser from each token, or whole tokens.

        A token left with no advertiser dies, like a cancelled authorization on TikTok.
        """
        for token in tokens:
            if advertiser_id is not None and advertiser_id in token.advertiser_ids:
                token.advertiser_ids.remove(advertiser_id)
            if advertiser_id is None or not token.advertiser_ids:
                self.kill_long_term_token(token, "cancelled")

    def grant_advertiser(self, token: LongTermToken, advertiser_id: str) -> None:
        """The advertiser side adds `advertiser_id` to a live token (no-op if already there)."""
        if advertiser_id not in token.advertiser_ids:
            token.advertiser_ids.append(advertiser_id)

    # --- tt_user authorizations ------------------------------------------------------------

    def live_user_access_token(self, value: str) -> UserAccessToken:
        """The tt_user access token `value` if it works now; 40105 (unknown or revoked) or
        40102 (expired) otherwise."""
        token = self.user_access_tokens.get(value)
        if token is None or token.authorization.revoked_at is not None:
            raise ApiError(40105)
        if self.clock.now() >= token.expires_at:
            raise ApiError(40102)
        return token

    def start_user_authorization(self, code: AuthCode) -> UserAccessToken:
        """A new tt_user authorization (refresh token chain) and its first access token."""
        assert code.open_id is not None
        now = self.clock.now()
        authorization = UserAuthorization(
            authorization_id=next(self._authorization_ids),
            app_id=code.app_id,
            open_id=code.open_id,
            scope=code.account_scope,
            granted_at=now,
            refresh_expires_at=now + self.config.refresh_token_ttl,
            refresh_token=self._new_refresh_token(),
        )
        self.user_authorizations.append(authorization)
        self.refresh_tokens[authorization.refresh_token] = authorization
        return self._new_user_access_token(authorization)

    def refresh_user_authorization(self, authorization: UserAuthorization) -> UserAccessToken:
        """A new access token for `authorization`, rotating its refresh token when so configured."""
        if self.config.rotate_refresh_tokens:
            authorization.retired_refresh_tokens.append(authorization.refresh_token)
            authorization.refresh_token = self._new_refresh_token()
            self.refresh_tokens[authorization.refresh_token] = authorization
        return self._new_user_access_token(authorization)

    def revoke_user_authorization(self, authorization: UserAuthorization) -> None:
        """End the authorization: its access tokens and refresh token stop working."""
        authorization.revoked_at = self.clock.now()
        self.revocations.append(
            RevocationRecord(
                "tt_user_grant",
                authorization.refresh_token,
                authorization.app_id,
                "revoked",
                authorization.revoked_at,
            )
        )

    def refresh_seconds_left(self, authorization: UserAuthorization) -> int:
        """Seconds until the refresh token expires, counted from the original consent."""
        return max(0, math.ceil(authorization.refresh_expires_at - self.clock.now()))

    def _new_refresh_token(self) -> str:
        return "rft." + secrets.token_urlsafe(30)

    def _new_user_access_token(self, authorization: UserAuthorization) -> UserAccessToken:
        now = self.clock.now()
        token = UserAccessToken(
            value="act." + secrets.token_urlsafe(30),
            authorization=authorization,
            issued_at=now,
            expires_at=now + self.config.access_token_ttl,
        )
        authorization.access_tokens.append(token)
        self.user_access_tokens[token.value] = token
        return token
