"""`serve --workers 2` as real processes: the background work is done once, shared by both,
and /metrics counts both."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import issued_tokens, seed_account_grants, start_serve
from tests.fixtures import Canaries

REFRESH = "tt_user/oauth2/refresh_token/"
CHECK = "oauth2/advertiser/get/"
GRANTS = 20
DONE = ("tiktok_auth_worker_tasks_total", {"kind": "refresh", "outcome": "done"})


def _sample(families: Any, name: str, labels: dict[str, str]) -> float:
    return float(
        sum(
            sample.value
            for family in families
            for sample in family.samples
            if sample.name == name and sample.labels.items() >= labels.items()
        )
    )


def _per_process(metrics_dir: Path, name: str, labels: dict[str, str]) -> list[float]:
    """The sample's value in each process's own counter file."""
    return [
        _sample(MultiProcessCollector.merge([str(path)]), name, labels)  # type: ignore[no-untyped-call]
        for path in sorted(metrics_dir.glob("counter_*.db"))
    ]


async def _until(condition: Callable[[], Any], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.1)  # polling a condition, bounded by the deadline


async def test_two_processes_refresh_and_check_each_due_grant_once(
    start_stack: Callable[..., Any], canaries: Canaries, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    open_ids = [f"-000worker{n:04d}" for n in range(GRANTS)]
    emulator = {
        "accounts": [{"open_id": o, "display_name": o} for o in open_ids],
        "qps": 0,
        "qpm": 0,
    }
    async with start_stack(emulator_config=emulator) as (stack, browser, admin):
        assert (await browser.consent(flow="advertiser")).status_code == 200
        await seed_account_grants(stack, open_ids)
        checks_before = len(await admin.calls(CHECK))
        # 10 calls a second between both processes, 4 grants claimed at a time: the due
        # grants take both processes about two seconds, so each gets its share.
        serve, url, _ = await start_serve(
            stack,
            tmp_path,
            workers=2,
            WORKER_ENABLED="true",
            TIKTOK_RATE_LIMIT_QPS="10",
            WORKER_POLL_SECONDS="0.2",
        )
        output = asyncio.create_task(serve.stderr.read())  # type: ignore[union-attr]
        try:
            await pg.execute(
                "UPDATE oauth_grant SET refresh_due_at = now() WHERE flow = 'tiktok_account'"
            )
            await pg.execute(
                "UPDATE oauth_grant SET next_check_at = now() WHERE flow = 'advertiser'"
            )
            due = (
                "SELECT count(*) FROM oauth_grant WHERE refresh_due_at <= now()"
                " OR next_check_at <= now() OR lease_until IS NOT NULL"
            )

            async def all_done() -> bool:
                return bool(await pg.fetchval(due) == 0)

            await _until(all_done, "every due grant handled")
            async with httpx.AsyncClient(base_url=url) as http:
                scraped = list(text_string_to_metric_families((await http.get("/metrics")).text))
        finally:
            serve.send_signal(signal.SIGTERM)
            assert await serve.wait() == 0  # a stop that was asked for
        rest = (await output).decode()

        # Each refresh token was sent once, and accepted; the advertiser token checked once.
        refreshes = await admin.calls(REFRESH)
        assert sorted(c["fields"]["refresh_token"] for c in refreshes) == sorted(
            {c["fields"]["refresh_token"] for c in refreshes}
        )
        assert [c["code"] for c in refreshes] == [0] * GRANTS
        checks = (await admin.calls(CHECK))[checks_before:]
        assert len(checks) == 1
        # TIKTOK_RATE_LIMIT_QPS is the budget of the whole app: both processes take their
        # slots from one budget in the database. Over the whole sweep, where the moment each
        # call reaches the emulator (three processes on a busy machine) hardly matters;
        # with a budget per process it is 20 a second.
        arrivals = sorted(c["wall_time"] for c in refreshes + checks)
        assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= 10, arrivals
        await issued_tokens(admin, canaries)
        assert not [value for value in canaries.values if value in rest]

        # Both processes did some of the work, and one scrape of either counts all of it.
        per_process = _per_process(tmp_path, *DONE)
        assert len(per_process) == 2 and all(per_process), per_process
        assert sum(per_process) == GRANTS
        assert _sample(scraped, *DONE) == GRANTS
        assert _sample(scraped, "tiktok_auth_liveness_checks_total", {"outcome": "ok"}) == 1
