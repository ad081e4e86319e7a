"""Steady operation of the streaming load method: how long an event takes from SendMessage to a
row a query sees, and what the warehouse does meanwhile.

    .venv/bin/python -m tracklayer_local.bench_streaming [--ingest target/release/ingest]
        [--flush target/release/flush] [--seconds 180] [--rate 10] [--flush-period 60]
        [--window 10] [--commit-delay-ms 3000] [--seed 20261202] [--json FILE]

Needs a running stack (``python -m tracklayer_local.stack up``; found through ``--env-file``) and
both binaries. The deployed shape, at its defaults (``LoadMethod=streaming``, which sets
``FlushPeriodMinutes`` to 1 and flush's reserved concurrency to 1):

* a producer sends ``--rate`` realistic events a second (the Rust generator, one event per
  message, 1% invalid), each with its own SendMessage, for ``--seconds``;
* the real ``ingest`` binary in scheduled mode takes the events queue every ``--window`` seconds
  (the template's ``IngestBatchingWindowSeconds``: at low traffic the event source mapping waits
  that long for a batch), up to 1,000 messages an invocation, and stages chunks;
* one warm ``flush`` process (``TRACKLAYER_LOAD_METHOD=streaming``) is invoked every
  ``--flush-period`` seconds (the EventBridge schedule), the first time one period after the
  producer starts, and then until every event is visible (at most three periods more);
* a reader asks ``RAW_EVENTS`` through snowflake-connector-python every 0.5 s which of the run's
  event ids it holds; an event's latency is the first answer that holds it minus the moment its
  SendMessage was called (so the 0.5 s poll and the query's own time count against us).

The local Snowflake commits each append ``--commit-delay-ms`` after it arrived (3,000, its own
default, set for the run and restored after; Snowflake says 5-10 s from ingest to query, which would
add a few seconds to every figure). Before the first flush every warehouse is set SUSPENDED, and after each
run any warehouse a statement resumed is counted and suspended again, so ``warehouse resumes``
counts the runs that needed one (60 s of X-Small each, at least). The SQL API statements come
from the local Snowflake's request report (the reader's queries use the connector's own protocol
and are not in it).

Exit status 0 when every valid event is in ``RAW_EVENTS`` exactly once, every invalid one in
``RAW_EVENTS_REJECTED`` and no flush run failed (the latency and the goals of 0 INSERTs and 0
resumes are reported, not enforced), 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from typing import Any

from tracklayer_local.harness import (
    Control,
    bench_parser,
    bounded,
    command_line,
    connect,
    count_rows,
    markdown_table,
    print_result,
    progress_to_stderr,
    queue_depth,
    sample_messages,
    shown_path,
    snowflake_port,
    sqs_client,
    stack_or_exit,
    verdict,
    with_command,
)
from tracklayer_local.lambda_host import LambdaHost, run_sqs

POLL_S = 0.5
EXTRA_PERIODS = 3
LATENCY_GOAL_S = 60

progress = progress_to_stderr("bench_streaming")


class Reader:
    """Polls RAW_EVENTS for the run's event ids; remembers when each was first seen."""

    def __init__(self, port: int, prefix: str) -> None:
        self.port, self.prefix = port, prefix
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.queries = 0

    def run(self) -> None:
        from snowflake.connector.errors import ProgrammingError

        conn = connect(self.port)
        try:
            cur = conn.cursor()
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    cur.execute("SELECT EVENT_ID FROM RAW_EVENTS WHERE EVENT_ID LIKE %s", (self.prefix + "-v%",))
                    rows = cur.fetchall()
                except ProgrammingError as e:
                    if e.errno != 2003:  # 002003: no RAW_EVENTS yet; flush's first run creates it
                        raise
                    rows = []
                now = time.monotonic()
                self.queries += 1
                for (event_id,) in rows:
                    self.seen.setdefault(event_id, now)
                self.stop.wait(max(0.0, POLL_S - (now - started)))
        finally:
            conn.close()


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def run(args: argparse.Namespace, stack: dict[str, str]) -> dict[str, Any]:
    control = Control(stack["SNOWFLAKE_EMULATOR_URL"])
    prefix = f"lat{uuid.uuid4().hex[:9]}"
    messages = sample_messages(int(args.seconds * args.rate), args.seed, bad_every=100, id_prefix=prefix)
    commit_delay = args.commit_delay_ms
    before = control.call("GET", "/settings").get("streaming", {}).get("commit_delay_ms")
    control.call("POST", "/settings", {"streaming": {"commit_delay_ms": commit_delay}})
    try:
        return measure(args, stack, control, prefix, messages, commit_delay)
    finally:
        control.call("POST", "/settings", {"streaming": {"commit_delay_ms": before}})


