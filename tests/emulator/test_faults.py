"""Fault injection (forced codes, raw HTTP errors, held calls) and the call log."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from .helpers import APP_ID, SECRET, Emulator, check_envelope

ACCESS_TOKEN = "oauth2/access_token/"


async def _faults(emu: Emulator, endpoint: str, *responses: dict[str, Any]) -> Any:
    return await emu.admin("faults", {"endpoint": endpoint, "responses": list(responses)})


class TestForcedResponses:
    async def test_codes_are_consumed_in_order(self, emu: Emulator) -> None:
        queued = await _faults(emu, ACCESS_TOKEN, {"code": 50000}, {"code": 40100})
        assert queued == {"endpoint": ACCESS_TOKEN, "queued": 2}
        code = await emu.advertiser_code()
        first = await emu.exchange(code)
        second = await emu.exchange(code)
        third = await emu.exchange(code)
        assert (first["code"], first["data"]) == (50000, {})
        assert first["message"]
        assert second["code"] == 40100
        assert third["code"] == 0

    async def test_custom_message(self, emu: Emulator) -> None:
        await _faults(emu, ACCESS_TOKEN, {"code": 60001, "message": "maintenance"})
        body = await emu.api(ACCESS_TOKEN, {})
        assert (body["code"], body["message"]) == (60001, "maintenance")

    async def test_http_status_with_html_body(self, emu: Emulator) -> None:
        await _faults(emu, ACCESS_TOKEN, {"http_status": 504})
        response = await emu.client.post("/open_api/v1.3/" + ACCESS_TOKEN, json={})
        assert response.status_code == 504
        assert response.headers["content-type"].startswith("text/html")
        assert "504" in response.text
        assert "x-tt-logid" not in response.headers

    async def test_http_status_with_custom_body(self, emu: Emulator) -> None:
        await _faults(
            emu,
            ACCESS_TOKEN,
            {"http_status": 429, "body": "slow down", "content_type": "text/plain"},
        )
        response = await emu.client.post("/open_api/v1.3/" + ACCESS_TOKEN, json={})
        assert (response.status_code, response.text) == (429, "slow down")

    async def test_queues_are_per_endpoint(self, emu: Emulator) -> None:
        await _faults(emu, "tt_user/oauth2/refresh_token/", {"code": 51001})
        assert (await emu.api(ACCESS_TOKEN, {}))["code"] == 40002
        assert (await emu.refresh("rft.x"))["code"] == 51001

    async def test_malformed_instruction_is_refused(self, emu: Emulator) -> None:
        for instruction in ({}, {"code": 50000, "hang": True}, {"hang": False}):
            response = await emu.client.post(
                "/_emulator/faults", json={"endpoint": ACCESS_TOKEN, "responses": [instruction]}
            )
            assert response.status_code == 400, instruction
            assert "error" in response.json()

    async def test_unknown_endpoint_is_refused(self, emu: Emulator) -> None:
        response = await emu.client.post(
            "/_emulator/faults",
            json={"endpoint": "oauth2/access_token", "responses": [{"code": 50000}]},
        )
        assert response.status_code == 404

    async def test_pending_faults_are_visible(self, emu: Emulator) -> None:
        await _faults(emu, ACCESS_TOKEN, {"code": 50002}, {"hang": True})
        state = await emu.admin("state")
        assert state["faults"] == {ACCESS_TOKEN: [{"code": 50002}, {"hang": True}]}


class TestHang:
    async def test_held_call_is_answered_normally_after_release(self, emu: Emulator) -> None:
        await _faults(emu, ACCESS_TOKEN, {"hang": True})
        code = await emu.advertiser_code()
        call = asyncio.create_task(emu.exchange(code))

        waited = await emu.admin("hanging", at_least=1, timeout=5)
        assert waited["reached"] is True
        assert waited["hanging"] == 1
        assert waited["calls"][0]["endpoint"] == ACCESS_TOKEN
        assert not call.done()

        assert await emu.admin("hanging/release", {}) == {"released": 1}
        body = await call
        assert body["code"] == 0
        assert (await emu.admin("state"))["hanging"] == 0

    async def test_hang_then_forced_answer(self, emu: Emulator) -> None:
        await _faults(emu, ACCESS_TOKEN, {"hang": True, "then": {"http_status": 502}})
        call = asyncio.create_task(
            emu.client.post("/open_api/v1.3/" + ACCESS_TOKEN, json={"app_id": APP_ID})
        )
        assert (await emu.admin("hanging", at_least=1, timeout=5))["reached"] is True
        await emu.admin("hanging/release", {"endpoint": ACCESS_TOKEN})
        response: httpx.Response = await call
        assert response.status_code == 502

    async def test_release_by_endpoint_and_count(self, emu: Emulator) -> None:
        await _faults(emu, ACCESS_TOKEN, {"hang": True}, {"hang": True})
        await _faults(emu, "tt_user/oauth2/refresh_token/", {"hang": True})
        calls = [
            asyncio.create_task(emu.api(ACCESS_TOKEN, {})),
            asyncio.create_task(emu.api(ACCESS_TOKEN, {})),
            asyncio.create_task(emu.refresh("rft.x")),
        ]
        waited = await emu.admin("hanging", at_least=2, endpoint=ACCESS_TOKEN, timeout=5)
        assert waited["reached"] is True
        assert (await emu.admin("hanging", at_least=3, timeout=5))["hanging"] == 3

        assert await emu.admin("hanging/release", {"endpoint": ACCESS_TOKEN, "count": 1}) == {
            "released": 1
        }
        assert (await calls[0])["code"] == 40002
        assert not calls[1].done()
        assert not calls[2].done()
        assert await emu.admin("hanging/release", {}) == {"released": 2}
        assert [(await call)["code"] for call in calls[1:]] == [40002, 40107]

    async def test_long_poll_times_out_when_nothing_hangs(self, emu: Emulator) -> None:
        waited = await emu.admin("hanging", at_least=1, timeout=0.05)
        assert waited == {"reached": False, "hanging": 0, "calls": []}

    async def test_reset_releases_held_calls(self, emu: Emulator) -> None:
        await _faults(emu, ACCESS_TOKEN, {"hang": True})
        call = asyncio.create_task(emu.api(ACCESS_TOKEN, {}))
        await emu.admin("hanging", at_least=1, timeout=5)
        await emu.admin("reset", {})
        assert (await call)["code"] == 40002


class TestCallLog:
    async def test_counts_and_records(self, emu: Emulator) -> None:
        data = await emu.account_tokens()
        await emu.advance(100)
        await emu.refresh(data["refresh_token"])
        await emu.refresh(data["refresh_token"])

        calls = await emu.admin("calls")
        assert calls["counts"] == {"tt_user/oauth2/token/": 1, "tt_user/oauth2/refresh_token/": 2}
        assert calls["total"] == 3

        log = await emu.admin("calls", endpoint="tt_user/oauth2/refresh_token/")
        assert log["count"] == 2
        first, second = log["calls"]
        assert first["fields"]["refresh_token"] == data["refresh_token"]
        assert first["fields"]["client_secret"] == "<present>"
        assert (first["code"], second["code"]) == (0, 40107)
        assert first["http_status"] == 200
        assert first["method"] == "POST"
        assert first["wall_time"] <= second["wall_time"]
        assert abs(first["emulator_time"] - first["wall_time"] - 100) < 5
        assert first["request_id"] != second["request_id"]

    async def test_records_headers_and_faults(self, emu: Emulator) -> None:
        await _faults(emu, "oauth2/advertiser/get/", {"http_status": 504})
        await emu.client.get(
            "/open_api/v1.3/oauth2/advertiser/get/",
            params={"app_id": APP_ID, "secret": SECRET},
            headers={"Access-Token": "tok"},
        )
        (record,) = (await emu.admin("calls", endpoint="oauth2/advertiser/get/"))["calls"]
        assert record["access_token_header"] == "tok"
        assert record["fields"] == {"app_id": APP_ID, "secret": "<present>"}
        assert record["fault"] == {
            "http_status": 504,
            "content_type": "text/html; charset=utf-8",
            "act": False,
        }
        assert (record["http_status"], record["code"]) == (504, None)

    async def test_response_request_id_matches_record(self, emu: Emulator) -> None:
        response = await emu.client.post("/open_api/v1.3/" + ACCESS_TOKEN, json={})
        body = check_envelope(response)
        (record,) = (await emu.admin("calls", endpoint=ACCESS_TOKEN))["calls"]
        assert record["request_id"] == body["request_id"]
        assert record["code"] == 40002
