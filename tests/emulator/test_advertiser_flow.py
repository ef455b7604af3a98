"""Marketing API long-term tokens: exchange, advertiser list, revocation, no refresh."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import (
    ADV_1,
    ADV_2,
    ADV_3,
    APP_ID,
    DEFAULT_APP,
    HEX40,
    OTHER_APP,
    SECRET,
    Emulator,
    MakeEmulator,
    check_envelope,
)


class TestExchangeCode:
    async def test_success_returns_exactly_token_advertisers_scope(self, emu: Emulator) -> None:
        body = await emu.exchange(await emu.advertiser_code())
        assert body["code"] == 0
        data = body["data"]
        assert set(data) == {"access_token", "advertiser_ids", "scope"}
        assert HEX40.match(data["access_token"])
        assert all(isinstance(adv, str) for adv in data["advertiser_ids"])
        assert all(isinstance(number, int) for number in data["scope"])

    async def test_stray_grant_type_is_ignored(self, emu: Emulator) -> None:
        code = await emu.advertiser_code()
        body = await emu.api(
            "oauth2/access_token/",
            {"app_id": APP_ID, "secret": SECRET, "auth_code": code, "grant_type": "x"},
        )
        assert body["code"] == 0

    @pytest.mark.parametrize("missing", ["app_id", "secret", "auth_code"])
    async def test_missing_field_is_40002(self, emu: Emulator, missing: str) -> None:
        fields = {"app_id": APP_ID, "secret": SECRET, "auth_code": await emu.advertiser_code()}
        del fields[missing]
        assert (await emu.api("oauth2/access_token/", fields))["code"] == 40002

    async def test_wrong_secret_is_40101(self, emu: Emulator) -> None:
        body = await emu.exchange(await emu.advertiser_code(), secret="wrong")
        assert body["code"] == 40101

    async def test_unknown_app_is_40113(self, emu: Emulator) -> None:
        body = await emu.exchange(await emu.advertiser_code(), app_id="no-such-app")
        assert body["code"] == 40113

    async def test_blocked_app_is_40113(self, emu: Emulator) -> None:
        code = await emu.advertiser_code()
        await emu.admin(f"apps/{APP_ID}/block", {})
        assert (await emu.exchange(code))["code"] == 40113

    async def test_code_of_another_app_is_40113(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(apps=[DEFAULT_APP, OTHER_APP])
        code = await emu.advertiser_code()
        body = await emu.exchange(code, app_id="other-app", secret="other-secret")
        assert body["code"] == 40113
        assert (await emu.exchange(code))["code"] == 0

    async def test_tt_user_code_is_40115(self, emu: Emulator) -> None:
        body = await emu.exchange(await emu.account_code())
        assert body["code"] == 40115

    async def test_unknown_code_is_40110(self, emu: Emulator) -> None:
        assert (await emu.exchange("0" * 40))["code"] == 40110

    async def test_code_is_single_use(self, emu: Emulator) -> None:
        code = await emu.advertiser_code()
        assert (await emu.exchange(code))["code"] == 0
        assert (await emu.exchange(code))["code"] == 40110

    async def test_code_lives_one_hour(self, emu: Emulator) -> None:
        fresh, stale = await emu.advertiser_code(), await emu.advertiser_code()
        await emu.advance(3500)
        assert (await emu.exchange(fresh))["code"] == 0
        await emu.advance(100)
        assert (await emu.exchange(stale))["code"] == 40110

    async def test_expired_code_error_switch(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(expired_code_error=40115)
        code = await emu.advertiser_code()
        await emu.advance(3600)
        assert (await emu.exchange(code))["code"] == 40115

    async def test_reauthorize_issues_new_token_and_keeps_old(self, emu: Emulator) -> None:
        first = await emu.advertiser_token(emulator_advertisers=ADV_1)
        second = await emu.advertiser_token(emulator_advertisers=ADV_2)
        assert first["access_token"] != second["access_token"]
        assert (await emu.advertisers_of(first["access_token"]))["code"] == 0

    async def test_reauthorize_same_token_switch(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(reauthorize_returns_same_token=True)
        first = await emu.advertiser_token(emulator_advertisers=ADV_1)
        second = await emu.advertiser_token(emulator_advertisers=ADV_2)
        assert second["access_token"] == first["access_token"]
        assert second["advertiser_ids"] == [ADV_1, ADV_2]


class TestAdvertiserGet:
    async def test_lists_granted_advertisers_with_names(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token(emulator_advertisers=f"{ADV_1},{ADV_3}"))[
            "access_token"
        ]
        body = await emu.advertisers_of(token)
        assert body["code"] == 0
        assert body["data"] == {
            "list": [
                {"advertiser_id": ADV_1, "advertiser_name": "Acme Shoes"},
                {"advertiser_id": ADV_3, "advertiser_name": "Cobalt Bikes"},
            ]
        }

    async def test_missing_header_is_40104(self, emu: Emulator) -> None:
        body = await emu.api("oauth2/advertiser/get/", params={"app_id": APP_ID, "secret": SECRET})
        assert body["code"] == 40104

    async def test_unknown_token_is_40105(self, emu: Emulator) -> None:
        assert (await emu.advertisers_of("f" * 40))["code"] == 40105

    async def test_missing_secret_is_40002(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        body = await emu.api("oauth2/advertiser/get/", params={"app_id": APP_ID}, token=token)
        assert body["code"] == 40002

    async def test_wrong_secret_is_40101(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        body = await emu.api(
            "oauth2/advertiser/get/", params={"app_id": APP_ID, "secret": "x"}, token=token
        )
        assert body["code"] == 40101

    async def test_token_of_another_app_is_40113(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(apps=[DEFAULT_APP, OTHER_APP])
        token = (await emu.advertiser_token())["access_token"]
        body = await emu.api(
            "oauth2/advertiser/get/",
            params={"app_id": "other-app", "secret": "other-secret"},
            token=token,
        )
        assert body["code"] == 40113

    async def test_sandbox_is_40014(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(sandbox=True)
        token = (await emu.advertiser_token())["access_token"]
        assert (await emu.advertisers_of(token))["code"] == 40014

    async def test_reflects_grant_and_cancel(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        await emu.admin("advertisers/grant", {"access_token": token, "advertiser_id": ADV_2})
        listed = (await emu.advertisers_of(token))["data"]["list"]
        assert [row["advertiser_id"] for row in listed] == [ADV_1, ADV_2]

        await emu.admin("advertisers/cancel", {"access_token": token, "advertiser_id": ADV_1})
        listed = (await emu.advertisers_of(token))["data"]["list"]
        assert [row["advertiser_id"] for row in listed] == [ADV_2]

    async def test_cancelling_the_last_advertiser_kills_the_token(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        await emu.admin("advertisers/cancel", {"app_id": APP_ID, "advertiser_id": ADV_1})
        assert (await emu.advertisers_of(token))["code"] == 40105

    async def test_cancel_whole_authorization(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        result = await emu.admin("advertisers/cancel", {"access_token": token})
        assert result["tokens"][0]["status"] == "cancelled"
        assert (await emu.advertisers_of(token))["code"] == 40105

    async def test_blocking_the_app_breaks_its_tokens(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        await emu.admin(f"apps/{APP_ID}/block", {})
        assert (await emu.advertisers_of(token))["code"] == 40113


class TestRevokeToken:
    async def _revoke(self, emu: Emulator, token: str, **overrides: str) -> dict[str, object]:
        fields = {"app_id": APP_ID, "secret": SECRET, "access_token": token, **overrides}
        return await emu.api("oauth2/revoke_token/", fields)

    async def test_revoke_then_every_use_is_40105(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        body = await self._revoke(emu, token)
        assert (body["code"], body["data"]) == (0, {})
        assert (await emu.advertisers_of(token))["code"] == 40105
        assert (await self._revoke(emu, token))["code"] == 40105

    async def test_revoke_data_switch(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(revoke_data="app")
        token = (await emu.advertiser_token(emulator_advertisers=ADV_2))["access_token"]
        body = await self._revoke(emu, token)
        assert body["data"] == {"app_id": APP_ID, "advertiser_ids": [ADV_2]}

    async def test_unknown_token_is_40105(self, emu: Emulator) -> None:
        assert (await self._revoke(emu, "a" * 40))["code"] == 40105

    async def test_token_of_another_app_is_40113(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(apps=[DEFAULT_APP, OTHER_APP])
        token = (await emu.advertiser_token())["access_token"]
        body = await self._revoke(emu, token, app_id="other-app", secret="other-secret")
        assert body["code"] == 40113
        assert (await emu.advertisers_of(token))["code"] == 0

    async def test_missing_access_token_is_40002(self, emu: Emulator) -> None:
        body = await emu.api("oauth2/revoke_token/", {"app_id": APP_ID, "secret": SECRET})
        assert body["code"] == 40002


class TestNoRefreshForLongTermTokens:
    async def test_refresh_endpoint_answers_40107(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        body = await emu.api(
            "oauth2/refresh_token/",
            {"app_id": APP_ID, "secret": SECRET, "refresh_token": token},
        )
        assert body["code"] == 40107

    async def test_refresh_endpoint_404_switch(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(refresh_endpoint_mode="404")
        response = await emu.client.post("/open_api/v1.3/oauth2/refresh_token/", json={})
        assert (response.status_code, response.text) == (404, "404 page not found")

    async def test_long_term_token_at_tt_user_refresh_is_40107(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        assert (await emu.refresh(token))["code"] == 40107


class TestAdvertiserInfo:
    async def _info(self, emu: Emulator, token: str | None, ids: str) -> dict[str, object]:
        response = await emu.client.get(
            "/open_api/v1.3/advertiser/info/",
            params={"advertiser_ids": ids},
            headers={"Access-Token": token} if token else {},
        )
        return check_envelope(response)

    async def test_lists_requested_advertisers(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        body = await self._info(emu, token, f'["{ADV_2}"]')
        data: Any = body["data"]
        (row,) = data["list"]
        assert (row["advertiser_id"], row["name"]) == (ADV_2, "Bluebird Coffee")

    async def test_advertiser_outside_grant_is_40001(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        assert (await self._info(emu, token, f'["{ADV_1}", "{ADV_3}"]'))["code"] == 40001

    async def test_outside_grant_error_switch(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(outside_grant_error=40106)
        token = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        assert (await self._info(emu, token, f'["{ADV_2}"]'))["code"] == 40106

    async def test_dead_token_is_40105(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        await emu.admin("advertisers/cancel", {"access_token": token})
        assert (await self._info(emu, token, f'["{ADV_1}"]'))["code"] == 40105

    async def test_missing_token_is_40104(self, emu: Emulator) -> None:
        assert (await self._info(emu, None, f'["{ADV_1}"]'))["code"] == 40104

    @pytest.mark.parametrize("ids", ["7100000000000000001", "[]", "[7100000000000000001]"])
    async def test_malformed_advertiser_ids_is_40002(self, emu: Emulator, ids: str) -> None:
        token = (await emu.advertiser_token())["access_token"]
        assert (await self._info(emu, token, ids))["code"] == 40002
