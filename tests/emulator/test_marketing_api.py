"""The Marketing API data endpoints a gateway forwards: shapes, token rules, counters."""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any

import httpx
import orjson
import pytest

from tiktok_emulator import EmulatorConfig

from .helpers import ADV_1, ADV_2, ADV_3, OPEN_ID, Emulator, MakeEmulator, check_envelope

PAGE_INFO_KEYS = {"page", "page_size", "total_number", "total_page"}


def _png(width: int, height: int) -> bytes:
    """A valid PNG of one grey colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def _get(emu: Emulator, endpoint: str, token: str | None, **params: Any) -> dict[str, Any]:
    query = {
        name: value if isinstance(value, str) else orjson.dumps(value).decode()
        for name, value in params.items()
    }
    return await emu.api(endpoint, params=query, token=token)


async def _create(emu: Emulator, token: str | None, **overrides: Any) -> dict[str, Any]:
    body = {
        "advertiser_id": ADV_1,
        "campaign_name": "Winter sale",
        "objective_type": "TRAFFIC",
        "budget_mode": "BUDGET_MODE_DAY",
        "budget": 50.0,
        **overrides,
    }
    return await emu.api("campaign/create/", body, token=token)


async def _upload(
    emu: Emulator,
    token: str | None,
    image: bytes,
    *,
    signature: str | None = None,
    advertiser_id: str = ADV_1,
) -> httpx.Response:
    form = {
        "advertiser_id": advertiser_id,
        "upload_type": "UPLOAD_BY_FILE",
        "image_signature": signature or hashlib.md5(image).hexdigest(),  # noqa: S324
    }
    return await emu.client.post(
        "/open_api/v1.3/file/image/ad/upload/",
        data=form,
        files={"image_file": ("banner.png", image, "image/png")},
        headers={"Access-Token": token} if token is not None else {},
    )


async def _token(emu: Emulator, advertisers: str = f"{ADV_1},{ADV_2}") -> str:
    data = await emu.advertiser_token(emulator_advertisers=advertisers)
    token: str = data["access_token"]
    return token


class TestAdvertiserInfo:
    async def test_lists_the_advertisers_with_tiktoks_fields(self, emu: Emulator) -> None:
        token = await _token(emu)
        body = await _get(emu, "advertiser/info/", token, advertiser_ids=[ADV_1, ADV_2])
        assert body["code"] == 0
        rows = body["data"]["list"]
        assert [row["advertiser_id"] for row in rows] == [ADV_1, ADV_2]
        assert rows[0]["name"] == "Acme Shoes"
        assert {"status", "currency", "timezone", "role", "create_time"} <= set(rows[0])

    async def test_fields_selects_what_is_answered(self, emu: Emulator) -> None:
        token = await _token(emu)
        body = await _get(
            emu, "advertiser/info/", token, advertiser_ids=[ADV_1], fields=["name", "currency"]
        )
        assert body["data"]["list"] == [{"name": "Acme Shoes", "currency": "USD"}]

    async def test_advertiser_outside_the_grant_is_40001(self, emu: Emulator) -> None:
        token = await _token(emu, ADV_1)
        body = await _get(emu, "advertiser/info/", token, advertiser_ids=[ADV_1, ADV_3])
        assert body["code"] == 40001


class TestCampaignGet:
    async def test_pages_through_the_campaigns(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(campaigns_per_advertiser=12)
        token = await _token(emu)
        pages = [
            await _get(emu, "campaign/get/", token, advertiser_id=ADV_1, page=str(n), page_size="5")
            for n in (1, 2, 3)
        ]
        infos = [page["data"]["page_info"] for page in pages]
        assert infos[0] == {"page": 1, "page_size": 5, "total_number": 12, "total_page": 3}
        assert [len(page["data"]["list"]) for page in pages] == [5, 5, 2]
        ids = [row["campaign_id"] for page in pages for row in page["data"]["list"]]
        assert len(set(ids)) == 12
        row = pages[0]["data"]["list"][0]
        assert row["advertiser_id"] == ADV_1
        assert {"campaign_name", "objective_type", "budget_mode", "operation_status"} <= set(row)

    async def test_defaults_to_page_1_of_10(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(campaigns_per_advertiser=12)
        token = await _token(emu)
        body = await _get(emu, "campaign/get/", token, advertiser_id=ADV_1)
        assert body["data"]["page_info"] == {
            "page": 1,
            "page_size": 10,
            "total_number": 12,
            "total_page": 2,
        }

    @pytest.mark.parametrize("params", [{"page": "0"}, {"page_size": "1001"}, {"page": "x"}])
    async def test_bad_paging_is_40002(self, emu: Emulator, params: dict[str, str]) -> None:
        token = await _token(emu)
        body = await _get(emu, "campaign/get/", token, advertiser_id=ADV_1, **params)
        assert body["code"] == 40002

    async def test_created_campaigns_are_listed(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(campaigns_per_advertiser=0)
        token = await _token(emu)
        created = (await _create(emu, token))["data"]
        body = await _get(emu, "campaign/get/", token, advertiser_id=ADV_1)
        assert [row["campaign_id"] for row in body["data"]["list"]] == [created["campaign_id"]]
        assert body["data"]["page_info"]["total_number"] == 1


class TestCampaignCreate:
    async def test_creates_and_counts_per_advertiser(self, emu: Emulator) -> None:
        token = await _token(emu)
        first = await _create(emu, token)
        second = await _create(emu, token, advertiser_id=ADV_2, campaign_name="Spring")
        third = await _create(emu, token, campaign_name="Summer")
        assert [body["code"] for body in (first, second, third)] == [0, 0, 0]
        assert first["data"]["campaign_id"] != third["data"]["campaign_id"]
        assert first["data"]["campaign_name"] == "Winter sale"
        created = await emu.admin("campaigns")
        assert created["created"] == {ADV_1: 2, ADV_2: 1}

    async def test_missing_field_is_40002_and_creates_nothing(self, emu: Emulator) -> None:
        token = await _token(emu)
        body = await emu.api(
            "campaign/create/", {"advertiser_id": ADV_1, "objective_type": "TRAFFIC"}, token=token
        )
        assert body["code"] == 40002
        assert (await emu.admin("campaigns"))["created"] == {}

    async def test_outside_the_grant_is_40001_and_creates_nothing(self, emu: Emulator) -> None:
        token = await _token(emu, ADV_1)
        assert (await _create(emu, token, advertiser_id=ADV_3))["code"] == 40001
        assert (await emu.admin("campaigns"))["created"] == {}


class TestReport:
    async def test_rows_per_campaign_and_day(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(campaigns_per_advertiser=3)
        token = await _token(emu)
        body = await _get(
            emu,
            "report/integrated/get/",
            token,
            advertiser_id=ADV_1,
            report_type="BASIC",
            data_level="AUCTION_CAMPAIGN",
            dimensions=["campaign_id", "stat_time_day"],
            metrics=["spend", "impressions", "clicks"],
            start_date="2026-11-01",
            end_date="2026-11-02",
            page_size="4",
        )
        assert body["code"] == 0, body
        data = body["data"]
        assert data["page_info"] == {"page": 1, "page_size": 4, "total_number": 6, "total_page": 2}
        row = data["list"][0]
        assert set(row) == {"dimensions", "metrics"}
        assert set(row["dimensions"]) == {"campaign_id", "stat_time_day"}
        assert row["dimensions"]["stat_time_day"] == "2026-11-01 00:00:00"
        assert set(row["metrics"]) == {"spend", "impressions", "clicks"}
        assert all(isinstance(value, str) for value in row["metrics"].values())
        float(row["metrics"]["spend"])

    async def test_same_question_same_numbers(self, emu: Emulator) -> None:
        token = await _token(emu)
        params: dict[str, Any] = {
            "advertiser_id": ADV_1,
            "report_type": "BASIC",
            "dimensions": ["advertiser_id", "stat_time_day"],
            "metrics": ["spend"],
            "start_date": "2026-11-01",
            "end_date": "2026-11-01",
        }
        first = await _get(emu, "report/integrated/get/", token, **params)
        second = await _get(emu, "report/integrated/get/", token, **params)
        assert first["data"] == second["data"]
        assert len(first["data"]["list"]) == 1

    @pytest.mark.parametrize(
        "change",
        [
            {"dimensions": "campaign_id"},
            {"dimensions": ["no_such_dimension"]},
            {"metrics": ["no_such_metric"]},
            {"start_date": "2026-11-31"},
            {"end_date": "2026-10-01"},
        ],
    )
    async def test_bad_parameters_are_40002(self, emu: Emulator, change: dict[str, Any]) -> None:
        token = await _token(emu)
        params: dict[str, Any] = {
            "advertiser_id": ADV_1,
            "report_type": "BASIC",
            "dimensions": ["campaign_id"],
            "start_date": "2026-11-01",
            "end_date": "2026-11-02",
            **change,
        }
        assert (await _get(emu, "report/integrated/get/", token, **params))["code"] == 40002


class TestImageUpload:
    async def test_answers_the_image_facts(self, emu: Emulator) -> None:
        token = await _token(emu)
        image = _png(120, 80)
        body = check_envelope(await _upload(emu, token, image))
        assert body["code"] == 0, body
        data = body["data"]
        assert data["image_id"]
        assert (data["width"], data["height"], data["format"]) == (120, 80, "png")
        assert data["size"] == len(image)
        assert data["signature"] == hashlib.md5(image).hexdigest()  # noqa: S324
        assert data["file_name"] == "banner.png"
        (call,) = (await emu.admin("calls", endpoint="file/image/ad/upload/"))["calls"]
        assert call["fields"]["advertiser_id"] == ADV_1

    async def test_wrong_signature_is_40002(self, emu: Emulator) -> None:
        token = await _token(emu)
        body = check_envelope(await _upload(emu, token, _png(2, 2), signature="0" * 32))
        assert body["code"] == 40002

    async def test_not_an_image_is_40002(self, emu: Emulator) -> None:
        token = await _token(emu)
        assert check_envelope(await _upload(emu, token, b"hello"))["code"] == 40002

    async def test_json_body_is_40002(self, emu: Emulator) -> None:
        token = await _token(emu)
        body = await emu.api("file/image/ad/upload/", {"advertiser_id": ADV_1}, token=token)
        assert body["code"] == 40002

    async def test_outside_the_grant_is_40001(self, emu: Emulator) -> None:
        token = await _token(emu, ADV_1)
        response = await _upload(emu, token, _png(2, 2), advertiser_id=ADV_3)
        assert check_envelope(response)["code"] == 40001


class TestBusinessGet:
    async def test_answers_the_accounts_profile(self, emu: Emulator) -> None:
        token = (await emu.account_tokens())["access_token"]
        body = await _get(emu, "business/get/", token, business_id=OPEN_ID)
        assert body["code"] == 0, body
        assert body["data"]["display_name"] == "Emulator Creator"
        assert {"username", "profile_image", "followers_count"} <= set(body["data"])

    async def test_fields_selects_what_is_answered(self, emu: Emulator) -> None:
        token = (await emu.account_tokens())["access_token"]
        body = await _get(emu, "business/get/", token, business_id=OPEN_ID, fields=["display_name"])
        assert body["data"] == {"display_name": "Emulator Creator"}

    async def test_another_account_is_40001(self, emu: Emulator) -> None:
        token = (await emu.account_tokens())["access_token"]
        body = await _get(emu, "business/get/", token, business_id="-000someoneelse")
        assert body["code"] == 40001

    async def test_advertiser_token_is_40001(self, emu: Emulator) -> None:
        token = await _token(emu)
        assert (await _get(emu, "business/get/", token, business_id=OPEN_ID))["code"] == 40001

    async def test_expired_token_is_40102(self, emu: Emulator) -> None:
        token = (await emu.account_tokens())["access_token"]
        await emu.advance(86400)
        assert (await _get(emu, "business/get/", token, business_id=OPEN_ID))["code"] == 40102


async def _each_endpoint(emu: Emulator, token: str | None) -> dict[str, int]:
    """One call of every data endpoint with `token` (business/get/ included), their codes."""
    report = {
        "advertiser_id": ADV_1,
        "report_type": "BASIC",
        "dimensions": ["campaign_id"],
        "start_date": "2026-11-01",
        "end_date": "2026-11-01",
    }
    codes = {
        "advertiser/info/": await _get(emu, "advertiser/info/", token, advertiser_ids=[ADV_1]),
        "campaign/get/": await _get(emu, "campaign/get/", token, advertiser_id=ADV_1),
        "campaign/create/": await _create(emu, token),
        "report/integrated/get/": await _get(emu, "report/integrated/get/", token, **report),
        "file/image/ad/upload/": check_envelope(await _upload(emu, token, _png(2, 2))),
        "business/get/": await _get(emu, "business/get/", token, business_id=OPEN_ID),
    }
    return {endpoint: body["code"] for endpoint, body in codes.items()}


class TestTokenRules:
    async def test_missing_token_is_40104_everywhere(self, emu: Emulator) -> None:
        assert set((await _each_endpoint(emu, None)).values()) == {40104}

    async def test_unknown_token_is_40105_everywhere(self, emu: Emulator) -> None:
        assert set((await _each_endpoint(emu, "f" * 40)).values()) == {40105}

    async def test_revoked_token_is_40105_everywhere(self, emu: Emulator) -> None:
        token = await _token(emu)
        user = (await emu.account_tokens())["access_token"]
        await emu.admin("advertisers/cancel", {"access_token": token})
        await emu.api(
            "tt_user/oauth2/revoke/",
            {"client_id": "emulator-app", "client_secret": "emulator-secret", "access_token": user},
        )
        codes = await _each_endpoint(emu, token)
        del codes["business/get/"]
        assert set(codes.values()) == {40105}
        assert (await _get(emu, "business/get/", user, business_id=OPEN_ID))["code"] == 40105

    async def test_a_live_token_works_everywhere(self, emu: Emulator) -> None:
        token = await _token(emu)
        codes = await _each_endpoint(emu, token)
        assert codes.pop("business/get/") == 40001
        assert set(codes.values()) == {0}


class TestLimits:
    async def test_every_endpoint_counts_against_the_app(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qps=1000)
        token = await _token(emu)
        before = (await emu.admin("state"))["limiter"]["apps"]["emulator-app"]["day"]
        await _each_endpoint(emu, token)
        after = (await emu.admin("state"))["limiter"]["apps"]["emulator-app"]["day"]
        assert after - before == 6

    async def test_qps_is_per_fixed_second(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qps=2)
        token = await _token(emu)
        now = (await emu.admin("clock"))["now"]
        # In the middle of a second: two calls fit, the third is refused...
        await emu.advance(int(now) + 1.5 - now)
        codes = [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        codes += [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        codes += [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        # ...and the next second (0.6 s later, not 1 s) has a full budget again.
        await emu.advance(0.6)
        codes += [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        assert codes == [0, 0, 40100, 0]

    async def test_qpm_is_per_fixed_minute(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qpm=2)
        token = await _token(emu)  # the exchange counted too
        now = (await emu.admin("clock"))["now"]
        await emu.advance(60 - now % 60 + 58)
        codes = [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        codes += [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        codes += [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        await emu.advance(2.5)
        codes += [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        assert codes == [0, 0, 40100, 0]

    async def test_endpoint_limit_is_configurable(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(endpoint_limits={"campaign/get/": {"qps": 1}})
        token = await _token(emu)
        now = (await emu.admin("clock"))["now"]
        await emu.advance(int(now) + 1.1 - now)
        get = [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        get += [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        other = (await _get(emu, "advertiser/info/", token, advertiser_ids=[ADV_1]))["code"]
        assert (get, other) == ([0, 40100], 0)

    async def test_report_task_create_is_limited_to_2_qps_by_default(self) -> None:
        limit = EmulatorConfig().endpoint_limits["report/task/create/"]
        assert (limit.qps, limit.qpm, limit.qpd) == (2, 0, 0)

    async def test_sandbox_limits_every_endpoint_to_1_qps_30_qpm(
        self, make_emulator: MakeEmulator
    ) -> None:
        emu = await make_emulator(sandbox=True)
        token = await _token(emu)
        now = (await emu.admin("clock"))["now"]
        await emu.advance(int(now) + 1.1 - now)
        codes = [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        codes += [(await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]]
        codes += [(await _get(emu, "advertiser/info/", token, advertiser_ids=[ADV_1]))["code"]]
        assert codes == [0, 40100, 0]
        limits = (await emu.admin("state"))["limiter"]["endpoint_limits"]
        assert limits["*"] == {"qps": 1, "qpm": 30, "qpd": 1000}

    async def test_advertiser_qps_gives_40133(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(advertiser_qps=1)
        token = await _token(emu)
        now = (await emu.admin("clock"))["now"]
        await emu.advance(int(now) + 1.1 - now)
        first = (await _get(emu, "campaign/get/", token, advertiser_id=ADV_1))["code"]
        second = (await _create(emu, token))["code"]
        assert (first, second) == (0, 40133)
        assert (await emu.admin("campaigns"))["created"] == {}


class TestCounters:
    async def test_calls_per_wall_clock_second(self, emu: Emulator) -> None:
        token = await _token(emu)
        for _ in range(3):
            await _get(emu, "campaign/get/", token, advertiser_id=ADV_1)
        shown = await emu.admin("calls/per_second", endpoint="campaign/get/")
        assert sum(shown["per_second"].values()) == 3
        assert all(int(second) > 1_700_000_000 for second in shown["per_second"])
        every = await emu.admin("calls/per_second")
        assert sum(every["per_second"].values()) == 3 + 1  # and the exchange
        assert every["max"] == max(every["per_second"].values())

    async def test_access_tokens_seen(self, emu: Emulator) -> None:
        token = await _token(emu)
        await _get(emu, "campaign/get/", token, advertiser_id=ADV_1)
        await _get(emu, "campaign/get/", token, advertiser_id=ADV_1)
        await _get(emu, "campaign/get/", "broker-key-123", advertiser_id=ADV_1)
        seen = await emu.admin("access_tokens")
        assert seen["counts"] == {token: 2, "broker-key-123": 1}


class TestFaults:
    async def test_http_502_after_acting(self, emu: Emulator) -> None:
        token = await _token(emu)
        await emu.admin(
            "faults",
            {"endpoint": "campaign/create/", "responses": [{"http_status": 502, "act": True}]},
        )
        body = {"advertiser_id": ADV_1, "campaign_name": "x", "objective_type": "TRAFFIC"}
        response = await emu.client.post(
            "/open_api/v1.3/campaign/create/", json=body, headers={"Access-Token": token}
        )
        assert response.status_code == 502
        assert (await emu.admin("campaigns"))["created"] == {ADV_1: 1}

    async def test_http_502_without_acting_creates_nothing(self, emu: Emulator) -> None:
        token = await _token(emu)
        await emu.admin(
            "faults", {"endpoint": "campaign/create/", "responses": [{"http_status": 502}]}
        )
        response = await emu.client.post(
            "/open_api/v1.3/campaign/create/",
            json={"advertiser_id": ADV_1, "campaign_name": "x", "objective_type": "TRAFFIC"},
            headers={"Access-Token": token},
        )
        assert response.status_code == 502
        assert (await emu.admin("campaigns"))["created"] == {}

    async def test_throttle_everything_for_a_while(self, emu: Emulator) -> None:
        token = await _token(emu)
        shown = await emu.admin("throttle", {"seconds": 3})
        assert shown["code"] == 40100
        during = await _each_endpoint(emu, token)
        assert set(during.values()) == {40100}
        assert (await emu.admin("campaigns"))["created"] == {}
        assert (await emu.exchange("x"))["code"] == 40100
        await emu.advance(3)
        after = await _each_endpoint(emu, token)
        assert after["campaign/get/"] == 0
