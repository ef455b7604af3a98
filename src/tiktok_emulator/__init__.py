"""A local emulator of TikTok API for Business ("fake TikTok"): OAuth and the Marketing API
calls a gateway forwards, for tests and development.

Standalone: production code never imports it, and it imports nothing from the service.
"""

from .app import create_emulator_app, serve
from .config import (
    EmulatorAccount,
    EmulatorAdvertiser,
    EmulatorApp,
    EmulatorConfig,
    EndpointLimit,
)
from .state import EmulatorState

__all__ = [
    "EmulatorAccount",
    "EmulatorAdvertiser",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorState",
    "EndpointLimit",
    "create_emulator_app",
    "serve",
]
