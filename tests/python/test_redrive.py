"""The way back from both dead-letter queues, short: `python -m tracklayer_local.redrive --events 30`.

Real `target/debug/ingest` and `target/debug/flush` on fresh queues: a wrong
TRACKLAYER_STAGING_QUEUE_URL sends every event message to the events DLQ, a secret naming an
unknown user sends every staged chunk to the staging DLQ; after each fix the DLQ is moved back
(StartMessageMoveTask where the local SQS runs it, else the labelled stand-in) and every event
lands exactly once. `make redrive-local` runs the same with 40 events.

Skipped only when the binaries are not built (`make test` builds them first).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import stack_env_path

REPO = Path(__file__).resolve().parents[2]
BINARIES = [REPO / "target" / "debug" / name for name in ("ingest", "flush")]
MISSING = [str(b.relative_to(REPO)) for b in BINARIES if not b.is_file()]
EVENTS = 30  # two in every 15 broken: 2 without merchant_id, 2 with value "12,50"; 26 valid
TIMEOUT_S = 180


@pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not built: run `cargo build -p ingest -p flush`")
def test_dead_lettered_events_and_chunks_come_back_and_load_once(stack_env: dict[str, str], tmp_path: Path) -> None:
    result = tmp_path / "redrive.json"
    env_file = stack_env_path()
    command = [sys.executable, "-m", "tracklayer_local.redrive", "--events", str(EVENTS),
               "--env-file", str(env_file), "--log-dir", str(tmp_path), "--json", str(result)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    detail = f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    assert result.is_file(), detail
    f = json.loads(result.read_text())
    assert f["problems"] == [] and f["ok"] and done.returncode == 0, detail

    # the misconfigurations really failed through the binaries, and nothing landed meanwhile
    messages = f["messages_sent"]
    assert messages == 20, detail  # 30 events: three single events, then an array of three, five times
    assert f["events_dlq_after_misconfiguration"] == messages, detail
    assert f["staged_while_misconfigured"] == 0, detail
    assert f["ingest_error"].startswith("cannot send to the staging queue"), detail
    assert "TRACKLAYER_STAGING_QUEUE_URL" in f["ingest_fix"], detail
    assert f["chunks_staged"] > 0 and f["staging_dlq_after_misconfiguration"] == f["chunks_staged"], detail
    assert re.search(r"390144 .*JWT token is invalid\. \[[0-9a-f-]{36}\]", f["flush_error"]), detail
    assert f["rows_before_redrive"] == 0, detail

    # the redrives moved everything back
    for key, expected in (("events_redrive", messages), ("staging_redrive", f["chunks_staged"])):
        assert f[key]["moved"] == expected, detail
        assert f[key]["method"] in ("StartMessageMoveTask", "local stand-in (receive, send, delete)"), detail

    # every event exactly once, and nothing left anywhere
    assert (f["events_sent"], f["valid_sent"], f["bad_sent"]) == (EVENTS, 26, 4), detail
    assert f["flush_report"]["status"] == "loaded", detail
    assert (f["flush_report"]["events_loaded"], f["flush_report"]["events_rejected"]) == (26, 4), detail
    assert (f["loaded_rows"], f["loaded_distinct"], f["missing"], f["duplicates"], f["bad_loaded"]) == (
        26,
        26,
        0,
        0,
        0,
    ), detail
    assert f["quarantined_by_reason"] == {"missing_field": 2, "invalid_field": 2}, detail
    assert f["left"] == {"events_queue": 0, "events_dlq": 0, "staging_queue": 0, "staging_dlq": 0}, detail
