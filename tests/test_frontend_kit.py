"""The frontend connect kit: /connect.js (and its types) served by the broker, and the callback's
result page in popup mode (`display=popup` on the connect link), which posts the outcome to the
opener on the session's return_to origin only. TikTok faked by respx; the real browser runs it
all in tests/e2e/test_browser.py."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
import respx

from tests.fixtures import FRONTEND, OPEN_ID, TIKTOK_API, Canaries, FakeClock, bearer
from tests.helpers import (
    TikTokAccounts,
    envelope,
    new_token,
    query_of,
    start_through,
    the_form,
)
from tests.test_security_headers import assert_guarded
from tiktok_auth_service.authorization import binding_id

A, B = "7100000000000000001", "7100000000000000002"
STATIC = files("tiktok_auth_service.api") / "static"
HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def tiktok() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


def policy_of(response: httpx.Response) -> dict[str, str]:
    return dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )


class TestConnectJs:
    @pytest.mark.parametrize(
        ("path", "media_type"),
        [
            ("/connect.js", "text/javascript; charset=utf-8"),
            ("/connect.d.ts", "application/typescript; charset=utf-8"),
        ],
    )
    async def test_served_from_the_package_cacheable_by_etag(
        self, client: httpx.AsyncClient, path: str, media_type: str
    ) -> None:
        answer = await client.get(path)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == media_type
        assert answer.content == (STATIC / path.lstrip("/")).read_bytes()
        assert answer.headers["cache-control"] == "public, max-age=3600"
        etag = answer.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
        # A frontend on another origin imports the module: module scripts are fetched with CORS.
        assert answer.headers["access-control-allow-origin"] == "*"
        assert_guarded(answer)

        for validator in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = await client.get(path, headers={"if-none-match": validator})
            assert again.status_code == 304, validator
            assert again.content == b""
            assert again.headers["etag"] == etag
            assert again.headers["cache-control"] == "public, max-age=3600"
        stale = await client.get(path, headers={"if-none-match": '"0123"'})
        assert stale.status_code == 200
        assert stale.content == answer.content

    def test_the_module_is_valid_and_its_types_declare_every_export(self, tmp_path: Path) -> None:
        node = shutil.which("node")
        assert node is not None, "checking connect.js needs Node.js (node on PATH)"
        module = tmp_path / "connect.mjs"
        module.write_bytes((STATIC / "connect.js").read_bytes())
        listed = subprocess.run(
            [
                node,
                "--input-type=module",
                "-e",
                f"console.log(Object.keys(await import({json.dumps(str(module))})).join())",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        exported = set(listed.stdout.strip().split(","))
        assert exported == {"connect", "ConnectError"}
        types = (STATIC / "connect.d.ts").read_text()
        declared = set(re.findall(r"^export (?:declare )?(?:function|class) (\w+)", types, re.M))
        assert declared == exported


async def open_link(client: httpx.AsyncClient, key: str, **body: object) -> tuple[str, str]:
    response = await client.post("/connect-sessions", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()["url"], response.json()["id"]


def grants(tiktok: respx.MockRouter, canaries: Canaries, advertisers: list[str]) -> str:
    token = new_token()
    canaries.add(token)
    tiktok.post("/oauth2/access_token/").respond(
        json=envelope({"access_token": token, "advertiser_ids": advertisers, "scope": [4]})
    )
    tiktok.get("/oauth2/advertiser/get/").respond(
        json=envelope({"list": [{"advertiser_id": a, "advertiser_name": a} for a in advertisers]})
    )
    return token


async def popup_round_trip(
    client: httpx.AsyncClient, link: str, **callback: str
) -> tuple[httpx.Response, str]:
    """A connect link opened as connect.js opens it (`display=popup`), continued to TikTok;
    TikTok's answer `callback` (plus the state) at /callback. Returns the answer and the state."""
    start = await start_through(client, f"{link}&display=popup")
    assert start.status_code == 303, start.text
    state = query_of(start.headers["location"])["state"]
    return await client.get("/callback", params={**callback, "state": state}, headers=HTML), state


def posted(page: httpx.Response) -> tuple[dict[str, object], str]:
    """What the popup page's script posts, and to which origin."""
    [element] = re.findall(r"<main id=tas-result ([^>]*)>", page.text)
    attributes = {
        name: html.unescape(value) for name, value in re.findall(r'(data-\w+)="([^"]*)"', element)
    }
    return json.loads(attributes["data-message"]), attributes["data-origin"]


