"""EmulatorConfig: defaults, environment variables and validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tiktok_emulator import EmulatorConfig


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EMULATOR_APPS", "EMULATOR_ADVERTISERS", "EMULATOR_QPS"):
        monkeypatch.delenv(name, raising=False)


class TestDefaults:
    def test_one_app_as_documented(self) -> None:
        config = EmulatorConfig()
        assert len(config.apps) == 1
        app = config.apps[0]
        assert app.app_id == "emulator-app"
        assert app.secret == "emulator-secret"
        assert app.redirect_uris == [
            "http://127.0.0.1:8000/callback",
            "http://localhost:8000/callback",
        ]
        assert app.account_redirect_uri == "http://127.0.0.1:8000/callback"
        assert app.scopes == [4, 100, 200, 300]
        assert app.blocked is False

    def test_three_advertisers_with_19_digit_ids(self) -> None:
        advertisers = EmulatorConfig().advertisers
        assert [adv.advertiser_id for adv in advertisers] == [
            "7100000000000000001",
            "7100000000000000002",
            "7100000000000000003",
        ]
        assert all(len(adv.advertiser_id) == 19 for adv in advertisers)
        assert all(adv.advertiser_name for adv in advertisers)

    def test_behaviour_switches(self) -> None:
        config = EmulatorConfig()
        assert config.accounts[0].open_id == "-000emulatoropenid0001"
        assert (config.access_token_ttl, config.refresh_token_ttl) == (86400, 31536000)
        assert config.rotate_refresh_tokens is True
        assert config.reauthorize_returns_same_token is False
        assert config.expired_code_error == 40110
        assert config.deny_mode == "redirect"
        assert config.refresh_endpoint_mode == "envelope"
        assert config.sandbox is False
        assert (config.qps, config.qpm, config.qpd, config.advertiser_qps) == (
            10,
            600,
            864000,
            None,
        )


class TestFromEnv:
    def test_lists_as_json_and_scalars(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(
            "EMULATOR_APPS",
            '[{"app_id": "a1", "secret": "s1", "redirect_uris": ["http://x/cb"], "scopes": [1]}]',
        )
        monkeypatch.setenv(
            "EMULATOR_ADVERTISERS", '[{"advertiser_id": "42", "advertiser_name": "Answer"}]'
        )
        monkeypatch.setenv("EMULATOR_EXPIRED_CODE_ERROR", "40115")
        monkeypatch.setenv("EMULATOR_QPS", "0")
        monkeypatch.setenv("EMULATOR_ADVERTISER_QPS", "3")
        monkeypatch.setenv("EMULATOR_DENY_MODE", "no_redirect")
        monkeypatch.setenv("EMULATOR_ROTATE_REFRESH_TOKENS", "false")

        config = EmulatorConfig.from_env()

        assert [app.app_id for app in config.apps] == ["a1"]
        assert config.apps[0].account_redirect_uri is None
        assert config.advertisers[0].advertiser_name == "Answer"
        assert config.expired_code_error == 40115
        assert config.qps == 0
        assert config.advertiser_qps == 3
        assert config.deny_mode == "no_redirect"
        assert config.rotate_refresh_tokens is False

    def test_token_switches(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("EMULATOR_REAUTHORIZE_RETURNS_SAME_TOKEN", "true")
        monkeypatch.setenv("EMULATOR_ACCESS_TOKEN_TTL", "90")

        config = EmulatorConfig.from_env()

        assert config.reauthorize_returns_same_token is True
        assert config.access_token_ttl == 90


class TestValidation:
    def test_expired_code_error_must_be_40110_or_40115(self) -> None:
        with pytest.raises(ValidationError):
            EmulatorConfig(expired_code_error=40000)

    def test_at_most_ten_redirect_uris(self) -> None:
        app = {
            "app_id": "a",
            "secret": "s",
            "redirect_uris": [f"http://x/{n}" for n in range(11)],
            "scopes": [1],
        }
        with pytest.raises(ValidationError):
            EmulatorConfig.model_validate({"apps": [app]})

    def test_duplicate_app_ids_are_refused(self) -> None:
        app = {"app_id": "a", "secret": "s", "redirect_uris": [], "scopes": [1]}
        with pytest.raises(ValidationError, match="duplicate app_id"):
            EmulatorConfig.model_validate({"apps": [app, app]})

    def test_advertiser_ids_are_digit_strings(self) -> None:
        with pytest.raises(ValidationError):
            EmulatorConfig.model_validate(
                {"advertisers": [{"advertiser_id": "adv-1", "advertiser_name": "x"}]}
            )
