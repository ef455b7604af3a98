"""The consent pages: validation, the HTML form, the test hook, redirects and denial."""

from __future__ import annotations

import httpx
import pytest

from .helpers import (
    ADV_1,
    ADV_2,
    ADV_3,
    APP_ID,
    HEX40,
    OPEN_ID,
    OTHER_APP,
    REDIRECT_URI,
    Emulator,
    MakeEmulator,
    callback_params,
)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _location(response: httpx.Response) -> httpx.URL:
    assert response.status_code == 302, response.text
    return httpx.URL(response.headers["location"])


class TestAdvertiserConsentPage:
    async def test_page_has_form_buttons_and_advertisers(self, emu: Emulator) -> None:
        response = await emu.authorize(state="s1")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        assert '<form method="post">' in page
        assert 'id="approve"' in page
        assert 'id="deny"' in page
        assert APP_ID in page
        for permission in (4, 100, 200, 300):
            assert f"Permission {permission}" in page
        for adv in (ADV_1, ADV_2, ADV_3):
            assert f'name="advertiser_id" value="{adv}" checked' in page
        assert "Acme Shoes" in page

    async def test_unknown_parameters_are_ignored(self, emu: Emulator) -> None:
        response = await emu.authorize(
            response_type="code", rid="abc", code_challenge="x" * 43, code_challenge_method="S256"
        )
        assert response.status_code == 200
        assert 'id="approve"' in response.text

    async def test_legacy_marketing_api_path(self, emu: Emulator) -> None:
        response = await emu.client.get(
            "/marketing_api/auth",
            params={"app_id": APP_ID, "redirect_uri": REDIRECT_URI, "emulator_decision": "approve"},
        )
        assert HEX40.match(callback_params(response)["auth_code"])

    @pytest.mark.parametrize(
        "params",
        [
            {"app_id": "no-such-app"},
            {"app_id": ""},
            {"redirect_uri": "http://evil.example/callback"},
            {"redirect_uri": REDIRECT_URI + "/"},
            {"redirect_uri": ""},
            {"scope": "[abc]"},
            {"scope": "[999]"},
        ],
    )
    async def test_invalid_request_shows_error_without_redirect(
        self, emu: Emulator, params: dict[str, str]
    ) -> None:
        response = await emu.authorize(emulator_decision="approve", **params)
        assert response.status_code == 400
        assert "location" not in response.headers
        assert 'id="error"' in response.text

    async def test_blocked_app_shows_error(self, emu: Emulator) -> None:
        await emu.admin(f"apps/{APP_ID}/block", {})
        response = await emu.authorize()
        assert response.status_code == 400


