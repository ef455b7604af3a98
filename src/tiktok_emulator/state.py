"""The emulator's in-memory world: apps, auth codes, tokens, tt_user grants and their history.

All mutation happens between awaits on one event loop, so no locks are needed.
"""

from __future__ import annotations

import itertools
import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from .calls import CallLog
from .clock import EmulatorClock, isoformat
from .config import EmulatorAccount, EmulatorAdvertiser, EmulatorApp, EmulatorConfig
from .envelope import TikTokError
from .faults import FaultQueues, HangingCalls
from .limits import RateLimiter

Flow = Literal["advertiser", "tt_user"]


@dataclass
class AuthCode:
    """An authorization code from a consent page, bound to what the user granted."""

    value: str
    flow: Flow
    app_id: str
    redirect_uri: str
    issued_at: float
    advertiser_ids: list[str] = field(default_factory=list)
    scope: list[int] = field(default_factory=list)
    open_id: str | None = None
    account_scope: str = ""
    used_at: float | None = None


@dataclass
class AdvertiserToken:
    """A Marketing API long-term token: no expiry, dies only by revocation or cancellation."""

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
class AccountToken:
    """A tt_user access token; many can exist per grant (one per exchange or refresh)."""

    value: str
    grant: AccountGrant
    issued_at: float
    expires_at: float


@dataclass
class AccountGrant:
    """One tt_user authorization: its refresh token chain lives until a year after `granted_at`."""

    grant_id: int
    app_id: str
    open_id: str
    scope: str
    granted_at: float
    refresh_expires_at: float
    refresh_token: str
    retired_refresh_tokens: list[str] = field(default_factory=list)
    access_tokens: list[AccountToken] = field(default_factory=list)
    revoked_at: float | None = None


@dataclass
class Revocation:
    """Something that stopped working, and why."""

    kind: Literal["advertiser_token", "tt_user_grant"]
    token: str
    app_id: str
    reason: str
    at: float


