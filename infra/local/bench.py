"""Run every benchmark and write BENCHMARKS.md: `make bench`.

    .venv/bin/python -m tracklayer_local.bench [--out BENCHMARKS.md] [--stack-dir .local/bench]
        [--moto-port 4599] [--snowflake-port 8099] [--only parse,ingest,flush,streaming,coldstart,baseline]
        [--quick] [--keep-stack] [--baseline-events 5000] [--render REPORT_JSON]

Needs the release binaries (``cargo build --release -p ingest -p flush -p connection-test``) and
the venv; builds the criterion benchmark if needed (``cargo bench``). It copies the three binaries
to ``<stack-dir>/bin`` first (so a concurrent rebuild cannot change them mid-run), starts its own
local stack (``stack.py up`` with ``STACK_DIR``/``MOTO_PORT``/``SNOWFLAKE_PORT`` from the options;
ports apart from the default stack's so a running dev stack is not disturbed), runs:

1. ``parse``: ``cargo bench -p tracklayer --bench parse`` (criterion's output goes to
   ``<stack-dir>/criterion`` through ``CRITERION_HOME``; the medians are read from its
   ``estimates.json``) -> events/s on one core;
2. ``ingest``: ``bench_ingest.py`` in scheduled and stream mode, on the issue's 10,000-message
   batch, on the largest batch a 6 MB Lambda event holds, and on the smaller batches the cost
   model needs (100 and 1,000 messages of one event; 10 and the most messages of 100 events);
3. ``flush``: ``bench_flush.py``, 100,000 events staged by ingest in batches of 1,000 messages
   (the template's batch size) and of the largest deliverable batch;
4. ``coldstart``: each release binary started repeatedly under ``lambda_host``; its size;
5. ``baseline``: ``bench_python_baseline.py``, snowflake-connector-python against our stream mode;

then computes the cost per million events from those figures and the prices in PRICES, and
writes ``--out`` (default BENCHMARKS.md at the repository root, rendered from
``templates/BENCHMARKS.md.j2`` (Jinja2), which holds all its prose: the preamble, a summary
of the targets, each section with the command that reproduces it, the cost model with every
assumption) plus every raw JSON result under ``<stack-dir>/bench``. It stops its stack at the end
(unless ``--keep-stack``). With ``--only`` it runs those sections and prints their Markdown
instead of writing the file (unless ``--out`` is given). ``--quick`` uses fewer runs (a smoke
test, not for publishing). ``--render <stack-dir>/bench/report.json`` runs nothing and writes the
Markdown again from an earlier run (after editing the template or the report's wording; pass the
run's ``--stack-dir`` and ports too, since the commands shown name them).

Exit status 0 when every benchmark ran and checked its results (the targets are reported, not
enforced), 1 when one failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tracklayer_local.bench_ingest import make_event, make_templates
from tracklayer_local.harness import REPO, Control, markdown_table, progress_to_stderr, read_env_file, span, spread

PYTHON = Path(sys.executable)
BINARIES = ("ingest", "flush", "connection-test")
SECTIONS = ("parse", "ingest", "flush", "streaming", "coldstart", "baseline")
LAMBDA_EVENT_LIMIT = 6_000_000  # bytes; Lambda's 6 MB invocation payload, read conservatively
MAX_BATCH_MESSAGES = 1000  # the template's IngestBatchSize (and its largest sensible value)
BATCHING_WINDOW_S = 10  # the template's IngestBatchingWindowSeconds
MEMORY_MB = 256  # the template's MemorySize
FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1,769 MB, proportionally less below

TARGETS = {
    "parse_events_per_s": 500_000,
    "scheduled_cpu_ms": 100,
    "peak_rss_kb": 64 * 1024,
    "statements_per_100k": 100,
}

PRICES_DATE = "2026-11-27"
PRICES = {
    "lambda_gb_s": 0.0000133334,  # arm64, per GB-second (first pricing tier)
    "lambda_request": 0.20 / 1e6,
    "sqs_request": 0.40 / 1e6,  # standard queue, after the free tier; each 64 KB chunk is a request
    "credit": 3.00,  # Snowflake Enterprise, AWS US East; varies by edition, region and contract
    "xsmall_credits_per_hour": 1.0,
    # Snowpipe Streaming (high-performance), per uncompressed GB appended: third-party
    # transcriptions of Snowflake's Credit Consumption Table (../shared/notes/snowpipe-streaming.md, UNCONFIRMED)
    "streaming_credits_per_gb": 0.0037,
}
SQS_CHUNK = 64 * 1024
AUTO_SUSPEND_S = 60
RESUME_MINIMUM_S = 60
FLUSHES_PER_DAY = 24
STREAMING_FLUSHES_PER_DAY = 1440  # LoadMethod=streaming: flush every minute
STREAMING_COMMIT_MS = 10_000  # Snowflake: 5-10 s from append to query; the cost takes the slow end
ESM_POLLERS = 5  # idle long polls of the event source mapping, 20 s each
FLUSH_OVERHEAD_REQUESTS = 4  # per run: the probe receive, the receivers' last empty receives, GetQueueAttributes
MAX_STATEMENT_BYTES = 1_000_000  # TRACKLAYER_MAX_STATEMENT_BYTES' default
SEND_BATCH_BYTES = 1024 * 1024 - 16 * 1024  # what ingest packs into one SendMessageBatch
INVALID_SHARE = 0.01  # the benchmark's share of invalid events
FLUSH_SETUP_STATEMENTS = 2  # per cold flush: CREATE TABLE IF NOT EXISTS for both tables (measured)

TEMPLATE = Path(__file__).resolve().parent / "templates" / "BENCHMARKS.md.j2"
# module constants the template names (as c.NAME): the prices and the cost model's assumptions
TEMPLATE_CONSTANTS = (
    "PRICES", "PRICES_DATE", "MEMORY_MB", "FULL_VCPU_MB", "LAMBDA_EVENT_LIMIT", "MAX_BATCH_MESSAGES",
    "BATCHING_WINDOW_S", "RESUME_MINIMUM_S", "AUTO_SUSPEND_S", "FLUSHES_PER_DAY", "ESM_POLLERS", "MAX_STATEMENT_BYTES",
    "STREAMING_FLUSHES_PER_DAY", "STREAMING_COMMIT_MS", "STREAMING_LATENCY_GOAL_S", "STREAMING_COST_GOALS",
)  # fmt: skip


progress = progress_to_stderr("bench")


# ------------------------------------------------------------------------------------------------
# Plumbing
# ------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stack_dir: Path = args.stack_dir
        self.out_dir = self.stack_dir / "bench"
        self.bin_dir = self.stack_dir / "bin"
        self.env = {
            **os.environ,
            "STACK_DIR": str(self.stack_dir),
            "MOTO_PORT": str(args.moto_port),
            "SNOWFLAKE_PORT": str(args.snowflake_port),
        }
        self.errors: list[str] = []
        self.timings: dict[str, float] = {}

    # ---- displaying commands as a reader would type them
    def shown(self, command: list[str], env: dict[str, str] | None = None) -> str:
        text = []
        for part in command:
            part = str(part)
            part = part.replace(str(self.bin_dir) + "/", "target/release/")
            if part.startswith(str(REPO) + "/"):
                part = part[len(str(REPO)) + 1 :]
            text.append(part)
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        return (prefix + " " if prefix else "") + shlex.join(text)

    def stack_prefix(self) -> dict[str, str]:
        return {"STACK_DIR": self.display_stack_dir()}

    def display_stack_dir(self) -> str:
        full = self.stack_dir.resolve()
        return str(full.relative_to(REPO)) if full.is_relative_to(REPO) else str(full)

    def stack_up_command(self) -> str:
        env = {
            "STACK_DIR": self.display_stack_dir(),
            "MOTO_PORT": str(self.args.moto_port),
            "SNOWFLAKE_PORT": str(self.args.snowflake_port),
        }
        return self.shown([".venv/bin/python", "-m", "tracklayer_local.stack", "up"], env)

    def python(self) -> str:
        return str(PYTHON)

    def run_json(self, name: str, command: list[str], timeout: float = 1800) -> dict[str, Any] | None:
        """Runs a benchmark script with --json; returns its result (None on failure, recorded)."""
        out = self.out_dir / f"{name}.json"
        out.unlink(missing_ok=True)
        full = [self.python(), *command, "--json", str(out)]
        progress(f"{name}: {self.shown(command)}")
        started = time.monotonic()
        done = subprocess.run(full, cwd=REPO, env=self.env, stdout=subprocess.PIPE, timeout=timeout, check=False)
        self.timings[name] = round(time.monotonic() - started, 1)
        if not out.is_file():
            self.errors.append(f"{name}: exited {done.returncode} without a result ({self.shown(command)})")
            return None
        result = json.loads(out.read_text())
        result["exit_status"] = done.returncode
        result["shown_command"] = self.shown([".venv/bin/python", *command], self.stack_prefix())
        if done.returncode != 0:
            self.errors.append(f"{name}: exited {done.returncode}: some run failed; see {out}")
        return result

    # ---- stack
    def stack(self, action: str) -> None:
        done = subprocess.run(
            [self.python(), "-m", "tracklayer_local.stack", action],
            cwd=REPO, env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"bench: stack.py {action} failed:\n{done.stdout}{done.stderr}")

    def stack_env(self) -> dict[str, str]:
        return read_env_file(str(self.stack_dir / "stack.env"))

    def reset_emulator(self) -> None:
        Control(f"http://127.0.0.1:{self.args.snowflake_port}").call("POST", "/reset", {"drop_data": True})

    def binary(self, name: str) -> Path:
        return self.bin_dir / name


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")


def mb(kb: float | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MB"


def largest_batch(events_per_message: int, seed: int, cap: int) -> int:
    """The most messages (<= cap) whose SQS event stays within LAMBDA_EVENT_LIMIT."""
    templates, _ = make_templates(cap, seed, events_per_message)
    low, high = 1, cap
    while low < high:
        middle = (low + high + 1) // 2
        if len(make_event(templates[:middle], "b0000000000")) <= LAMBDA_EVENT_LIMIT:
            low = middle
        else:
            high = middle - 1
    return low // 100 * 100 if low >= 1000 else low


# ------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------


def section_parse(bench: Bench) -> dict[str, Any] | None:
    """Builds the criterion benchmark, runs its executable and reads criterion's estimates.

    The executable runs directly (what `cargo bench` would run) so that its CPU time can be
    read (os.wait4): CPU time over wall time says how much of a core it actually got, which
    on a shared machine tells whether the median is slowed by other work.
    """
    home = bench.stack_dir / "criterion"
    shutil.rmtree(home, ignore_errors=True)
    log = bench.out_dir / "criterion.log"
    started = time.monotonic()
    build = ["cargo", "bench", "--locked", "-p", "tracklayer", "--bench", "parse", "--no-run", "--message-format=json"]
    progress("parse: " + " ".join(build))
    built = subprocess.run(build, cwd=REPO, env=bench.env, capture_output=True, text=True, timeout=2400, check=False)
    executable = None
    for line in built.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("reason") == "compiler-artifact" and (message.get("target") or {}).get("name") == "parse":
            executable = message.get("executable") or executable
    if built.returncode != 0 or not executable:
        log.write_text(built.stderr)
        bench.errors.append(f"parse: cargo bench --no-run exited {built.returncode}; see {log}")
        return None
    load_before = load_average()
    progress(f"parse: {executable} --bench --noplot")
    with open(log, "w") as out:
        wall_started = time.monotonic()
        child = subprocess.Popen(
            [executable, "--bench", "--noplot"], cwd=REPO / "shared",
            env={**bench.env, "CRITERION_HOME": str(home)}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - wall_started
    bench.timings["parse"] = round(time.monotonic() - started, 1)
    results = read_criterion(home)
    if child.returncode != 0 or not results:
        bench.errors.append(f"parse: the criterion benchmark exited {child.returncode}; see {log}")
        return None
    return {
        "command": "cargo bench -p tracklayer --bench parse",
        "shown_command": "cargo bench -p tracklayer --bench parse",
        "results": results,
        "load_average": [load_before, load_average()],
        "cpus_used": round((usage.ru_utime + usage.ru_stime) / wall, 2) if wall > 0 else None,
        "log": str(log),
    }


def read_criterion(home: Path) -> list[dict[str, Any]]:
    """Every benchmark criterion wrote under `home`: median events/s and its spread."""
    results = []
    for meta in sorted(home.glob("**/new/benchmark.json")):
        info = json.loads(meta.read_text())
        estimates = json.loads((meta.parent / "estimates.json").read_text())
        elements = (info.get("throughput") or {}).get("Elements")
        median = estimates["median"]
        if not elements:
            continue

        def per_s(ns: float, elements: int = elements) -> float:
            return elements / (ns / 1e9)

        sample = json.loads((meta.parent / "sample.json").read_text())
        rates = sorted(elements * i / (t / 1e9) for i, t in zip(sample["iters"], sample["times"], strict=True))
        results.append(
            {
                "id": info["full_id"],
                "elements": elements,
                "median_ns": median["point_estimate"],
                "events_per_s": round(per_s(median["point_estimate"])),
                "events_per_s_low": round(per_s(median["confidence_interval"]["upper_bound"])),
                "events_per_s_high": round(per_s(median["confidence_interval"]["lower_bound"])),
                "samples": len(rates),
                "fastest_tenth_events_per_s": round(rates[int(len(rates) * 0.9)]) if rates else None,
                "fastest_events_per_s": round(rates[-1]) if rates else None,
            }
        )
    return results


def ingest_runs(bench: Bench) -> list[tuple[str, int, int, int]]:
    """(name, messages, events per message, runs) of every bench_ingest run."""
    quick = bench.args.quick
    one = largest_batch(1, 20261102, 10_000)
    hundred = largest_batch(100, 20261102, min(200, MAX_BATCH_MESSAGES))
    bench.largest = {"1": one, "100": hundred}
    runs = 2 if quick else 5
    return [
        ("ingest-issue", 10_000, 1, runs),
        ("ingest-largest", one, 1, runs),
        ("ingest-1000", 1000, 1, runs),
        ("ingest-100", 100, 1, runs),
        ("ingest-e100-largest", hundred, 100, 2 if quick else 3),
        ("ingest-e100-10", 10, 100, runs),
    ]


def section_ingest(bench: Bench) -> dict[str, Any]:
    results = {}
    for name, messages, per_message, runs in ingest_runs(bench):
        bench.reset_emulator()
        command = [
            "-m", "tracklayer_local.bench_ingest", "--binary", str(bench.binary("ingest")), "--messages", str(messages),
            "--events-per-message", str(per_message), "--runs", str(runs), "--memory", str(MEMORY_MB),
        ]  # fmt: skip
        result = bench.run_json(name, command)
        if result:
            results[name] = result
    return results


def section_flush(bench: Bench, streaming: bool = False) -> dict[str, Any]:
    """bench_flush.py for two staging layouts (and, with `streaming`, the first one loaded
    through Snowpipe Streaming), one run at a time, alternating the layouts.

    The cost model fits flush time to events and statements from the difference between the
    layouts, so their runs are interleaved: a slow spell of the shared machine then hits both
    (and the streaming runs' CPU and RSS stand side by side with the SQL API's).
    """
    from tracklayer_local.bench_flush import summarise

    runs = 2 if bench.args.quick else 3
    events = 20_000 if bench.args.quick else 100_000
    largest = getattr(bench, "largest", None) or {"1": largest_batch(1, 20261102, 10_000)}
    layouts = [("flush-1000", 1000, []), ("flush-largest", largest["1"], [])]
    if streaming:
        layouts.append(("flush-streaming", 1000, ["--load-method", "streaming"]))
    results: dict[str, Any] = {}
    for number in range(1, runs + 1):
        for name, batch, method in layouts if number % 2 else reversed(layouts):
            command = [
                "-m", "tracklayer_local.bench_flush", "--flush", str(bench.binary("flush")), "--ingest",
                str(bench.binary("ingest")), "--events", str(events), "--ingest-batch", str(batch), *method,
                "--runs", "1", "--memory", str(MEMORY_MB), "--reset-emulator",
            ]  # fmt: skip
            result = bench.run_json(f"{name}-run{number}", command)
            if not result:
                continue
            bench.timings[name] = bench.timings.get(name, 0.0) + bench.timings.pop(f"{name}-run{number}")
            for run in result["runs"]:
                run["run"] = number
            if name not in results:
                shown = [".venv/bin/python", *command[:-5], "--runs", str(runs), *command[-3:]]
                results[name] = {**result, "runs": [], "shown_command": bench.shown(shown, bench.stack_prefix())}
            results[name]["runs"] += result["runs"]
    for result in results.values():
        good = [r for r in result["runs"] if r.get("ok")]
        result["summary"] = summarise(good)
        result["all_ok"] = len(good) == len(result["runs"])
    return results


def section_streaming(bench: Bench, flush: dict[str, Any] | None) -> dict[str, Any]:
    """The streaming load method: `flush` (bench_flush's streaming layout from section_flush, or
    run here when that section did not run) and bench_streaming's steady operation."""
    if flush is None:
        runs = 2 if bench.args.quick else 3
        events = 20_000 if bench.args.quick else 100_000
        command = [
            "-m", "tracklayer_local.bench_flush", "--flush", str(bench.binary("flush")), "--ingest",
            str(bench.binary("ingest")), "--events", str(events), "--ingest-batch", "1000", "--load-method",
            "streaming", "--runs", str(runs), "--memory", str(MEMORY_MB), "--reset-emulator",
        ]  # fmt: skip
        flush = bench.run_json("flush-streaming", command)
    bench.reset_emulator()
    seconds = 60 if bench.args.quick else 180
    command = [
        "-m", "tracklayer_local.bench_streaming", "--ingest", str(bench.binary("ingest")), "--flush",
        str(bench.binary("flush")), "--seconds", str(seconds), "--memory", str(MEMORY_MB),
    ]  # fmt: skip
    return {"flush": flush, "steady": bench.run_json("streaming-steady", command)}


