"""The /_emulator/ control API: state, clock, blocking apps, cancel/grant, reset."""

from __future__ import annotations

import time

from .helpers import ADV_1, APP_ID, SECRET, Emulator, MakeEmulator


class TestState:
    async def test_shows_codes_tokens_grants_and_revocations(self, emu: Emulator) -> None:
        unused = await emu.advertiser_code()
        token = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        await emu.api(
            "oauth2/revoke_token/", {"app_id": APP_ID, "secret": SECRET, "access_token": token}
        )
        account = await emu.account_tokens()

        state = await emu.admin("state")

        codes = {code["code"]: code for code in state["codes"]}
        assert codes[unused]["used"] is False
        assert codes[unused]["flow"] == "advertiser"
        assert sum(code["used"] for code in state["codes"]) == 2
        (advertiser_token,) = state["advertiser_tokens"]
        assert advertiser_token["access_token"] == token
        assert advertiser_token["advertiser_ids"] == [ADV_1]
        assert advertiser_token["status"] == "revoked"
        (grant,) = state["account_grants"]
        assert grant["refresh_token"] == account["refresh_token"]
        assert grant["access_tokens"][0]["access_token"] == account["access_token"]
        assert grant["status"] == "active"
        assert state["revocations"][0]["token"] == token
        assert state["revocations"][0]["reason"] == "revoked"
        assert state["apps"][0]["app_id"] == APP_ID
        assert len(state["advertisers"]) == 3
        assert state["calls"]["oauth2/revoke_token/"] == 1

    async def test_secrets_are_not_shown(self, emu: Emulator) -> None:
        response = await emu.client.get("/_emulator/state")
        assert SECRET not in response.text

    async def test_rotated_refresh_tokens_are_listed(self, emu: Emulator) -> None:
        first = await emu.account_tokens()
        second = (await emu.refresh(first["refresh_token"]))["data"]
        (grant,) = (await emu.admin("state"))["account_grants"]
        assert grant["refresh_token"] == second["refresh_token"]
        assert grant["retired_refresh_tokens"] == [first["refresh_token"]]
        assert len(grant["access_tokens"]) == 2


class TestClock:
    async def test_read_and_advance(self, emu: Emulator) -> None:
        before = await emu.admin("clock")
        after = await emu.admin("clock/advance", {"seconds": 7200})
        assert after["offset"] == before["offset"] + 7200
        assert 7200 <= after["now"] - before["now"] < 7205
        assert after["iso"].endswith("Z")

    async def test_cannot_go_back(self, emu: Emulator) -> None:
        response = await emu.client.post("/_emulator/clock/advance", json={"seconds": -1})
        assert response.status_code == 400

    async def test_start_offset(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(clock_offset=86400)
        clock = await emu.admin("clock")
        assert clock["offset"] == 86400
        assert clock["now"] - time.time() > 86000


class TestApps:
    async def test_block_and_unblock(self, emu: Emulator) -> None:
        code = await emu.advertiser_code()
        blocked = await emu.admin(f"apps/{APP_ID}/block", {})
        assert blocked["blocked"] is True
        assert "secret" not in blocked
        assert (await emu.exchange(code))["code"] == 40113
        await emu.admin(f"apps/{APP_ID}/block", {"blocked": False})
        assert (await emu.exchange(code))["code"] == 0

    async def test_unknown_app_is_404(self, emu: Emulator) -> None:
        response = await emu.client.post("/_emulator/apps/nope/block", json={})
        assert response.status_code == 404


class TestAdvertiserHooks:
    async def test_cancel_needs_a_selector(self, emu: Emulator) -> None:
        response = await emu.client.post("/_emulator/advertisers/cancel", json={})
        assert response.status_code == 400

    async def test_cancel_unknown_token_is_404(self, emu: Emulator) -> None:
        response = await emu.client.post(
            "/_emulator/advertisers/cancel", json={"access_token": "x"}
        )
        assert response.status_code == 404

    async def test_grant_unknown_advertiser_is_404(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        response = await emu.client.post(
            "/_emulator/advertisers/grant", json={"access_token": token, "advertiser_id": "1"}
        )
        assert response.status_code == 404


class TestReset:
    async def test_forgets_everything_but_config(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        await emu.admin(f"apps/{APP_ID}/block", {})
        await emu.admin("faults", {"endpoint": "oauth2/access_token/", "responses": [{"code": 1}]})
        await emu.advance(1000)

        assert await emu.admin("reset", {}) == {"reset": True}

        state = await emu.admin("state")
        assert state["codes"] == state["advertiser_tokens"] == state["account_grants"] == []
        assert state["faults"] == {}
        assert state["calls"] == {}
        assert state["clock"]["offset"] == 0
        assert state["apps"][0]["blocked"] is False
        assert (await emu.advertisers_of(token))["code"] == 40105
        assert (await emu.advertiser_token())["access_token"]