def assert_script_allowed_by_hash(page: httpx.Response) -> None:
    policy = policy_of(page)
    assert policy["default-src"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    [script] = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    [style] = re.findall(r"<style>(.*?)</style>", page.text, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"
    assert policy["base-uri"] == policy["form-action"] == "'none'"
    assert_guarded(page)
    assert len(page.headers.get_list("content-security-policy")) == 1


class TestPopupResultPage:
    async def test_posts_the_outcome_to_the_return_to_origin_without_token_state_or_code(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        tiktok: respx.MockRouter,
        canaries: Canaries,
    ) -> None:
        token = grants(tiktok, canaries, [A, B])
        link, session_id = await open_link(
            client, api_key, return_to=f"{FRONTEND}/connected?x=1", tags={"tenant": "acme"}
        )
        page = await client.get(f"{link}&display=popup")
        assert the_form(page)[2]["display"] == "popup"

        answer, state = await popup_round_trip(client, link, auth_code="the-code")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["cache-control"] == "no-store"
        message, origin = posted(answer)
        assert origin == FRONTEND
        assert message == {
            "source": "tiktok-auth-service",
            "status": "connected",
            "session_id": session_id,
            "advertiser_ids": [A, B],
            "tags": {"tenant": "acme"},
        }
        for secret in (token, state, "the-code"):
            assert secret not in answer.text
        # Without an opener the page is the plain result page.
        assert "<title>Advertisers connected</title>" in answer.text
        assert_script_allowed_by_hash(answer)
        # Both of the authorization's cookies are spent.
        cleared = {
            cookie.split("=")[0]
            for cookie in answer.headers.get_list("set-cookie")
            if "Max-Age=0" in cookie
        }
        assert cleared == {
            f"__Host-tas_{kind}.{binding_id(state)}" for kind in ("binding", "display")
        }

    async def test_an_account_is_posted_by_its_open_id(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        clock: FakeClock,
    ) -> None:
        TikTokAccounts(tiktok, canaries, clock)
        link, session_id = await open_link(
            client, api_key, flow="tiktok_account", return_to=f"{FRONTEND}/c", tags={"t": "1"}
        )
        answer, _ = await popup_round_trip(client, link, code="tt-code")
        assert answer.status_code == 200
        assert posted(answer) == (
            {
                "source": "tiktok-auth-service",
                "status": "connected",
                "session_id": session_id,
                "open_id": OPEN_ID,
                "tags": {"t": "1"},
            },
            FRONTEND,
        )
        assert "<title>TikTok account connected</title>" in answer.text
        assert_script_allowed_by_hash(answer)

    async def test_a_refusal_posts_its_code_and_shows_the_error_page(
        self, client: httpx.AsyncClient, api_key: str, tiktok: respx.MockRouter
    ) -> None:
        link, session_id = await open_link(client, api_key, return_to=f"{FRONTEND}/connected")
        answer, _ = await popup_round_trip(client, link, error="access_denied")
        assert answer.status_code == 400
        message, origin = posted(answer)
        assert (message, origin) == (
            {
                "source": "tiktok-auth-service",
                "status": "error",
                "error": "authorization_denied",
                "session_id": session_id,
            },
            FRONTEND,
        )
        assert "<code>authorization_denied</code>" in answer.text
        assert_script_allowed_by_hash(answer)
        assert not tiktok.calls

    async def test_without_return_to_there_is_nobody_to_post_to(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        tiktok: respx.MockRouter,
        canaries: Canaries,
    ) -> None:
        grants(tiktok, canaries, [A])
        link, _ = await open_link(client, api_key)
        answer, _ = await popup_round_trip(client, link, auth_code="the-code")
        assert answer.status_code == 200
        assert "<title>Advertisers connected</title>" in answer.text
        assert "<script" not in answer.text and "tas-result" not in answer.text
        assert "script-src" not in answer.headers["content-security-policy"]

    async def test_the_link_opened_as_a_page_still_redirects(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        tiktok: respx.MockRouter,
        canaries: Canaries,
    ) -> None:
        grants(tiktok, canaries, [A])
        link, _ = await open_link(client, api_key, return_to=f"{FRONTEND}/connected")
        start = await start_through(client, f"{link}&display=page")
        state = query_of(start.headers["location"])["state"]
        assert not [c for c in start.headers.get_list("set-cookie") if "tas_display" in c]
        answer = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert answer.status_code == 302
        assert answer.headers["location"].startswith(f"{FRONTEND}/connected?status=connected")

    async def test_display_is_page_or_popup(self, client: httpx.AsyncClient, api_key: str) -> None:
        link, _ = await open_link(client, api_key)
        shown = await client.get(f"{link}&display=window")
        assert shown.status_code == 422
        assert shown.json()["code"] == "validation_error"
        session = query_of(link)["session"]
        sent = await client.post("/authorize", data={"session": session, "display": "window"})
        assert sent.status_code == 422
        assert sent.json()["code"] == "validation_error"
        # Nothing was spent: the link still works.
        assert (await start_through(client, link)).status_code == 303
