# syntax=docker/dockerfile:1
#
# Image for tiktok-auth-service. Build:   docker build -t tiktok-auth-service .
# Configuration comes only from the environment at run time (see .env.example); nothing secret
# is baked into the image.
#
# The project is built into a wheel and installed into /app/.venv (not editable), so the runtime
# stage copies that venv and nothing else: no source tree. The wheel carries the Alembic scripts
# inside the package (tiktok_auth_service/migrations), where `tiktok-auth-service migrate` finds
# them, and leaves out the development tools that sit beside the product under src/.
#
# Stages: builder -> dev (builder + the TikTok emulator, for `docker compose --profile dev`)
# and builder -> runtime. runtime is the last stage, so it is what `docker build .` yields.

# ---- builder: resolve the locked dependencies, then install the project -------------------
FROM python:3.12-slim-bookworm AS builder

# Keep this tag in step with the uv that writes uv.lock.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=0 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies only: this layer is rebuilt when pyproject.toml or uv.lock change, not on every
# source edit.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

# The project itself, as a wheel: what the wheel is built from (README.md is part of the package
# metadata, alembic/ becomes tiktok_auth_service/migrations). UV_COMPILE_BYTECODE compiles it.
COPY README.md ./
COPY alembic ./alembic
COPY src/tiktok_auth_service ./src/tiktok_auth_service
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

# ---- dev: the same venv plus the TikTok emulator (compose's `dev` profile) ---------------
# Not the default target: `docker build .` builds the last stage (runtime), which never sees
# src/tiktok_emulator. Build this one with `docker build --target dev .`; compose does it for
# the `emulator` service. The emulator needs nothing beyond the service's own dependencies, so
# its source tree goes on PYTHONPATH next to the installed venv, compiled here because the
# container's filesystem is read-only.
FROM builder AS dev

COPY src/tiktok_emulator /app/dev/tiktok_emulator
RUN python -m compileall -q /app/dev

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app/dev \
    PYTHONUNBUFFERED=1

USER 10001:10001

EXPOSE 8900

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8900/_emulator/clock', timeout=4)"]

CMD ["tiktok-auth-service", "emulator", "--host", "0.0.0.0", "--port", "8900"]

# ---- runtime: same base image, so the venv's interpreter path stays valid -----------------
FROM python:3.12-slim-bookworm AS runtime

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

WORKDIR /app
# The venv is self-contained: the service, its dependencies and its migrations.
COPY --from=builder /app/.venv /app/.venv

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1

USER 10001:10001

EXPOSE 8000

# The slim image has no curl; urlopen raises (exit status 1) on errors and non-2xx answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# One server process per CPU the container may use (`docker run --cpus` included); `--workers N`
# sets another number.
CMD ["tiktok-auth-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
