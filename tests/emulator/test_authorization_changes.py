"""Authorizations changing under a client: advertiser lists, cancellation, the same token on
re-authorization, tt_user revocation, short access tokens and a hanging refresh."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from .helpers import (
    ADV_1,
    ADV_2,
    ADV_3,
    APP_ID,
    DEFAULT_APP,
    OTHER_APP,
    SECRET,
    Emulator,
    MakeEmulator,
    callback_params,
    check_envelope,
)

REFRESH = "tt_user/oauth2/refresh_token/"


async def _listed(emu: Emulator, token: str) -> list[str]:
    body = await emu.advertisers_of(token)
    assert body["code"] == 0, body
    return [row["advertiser_id"] for row in body["data"]["list"]]


async def _info(emu: Emulator, token: str, advertiser_id: str) -> int:
    response = await emu.client.get(
        "/open_api/v1.3/advertiser/info/",
        params={"advertiser_ids": f'["{advertiser_id}"]'},
        headers={"Access-Token": token},
    )
    code: int = check_envelope(response)["code"]
    return code


async def _revoke_long_term(emu: Emulator, token: str) -> int:
    fields = {"app_id": APP_ID, "secret": SECRET, "access_token": token}
    code: int = (await emu.api("oauth2/revoke_token/", fields))["code"]
    return code


async def _token_info(emu: Emulator, access_token: str) -> int:
    body = await emu.api(
        "tt_user/token_info/get/", {"app_id": APP_ID, "access_token": access_token}
    )
    code: int = body["code"]
    return code


async def _revoke_user(emu: Emulator, access_token: str) -> dict[str, Any]:
    return await emu.api(
        "tt_user/oauth2/revoke/",
        {"client_id": APP_ID, "client_secret": SECRET, "access_token": access_token},
    )


class TestAdvertiserListOfALiveToken:
    async def test_adding_an_advertiser_shows_in_advertiser_get(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        assert await _info(emu, token, ADV_3) == 40001

        shown = await emu.admin(
            "advertisers/grant", {"access_token": token, "advertiser_id": ADV_3}
        )

        assert shown["access_token"] == token
        assert shown["advertiser_ids"] == [ADV_1, ADV_3]
        body = await emu.advertisers_of(token)
        assert body["data"] == {
            "list": [
                {"advertiser_id": ADV_1, "advertiser_name": "Acme Shoes"},
                {"advertiser_id": ADV_3, "advertiser_name": "Cobalt Bikes"},
            ]
        }
        assert await _info(emu, token, ADV_3) == 0

    async def test_granting_a_listed_advertiser_changes_nothing(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        await emu.admin("advertisers/grant", {"access_token": token, "advertiser_id": ADV_1})
        assert await _listed(emu, token) == [ADV_1]

    async def test_removing_an_advertiser_keeps_the_token_alive(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token(emulator_advertisers=f"{ADV_1},{ADV_2}"))[
            "access_token"
        ]

        result = await emu.admin(
            "advertisers/cancel", {"access_token": token, "advertiser_id": ADV_1}
        )

        (shown,) = result["tokens"]
        assert (shown["advertiser_ids"], shown["status"]) == ([ADV_2], "active")
        assert await _listed(emu, token) == [ADV_2]
        assert await _info(emu, token, ADV_1) == 40001
        assert await _info(emu, token, ADV_2) == 0

    async def test_removing_by_app_touches_every_token_holding_the_advertiser(
        self, emu: Emulator
    ) -> None:
        first = (await emu.advertiser_token(emulator_advertisers=f"{ADV_1},{ADV_2}"))[
            "access_token"
        ]
        second = (await emu.advertiser_token(emulator_advertisers=f"{ADV_2},{ADV_3}"))[
            "access_token"
        ]
        untouched = (await emu.advertiser_token(emulator_advertisers=ADV_3))["access_token"]

        result = await emu.admin("advertisers/cancel", {"app_id": APP_ID, "advertiser_id": ADV_2})

        assert [shown["access_token"] for shown in result["tokens"]] == [first, second]
        assert await _listed(emu, first) == [ADV_1]
        assert await _listed(emu, second) == [ADV_3]
        assert await _listed(emu, untouched) == [ADV_3]


class TestCancelWholeAuthorization:
    async def test_token_answers_40105_everywhere(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token(emulator_advertisers=f"{ADV_1},{ADV_2}"))[
            "access_token"
        ]
        other = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]

        await emu.admin("advertisers/cancel", {"access_token": token})

        assert (await emu.advertisers_of(token))["code"] == 40105
        assert await _info(emu, token, ADV_1) == 40105
        assert await _revoke_long_term(emu, token) == 40105
        assert await _listed(emu, other) == [ADV_1]
        state = await emu.admin("state")
        statuses = {row["access_token"]: row["status"] for row in state["advertiser_tokens"]}
        assert statuses == {token: "cancelled", other: "active"}
        assert [(rev["token"], rev["reason"]) for rev in state["revocations"]] == [
            (token, "cancelled")
        ]

    async def test_cancel_by_app_kills_all_its_tokens(self, emu: Emulator) -> None:
        tokens = [(await emu.advertiser_token())["access_token"] for _ in range(2)]
        result = await emu.admin("advertisers/cancel", {"app_id": APP_ID})
        assert [shown["status"] for shown in result["tokens"]] == ["cancelled", "cancelled"]
        for token in tokens:
            assert (await emu.advertisers_of(token))["code"] == 40105

    async def test_a_cancelled_token_cannot_be_changed(self, emu: Emulator) -> None:
        token = (await emu.advertiser_token())["access_token"]
        await emu.admin("advertisers/cancel", {"access_token": token})
        for path, body in (
            ("advertisers/grant", {"access_token": token, "advertiser_id": ADV_1}),
            ("advertisers/cancel", {"access_token": token}),
        ):
            response = await emu.client.post("/_emulator/" + path, json=body)
            assert response.status_code == 404, path


class TestSameTokenOnReauthorization:
    async def test_reauthorizing_returns_the_same_token_with_the_union(
        self, make_emulator: MakeEmulator
    ) -> None:
        emu = await make_emulator(reauthorize_returns_same_token=True)
        first = await emu.advertiser_token(emulator_advertisers=ADV_1)
        second = await emu.advertiser_token(emulator_advertisers=f"{ADV_1},{ADV_2}")

        assert second["access_token"] == first["access_token"]
        assert second["advertiser_ids"] == [ADV_1, ADV_2]
        assert await _listed(emu, first["access_token"]) == [ADV_1, ADV_2]
        (shown,) = (await emu.admin("state"))["advertiser_tokens"]
        assert (shown["access_token"], shown["status"]) == (first["access_token"], "active")

    async def test_same_selection_again_lists_each_advertiser_once(
        self, make_emulator: MakeEmulator
    ) -> None:
        emu = await make_emulator(reauthorize_returns_same_token=True)
        first = await emu.advertiser_token(emulator_advertisers=f"{ADV_1},{ADV_2}")
        second = await emu.advertiser_token(emulator_advertisers=ADV_2)
        assert second == first

    async def test_scope_follows_the_latest_consent(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(reauthorize_returns_same_token=True)
        first = await emu.advertiser_token(scope="[100,200]")
        second = await emu.advertiser_token()
        assert second["access_token"] == first["access_token"]
        assert (first["scope"], second["scope"]) == ([100, 200], [4, 100, 200, 300])

    async def test_a_dead_token_is_not_handed_out_again(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(reauthorize_returns_same_token=True)
        revoked = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        assert await _revoke_long_term(emu, revoked) == 0
        cancelled = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        await emu.admin("advertisers/cancel", {"access_token": cancelled})
        fresh = await emu.advertiser_token(emulator_advertisers=ADV_2)

        assert len({revoked, cancelled, fresh["access_token"]}) == 3
        assert fresh["advertiser_ids"] == [ADV_2]
        assert (await emu.advertisers_of(revoked))["code"] == 40105
        assert (await emu.advertisers_of(cancelled))["code"] == 40105

    async def test_tokens_of_other_apps_are_not_reused(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(
            apps=[DEFAULT_APP, OTHER_APP], reauthorize_returns_same_token=True
        )
        ours = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
        consent = await emu.client.get(
            "/portal/auth",
            params={
                "app_id": "other-app",
                "redirect_uri": "http://other.example/cb",
                "emulator_decision": "approve",
                "emulator_advertisers": ADV_1,
            },
        )
        body = await emu.exchange(
            callback_params(consent)["auth_code"], app_id="other-app", secret="other-secret"
        )
        assert body["code"] == 0
        assert body["data"]["access_token"] != ours

    async def test_off_by_default(self, emu: Emulator) -> None:
        first = await emu.advertiser_token(emulator_advertisers=ADV_1)
        second = await emu.advertiser_token(emulator_advertisers=ADV_1)
        assert second["access_token"] != first["access_token"]
        assert await _listed(emu, first["access_token"]) == [ADV_1]
        assert await _listed(emu, second["access_token"]) == [ADV_1]


class TestUserRevocation:
    async def test_revoke_kills_every_token_of_the_authorization(self, emu: Emulator) -> None:
        first = await emu.account_tokens()
        second = (await emu.refresh(first["refresh_token"]))["data"]
        third = (await emu.refresh(second["refresh_token"]))["data"]
        other = await emu.account_tokens()

        body = await _revoke_user(emu, second["access_token"])

        assert (body["code"], body["data"]) == (0, {})
        for data in (first, second, third):
            assert await _token_info(emu, data["access_token"]) == 40105
            assert (await _revoke_user(emu, data["access_token"]))["code"] == 40105
            assert (await emu.refresh(data["refresh_token"]))["code"] == 40107
        assert await _token_info(emu, other["access_token"]) == 0
        assert (await emu.refresh(other["refresh_token"]))["code"] == 0

        state = await emu.admin("state")
        assert [grant["status"] for grant in state["account_grants"]] == ["revoked", "active"]
        (revocation,) = state["revocations"]
        assert (revocation["kind"], revocation["token"], revocation["reason"]) == (
            "tt_user_grant",
            third["refresh_token"],
            "revoked",
        )

    async def test_without_rotation_the_kept_refresh_token_dies_too(
        self, make_emulator: MakeEmulator
    ) -> None:
        emu = await make_emulator(rotate_refresh_tokens=False)
        data = await emu.account_tokens()
        assert (await emu.refresh(data["refresh_token"]))["code"] == 0
        assert (await _revoke_user(emu, data["access_token"]))["code"] == 0
        assert (await emu.refresh(data["refresh_token"]))["code"] == 40107

    async def test_wrong_secret_revokes_nothing(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        body = await emu.api(
            "tt_user/oauth2/revoke/",
            {"client_id": APP_ID, "client_secret": "nope", "access_token": data["access_token"]},
        )
        assert body["code"] == 40101
        assert await _token_info(emu, data["access_token"]) == 0


class TestShortAccessTokens:
    async def test_access_token_ttl_sets_expires_in_and_expiry(
        self, make_emulator: MakeEmulator
    ) -> None:
        emu = await make_emulator(access_token_ttl=60)
        data = await emu.account_tokens()
        assert data["expires_in"] == 60
        await emu.advance(59)
        assert await _token_info(emu, data["access_token"]) == 0
        await emu.advance(1)
        assert await _token_info(emu, data["access_token"]) == 40102

        fresh = (await emu.refresh(data["refresh_token"]))["data"]
        assert fresh["expires_in"] == 60
        assert await _token_info(emu, fresh["access_token"]) == 0
        (grant,) = (await emu.admin("state"))["account_grants"]
        assert [token["expired"] for token in grant["access_tokens"]] == [True, False]
        assert grant["status"] == "active"


class TestHangingRefresh:
    async def test_held_refresh_is_visible_and_completes_on_release(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        await emu.admin("faults", {"endpoint": REFRESH, "responses": [{"hang": True}]})
        call = asyncio.create_task(emu.refresh(data["refresh_token"]))

        waited = await emu.admin("hanging", at_least=1, endpoint=REFRESH, timeout=5)
        assert (waited["reached"], waited["hanging"]) == (True, 1)
        assert (await emu.admin("state"))["hanging"] == 1
        log = await emu.admin("calls", endpoint=REFRESH)
        assert log["count"] == 1
        (held,) = log["calls"]
        assert held["fields"]["refresh_token"] == data["refresh_token"]
        assert held["code"] is None
        assert held["fault"] == {"hang": True}
        assert not call.done()

        assert await emu.admin("hanging/release", {"endpoint": REFRESH}) == {"released": 1}
        body = await call
        assert body["code"] == 0
        (answered,) = (await emu.admin("calls", endpoint=REFRESH))["calls"]
        assert (answered["code"], answered["http_status"]) == (0, 200)

    async def test_a_refresh_racing_a_held_one_rotates_first(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        await emu.admin("faults", {"endpoint": REFRESH, "responses": [{"hang": True}]})
        held = asyncio.create_task(emu.refresh(data["refresh_token"]))
        await emu.admin("hanging", at_least=1, endpoint=REFRESH, timeout=5)

        assert (await emu.refresh(data["refresh_token"]))["code"] == 0
        await emu.admin("hanging/release", {})
        assert (await held)["code"] == 40107

    async def test_refresh_calls_per_authorization_from_state_and_call_log(
        self, emu: Emulator
    ) -> None:
        busy = await emu.account_tokens()
        quiet = await emu.account_tokens()
        latest = busy
        for _ in range(3):
            latest = (await emu.refresh(latest["refresh_token"]))["data"]
        await emu.refresh(busy["refresh_token"])  # a rotated-out token: 40107, still a call
        await emu.refresh(quiet["refresh_token"])

        state = await emu.admin("state")
        log = (await emu.admin("calls", endpoint=REFRESH))["calls"]
        per_refresh_token = Counter(call["fields"]["refresh_token"] for call in log)
        per_grant = {
            grant["grant_id"]: sum(
                per_refresh_token[token]
                for token in [*grant["retired_refresh_tokens"], grant["refresh_token"]]
            )
            for grant in state["account_grants"]
        }
        assert per_refresh_token[busy["refresh_token"]] == 2
        assert per_grant == {1: 4, 2: 1}
        assert state["calls"][REFRESH] == 5
