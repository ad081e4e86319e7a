"""The chaos test, short: `python -m tracklayer_local.chaos --events 3000` against the stack.

Real `target/debug/ingest` (scheduled mode, through the SQS event source mapping emulator) and
`target/debug/flush` (SIGKILLed now and then) while the local Snowflake fails about 10% of the
INSERT submissions (429/503/500 before and after execution, dropped connections, slow statements
answered 202). Asserts what chaos.py checks (nothing lost, nothing loaded twice, the quarantine
holds exactly the bad events, both DLQs and queues empty) and that the chaos really happened:
faults were injected, a flush was killed, and rows a killed flush had inserted came back and were
skipped as already loaded, not inserted again. The same with `--load-method streaming`: flush
appends through Snowpipe Streaming while about 10% of the appends, bulk status calls and token
exchanges fail (429, 503, dropped connections, channels invalidated or fenced, slow commits), and
only redelivered chunks go through INSERTs. `make chaos` runs 100,000 events.

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


needs_binaries = pytest.mark.skipif(
    bool(MISSING),
    reason=f"{', '.join(MISSING)} not built: run `cargo build -p ingest -p flush` (make test builds them)",
)


def run_chaos(tmp_path: Path, *options: str) -> tuple[dict, str, int]:
    """chaos.py on EVENTS events against the stack: its JSON figures, a detail for failures, its exit code."""
    result = tmp_path / "chaos.json"
    env_file = stack_env_path()
    command = [
        sys.executable, "-m", "tracklayer_local.chaos",
        "--events", str(EVENTS),
        "--min-kills", "1",  # keeps the run short; make chaos kills at least 3
        "--env-file", str(env_file),
        "--log-dir", str(env_file.parent / "logs"),
        "--json", str(result),
        *options,
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
    return json.loads(result.read_text()), detail, process.returncode


def assert_accounting(figures: dict, detail: str) -> None:
    """Nothing lost, nothing loaded twice, the quarantine holds exactly the bad events, queues and DLQs empty."""
    assert figures["events_sent"] == EVENTS, detail
    assert figures["bad_sent"] == EVENTS // 100, detail
    assert figures["lost"] == 0, detail
    assert figures["duplicates"] == 0, detail
    assert figures["loaded_distinct"] == figures["loaded_rows"] == figures["valid_sent"] == EVENTS - EVENTS // 100, (
        detail
    )
    assert figures["quarantined"] == figures["quarantined_distinct"] == figures["bad_sent"], detail
    assert figures["quarantined_by_reason"] == figures["bad_sent_by_reason"], detail
    assert figures["quarantine_wrong_message_ids"] == 0, detail
    assert figures["quarantine_messages_mismatched"] == 0, detail
    assert figures["bad_loaded"] == 0, detail
    assert figures["left"] == {"events_queue": 0, "events_dlq": 0, "staging_queue": 0, "staging_dlq": 0}, detail
    assert figures["flush_finished"], detail


@needs_binaries
def test_short_chaos_run_loses_nothing_and_loads_nothing_twice(stack_env: dict[str, str], tmp_path: Path) -> None:
    # ~140 chunks: enough INSERTs for ~10% faults to hit some
    figures, detail, returncode = run_chaos(tmp_path, "--statement-bytes", "20000")
    assert_accounting(figures, detail)
    assert figures["load_method"] == "sql_api", detail
    # the chaos happened
    assert figures["faults"] > 0, detail
    assert set(figures["faults_by_kind"]) & {"status", "drop_connection"}, detail
    assert figures["flush_kills"] > 0, detail
    assert figures["statements_landed_by_killed_runs"] > 0, detail
    assert figures["rows_already_loaded"] > 0, detail  # a killed run's rows came back and were skipped
    assert figures["answered_from_store"] > 0, detail
    assert figures["passed"] and returncode == 0, detail


@needs_binaries
def test_short_streaming_chaos_run_loses_nothing_and_loads_nothing_twice(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    figures, detail, returncode = run_chaos(tmp_path, "--statement-bytes", "40000", "--load-method", "streaming")
    assert_accounting(figures, detail)
    assert figures["load_method"] == "streaming", detail
    # the chaos happened: faults on the streaming requests, a flush killed while it appended
    assert figures["faults"] == sum(figures["fault_rules"].values()) > 0, detail
    assert figures["flush_kills"] > 0, detail
    assert figures["appends_received"] >= figures["appends_accepted"] > 0, detail
    assert figures["channel_opens"] >= 2, detail  # a channel per table, reopened by every run and after faults
    assert figures["status_calls"] > 0 and figures["token_exchanges"] > 0, detail
    assert figures["pipe_rows_refused"] == 0, detail  # ingest quarantined every bad event
    assert figures["channels_pending_batches"] == 0, detail
    # the rows of chunks a killed run streamed came back and were loaded through INSERT ... WHERE
    # NOT EXISTS, only those: first deliveries never touch the warehouse
    assert figures["chunks_redelivered"] > 0, detail
    inserts, redelivered = (
        figures["insert_request_ids_of_reporting_runs"],
        figures["chunks_redelivered_of_reporting_runs"],
    )
    assert 0 < inserts <= redelivered, detail
    assert figures["checks"]["INSERTs only for redeliveries"], detail
    assert figures["passed"] and returncode == 0, detail


# ------------------------------------------------------------------------------------------------
# chaos.py's own pieces (no stack needed)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("load_method", chaos.LOAD_METHODS)
def test_fault_rules_add_up_to_the_rate_per_target(load_method: str) -> None:
    rules = chaos.fault_rules(0.10, load_method)
    passed: dict[str, float] = {}
    hit: dict[str, float] = {}
    for _label, spec in rules:
        assert 0 < spec["probability"] <= 1
        target = json.dumps(spec["match"], sort_keys=True)
        hit[target] = hit.get(target, 0.0) + passed.get(target, 1.0) * spec["probability"]
        passed[target] = passed.get(target, 1.0) * (1 - spec["probability"])
    assert hit == {target: pytest.approx(0.10) for target in hit}
    shares: dict[str, float] = {}
    for _label, share, target, _phase, _action in chaos.FAULT_MIXES[load_method]:
        key = json.dumps(target, sort_keys=True)
        shares[key] = shares.get(key, 0.0) + share
    assert shares == {key: pytest.approx(1.0) for key in shares}
    if load_method == "sql_api":
        assert {spec["match"]["statement_contains"] for _label, spec in rules} == {"INSERT INTO"}
    else:
        prefixes = {spec["match"]["path_prefix"] for _label, spec in rules}
        assert prefixes == {"/v2/streaming/data/", "/v2/streaming/databases/", "/oauth/token"}
        kinds = {next(iter(spec["action"])) for _label, spec in rules}
        assert kinds == {"status", "drop_connection", "channel_error", "fence_channel", "commit_delay_ms"}


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
