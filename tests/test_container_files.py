"""Static checks of the container files: Dockerfile, .dockerignore and docker-compose.yml.

No Docker engine runs here, so these tests parse the files instead of building them: a small
Dockerfile linter (exercised on broken samples too, so its rules are known to bite) and
structural checks of the compose file with PyYAML."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CONSOLE_SCRIPT = "tiktok-auth-service"


def _console_scripts() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(pyproject["project"].get("scripts", {}))


# --------------------------------------------------------------------------- Dockerfile linter


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their first line number; comments dropped, continuations joined."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        # Comment lines are ignored, also in the middle of a continued instruction.
        if stripped.startswith("#") or (not stripped and not parts):
            continue
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        joined = " ".join(p for p in parts if p)
        parts = []
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    if parts:
        raise ValueError(f"line {start}: instruction ends with a line continuation")
    return instructions


def split_stages(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name, instruction.line))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif instruction.keyword not in ("ARG",):
            raise ValueError(f"line {instruction.line}: {instruction.keyword} before FROM")
    return stages


def _image_problem(image: str) -> str | None:
    """Why `image` is not pinned, or None when it carries an explicit tag or digest."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag"
    if last.rsplit(":", 1)[1] in ("", "latest"):
        return f"image {image!r} uses the 'latest' tag"
    return None


def _flags(args: str) -> tuple[dict[str, str], str]:
    """Split leading `--name=value` / `--name` flags from the rest of an instruction."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def _exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form instruction, or None for shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return None


def _copy_sources(args: str) -> list[str]:
    array = _exec_form(args)
    words = array if array is not None else shlex.split(args)
    return words[:-1]


def _dockerignore_patterns(text: str) -> list[tuple[str, bool]]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((line.lstrip("!").strip("/"), negated))
    return patterns


def _ignored(path: str, patterns: list[tuple[str, bool]]) -> bool:
    """Docker's rule, simplified: the last matching pattern decides; a match on a parent
    directory excludes everything below it."""
    candidates = [path]
    parts = path.split("/")
    candidates += ["/".join(parts[:n]) for n in range(1, len(parts))]
    ignored = False
    for pattern, negated in patterns:
        regex = _glob_regex(pattern)
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negated
    return ignored


def _glob_regex(pattern: str) -> str:
    """A .dockerignore glob as a regex: `*` and `?` stay within one path segment, `**` spans
    segments."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            char = pattern[i]
            out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
            i += 1
    return "".join(out)