class TestAdvertiserDecision:
    async def test_form_approve_redirects_with_code_and_state(self, emu: Emulator) -> None:
        params = {"app_id": APP_ID, "redirect_uri": REDIRECT_URI, "state": "csrf-1"}
        response = await emu.client.post(
            "/portal/auth",
            params=params,
            content=f"advertiser_id={ADV_1}&advertiser_id={ADV_3}&decision=approve",
            headers=FORM,
        )
        location = _location(response)
        assert str(location.copy_with(query=None)) == REDIRECT_URI
        query = dict(location.params)
        assert set(query) == {"auth_code", "code", "state"}
        assert query["auth_code"] == query["code"]
        assert HEX40.match(query["auth_code"])
        assert query["state"] == "csrf-1"
        body = await emu.exchange(query["auth_code"])
        assert body["data"]["advertiser_ids"] == [ADV_1, ADV_3]

    async def test_form_approve_without_advertisers_is_refused(self, emu: Emulator) -> None:
        response = await emu.client.post(
            "/portal/auth",
            params={"app_id": APP_ID, "redirect_uri": REDIRECT_URI},
            content="decision=approve",
            headers=FORM,
        )
        assert response.status_code == 400
        assert "location" not in response.headers

    async def test_form_deny_redirects_with_access_denied(self, emu: Emulator) -> None:
        response = await emu.client.post(
            "/portal/auth",
            params={"app_id": APP_ID, "redirect_uri": REDIRECT_URI, "state": "s2"},
            content=f"advertiser_id={ADV_1}&decision=deny",
            headers=FORM,
        )
        query = dict(_location(response).params)
        assert query["error"] == "access_denied"
        assert query["error_description"]
        assert query["state"] == "s2"
        assert "code" not in query
        assert "auth_code" not in query

    async def test_hook_approve_grants_every_advertiser(self, emu: Emulator) -> None:
        data = await emu.advertiser_token()
        assert data["advertiser_ids"] == [ADV_1, ADV_2, ADV_3]
        assert data["scope"] == [4, 100, 200, 300]

    async def test_hook_picks_advertisers(self, emu: Emulator) -> None:
        data = await emu.advertiser_token(emulator_advertisers=f"{ADV_2},{ADV_3}")
        assert data["advertiser_ids"] == [ADV_2, ADV_3]

    async def test_hook_refuses_unknown_advertiser(self, emu: Emulator) -> None:
        response = await emu.authorize(emulator_decision="approve", emulator_advertisers="123")
        assert response.status_code == 400

    async def test_hook_refuses_unknown_decision(self, emu: Emulator) -> None:
        response = await emu.authorize(emulator_decision="maybe")
        assert response.status_code == 400

    async def test_state_is_echoed_unchanged(self, emu: Emulator) -> None:
        state = "a b&c=d/é?%20+"
        response = await emu.authorize(emulator_decision="approve", state=state)
        assert callback_params(response)["state"] == state

    async def test_state_is_omitted_when_absent(self, emu: Emulator) -> None:
        response = await emu.authorize(emulator_decision="approve")
        assert "state" not in callback_params(response)

    async def test_hook_deny(self, emu: Emulator) -> None:
        response = await emu.authorize(emulator_decision="deny", state="s3")
        query = callback_params(response)
        assert (query["error"], query["state"]) == ("access_denied", "s3")

    async def test_deny_without_redirect(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(deny_mode="no_redirect")
        response = await emu.authorize(emulator_decision="deny", state="s4")
        assert response.status_code == 200
        assert "location" not in response.headers
        assert 'id="cancelled"' in response.text

    @pytest.mark.parametrize(("scope", "granted"), [("[4,100]", [4, 100]), ("300,999", [300])])
    async def test_scope_narrows_the_grant(
        self, emu: Emulator, scope: str, granted: list[int]
    ) -> None:
        data = await emu.advertiser_token(scope=scope)
        assert data["scope"] == granted

    async def test_existing_query_of_redirect_uri_is_kept(
        self, make_emulator: MakeEmulator
    ) -> None:
        app = {**OTHER_APP, "redirect_uris": ["http://other.example/cb?tenant=7"]}
        emu = await make_emulator(apps=[app])
        response = await emu.client.get(
            "/portal/auth",
            params={
                "app_id": "other-app",
                "redirect_uri": "http://other.example/cb?tenant=7",
                "emulator_decision": "approve",
            },
        )
        query = callback_params(response)
        assert query["tenant"] == "7"
        assert HEX40.match(query["code"])


class TestAccountConsent:
    async def test_page_has_buttons_scopes_and_account(self, emu: Emulator) -> None:
        response = await emu.account_authorize(state="s")
        assert response.status_code == 200
        page = response.text
        assert 'id="approve"' in page
        assert 'id="deny"' in page
        assert "video.list" in page
        assert f'value="{OPEN_ID}" checked' in page

    async def test_hook_approve_redirects_with_code_scopes_state(self, emu: Emulator) -> None:
        response = await emu.account_authorize(emulator_decision="approve", state="t1")
        location = _location(response)
        assert str(location.copy_with(query=None)) == REDIRECT_URI
        query = dict(location.params)
        assert set(query) == {"code", "scopes", "state"}
        assert query["scopes"] == "user.info.basic,video.list"
        assert query["state"] == "t1"

    async def test_form_approve_picks_account(self, make_emulator: MakeEmulator) -> None:
        second = {"open_id": "-000second", "display_name": "Second"}
        emu = await make_emulator(accounts=[{"open_id": OPEN_ID, "display_name": "First"}, second])
        response = await emu.client.post(
            "/v2/auth/authorize/",
            params={
                "client_key": APP_ID,
                "response_type": "code",
                "scope": "user.info.basic",
                "redirect_uri": REDIRECT_URI,
            },
            content="open_id=-000second&decision=approve",
            headers=FORM,
        )
        body = await emu.account_exchange(dict(_location(response).params)["code"])
        assert body["data"]["open_id"] == "-000second"

    async def test_hook_picks_account(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(
            accounts=[
                {"open_id": OPEN_ID, "display_name": "First"},
                {"open_id": "-000second", "display_name": "Second"},
            ]
        )
        data = await emu.account_tokens(emulator_open_id="-000second")
        assert data["open_id"] == "-000second"

    async def test_deny_redirects_with_error(self, emu: Emulator) -> None:
        response = await emu.account_authorize(emulator_decision="deny", state="t2")
        query = callback_params(response)
        assert (query["error"], query["state"]) == ("access_denied", "t2")
        assert "code" not in query

    @pytest.mark.parametrize(
        "params",
        [
            {"client_key": "nope"},
            {"redirect_uri": "http://localhost:8000/callback"},
            {"response_type": "token"},
            {"emulator_open_id": "-000unknown"},
        ],
    )
    async def test_invalid_request_shows_error(self, emu: Emulator, params: dict[str, str]) -> None:
        response = await emu.account_authorize(emulator_decision="approve", **params)
        assert response.status_code == 400
        assert "location" not in response.headers
