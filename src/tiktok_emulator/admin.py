"""The private `/_emulator/` control API used by tests, benchmarks and developers.

Plain JSON (not TikTok-shaped): 200 on success, 400 `{"error": ...}` for a bad request,
404 `{"error": ...}` for an unknown app, token or endpoint.

    GET  /_emulator/state                 everything (see views.state_view)
    GET  /_emulator/calls[?endpoint=E]    {"counts", "total"} or {"endpoint", "count", "calls"}
    GET  /_emulator/calls/per_second[?endpoint=E]
                                          {"per_second": {"<epoch second>": n}, "max"}
    GET  /_emulator/access_tokens         {"counts": {"<Access-Token header value>": n}}
    GET  /_emulator/campaigns             {"created": {"<advertiser_id>": n}}
    POST /_emulator/throttle              {"seconds", "code"?: 40100} -> {"until", "code"}
    GET  /_emulator/clock                 {"now", "iso", "offset"}
    POST /_emulator/clock/advance         {"seconds"} -> clock
    POST /_emulator/faults                {"endpoint", "responses": [fault...]} -> {"queued"}
    GET  /_emulator/hanging?at_least=N&timeout=S[&endpoint=E]
                                          long-poll -> {"reached", "hanging", "calls"}
    POST /_emulator/hanging/release       {"endpoint"?, "count"?} -> {"released"}
    POST /_emulator/advertisers/cancel    {"access_token"? | "app_id"?, "advertiser_id"?}
    POST /_emulator/advertisers/grant     {"access_token", "advertiser_id"}
    POST /_emulator/apps/{app_id}/block   {"blocked"?: true}
    POST /_emulator/reset                 -> {"reset": true}

A fault is `{"code": N, "message"?}`, `{"http_status": N, "body"?, "content_type"?}` or
`{"hang": true, "then"?: <code or http_status fault>}`.

`calls/per_second` counts calls by the wall-clock second they arrived in (whatever they were
answered), so a test can check that no second saw more than the app's QPS. `campaigns` counts
the campaigns `campaign/create/` made per advertiser (seeded ones are not counted). `throttle`
answers every `/open_api/` call with `code` (default 40100) for `seconds` of emulator time,
without counting or running it.

A fault `{"http_status": 502, "act": true}` runs the call first (a create creates) and then
answers the raw status, as when TikTok acted but its answer was lost.

`advertisers/cancel` without `advertiser_id` cancels whole authorizations (the tokens answer
40105 from then on); with it, that advertiser is taken off the token(s) and a token left with
no advertiser dies. `advertisers/grant` adds an advertiser to a live token. Both answer with
the token view(s) of `GET /_emulator/state`'s `advertiser_tokens`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import Fault
from .open_api import ENDPOINTS
from .state import EmulatorState, LongTermToken
from .views import app_view, clock_view, long_term_token_view, state_view

MAX_WAIT_SECONDS = 60.0


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdvanceClock(_Body):
    """`POST /_emulator/clock/advance`."""

    seconds: float = Field(ge=0)


class AddFaults(_Body):
    """`POST /_emulator/faults`: `endpoint` is the path after `/open_api/v1.3/`."""

    endpoint: str
    responses: list[Fault] = Field(min_length=1)


class ReleaseHanging(_Body):
    """`POST /_emulator/hanging/release`: oldest first, all of them unless `count` is given."""

    endpoint: str | None = None
    count: int | None = Field(default=None, ge=1)


class CancelAuthorization(_Body):
    """`POST /_emulator/advertisers/cancel`: pick tokens by `access_token` or by `app_id`."""

    access_token: str | None = None
    app_id: str | None = None
    advertiser_id: str | None = None


class GrantAdvertiser(_Body):
    """`POST /_emulator/advertisers/grant`."""

    access_token: str
    advertiser_id: str


class Throttle(_Body):
    """`POST /_emulator/throttle`."""

    seconds: float = Field(gt=0)
    code: int = 40100


class BlockApp(_Body):
    """`POST /_emulator/apps/{app_id}/block` (send `{"blocked": false}` to unblock)."""

    blocked: bool = True


BodyT = TypeVar("BodyT", bound=_Body)
AdminHandler = Callable[[Request], Awaitable[dict[str, Any]]]


class AdminError(Exception):
    """A refused admin request, answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _parse(request: Request, model: type[BodyT]) -> BodyT:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        raise AdminError(400, str(error)) from error


def _live_token(state: EmulatorState, value: str) -> LongTermToken:
    token = state.long_term_tokens.get(value)
    if token is None or not token.alive:
        raise AdminError(404, "no live advertiser token with this value")
    return token


def _query_float(request: Request, name: str, default: float) -> float:
    try:
        return float(request.query_params.get(name, default))
    except ValueError:
        raise AdminError(400, f"{name} must be a number") from None