def section_coldstart(bench: Bench) -> dict[str, Any]:
    from tracklayer_local.lambda_host import LambdaHost

    starts = 5 if bench.args.quick else 15
    stack = bench.stack_env()
    envs = {
        "ingest": {**stack, "TRACKLAYER_LOAD_MODE": "scheduled"},
        "flush": stack,
        "connection-test": stack,
    }
    samples: dict[str, list[float]] = {name: [] for name in BINARIES}
    rss: dict[str, list[int]] = {name: [] for name in BINARIES}
    started = time.monotonic()
    for _ in range(starts):  # round robin, so noise spreads over the three
        for name in BINARIES:
            log = bench.stack_dir / "logs" / f"bench-coldstart-{name}.log"
            host = LambdaHost(bench.binary(name), name, env=envs[name], memory_mb=MEMORY_MB, log=log)
            try:
                host.start()
                if not host.wait_ready():
                    bench.errors.append(f"coldstart: {name} did not start: {host.init_error}")
                    break
                from tracklayer_local.lambda_host import read_vm_hwm_kb

                samples[name].append(host.cold_starts_ms[0])
                if host.pid:
                    hwm = read_vm_hwm_kb(host.pid)
                    if hwm:
                        rss[name].append(hwm)
            finally:
                host.close()
    bench.timings["coldstart"] = round(time.monotonic() - started, 1)
    results = {}
    for name in BINARIES:
        path = bench.binary(name)
        results[name] = {
            "cold_start_ms": spread(samples[name]),
            "samples": samples[name],
            "idle_rss_kb": spread(rss[name], 0),
            "size_bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        }
    only = ["-m", "tracklayer_local.bench", "--only", "coldstart"]
    return {
        "starts": starts,
        "binaries": results,
        "shown_command": bench.shown([".venv/bin/python", *only]),
    }


def section_baseline(bench: Bench) -> dict[str, Any] | None:
    bench.reset_emulator()
    events = 2000 if bench.args.quick else bench.args.baseline_events
    runs = 2 if bench.args.quick else 3
    command = [
        "-m", "tracklayer_local.bench_python_baseline", "--ours", str(bench.binary("ingest")), "--events", str(events),
        "--runs", str(runs), "--memory", str(MEMORY_MB),
    ]  # fmt: skip
    return bench.run_json("baseline", command, timeout=3600)


# ------------------------------------------------------------------------------------------------
# Cost model
# ------------------------------------------------------------------------------------------------


def mode_of(result: dict[str, Any], mode: str) -> dict[str, Any] | None:
    for entry in result.get("modes", []):
        if entry["mode"] == mode:
            return entry
    return None


def billed_ms(entry: dict[str, Any]) -> float:
    """Lambda duration at MEMORY_MB for a locally measured invocation: the CPU part stretched."""
    wall, cpu = entry["wall_ms"]["median"], entry["cpu_ms"]["median"] or 0.0
    return wall + cpu * (FULL_VCPU_MB / MEMORY_MB - 1)


def point(result: dict[str, Any], mode: str) -> dict[str, float] | None:
    entry = mode_of(result, mode)
    if not entry or entry["wall_ms"]["median"] is None:
        return None
    batch = result["batch"]
    runs = [r for r in entry["runs"] if r.get("ok")]
    staged_bytes = [r["staged_message_bytes"] for r in runs if r.get("staged_message_bytes")]
    staged_msgs = [r["staged_messages"] for r in runs if r.get("staged_messages")]
    calls = [r["statements"] for r in runs if r.get("statements") is not None]
    row_bytes = [r["bytes"] / r["events"] for r in runs if r.get("bytes") and r.get("events")]
    return {
        "messages": batch["messages"],
        "events": batch["events"],
        "body_bytes": batch["body_bytes"],
        "duration_ms": billed_ms(entry),
        "wall_ms": entry["wall_ms"]["median"],
        "cpu_ms": entry["cpu_ms"]["median"] or 0.0,
        "staged_bytes": statistics.median(staged_bytes) if staged_bytes else 0.0,
        "staged_messages": statistics.median(staged_msgs) if staged_msgs else 0.0,
        "calls": statistics.median(calls) if calls else 0.0,
        "row_bytes_per_event": statistics.median(row_bytes) if row_bytes else 0.0,
    }


def linear(small: dict[str, float], big: dict[str, float], key: str, events: float) -> float:
    """`key` at `events` per invocation, on the line through the two measured batches."""
    slope = max(0.0, (big[key] - small[key]) / (big["events"] - small["events"]))
    base = max(0.0, small[key] - slope * small["events"])
    return base + slope * events


def nearest(small: dict[str, float], big: dict[str, float], events: float) -> dict[str, float]:
    return small if abs(math.log(events / small["events"])) <= abs(math.log(events / big["events"])) else big


def flush_time_model(flush: dict[str, Any]) -> dict[str, float] | None:
    """Flush wall time as a * events + b * statements, fitted to the two staging layouts.

    Both layouts load the same events in different numbers of statements, so the difference
    of their times is the cost of the extra statements. Falls back to time per event alone
    (b = 0) when there is only one layout or the difference is not positive.
    """
    points = []
    for result in flush.values():
        s = result["summary"]
        if s["wall_ms"]["median"] is None or s["sql_api_statements"]["median"] is None:
            continue
        points.append((result["events"], s["sql_api_statements"]["median"], s["wall_ms"]["median"] / 1000,
                       (s["cpu_ms"]["median"] or 0.0) / result["events"]))  # fmt: skip
    if not points:
        return None
    cpu_per_event_ms = statistics.median(p[3] for p in points)
    per_statement = 0.0
    if len(points) >= 2:
        (e1, s1, w1, _), (e2, s2, w2, _) = points[0], points[1]
        if s1 != s2 and e1 == e2:
            per_statement = max(0.0, (w1 - w2) / (s1 - s2))
    per_event = statistics.median(max(0.0, (wall - per_statement * statements) / events)
                                  for events, statements, wall, _ in points)  # fmt: skip
    return {"per_event_s": per_event, "per_statement_s": per_statement, "cpu_per_event_ms": cpu_per_event_ms}


def streaming_model(streaming: dict[str, Any] | None) -> dict[str, float] | None:
    """A streaming flush run's cost inputs: its wall time at about 1M events a day (bench_streaming,
    warm runs that loaded) with the local commit delay replaced by STREAMING_COMMIT_MS, client CPU
    and appended (uncompressed) bytes per event (bench_flush, 100,000 events)."""
    if not streaming:
        return None
    steady, flush = streaming.get("steady"), streaming.get("flush")
    if not steady or not flush or steady.get("flush_wall_ms_median") is None:
        return None
    s = flush["summary"]
    if s["cpu_ms_per_million"]["median"] is None or s["append_bytes"]["median"] is None:
        return None
    return {
        "run_ms": steady["flush_wall_ms_median"] - (steady["commit_delay_ms"] or 0) + STREAMING_COMMIT_MS,
        "measured_run_ms": steady["flush_wall_ms_median"],
        "commit_delay_ms": steady["commit_delay_ms"],
        "cpu_per_event_ms": s["cpu_ms_per_million"]["median"] / 1e6,
        "append_bytes_per_event": s["append_bytes"]["median"] / flush["events"],
    }


def cost_model(
    ingest: dict[str, Any], flush: dict[str, Any], streaming_result: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    pairs = {1: ("ingest-100", "ingest-1000"), 100: ("ingest-e100-10", "ingest-e100-largest")}
    model = flush_time_model(flush)
    if not model or not all(name in ingest for pair in pairs.values() for name in pair):
        return None
    streaming = streaming_model(streaming_result)
    modes = ("stream", "scheduled", "streaming") if streaming else ("stream", "scheduled")
    rows = []
    for per_message, (small_name, big_name) in pairs.items():
        body_per_message = ingest[big_name]["batch"]["body_bytes"] / ingest[big_name]["batch"]["messages"]
        cap_messages = ingest[big_name]["batch"]["messages"] if per_message > 1 else MAX_BATCH_MESSAGES
        for mode in modes:
            measured = "scheduled" if mode == "streaming" else mode  # streaming's ingest stages
            small, big = point(ingest[small_name], measured), point(ingest[big_name], measured)
            if not small or not big:
                continue
            for volume in (1_000_000, 10_000_000):
                messages_day = volume / per_message
                per_window = messages_day / 86_400 * BATCHING_WINDOW_S
                batch_messages = min(cap_messages, max(1.0, per_window))
                batch_events = batch_messages * per_message
                invocations = volume / batch_events
                duration_ms = math.ceil(linear(small, big, "duration_ms", batch_events))
                lambda_cost = invocations * (
                    PRICES["lambda_request"] + duration_ms / 1000 * MEMORY_MB / 1024 * PRICES["lambda_gb_s"]
                )
                # Events queue: producers' SendMessage (one message a call), the mapping's receives
                # (10 messages a call, billed by 64 KB of payload), DeleteMessageBatch, idle polls.
                sends = messages_day * math.ceil(body_per_message / SQS_CHUNK)
                receive_calls = invocations * math.ceil(batch_messages / 10)
                receives = receive_calls * max(1, math.ceil(min(10, batch_messages) * body_per_message / SQS_CHUNK))
                deletes = invocations * math.ceil(batch_messages / 10)
                idle = ESM_POLLERS * 86_400 / 20
                sqs_requests = sends + receives + deletes + idle
                warehouse_s = 86_400.0
                flush_lambda = 0.0
                load_s = statements_run = None
                streaming_credits = 0.0
                if mode in ("scheduled", "streaming"):
                    runs_day = FLUSHES_PER_DAY if mode == "scheduled" else STREAMING_FLUSHES_PER_DAY
                    at = nearest(small, big, batch_events)
                    staged_per_event = at["staged_bytes"] / at["events"]
                    # Chunks per invocation: RAW_EVENTS rows cut at the statement bound, plus one
                    # RAW_EVENTS_REJECTED chunk when the batch holds an invalid event.
                    row_bytes = big["row_bytes_per_event"] * batch_events
                    staged_msgs_per_invocation = max(1, math.ceil(row_bytes / MAX_STATEMENT_BYTES)) + (
                        1 - (1 - INVALID_SHARE) ** batch_events
                    )
                    staged_bytes_invocation = staged_per_event * batch_events
                    calls_per_invocation = max(
                        math.ceil(staged_msgs_per_invocation / 10),
                        math.ceil(staged_bytes_invocation / SEND_BATCH_BYTES),
                    )
                    stage_sends = invocations * max(
                        calls_per_invocation, math.ceil(staged_bytes_invocation / SQS_CHUNK)
                    )
                    staged_day = invocations * staged_msgs_per_invocation
                    staged_msg_bytes = staged_bytes_invocation / staged_msgs_per_invocation
                    flush_receives = staged_day / 10 * max(1, math.ceil(10 * staged_msg_bytes / SQS_CHUNK))
                    flush_deletes = staged_day / 10
                    sqs_requests += stage_sends + flush_receives + flush_deletes
                    sqs_requests += runs_day * FLUSH_OVERHEAD_REQUESTS
                    per_run = volume / runs_day
                if mode == "scheduled":
                    # flush packs the staged rows into statements near the bound: the events'
                    # bytes of a run over the bound, one part-filled statement, one of rejects.
                    row_bytes_run = big["row_bytes_per_event"] * per_run
                    statements_run = math.ceil(row_bytes_run / MAX_STATEMENT_BYTES) + 1 + FLUSH_SETUP_STATEMENTS
                    load_s = model["per_event_s"] * per_run + model["per_statement_s"] * statements_run
                    warehouse_s = FLUSHES_PER_DAY * max(RESUME_MINIMUM_S, load_s + AUTO_SUSPEND_S)
                    flush_ms = load_s * 1000 + model["cpu_per_event_ms"] * per_run * (FULL_VCPU_MB / MEMORY_MB - 1)
                    flush_lambda = FLUSHES_PER_DAY * (
                        PRICES["lambda_request"] + flush_ms / 1000 * MEMORY_MB / 1024 * PRICES["lambda_gb_s"]
                    )
                elif mode == "streaming":
                    # No warehouse for first deliveries; a run lasts its measured wall time with
                    # the local commit delay swapped for Snowflake's slowest, plus its CPU stretched
                    # (the measured wall time holds the CPU once, at a full vCPU).
                    warehouse_s = 0.0
                    flush_ms = streaming["run_ms"] + streaming["cpu_per_event_ms"] * per_run * (
                        FULL_VCPU_MB / MEMORY_MB - 1
                    )
                    flush_lambda = STREAMING_FLUSHES_PER_DAY * (
                        PRICES["lambda_request"] + flush_ms / 1000 * MEMORY_MB / 1024 * PRICES["lambda_gb_s"]
                    )
                    streaming_credits = (
                        volume * streaming["append_bytes_per_event"] / 1e9 * PRICES["streaming_credits_per_gb"]
                    )
                    load_s = round(flush_ms / 1000, 1)
                sqs_cost = sqs_requests * PRICES["sqs_request"]
                warehouse_credits = warehouse_s / 3600 * PRICES["xsmall_credits_per_hour"]
                warehouse_cost = (warehouse_credits + streaming_credits) * PRICES["credit"]
                total = lambda_cost + flush_lambda + sqs_cost + warehouse_cost
                rows.append(
                    {
                        "mode": mode,
                        "events_per_message": per_message,
                        "events_per_day": volume,
                        "messages_per_invocation": round(batch_messages, 1),
                        "invocations_per_day": round(invocations),
                        "ingest_billed_ms": duration_ms,
                        "lambda_usd_day": lambda_cost + flush_lambda,
                        "sqs_requests_day": round(sqs_requests),
                        "sqs_usd_day": sqs_cost,
                        "warehouse_s_day": round(warehouse_s),
                        "flush_load_s": None if load_s is None or mode == "streaming" else round(load_s, 1),
                        "flush_run_s": load_s if mode == "streaming" else None,
                        "streaming_credits_day": streaming_credits,
                        "flush_statements_per_run": None if statements_run is None else round(statements_run),
                        "warehouse_usd_day": warehouse_cost,
                        "total_usd_day": total,
                        "usd_per_million": total / (volume / 1e6),
                    }
                )
    return {
        "rows": rows,
        "flush_model": model,
        "streaming_model": streaming,
        "inputs": {
            name: {mode: point(ingest[name], mode) for mode in ("stream", "scheduled")}
            for pair in pairs.values()
            for name in pair
        },
    }


# ------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------


def ingest_row(label: str, result: dict[str, Any], mode: str) -> list[str] | None:
    entry = mode_of(result, mode)
    if not entry:
        return None
    batch = result["batch"]
    ok_runs = [r for r in entry["runs"] if r.get("ok")]
    valid = batch["events"] - batch["invalid"]
    walls = [r["wall_ms"] for r in ok_runs]
    cpus = [r["cpu_ms"] for r in ok_runs if r["cpu_ms"] is not None]
    events_per_s = spread([valid / (w / 1000) for w in walls], 0)
    cpu_per_million = spread([c * 1e6 / batch["events"] for c in cpus], 0)
    statements = spread([r["statements"] * 100_000 / batch["events"] for r in ok_runs if r["statements"] is not None])
    statement_kind = "SendMessageBatch" if mode == "scheduled" else "INSERT"
    return [
        label,
        mode,
        span(entry["cpu_ms"]),
        span(entry["wall_ms"]),
        span(events_per_s, digits=0),
        span(cpu_per_million, digits=0),
        f"{span(statements)} {statement_kind}",
        f"{mb(entry['peak_rss_kb'])} ({mb(entry.get('warm_peak_rss_kb'))} idle)",
    ]


def batch_label(result: dict[str, Any]) -> str:
    batch = result["batch"]
    each = "" if batch["events_per_message"] == 1 else f" x {batch['events_per_message']} events"
    return (
        f"{batch['messages']:,} msgs{each} ({batch['body_bytes'] / 1e6:.2f} MB bodies, "
        f"{batch['event_bytes'] / 1e6:.2f} MB event)"
    )


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    parse = report.get("parse")
    if parse:
        main = next((r for r in parse["results"] if "single_event" in r["id"]), parse["results"][0])
        floor = next((r for r in parse["results"] if "serde_json_skip_only" in r["id"]), None)
        rate = main["events_per_s"]
        against = (
            f"; serde_json skip-only in the same run {floor['events_per_s']:,}/s, ours "
            f"{rate / floor['events_per_s']:.2f}x it"
            if floor
            else ""
        )
        rows.append(
            [
                "parse + validate + encode, one core (criterion median)",
                f">= {TARGETS['parse_events_per_s']:,} events/s",
                f"{rate:,} events/s (fastest 10% of samples >= {main['fastest_tenth_events_per_s']:,}; "
                f"load average {(parse.get('load_average') or [None])[0]} on {os.cpu_count()} vCPUs{against})",
                verdict(rate >= TARGETS["parse_events_per_s"]),
            ]
        )
    ingest = report.get("ingest") or {}
    for name, note in (
        ("ingest-issue", "issue's batch, not deliverable by Lambda"),
        ("ingest-largest", "largest batch Lambda delivers"),
    ):
        result = ingest.get(name)
        if not result:
            continue
        label = f"{result['batch']['messages']:,} msgs, {result['batch']['event_bytes'] / 1e6:.1f} MB event: {note}"
        scheduled, stream = mode_of(result, "scheduled"), mode_of(result, "stream")
        if scheduled and scheduled["cpu_ms"]["median"] is not None:
            cpu = scheduled["cpu_ms"]["median"]
            rows.append(
                [
                    f"ingest scheduled CPU per batch ({label})",
                    f"<= {TARGETS['scheduled_cpu_ms']} ms",
                    f"{span(scheduled['cpu_ms'])} ms",
                    verdict(cpu <= TARGETS["scheduled_cpu_ms"]),
                ]
            )
        for mode, entry in (("scheduled", scheduled), ("stream", stream)):
            if entry and entry["peak_rss_kb"]:
                rows.append(
                    [
                        f"ingest {mode} peak RSS ({label})",
                        "<= 64 MB",
                        mb(entry["peak_rss_kb"]),
                        verdict(entry["peak_rss_kb"] <= TARGETS["peak_rss_kb"]),
                    ]
                )
    for result in (report.get("flush") or {}).values():
        s = result["summary"]
        if s["statements_per_100k"]["median"] is None:
            continue
        label = f"ingest batches of {result['ingest_batch']:,} msgs"
        rows.append(
            [
                f"flush statements per 100,000 events ({label})",
                f"<= {TARGETS['statements_per_100k']}",
                span(s["statements_per_100k"]),
                verdict(s["statements_per_100k"]["median"] <= TARGETS["statements_per_100k"]),
            ]
        )
        rows.append(
            [
                f"flush peak RSS, 100,000 events ({label})",
                "<= 64 MB",
                f"{mb(s['peak_rss_kb']['max'])} (max of runs)",
                verdict(s["peak_rss_kb"]["max"] <= TARGETS["peak_rss_kb"]),
            ]
        )
    rows.extend(streaming_summary_rows(report))
    return rows


STREAMING_LATENCY_GOAL_S = 60
STREAMING_COST_GOALS = {1: 0.60, 100: 0.15}  # $ per million events at 1M events a day


def streaming_summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """The streaming goals: no INSERT or resume for first deliveries, latency, cost at 1M a day."""
    rows: list[list[str]] = []
    streaming = report.get("streaming") or {}
    flush, steady = streaming.get("flush"), streaming.get("steady")
    if flush and flush.get("summary", {}).get("inserts_per_100k", {}).get("median") is not None:
        s = flush["summary"]
        inserts, resumes = s["inserts_per_100k"]["median"], s["warehouse_resumes"]["median"]
        rows.append(
            [
                "streaming: SQL API INSERTs / warehouse resumes per 100,000 events (first deliveries)",
                "0 / 0",
                f"{inserts:g} / {resumes:g} ({span(s['sql_api_statements'], digits=0)} CREATE TABLE IF NOT EXISTS "
                "at cold start: DDL, no warehouse)",
                verdict(inserts == 0 and resumes == 0),
            ]
        )
    if steady and steady.get("latency_s", {}).get("median") is not None:
        latency = steady["latency_s"]
        for label, key in (("median", "median"), ("slowest event", "max")):
            rows.append(
                [
                    f"streaming: SendMessage -> visible in RAW_EVENTS, {label} (commit delay "
                    f"{steady['commit_delay_ms']} ms, flush every {steady['flush_period_s']:g} s)",
                    f"<= {STREAMING_LATENCY_GOAL_S} s",
                    f"{latency[key]} s",
                    verdict(latency[key] <= STREAMING_LATENCY_GOAL_S),
                ]
            )
        rows.append(
            [
                "streaming steady operation: INSERTs / warehouse resumes",
                "0 / 0",
                f"{steady['inserts']} / {steady['warehouse_resumes']} over {len(steady['flush_runs'])} flush runs",
                verdict(steady["inserts"] == 0 and steady["warehouse_resumes"] == 0),
            ]
        )
    cost = report.get("cost") or {}
    for row in cost.get("rows", []):
        goal = STREAMING_COST_GOALS.get(row["events_per_message"])
        if row["mode"] != "streaming" or row["events_per_day"] != 1_000_000 or goal is None:
            continue
        rows.append(
            [
                f"streaming cost at 1M events/day, {row['events_per_message']} event(s) per message",
                f"<= ${goal:.2f} per million",
                f"${row['usd_per_million']:.3f} per million",
                verdict(row["usd_per_million"] <= goal),
            ]
        )
    return rows


def streaming_table(streaming: dict[str, Any], sql_api: dict[str, Any] | None) -> str:
    """The streaming flush next to the SQL API one (same events, same run), then steady operation."""
    flush = streaming.get("flush")
    sides = [("SQL API (INSERTs), batches of 1,000", sql_api), ("Snowpipe Streaming, batches of 1,000", flush)]
    sides = [(label, result) for label, result in sides if result and result.get("summary")]
    figures = [
        ("wall time, ms", lambda s: span(s.get("wall_ms"), digits=0)),
        ("client CPU per million events, ms", lambda s: span(s.get("cpu_ms_per_million"), digits=0)),
        ("peak RSS, MB", lambda s: span(s.get("peak_rss_kb"), 1024, 1)),
        ("SQL API statements (INSERTs) per 100,000 events",
         lambda s: f"{span(s.get('statements_per_100k'))} ({span(s.get('inserts_per_100k'))})"),
        ("warehouse resumes", lambda s: span(s.get("warehouse_resumes"), digits=0)),
        ("streaming appends (uncompressed MB)",
         lambda s: f"{span(s.get('appends'), digits=0)} ({span(s.get('append_bytes'), 1e6, 1)})"),
        ("MB of rows packed", lambda s: span(s.get("bytes_sent"), 1e6, 1)),
    ]  # fmt: skip
    rows = [[name, *(shown(result["summary"]) for _, result in sides)] for name, shown in figures]
    return markdown_table(["100,000 events staged, one cold flush", *(label for label, _ in sides)], rows)


def steady_table(steady: dict[str, Any]) -> str:
    latency = steady["latency_s"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(steady["sql_api_by_kind"].items())) or "none"
    loading = [r for r in steady["flush_runs"] if r["events_loaded"] or r["events_rejected"]]
    per_run = [r["events_loaded"] + r["events_rejected"] for r in loading]
    rows = [
        ["latency SendMessage -> visible, median / p90 / max, s",
         f"{latency['median']} / {latency['p90']} / {latency['max']}"],
        ["flush runs (that loaded)", f"{len(steady['flush_runs'])} ({steady['loading_runs']})"],
        ["events per loading run, median", f"{statistics.median(per_run):,.0f}" if per_run else "n/a"],
        ["flush run wall time, median of loading runs, ms", f"{steady['flush_wall_ms_median']:,.0f}"],
        ["flush client CPU per event, ms", f"{steady['flush_cpu_ms_per_event']}"],
        ["flush peak RSS, MB", mb(steady["flush_peak_rss_kb"])],
        ["appends (uncompressed MB)", f"{steady['appends']} ({steady['append_bytes'] / 1e6:.2f})"],
        ["streaming requests", ", ".join(f"{k} {v}" for k, v in sorted(steady["streaming_requests"].items()))],
        ["SQL API statements by kind", kinds],
        ["INSERTs / warehouse resumes", f"{steady['inserts']} / {steady['warehouse_resumes']}"],
    ]  # fmt: skip
    return markdown_table(["figure", "value"], rows)


def headline(report: dict[str, Any]) -> list[str]:
    """Figures without a target, one line each, under the summary."""
    lines = []
    cold = report.get("coldstart")
    if cold:
        parts = [
            f"`{name}` {b['cold_start_ms']['median']} ms, {b['size_bytes'] / 2**20:.1f} MiB"
            for name, b in cold["binaries"].items()
        ]
        lines.append("- Cold start (median) and binary size: " + "; ".join(parts) + ".")
    baseline = report.get("baseline")
    if baseline:
        s = baseline["summary"]
        lines.append(
            f"- Same {baseline['events']:,} events, same run: our stream-mode ingest uses "
            f"{s['cpu_ratio_of_medians']:.2f}x the client CPU of a typical snowflake-connector-python "
            f"loader ({s['ours']['cpu_us_per_event']['median']} vs {s['python']['cpu_us_per_event']['median']} us per "
            f"event) and {s['rss_ratio_of_medians']:.2f}x its peak RSS "
            f"({mb(s['ours']['peak_rss_kb']['median'])} vs {mb(s['python']['peak_rss_kb']['median'])})."
        )
    cost = report.get("cost")
    if cost:
        parts = [
            f"{volume / 1e6:.0f}M events/day: scheduled ${scheduled['usd_per_million']:.2f}, "
            f"stream ${stream['usd_per_million']:.2f}"
            for volume, scheduled, stream in one_event_costs(cost)
        ]
        if parts:
            lines.append("- Cost per million events (one event per message; section 5): " + "; ".join(parts) + ".")
    return ["", *lines] if lines else []


def parse_table(parse: dict[str, Any]) -> str:
    header = [
        "benchmark", "events/s (median)", "95% CI of the median", "fastest 10% of samples", "fastest sample",
        "median time per iteration",
    ]  # fmt: skip
    rows = [
        [
            f"`{r['id']}`",
            f"{r['events_per_s']:,}",
            f"{r['events_per_s_low']:,}-{r['events_per_s_high']:,}",
            f">= {r['fastest_tenth_events_per_s']:,}",
            f"{r['fastest_events_per_s']:,}",
            f"{r['median_ns'] / 1e6:.2f} ms ({r['elements']:,} events)",
        ]
        for r in parse["results"]
    ]
    return markdown_table(header, rows)


def ingest_table(ingest: dict[str, Any]) -> str:
    header = [
        "batch", "mode", "CPU ms", "wall ms", "events/s", "CPU ms per million events",
        "statements per 100,000 events", "peak RSS",
    ]  # fmt: skip
    rows = []
    for result in ingest.values():
        for mode in ("scheduled", "stream"):
            row = ingest_row(batch_label(result), result, mode)
            if row:
                rows.append(row)
    return markdown_table(header, rows)


def flush_table(flush: dict[str, Any]) -> str:
    header = [
        "stage", "wall ms", "events/s", "CPU ms", "CPU ms per million events",
        "statements (INSERTs)", "statements per 100,000", "MB of rows sent", "peak RSS MB",
    ]  # fmt: skip
    rows = []
    for result in flush.values():
        s = result["summary"]
        first = next((r for r in result["runs"] if r.get("ok")), {})
        rows.append(
            [
                f"{result['events']:,} events, ingest batches of {result['ingest_batch']:,} msgs "
                f"({first.get('staging', {}).get('chunks', '?')} chunks)",
                span(s["wall_ms"], digits=0),
                span(s["events_per_s"], digits=0),
                f"{span(s['cpu_ms'], digits=0)} (init {span(s['init_cpu_ms'], digits=0)})",
                span(s["cpu_ms_per_million"], digits=0),
                f"{span(s['sql_api_statements'], digits=0)} ({span(s['inserts'], digits=0)})",
                span(s["statements_per_100k"]),
                span(s["bytes_sent"], 1e6, 1),
                span(s["peak_rss_kb"], 1024, 1),
            ]
        )
    return markdown_table(header, rows)


def coldstart_table(cold: dict[str, Any]) -> str:
    rows = [
        [
            f"`{name}`",
            span(b["cold_start_ms"]),
            span(b["idle_rss_kb"], 1024, 1, " MB"),
            f"{b['size_bytes']:,} bytes ({b['size_bytes'] / 2**20:.1f} MiB)",
        ]
        for name, b in cold["binaries"].items()
    ]
    return markdown_table(["binary", "cold start ms", "RSS after init", "size"], rows)


def baseline_table(summary: dict[str, Any]) -> str:
    def side(label: str, figures: dict[str, Any]) -> list[str]:
        return [
            label,
            span(figures["cpu_ms"]),
            span(figures["cpu_us_per_event"], digits=1),
            span(figures["peak_rss_kb"], 1024, 1, " MB"),
            span(figures["wall_ms"], digits=0),
        ]

    rows = [
        side("Python + snowflake-connector-python", summary["python"]),
        side("ours (ingest, stream)", summary["ours"]),
    ]
    return markdown_table(["loader", "client CPU ms", "CPU per event, us", "peak RSS", "wall ms"], rows)


def cost_table(cost: dict[str, Any]) -> str:
    header = [
        "mode", "events/msg", "events/day", "msgs/invocation", "ingest invocations/day", "ingest billed ms",
        "SQS requests/day", "warehouse s/day", "Lambda $/day", "SQS $/day", "Snowflake $/day", "total $/day",
        "$ per million events",
    ]  # fmt: skip
    rows = []
    for row in cost["rows"]:
        per_run = (
            f" ({row['flush_statements_per_run']:,} statements, {row['flush_load_s']} s load per run)"
            if row["flush_load_s"] is not None
            else ""
        )
        if row.get("flush_run_s") is not None:
            per_run = (
                f" (no warehouse; {row['streaming_credits_day']:.5f} streaming credits; "
                f"{c_runs(row)} flush runs of {row['flush_run_s']} s)"
            )
        rows.append(
            [
                row["mode"],
                str(row["events_per_message"]),
                f"{row['events_per_day'] / 1e6:.0f}M",
                f"{row['messages_per_invocation']:,.1f}",
                f"{row['invocations_per_day']:,}",
                f"{row['ingest_billed_ms']:,}",
                f"{row['sqs_requests_day']:,}",
                f"{row['warehouse_s_day']:,}" + per_run,
                f"${row['lambda_usd_day']:.3f}",
                f"${row['sqs_usd_day']:.3f}",
                f"${row['warehouse_usd_day']:.2f}",
                f"${row['total_usd_day']:.2f}",
                f"**${row['usd_per_million']:.2f}**",
            ]
        )
    return markdown_table(header, rows)


def c_runs(row: dict[str, Any]) -> str:
    return f"{STREAMING_FLUSHES_PER_DAY:,}" if row["mode"] == "streaming" else f"{FLUSHES_PER_DAY:,}"


def one_event_costs(cost: dict[str, Any]) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(events per day, scheduled row, stream row) of the cost model at one event per message."""
    by = {(r["mode"], r["events_per_message"], r["events_per_day"]): r for r in cost["rows"]}
    pairs = []
    for volume in (1_000_000, 10_000_000):
        stream, scheduled = by.get(("stream", 1, volume)), by.get(("scheduled", 1, volume))
        if stream and scheduled:
            pairs.append((volume, scheduled, stream))
    return pairs


def cost_notes(cost: dict[str, Any]) -> list[str]:
    by = {(r["mode"], r["events_per_message"], r["events_per_day"]): r for r in cost["rows"]}

    def streaming_part(volume: int) -> str:
        row = by.get(("streaming", 1, volume))
        return f" (streaming ${row['usd_per_million']:.2f})" if row else ""

    return [
        f"at {volume / 1e6:.0f}M events/day (one event per message) scheduled costs "
        f"${scheduled['usd_per_million']:.2f} and stream ${stream['usd_per_million']:.2f} per million events"
        + streaming_part(volume)
        for volume, scheduled, stream in one_event_costs(cost)
    ]


def render_context(report: dict[str, Any], bench: Bench) -> dict[str, Any]:
    """What the template (templates/BENCHMARKS.md.j2) shows: the report, its tables and figures."""
    meta = report["meta"]
    parse, ingest, flush = report.get("parse"), report.get("ingest") or {}, report.get("flush") or {}
    cold, baseline, cost = report.get("coldstart"), report.get("baseline"), report.get("cost")
    summary_header = ["target", "wanted", "measured (median, min-max)", "result"]
    tables = {"summary": markdown_table(summary_header, summary_rows(report))}
    context: dict[str, Any] = {
        "report": report,
        "meta": meta,
        "c": {name: globals()[name] for name in TEMPLATE_CONSTANTS},
        "stack_dir": bench.display_stack_dir(),
        "stack_up_command": bench.stack_up_command(),
        "binaries": ", ".join(f"`{n}` sha256 {b['sha256']}" for n, b in meta["binaries"].items()),
        "headline": headline(report)[1:],
        "cpus": os.cpu_count(),
        "parse": parse,
        "ingest": ingest,
        "flush": flush,
        "cold": cold,
        "baseline": baseline,
        "cost": cost,
        "tables": tables,
        "timings": ", ".join(f"{name} {seconds:.0f} s" for name, seconds in report["timings"].items())
        + f"; total {meta['total_s']:.0f} s.",
    }
    if parse:
        tables["parse"] = parse_table(parse)
        context["load_before"], context["load_after"] = parse.get("load_average") or [None, None]
    if ingest:
        tables["ingest"] = ingest_table(ingest)
    if flush:
        tables["flush"] = flush_table(flush)
    streaming = report.get("streaming")
    context["streaming"] = streaming
    if streaming:
        tables["streaming"] = streaming_table(streaming, flush.get("flush-1000"))
        if streaming.get("steady") and streaming["steady"].get("latency_s"):
            tables["steady"] = steady_table(streaming["steady"])
    if cold:
        tables["cold"] = coldstart_table(cold)
    if baseline:
        s = baseline["summary"]
        tables["baseline"] = baseline_table(s)
        context["bs"] = s
        context["speedup"] = 1 / s["cpu_ratio_of_medians"] if s["cpu_ratio_of_medians"] else float("nan")
        context["python_rss_after_imports"] = span(s["python"].get("rss_after_imports_kb"), 1024, 1, " MB")
        context["python_rss_before_load"] = span(s["python"]["rss_before_load_kb"], 1024, 1, " MB")
    if cost:
        tables["cost"] = cost_table(cost)
        context["model"] = cost["flush_model"]
        context["smodel"] = cost.get("streaming_model")
        context["cost_notes"] = cost_notes(cost)
        context["warehouse_floor"] = (
            FLUSHES_PER_DAY * RESUME_MINIMUM_S / 3600 * PRICES["xsmall_credits_per_hour"] * PRICES["credit"]
        )
    return context


def render(report: dict[str, Any], bench: Bench) -> str:
    """BENCHMARKS.md for a report: templates/BENCHMARKS.md.j2 over render_context."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["fmt"] = format
    return environment.get_template(TEMPLATE.name).render(render_context(report, bench))


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPUs ({model}), {platform.machine()}, Linux {platform.release()}"


def git_state() -> str:
    try:

        def run(*cmd: str) -> str:
            return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False).stdout

        head = run("git", "rev-parse", "--short", "HEAD").strip()
        dirty = run("git", "status", "--porcelain")
        changed = len([line for line in dirty.splitlines() if line.strip()])
        return head + (f" + {changed} uncommitted changes" if changed else "")
    except OSError:
        return "unknown"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="the Markdown file (default BENCHMARKS.md for a full run)")
    parser.add_argument("--stack-dir", type=Path, default=REPO / ".local" / "bench", help="the stack's directory")
    parser.add_argument("--moto-port", type=int, default=4599)
    parser.add_argument("--snowflake-port", type=int, default=8099)
    parser.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="fewer runs and events: a smoke test")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--baseline-events", type=int, default=5000, help="events per side in the baseline (5000)")
    parser.add_argument(
        "--render", type=Path, help="only write the Markdown again from a report.json of an earlier run (e.g. after "
        "editing templates/BENCHMARKS.md.j2)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.stack_dir = args.stack_dir if args.stack_dir.is_absolute() else (Path.cwd() / args.stack_dir)
    args.sections = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",") if s.strip()]
    if any(s not in SECTIONS for s in args.sections):
        parser.error(f"--only: {','.join(SECTIONS)}")
    if args.out is None and (not args.only or args.render):
        args.out = REPO / "BENCHMARKS.md"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    release = REPO / "target" / "release"
    missing = [name for name in BINARIES if not (release / name).is_file()]
    if missing:
        print(
            f"bench: missing {', '.join(missing)}: cargo build --release -p ingest -p flush -p connection-test",
            file=sys.stderr,
        )
        return 2
    bench = Bench(args)
    if args.render:
        report = json.loads(args.render.read_text())
        args.out.write_text(render(report, bench))
        progress(f"wrote {args.out} from {args.render}")
        return 0
    bench.out_dir.mkdir(parents=True, exist_ok=True)
    bench.bin_dir.mkdir(parents=True, exist_ok=True)
    binaries = {}
    for name in BINARIES:
        shutil.copy2(release / name, bench.binary(name))
        data = bench.binary(name).read_bytes()
        binaries[name] = {"sha256": hashlib.sha256(data).hexdigest()[:16], "size_bytes": len(data)}
    started = time.monotonic()
    report: dict[str, Any] = {}
    needs_stack = any(s != "parse" for s in args.sections)
    try:
        if "parse" in args.sections:
            report["parse"] = section_parse(bench)
        if needs_stack:
            progress(
                f"starting the stack in {bench.stack_dir} (moto {args.moto_port}, snowflake {args.snowflake_port})"
            )
            bench.stack("up")
        if "ingest" in args.sections:
            report["ingest"] = section_ingest(bench)
        streaming_flush = None
        if "flush" in args.sections:
            report["flush"] = section_flush(bench, streaming="streaming" in args.sections)
            streaming_flush = report["flush"].pop("flush-streaming", None)
        if "streaming" in args.sections:
            report["streaming"] = section_streaming(bench, streaming_flush)
        if "coldstart" in args.sections:
            report["coldstart"] = section_coldstart(bench)
        if "baseline" in args.sections:
            report["baseline"] = section_baseline(bench)
    finally:
        if needs_stack and not args.keep_stack:
            bench.stack("down")
    if report.get("ingest") and report.get("flush"):
        report["cost"] = cost_model(report["ingest"], report["flush"], report.get("streaming"))
    report["errors"] = bench.errors
    report["timings"] = bench.timings
    report["meta"] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_state(),
        "machine": machine(),
        "binaries": binaries,
        "total_s": round(time.monotonic() - started, 1),
    }
    (bench.out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = render(report, bench)
    if args.out:
        args.out.write_text(text)
        progress(f"wrote {args.out}")
    else:
        print(text)
    for error in bench.errors:
        progress(f"ERROR {error}")
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
