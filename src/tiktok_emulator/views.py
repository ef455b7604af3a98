"""How the admin API shows the emulator's world: JSON-ready views of `EmulatorState`.

`state.py` holds the world; this module decides what `/_emulator/...` answers look like.
Secrets (app secrets) are never shown. The keys are read by tests outside the emulator, so
they are part of the admin API: `advertiser_tokens` lists long-term tokens, `account_grants`
lists tt_user authorizations (with their `grant_id`).
"""

from __future__ import annotations

from typing import Any

from .clock import EmulatorClock, isoformat
from .config import EmulatorApp
from .faults import FaultQueues
from .state import AuthCode, EmulatorState, LongTermToken, UserAuthorization


def clock_view(clock: EmulatorClock) -> dict[str, Any]:
    """The emulator clock as epoch seconds, ISO text and offset from real time."""
    now = clock.now()
    return {"now": now, "iso": isoformat(now), "offset": clock.offset}


def app_view(app: EmulatorApp) -> dict[str, Any]:
    """A registered app without its secret."""
    return app.model_dump(exclude={"secret"})


def long_term_token_view(token: LongTermToken) -> dict[str, Any]:
    """An advertiser long-term token; `status` is `active`, `revoked` or `cancelled`."""
    return {
        "access_token": token.value,
        "app_id": token.app_id,
        "advertiser_ids": token.advertiser_ids,
        "scope": token.scope,
        "issued_at": token.issued_at,
        "status": "active" if token.alive else token.dead_reason,
    }


def faults_view(faults: FaultQueues) -> dict[str, list[dict[str, Any]]]:
    """Faults still queued, per endpoint, as they were given to `POST /_emulator/faults`."""
    return {
        endpoint: [fault.model_dump(exclude_none=True) for fault in queue]
        for endpoint, queue in faults.pending().items()
    }


def state_view(state: EmulatorState) -> dict[str, Any]:
    """Everything, for `GET /_emulator/state`."""
    now = state.clock.now()
    config = state.config
    return {
        "clock": clock_view(state.clock),
        "config": config.model_dump(exclude={"apps", "advertisers", "accounts"}),
        "apps": [app_view(app) for app in state.apps.values()],
        "advertisers": [adv.model_dump() for adv in state.advertisers.values()],
        "accounts": [acc.model_dump() for acc in state.accounts.values()],
        "codes": [_code_view(code, config.auth_code_ttl) for code in state.codes.values()],
        "advertiser_tokens": [
            long_term_token_view(token) for token in state.long_term_tokens.values()
        ],
        "account_grants": [
            _user_authorization_view(authorization, now)
            for authorization in state.user_authorizations
        ],
        "revocations": [
            {
                "kind": rev.kind,
                "token": rev.token,
                "app_id": rev.app_id,
                "reason": rev.reason,
                "at": rev.at,
            }
            for rev in state.revocations
        ],
        "limiter": state.limiter.snapshot(),
        "faults": faults_view(state.faults),
        "hanging": len(state.hanging.held()),
        "calls": state.calls.counts(),
    }


def _code_view(code: AuthCode, auth_code_ttl: int) -> dict[str, Any]:
    return {
        "code": code.value,
        "flow": code.flow,
        "app_id": code.app_id,
        "redirect_uri": code.redirect_uri,
        "issued_at": code.issued_at,
        "expires_at": code.issued_at + auth_code_ttl,
        "used": code.used_at is not None,
        "advertiser_ids": code.advertiser_ids,
        "scope": code.scope if code.flow == "advertiser" else code.account_scope,
        "open_id": code.open_id,
    }


def _user_authorization_view(authorization: UserAuthorization, now: float) -> dict[str, Any]:
    return {
        "grant_id": authorization.authorization_id,
        "app_id": authorization.app_id,
        "open_id": authorization.open_id,
        "scope": authorization.scope,
        "granted_at": authorization.granted_at,
        "refresh_token": authorization.refresh_token,
        "refresh_expires_at": authorization.refresh_expires_at,
        "retired_refresh_tokens": authorization.retired_refresh_tokens,
        "status": _authorization_status(authorization, now),
        "access_tokens": [
            {
                "access_token": token.value,
                "issued_at": token.issued_at,
                "expires_at": token.expires_at,
                "expired": now >= token.expires_at,
            }
            for token in authorization.access_tokens
        ],
    }


def _authorization_status(authorization: UserAuthorization, now: float) -> str:
    if authorization.revoked_at is not None:
        return "revoked"
    if now >= authorization.refresh_expires_at:
        return "expired"
    return "active"
