"""A real browser (headless Debian Chromium) clicking through the emulator's consent page.

Screenshots of each page are saved under `test-output/<test name>/` at the repository root.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

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
    refused anything its pages need (Chromium reports each refusal on the console)."""
    context = await chromium.new_context()
    refused: list[str] = []
    try:
        opened = await context.new_page()
        opened.on(
            "console",
            lambda message: refused.append(message.text) if needed_and_refused(message) else None,
        )
        yield opened
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
