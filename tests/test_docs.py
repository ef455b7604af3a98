"""The documentation stays in step with the code: the configuration reference lists exactly the
fields of `Settings` with their defaults, .env.example names exactly those variables, the README
keeps its two commands, and every relative link between the pages resolves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tiktok_auth_service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = ROOT / "docs" / "configuration.md"
# The pages people read; docs/ holds them all.
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
# The heading of the table the reference keeps equal to `Settings`.
SETTINGS_HEADING = "## Settings"


def _settings_table(text: str) -> dict[str, str]:
    """variable -> default cell, from the first table under SETTINGS_HEADING."""
    section = text.split(f"\n{SETTINGS_HEADING}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        assert name not in rows, f"{name} has two rows"
        rows[name] = cells[1]
    return rows


def _as_written(default: Any) -> str:
    """How the reference writes a default: the text one would put in the environment."""
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, list):
        return f"`{','.join(default)}`" if default else "empty"
    if isinstance(default, dict):
        return f"`{','.join(f'{key}={value:g}' for key, value in default.items())}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def _expected() -> dict[str, str]:
    return {
        name.upper(): "required" if field.is_required() else _as_written(field.default)
        for name, field in Settings.model_fields.items()
    }


def test_configuration_reference_is_the_settings() -> None:
    documented = _settings_table(CONFIGURATION.read_text())
    expected = _expected()
    assert sorted(set(expected) - set(documented)) == [], "settings missing from the reference"
    assert sorted(set(documented) - set(expected)) == [], "rows that are no setting"
    # A required setting's cell may say more after "required" (when it is required).
    wrong = {
        name: (documented[name], want)
        for name, want in expected.items()
        if not (
            documented[name] == want
            or (want == "required" and documented[name].startswith("required "))
        )
    }
    assert wrong == {}, "documented default -> Settings default"


def test_env_example_names_exactly_the_settings() -> None:
    example = (ROOT / ".env.example").read_text()
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE)
    assert len(names) == len(set(names)), "a variable is set twice"
    assert sorted(names) == sorted(_expected())


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "| run the whole stack locally | `uv run tiktok-auth-service dev` |" in readme
    assert "| run the whole test suite | `uv run pytest` |" in readme
    assert "uv run pytest" in (ROOT / ".ci" / "run").read_text()


def _anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings: lowercased, punctuation but `-` and `_`
    dropped, spaces as `-`."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def _links(text: str) -> list[str]:
    """The targets of inline links, code spans and fenced blocks left out."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return re.findall(r"\]\(([^)\s]+)\)", prose)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _links(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        exists = file.exists()
        if exists and anchor and file.suffix == ".md":
            exists = anchor in _anchors(file.read_text())
        if not exists:
            broken.append(target)
    assert broken == []


def test_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](missing.md) [no anchor](#nowhere)\n")
    assert _links(page.read_text()) == ["#title", "missing.md", "#nowhere"]
    assert "title" in _anchors(page.read_text())
    with pytest.raises(AssertionError):
        test_relative_links_resolve(page)
