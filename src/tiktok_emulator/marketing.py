"""The Marketing API data endpoints a gateway forwards, answered as TikTok answers them.

Shapes follow TikTok's API reference (the official SDK's endpoints, paths and parameters):
paged lists answer `data.list` and `data.page_info`, reports answer rows of `dimensions` and
`metrics` (metric values as strings), an image upload answers the stored image's facts.
Every endpoint checks the `Access-Token` header against the subject it names (advertiser or
TikTok account): 40104 missing, 40105 unknown or dead, 40001 not covered.
"""

from __future__ import annotations

import hashlib
import math
import struct
from datetime import date, timedelta
from typing import Any

from .api_call import ApiCall, integer, json_field, require, string_list, token_header
from .clock import tiktok_time
from .envelope import ApiError
from .state import EmulatorState, LongTermToken, UserAccessToken

MAX_PAGE_SIZE = 1000
# TikTok answers daily breakdowns for at most 30 days per request.
MAX_REPORT_DAYS = 30
BUDGET_MODES = frozenset({"BUDGET_MODE_INFINITE", "BUDGET_MODE_DAY", "BUDGET_MODE_TOTAL"})
REPORT_DIMENSIONS = frozenset({"advertiser_id", "campaign_id", "stat_time_day"})
REPORT_METRICS = (
    "spend",
    "impressions",
    "clicks",
    "ctr",
    "cpc",
    "cpm",
    "reach",
    "conversion",
    "cost_per_conversion",
)
DEFAULT_REPORT_METRICS = ["spend", "impressions"]


def _advertiser_token(state: EmulatorState, call: ApiCall, advertiser_ids: list[str]) -> None:
    """Check that the call's token is a live advertiser token covering `advertiser_ids`, and
    count the call against each advertiser's own limit (40133)."""
    value = token_header(call)
    token = state.long_term_tokens.get(value)
    if token is None:
        if value in state.user_access_tokens:
            state.live_user_access_token(value)
            raise ApiError(40001, "A TikTok account token does not cover advertisers.")
        raise ApiError(40105)
    live: LongTermToken = state.live_long_term_token(value)
    state.app_for(live.app_id)
    if any(adv not in live.advertiser_ids for adv in advertiser_ids):
        raise ApiError(state.config.outside_grant_error)
    if not state.limiter.admit_advertisers(advertiser_ids):
        raise ApiError(40133)


def _account_token(state: EmulatorState, call: ApiCall, business_id: str) -> UserAccessToken:
    """The call's token if it is a live TikTok-account token of the account `business_id`."""
    value = token_header(call)
    if value in state.long_term_tokens:
        state.live_long_term_token(value)
        raise ApiError(40001, "An advertiser token does not cover TikTok accounts.")
    token = state.live_user_access_token(value)
    state.app_for(token.authorization.app_id)
    if token.authorization.open_id != business_id:
        raise ApiError(40001, "The access token does not cover this TikTok account.")
    return token


