"""TikTok's official Python SDK, unchanged, against the emulator over real HTTP.

The SDK is synchronous (urllib3), so each call runs in a worker thread while the emulator
serves in the test's event loop. On `code` 0 it returns `{"data", "request_id"}`; any other
code it raises as TiktokSDKError (1.1.3's ApiClient.call_api).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import business_api_client as sdk
import pytest
from business_api_client.tiktok_business.tiktok_exceptions import TiktokSDKError

from .helpers import ADV_1, ADV_2, ADV_3, Emulator
from .test_marketing_api import _png


def _client(emu: Emulator) -> sdk.ApiClient:
    configuration = sdk.Configuration()
    configuration.host = str(emu.client.base_url).rstrip("/")
    return sdk.ApiClient(configuration)


async def test_sdk_calls_each_endpoint(served_emulator: Emulator, tmp_path: Path) -> None:
    emu = served_emulator
    token = (await emu.advertiser_token(emulator_advertisers=f"{ADV_1},{ADV_2}"))["access_token"]
    client = _client(emu)
    image = tmp_path / "banner.png"
    image.write_bytes(_png(30, 20))

    info = await asyncio.to_thread(
        sdk.AccountManagementApi(client).advertiser_info, [ADV_1, ADV_2], token
    )
    campaigns = await asyncio.to_thread(
        sdk.CampaignCreationApi(client).campaign_get, ADV_1, token, page=1, page_size=2
    )
    created = await asyncio.to_thread(
        sdk.CampaignCreationApi(client).campaign_create,
        token,
        body=sdk.CampaignCreateBody(
            advertiser_id=ADV_1,
            campaign_name="From the SDK",
            objective_type="TRAFFIC",
            budget_mode="BUDGET_MODE_DAY",
            budget=60.0,
        ),
    )
    report = await asyncio.to_thread(
        sdk.ReportingApi(client).report_integrated_get,
        "BASIC",
        token,
        advertiser_id=ADV_1,
        data_level="AUCTION_CAMPAIGN",
        dimensions=["campaign_id", "stat_time_day"],
        metrics=["spend", "clicks"],
        start_date="2026-11-01",
        end_date="2026-11-03",
    )
    upload = await asyncio.to_thread(
        sdk.FileApi(client).ad_image_upload,
        token,
        advertiser_id=ADV_1,
        upload_type="UPLOAD_BY_FILE",
        image_file=str(image),
        image_signature=hashlib.md5(image.read_bytes()).hexdigest(),  # noqa: S324
    )

    assert [row["advertiser_id"] for row in info["data"]["list"]] == [ADV_1, ADV_2]
    assert len(campaigns["data"]["list"]) == 2
    assert campaigns["data"]["page_info"]["total_page"] == 2
    assert created["data"]["campaign_name"] == "From the SDK"
    assert report["data"]["page_info"]["total_number"] == 4 * 3  # 3 seeded + 1 created, 3 days
    assert (upload["data"]["width"], upload["data"]["height"]) == (30, 20)
    assert upload["data"]["file_name"] == "banner.png"
    assert (await emu.admin("campaigns"))["created"] == {ADV_1: 1}
    assert (await emu.admin("access_tokens"))["counts"] == {token: 5}


async def test_sdk_raises_tiktoks_code(served_emulator: Emulator) -> None:
    emu = served_emulator
    token = (await emu.advertiser_token(emulator_advertisers=ADV_1))["access_token"]
    api = sdk.CampaignCreationApi(_client(emu))
    with pytest.raises(TiktokSDKError, match="Error Code: 40001"):
        await asyncio.to_thread(api.campaign_get, ADV_3, token)
