"""Benchmark the real flush binary: load 100,000 staged events into the local Snowflake.

    .venv/bin/python -m tracklayer_local.bench_flush [--flush target/release/flush]
        [--ingest target/release/ingest] [--events 100000] [--ingest-batch 1000]
        [--runs 3] [--memory 256] [--reset-emulator] [--load-method sql_api|streaming]
        [--commit-delay-ms 3000] [--json FILE]

Needs a running stack (``python -m tracklayer_local.stack up``; found through ``--env-file``, default
``$STACK_DIR/stack.env``) and both release binaries (``cargo build --release -p ingest -p flush``).

Each run starts from a fresh staging queue and stages ``--events`` events the way production
does: the real ``ingest`` binary in scheduled mode, invoked through ``lambda_host`` with SQS
events of ``--ingest-batch`` messages (the template's ``IngestBatchSize`` is 1000; ~4,300 ~600-byte
messages is the most a 6 MB Lambda event holds), one realistic ecommerce event per message (the
generator of ``bench_ingest.py``: ~600 bytes, 1% invalid), fresh event ids every run. Staging
chunks are cut per ingest invocation, so the batch size decides how many staged chunks there are;
flush packs their rows into statements near the size bound, so it should not decide how many
INSERTs there are.

Then the emulator's request report is cleared and the real ``flush`` binary is started in a new
process (as an hourly Lambda usually is: cold) and invoked once with ``{}``. Measured:

* wall time of the invocation (Lambda's Duration) and events/s;
* client CPU: the flush process's user + system time from ready to 0.2 s after its answer
  (``/proc/<pid>/stat``, 10 ms ticks), and its initialisation CPU separately;
* statements: flush's own report (``statements``) and the emulator's request report (every SQL
  API submission and how many were INSERTs, with their request bytes), per 100,000 events;
* bytes of rows sent (flush's ``bytes_sent``) and of SQL API request bodies (emulator);
* peak RSS (VmHWM) of the flush process; its cold start;
* warehouse resumes: every warehouse is set SUSPENDED before the invocation, and the local
  Snowflake counts a resume when a statement needs one;
* with ``--load-method streaming`` (``TRACKLAYER_LOAD_METHOD``), flush's Snowpipe Streaming
  appends and their uncompressed bytes (its report) and the streaming requests by kind (the
  local Snowflake's report); the local Snowflake commits each append ``--commit-delay-ms``
  (3,000, its default) after it arrived, set for the run and restored after.

A run fails unless flush answered ``status: loaded``, loaded every valid event, quarantined every
invalid one, left nothing on the queue, and ``RAW_EVENTS`` (read back through
snowflake-connector-python) holds exactly the run's valid events. ``--reset-emulator`` drops the
local Snowflake's data before each run (``POST /__emulator/reset {"drop_data": true}``) so every
run loads into empty tables: only for a stack of your own.

Prints progress on stderr, then a JSON result and a Markdown table (medians, min-max) against the
targets (<= 100 statements per 100,000 events, peak RSS <= 64 MB). Exit status 0 when every run
succeeded (targets are reported, not enforced), 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from tracklayer_local.bench_ingest import make_event, make_templates
from tracklayer_local.harness import (
    Control,
    SqsClient,
    bench_parser,
    bounded,
    command_line,
    count_rows,
    invocation_summaries,
    markdown_table,
    print_result,
    progress_to_stderr,
    queue_depth,
    shown_path,
    snowflake_port,
    span,
    spread,
    sqs_client,
    stack_or_exit,
    verdict,
    with_command,
)
from tracklayer_local.lambda_host import LambdaHost

STATEMENTS_TARGET = 100  # per 100,000 events
RSS_TARGET_KB = 64 * 1024
SETTLE_S = 0.2


progress = progress_to_stderr("bench_flush")


def emulator(stack: dict[str, str], method: str, path: str, body: dict | None = None) -> Any:
    return Control(stack["SNOWFLAKE_EMULATOR_URL"]).call(method, path.removeprefix("/__emulator"), body)


def queued(sqs: SqsClient, url: str) -> int:
    """Messages on the queue, visible or in flight."""
    depth = queue_depth(sqs, url)
    return depth.visible + depth.in_flight


def stage(
    args: argparse.Namespace,
    stack: dict[str, str],
    sqs: SqsClient,
    staging: str,
    tag: str,
    templates: list[str],
) -> dict[str, Any]:
    """Stages args.events events through the real ingest binary; returns what it did."""
    env = {**stack, "TRACKLAYER_LOAD_MODE": "scheduled", "TRACKLAYER_STAGING_QUEUE_URL": staging}
    log = args.log_dir / "bench-flush-ingest.log"
    offset = log.stat().st_size if log.exists() else 0
    batches = (args.events + args.ingest_batch - 1) // args.ingest_batch
    started = time.monotonic()
    with LambdaHost(args.ingest, "ingest", env=env, timeout=120, memory_mb=args.memory, log=log) as host:
        for number in range(batches):
            size = min(args.ingest_batch, args.events - number * args.ingest_batch)
            ok, payload = host.invoke(make_event(templates[:size], f"{tag}-{number:03d}"))
            if not ok or (payload or {}).get("batchItemFailures"):
                raise RuntimeError(f"staging batch {number} failed: {str(payload)[:500]}; log {log}")
        summary = host.summary()
    lines = invocation_summaries(log, offset)
    return {
        "invocations": batches,
        "staged_events": sum(line.get("EventsStaged", 0) for line in lines),
        "rejected_events": sum(line.get("rejected", 0) for line in lines),
        "chunks": sum(line.get("chunks", 0) for line in lines),
        "send_message_batch_calls": sum(line.get("statements", 0) for line in lines),
        "staged_messages": queued(sqs, staging),
        "ingest_cpu_ms": summary["cpu_ms"],
        "ingest_peak_rss_kb": summary["peak_rss_kb"],
        "seconds": round(time.monotonic() - started, 1),
    }


def flush_once(args: argparse.Namespace, stack: dict[str, str], staging: str, number: int) -> dict[str, Any]:
    env = {
        **stack,
        "TRACKLAYER_STAGING_QUEUE_URL": staging,
        "TRACKLAYER_SECRET_ID": stack.get("TRACKLAYER_SECRET_ID", "tracklayer/snowflake"),
        "TRACKLAYER_LOAD_METHOD": args.load_method,
    }
    log = args.log_dir / "bench-flush.log"
    host = LambdaHost(args.flush, "flush", env=env, timeout=args.timeout, memory_mb=args.memory, log=log)
    try:
        host.start()
        if not host.wait_ready():
            raise RuntimeError(f"flush did not start: {host.init_error or host.log_tail()}")
        pid = host.pid
        init_cpu = host.cpu_ms()
        ok, payload = host.invoke({})
        time.sleep(SETTLE_S)
        after = host.cpu_ms()
        cpu = round(after - init_cpu, 1) if host.pid == pid and None not in (init_cpu, after) else None
        wall = host.durations_ms[-1]
    finally:
        host.close()
    summary = host.summary()
    return {
        "ok": ok,
        "report": payload,
        "wall_ms": wall,
        "cpu_ms": cpu,
        "init_cpu_ms": init_cpu,
        "cold_start_ms": summary["cold_start_ms"],
        "peak_rss_kb": summary["peak_rss_kb"],
        "log": str(log),
    }


def invalid_among(n: int) -> int:
    """How many of the first `n` generated bodies are invalid (one at every index % 100 == 50)."""
    return sum(1 for index in range(n) if index % 100 == 50)


def run_once(args: argparse.Namespace, stack: dict[str, str], templates: list[str], number: int) -> dict[str, Any]:
    sqs = sqs_client(stack)
    if args.reset_emulator:
        emulator(stack, "POST", "/__emulator/reset", {"drop_data": True})
    staging = sqs.create_queue(
        QueueName=f"bench-flush-{uuid.uuid4().hex[:10]}", Attributes={"VisibilityTimeout": "600"}
    )["QueueUrl"]
    tag = f"f{uuid.uuid4().hex[:9]}"
    batches = (args.events + args.ingest_batch - 1) // args.ingest_batch
    invalid = sum(invalid_among(min(args.ingest_batch, args.events - n * args.ingest_batch)) for n in range(batches))
    valid = args.events - invalid
    try:
        staged = stage(args, stack, sqs, staging, tag, templates)
        progress(
            f"run {number}: staged {staged['staged_events']} events in {staged['chunks']} chunks "
            f"({staged['staged_messages']} messages, {staged['invocations']} ingest invocations, {staged['seconds']} s)"
        )
        if staged["staged_events"] != valid:
            raise RuntimeError(f"staged {staged['staged_events']} events, expected {valid}")
        emulator(stack, "DELETE", "/__emulator/requests")
        control = Control(stack["SNOWFLAKE_EMULATOR_URL"])
        resumes = control.suspend_warehouses()
        flushed = flush_once(args, stack, staging, number)
        report_sf = emulator(stack, "GET", "/__emulator/requests")
        resumes = control.suspend_warehouses() - resumes
        left = queued(sqs, staging)
    finally:
        sqs.delete_queue(QueueUrl=staging)
    report = flushed["report"] if isinstance(flushed["report"], dict) else {}
    statements = report_sf.get("statements", [])
    inserts = [s for s in statements if s.get("kind") == "INSERT"]
    rows = count_rows(snowflake_port(stack), "RAW_EVENTS", "EVENT_ID", tag + "-")
    wall_s = flushed["wall_ms"] / 1000
    loaded = report.get("events_loaded") or 0
    run = {
        "run": number,
        "events": args.events,
        "valid": valid,
        "invalid": invalid,
        "staging": staged,
        "wall_ms": flushed["wall_ms"],
        "events_per_s": round(loaded / wall_s) if wall_s > 0 else None,
        "cpu_ms": flushed["cpu_ms"],
        "init_cpu_ms": flushed["init_cpu_ms"],
        "cpu_ms_per_million": round(flushed["cpu_ms"] * 1e6 / args.events, 1)
        if flushed["cpu_ms"] is not None
        else None,
        "cold_start_ms": flushed["cold_start_ms"],
        "peak_rss_kb": flushed["peak_rss_kb"],
        "status": report.get("status"),
        "events_loaded": loaded,
        "events_rejected": report.get("events_rejected"),
        "chunks_loaded": report.get("chunks_loaded"),
        "statements_reported": report.get("statements"),
        "bytes_sent": report.get("bytes_sent"),
        "function_duration_ms": report.get("duration_ms"),
        "sql_api_requests": report_sf.get("total"),
        "sql_api_statements": len(statements),
        "sql_api_by_kind": report_sf.get("by_kind"),
        "warehouse_resumes": resumes,
        "appends": report.get("appends"),
        "append_bytes": report.get("append_bytes"),
        "streaming_requests": report_sf.get("by_streaming"),
        "inserts": len(inserts),
        "insert_request_bytes": sum(s.get("bytes") or 0 for s in inserts),
        "statements_per_100k": round(len(statements) * 100_000 / args.events, 1),
        "inserts_per_100k": round(len(inserts) * 100_000 / args.events, 1),
        "left_on_queue": left,
        "rows_in_raw_events": rows,
        "log": flushed["log"],
    }
    problems = []
    if not flushed["ok"]:
        problems.append(f"invocation failed: {str(flushed['report'])[:300]}")
    if report.get("status") != "loaded":
        problems.append(f"status {report.get('status')!r} ({report.get('error')})")
    if loaded != valid or rows != valid:
        problems.append(f"loaded {loaded} / {rows} rows in RAW_EVENTS, expected {valid}")
    if report.get("events_rejected") != invalid:
        problems.append(f"quarantined {report.get('events_rejected')}, expected {invalid}")
    if left:
        problems.append(f"{left} messages left on the staging queue")
    run["ok"] = not problems
    if problems:
        run["problems"] = problems
    progress(
        f"run {number}: {'ok' if run['ok'] else 'FAILED ' + '; '.join(problems)}: wall {run['wall_ms']} ms, "
        f"{run['events_per_s']} events/s, cpu {run['cpu_ms']} ms, {run['inserts']} INSERTs "
        f"({run['sql_api_statements']} statements), peak RSS {(run['peak_rss_kb'] or 0) / 1024:.1f} MB"
    )
    return run


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def pick(key: str) -> dict[str, float | None]:
        return spread([r[key] for r in runs if r.get(key) is not None])

    return {
        key: pick(key)
        for key in (
            "wall_ms", "events_per_s", "cpu_ms", "init_cpu_ms", "cpu_ms_per_million", "cold_start_ms",
            "peak_rss_kb", "inserts", "sql_api_statements", "statements_reported", "statements_per_100k",
            "inserts_per_100k", "bytes_sent", "insert_request_bytes", "warehouse_resumes", "appends", "append_bytes",
        )
    }  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    per100k = s["statements_per_100k"]["median"]
    rss = s["peak_rss_kb"]["max"]
    first = result["runs"][0] if result["runs"] else {}
    lines = [
        f"{result['events']:,} events (~{result['body_bytes']} B, 1% invalid) staged by `{result['ingest']}` in "
        f"batches of {result['ingest_batch']:,} messages ({first.get('staging', {}).get('chunks')} chunks), "
        f"then one `{result['flush']}` invocation"
        + (
            f" loading through Snowpipe Streaming (commits {result['commit_delay_ms']} ms after each append)"
            if result.get("load_method") == "streaming"
            else ""
        )
        + f"; {len(result['runs'])} runs, fresh stage each.",
        "",
        markdown_table(
            ["figure", "median (min-max)"],
            [
                ["wall time, ms", span(s["wall_ms"])],
                ["events/s", span(s["events_per_s"], digits=0)],
                ["client CPU of the invocation, ms", f"{span(s['cpu_ms'])} (init {span(s['init_cpu_ms'])})"],
                ["client CPU per million events, ms", span(s["cpu_ms_per_million"])],
                [
                    "SQL API statements (INSERTs)",
                    f"{span(s['sql_api_statements'], digits=0)} ({span(s['inserts'], digits=0)})",
                ],
                ["statements per 100,000 events", span(s["statements_per_100k"])],
                ["warehouse resumes", span(s["warehouse_resumes"], digits=0)],
                *(
                    [
                        [
                            "Snowpipe Streaming appends (uncompressed MB)",
                            f"{span(s['appends'], digits=0)} ({span(s['append_bytes'], 1e6, 2)})",
                        ]
                    ]
                    if result.get("load_method") == "streaming"
                    else []
                ),
                ["bytes of rows sent, MB", span(s["bytes_sent"], 1e6, 2)],
                ["peak RSS, MB", span(s["peak_rss_kb"], 1024)],
                ["cold start, ms", span(s["cold_start_ms"])],
            ],
        ),
        "",
        f"Targets: <= {STATEMENTS_TARGET} statements per 100,000 events: "
        f"{verdict(per100k is not None and per100k <= STATEMENTS_TARGET)}; "
        f"peak RSS <= 64 MB: {verdict(rss is not None and rss <= RSS_TARGET_KB)}.",
    ]
    return with_command(lines, result["command"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser("bench_flush", __doc__, binaries={"flush": "flush", "ingest": "ingest"})
    parser.add_argument("--events", type=bounded(100), default=100_000, help="events staged per run (100000)")
    parser.add_argument(
        "--ingest-batch", type=bounded(10, 10_000), default=1000, help="messages per ingest call (1000)"
    )
    parser.add_argument("--runs", type=bounded(1), default=3, help="runs, each with a fresh stage (3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="flush's function timeout, s (300)")
    parser.add_argument("--reset-emulator", action="store_true", help="drop the local Snowflake's data before each run")
    parser.add_argument("--load-method", choices=("sql_api", "streaming"), default="sql_api",
                        help="TRACKLAYER_LOAD_METHOD of flush (sql_api)")  # fmt: skip
    parser.add_argument("--commit-delay-ms", type=int, default=3000,
                        help="with streaming: the local Snowflake's append-to-commit delay (3000)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stack = stack_or_exit(args)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    for name in ("bench-flush.log", "bench-flush-ingest.log"):
        (args.log_dir / name).unlink(missing_ok=True)
    started = time.monotonic()
    size = min(args.ingest_batch, args.events)
    templates, _ = make_templates(size, args.seed)
    runs = []
    control = Control(stack["SNOWFLAKE_EMULATOR_URL"])
    commit_before = control.call("GET", "/settings").get("streaming", {}).get("commit_delay_ms")
    if args.load_method == "streaming":
        control.call("POST", "/settings", {"streaming": {"commit_delay_ms": args.commit_delay_ms}})
    try:
        for number in range(1, args.runs + 1):
            try:
                runs.append(run_once(args, stack, templates, number))
            except RuntimeError as e:
                progress(f"run {number} FAILED: {e}")
                runs.append({"run": number, "ok": False, "problems": [str(e)]})
    finally:
        control.call("POST", "/settings", {"streaming": {"commit_delay_ms": commit_before}})
    good = [r for r in runs if r.get("ok")]
    body_bytes = round(sum(len(t.encode()) for t in templates) / len(templates))
    result = {
        "command": command_line(),
        "flush": shown_path(args.flush),
        "ingest": shown_path(args.ingest),
        "events": args.events,
        "ingest_batch": args.ingest_batch,
        "body_bytes": body_bytes,
        "memory_mb": args.memory,
        "load_method": args.load_method,
        "commit_delay_ms": args.commit_delay_ms if args.load_method == "streaming" else None,
        "targets": {"statements_per_100k": STATEMENTS_TARGET, "peak_rss_kb": RSS_TARGET_KB},
        "runs": runs,
        "summary": summarise(good),
        "all_ok": len(good) == len(runs),
        "total_s": round(time.monotonic() - started, 1),
    }
    print_result(result, markdown(result), args.json)
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
