"""TikTok-account (tt_user) tokens: exchange, refresh with rotation, expiry, revoke, token info."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import APP_ID, DEFAULT_APP, OPEN_ID, OTHER_APP, SECRET, Emulator, MakeEmulator

YEAR = 31536000
DAY = 86400


async def _token_info(emu: Emulator, access_token: str) -> dict[str, Any]:
    return await emu.api(
        "tt_user/token_info/get/", {"app_id": APP_ID, "access_token": access_token}
    )


async def _revoke(emu: Emulator, access_token: str) -> dict[str, Any]:
    return await emu.api(
        "tt_user/oauth2/revoke/",
        {"client_id": APP_ID, "client_secret": SECRET, "access_token": access_token},
    )


class TestExchange:
    async def test_success_shape(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        assert set(data) == {
            "access_token",
            "token_type",
            "scope",
            "expires_in",
            "refresh_token",
            "refresh_token_expires_in",
            "open_id",
        }
        assert data["access_token"].startswith("act.")
        assert data["refresh_token"].startswith("rft.")
        assert data["token_type"] == "Bearer"
        assert data["scope"] == "user.info.basic,video.list"
        assert data["expires_in"] == DAY
        assert data["refresh_token_expires_in"] == YEAR
        assert data["open_id"] == OPEN_ID

    async def test_wrong_grant_type_is_40108(self, emu: Emulator) -> None:
        body = await emu.account_exchange(await emu.account_code(), grant_type="refresh_token")
        assert body["code"] == 40108

    @pytest.mark.parametrize(
        "missing", ["client_id", "client_secret", "grant_type", "auth_code", "redirect_uri"]
    )
    async def test_missing_field_is_40002(self, emu: Emulator, missing: str) -> None:
        body = await emu.account_exchange(await emu.account_code(), **{missing: ""})
        assert body["code"] == 40002

    async def test_redirect_uri_mismatch_is_40101(self, emu: Emulator) -> None:
        code = await emu.account_code()
        body = await emu.account_exchange(code, redirect_uri="http://localhost:8000/callback")
        assert body["code"] == 40101
        assert (await emu.account_exchange(code))["code"] == 0

    async def test_wrong_secret_is_40101(self, emu: Emulator) -> None:
        body = await emu.account_exchange(await emu.account_code(), client_secret="nope")
        assert body["code"] == 40101

    async def test_advertiser_code_is_40115(self, emu: Emulator) -> None:
        body = await emu.account_exchange(await emu.advertiser_code())
        assert body["code"] == 40115

    async def test_code_is_single_use(self, emu: Emulator) -> None:
        code = await emu.account_code()
        assert (await emu.account_exchange(code))["code"] == 0
        assert (await emu.account_exchange(code))["code"] == 40110

    async def test_expired_code(self, emu: Emulator) -> None:
        code = await emu.account_code()
        await emu.advance(3600)
        assert (await emu.account_exchange(code))["code"] == 40110


class TestRefresh:
    async def test_rotation_replaces_both_tokens(self, emu: Emulator) -> None:
        first = await emu.account_tokens()
        body = await emu.refresh(first["refresh_token"])
        assert body["code"] == 0
        second = body["data"]
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        assert second["open_id"] == OPEN_ID
        assert second["expires_in"] == DAY

        assert (await emu.refresh(first["refresh_token"]))["code"] == 40107
        assert (await emu.refresh(second["refresh_token"]))["code"] == 0

    async def test_without_rotation_the_refresh_token_stays(
        self, make_emulator: MakeEmulator
    ) -> None:
        emu = await make_emulator(rotate_refresh_tokens=False)
        first = await emu.account_tokens()
        second = (await emu.refresh(first["refresh_token"]))["data"]
        assert second["refresh_token"] == first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert (await emu.refresh(first["refresh_token"]))["code"] == 0

    async def test_refresh_token_lifetime_counts_from_the_original_grant(
        self, emu: Emulator
    ) -> None:
        data = await emu.account_tokens()
        await emu.advance(3600)
        data = (await emu.refresh(data["refresh_token"]))["data"]
        assert data["refresh_token_expires_in"] == YEAR - 3600
        await emu.advance(DAY)
        data = (await emu.refresh(data["refresh_token"]))["data"]
        assert data["refresh_token_expires_in"] == YEAR - 3600 - DAY

    async def test_expired_refresh_token_is_40103(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(refresh_token_ttl=5 * DAY)
        data = await emu.account_tokens()
        await emu.advance(4 * DAY)
        data = (await emu.refresh(data["refresh_token"]))["data"]
        assert data["refresh_token_expires_in"] == DAY
        await emu.advance(DAY)
        assert (await emu.refresh(data["refresh_token"]))["code"] == 40103

    async def test_wrong_grant_type_is_40108(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        body = await emu.refresh(data["refresh_token"], grant_type="authorization_code")
        assert body["code"] == 40108

    async def test_unknown_refresh_token_is_40107(self, emu: Emulator) -> None:
        assert (await emu.refresh("rft.unknown"))["code"] == 40107

    async def test_refresh_token_of_another_app_is_40113(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(apps=[DEFAULT_APP, OTHER_APP])
        data = await emu.account_tokens()
        body = await emu.refresh(
            data["refresh_token"], client_id="other-app", client_secret="other-secret"
        )
        assert body["code"] == 40113


class TestAccessTokens:
    async def test_token_info(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        body = await _token_info(emu, data["access_token"])
        assert body["data"] == {
            "app_id": APP_ID,
            "creator_id": OPEN_ID,
            "scope": "user.info.basic,video.list",
        }

    async def test_access_token_expires_after_a_day(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        await emu.advance(DAY - 10)
        assert (await _token_info(emu, data["access_token"]))["code"] == 0
        await emu.advance(10)
        assert (await _token_info(emu, data["access_token"]))["code"] == 40102
        fresh = (await emu.refresh(data["refresh_token"]))["data"]
        assert (await _token_info(emu, fresh["access_token"]))["code"] == 0

    async def test_unknown_token_is_40105(self, emu: Emulator) -> None:
        assert (await _token_info(emu, "act.unknown"))["code"] == 40105

    async def test_revoke_kills_the_grant(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        body = await _revoke(emu, data["access_token"])
        assert (body["code"], body["data"]) == (0, {})
        assert (await _token_info(emu, data["access_token"]))["code"] == 40105
        assert (await emu.refresh(data["refresh_token"]))["code"] == 40107
        assert (await _revoke(emu, data["access_token"]))["code"] == 40105

    async def test_token_info_of_another_app_is_40113(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(apps=[DEFAULT_APP, OTHER_APP])
        data = await emu.account_tokens()
        body = await emu.api(
            "tt_user/token_info/get/",
            {"app_id": "other-app", "access_token": data["access_token"]},
        )
        assert body["code"] == 40113

    async def test_each_approval_is_a_separate_grant(self, emu: Emulator) -> None:
        first = await emu.account_tokens()
        second = await emu.account_tokens()
        assert first["refresh_token"] != second["refresh_token"]
        await _revoke(emu, first["access_token"])
        assert (await emu.refresh(second["refresh_token"]))["code"] == 0
        state = await emu.admin("state")
        assert [grant["status"] for grant in state["account_grants"]] == ["revoked", "active"]