def lint_dockerfile(
    text: str, root: Path = ROOT, scripts: set[str] | None = None, dockerignore: str = ""
) -> list[str]:
    """Problems found in a Dockerfile; an empty list means it passes."""
    scripts = _console_scripts() if scripts is None else scripts
    problems: list[str] = []
    try:
        instructions = parse_dockerfile(text)
        stages = split_stages(instructions)
    except ValueError as exc:
        return [str(exc)]
    if not stages:
        return ["no FROM instruction"]
    names = {s.name for s in stages if s.name}
    ignore = _dockerignore_patterns(dockerignore)

    for stage in stages:
        external = stage.image not in names and stage.image != "scratch"
        if external and (problem := _image_problem(stage.image)):
            problems.append(f"line {stage.line}: FROM {problem}")
        for copy in stage.all("COPY") + stage.all("ADD"):
            flags, rest = _flags(copy.args)
            source_stage = flags.get("from")
            if source_stage is not None:
                external = source_stage not in names and not source_stage.isdigit()
                if external and (problem := _image_problem(source_stage)):
                    problems.append(f"line {copy.line}: COPY --from {problem}")
                continue
            for source in _copy_sources(rest):
                if re.match(r"^[a-z]+://", source):
                    problems.append(f"line {copy.line}: remote source {source!r}")
                    continue
                relative = source.removeprefix("./").rstrip("/") or "."
                if not list(root.glob(relative)) and not (root / relative).exists():
                    problems.append(f"line {copy.line}: COPY source {source!r} does not exist")
                elif relative != "." and _ignored(relative, ignore):
                    problems.append(f"line {copy.line}: COPY source {source!r} is .dockerignored")
        for run in stage.all("RUN"):
            if re.search(r"\buv\s+sync\b", run.args) and "--locked" not in run.args:
                problems.append(f"line {run.line}: `uv sync` without --locked")
        for instruction in stage.all("ENV") + stage.all("ARG"):
            for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", instruction.args):
                if re.search(r"SECRET|PASSWORD|TOKEN|_KEY|KEYS|DATABASE_URL", name.upper()):
                    problems.append(
                        f"line {instruction.line}: {instruction.keyword} sets {name}; "
                        "secrets belong in the runtime environment"
                    )

    if not any(re.search(r"\buv\s+sync\b", run.args) for s in stages for run in s.all("RUN")):
        problems.append("no `uv sync` step")

    final = stages[-1]
    users = final.all("USER")
    if not users:
        problems.append("final stage sets no USER (it would run as root)")
    else:
        user = users[-1].args.split(":")[0].strip()
        if user in ("root", "0", ""):
            problems.append(f"line {users[-1].line}: final USER is root")

    checks = final.all("HEALTHCHECK")
    if not checks:
        problems.append("final stage has no HEALTHCHECK")
    else:
        _, rest = _flags(checks[-1].args)
        keyword, _, command = rest.partition(" ")
        if keyword.upper() != "CMD" or _exec_form(command.strip()) is None:
            problems.append(f"line {checks[-1].line}: HEALTHCHECK is not `CMD [json array]`")

    cmds = final.all("CMD")
    if not cmds:
        problems.append("final stage has no CMD")
    else:
        cmd = _exec_form(cmds[-1].args)
        if cmd is None:
            problems.append(f"line {cmds[-1].line}: CMD is not in exec form (JSON array)")
        elif cmd[0] not in scripts:
            problems.append(
                f"line {cmds[-1].line}: CMD runs {cmd[0]!r}, not a console script of "
                f"pyproject.toml ({sorted(scripts)})"
            )
    return problems


def _stages() -> list[Stage]:
    return split_stages(parse_dockerfile(DOCKERFILE.read_text()))


def test_dockerfile_passes_the_linter() -> None:
    problems = lint_dockerfile(DOCKERFILE.read_text(), dockerignore=DOCKERIGNORE.read_text())
    assert problems == []


def test_console_script_is_declared() -> None:
    assert CONSOLE_SCRIPT in _console_scripts()


