"""`python -m tiktok_emulator [--host H] [--port P]`; settings from EMULATOR_*."""

from __future__ import annotations

import argparse
import os

from . import EmulatorConfig, serve


def main() -> None:
    """Parse the command line and serve the emulator until interrupted."""
    parser = argparse.ArgumentParser(description="Run the TikTok OAuth emulator.")
    parser.add_argument("--host", default=os.environ.get("EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", "8900")))
    args = parser.parse_args()
    serve(EmulatorConfig.from_env(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
