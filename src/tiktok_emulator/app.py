"""Assembly of the emulator's ASGI app, and a blocking `serve` for the dev stack."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from .admin import admin_routes
from .config import EmulatorConfig
from .envelope import not_found
from .open_api import open_api_route
from .portal import portal_routes
from .state import EmulatorState


async def _not_found(request: Request, exc: Exception) -> Response:
    return not_found()


def create_emulator_app(config: EmulatorConfig | None = None) -> Starlette:
    """A fresh emulator with its own in-memory state, reachable as `app.state.emulator`."""
    state = EmulatorState(config or EmulatorConfig())
    app = Starlette(
        routes=[open_api_route(state), *portal_routes(state), *admin_routes(state)],
        exception_handlers={404: _not_found},
    )
    # TikTok's gateway answers a missing trailing slash with a 404, never with a redirect.
    app.router.redirect_slashes = False
    app.state.emulator = state
    return app


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8900) -> None:
    """Run the emulator with uvicorn until interrupted (blocking)."""
    uvicorn.run(create_emulator_app(config), host=host, port=port, log_level="warning")
