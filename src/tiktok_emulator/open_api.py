"""The emulated `/open_api/v1.3/` endpoints and the pipeline every call goes through.

Pipeline: record the call, apply a queued fault (possibly holding the call first), apply the
app rate limit, then run the endpoint. Everything answers with TikTok's envelope at HTTP 200.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .envelope import ApiError, envelope, message_for, new_request_id, not_found
from .faults import CodeFault, HangFault, HttpFault
from .state import EmulatorState, LongTermToken, UserAccessToken

PREFIX = "/open_api/v1.3/"


@dataclass(frozen=True)
class ApiCall:
    """What an endpoint sees: query (GET) or JSON body (POST) fields, and the token header."""

    fields: dict[str, Any]
    access_token: str | None


Handler = Callable[[EmulatorState, ApiCall], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    """An endpoint's HTTP method and its logic."""

    method: str
    handler: Handler


def _require(call: ApiCall, *names: str) -> list[str]:
    values = []
    for name in names:
        value = call.fields.get(name)
        if not isinstance(value, str) or not value:
            raise ApiError(40002, f"{name}: a non-empty string is required.")
        values.append(value)
    return values


def _token_header(call: ApiCall) -> str:
    if not call.access_token:
        raise ApiError(40104)
    return call.access_token


def _owned_long_term_token(state: EmulatorState, value: str, app_id: str) -> LongTermToken:
    token = state.live_long_term_token(value)
    if token.app_id != app_id:
        raise ApiError(40113, "The access token belongs to another app.")
    return token


def _owned_user_access_token(state: EmulatorState, value: str, app_id: str) -> UserAccessToken:
    token = state.user_access_tokens.get(value)
    if token is None:
        raise ApiError(40105)
    if token.authorization.app_id != app_id:
        raise ApiError(40113, "The access token belongs to another app.")
    if token.authorization.revoked_at is not None:
        raise ApiError(40105)
    if state.clock.now() >= token.expires_at:
        raise ApiError(40102)
    return token


def _user_token_data(state: EmulatorState, token: UserAccessToken) -> dict[str, Any]:
    authorization = token.authorization
    return {
        "access_token": token.value,
        "token_type": "Bearer",
        "scope": authorization.scope,
        "expires_in": state.config.access_token_ttl,
        "refresh_token": authorization.refresh_token,
        "refresh_token_expires_in": state.refresh_seconds_left(authorization),
        "open_id": authorization.open_id,
    }


