"""The emulated `/open_api/v1.3/` endpoints and the pipeline every call goes through.

Pipeline: record the call, apply a queued fault (possibly holding the call first), apply a
throttle set through the admin API, the app's tier limits and the endpoint's own limit, then
run the endpoint. Everything answers with TikTok's envelope at HTTP 200, except a fault that
asks for a raw HTTP status (before the endpoint runs, or after it acted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import marketing
from .api_call import ApiCall, UploadedFile, parse_multipart, require, token_header
from .envelope import ApiError, envelope, message_for, new_request_id, not_found
from .faults import CodeFault, HangFault, HttpFault
from .state import EmulatorState, LongTermToken, UserAccessToken

PREFIX = "/open_api/v1.3/"

Handler = Callable[[EmulatorState, ApiCall], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    """An endpoint's HTTP method, how a POST carries its fields, and its logic."""

    method: str
    handler: Handler
    body: Literal["json", "multipart"] = "json"


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
    app_id, secret, auth_code = require(call, "app_id", "secret", "auth_code")
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
    app_id, secret = require(call, "app_id", "secret")
    value = token_header(call)
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
    app_id, secret, value = require(call, "app_id", "secret", "access_token")
    app = state.authenticate(app_id, secret)
    token = _owned_long_term_token(state, value, app.app_id)
    state.kill_long_term_token(token, "revoked")
    if state.config.revoke_data == "app":
        return {"app_id": app.app_id, "advertiser_ids": list(token.advertiser_ids)}
    return {}


def refresh_long_term_token(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`oauth2/refresh_token/`: long-term tokens cannot be refreshed, so always 40107."""
    raise ApiError(40107, "Marketing API access tokens cannot be refreshed.")


def tt_user_token(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`tt_user/oauth2/token/`: trade a TikTok-account code for access + refresh tokens."""
    client_id, client_secret, grant_type, auth_code, redirect_uri = require(
        call, "client_id", "client_secret", "grant_type", "auth_code", "redirect_uri"
    )
    if grant_type != "authorization_code":
        raise ApiError(40108)
    app = state.authenticate(client_id, client_secret)
    code = state.redeem_code(auth_code, app, "tt_user", redirect_uri=redirect_uri)
    return _user_token_data(state, state.start_user_authorization(code))


def tt_user_refresh(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`tt_user/oauth2/refresh_token/`: a new access token, rotating the refresh token."""
    client_id, client_secret, grant_type, refresh_token = require(
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
    client_id, client_secret, value = require(call, "client_id", "client_secret", "access_token")
    app = state.authenticate(client_id, client_secret)
    token = _owned_user_access_token(state, value, app.app_id)
    state.revoke_user_authorization(token.authorization)
    return {}


def tt_user_token_info(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`tt_user/token_info/get/`: who a TikTok-account token belongs to."""
    app_id, value = require(call, "app_id", "access_token")
    app = state.app_for(app_id)
    authorization = _owned_user_access_token(state, value, app.app_id).authorization
    return {"app_id": app.app_id, "creator_id": authorization.open_id, "scope": authorization.scope}


LONG_TERM_REFRESH_ENDPOINT = "oauth2/refresh_token/"

ENDPOINTS: dict[str, Endpoint] = {
    "oauth2/access_token/": Endpoint("POST", access_token),
    "oauth2/advertiser/get/": Endpoint("GET", advertiser_get),
    "oauth2/revoke_token/": Endpoint("POST", revoke_token),
    LONG_TERM_REFRESH_ENDPOINT: Endpoint("POST", refresh_long_term_token),
    "advertiser/info/": Endpoint("GET", marketing.advertiser_info),
    "campaign/get/": Endpoint("GET", marketing.campaign_get),
    "campaign/create/": Endpoint("POST", marketing.campaign_create),
    "report/integrated/get/": Endpoint("GET", marketing.report_integrated_get),
    "file/image/ad/upload/": Endpoint("POST", marketing.image_upload, body="multipart"),
    "business/get/": Endpoint("GET", marketing.business_get),
    "tt_user/oauth2/token/": Endpoint("POST", tt_user_token),
    "tt_user/oauth2/refresh_token/": Endpoint("POST", tt_user_refresh),
    "tt_user/oauth2/revoke/": Endpoint("POST", tt_user_revoke),
    "tt_user/token_info/get/": Endpoint("POST", tt_user_token_info),
}


@dataclass(frozen=True)
class _Fields:
    """A request's fields and files; `error` when its body is not what the endpoint takes."""

    fields: dict[str, Any]
    files: dict[str, UploadedFile]
    error: str | None = None


async def _read_fields(request: Request, endpoint: Endpoint) -> _Fields:
    if endpoint.method == "GET":
        return _Fields(dict(request.query_params), {})
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if endpoint.body == "multipart":
        if not content_type.lower().startswith("multipart/form-data"):
            return _Fields({}, {}, "The request body must be multipart/form-data.")
        fields, files = parse_multipart(content_type, body)
        return _Fields(fields, files)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _Fields({}, {}, "The request body must be JSON.")
    if not isinstance(parsed, dict):
        return _Fields({}, {}, "The request body must be a JSON object.")
    return _Fields(parsed, {})


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
    state: EmulatorState, key: str, endpoint: Endpoint, call: ApiCall, body_error: str | None
) -> tuple[int, str, dict[str, Any]]:
    try:
        throttled = state.throttle_code()
        if throttled is not None:
            raise ApiError(throttled)
        app_id = _caller_app(state, call)
        if app_id is not None and (refused := state.limiter.admit_app(app_id, key)):
            raise ApiError(refused)
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
        read = await _read_fields(request, endpoint)
        call = ApiCall(read.fields, request.headers.get("Access-Token"), read.files)
        arrived = state.clock.now()
        request_id = new_request_id(arrived)
        record = state.calls.start(
            key,
            request.method,
            emulator_time=arrived,
            fields={
                **read.fields,
                **{
                    name: {"filename": part.filename, "size": len(part.content)}
                    for name, part in read.files.items()
                },
            },
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
            if fault.act:
                record.code = _run(state, key, endpoint, call, read.error)[0]
            record.http_status = fault.http_status
            return Response(
                fault.render_body(), status_code=fault.http_status, media_type=fault.content_type
            )
        data: dict[str, Any] = {}
        if isinstance(fault, CodeFault):
            code, message = fault.code, fault.message or message_for(fault.code)
        else:
            code, message, data = _run(state, key, endpoint, call, read.error)
        record.code, record.http_status = code, 200
        return envelope(code, message, data, request_id)

    # Every method reaches `dispatch`, which answers a wrong one with the gateway's 404.
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Route(PREFIX + "{endpoint:path}", dispatch, methods=methods)
