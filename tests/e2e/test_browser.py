"""A real browser (headless Debian Chromium) clicking through the emulator's consent page.

Screenshots of each page are saved under `test-output/<test name>/` at the repository root.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright

from tests.e2e.chromium import LAUNCH_ARGS, ensure_chromium
from tests.e2e.conftest import api_key, issued_tokens
from tests.fixtures import Canaries

REPO_ROOT = Path(__file__).resolve().parents[2]
ADVERTISERS = ["7100000000000000001", "7100000000000000002", "7100000000000000003"]
PREVIEW_BOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return ensure_chromium()


@pytest.fixture(scope="session")
async def chromium(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


def needed_and_refused(message: ConsoleMessage) -> bool:
    """Whether Chromium reports that the Content Security Policy refused something the page
    needs: inline code or styles, or a file from the service. Other origins are refused on
    purpose (ReDoc would fetch its logo from its CDN)."""
    if "Content Security Policy" not in message.text:
        return False
    urls = re.findall(r"'(https?://[^']+)'", message.text)
    return not urls or any(httpx.URL(url).host == "127.0.0.1" for url in urls)


@pytest.fixture
async def page(chromium: Browser) -> AsyncIterator[Page]:
    """A fresh tab (fresh cookies); the test fails if the service's Content Security Policy
    refused anything its pages need, in this tab or a popup it opened (Chromium reports each
    refusal on the console)."""
    context = await chromium.new_context()
    refused: list[str] = []
    context.on(
        "console",
        lambda message: refused.append(message.text) if needed_and_refused(message) else None,
    )
    try:
        yield await context.new_page()
    finally:
        await context.close()
    assert refused == []


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    folder = REPO_ROOT / "test-output" / str(request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def open_consent_page(
    page: Page, link: str, emulator_url: str, output_dir: Path | None = None
) -> None:
    """A connect link in the browser: its page, then *Continue to TikTok*, landing on the
    emulator's advertiser consent page."""
    await page.goto(link)
    assert await page.title() == "Connect your TikTok ad accounts"
    if output_dir is not None:
        await page.screenshot(path=output_dir / "continue.png", full_page=True)
    await page.get_by_role("button", name="Continue to TikTok").click()
    await page.wait_for_url(f"{emulator_url}/portal/auth?**")
    assert await page.title() == "Authorize app"
    assert await page.inner_text("h1") == "Authorize app"
    boxes = page.locator('input[type="checkbox"][name="advertiser_id"]')
    assert sorted(await boxes.evaluate_all("nodes => nodes.map(n => n.value)")) == ADVERTISERS
    for index in range(await boxes.count()):
        assert await boxes.nth(index).is_checked()


async def test_approve_in_a_real_browser_then_the_token_is_served(
    start_stack: Callable[..., Any], canaries: Canaries, page: Page, output_dir: Path
) -> None:
    async with start_stack() as (stack, browser, admin):
        key = await api_key(stack, canaries)
        link = await browser.connect_link()
        # A chat app's preview bot fetches the link first: no cookies, HEAD then GET.
        async with httpx.AsyncClient() as bot:
            await bot.head(link, headers={"user-agent": PREVIEW_BOT})
            preview = await bot.get(link, headers={"user-agent": PREVIEW_BOT})
        assert preview.status_code == 200
        await open_consent_page(page, link, stack.emulator_url, output_dir)
        await page.screenshot(path=output_dir / "consent.png", full_page=True)

        await page.click("#approve")
        await page.wait_for_url(f"{stack.service_url}/callback?**")
        await page.wait_for_selector("h1")
        assert await page.title() == "Advertisers connected"
        listed = await page.locator("li code").all_inner_texts()
        assert sorted(listed) == ADVERTISERS
        await page.screenshot(path=output_dir / "result.png", full_page=True)

        state = await issued_tokens(admin, canaries)
        [issued] = state["advertiser_tokens"]
        async with httpx.AsyncClient(base_url=stack.service_url) as http:
            served = await http.get(
                f"/tokens/{ADVERTISERS[0]}", headers={"authorization": f"Bearer {key}"}
            )
        assert served.status_code == 200, served.text
        assert served.json()["access_token"] == issued["access_token"]


async def test_deny_in_a_real_browser_shows_the_error_and_tiktok_is_not_called(
    start_stack: Callable[..., Any], page: Page, output_dir: Path
) -> None:
    async with start_stack() as (stack, browser, admin):
        await open_consent_page(page, await browser.connect_link(), stack.emulator_url)

        await page.click("#deny")
        await page.wait_for_url(f"{stack.service_url}/callback?**")
        await page.wait_for_selector("h1")
        assert "authorization_denied" in await page.inner_text("body")
        await page.screenshot(path=output_dir / "denied.png", full_page=True)

        assert await admin.calls("oauth2/access_token/") == []