def access_token(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`oauth2/access_token/`: trade an advertiser auth code for a long-term token."""
    app_id, secret, auth_code = _require(call, "app_id", "secret", "auth_code")
    app = state.authenticate(app_id, secret)
    code = state.redeem_code(auth_code, app, "advertiser")
    token = state.issue_long_term_token(code)
    return {
        "access_token": token.value,
        "advertiser_ids": list(token.advertiser_ids),
        "scope": list(token.scope),
    }


def advertiser_get(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`oauth2/advertiser/get/`: the advertisers currently granted to the token."""
    if state.config.sandbox:
        raise ApiError(40014)
    app_id, secret = _require(call, "app_id", "secret")
    value = _token_header(call)
    app = state.authenticate(app_id, secret)
    token = _owned_long_term_token(state, value, app.app_id)
    return {
        "list": [
            {"advertiser_id": adv, "advertiser_name": state.advertisers[adv].advertiser_name}
            for adv in token.advertiser_ids
        ]
    }


def revoke_token(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`oauth2/revoke_token/`: kill a long-term token."""
    app_id, secret, value = _require(call, "app_id", "secret", "access_token")
    app = state.authenticate(app_id, secret)
    token = _owned_long_term_token(state, value, app.app_id)
    state.kill_long_term_token(token, "revoked")
    if state.config.revoke_data == "app":
        return {"app_id": app.app_id, "advertiser_ids": list(token.advertiser_ids)}
    return {}


def refresh_long_term_token(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`oauth2/refresh_token/`: long-term tokens cannot be refreshed, so always 40107."""
    raise ApiError(40107, "Marketing API access tokens cannot be refreshed.")


def advertiser_info(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`advertiser/info/`: a cheap liveness check of a token for given advertisers."""
    value = _token_header(call)
    (raw_ids,) = _require(call, "advertiser_ids")
    try:
        advertiser_ids = orjson.loads(raw_ids)
    except orjson.JSONDecodeError:
        advertiser_ids = None
    if (
        not isinstance(advertiser_ids, list)
        or not advertiser_ids
        or not all(isinstance(adv, str) for adv in advertiser_ids)
    ):
        raise ApiError(40002, "advertiser_ids: a JSON list of strings is required.")
    token = state.live_long_term_token(value)
    state.app_for(token.app_id)
    if any(adv not in token.advertiser_ids for adv in advertiser_ids):
        raise ApiError(state.config.outside_grant_error)
    if not state.limiter.admit_advertisers(advertiser_ids):
        raise ApiError(40133)
    return {
        "list": [
            {"advertiser_id": adv, "name": state.advertisers[adv].advertiser_name}
            for adv in advertiser_ids
        ]
    }


def tt_user_token(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`tt_user/oauth2/token/`: trade a TikTok-account code for access + refresh tokens."""
    client_id, client_secret, grant_type, auth_code, redirect_uri = _require(
        call, "client_id", "client_secret", "grant_type", "auth_code", "redirect_uri"
    )
    if grant_type != "authorization_code":
        raise ApiError(40108)
    app = state.authenticate(client_id, client_secret)
    code = state.redeem_code(auth_code, app, "tt_user", redirect_uri=redirect_uri)
    return _user_token_data(state, state.start_user_authorization(code))


def tt_user_refresh(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`tt_user/oauth2/refresh_token/`: a new access token, rotating the refresh token."""
    client_id, client_secret, grant_type, refresh_token = _require(
        call, "client_id", "client_secret", "grant_type", "refresh_token"
    )
    if grant_type != "refresh_token":
        raise ApiError(40108)
    app = state.authenticate(client_id, client_secret)
    # Marketing API long-term tokens are unknown here, which is how TikTok answers 40107 to them.
    authorization = state.refresh_tokens.get(refresh_token)
    if authorization is None:
        raise ApiError(40107)
    if authorization.app_id != app.app_id:
        raise ApiError(40113, "The refresh token belongs to another app.")
    if refresh_token != authorization.refresh_token:
        raise ApiError(40107, "The refresh token has been rotated.")
    if authorization.revoked_at is not None:
        raise ApiError(40107, "The authorization has been revoked.")
    if state.clock.now() >= authorization.refresh_expires_at:
        raise ApiError(40103)
    return _user_token_data(state, state.refresh_user_authorization(authorization))


def tt_user_revoke(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`tt_user/oauth2/revoke/`: end the TikTok-account authorization behind a token."""
    client_id, client_secret, value = _require(call, "client_id", "client_secret", "access_token")
    app = state.authenticate(client_id, client_secret)
    token = _owned_user_access_token(state, value, app.app_id)
    state.revoke_user_authorization(token.authorization)
    return {}


def tt_user_token_info(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`tt_user/token_info/get/`: who a TikTok-account token belongs to."""
    app_id, value = _require(call, "app_id", "access_token")
    app = state.app_for(app_id)
    authorization = _owned_user_access_token(state, value, app.app_id).authorization
    return {"app_id": app.app_id, "creator_id": authorization.open_id, "scope": authorization.scope}


LONG_TERM_REFRESH_ENDPOINT = "oauth2/refresh_token/"

ENDPOINTS: dict[str, Endpoint] = {
    "oauth2/access_token/": Endpoint("POST", access_token),
    "oauth2/advertiser/get/": Endpoint("GET", advertiser_get),
    "oauth2/revoke_token/": Endpoint("POST", revoke_token),
    LONG_TERM_REFRESH_ENDPOINT: Endpoint("POST", refresh_long_term_token),
    "advertiser/info/": Endpoint("GET", advertiser_info),
    "tt_user/oauth2/token/": Endpoint("POST", tt_user_token),
    "tt_user/oauth2/refresh_token/": Endpoint("POST", tt_user_refresh),
    "tt_user/oauth2/revoke/": Endpoint("POST", tt_user_revoke),
    "tt_user/token_info/get/": Endpoint("POST", tt_user_token_info),
}


async def _read_fields(request: Request, method: str) -> tuple[dict[str, Any], str | None]:
    """The call's fields, and a complaint when a POST body is not a JSON object."""
    if method == "GET":
        return dict(request.query_params), None
    try:
        parsed = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return {}, "The request body must be JSON."
    if not isinstance(parsed, dict):
        return {}, "The request body must be a JSON object."
    return parsed, None


def _caller_app(state: EmulatorState, call: ApiCall) -> str | None:
    """The app a call counts against for rate limiting, when it can be told."""
    claimed = call.fields.get("app_id", call.fields.get("client_id"))
    if isinstance(claimed, str) and claimed in state.apps:
        return claimed
    if call.access_token:
        long_term_token = state.long_term_tokens.get(call.access_token)
        if long_term_token is not None:
            return long_term_token.app_id
        user_token = state.user_access_tokens.get(call.access_token)
        if user_token is not None:
            return user_token.authorization.app_id
    return None


def _run(
    state: EmulatorState, endpoint: Endpoint, call: ApiCall, body_error: str | None
) -> tuple[int, str, dict[str, Any]]:
    try:
        app_id = _caller_app(state, call)
        if app_id is not None and not state.limiter.admit_app(app_id):
            raise ApiError(40100)
        if body_error is not None:
            raise ApiError(40002, body_error)
        return 0, message_for(0), endpoint.handler(state, call)
    except ApiError as error:
        return error.code, error.message, {}


def open_api_route(state: EmulatorState) -> Route:
    """One route for every `/open_api/v1.3/...` path; unknown paths get the gateway's 404."""

    async def dispatch(request: Request) -> Response:
        key = request.path_params["endpoint"]
        endpoint = ENDPOINTS.get(key)
        if (
            endpoint is None
            or endpoint.method != request.method
            or (key == LONG_TERM_REFRESH_ENDPOINT and state.config.refresh_endpoint_mode == "404")
        ):
            return not_found()
        fields, body_error = await _read_fields(request, endpoint.method)
        call = ApiCall(fields, request.headers.get("Access-Token"))
        arrived = state.clock.now()
        request_id = new_request_id(arrived)
        record = state.calls.start(
            key,
            request.method,
            emulator_time=arrived,
            fields=fields,
            access_token_header=call.access_token,
            request_id=request_id,
        )
        fault = state.faults.take(key)
        if fault is not None:
            record.fault = fault.model_dump(exclude_none=True)
        if isinstance(fault, HangFault):
            await state.hanging.hold(key, arrived)
            fault = fault.then
        if isinstance(fault, HttpFault):
            record.http_status = fault.http_status
            return Response(
                fault.render_body(), status_code=fault.http_status, media_type=fault.content_type
            )
        data: dict[str, Any] = {}
        if isinstance(fault, CodeFault):
            code, message = fault.code, fault.message or message_for(fault.code)
        else:
            code, message, data = _run(state, endpoint, call, body_error)
        record.code, record.http_status = code, 200
        return envelope(code, message, data, request_id)

    # Every method reaches `dispatch`, which answers a wrong one with the gateway's 404.
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Route(PREFIX + "{endpoint:path}", dispatch, methods=methods)
