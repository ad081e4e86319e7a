"""BENCHMARKS.md rendered from a saved report: infra/local/templates/BENCHMARKS.md.j2 over bench.py's figures.

data/bench_report.json is a complete report (every section, made-up figures of a plausible run),
so every part of the template is rendered; the template runs with StrictUndefined, so a name it
uses that the context lacks fails here rather than printing nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tracklayer_local import bench

REPORT = Path(__file__).resolve().parent / "data" / "bench_report.json"
SECTIONS = [
    "## Summary",
    "## 1. Parse + validate + encode",
    "## 2a. ingest",
    "## 2b. flush",
    "## 2c. Streaming: Snowpipe Streaming, no warehouse",
    "## 3. Cold start and size",
    "## 4. Side by side: a typical Python loader",
    "## 5. Cost per million events",
    "## Run times",
]


@pytest.fixture
def report() -> dict[str, Any]:
    return json.loads(REPORT.read_text())


def render(report: dict[str, Any]) -> str:
    args = bench.parse_args(["--render", str(REPORT), "--stack-dir", ".local/bench"])
    return bench.render(report, bench.Bench(args))


def test_every_section_is_rendered_in_order_with_its_figures(report: dict[str, Any]) -> None:
    text = render(report)
    lines = text.splitlines()
    assert lines[0] == "# Benchmarks"
    assert [line for line in lines if line.startswith("## ")] == SECTIONS
    assert (
        "Run: 2026-11-27 21:32 UTC, git `f353b4c`; total 11.9 min (after the release build). Binaries: "
        "`ingest` sha256 021173eb2c635967, `flush` sha256 511ed72b5f8a36ee, `connection-test` sha256 eafb610524c7a209."
    ) in lines
    parse_row = next(line for line in lines if line.startswith("| parse + validate + encode"))
    assert [cell.strip() for cell in parse_row.strip("|").split("|")] == [
        "parse + validate + encode, one core (criterion median)",
        ">= 500,000 events/s",
        "891,988 events/s (fastest 10% of samples >= 1,012,345; load average 1.52 on "
        f"{bench.os.cpu_count()} vCPUs; serde_json skip-only in the same run 1,724,137/s, ours 0.52x it)",
        "**PASS**",
    ]
    assert "Client CPU, ours / Python: **0.070** (ratio of the medians; per run 0.070, 0.063-0.084)" in text
    assert "hourly flushes cost at least 24 x 60 s = $1.20 a day of warehouse time;" in text
    assert lines[-1] == (
        "parse 101 s, ingest-issue 20 s, flush-1000 190 s, coldstart 12 s, baseline 130 s, flush-streaming 96 s, "
        "streaming-steady 262 s; total 713 s."
    )
    assert text.endswith(".\n") and "{{" not in text and "{%" not in text


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split("|")]


def row(text: str, label: str) -> list[str]:
    return cells(next(line for line in text.splitlines() if line.startswith(f"| {label}")))


def test_streaming_cost_has_no_warehouse_and_bills_appended_bytes(report: dict[str, Any]) -> None:
    cost = bench.cost_model(report["ingest"], report["flush"], report["streaming"])
    assert cost == report["cost"], "the saved cost is what the model makes of the saved figures"
    model = cost["streaming_model"]
    assert model == {
        "run_ms": 4120 - 3000 + bench.STREAMING_COMMIT_MS,
        "measured_run_ms": 4120,
        "commit_delay_ms": 3000,
        "cpu_per_event_ms": 29000 / 1e6,
        "append_bytes_per_event": 122_900_000 / 100_000,
    }
    streaming = [r for r in cost["rows"] if r["mode"] == "streaming"]
    assert [(r["events_per_message"], r["events_per_day"]) for r in streaming] == [
        (1, 1_000_000), (1, 10_000_000), (100, 1_000_000), (100, 10_000_000)
    ]  # fmt: skip
    for r in streaming:
        assert r["warehouse_s_day"] == 0 and r["flush_statements_per_run"] is None
        streamed = r["events_per_day"] * 1229 / 1e9 * bench.PRICES["streaming_credits_per_gb"]
        assert r["streaming_credits_day"] == pytest.approx(streamed)
        assert r["warehouse_usd_day"] == pytest.approx(streamed * bench.PRICES["credit"])
    scheduled = {(r["events_per_message"], r["events_per_day"]): r for r in cost["rows"] if r["mode"] == "scheduled"}
    for r in streaming:
        # The same ingest, and a staging queue polled 1,440 times a day instead of 24.
        same = scheduled[(r["events_per_message"], r["events_per_day"])]
        assert r["ingest_billed_ms"] == same["ingest_billed_ms"]
        assert r["sqs_requests_day"] > same["sqs_requests_day"]
        assert r["usd_per_million"] < same["usd_per_million"]


def test_streaming_section_and_goals_are_rendered(report: dict[str, Any]) -> None:
    text = render(report)
    assert row(text, "streaming: SQL API INSERTs / warehouse resumes per 100,000 events")[1:] == [
        "0 / 0", "0 / 0 (2 (2-2) CREATE TABLE IF NOT EXISTS at cold start: DDL, no warehouse)", "**PASS**"
    ]  # fmt: skip
    assert row(text, "streaming: SendMessage -> visible in RAW_EVENTS, median")[1:] == ["<= 60 s", "36.4 s", "**PASS**"]
    assert row(text, "streaming: SendMessage -> visible in RAW_EVENTS, slowest")[1:] == [
        "<= 60 s",
        "61.8 s",
        "**FAIL**",
    ]
    assert row(text, "streaming cost at 1M events/day, 1 event(s)")[1:] == [
        "<= $0.60 per million", "$0.572 per million", "**PASS**"
    ]  # fmt: skip
    assert row(text, "streaming cost at 1M events/day, 100 event(s)")[2:] == ["$0.103 per million", "**PASS**"]
    assert row(text, "warehouse resumes")[1:] == ["1 (1-1)", "0 (0-0)"]
    assert row(text, "streaming appends (uncompressed MB)")[1:] == [
        "0 (0-0) (0.0 (0.0-0.0))",
        "27 (27-27) (122.9 (122.9-122.9))",
    ]
    assert row(text, "latency SendMessage -> visible, median / p90 / max, s")[1:] == ["36.4 / 55.1 / 61.8"]
    assert row(text, "INSERTs / warehouse resumes")[1:] == ["0 / 0"]
    cost_rows = [r for r in map(cells, text.splitlines()) if r[0] == "streaming"]
    assert [r[:3] for r in cost_rows] == [["streaming", "1", "1M"], ["streaming", "1", "10M"],
                                          ["streaming", "100", "1M"], ["streaming", "100", "10M"]]  # fmt: skip
    assert cost_rows[0][7] == "0 (no warehouse; 0.00455 streaming credits; 1,440 flush runs of 11.2 s)"


def test_sections_without_results_are_left_out_and_errors_are_listed(report: dict[str, Any]) -> None:
    partial = copy.deepcopy(report)
    for section in ("parse", "flush", "streaming", "cost", "coldstart", "baseline"):
        del partial[section]
    partial["errors"] = ["flush: exited 1: some run failed; see flush.json"]
    lines = render(partial).splitlines()
    assert [line for line in lines if line.startswith("## ")] == ["## Summary", "## 2a. ingest", "## Run times"]
    errors = lines.index("Errors during this run:")
    assert lines[errors : errors + 3] == [
        "Errors during this run:",
        "",
        "- flush: exited 1: some run failed; see flush.json",
    ]