def _select(row: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """The requested `fields` of `row` (all of it without); 40002 for a field it lacks."""
    if fields is None:
        return row
    unknown = [name for name in fields if name not in row]
    if unknown:
        raise ApiError(40002, f"fields: unknown {unknown}.")
    return {name: row[name] for name in fields}


def _page(call: ApiCall, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of `rows` as TikTok pages lists: `list` and `page_info`."""
    page = integer(call, "page", 1, low=1, high=1_000_000)
    page_size = integer(call, "page_size", 10, low=1, high=MAX_PAGE_SIZE)
    start = (page - 1) * page_size
    return {
        "list": rows[start : start + page_size],
        "page_info": {
            "page": page,
            "page_size": page_size,
            "total_number": len(rows),
            "total_page": math.ceil(len(rows) / page_size),
        },
    }


def advertiser_info(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`advertiser/info/`: the ad accounts named by `advertiser_ids` (a JSON list)."""
    advertiser_ids = string_list(call, "advertiser_ids", required=True)
    assert advertiser_ids is not None
    fields = string_list(call, "fields")
    _advertiser_token(state, call, advertiser_ids)
    rows = []
    for adv in advertiser_ids:
        name = state.advertisers[adv].advertiser_name
        row = {
            "advertiser_id": adv,
            "name": name,
            "company": f"{name} Ltd",
            "status": "STATUS_ENABLE",
            "role": "ROLE_ADVERTISER",
            "currency": "USD",
            "timezone": "Etc/GMT",
            "display_timezone": "Etc/GMT",
            "country": "US",
            "language": "en",
            "industry": "290101",
            "balance": 0.0,
            "create_time": 1735689600,
        }
        rows.append(_select(row, fields))
    return {"list": rows}


def campaign_get(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`campaign/get/`: the advertiser's campaigns, paged; `filtering.campaign_ids` narrows."""
    (advertiser_id,) = require(call, "advertiser_id")
    fields = string_list(call, "fields")
    filtering = json_field(call, "filtering", {})
    if not isinstance(filtering, dict):
        raise ApiError(40002, "filtering: a JSON object is required.")
    _advertiser_token(state, call, [advertiser_id])
    rows = state.campaigns.get(advertiser_id, [])
    wanted = filtering.get("campaign_ids")
    if wanted is not None:
        rows = [row for row in rows if row["campaign_id"] in wanted]
    return _page(call, [_select(row, fields) for row in rows])


def campaign_create(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`campaign/create/`: a new campaign every time (TikTok has no idempotency key)."""
    advertiser_id, campaign_name, objective_type = require(
        call, "advertiser_id", "campaign_name", "objective_type"
    )
    budget_mode = call.fields.get("budget_mode", "BUDGET_MODE_INFINITE")
    if budget_mode not in BUDGET_MODES:
        raise ApiError(40002, f"budget_mode: one of {sorted(BUDGET_MODES)}.")
    budget = call.fields.get("budget", 0.0)
    if not isinstance(budget, int | float) or isinstance(budget, bool) or budget < 0:
        raise ApiError(40002, "budget: a non-negative number is required.")
    if budget_mode != "BUDGET_MODE_INFINITE" and not budget:
        raise ApiError(40002, "budget: required unless budget_mode is BUDGET_MODE_INFINITE.")
    _advertiser_token(state, call, [advertiser_id])
    return state.create_campaign(
        advertiser_id,
        campaign_name=campaign_name,
        objective_type=objective_type,
        budget_mode=budget_mode,
        budget=float(budget),
    )


def _day(call: ApiCall, name: str) -> date:
    (text,) = require(call, name)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(40002, f"{name}: a date YYYY-MM-DD is required.") from None


def _metrics(metrics: list[str], *key: str) -> dict[str, str]:
    """Plausible figures, the same for the same row every time (derived from its key)."""
    digest = hashlib.sha256("|".join(key).encode()).digest()
    impressions = 1000 + int.from_bytes(digest[:3]) % 50000
    clicks = impressions * (5 + digest[3] % 40) // 1000
    spend = round(impressions * (2 + digest[4] % 10) / 1000, 2)
    conversions = clicks // (5 + digest[5] % 10)
    values = {
        "spend": f"{spend:.2f}",
        "impressions": str(impressions),
        "clicks": str(clicks),
        "ctr": f"{100 * clicks / impressions:.2f}",
        "cpc": f"{spend / clicks:.2f}" if clicks else "0.00",
        "cpm": f"{1000 * spend / impressions:.2f}",
        "reach": str(impressions * 3 // 4),
        "conversion": str(conversions),
        "cost_per_conversion": f"{spend / conversions:.2f}" if conversions else "0.00",
    }
    return {name: values[name] for name in metrics}


def report_integrated_get(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`report/integrated/get/`: a synchronous BASIC report, by advertiser, campaign, day."""
    advertiser_id, report_type = require(call, "advertiser_id", "report_type")
    if report_type != "BASIC":
        raise ApiError(40002, "report_type: only BASIC is emulated.")
    dimensions = string_list(call, "dimensions", required=True)
    assert dimensions is not None
    if not set(dimensions) <= REPORT_DIMENSIONS:
        raise ApiError(40002, f"dimensions: emulated are {sorted(REPORT_DIMENSIONS)}.")
    metrics = string_list(call, "metrics") or DEFAULT_REPORT_METRICS
    if not set(metrics) <= set(REPORT_METRICS):
        raise ApiError(40002, f"metrics: emulated are {list(REPORT_METRICS)}.")
    start, end = _day(call, "start_date"), _day(call, "end_date")
    if end < start:
        raise ApiError(40002, "end_date: must not be before start_date.")
    if "stat_time_day" in dimensions and (end - start).days >= MAX_REPORT_DAYS:
        raise ApiError(40002, f"A daily breakdown covers at most {MAX_REPORT_DAYS} days.")
    _advertiser_token(state, call, [advertiser_id])
    campaign_ids = (
        [row["campaign_id"] for row in state.campaigns.get(advertiser_id, [])]
        if "campaign_id" in dimensions
        else [""]
    )
    days = (
        [start + timedelta(days=n) for n in range((end - start).days + 1)]
        if "stat_time_day" in dimensions
        else [None]
    )
    rows = []
    for campaign_id in campaign_ids:
        for day in days:
            values = {
                "advertiser_id": advertiser_id,
                "campaign_id": campaign_id,
                "stat_time_day": f"{day.isoformat()} 00:00:00" if day else "",
            }
            key = (advertiser_id, campaign_id, str(day or f"{start}..{end}"))
            rows.append(
                {
                    "dimensions": {name: values[name] for name in dimensions},
                    "metrics": _metrics(metrics, *key),
                }
            )
    return _page(call, rows)


def _image_size(content: bytes) -> tuple[str, int, int] | None:
    """Format, width and height of a PNG, GIF or JPEG image; None for anything else."""
    if content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) >= 24:
        width, height = struct.unpack(">II", content[16:24])
        return "png", width, height
    if content[:6] in (b"GIF87a", b"GIF89a") and len(content) >= 10:
        width, height = struct.unpack("<HH", content[6:10])
        return "gif", width, height
    if content.startswith(b"\xff\xd8"):
        at = 2
        while at + 9 <= len(content) and content[at] == 0xFF:
            marker, length = content[at + 1], int.from_bytes(content[at + 2 : at + 4])
            # Start-of-frame markers carry the size; 0xC4, 0xC8 and 0xCC are not frames.
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", content[at + 5 : at + 9])
                return "jpeg", width, height
            at += 2 + length
    return None


def image_upload(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`file/image/ad/upload/` (multipart): store an image for ads, by file upload."""
    (advertiser_id,) = require(call, "advertiser_id")
    upload_type = call.fields.get("upload_type", "UPLOAD_BY_FILE")
    if upload_type != "UPLOAD_BY_FILE":
        raise ApiError(40002, "upload_type: only UPLOAD_BY_FILE is emulated.")
    image = call.files.get("image_file")
    if image is None:
        raise ApiError(40002, "image_file: required when upload_type is UPLOAD_BY_FILE.")
    (signature,) = require(call, "image_signature")
    _advertiser_token(state, call, [advertiser_id])
    md5 = hashlib.md5(image.content).hexdigest()  # noqa: S324 - TikTok's checksum, not security
    if signature.lower() != md5:
        raise ApiError(40002, "image_signature: does not match the image's MD5.")
    facts = _image_size(image.content)
    if facts is None:
        raise ApiError(40002, "image_file: not a PNG, JPEG or GIF image.")
    image_format, width, height = facts
    now = state.clock.now()
    image_id = f"ad-site-i18n-sg/{tiktok_time(now)[:10].replace('-', '')}{md5[:24]}"
    return {
        "image_id": image_id,
        "material_id": state.new_object_id(),
        "is_carousel_usable": image_format in ("png", "jpeg"),
        "width": width,
        "height": height,
        "format": image_format,
        "image_url": f"https://p16-ad-sg.ibyteimg.com/obj/{image_id}",
        "signature": md5,
        "size": len(image.content),
        "file_name": call.fields.get("file_name") or image.filename,
        "create_time": tiktok_time(now),
        "modify_time": tiktok_time(now),
        "displayable": True,
    }


def business_get(state: EmulatorState, call: ApiCall) -> dict[str, Any]:
    """`business/get/`: a TikTok account's profile, for a token of that account
    (`business_id` is its open_id)."""
    (business_id,) = require(call, "business_id")
    fields = string_list(call, "fields")
    _account_token(state, call, business_id)
    account = state.accounts[business_id]
    digest = hashlib.sha256(business_id.encode()).digest()
    profile = {
        "username": account.display_name.lower().replace(" ", "_"),
        "display_name": account.display_name,
        "profile_image": f"https://p16-sign-va.tiktokcdn.com/avatar/{business_id}.jpeg",
        "bio_description": "",
        "is_business_account": True,
        "is_verified": False,
        "followers_count": 1000 + int.from_bytes(digest[:3]) % 100000,
        "following_count": digest[3],
        "total_likes": 5000 + int.from_bytes(digest[4:7]) % 500000,
        "videos_count": 1 + digest[7] % 200,
    }
    return _select(profile, fields)
