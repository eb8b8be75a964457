"""Log output of the server: one JSON object per line in production (``request_id`` as a
field, so a masked error's ``requestId`` finds its traceback), plain text otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from crm_graphql.observability.requests import RequestIdFilter, WithRequestId
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
    """Send the ``crm_graphql`` loggers to ``stream`` (stderr) in the configured format,
    each line with the request id it was written for (``observability.requests``), and
    give uvicorn's access lines the request id too (and the JSON format in JSON mode).
    Calling it again replaces the handler it installed."""
    logger = logging.getLogger("crm_graphql")
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        json_formatter() if settings.json_logs else WithRequestId(logging.Formatter(TEXT_FORMAT))
    )
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    _access_lines_with_request_id(settings)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return handler


def _access_lines_with_request_id(settings: Settings) -> None:
    """uvicorn's access logger (configured by uvicorn before the app is built): each
    line gets the request id of the request it reports."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RequestIdFilter) for f in access.filters):
        access.addFilter(RequestIdFilter())
    for handler in access.handlers:
        formatter = handler.formatter
        if settings.json_logs:
            if not isinstance(formatter, JsonFormatter):
                handler.setFormatter(json_formatter())
        elif not isinstance(formatter, WithRequestId):
            handler.setFormatter(WithRequestId(formatter or logging.Formatter()))


class RepeatedWarning:
    """A warning that would repeat on every request or write while a dependency is down
    (PostgreSQL or Redis stopped): logged the first time, then at most once per
    ``interval`` seconds with how many times it happened since the previous line.
    ``clock`` (seconds, monotonic) is replaced in tests."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._pending = 0
        self._last: float | None = None

    def __call__(
        self,
        message: str,
        *args: object,
        count: int = 1,
        exc_info: BaseException | bool | None = None,
        **extra: Any,
    ) -> bool:
        """Count ``count`` occurrences; when the interval has passed, log ``message``
        formatted with ``args``, then the count, then `` in the last N s`` (empty on
        the first line): its last two placeholders are ``%d`` and ``%s``. True if logged."""
        self._pending += count
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        since = "" if self._last is None else f" in the last {now - self._last:.0f} s"
        self.logger.warning(
            message,
            *args,
            self._pending,
            since,
            exc_info=exc_info,
            extra=extra or None,
        )
        self._pending = 0
        self._last = now
        return True
