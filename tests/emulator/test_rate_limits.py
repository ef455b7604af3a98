"""App-level QPS/QPM/QPD limits (40100) and the advertiser-level limit (40133)."""

from __future__ import annotations

from typing import Any

from .helpers import ADV_1, APP_ID, DEFAULT_APP, OTHER_APP, Emulator, MakeEmulator


async def _call(emu: Emulator, app_id: str = APP_ID) -> int:
    """One cheap call counted against `app_id` (its answer is an auth error, not a limit)."""
    body = await emu.api("tt_user/token_info/get/", {"app_id": app_id, "access_token": "act.x"})
    code: int = body["code"]
    return code


async def _calls(emu: Emulator, count: int, app_id: str = APP_ID) -> list[int]:
    return [await _call(emu, app_id) for _ in range(count)]


class TestAppLimits:
    async def test_default_limit_is_10_per_second(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qps=10, qpm=600, qpd=864000)
        assert await _calls(emu, 11) == [40105] * 10 + [40100]

    async def test_qps_recovers_next_second(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qps=3)
        assert await _calls(emu, 4) == [40105, 40105, 40105, 40100]
        await emu.advance(1)
        assert await _call(emu) == 40105

    async def test_qpm_window_is_the_clock_minute(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qpm=3)
        now = (await emu.admin("clock"))["now"]
        await emu.advance(60 - now % 60 + 10)
        assert await _calls(emu, 4) == [40105, 40105, 40105, 40100]
        await emu.advance(30)
        assert await _call(emu) == 40100
        # 55 s after the first call, but in the next minute: counted afresh.
        await emu.advance(25)
        assert await _call(emu) == 40105

    async def test_qpd_resets_at_midnight_utc(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qpd=2)
        clock = await emu.admin("clock")
        to_midnight = 86400 - clock["now"] % 86400
        if to_midnight < 10:
            await emu.advance(to_midnight + 60)
            to_midnight = 86400 - (await emu.admin("clock"))["now"] % 86400
        assert await _calls(emu, 3) == [40105, 40105, 40100]
        await emu.advance(to_midnight - 5)
        assert await _call(emu) == 40100
        await emu.advance(6)
        assert await _call(emu) == 40105

    async def test_zero_means_unlimited(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qps=0, qpm=0, qpd=0)
        assert set(await _calls(emu, 50)) == {40105}

    async def test_limits_are_per_app(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qps=1, apps=[DEFAULT_APP, OTHER_APP])
        assert await _calls(emu, 2) == [40105, 40100]
        assert await _call(emu, "other-app") == 40105

    async def test_token_counts_against_its_app(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qps=2)
        token = (await emu.advertiser_token())["access_token"]
        await emu.advance(1)  # the exchange itself counted
        info = {"advertiser_ids": f'["{ADV_1}"]'}
        codes = [
            (await emu.api("advertiser/info/", params=info, token=token))["code"] for _ in range(3)
        ]
        assert codes == [0, 0, 40100]

    async def test_portal_and_admin_calls_are_not_counted(
        self, make_emulator: MakeEmulator
    ) -> None:
        emu = await make_emulator(qps=1)
        for _ in range(3):
            await emu.authorize()
            await emu.admin("state")
        assert await _call(emu) == 40105

    async def test_counters_are_visible(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(qps=5)
        await _calls(emu, 2)
        limiter: dict[str, Any] = (await emu.admin("state"))["limiter"]
        assert limiter["apps"][APP_ID] == {"second": 2, "minute": 2, "day": 2}
        assert limiter["limits"]["qps"] == 5


class TestAdvertiserLimit:
    async def test_advertiser_qps_gives_40133(self, make_emulator: MakeEmulator) -> None:
        emu = await make_emulator(advertiser_qps=1)
        token = (await emu.advertiser_token())["access_token"]
        info = {"advertiser_ids": f'["{ADV_1}"]'}
        assert (await emu.api("advertiser/info/", params=info, token=token))["code"] == 0
        assert (await emu.api("advertiser/info/", params=info, token=token))["code"] == 40133
        await emu.advance(1)
        assert (await emu.api("advertiser/info/", params=info, token=token))["code"] == 0
