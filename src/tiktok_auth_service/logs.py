"""How the process logs: JSON lines (one object per record) or text, configured once by the
command line; nothing here runs at import.

Log calls carry their facts as `extra={...}` fields (`grant_id`, `endpoint`, `code`, ...) and
a readable message. The JSON formatter writes the extras as keys of the line; the text
formatter shows the message only, which repeats what matters. Secrets never go in either.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from tiktok_auth_service.config import LogFormat, LogLevel

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# The service's own loggers share this prefix; libraries log only when they warn.
OWN_LOGGERS = "tiktok_auth_service"


def json_formatter() -> logging.Formatter:
    """One JSON object per line: `time` (ISO 8601, UTC), `level`, `logger`, `message`, then
    every extra field of the record (and `exc_info` for a traceback). Encoded by orjson."""
    return OrjsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        # uvicorn's copy of its message with terminal colours.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter(TEXT_FORMAT)


class ContextFilter(logging.Filter):
    """Adds `field` to every record from `current()` (e.g. the request id of the request being
    served), unless the record already carries one or there is none."""

    def __init__(self, field: str, current: Callable[[], Any]) -> None:
        super().__init__()
        self.field = field
        self.current = current

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, self.field, None) is None:
            value = self.current()
            if value is not None:
                setattr(record, self.field, value)
        return True


def configure(
    level: LogLevel,
    format: LogFormat,
    filters: Iterable[logging.Filter] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every record to `stream` (stderr) in `format`: the service's own loggers from
    `level`, libraries (alembic, uvicorn, asyncpg, ...) from WARNING. Returns the handler."""
    # Neither format shows the caller's file and line, thread or process, so the records skip
    # finding them (the logging HOWTO's "Optimization"): a tenth of the token read's time.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if format == "json" else text_formatter())
    for added in filters:
        handler.addFilter(added)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger(OWN_LOGGERS).setLevel(level)
    # httpx logs every request URL at INFO, and advertiser/get carries the app secret in its
    # query string (TikTok's design): that logger stays quiet whatever the root's level.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return handler
