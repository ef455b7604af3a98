"""A local emulator of TikTok API for Business OAuth ("fake TikTok") for tests and development.

Standalone: production code never imports it, and it imports nothing from the service.
"""

from .app import create_emulator_app, serve
from .config import EmulatorAccount, EmulatorAdvertiser, EmulatorApp, EmulatorConfig
from .state import EmulatorState

__all__ = [
    "EmulatorAccount",
    "EmulatorAdvertiser",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorState",
    "create_emulator_app",
    "serve",
]
