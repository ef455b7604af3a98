"""TikTok's envelope, request ids, headers and the gateway's 404 for missing slashes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tiktok_emulator.open_api import ENDPOINTS

from .helpers import APP_ID, SECRET, Emulator, check_envelope


class TestEnvelope:
    async def test_success_has_ok_envelope_and_logid(self, emu: Emulator) -> None:
        code = await emu.advertiser_code()
        body = await emu.exchange(code)
        assert body["code"] == 0
        assert body["message"] == "OK"
        assert len(body["request_id"]) == 34

    async def test_error_is_http_200_with_empty_data(self, emu: Emulator) -> None:
        response = await emu.client.post(
            "/open_api/v1.3/oauth2/access_token/", json={"app_id": APP_ID, "secret": SECRET}
        )
        body = check_envelope(response)
        assert body["code"] == 40002
        assert body["data"] == {}
        assert "auth_code" in body["message"]

    async def test_request_ids_are_fresh(self, emu: Emulator) -> None:
        first = await emu.api("oauth2/access_token/", {})
        second = await emu.api("oauth2/access_token/", {})
        assert first["request_id"] != second["request_id"]

    async def test_request_id_starts_with_emulator_utc_time(self, emu: Emulator) -> None:
        await emu.advance(400 * 86400)
        body = await emu.api("oauth2/access_token/", {})
        expected = datetime.fromtimestamp(emu.state.clock.now(), UTC)
        stamp = datetime.strptime(body["request_id"][:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        assert abs((expected - stamp).total_seconds()) < 5

    @pytest.mark.parametrize("raw", [b"app_id=x&secret=y", b"not json", b"[1, 2]"])
    async def test_non_json_object_body_is_40002(self, emu: Emulator, raw: bytes) -> None:
        response = await emu.client.post(
            "/open_api/v1.3/oauth2/access_token/",
            content=raw,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert check_envelope(response)["code"] == 40002

    async def test_non_string_field_is_40002(self, emu: Emulator) -> None:
        body = await emu.api(
            "oauth2/access_token/", {"app_id": 123, "secret": SECRET, "auth_code": "x"}
        )
        assert body["code"] == 40002


class TestGateway404:
    @pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
    async def test_missing_trailing_slash_is_plain_404(self, emu: Emulator, endpoint: str) -> None:
        path = "/open_api/v1.3/" + endpoint.rstrip("/")
        method = ENDPOINTS[endpoint].method
        response = await emu.client.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 404
        assert response.text == "404 page not found"
        assert response.headers["content-type"].startswith("text/plain")
        assert "location" not in response.headers

    @pytest.mark.parametrize(
        "path", ["/open_api/v1.3/oauth2/nothing/", "/somewhere", "/v2/auth/authorize"]
    )
    async def test_unknown_paths_are_plain_404(self, emu: Emulator, path: str) -> None:
        response = await emu.client.get(path)
        assert (response.status_code, response.text) == (404, "404 page not found")

    async def test_wrong_method_is_404(self, emu: Emulator) -> None:
        response = await emu.client.get("/open_api/v1.3/oauth2/access_token/")
        assert (response.status_code, response.text) == (404, "404 page not found")

    async def test_404_calls_are_not_recorded(self, emu: Emulator) -> None:
        await emu.client.post("/open_api/v1.3/oauth2/access_token", json={})
        calls = await emu.admin("calls")
        assert calls["total"] == 0