async def test_docs_render_offline_with_every_operation(
    start_stack: Callable[..., Any], page: Page, output_dir: Path
) -> None:
    """/docs loads Swagger UI (and /redoc ReDoc) from the service itself: nothing is fetched
    from outside 127.0.0.1 (a machine without internet access gets the same page), and their
    Content Security Policy refuses nothing they need (see the `page` fixture)."""
    requested: list[str] = []

    async def only_loopback(route: Route) -> None:
        requested.append(route.request.url)
        if httpx.URL(route.request.url).host == "127.0.0.1":
            await route.continue_()
        else:
            await route.abort()

    await page.route("**/*", only_loopback)
    async with start_stack() as (stack, _, _admin):
        await page.goto(f"{stack.service_url}/docs")
        operations = page.locator(".opblock")
        await operations.first.wait_for()
        count = await operations.count()
        summaries = await page.locator(".opblock-summary-path").all_inner_texts()
        await page.screenshot(path=output_dir / "docs.png", full_page=True)
        # ReDoc too, under the same policy (its search runs in a worker made from a blob).
        await page.goto(f"{stack.service_url}/redoc")
        await page.locator("h1", has_text="tiktok-auth-service").wait_for()
        await page.screenshot(path=output_dir / "redoc.png")
    outside = [url for url in requested if httpx.URL(url).host != "127.0.0.1"]
    assert outside == []
    assert count == sum(len(methods) for methods in stack.service.openapi()["paths"].values())
    assert "/tokens/{advertiser_id}" in [text.replace("\u200b", "") for text in summaries]


# A frontend's page: it imports the broker's /connect.js (`broker` in its query string) and
# calls connect(`link`) when its button is clicked, keeping what the Promise settled with
# (`settled`) and every message the window received.
APP_PAGE = b"""<!doctype html><meta charset=utf-8><title>loading</title>
<button id=connect>Connect</button>
<script type=module>
const params = new URLSearchParams(location.search);
const { connect, ConnectError } = await import(params.get("broker") + "/connect.js");
window.received = [];
window.addEventListener("message", (event) => {
  window.received.push({ origin: event.origin, data: event.data });
});
document.getElementById("connect").addEventListener("click", () => {
  connect(params.get("link")).then(
    (result) => (window.settled = { result }),
    (error) =>
      (window.settled = {
        error: {
          typed: error instanceof ConnectError,
          name: error.name,
          code: error.code,
          session_id: error.session_id,
        },
      }),
  );
});
document.title = "app";
</script>
"""


