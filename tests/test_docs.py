"""Every setting is documented in the README and in .env.example."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiktok_auth_service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
NAMES = [name.upper() for name in Settings.model_fields]


@pytest.mark.parametrize("name", NAMES)
def test_setting_is_documented(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    assert f"| `{name}` |" in readme
    assert f"\n{name}=" in example


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "| run the whole stack locally | `uv run tiktok-auth-service dev` |" in readme
    assert "| run the whole test suite | `uv run pytest` |" in readme
    assert "uv run pytest" in (ROOT / ".ci" / "run").read_text()