def advertiser_token_view(token: AdvertiserToken) -> dict[str, Any]:
    """A long-term token as JSON-ready data for the admin API."""
    return {
        "access_token": token.value,
        "app_id": token.app_id,
        "advertiser_ids": token.advertiser_ids,
        "scope": token.scope,
        "issued_at": token.issued_at,
        "status": "active" if token.alive else token.dead_reason,
    }


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
        """Forget codes, tokens, grants, calls, faults and limiter counters; keep the config.

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
        self.advertiser_tokens: dict[str, AdvertiserToken] = {}
        self.account_grants: list[AccountGrant] = []
        self.account_tokens: dict[str, AccountToken] = {}
        self.refresh_tokens: dict[str, AccountGrant] = {}
        self.revocations: list[Revocation] = []
        self.calls = CallLog(self.config.call_log_limit)
        self.limiter = RateLimiter(
            self.clock,
            qps=self.config.qps,
            qpm=self.config.qpm,
            qpd=self.config.qpd,
            advertiser_qps=self.config.advertiser_qps,
        )
        self._grant_ids = itertools.count(1)

    # --- apps -----------------------------------------------------------------------------

    def app_for(self, app_id: str) -> EmulatorApp:
        """The app `app_id`; 40113 when it is unknown or blocked."""
        app = self.apps.get(app_id)
        if app is None or app.blocked:
            raise TikTokError(40113)
        return app

    def authenticate(self, app_id: str, secret: str) -> EmulatorApp:
        """The app, if `secret` is its secret; 40113 (unknown/blocked) or 40101 otherwise."""
        app = self.app_for(app_id)
        if not secrets.compare_digest(app.secret.encode(), secret.encode()):
            raise TikTokError(40101, "The secret does not match the app_id.")
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
        self, value: str, app: EmulatorApp, flow: Flow, *, redirect_uri: str | None = None
    ) -> AuthCode:
        """Check a presented code and mark it used (codes are single use).

        `redirect_uri`, when given, must equal the one the code was issued for (tt_user flow).
        """
        code = self.codes.get(value)
        if code is None:
            raise TikTokError(40110)
        if code.app_id != app.app_id:
            raise TikTokError(40113, "The auth_code was issued to another app.")
        if code.flow != flow:
            # TikTok's 40115 also covers "code used at the wrong endpoint".
            raise TikTokError(40115, "The auth_code was issued for another endpoint.")
        if code.used_at is not None:
            raise TikTokError(40110, "The auth_code has already been used.")
        now = self.clock.now()
        if now - code.issued_at >= self.config.auth_code_ttl:
            raise TikTokError(self.config.expired_code_error, "The auth_code has expired.")
        if redirect_uri is not None and redirect_uri != code.redirect_uri:
            raise TikTokError(40101, "The redirect_uri does not match the authorization request.")
        code.used_at = now
        return code

    # --- advertiser tokens ------------------------------------------------------------------

    def issue_advertiser_token(self, code: AuthCode) -> AdvertiserToken:
        """The long-term token for a redeemed advertiser code."""
        if self.config.reauthorize_returns_same_token:
            for token in self.advertiser_tokens.values():
                if token.app_id == code.app_id and token.alive:
                    token.advertiser_ids += [
                        adv for adv in code.advertiser_ids if adv not in token.advertiser_ids
                    ]
                    token.scope = list(code.scope)
                    return token
        token = AdvertiserToken(
            value=_random_hex(),
            app_id=code.app_id,
            advertiser_ids=list(code.advertiser_ids),
            scope=list(code.scope),
            issued_at=self.clock.now(),
        )
        self.advertiser_tokens[token.value] = token
        return token

    def live_advertiser_token(self, value: str) -> AdvertiserToken:
        """The token `value` if it still works; 40105 otherwise."""
        token = self.advertiser_tokens.get(value)
        if token is None or not token.alive:
            raise TikTokError(40105)
        return token

    def kill_advertiser_token(self, token: AdvertiserToken, reason: str) -> None:
        """Make `token` fail with 40105 from now on."""
        token.dead_since = self.clock.now()
        token.dead_reason = reason
        self.revocations.append(
            Revocation("advertiser_token", token.value, token.app_id, reason, token.dead_since)
        )

    def cancel_authorization(
        self, tokens: list[AdvertiserToken], advertiser_id: str | None
    ) -> None:
        """The advertiser side withdraws: one advertiser from each token, or whole tokens.

        A token left with no advertiser dies, like a cancelled authorization on TikTok.
        """
        for token in tokens:
            if advertiser_id is not None and advertiser_id in token.advertiser_ids:
                token.advertiser_ids.remove(advertiser_id)
            if advertiser_id is None or not token.advertiser_ids:
                self.kill_advertiser_token(token, "cancelled")

    # --- tt_user grants ---------------------------------------------------------------------

    def start_account_grant(self, code: AuthCode) -> AccountToken:
        """A new tt_user grant (refresh token chain) and its first access token."""
        assert code.open_id is not None
        now = self.clock.now()
        grant = AccountGrant(
            grant_id=next(self._grant_ids),
            app_id=code.app_id,
            open_id=code.open_id,
            scope=code.account_scope,
            granted_at=now,
            refresh_expires_at=now + self.config.refresh_token_ttl,
            refresh_token=self._new_refresh_token(),
        )
        self.account_grants.append(grant)
        self.refresh_tokens[grant.refresh_token] = grant
        return self._new_account_token(grant)

    def refresh_account_grant(self, grant: AccountGrant) -> AccountToken:
        """A new access token for `grant`, rotating its refresh token when so configured."""
        if self.config.rotate_refresh_tokens:
            grant.retired_refresh_tokens.append(grant.refresh_token)
            grant.refresh_token = self._new_refresh_token()
            self.refresh_tokens[grant.refresh_token] = grant
        return self._new_account_token(grant)

    def revoke_account_grant(self, grant: AccountGrant) -> None:
        """Kill the grant: its access tokens and refresh token stop working."""
        grant.revoked_at = self.clock.now()
        self.revocations.append(
            Revocation(
                "tt_user_grant", grant.refresh_token, grant.app_id, "revoked", grant.revoked_at
            )
        )

    def refresh_seconds_left(self, grant: AccountGrant) -> int:
        """Seconds until the grant's refresh token expires, counted from the original grant."""
        return max(0, math.ceil(grant.refresh_expires_at - self.clock.now()))

    def _new_refresh_token(self) -> str:
        return "rft." + secrets.token_urlsafe(30)

    def _new_account_token(self, grant: AccountGrant) -> AccountToken:
        now = self.clock.now()
        token = AccountToken(
            value="act." + secrets.token_urlsafe(30),
            grant=grant,
            issued_at=now,
            expires_at=now + self.config.access_token_ttl,
        )
        grant.access_tokens.append(token)
        self.account_tokens[token.value] = token
        return token

    # --- admin view -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-ready data for `GET /_emulator/state` (secrets left out)."""
        now = self.clock.now()
        return {
            "clock": self.clock_view(),
            "config": self.config.model_dump(exclude={"apps", "advertisers", "accounts"}),
            "apps": [app.model_dump(exclude={"secret"}) for app in self.apps.values()],
            "advertisers": [adv.model_dump() for adv in self.advertisers.values()],
            "accounts": [acc.model_dump() for acc in self.accounts.values()],
            "codes": [
                {
                    "code": code.value,
                    "flow": code.flow,
                    "app_id": code.app_id,
                    "redirect_uri": code.redirect_uri,
                    "issued_at": code.issued_at,
                    "expires_at": code.issued_at + self.config.auth_code_ttl,
                    "used": code.used_at is not None,
                    "advertiser_ids": code.advertiser_ids,
                    "scope": code.scope if code.flow == "advertiser" else code.account_scope,
                    "open_id": code.open_id,
                }
                for code in self.codes.values()
            ],
            "advertiser_tokens": [
                advertiser_token_view(token) for token in self.advertiser_tokens.values()
            ],
            "account_grants": [
                {
                    "grant_id": grant.grant_id,
                    "app_id": grant.app_id,
                    "open_id": grant.open_id,
                    "scope": grant.scope,
                    "granted_at": grant.granted_at,
                    "refresh_token": grant.refresh_token,
                    "refresh_expires_at": grant.refresh_expires_at,
                    "retired_refresh_tokens": grant.retired_refresh_tokens,
                    "status": self._grant_status(grant, now),
                    "access_tokens": [
                        {
                            "access_token": token.value,
                            "issued_at": token.issued_at,
                            "expires_at": token.expires_at,
                            "expired": now >= token.expires_at,
                        }
                        for token in grant.access_tokens
                    ],
                }
                for grant in self.account_grants
            ],
            "revocations": [
                {
                    "kind": rev.kind,
                    "token": rev.token,
                    "app_id": rev.app_id,
                    "reason": rev.reason,
                    "at": rev.at,
                }
                for rev in self.revocations
            ],
            "limiter": self.limiter.snapshot(),
            "faults": self.faults.snapshot(),
            "hanging": len(self.hanging.held()),
            "calls": self.calls.counts(),
        }

    def clock_view(self) -> dict[str, Any]:
        """The emulator clock as epoch seconds, ISO text and offset from real time."""
        now = self.clock.now()
        return {"now": now, "iso": isoformat(now), "offset": self.clock.offset}

    @staticmethod
    def _grant_status(grant: AccountGrant, now: float) -> str:
        if grant.revoked_at is not None:
            return "revoked"
        if now >= grant.refresh_expires_at:
            return "expired"
        return "active"
