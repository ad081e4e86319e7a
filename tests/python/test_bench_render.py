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
        "Run: 2026-11-27 21:32 UTC, git `f353b4c`; total 5.9 min (after the release build). Binaries: "
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
    assert lines[-1] == "parse 101 s, ingest-issue 20 s, flush-1000 190 s, coldstart 12 s, baseline 130 s; total 354 s."
    assert text.endswith(".\n") and "{{" not in text and "{%" not in text


def test_sections_without_results_are_left_out_and_errors_are_listed(report: dict[str, Any]) -> None:
    partial = copy.deepcopy(report)
    for section in ("parse", "flush", "cost", "coldstart", "baseline"):
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
