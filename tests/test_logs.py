"""Text log lines carry the request id they were written for (JSON lines are tested on a
real server process in tests/realtime/test_metrics.py)."""

from __future__ import annotations

import io
import logging
from typing import Any

from crm_graphql.logs import configure_logging
from crm_graphql.observability.requests import REQUEST_ID


def test_text_lines_end_with_the_request_id_before_any_traceback(settings: Any) -> None:
    stream = io.StringIO()
    handler = configure_logging(settings.model_copy(update={"log_format": "text"}), stream)
    log = logging.getLogger("crm_graphql.test_logs")
    try:
        log.info("outside any request")
        token = REQUEST_ID.set("req-42")
        try:
            log.info("inside the request")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed inside the request")
        finally:
            REQUEST_ID.reset(token)
    finally:
        logging.getLogger("crm_graphql").removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("crm_graphql.test_logs: outside any request"), lines
    assert lines[1].endswith("inside the request request_id=req-42"), lines
    assert lines[2].endswith("failed inside the request request_id=req-42"), lines
    assert lines[3] == "Traceback (most recent call last):", lines