def _wheel_sources() -> list[str]:
    """What the wheel is built from: [tool.hatch.build.targets.wheel] only-include, plus the
    readme that goes into the package metadata."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    return [*wheel["only-include"], pyproject["project"]["readme"]]


def test_dockerfile_layers_dependencies_before_the_source() -> None:
    builder = _stages()[0]
    steps = builder.instructions
    first_copy = next(
        i for i, s in enumerate(steps) if s.keyword == "COPY" and "--from" not in s.args
    )
    assert set(_copy_sources(steps[first_copy].args)) == {"pyproject.toml", "uv.lock"}
    syncs = [i for i, s in enumerate(steps) if s.keyword == "RUN" and "uv sync" in s.args]
    assert len(syncs) == 2, "one sync for the dependencies, one for the project"
    assert "--no-install-project" in steps[syncs[0]].args
    assert "--no-install-project" not in steps[syncs[1]].args
    for index in syncs:
        assert "--no-dev" in steps[index].args
    # The project goes into the venv as a built wheel, so the venv works without the sources.
    assert "--no-editable" in steps[syncs[1]].args

    copies = [
        (i, source)
        for i, s in enumerate(steps)
        if s.keyword == "COPY" and "--from" not in s.args
        for source in _copy_sources(s.args)
    ]
    # Everything the wheel is built from arrives between the two syncs, so a source edit does
    # not invalidate the dependency layer.
    for needed in _wheel_sources():
        at = [i for i, source in copies if needed == source or needed.startswith(source + "/")]
        assert at, f"the builder does not copy {needed}, which the wheel is built from"
        assert syncs[0] < min(at) < syncs[1], needed
    # The development tools beside the product under src/ stay out of the image build.
    src = [source for _, source in copies if source.split("/")[0] == "src"]
    assert src == ["src/tiktok_auth_service"], src


def test_dockerfile_uses_official_uv_and_one_python_for_both_stages() -> None:
    stages = _stages()
    assert len(stages) >= 2, "multi-stage build"
    pythons = {s.image for s in stages if s.image.startswith("python:")}
    # The venv's interpreter is a symlink to the base image's python: both stages must match.
    assert len(pythons) == 1, pythons
    (python,) = pythons
    assert re.fullmatch(r"python:3\.12(\.\d+)?-slim(-\w+)?", python), python
    uv_copies = [
        _flags(i.args)[0]["from"]
        for s in stages
        for i in s.all("COPY")
        if _flags(i.args)[0].get("from", "").startswith("ghcr.io/astral-sh/uv:")
    ]
    assert uv_copies, "uv comes from ghcr.io/astral-sh/uv"


def test_dockerfile_runtime_stage() -> None:
    stages = _stages()
    final = stages[-1]
    # Only the venv (with the project installed from its wheel): no source tree, no alembic/.
    copies = [_flags(i.args) for i in final.all("COPY")]
    assert [(flags.get("from"), rest.split()) for flags, rest in copies] == [
        ("builder", ["/app/.venv", "/app/.venv"])
    ]
    env = " ".join(i.args for i in final.all("ENV"))
    assert re.search(r"PATH=/app/\.venv/bin:\$\{?PATH\}?", env)
    assert "PYTHONUNBUFFERED=1" in env
    assert [i.args for i in final.all("EXPOSE")] == ["8000"]
    (check,) = final.all("HEALTHCHECK")
    assert "http://127.0.0.1:8000/healthz" in check.args and "urllib" in check.args
    assert _exec_form(final.all("CMD")[-1].args) == [
        CONSOLE_SCRIPT,
        "serve",
        "--host",
        "0.0.0.0",  # noqa: S104 - inside the container
        "--port",
        "8000",
    ]


def test_healthcheck_command_is_valid_python() -> None:
    (check,) = _stages()[-1].all("HEALTHCHECK")
    _compiles(check)


def _stage(name: str) -> Stage:
    stages = {s.name: s for s in _stages()}
    assert name in stages, f"no stage named {name!r} in the Dockerfile"
    return stages[name]


def test_dockerfile_default_target_is_the_production_runtime() -> None:
    stages = _stages()
    names = [s.name for s in stages]
    # `docker build .` builds the last stage: the production image, never the dev one.
    assert names[-1] == "runtime", names
    assert names.index("builder") < names.index("dev") < names.index("runtime"), names
    runtime = stages[-1]
    # runtime starts from the base image, not from a stage that holds the emulator or uv.
    assert runtime.image.startswith("python:"), runtime.image
    for stage in stages:
        for copy in stage.all("COPY"):
            assert _flags(copy.args)[0].get("from") != "dev", f"line {copy.line} copies from dev"


def test_dockerfile_emulator_is_only_in_the_dev_stage() -> None:
    for stage in _stages():
        sources = [
            source
            for copy in stage.all("COPY")
            if "from" not in _flags(copy.args)[0]
            for source in _copy_sources(_flags(copy.args)[1])
        ]
        dev_tools = [s for s in sources if "tiktok_emulator" in s or "tiktok_auth_dev" in s]
        if stage.name == "dev":
            assert dev_tools == ["src/tiktok_emulator"], dev_tools
        else:
            assert dev_tools == [], (stage.name, dev_tools)


def test_dockerfile_dev_stage_runs_the_emulator() -> None:
    dev = _stage("dev")
    # On top of the builder's venv (the same service and dependencies as the runtime image).
    assert dev.image == "builder"
    (copy,) = dev.all("COPY")
    destination = _flags(copy.args)[1].split()[-1]
    package_dir = destination.rstrip("/").rpartition("/")[0]
    assert destination.rstrip("/").endswith("/tiktok_emulator"), destination
    env = " ".join(i.args for i in dev.all("ENV"))
    assert re.search(rf"PYTHONPATH={re.escape(package_dir)}(\s|$)", env), env
    assert re.search(r"PATH=/app/\.venv/bin:\$\{?PATH\}?", env), env
    # Compiled at build time: the container's root filesystem is read-only.
    assert any("compileall" in run.args and package_dir in run.args for run in dev.all("RUN"))
    users = dev.all("USER")
    assert users and users[-1].args.split(":")[0] not in ("root", "0", ""), "dev runs as non-root"
    assert [i.args for i in dev.all("EXPOSE")] == ["8900"]
    (check,) = dev.all("HEALTHCHECK")
    assert "http://127.0.0.1:8900/" in check.args
    _compiles(check)
    assert _exec_form(dev.all("CMD")[-1].args) == [
        CONSOLE_SCRIPT,
        "emulator",
        "--host",
        "0.0.0.0",  # noqa: S104 - inside the container
        "--port",
        "8900",
    ]


def _compiles(check: Instruction) -> None:
    _, rest = _flags(check.args)
    command = _exec_form(rest.partition(" ")[2].strip())
    assert command is not None and command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")


GOOD = """\
FROM python:3.12-slim AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/
COPY pyproject.toml uv.lock ./
RUN uv sync --locked \\
    --no-dev
