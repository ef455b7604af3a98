"""TikTok's sandbox: its host and limits by one setting, a token imported from the command line
(sealed, served like any grant), and a liveness check that works there."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import respx
from pydantic import SecretStr

from tests.fixtures import APP_SECRET, KEYS, TIKTOK_API, Canaries, make_settings
from tests.helpers import envelope, new_token, served_on_loopback, store_advertiser_grant
from tests.test_cli import cli_env
from tests.test_config import valid_settings
from tiktok_auth_service import errors
from tiktok_auth_service.config import SANDBOX_API_BASE_URL, Settings
from tiktok_auth_service.service import Service
from tiktok_emulator import EmulatorConfig, create_emulator_app

ADVERTISER = "7100000000000000001"


class TestSetting:
    def test_selects_the_sandbox_host(self) -> None:
        assert SANDBOX_API_BASE_URL == "https://sandbox-ads.tiktok.com/open_api/v1.3"
        assert valid_settings(tiktok_sandbox=True).tiktok_api_base_url == SANDBOX_API_BASE_URL

    def test_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("TIKTOK_API_BASE_URL", raising=False)
        monkeypatch.setenv("TIKTOK_SANDBOX", "true")
        assert valid_settings().tiktok_api_base_url == SANDBOX_API_BASE_URL

    def test_an_explicit_host_wins(self) -> None:
        settings = valid_settings(
            tiktok_sandbox=True, tiktok_api_base_url="http://127.0.0.1:8900/open_api/v1.3"
        )
        assert settings.tiktok_api_base_url == "http://127.0.0.1:8900/open_api/v1.3"

    def test_off_by_default(self) -> None:
        settings = valid_settings()
        assert settings.tiktok_sandbox is False
        assert settings.tiktok_api_base_url == "https://business-api.tiktok.com/open_api/v1.3"
        assert settings.sandbox_endpoint_limits == {}

    def test_every_endpoint_gets_1_qps_and_30_qpm(self) -> None:
        assert valid_settings(tiktok_sandbox=True).sandbox_endpoint_limits == {"*": (1, 30)}


@pytest.fixture
def settings(migrated: str) -> Settings:
    return make_settings(migrated, tiktok_sandbox=True)


class TestLiveness:
    async def test_asks_campaign_get_not_advertiser_get(
        self, service: Service, pg: asyncpg.Connection, canaries: Canaries
    ) -> None:
        token = new_token()
        canaries.add(token)
        grant_id = await store_advertiser_grant(service, token, [ADVERTISER])
        with respx.mock(base_url=TIKTOK_API, assert_all_called=True) as tiktok:
            asked = tiktok.get("/campaign/get/").respond(
                json=envelope({"list": [], "page_info": {"page": 1, "total_number": 0}})
            )
            await service.tokens.liveness.check_now(grant_id)
        request = asked.calls.last.request
        assert request.headers["Access-Token"] == token
        assert request.url.params["advertiser_id"] == ADVERTISER
        row = await pg.fetchrow("SELECT status, advertiser_ids FROM oauth_grant")
        assert (row["status"], row["advertiser_ids"]) == ("active", [ADVERTISER])
        served = await pg.fetchval("SELECT status FROM advertiser")
        assert served == "active"

    async def test_a_refused_token_needs_reauthorization(
        self, service: Service, pg: asyncpg.Connection, canaries: Canaries
    ) -> None:
        token = new_token()
        canaries.add(token)
        grant_id = await store_advertiser_grant(service, token, [ADVERTISER])
        with respx.mock(base_url=TIKTOK_API, assert_all_called=True) as tiktok:
            tiktok.get("/campaign/get/").respond(json=envelope(code=40105, message="invalid"))
            with pytest.raises(errors.ReauthorizationRequired):
                await service.tokens.liveness.check_now(grant_id)
        status = await pg.fetchval("SELECT status FROM oauth_grant")
        assert status == "reauthorization_required"


class TestImport:
    async def test_stored_sealed_and_served(
        self,
        service: Service,
        client: httpx.AsyncClient,
        api_key: str,
        pg: asyncpg.Connection,
        canaries: Canaries,
    ) -> None:
        token = new_token()
        canaries.add(token)
        with respx.mock(base_url=TIKTOK_API, assert_all_called=True) as tiktok:
            tiktok.get("/campaign/get/").respond(json=envelope({"list": []}))
            await service.authorization.import_advertiser_token(
                ADVERTISER, SecretStr(token), "Sandbox shop"
            )
        sealed = await pg.fetchval("SELECT access_token_enc FROM oauth_grant")
        assert token.encode() not in sealed
        name = await pg.fetchval("SELECT name FROM advertiser WHERE advertiser_id = $1", ADVERTISER)
        assert name == "Sandbox shop"
        answer = await client.get(
            f"/tokens/{ADVERTISER}", headers={"authorization": f"Bearer {api_key}"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["access_token"] == token

    async def test_a_token_tiktok_refuses_is_not_stored(
        self, service: Service, pg: asyncpg.Connection, canaries: Canaries
    ) -> None:
        token = new_token()
        canaries.add(token)
        with respx.mock(base_url=TIKTOK_API, assert_all_called=True) as tiktok:
            tiktok.get("/campaign/get/").respond(json=envelope(code=40105, message="invalid"))
            with pytest.raises(errors.InvalidRequest, match="TikTok refused"):
                await service.authorization.import_advertiser_token(
                    ADVERTISER, SecretStr(token), None
                )
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 0

    async def test_reimporting_replaces_the_grant(
        self, service: Service, pg: asyncpg.Connection, canaries: Canaries
    ) -> None:
        first, second = new_token(), new_token()
        canaries.add(first, second)
        with respx.mock(base_url=TIKTOK_API, assert_all_called=True) as tiktok:
            tiktok.get("/campaign/get/").respond(json=envelope({"list": []}))
            revoked = tiktok.post("/oauth2/revoke_token/").respond(json=envelope({}))
            await service.authorization.import_advertiser_token(ADVERTISER, SecretStr(first), None)
            await service.authorization.import_advertiser_token(ADVERTISER, SecretStr(second), None)
        assert revoked.calls.last.request.headers["Access-Token"] == first
        serving = await pg.fetchval("SELECT grant_id FROM advertiser")
        rows = await pg.fetch("SELECT id, status FROM oauth_grant")
        assert {row["id"] == serving: row["status"] for row in rows} == {
            True: "active",
            False: "revoked",
        }


async def _run_cli(env: dict[str, str], *args: str, stdin: bytes) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiktok_auth_service",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow  # command-line subprocesses
class TestCommandLine:
    async def test_imports_a_token_read_from_stdin(
        self, migrated: str, pg: asyncpg.Connection, canaries: Canaries
    ) -> None:
        emulator = create_emulator_app(EmulatorConfig(sandbox=True, qps=0, qpm=0, qpd=0))
        async with (
            served_on_loopback(emulator) as base_url,
            httpx.AsyncClient(base_url=base_url) as http,
        ):
            approved = await http.get(
                "/portal/auth",
                params={
                    "app_id": "emulator-app",
                    "redirect_uri": "http://127.0.0.1:8000/callback",
                    "emulator_decision": "approve",
                    "emulator_advertisers": ADVERTISER,
                },
            )
            code = httpx.URL(approved.headers["location"]).params["auth_code"]
            exchanged = await http.post(
                "/open_api/v1.3/oauth2/access_token/",
                json={"app_id": "emulator-app", "secret": "emulator-secret", "auth_code": code},
            )
            token = exchanged.json()["data"]["access_token"]
            canaries.add(token)
            env = {
                **cli_env(migrated, KEYS),
                "TIKTOK_SANDBOX": "true",
                "TIKTOK_API_BASE_URL": f"{base_url}/open_api/v1.3",
            }
            status, out, err = await _run_cli(
                env,
                "import-token",
                ADVERTISER,
                "--name",
                "Sandbox shop",
                stdin=f"{token}\n".encode(),
            )
            seen = emulator.state.emulator.calls.access_tokens()
        assert status == 0, err
        assert token not in out + err
        assert APP_SECRET not in out + err
        assert ADVERTISER in err
        assert seen == {token: 1}
        assert "oauth2/advertiser/get/" not in emulator.state.emulator.calls.counts()
        row = await pg.fetchrow("SELECT status, advertiser_ids, created_at FROM oauth_grant")
        assert (row["status"], row["advertiser_ids"]) == ("active", [ADVERTISER])
        assert row["created_at"] <= datetime.now(UTC)

    async def test_an_empty_token_is_refused(self, migrated: str, pg: asyncpg.Connection) -> None:
        status, _, err = await _run_cli(
            cli_env(migrated, KEYS), "import-token", ADVERTISER, stdin=b"\n"
        )
        assert status == 2
        assert "no access token" in err
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 0

    async def test_a_token_on_the_command_line_is_refused(self, migrated: str) -> None:
        # An argument shows in `ps` and in shell history: there is no place for the token there.
        status, _, err = await _run_cli(
            cli_env(migrated, KEYS), "import-token", ADVERTISER, "tok123", stdin=b""
        )
        assert status == 2
        assert "unrecognized arguments" in err

    async def test_a_malformed_advertiser_id_is_refused(
        self, migrated: str, pg: asyncpg.Connection
    ) -> None:
        status, _, err = await _run_cli(
            cli_env(migrated, KEYS), "import-token", "abc", stdin=b"tok\n"
        )
        assert status == 1
        assert "not an advertiser id" in err
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 0