class _AppPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(APP_PAGE)))
        self.end_headers()
        self.wfile.write(APP_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def frontends() -> Iterator[tuple[str, str]]:
    """The frontend's page on two origins: one the broker allows (RETURN_TO_ALLOWED_ORIGINS),
    one it does not."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _AppPage) for _ in range(2)]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        allowed, foreign = (f"http://127.0.0.1:{server.server_port}" for server in servers)
        yield allowed, foreign
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


async def open_popup(page: Page, frontend: str, broker: str, link: str) -> Page:
    """The frontend's page at `frontend`, clicked: connect(link) opens the popup, which shows
    the connect link's page."""
    await page.goto(f"{frontend}/?{urlencode({'broker': broker, 'link': link})}")
    await page.wait_for_function("document.title === 'app'")
    async with page.expect_popup() as opened:
        await page.click("#connect")
    popup = await opened.value
    await popup.wait_for_load_state()
    assert await popup.title() == "Connect your TikTok ad accounts"
    return popup


async def decide_in_popup(popup: Page, emulator_url: str, decision: str) -> None:
    """Continue to TikTok in the popup, approve or deny there; returns once the broker's result
    page has posted its outcome and closed the popup."""
    await popup.get_by_role("button", name="Continue to TikTok").click()
    await popup.wait_for_url(f"{emulator_url}/portal/auth?**")
    async with popup.expect_event("close"):
        await popup.click(f"#{decision}", no_wait_after=True)


async def settled(page: Page) -> dict[str, Any]:
    """What connect() settled with, once it has (within Playwright's timeout)."""
    handle = await page.wait_for_function("window.settled")
    outcome: dict[str, Any] = await handle.json_value()
    return outcome


async def new_session(browser: Any, **body: Any) -> tuple[str, str]:
    opened = await browser.http.post(
        "/connect-sessions", json=body, headers={"authorization": f"Bearer {browser.api_key}"}
    )
    assert opened.status_code == 201, opened.text
    return opened.json()["url"], opened.json()["id"]


async def session_outcome(browser: Any, session_id: str) -> dict[str, Any]:
    answer = await browser.http.get(
        f"/connect-sessions/{session_id}", headers={"authorization": f"Bearer {browser.api_key}"}
    )
    assert answer.status_code == 200, answer.text
    outcome: dict[str, Any] = answer.json()
    return outcome


class TestPopupConnect:
    async def test_approve_resolves_with_the_outcome_the_backend_then_confirms(
        self,
        start_stack: Callable[..., Any],
        frontends: tuple[str, str],
        page: Page,
        output_dir: Path,
    ) -> None:
        allowed, _ = frontends
        async with start_stack(return_to_allowed_origins=[allowed]) as (stack, browser, _admin):
            link, session_id = await new_session(
                browser, return_to=f"{allowed}/connected", tags={"tenant": "acme"}
            )
            popup = await open_popup(page, allowed, stack.service_url, link)
            await popup.screenshot(path=output_dir / "popup.png")
            await decide_in_popup(popup, stack.emulator_url, "approve")

            outcome = await settled(page)
            assert outcome == {
                "result": {
                    "status": "connected",
                    "session_id": session_id,
                    "advertiser_ids": ADVERTISERS,
                    "tags": {"tenant": "acme"},
                }
            }
            [message] = await page.evaluate("window.received")
            assert message["origin"] == stack.service_url
            assert set(message["data"]) == {
                *("source", "status", "session_id", "advertiser_ids", "tags")
            }
            # What the backend trusts: the outcome the broker recorded.
            confirmed = await session_outcome(browser, session_id)
            assert confirmed["status"] == "connected"
            assert sorted(confirmed["advertiser_ids"]) == ADVERTISERS
            await page.screenshot(path=output_dir / "app.png")

    async def test_deny_and_a_closed_popup_settle_with_their_codes(
        self, start_stack: Callable[..., Any], frontends: tuple[str, str], page: Page
    ) -> None:
        allowed, _ = frontends
        async with start_stack(return_to_allowed_origins=[allowed]) as (stack, browser, admin):
            link, session_id = await new_session(browser, return_to=f"{allowed}/connected")
            popup = await open_popup(page, allowed, stack.service_url, link)
            await decide_in_popup(popup, stack.emulator_url, "deny")
            denied = await settled(page)
            assert denied == {
                "error": {
                    "typed": True,
                    "name": "ConnectError",
                    "code": "authorization_denied",
                    "session_id": session_id,
                }
            }
            assert (await session_outcome(browser, session_id))["status"] == "denied"

            link, session_id = await new_session(browser, return_to=f"{allowed}/connected")
            popup = await open_popup(page, allowed, stack.service_url, link)
            await popup.close()
            closed = await settled(page)
            assert closed["error"] == {
                "typed": True,
                "name": "ConnectError",
                "code": "window_closed",
                "session_id": None,
            }
            assert (await session_outcome(browser, session_id))["status"] == "pending"
            assert await admin.calls("oauth2/access_token/") == []

    async def test_a_page_on_another_origin_receives_nothing(
        self, start_stack: Callable[..., Any], frontends: tuple[str, str], page: Page
    ) -> None:
        allowed, foreign = frontends
        async with start_stack(return_to_allowed_origins=[allowed]) as (stack, browser, _admin):
            # A session of the allowed frontend, its link opened by a page elsewhere.
            link, session_id = await new_session(browser, return_to=f"{allowed}/connected")
            popup = await open_popup(page, foreign, stack.service_url, link)
            await decide_in_popup(popup, stack.emulator_url, "approve")

            # The popup posted (and closed), addressed to the allowed origin: the browser
            # delivered nothing here, and connect() settled only when the popup was gone.
            outcome = await settled(page)
            assert outcome["error"]["code"] == "window_closed"
            assert await page.evaluate("window.received") == []
            assert (await session_outcome(browser, session_id))["status"] == "connected"

    async def test_a_refused_popup_is_popup_blocked(
        self, start_stack: Callable[..., Any], frontends: tuple[str, str], page: Page
    ) -> None:
        """Chromium driven by Playwright lets every popup through; a browser that refuses one
        answers window.open with null, as here."""
        allowed, _ = frontends
        async with start_stack(return_to_allowed_origins=[allowed]) as (stack, browser, _admin):
            link, _ = await new_session(browser, return_to=f"{allowed}/connected")
            query = urlencode({"broker": stack.service_url, "link": link})
            await page.goto(f"{allowed}/?{query}")
            await page.wait_for_function("document.title === 'app'")
            await page.evaluate("window.open = () => null")
            await page.click("#connect")
            outcome = await settled(page)
            assert outcome["error"]["code"] == "popup_blocked"

    async def test_without_an_opener_the_popup_page_stays_as_the_result_page(
        self, start_stack: Callable[..., Any], frontends: tuple[str, str], page: Page
    ) -> None:
        allowed, _ = frontends
        async with start_stack(return_to_allowed_origins=[allowed]) as (stack, browser, _admin):
            link, _ = await new_session(browser, return_to=f"{allowed}/connected")
            await open_consent_page(page, f"{link}&display=popup", stack.emulator_url)
            await page.click("#approve")
            await page.wait_for_url(f"{stack.service_url}/callback?**")
            assert await page.title() == "Advertisers connected"
            assert sorted(await page.locator("li code").all_inner_texts()) == ADVERTISERS
