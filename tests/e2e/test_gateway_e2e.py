"""The gateway end to end: TikTok's official Python SDK, unchanged, through
/proxy/open_api/v1.3/... to the emulator over real HTTP.

The SDK (1.1.3) returns `{"data", "request_id"}` for code 0, raises TiktokSDKError for any
other code and ApiException for an HTTP status outside 2xx."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import business_api_client
import pytest
from business_api_client.api.account_management_api import AccountManagementApi
from business_api_client.api.campaign_creation_api import CampaignCreationApi
from business_api_client.api.file_api import FileApi
from business_api_client.api.reporting_api import ReportingApi
from business_api_client.models.campaign_create_body import CampaignCreateBody
from business_api_client.rest import ApiException
from business_api_client.tiktok_business.tiktok_exceptions import TiktokSDKError

from tests.e2e.conftest import EmulatorAdmin, api_key, issued_tokens
from tests.fixtures import Canaries

ADVERTISERS = ["7100000000000000001", "7100000000000000002", "7100000000000000003"]
_T = TypeVar("_T")


async def sdk(call: Callable[[], _T]) -> _T:
    """The SDK is synchronous (urllib3): its calls run off the loop that serves the broker."""
    return await asyncio.to_thread(call)


@contextmanager
def sdk_client(service_url: str) -> Iterator[business_api_client.ApiClient]:
    """The SDK as an integrator configures it for the broker: only the host changes."""
    configuration = business_api_client.Configuration()
    configuration.host = f"{service_url}/proxy"
    client = business_api_client.ApiClient(configuration)
    try:
        yield client
    finally:
        client.pool.close()


def png(path: Path) -> Path:
    """A real 2x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path


async def access_tokens(admin: EmulatorAdmin) -> dict[str, int]:
    """The Access-Token header values the emulator saw, with how often."""
    counts: dict[str, int] = (await admin.http.get("/_emulator/access_tokens")).json()["counts"]
    return counts


async def created(admin: EmulatorAdmin) -> dict[str, int]:
    counts: dict[str, int] = (await admin.http.get("/_emulator/campaigns")).json()["created"]
    return counts


def new_campaign(name: str) -> CampaignCreateBody:
    return CampaignCreateBody(
        advertiser_id=ADVERTISERS[0],
        campaign_name=name,
        objective_type="TRAFFIC",
        budget_mode="BUDGET_MODE_INFINITE",
    )


async def test_the_official_sdk_works_unchanged_through_the_gateway(
    start_stack: Callable[..., Any], canaries: Canaries, tmp_path: Path
) -> None:
    async with start_stack() as (stack, browser, admin):
        key = await api_key(stack, canaries)
        assert (await browser.consent()).status_code == 200
        [issued] = (await issued_tokens(admin, canaries))["advertiser_tokens"]
        with sdk_client(stack.service_url) as client:
            info = await sdk(
                lambda: AccountManagementApi(client).advertiser_info(
                    advertiser_ids=ADVERTISERS[:2], access_token=key
                )
            )
            assert sorted(row["advertiser_id"] for row in info["data"]["list"]) == ADVERTISERS[:2]

            made = await sdk(
                lambda: CampaignCreationApi(client).campaign_create(
                    access_token=key, body=new_campaign("winter")
                )
            )
            campaign_id = made["data"]["campaign_id"]

            listed = await sdk(
                lambda: CampaignCreationApi(client).campaign_get(
                    advertiser_id=ADVERTISERS[0], access_token=key
                )
            )
            assert campaign_id in [row["campaign_id"] for row in listed["data"]["list"]]
            assert listed["data"]["page_info"]["page"] == 1

            report = await sdk(
                lambda: ReportingApi(client).report_integrated_get(
                    report_type="BASIC",
                    access_token=key,
                    advertiser_id=ADVERTISERS[0],
                    data_level="AUCTION_CAMPAIGN",
                    dimensions=["campaign_id"],
                    metrics=["spend", "impressions"],
                    start_date="2026-11-01",
                    end_date="2026-11-07",
                )
            )
            assert report["data"]["list"]

            image = png(tmp_path / "pixel.png")
            uploaded = await sdk(
                lambda: FileApi(client).ad_image_upload(
                    access_token=key,
                    advertiser_id=ADVERTISERS[0],
                    upload_type="UPLOAD_BY_FILE",
                    image_file=str(image),
                    image_signature=hashlib.md5(image.read_bytes()).hexdigest(),  # noqa: S324
                )
            )
            assert uploaded["data"]["width"] == 2

        seen = await access_tokens(admin)
        assert key not in seen
        assert seen[issued["access_token"]] >= 5


async def test_a_create_answered_502_after_acting_is_made_once_and_a_throttled_one_once(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    async with start_stack() as (stack, browser, admin):
        key = await api_key(stack, canaries)
        assert (await browser.consent()).status_code == 200
        await issued_tokens(admin, canaries)
        api = CampaignCreationApi
        with sdk_client(stack.service_url) as client:
            await admin.fault("campaign/create/", {"http_status": 502, "act": True})
            with pytest.raises(ApiException) as lost:
                await sdk(lambda: api(client).campaign_create(key, body=new_campaign("lost")))
            assert lost.value.status == 502
            assert (await created(admin)) == {ADVERTISERS[0]: 1}

            await admin.fault("campaign/create/", {"code": 40100})
            made = await sdk(lambda: api(client).campaign_create(key, body=new_campaign("again")))
            assert made["data"]["campaign_name"] == "again"
            assert (await created(admin)) == {ADVERTISERS[0]: 2}
        assert len(await admin.calls("campaign/create/")) == 3


async def test_a_revoked_token_is_checked_once_then_409_and_tiktok_sees_no_more(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    async with start_stack() as (stack, browser, admin):
        key = await api_key(stack, canaries)
        assert (await browser.consent()).status_code == 200
        [issued] = (await issued_tokens(admin, canaries))["advertiser_tokens"]
        checks = len(await admin.calls("oauth2/advertiser/get/"))
        await admin.cancel(issued["access_token"])
        api = AccountManagementApi
        with sdk_client(stack.service_url) as client:
            with pytest.raises(TiktokSDKError, match="Error Code: 40105"):
                await sdk(
                    lambda: api(client).advertiser_info(
                        advertiser_ids=ADVERTISERS[:1], access_token=key
                    )
                )
            assert len(await admin.calls("oauth2/advertiser/get/")) == checks + 1
            seen = await access_tokens(admin)
            with pytest.raises(ApiException) as gone:
                await sdk(
                    lambda: api(client).advertiser_info(
                        advertiser_ids=ADVERTISERS[1:2], access_token=key
                    )
                )
            assert gone.value.status == 409
        read = await browser.http.get(
            f"/tokens/{ADVERTISERS[2]}", headers={"authorization": f"Bearer {key}"}
        )
        assert read.status_code == 409
        assert await access_tokens(admin) == seen
        assert len(await admin.calls("oauth2/advertiser/get/")) == checks + 1