def measure(
    args: argparse.Namespace,
    stack: dict[str, str],
    control: Control,
    prefix: str,
    messages: list[Any],
    commit_delay: int,
) -> dict[str, Any]:
    port = snowflake_port(stack)
    sqs = sqs_client(stack)
    count = len(messages)
    ids = [json.loads(m.body).get("event_id") if m.valid else None for m in messages]
    valid = sum(m.valid for m in messages)
    invalid = count - valid
    events_url = sqs.create_queue(QueueName=f"{prefix}-events", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    staging_url = sqs.create_queue(QueueName=f"{prefix}-staging")["QueueUrl"]
    common = {**stack, "TRACKLAYER_STAGING_QUEUE_URL": staging_url}
    flush_env = {
        **common,
        "TRACKLAYER_LOAD_METHOD": "streaming",
        "TRACKLAYER_SECRET_ID": stack.get("TRACKLAYER_SECRET_ID", "tracklayer/snowflake"),
        "TRACKLAYER_FLUSH_PERIOD_MINUTES": str(max(1, round(args.flush_period / 60))),
    }
    args.log_dir.mkdir(parents=True, exist_ok=True)
    ingest_log, flush_log = args.log_dir / "bench-streaming-ingest.log", args.log_dir / "bench-streaming-flush.log"
    for log in (ingest_log, flush_log):
        log.write_text("")
    sent: list[float | None] = [None] * count
    produced = threading.Event()
    flush_runs: list[dict[str, Any]] = []
    ingest_runs = {"invocations": 0, "messages": 0, "failed": 0}
    resumes_before = control.suspend_warehouses()
    control.call("DELETE", "/requests")
    reader = Reader(port, prefix)
    problems: list[str] = []

    with (
        LambdaHost(args.ingest, "ingest", env={**common, "TRACKLAYER_LOAD_MODE": "scheduled"}, timeout=60,
                   memory_mb=args.memory, log=ingest_log) as ingest,
        LambdaHost(args.flush, "flush", env=flush_env, timeout=120, memory_mb=args.memory, log=flush_log) as flush,
    ):  # fmt: skip
        if not ingest.wait_ready() or not flush.wait_ready():
            raise RuntimeError(f"a function did not start: {ingest.init_error or flush.init_error}")
        started = time.monotonic()

        def produce() -> None:
            producer = sqs_client(stack)
            for index, message in enumerate(messages):
                delay = started + index / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent[index] = time.monotonic()
                producer.send_message(QueueUrl=events_url, MessageBody=message.body)
            produced.set()

        def ingest_loop() -> None:
            window = 1
            while True:
                drained = produced.is_set()
                delay = started + window * args.window - time.monotonic()
                if delay > 0 and not drained:
                    time.sleep(delay)
                window += 1
                stats = run_sqs(ingest, events_url, batch_size=1000, until_empty=True, wait=0, sqs=sqs,
                                progress=lambda _line: None)  # fmt: skip
                ingest_runs["invocations"] += stats["batches"]
                ingest_runs["messages"] += stats["messages_deleted"]
                ingest_runs["failed"] += stats["messages_failed"]
                if drained and queue_depth(sqs, events_url).total == 0:
                    return

        failures: list[str] = []

        def guarded(work: Any) -> Any:
            """`work` in a thread, an exception it raises kept for the run to fail with."""

            def run_work() -> None:
                try:
                    work()
                except Exception as e:  # noqa: BLE001 - any failure of a thread ends the run, with its cause
                    failures.append(f"{work.__name__}: {type(e).__name__}: {e}")

            return run_work

        threads = [threading.Thread(target=guarded(f), daemon=True) for f in (produce, ingest_loop, reader.run)]
        for thread in threads:
            thread.start()
        last_period = int(args.seconds / args.flush_period) + 1 + EXTRA_PERIODS
        for period in range(1, last_period + 1):
            if failures:
                raise RuntimeError("; ".join(failures))
            delay = started + period * args.flush_period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            cpu_before = flush.cpu_ms()
            invoked = time.monotonic()
            ok, payload = flush.invoke({})
            answered = time.monotonic()
            cpu_after = flush.cpu_ms()
            report = payload if ok and isinstance(payload, dict) else {}
            entry = {
                "period": period,
                "at_s": round(invoked - started, 1),
                "ok": ok,
                "status": report.get("status"),
                "events_loaded": report.get("events_loaded", 0),
                "events_rejected": report.get("events_rejected", 0),
                "appends": report.get("appends", 0),
                "append_bytes": report.get("append_bytes", 0),
                "statements": report.get("statements", 0),
                "wall_ms": round((answered - invoked) * 1000),
                "cpu_ms": None if None in (cpu_before, cpu_after) else round(cpu_after - cpu_before, 1),
                "resumed": control.suspend_warehouses() - resumes_before,
            }
            if entry["resumed"]:
                resumes_before += entry["resumed"]
            if not ok or entry["status"] == "failed":
                problems.append(f"flush run {period} failed: {str(payload)[:300]}")
            flush_runs.append(entry)
            progress(
                f"flush {period} at {entry['at_s']} s: {entry['status']}, {entry['events_loaded']} events, "
                f"{entry['appends']} appends, {entry['statements']} statements, {entry['wall_ms']} ms; "
                f"{len(reader.seen)}/{valid} visible"
            )
            if produced.is_set() and len(reader.seen) >= valid and queue_depth(sqs, staging_url).total == 0:
                break
            time.sleep(0)  # the reader catches up between runs
        deadline = time.monotonic() + 10
        while len(reader.seen) < valid and time.monotonic() < deadline:
            time.sleep(POLL_S)
        reader.stop.set()
        for thread in threads:
            thread.join(30)
        flush_summary = flush.summary()
    requests = control.call("GET", "/requests")
    sqs.delete_queue(QueueUrl=events_url)
    sqs.delete_queue(QueueUrl=staging_url)

    latencies = [reader.seen[i] - s for i, s in zip(ids, sent, strict=True) if i and s and i in reader.seen]
    rows = count_rows(port, "RAW_EVENTS", "EVENT_ID", prefix + "-v")
    rejected_rows = count_rejected(port, prefix)
    if len(latencies) != valid:
        problems.append(f"{valid - len(latencies)} valid events never became visible")
    if rows != valid:
        problems.append(f"RAW_EVENTS holds {rows} rows of the run, expected {valid}")
    if rejected_rows != invalid:
        problems.append(f"RAW_EVENTS_REJECTED holds {rejected_rows} rows of the run, expected {invalid}")
    by_kind = requests.get("by_kind", {})
    loading = [r for r in flush_runs if r["events_loaded"] or r["events_rejected"]]
    cpu = [r["cpu_ms"] for r in loading if r["cpu_ms"] is not None]
    return {
        "events": count,
        "valid": valid,
        "invalid": invalid,
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "flush_period_s": args.flush_period,
        "window_s": args.window,
        "commit_delay_ms": commit_delay,
        "latency_s": {
            "median": round(statistics.median(latencies), 1) if latencies else None,
            "p90": round(percentile(latencies, 0.9), 1) if latencies else None,
            "max": round(max(latencies), 1) if latencies else None,
            "min": round(min(latencies), 1) if latencies else None,
        },
        "latency_goal_s": LATENCY_GOAL_S,
        "flush_runs": flush_runs,
        "loading_runs": len(loading),
        "flush_wall_ms_median": statistics.median(r["wall_ms"] for r in loading) if loading else None,
        "flush_cpu_ms_per_event": round(sum(cpu) / max(1, sum(r["events_loaded"] for r in loading)), 4)
        if cpu
        else None,
        "flush_peak_rss_kb": flush_summary["peak_rss_kb"],
        "appends": sum(r["appends"] for r in flush_runs),
        "append_bytes": sum(r["append_bytes"] for r in flush_runs),
        "sql_api_by_kind": by_kind,
        "inserts": by_kind.get("INSERT", 0),
        "warehouse_resumes": sum(r["resumed"] for r in flush_runs),
        "streaming_requests": requests.get("by_streaming", {}),
        "ingest": ingest_runs,
        "reader_queries": reader.queries,
        "rows_in_raw_events": rows,
        "rows_rejected": rejected_rows,
        "problems": problems,
        "ok": not problems,
    }


def count_rejected(port: int, prefix: str) -> int:
    conn = connect(port)
    try:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM RAW_EVENTS_REJECTED WHERE RAW_TEXT LIKE %s", (f"%{prefix}-%",))
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def goals(result: dict[str, Any]) -> str:
    """The issue's goals for steady operation, each with pass or FAIL."""
    latency, goal = result["latency_s"], result["latency_goal_s"]

    def within(seconds: float | None) -> bool | None:
        return None if seconds is None else seconds <= goal

    first_deliveries = not result["inserts"] and not result["warehouse_resumes"]
    return (
        f"Goal: latency at most {goal} s: median {verdict(within(latency['median']))}, max "
        f"{verdict(within(latency['max']))}; 0 INSERTs and 0 resumes for first deliveries: {verdict(first_deliveries)}."
    )


def markdown(result: dict[str, Any]) -> str:
    latency = result["latency_s"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(result["sql_api_by_kind"].items())) or "none"
    lines = [
        f"{result['events']:,} events ({result['invalid']} invalid) sent at {result['rate_per_s']} a second for "
        f"{result['seconds']} s, one per message; ingest every {result['window_s']} s (scheduled mode), one warm "
        f"flush every {result['flush_period_s']} s with `TRACKLAYER_LOAD_METHOD=streaming`; the local Snowflake "
        f"committed each append {result['commit_delay_ms']} ms after it arrived.",
        "",
        markdown_table(
            ["figure", "value"],
            [
                [
                    "latency SendMessage -> visible in RAW_EVENTS, median / p90 / max, s",
                    f"{latency['median']} / {latency['p90']} / {latency['max']}",
                ],
                ["flush runs that loaded (of all runs)", f"{result['loading_runs']} ({len(result['flush_runs'])})"],
                ["flush run wall time, median, ms", result["flush_wall_ms_median"]],
                ["flush client CPU per event, ms", result["flush_cpu_ms_per_event"]],
                ["appends (uncompressed MB)", f"{result['appends']} ({result['append_bytes'] / 1e6:.2f})"],
                ["SQL API statements by kind", kinds],
                ["INSERTs / warehouse resumes", f"{result['inserts']} / {result['warehouse_resumes']}"],
            ],
        ),
        "",
        goals(result),
    ]
    return with_command(lines, result["command"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    binaries = {"ingest": "ingest", "flush": "flush"}
    parser = bench_parser("bench_streaming", __doc__, binaries=binaries, seed=20261202)
    parser.add_argument("--seconds", type=bounded(10, kind=float), default=180, help="producer runs for, s (180)")
    parser.add_argument("--rate", type=bounded(0.01, 200, float), default=10, help="events/s (10; 1M/day is 11.6)")
    parser.add_argument("--flush-period", type=bounded(5, kind=float), default=60, help="flush every, s (60)")
    parser.add_argument("--window", type=bounded(0.1, 300, float), default=10, help="ingest's batching window, s (10)")
    parser.add_argument(
        "--commit-delay-ms", type=int, default=3000, help="the local Snowflake's append-to-commit delay (3000)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stack = stack_or_exit(args)
    started = time.monotonic()
    result = {"command": command_line(), "flush": shown_path(args.flush), "ingest": shown_path(args.ingest)}
    try:
        result.update(run(args, stack))
    except RuntimeError as e:
        progress(f"FAILED: {e}")
        result.update({"ok": False, "problems": [str(e)]})
        print(json.dumps(result, indent=2))
        return 1
    result["total_s"] = round(time.monotonic() - started, 1)
    print_result(result, markdown(result), args.json)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