def admin_routes(state: EmulatorState) -> list[Route]:
    """All `/_emulator/...` routes, bound to `state`."""

    async def show_state(request: Request) -> dict[str, Any]:
        return state_view(state)

    async def show_calls(request: Request) -> dict[str, Any]:
        endpoint = request.query_params.get("endpoint")
        counts = state.calls.counts()
        if endpoint is None:
            return {"counts": counts, "total": sum(counts.values())}
        return {
            "endpoint": endpoint,
            "count": counts.get(endpoint, 0),
            "calls": state.calls.records(endpoint),
        }

    async def show_per_second(request: Request) -> dict[str, Any]:
        seconds = state.calls.per_second(request.query_params.get("endpoint"))
        return {
            "per_second": {str(second): count for second, count in seconds.items()},
            "max": max(seconds.values(), default=0),
        }

    async def show_access_tokens(request: Request) -> dict[str, Any]:
        return {"counts": state.calls.access_tokens()}

    async def show_campaigns(request: Request) -> dict[str, Any]:
        return {"created": dict(state.created_campaigns)}

    async def throttle(request: Request) -> dict[str, Any]:
        body = await _parse(request, Throttle)
        until = state.clock.now() + body.seconds
        state.throttle = (until, body.code)
        return {"until": until, "code": body.code}

    async def show_clock(request: Request) -> dict[str, Any]:
        return clock_view(state.clock)

    async def advance_clock(request: Request) -> dict[str, Any]:
        body = await _parse(request, AdvanceClock)
        state.clock.advance(body.seconds)
        return clock_view(state.clock)

    async def add_faults(request: Request) -> dict[str, Any]:
        body = await _parse(request, AddFaults)
        if body.endpoint not in ENDPOINTS:
            raise AdminError(404, f"unknown endpoint; known: {sorted(ENDPOINTS)}")
        queued = state.faults.add(body.endpoint, body.responses)
        return {"endpoint": body.endpoint, "queued": queued}

    async def wait_hanging(request: Request) -> dict[str, Any]:
        endpoint = request.query_params.get("endpoint")
        at_least = int(_query_float(request, "at_least", 1))
        timeout = min(_query_float(request, "timeout", 5.0), MAX_WAIT_SECONDS)
        try:
            async with asyncio.timeout(timeout):
                await state.hanging.wait_for(at_least, endpoint)
            reached = True
        except TimeoutError:
            reached = False
        held = state.hanging.held(endpoint)
        return {
            "reached": reached,
            "hanging": len(held),
            "calls": [
                {"hold_id": call.hold_id, "endpoint": call.endpoint, "since": call.since}
                for call in held
            ],
        }

    async def release_hanging(request: Request) -> dict[str, Any]:
        body = await _parse(request, ReleaseHanging)
        return {"released": state.hanging.release(body.endpoint, body.count)}

    async def cancel_authorization(request: Request) -> dict[str, Any]:
        body = await _parse(request, CancelAuthorization)
        if body.access_token is not None:
            tokens = [_live_token(state, body.access_token)]
        elif body.app_id is not None:
            if body.app_id not in state.apps:
                raise AdminError(404, "unknown app_id")
            tokens = [
                token
                for token in state.long_term_tokens.values()
                if token.app_id == body.app_id and token.alive
            ]
        else:
            raise AdminError(400, "give access_token or app_id")
        if body.advertiser_id is not None:
            tokens = [token for token in tokens if body.advertiser_id in token.advertiser_ids]
        state.cancel_authorization(tokens, body.advertiser_id)
        return {"tokens": [long_term_token_view(token) for token in tokens]}

    async def grant_advertiser(request: Request) -> dict[str, Any]:
        body = await _parse(request, GrantAdvertiser)
        token = _live_token(state, body.access_token)
        if body.advertiser_id not in state.advertisers:
            raise AdminError(404, "unknown advertiser_id")
        state.grant_advertiser(token, body.advertiser_id)
        return long_term_token_view(token)

    async def block_app(request: Request) -> dict[str, Any]:
        app = state.apps.get(request.path_params["app_id"])
        if app is None:
            raise AdminError(404, "unknown app_id")
        app.blocked = (await _parse(request, BlockApp)).blocked
        return app_view(app)

    async def reset(request: Request) -> dict[str, Any]:
        state.reset()
        return {"reset": True}

    def json_route(path: str, handler: AdminHandler, method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(await handler(request))
            except AdminError as error:
                return JSONResponse({"error": str(error)}, status_code=error.status)

        return Route(path, endpoint, methods=[method])

    return [
        json_route("/_emulator/state", show_state, "GET"),
        json_route("/_emulator/calls", show_calls, "GET"),
        json_route("/_emulator/calls/per_second", show_per_second, "GET"),
        json_route("/_emulator/access_tokens", show_access_tokens, "GET"),
        json_route("/_emulator/campaigns", show_campaigns, "GET"),
        json_route("/_emulator/throttle", throttle, "POST"),
        json_route("/_emulator/clock", show_clock, "GET"),
        json_route("/_emulator/clock/advance", advance_clock, "POST"),
        json_route("/_emulator/faults", add_faults, "POST"),
        json_route("/_emulator/hanging", wait_hanging, "GET"),
        json_route("/_emulator/hanging/release", release_hanging, "POST"),
        json_route("/_emulator/advertisers/cancel", cancel_authorization, "POST"),
        json_route("/_emulator/advertisers/grant", grant_advertiser, "POST"),
        json_route("/_emulator/apps/{app_id}/block", block_app, "POST"),
        json_route("/_emulator/reset", reset, "POST"),
    ]
