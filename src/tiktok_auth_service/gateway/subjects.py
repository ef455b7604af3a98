"""Whom a gateway call is about, read from TikTok's own parameters.

- `advertiser_id`, or `advertiser_ids` (TikTok encodes lists in the query string as JSON:
  `advertiser_ids=["1","2"]`), in the query string, a JSON body, a form body, or a multipart
  form field (uploads);
- `business_id`, the TikTok account's open_id, for the Accounts API (`business/*`);
- for endpoints that carry none: the SUBJECT_HEADERS, which are never forwarded.

Every place is read and the subjects are their union; the gateway then requires one token to
serve them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

from tiktok_auth_service import errors
from tiktok_auth_service.ops.api_keys import ADVERTISER_ID, OPEN_ID

ADVERTISER_HEADER = b"x-broker-advertiser-id"
ACCOUNT_HEADER = b"x-broker-business-id"
SUBJECT_HEADERS = frozenset({ADVERTISER_HEADER, ACCOUNT_HEADER})
# TikTok's list endpoints take at most 100 advertisers a call (advertiser/info/).
MAX_SUBJECTS = 100

_ADVERTISER = re.compile(ADVERTISER_ID)
_OPEN_ID = re.compile(OPEN_ID)
_BOUNDARY = re.compile(rb'boundary="?([^";]{1,200})"?', re.IGNORECASE)
_SUBJECT_FIELDS = frozenset({b"advertiser_id", b"advertiser_ids", b"business_id"})
_FIELD_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)


@dataclass(frozen=True)
class Subjects:
    """What a call names: advertisers and TikTok accounts (open ids), each sorted."""

    advertisers: tuple[str, ...]
    accounts: tuple[str, ...]

    def label(self) -> str:
        """One string for the audit and the log."""
        return ",".join((*self.advertisers, *self.accounts))


def subjects_of(
    query: bytes, headers: Iterable[tuple[bytes, bytes]], content_type: str, body: bytes
) -> Subjects:
    """The subjects of one call. Raises InvalidRequest for a malformed id or list,
    SubjectRequired when there is none, SubjectsSpanGrants for advertisers and an account
    together (never one token)."""
    advertisers: set[str] = set()
    accounts: set[str] = set()
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    _take(pairs, advertisers, accounts)
    media = content_type.split(";")[0].strip().lower()
    if body and media == "application/json":
        _take_json(body, advertisers, accounts)
    elif body and media == "application/x-www-form-urlencoded":
        _take(parse_qsl(body.decode("latin-1"), keep_blank_values=True), advertisers, accounts)
    elif body and media == "multipart/form-data":
        _take(_form_fields(content_type.encode("latin-1"), body), advertisers, accounts)
    for name, value in headers:
        if name == ADVERTISER_HEADER:
            advertisers.update(_advertiser(v.strip()) for v in value.decode("latin-1").split(","))
        elif name == ACCOUNT_HEADER:
            accounts.add(_open_id(value.decode("latin-1").strip()))
    if not advertisers and not accounts:
        raise errors.SubjectRequired(
            "Name the advertiser (advertiser_id or advertiser_ids) or the TikTok account "
            "(business_id) as TikTok's parameters do, or in the X-Broker-Advertiser-Id or "
            "X-Broker-Business-Id header for endpoints that take neither."
        )
    if advertisers and accounts:
        raise errors.SubjectsSpanGrants(
            "A call names advertisers or one TikTok account, not both: their tokens differ."
        )
    if len(advertisers) + len(accounts) > MAX_SUBJECTS:
        raise errors.InvalidRequest(f"At most {MAX_SUBJECTS} subjects a call.")
    return Subjects(tuple(sorted(advertisers)), tuple(sorted(accounts)))


def _take(pairs: Iterable[tuple[str, str]], advertisers: set[str], accounts: set[str]) -> None:
    for name, value in pairs:
        if name == "advertiser_id":
            advertisers.add(_advertiser(value))
        elif name == "advertiser_ids":
            advertisers.update(_advertiser(item) for item in _json_list(value))
        elif name == "business_id":
            accounts.add(_open_id(value))


def _take_json(body: bytes, advertisers: set[str], accounts: set[str]) -> None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # TikTok answers a broken body itself; the subject may be elsewhere
    if not isinstance(document, dict):
        return
    if "advertiser_id" in document:
        advertisers.add(_advertiser(_scalar(document["advertiser_id"])))
    ids = document.get("advertiser_ids")
    if isinstance(ids, list):
        advertisers.update(_advertiser(_scalar(item)) for item in ids)
    elif ids is not None:
        raise errors.InvalidRequest("advertiser_ids must be a list of advertiser ids.")
    if "business_id" in document:
        accounts.add(_open_id(_scalar(document["business_id"])))


def _json_list(value: str) -> list[str]:
    try:
        items = orjson.loads(value)
    except orjson.JSONDecodeError:
        items = None
    if not isinstance(items, list):
        raise errors.InvalidRequest(
            'advertiser_ids is a JSON list in the query string: advertiser_ids=["1","2"].'
        )
    return [_scalar(item) for item in items]


def _scalar(value: object) -> str:
    # TikTok's ids are strings in v1.3; SDKs built on older examples send numbers.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise errors.InvalidRequest("Advertiser ids and business ids are strings.")
    return str(value)


def _advertiser(value: str) -> str:
    if not _ADVERTISER.fullmatch(value):
        raise errors.InvalidRequest(f"{value[:40]!r} is not an advertiser id.")
    return value


def _open_id(value: str) -> str:
    if not _OPEN_ID.fullmatch(value):
        raise errors.InvalidRequest(f"{value[:40]!r} is not a business_id (open_id).")
    return value


def _form_fields(content_type: bytes, body: bytes) -> list[tuple[str, str]]:
    """The small named fields of a multipart body (files are skipped, never copied)."""
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise errors.InvalidRequest("A multipart body needs its boundary.")
    delimiter = b"--" + match[1]
    fields = []
    position = body.find(delimiter)
    while position != -1:
        start = position + len(delimiter)
        if body.startswith(b"--", start):
            break  # the closing delimiter
        head_end = body.find(b"\r\n\r\n", start)
        following = body.find(b"\r\n" + delimiter, start)
        if head_end == -1 or following == -1 or head_end > following:
            break
        head = body[start:head_end]
        name = _FIELD_NAME.search(head)
        wanted = name is not None and name[1] in _SUBJECT_FIELDS
        if wanted and name is not None and b"filename=" not in head.lower():
            value = body[head_end + 4 : following].decode("utf-8", "replace")
            fields.append((name[1].decode(), value))
        position = following + 2
    return fields