FROM python:3.12-slim
USER 10001
HEALTHCHECK CMD ["python", "-c", "pass"]
CMD ["tiktok-auth-service", "serve"]
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("FROM python:3.12-slim\n", "FROM python\n", "has no tag"),
        ("FROM python:3.12-slim AS", "FROM python:latest AS", "'latest'"),
        ("uv:0.13.9", "uv:latest", "COPY --from"),
        ("USER 10001\n", "", "no USER"),
        ("USER 10001\n", "USER root\n", "USER is root"),
        ("USER 10001\n", "USER 0:0\n", "USER is root"),
        ('HEALTHCHECK CMD ["python", "-c", "pass"]\n', "", "no HEALTHCHECK"),
        ('CMD ["python", "-c", "pass"]', "CMD python -c pass", "HEALTHCHECK is not"),
        ('CMD ["tiktok-auth-service", "serve"]', "CMD tiktok-auth-service serve", "exec form"),
        ('CMD ["tiktok-auth-service", "serve"]', 'CMD ["uvicorn", "app"]', "console script"),
        ("uv sync --locked", "uv sync", "without --locked"),
        ("pyproject.toml uv.lock", "pyproject.toml requirements.txt", "does not exist"),
        ("USER 10001\n", "ENV TIKTOK_APP_SECRET=abc\nUSER 10001\n", "secrets belong"),
        ('"serve"]\n', '"serve"] \\\n', "line continuation"),
    ],
)
def test_linter_catches(old: str, new: str, expected: str) -> None:
    assert lint_dockerfile(GOOD) == []
    assert old in GOOD
    problems = lint_dockerfile(GOOD.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_linter_flags_copies_excluded_by_dockerignore() -> None:
    assert lint_dockerfile(GOOD, dockerignore="*.lock\n")
    assert lint_dockerfile(GOOD, dockerignore="*.lock\n!uv.lock\n") == []


def test_parser_joins_continuations_and_skips_comments() -> None:
    instructions = parse_dockerfile(
        "# c\nFROM a:1\nRUN one \\\n  # inner comment\n  two\n\nUSER x\n"
    )
    assert [(i.keyword, i.args, i.line) for i in instructions] == [
        ("FROM", "a:1", 2),
        ("RUN", "one two", 3),
        ("USER", "x", 7),
    ]


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = _dockerignore_patterns(DOCKERIGNORE.read_text())
    for path in (".env", ".venv/bin/python", ".git/HEAD", ".dev-data/pg", "test-output/x.png"):
        assert _ignored(path, patterns), path
    for path in (".pytest_cache/v", ".mypy_cache/x", ".ruff_cache/x", "src/a/__pycache__/m.pyc"):
        assert _ignored(path, patterns), path
    for path in (
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "src/tiktok_auth_service/cli.py",
        "src/tiktok_emulator/app.py",  # the dev stage's emulator
    ):
        assert not _ignored(path, patterns), path


# ------------------------------------------------------------------------------ docker compose

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<escape>\$))"
)


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style interpolation (the subset this file uses), resolving from `env`."""

    def replace(match: re.Match[str]) -> str:
        if match["escape"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        current = env.get(name)
        if op in (":-", "-"):
            return current if current or (op == "-" and current is not None) else arg
        if op in (":?", "?") and not current:
            raise LookupError(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(replace, value)


def _variables(text: str) -> dict[str, set[str]]:
    """Variable name -> the interpolation operators it is used with ('' for none)."""
    used: dict[str, set[str]] = {}
    for match in _VARIABLE.finditer(text):
        if match["escape"]:
            continue
        name = match["braced"] or match["bare"]
        used.setdefault(name, set()).add(match["op"] or "")
    return used


def _env_example() -> dict[str, str]:
    if not ENV_EXAMPLE.exists():
        pytest.fail(".env.example is missing: compose documents its variables there")
    pairs = {}
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def test_compose_has_no_obsolete_version_key() -> None:
    assert "version" not in _compose()


def test_compose_services_and_dependencies() -> None:
    services = _compose()["services"]
    assert {"db", "migrate", "app"} <= set(services)
    migrate, app = services["migrate"], services["app"]

    assert migrate["restart"] == "no", "quote it: a bare `no` is parsed as false"
    assert _command(migrate) == [CONSOLE_SCRIPT, "migrate"]
    assert _depends_on(migrate)["db"] == "service_healthy"

    assert _depends_on(app)["migrate"] == "service_completed_successfully"
    assert app.get("build") in (".", {"context": "."}) or app["build"].get("context") == "."
    assert [_interpolate(str(p), {}) for p in app["ports"]] == ["127.0.0.1:8000:8000"]
    if "command" in app:
        assert _command(app)[:2] == [CONSOLE_SCRIPT, "serve"]

    # migrate runs the image the app runs.
    assert migrate.get("image") == app.get("image") or migrate.get("build") == app.get("build")
    assert migrate.get("image") or migrate.get("build")


def test_compose_database() -> None:
    compose = _compose()
    db = compose["services"]["db"]
    assert re.fullmatch(r"postgres:16(\.\d+)*(-[\w.]+)?", db["image"]), db["image"]
    test = db["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))
    volume_names = [str(v).split(":")[0] for v in db["volumes"]]
    declared = compose.get("volumes") or {}
    assert any(name in declared for name in volume_names), "db data is on a named volume"
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in db["volumes"])


def test_compose_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        image = service.get("image")
        if image and not service.get("build"):
            assert _image_problem(_interpolate(image, {})) is None, name


def test_compose_app_environment() -> None:
    services = _compose()["services"]
    for name in ("app", "migrate"):
        service = services[name]
        env_files = service.get("env_file")
        env_files = [env_files] if isinstance(env_files, str | dict) else env_files or []
        paths = [f if isinstance(f, str) else f["path"] for f in env_files]
        assert ".env" in paths, f"{name} reads .env"
        url = _interpolate(_environment(service)["DATABASE_URL"], {})
        assert re.fullmatch(r"postgresql\+asyncpg://[^:@/]+:[^@/]+@db:5432/\w+", url), url

    # The service's credentials are the ones the db container is initialised with.
    db_env = {k: _interpolate(v, {}) for k, v in _environment(services["db"]).items()}
    url = _interpolate(_environment(services["app"])["DATABASE_URL"], {})
    expected = (
        f"postgresql+asyncpg://{db_env['POSTGRES_USER']}:{db_env['POSTGRES_PASSWORD']}"
        f"@db:5432/{db_env.get('POSTGRES_DB', db_env['POSTGRES_USER'])}"
    )
    assert url == expected


def test_compose_variables_have_defaults_or_are_documented() -> None:
    documented = _env_example()
    used = _variables(COMPOSE.read_text())
    assert used, "expected ${VAR} interpolation in docker-compose.yml"
    for name, ops in used.items():
        has_default = ops <= {":-", "-"}
        assert has_default or name in documented, f"${{{name}}} has no default and no .env.example"


def test_compose_required_secrets_are_not_hard_coded() -> None:
    secret = re.compile(r"SECRET|PASSWORD|TOKEN|KEYS?$")
    for name, service in _compose()["services"].items():
        for key, value in _environment(service).items():
            if secret.search(key):
                assert "${" in value, f"{name}: {key} is hard-coded"
    # Required values fail loudly when unset instead of starting a broken service.
    required = {name for name, ops in _variables(COMPOSE.read_text()).items() if ":?" in ops}
    with pytest.raises(LookupError):
        for service in _compose()["services"].values():
            for value in _environment(service).values():
                _interpolate(value, {})
    assert required <= set(_env_example())


def test_env_example_documents_the_required_settings() -> None:
    documented = _env_example()
    for name in (
        "TIKTOK_APP_ID",
        "TIKTOK_APP_SECRET",
        "TIKTOK_REDIRECT_URI",
        "TOKEN_ENCRYPTION_KEYS",
    ):
        assert name in documented, name


def test_interpolation_helper() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert _interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/$$X/$SET", env) == (
        "x/d//d/$X/x"
    )
    with pytest.raises(LookupError, match="needed"):
        _interpolate("${UNSET:?needed}", env)
    assert _variables("$${HIDDEN} ${A:?m} ${B:-d} $C") == {"A": {":?"}, "B": {":-"}, "C": {""}}


# --------------------------------------------------------------- compose: hardening, dev profile

PRODUCTION = {"db", "migrate", "app"}
DEV_PROFILE = {"emulator", "db-dev", "migrate-dev", "app-dev"}


def _active(services: dict[str, Any], profiles: set[str]) -> set[str]:
    """The services `docker compose [--profile P ...] up` starts: those without profiles, and
    those with one of the given profiles."""
    return {
        name
        for name, service in services.items()
        if not service.get("profiles") or set(service["profiles"]) & profiles
    }


def _ports(service: dict[str, Any], env: dict[str, str]) -> list[tuple[str, int, int]]:
    """Published ports as (host ip, host port, container port)."""
    published = []
    for port in service.get("ports") or []:
        ip, host, container = _interpolate(str(port), env).split(":")
        published.append((ip, int(host), int(container)))
    return published


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_compose_our_containers_are_hardened() -> None:
    services = _compose()["services"]
    built = {name for name, service in services.items() if service.get("build")}
    assert {"app", "migrate", "emulator", "app-dev", "migrate-dev"} <= built
    for name in built:
        service = services[name]
        assert service.get("read_only") is True, f"{name}: read-only root filesystem"
        mounts = [str(t).split(":")[0] for t in service.get("tmpfs") or []]
        assert "/tmp" in mounts, f"{name}: a tmpfs on /tmp"  # noqa: S108 - a container path
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in (service.get("security_opt") or []), name
        assert "privileged" not in service and not service.get("cap_add"), name


def test_compose_ports_bind_to_loopback_by_default() -> None:
    services = _compose()["services"]
    published = {name: _ports(s, {}) for name, s in services.items() if s.get("ports")}
    assert published["app"] == [("127.0.0.1", 8000, 8000)]
    for name, ports in published.items():
        assert all(ip == "127.0.0.1" for ip, _, _ in ports), (name, ports)
        # One documented switch opens them all.
        wide = _ports(services[name], {"APP_BIND": "0.0.0.0"})  # noqa: S104
        assert all(ip == "0.0.0.0" for ip, _, _ in wide), (name, wide)  # noqa: S104
    assert not services["db"].get("ports"), "PostgreSQL stays on the compose network"
    header = COMPOSE.read_text().split("\nx-", 1)[0]
    assert "APP_BIND" in header


def test_compose_profiles() -> None:
    services = _compose()["services"]
    # `docker compose up` is the production stack, unchanged by the dev profile.
    assert _active(services, set()) == PRODUCTION
    assert _active(services, {"dev"}) == PRODUCTION | DEV_PROFILE
    for name in DEV_PROFILE:
        assert services[name]["profiles"] == ["dev"], name
    # Compose refuses a dependency that the active profiles leave out.
    for profiles in (set(), {"dev"}):
        active = _active(services, profiles)
        for name in active:
            assert set(_depends_on(services[name])) <= active, (profiles, name)
    # No port is published twice when both stacks run side by side.
    host_ports = [p[1] for s in services.values() for p in _ports(s, {})]
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_compose_emulator_service() -> None:
    emulator = _compose()["services"]["emulator"]
    build = emulator["build"]
    assert build["context"] == "." and build["target"] == "dev"
    command = _command(emulator)
    assert command[:2] == [CONSOLE_SCRIPT, "emulator"]
    assert _option(command, "--host") == "0.0.0.0"  # noqa: S104 - inside the container
    port = int(_option(command, "--port"))
    assert [p[1:] for p in _ports(emulator, {})] == [(port, port)]
    # Its own tag: the production tag always names the production image.
    assert emulator["image"] != _compose()["services"]["app"]["image"]


def test_compose_emulator_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiktok_emulator import EmulatorConfig

    env = _environment(_compose()["services"]["emulator"])
    assert env and all(name.startswith("EMULATOR_") for name in env), env
    for name, value in env.items():
        monkeypatch.setenv(name, _interpolate(value, {}))
    # The emulator's own parser (JSON lists, validation) accepts the file's configuration.
    config = EmulatorConfig.from_env()
    assert [app.app_id for app in config.apps] == ["emulator-app"]


def test_compose_dev_app_is_wired_to_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiktok_auth_service.config import Settings
    from tiktok_emulator import EmulatorConfig

    services = _compose()["services"]
    app_dev, app = services["app-dev"], services["app"]
    # The production image (default target), with the service's own command.
    assert app_dev["image"] == app["image"] and app_dev["build"] == app["build"]
    assert _command(app_dev) == _command(app)
    assert _depends_on(app_dev) == {
        "db-dev": "service_healthy",
        "migrate-dev": "service_completed_successfully",
        "emulator": "service_healthy",
    }
    # Nothing meant for the production app (.env) reaches it.
    assert not app_dev.get("env_file")

    env = {
        k: _interpolate(v, {"TOKEN_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "="})
        for k, v in _environment(app_dev).items()
    }
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    settings = Settings(_env_file=None, **values)

    emulator = services["emulator"]
    ((_, emulator_host_port, emulator_port),) = _ports(emulator, {})
    ((_, app_host_port, app_port),) = _ports(app_dev, {})
    assert app_port == int(_option(_command(app_dev), "--port"))
    # The browser opens the consent pages on the emulator's published port ...
    browser_origin = f"http://127.0.0.1:{emulator_host_port}"
    assert settings.tiktok_auth_url == f"{browser_origin}/portal/auth"
    assert settings.tiktok_account_auth_url == f"{browser_origin}/v2/auth/authorize/"
    # ... while the service calls the API by its name on the compose network.
    assert settings.tiktok_api_base_url == f"http://emulator:{emulator_port}/open_api/v1.3"
    # TikTok (the emulator) sends the browser back to app-dev's published port.
    assert settings.tiktok_redirect_uri == f"http://127.0.0.1:{app_host_port}/callback"
    assert settings.return_to_allowed_origins == [f"http://127.0.0.1:{app_host_port}"]

    for name, value in _environment(emulator).items():
        monkeypatch.setenv(name, _interpolate(value, {}))
    (registered,) = EmulatorConfig.from_env().apps
    assert registered.app_id == settings.tiktok_app_id
    assert registered.secret == settings.tiktok_app_secret.get_secret_value()
    assert settings.tiktok_redirect_uri in registered.redirect_uris
    assert registered.account_redirect_uri == settings.tiktok_redirect_uri


def test_compose_dev_stack_has_its_own_database() -> None:
    services = _compose()["services"]
    migrate_dev, app_dev, db_dev = services["migrate-dev"], services["app-dev"], services["db-dev"]
    assert _command(migrate_dev) == [CONSOLE_SCRIPT, "migrate"]
    assert migrate_dev["restart"] == "no"
    assert _depends_on(migrate_dev) == {"db-dev": "service_healthy"}
    assert migrate_dev.get("image") == app_dev.get("image")
    for service in (migrate_dev, app_dev):
        url = _interpolate(_environment(service)["DATABASE_URL"], {})
        assert re.fullmatch(r"postgresql\+asyncpg://[^:@/]+:[^@/]+@db-dev:5432/\w+", url), url
    # Grants made at the emulator never reach the production app's database.
    db = services["db"]
    assert db_dev["image"] == db["image"]
    assert {str(v).split(":")[0] for v in db_dev["volumes"]}.isdisjoint(
        str(v).split(":")[0] for v in db["volumes"]
    )
    assert any(str(v).split(":")[0] in (_compose().get("volumes") or {}) for v in db_dev["volumes"])


def test_compose_production_app_talks_to_tiktok() -> None:
    services = _compose()["services"]
    for name in ("app", "migrate"):
        env = _environment(services[name])
        assert not services[name].get("profiles"), name
        assert not any("emulator" in value for value in env.values()), name
