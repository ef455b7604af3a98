"""Helpers driving the TikTok emulator in-process through httpx.ASGITransport."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette

from tiktok_emulator import EmulatorState

APP_ID = "emulator-app"
SECRET = "emulator-secret"
REDIRECT_URI = "http://127.0.0.1:8000/callback"
ADV_1, ADV_2, ADV_3 = "7100000000000000001", "7100000000000000002", "7100000000000000003"
OPEN_ID = "-000emulatoropenid0001"
DEFAULT_APP = {
    "app_id": APP_ID,
    "secret": SECRET,
    "redirect_uris": [REDIRECT_URI],
    "account_redirect_uri": REDIRECT_URI,
    "scopes": [4, 100, 200, 300],
}
OTHER_APP = {
    "app_id": "other-app",
    "secret": "other-secret",
    "redirect_uris": ["http://other.example/cb"],
    "account_redirect_uri": "http://other.example/cb/",
    "scopes": [100],
}

REQUEST_ID = re.compile(r"^\d{14}[0-9A-F]{20}$")
HEX40 = re.compile(r"^[0-9a-f]{40}$")


def callback_params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a consent page's 302 redirect."""
    assert response.status_code == 302, response.text
    return dict(httpx.URL(response.headers["location"]).params)


def check_envelope(response: httpx.Response) -> dict[str, Any]:
    """Assert TikTok's envelope rules on a response and return the parsed body."""
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "request_id", "data"}
    assert REQUEST_ID.match(body["request_id"])
    assert response.headers["x-tt-logid"] == body["request_id"]
    assert "retry-after" not in response.headers
    if body["code"] != 0:
        assert body["data"] == {}
    return body


class Emulator:
    """An emulator app plus a client bound to it, with shortcuts for common OAuth steps."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    async def api(
        self,
        endpoint: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Call `/open_api/v1.3/<endpoint>` (POST when `body` is given) and check the envelope."""
        headers = {"Access-Token": token} if token is not None else {}
        url = "/open_api/v1.3/" + endpoint
        if body is None:
            response = await self.client.get(url, params=params, headers=headers)
        else:
            response = await self.client.post(url, json=body, headers=headers)
        return check_envelope(response)

    async def authorize(self, **params: str) -> httpx.Response:
        """GET the advertiser consent page with the default app and redirect URI."""
        query = {"app_id": APP_ID, "redirect_uri": REDIRECT_URI, **params}
        return await self.client.get("/portal/auth", params=query)

    async def advertiser_code(self, **params: str) -> str:
        """An advertiser auth code, approved through the test hook."""
        response = await self.authorize(emulator_decision="approve", **params)
        return callback_params(response)["auth_code"]

    async def exchange(self, code: str, app_id: str = APP_ID, secret: str = SECRET) -> Any:
        """Call `oauth2/access_token/` for `code`."""
        return await self.api(
            "oauth2/access_token/", {"app_id": app_id, "secret": secret, "auth_code": code}
        )

    async def advertiser_token(self, **params: str) -> dict[str, Any]:
        """Authorize and exchange: the `data` of a successful `oauth2/access_token/`."""
        body = await self.exchange(await self.advertiser_code(**params))
        assert body["code"] == 0, body
        data: dict[str, Any] = body["data"]
        return data

    async def advertisers_of(self, token: str) -> dict[str, Any]:
        """Call `oauth2/advertiser/get/` with the default app credentials."""
        return await self.api(
            "oauth2/advertiser/get/", params={"app_id": APP_ID, "secret": SECRET}, token=token
        )

    async def account_authorize(self, **params: str) -> httpx.Response:
        """GET the TikTok-account consent page with the default app and redirect URI."""
        query = {
            "client_key": APP_ID,
            "response_type": "code",
            "scope": "user.info.basic,video.list",
            "redirect_uri": REDIRECT_URI,
            **params,
        }
        return await self.client.get("/v2/auth/authorize/", params=query)

    async def account_code(self, **params: str) -> str:
        """A TikTok-account auth code, approved through the test hook."""
        response = await self.account_authorize(emulator_decision="approve", **params)
        return callback_params(response)["code"]

    async def account_exchange(self, code: str, **overrides: str) -> dict[str, Any]:
        """Call `tt_user/oauth2/token/` for `code`."""
        body = {
            "client_id": APP_ID,
            "client_secret": SECRET,
            "grant_type": "authorization_code",
            "auth_code": code,
            "redirect_uri": REDIRECT_URI,
            **overrides,
        }
        return await self.api("tt_user/oauth2/token/", body)

    async def account_tokens(self, **params: str) -> dict[str, Any]:
        """Authorize and exchange: the `data` of a successful `tt_user/oauth2/token/`."""
        body = await self.account_exchange(await self.account_code(**params))
        assert body["code"] == 0, body
        data: dict[str, Any] = body["data"]
        return data

    async def refresh(self, refresh_token: str, **overrides: str) -> dict[str, Any]:
        """Call `tt_user/oauth2/refresh_token/`."""
        body = {
            "client_id": APP_ID,
            "client_secret": SECRET,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            **overrides,
        }
        return await self.api("tt_user/oauth2/refresh_token/", body)

    async def admin(self, path: str, body: Any = None, **params: Any) -> Any:
        """Call `/_emulator/<path>` (POST when `body` is given) and return its JSON."""
        if body is None:
            response = await self.client.get("/_emulator/" + path, params=params)
        else:
            response = await self.client.post("/_emulator/" + path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def advance(self, seconds: float) -> None:
        """Move the emulator clock forward."""
        await self.admin("clock/advance", {"seconds": seconds})


MakeEmulator = Callable[..., Awaitable[Emulator]]
