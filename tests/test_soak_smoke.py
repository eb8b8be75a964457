"""The soak (`make soak`, bench/soak.py) works end to end on a tiny data set for a few
seconds: two server processes, subscribers that reconnect by cursor, the request mix, and
a result file that accounts for every delivery. Timings (RSS slope, pauses, latency) are
never asserted here: that is the soak's own verdict."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from bench import soak


def test_soak_accounts_for_every_delivery_and_reports_memory_and_pauses(
    server_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    status = soak.main([
        "--minutes", "0.15", "--warmup-minutes", "0.05", "--subscribers", "12",
        "--reconnecting", "2", "--reconnect-every", "3", "--rate", "10", "--interval", "5",
        "--sample", "1", "--scale", "0.02", "--server-url", server_database_url,
        "--redis-url", redis_url, "--database", f"crm_soak_test_{uuid.uuid4().hex[:12]}",
        "--out", str(tmp_path),
    ])  # fmt: skip
    result = json.loads(next(tmp_path.glob("soak-*.json")).read_text())
    deliveries = result["deliveries"]
    assert deliveries["deliveries_expected"] > 0, deliveries
    assert deliveries["lost"] == deliveries["duplicates"] == deliveries["unexpected"] == 0
    assert result["requests"] > 0 and result["request_errors"] == 0, result["request_failures"]
    assert result["reconnects"] > 0 and result["unexpected_closes"] == 0
    assert result["subscribers"] == 12 and not result["subscriber_errors"]
    for process in result["processes"]:
        assert process["rss_end_mib"] > 0 and process["rss_after_clients_left_mib"] > 0
        assert len(process["collections"]) == 3 and process["pause_ms_total"] >= 0
        assert "(all objects)" in process["objects_grown_after_clients_left"]
    assert result["intervals"] and all(r["requests"] >= 0 for r in result["intervals"])
    # The verdict follows the figures: only timing and memory limits can fail it here.
    assert status == (1 if result["failed"] else 0)
    assert not any("lost" in reason for reason in result["failed"])
    assert list(tmp_path.glob("soak-*.md"))
