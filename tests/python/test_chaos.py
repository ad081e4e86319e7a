"""The chaos test, short: `python -m tracklayer_local.chaos --events 3000` against the stack.

Real `target/debug/ingest` (scheduled mode, through the SQS event source mapping emulator) and
`target/debug/flush` (SIGKILLed now and then) while the local Snowflake fails about 10% of the
INSERT submissions (429/503/500 before and after execution, dropped connections, slow statements
answered 202). Asserts what chaos.py checks (nothing lost, nothing loaded twice, the quarantine
holds exactly the bad events, both DLQs and queues empty) and that the chaos really happened:
faults were injected, a flush was killed, and rows a killed flush had inserted came back and were
skipped as already loaded, not inserted again. `make chaos` runs 100,000 events.

Skipped only when the binaries are not built (`cargo build -p ingest -p flush`; `make test`
builds them first).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import stack_env_path
from tracklayer_local import chaos

REPO = Path(__file__).resolve().parents[2]

BINARIES = [REPO / "target" / "debug" / name for name in ("ingest", "flush")]
MISSING = [str(b.relative_to(REPO)) for b in BINARIES if not b.is_file()]
EVENTS = 3000
TIMEOUT_S = 300


@pytest.mark.skipif(
    bool(MISSING),
    reason=f"{', '.join(MISSING)} not built: run `cargo build -p ingest -p flush` (make test builds them)",
)
def test_short_chaos_run_loses_nothing_and_loads_nothing_twice(stack_env: dict[str, str], tmp_path: Path) -> None:
    result = tmp_path / "chaos.json"
    env_file = stack_env_path()
    command = [
        sys.executable, "-m", "tracklayer_local.chaos",
        "--events", str(EVENTS),
        "--statement-bytes", "20000",  # ~140 chunks: enough INSERTs for ~10% faults to hit some
        "--min-kills", "1",  # keeps the run short; make chaos kills at least 3
        "--env-file", str(env_file),
        "--log-dir", str(env_file.parent / "logs"),
        "--json", str(result),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # chaos.py cleans up (faults, queues, functions) on SIGTERM
        out, err = process.communicate(timeout=60)
        pytest.fail(f"chaos.py did not finish in {TIMEOUT_S} s:\n{out}\n{err[-4000:]}")
    detail = f"exit {process.returncode}\n{out}\n{err[-4000:]}"
    assert result.is_file(), detail
    figures = json.loads(result.read_text())

    assert figures["events_sent"] == EVENTS, detail
    assert figures["bad_sent"] == EVENTS // 100, detail
    assert figures["lost"] == 0, detail
    assert figures["duplicates"] == 0, detail
    assert figures["loaded_distinct"] == figures["valid_sent"], detail
    assert figures["quarantined"] == figures["bad_sent"], detail
    assert figures["quarantined_by_reason"] == figures["bad_sent_by_reason"], detail
    assert figures["quarantine_wrong_message_ids"] == 0, detail
    assert figures["bad_loaded"] == 0, detail
    assert figures["left"] == {"events_queue": 0, "events_dlq": 0, "staging_queue": 0, "staging_dlq": 0}, detail
    assert figures["flush_finished"], detail
    # the chaos happened
    assert figures["faults"] > 0, detail
    assert set(figures["faults_by_kind"]) & {"status", "drop_connection"}, detail
    assert figures["flush_kills"] > 0, detail
    assert figures["statements_landed_by_killed_runs"] > 0, detail
    assert figures["rows_already_loaded"] > 0, detail  # a killed run's rows came back and were skipped
    assert figures["answered_from_store"] > 0, detail
    assert figures["passed"] and process.returncode == 0, detail


# ------------------------------------------------------------------------------------------------
# chaos.py's own pieces (no stack needed)
# ------------------------------------------------------------------------------------------------


def test_fault_rules_add_up_to_the_rate() -> None:
    rules = chaos.fault_rules(0.10)
    passed, hit = 1.0, 0.0
    for _label, spec in rules:
        assert spec["match"]["statement_contains"] == "INSERT INTO"
        assert 0 < spec["probability"] <= 1
        hit += passed * spec["probability"]
        passed *= 1 - spec["probability"]
    assert hit == pytest.approx(0.10)
    shares = {label: share for label, share, _phase, _action in chaos.FAULT_MIX}
    assert sum(shares.values()) == pytest.approx(1.0)


def test_generated_events_are_one_percent_bad_with_unique_ids() -> None:
    plan = chaos.generate(5000, 7, "chaostest")
    assert (plan.events, plan.bad, plan.valid) == (5000, 50, 4950)
    assert sum(plan.bad_by_reason.values()) == 50
    assert set(plan.bad_by_reason) == {"invalid_json", "missing_field", "invalid_field"}
    ids = []
    for message in plan.messages:
        if message.body.startswith("["):
            elements = json.loads(message.body)  # an array is always valid JSON as a whole
            assert 2 <= len(elements) <= 12
            ids += [e["event_id"] for e in elements]
        elif "broken_json" in message.bad:
            with pytest.raises(json.JSONDecodeError):
                json.loads(message.body)
            assert '"event_id":"chaostest-b' in message.body
        else:
            ids.append(json.loads(message.body)["event_id"])
    assert len(ids) == len(set(ids)) == 5000 - plan.bad_by_kind["broken_json"]
    kinds = {"missing_merchant_id", "comma_decimal_value", "four_letter_currency", "properties_array", "broken_json"}
    assert set(plan.bad_by_kind) == kinds
    assert all("broken_json" not in m.bad for m in plan.messages if m.body.startswith("["))
    assert 0.05 < plan.array_messages / len(plan.messages) < 0.12
    assert 450 < plan.body_bytes / plan.events < 750
