"""Log output of the server: one JSON object per line in production (``request_id`` as a
field, so a masked error's ``requestId`` finds its traceback), plain text otherwise."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from crm_graphql.settings import Settings

_HANDLER_NAME = "crm_graphql"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send the ``crm_graphql`` loggers to ``stream`` (stderr) in the configured format.
    Calling it again replaces the handler it installed."""
    logger = logging.getLogger("crm_graphql")
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(json_formatter() if settings.json_logs else logging.Formatter(TEXT_FORMAT))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return handler
