"""Benchmark the real ingest binary on a big SQS batch against the local stack.

    .venv/bin/python -m tracklayer_local.bench_ingest [--binary target/release/ingest] [--runs 5]
        [--messages 10000] [--events-per-message 1] [--modes scheduled,stream]
        [--memory 128] [--json FILE]

Needs a running stack (``python -m tracklayer_local.stack up``; found through ``--env-file``, default
``$STACK_DIR/stack.env``) and a built binary (``cargo build --release -p ingest``).

It generates one realistic SQS event: ``--messages`` records (default 10,000) of one ecommerce
event each from the Rust generator that the parse benchmark and the Rust tests use too
(``sample-events``, testkit/src/sample.rs: the funnel view_content / add_to_cart /
begin_checkout / purchase across seven merchants, three platforms and currencies, properties
with products and UTM tags; ~600 bytes on average, so ~6 MB of bodies), 1% of them invalid
(cut-off JSON, a missing or bad field); with ``--events-per-message N`` each body is NDJSON of N
such events (each its own id; the invalid 1% are lines inside the bodies). Then, for
each mode, it starts the binary under ``lambda_host`` (scheduled: a fresh staging queue, emptied
after every run and deleted at the end; stream: the stack's secret, rows go to TRACKLAYER.EVENTS.RAW_EVENTS of the local
Snowflake), sends one small warm-up event, and then ``--runs`` timed invocations of the big
event, with fresh event ids each time (stream mode inserts new rows every run). Measured per
invocation: the binary's CPU time (user + system of the process, /proc/<pid>/stat, delta from
before the invocation to 0.2 s after its answer; clock-tick resolution, usually 10 ms) and the
wall time (event handed over to answer, Lambda's Duration); per mode: the process's peak RSS
(VmHWM) after the warm-up and at the end.

In scheduled mode the staged SQS messages are counted and their bodies' bytes summed (gzip +
base64 envelopes: what SQS bills, by 64 KB chunk) while the queue is emptied after each run.

Prints progress on stderr, then a JSON result and a Markdown table (medians, min-max) with the
targets of the issue: <= 100 ms client CPU for the batch in scheduled mode, peak RSS <= 64 MB.
Exit status 0 when every invocation succeeded (the targets are reported, not enforced), 1
otherwise, 2 for usage errors (no binary, no stack).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
from typing import Any

from tracklayer_local.harness import (
    SqsClient,
    bench_parser,
    bounded,
    command_line,
    drain,
    invocation_summaries,
    log_size,
    markdown_table,
    print_result,
    progress_to_stderr,
    sample_messages,
    shown_path,
    spread,
    sqs_client,
    stack_or_exit,
    verdict,
    with_command,
)
from tracklayer_local.lambda_host import LambdaHost, read_vm_hwm_kb

CPU_TARGET_MS = 100  # scheduled mode, per batch
RSS_TARGET_KB = 64 * 1024
SETTLE_S = 0.2  # after an answer, before reading the CPU time: the process goes back to polling
EVENT_ID_SLOT = "@@EVENT_ID@@"  # replaced per run by a fresh id of the same length
BAD_EVERY = 100  # 1% of the events invalid
SOURCE_ARN = "arn:aws:sqs:us-east-1:123456789012:tracklayer-events"


progress = progress_to_stderr("bench_ingest")


# ------------------------------------------------------------------------------------------------
# The batch
# ------------------------------------------------------------------------------------------------


def make_templates(messages: int, seed: int, events_per_message: int = 1) -> tuple[list[str], int]:
    """Message bodies with EVENT_ID_SLOT in the event ids, and how many events are invalid.

    The Rust generator's events (``harness.sample_messages``, ~600 bytes each, every 100th
    invalid), one per body or NDJSON of `events_per_message`; ids are ``@@EVENT_ID@@-v<n>``
    (``-b<n>`` for the invalid ones), unique in the batch, so replacing the slot per run gives
    every event of a run its own id.
    """
    samples = sample_messages(
        messages * events_per_message,
        seed,
        bad_every=BAD_EVERY,
        id_prefix=EVENT_ID_SLOT,
        per_message=events_per_message,
        release=True,
    )
    return [m.body for m in samples], sum(len(m.defects) for m in samples)


def make_event(templates: list[str], tag: str) -> bytes:
    """The SQS event for one run: fresh event ids (`tag` + index), message ids and receipts."""
    now_ms = str(int(time.time() * 1000))
    records = []
    for index, template in enumerate(templates):
        body = template.replace(EVENT_ID_SLOT, f"{tag}-{index:05d}")
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": base64.b64encode(os.urandom(180)).decode(),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now_ms,
                    "SenderId": "AROAIWPX5BD2BHG722MW4:sender",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": SOURCE_ARN,
                "awsRegion": "us-east-1",
            }
        )
    return json.dumps({"Records": records}, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


def empty_queue(sqs: SqsClient, url: str) -> tuple[int, int]:
    """Receives and deletes every message (PurgeQueue is allowed once a minute).

    Returns how many messages were deleted and the UTF-8 bytes of their bodies.
    """
    deleted = drain(sqs, url)
    return len(deleted), sum(len(m.get("Body", "").encode()) for m in deleted)


def run_mode(
    mode: str, args: argparse.Namespace, stack: dict[str, str], templates: list[str], valid: int
) -> dict[str, Any]:
    sqs = sqs_client(stack)
    env = {**stack, "TRACKLAYER_LOAD_MODE": mode}
    staging = None
    if mode == "scheduled":
        staging = sqs.create_queue(QueueName=f"bench-staging-{uuid.uuid4().hex[:10]}")["QueueUrl"]
        env["TRACKLAYER_STAGING_QUEUE_URL"] = staging
    else:
        env["TRACKLAYER_SECRET_ID"] = stack.get("TRACKLAYER_SECRET_ID", "tracklayer/snowflake")
    log = args.log_dir / f"bench-ingest-{mode}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {"mode": mode, "log": str(log)}
    if staging:
        result["staging_queue"] = staging
    host = LambdaHost(args.binary, "ingest", env=env, timeout=args.timeout, memory_mb=args.memory, log=log)
    try:
        host.start()
        if not host.wait_ready():
            raise RuntimeError(f"ingest did not start: {host.init_error or host.log_tail()}")
        warm = make_event(templates[:10], f"bw{uuid.uuid4().hex[:10]}")
        ok, payload = host.invoke(warm)
        if not ok or (payload or {}).get("batchItemFailures"):
            raise RuntimeError(f"the warm-up invocation failed: {payload}; log {log}")
        result["warmup_ms"] = host.durations_ms[-1]
        result["warm_peak_rss_kb"] = read_vm_hwm_kb(host.pid) if host.pid else None  # before the big batch
        if staging:
            empty_queue(sqs, staging)
        for number in range(1, args.runs + 1):
            event = make_event(templates, f"b{uuid.uuid4().hex[:10]}")
            offset = log_size(log)
            pid = host.pid
            cpu_before = host.cpu_ms()
            ok, payload = host.invoke(event)
            time.sleep(SETTLE_S)  # work after the answer (freeing the batch) counts too
            cpu_after = host.cpu_ms()
            same_process = pid is not None and host.pid == pid
            cpu = round(cpu_after - cpu_before, 1) if same_process and None not in (cpu_before, cpu_after) else None
            wall = host.durations_ms[-1]
            failures = len((payload or {}).get("batchItemFailures") or []) if ok and isinstance(payload, dict) else None
            lines = invocation_summaries(log, offset)
            line = lines[-1] if lines else {}
            landed = line.get("EventsStaged" if mode == "scheduled" else "EventsLoaded")
            run = {
                "run": number,
                "ok": ok and failures == 0 and landed == valid,
                "cpu_ms": cpu,
                "wall_ms": wall,
                "failures": failures,
                "events": line.get("events"),
                "rejected": line.get("rejected"),
                "loaded": line.get("EventsLoaded"),
                "staged": line.get("EventsStaged"),
                "chunks": line.get("chunks"),
                "statements": line.get("statements"),
                "bytes": line.get("bytes"),
                "function_duration_ms": line.get("duration_ms"),
            }
            if not ok:
                run["error"] = payload
            elif line.get("error"):
                run["error"] = line["error"]
            if staging:
                run["staged_messages"], run["staged_message_bytes"] = empty_queue(sqs, staging)
            runs.append(run)
            progress(
                f"{mode} run {number}/{args.runs}: cpu {cpu} ms, wall {wall} ms, "
                f"{'ok' if run['ok'] else 'FAILED'} ({run['chunks']} chunks, {run['statements']} statements)"
            )
    finally:
        host.close()
        if staging:
            sqs.delete_queue(QueueUrl=staging)
    summary = host.summary()
    cpu = [r["cpu_ms"] for r in runs if r["cpu_ms"] is not None]
    wall = [r["wall_ms"] for r in runs]
    result.update(
        {
            "runs": runs,
            "cpu_ms": spread(cpu, mean=True),
            "wall_ms": spread(wall, mean=True),
            "peak_rss_kb": summary["peak_rss_kb"],
            "process_cpu_ms": summary["cpu_ms"],
            "cold_start_ms": summary["cold_start_ms"],
            "restarts": summary["restarts"],
            "all_ok": bool(runs) and all(r["ok"] for r in runs) and summary["restarts"] == 0,
        }
    )
    return result


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def span(values: dict[str, float | None]) -> str:
    return "n/a" if values["median"] is None else f"{values['median']} ({values['min']}-{values['max']})"


def markdown(result: dict[str, Any]) -> str:
    batch = result["batch"]
    lines = [
        f"Batch: {batch['messages']:,} messages of {batch['events_per_message']} event(s) "
        f"({batch['invalid']} invalid events), "
        f"bodies {batch['body_bytes'] / 1e6:.2f} MB (avg {batch['avg_body_bytes']} B), "
        f"SQS event {batch['event_bytes'] / 1e6:.2f} MB; {result['runs']} timed runs per mode after one warm-up; "
        f"binary `{result['binary']}`.",
        "",
    ]
    header = [
        "mode", "CPU ms median (min-max)", "wall ms median (min-max)", "peak RSS", "chunks / statements",
        "CPU target (<= 100 ms)", "RSS target (<= 64 MB)",
    ]  # fmt: skip
    rows = []
    for mode in result["modes"]:
        cpu, rss = mode["cpu_ms"], mode["peak_rss_kb"]
        last = mode["runs"][-1] if mode["runs"] else {}
        cpu_ok = None if mode["mode"] != "scheduled" or cpu["median"] is None else cpu["median"] <= CPU_TARGET_MS
        rss_ok = None if rss is None else rss <= RSS_TARGET_KB
        rss_text = "n/a" if rss is None else f"{rss / 1024:.1f} MB"
        if rss is not None and mode.get("warm_peak_rss_kb"):
            rss_text += f" ({mode['warm_peak_rss_kb'] / 1024:.1f} MB after warm-up)"
        rows.append(
            [
                mode["mode"], span(cpu), span(mode["wall_ms"]), rss_text,
                f"{last.get('chunks')} / {last.get('statements')}", verdict(cpu_ok), verdict(rss_ok),
            ]
        )  # fmt: skip
    lines.append(markdown_table(header, rows))
    return with_command(lines, result["command"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser("bench_ingest", __doc__, binaries={"binary": "ingest"}, memory=128)
    parser.add_argument("--runs", type=bounded(1), default=5, help="timed invocations per mode (5)")
    parser.add_argument("--messages", type=bounded(10), default=10_000, help="records in the batch (10000)")
    parser.add_argument(
        "--events-per-message", type=bounded(1, 1000), default=1, help="events a body, NDJSON if > 1 (1)"
    )
    parser.add_argument("--modes", default="scheduled,stream", help="comma-separated (scheduled,stream)")
    parser.add_argument("--timeout", type=float, default=120.0, help="function timeout per invocation, s (120)")
    args = parser.parse_args(argv)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.mode_list or any(m not in ("scheduled", "stream") for m in args.mode_list):
        parser.error("--modes: scheduled and/or stream")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stack = stack_or_exit(args)
    started = time.monotonic()
    templates, invalid = make_templates(args.messages, args.seed, args.events_per_message)
    events = args.messages * args.events_per_message
    sample_event = make_event(templates, "b0000000000")
    body_bytes = sum(len(t.replace(EVENT_ID_SLOT, "b0000000000-00000").encode()) for t in templates)
    batch = {
        "messages": args.messages,
        "events_per_message": args.events_per_message,
        "events": events,
        "invalid": invalid,
        "body_bytes": body_bytes,
        "avg_body_bytes": round(body_bytes / args.messages),
        "event_bytes": len(sample_event),
    }
    progress(
        f"batch: {args.messages} messages, {events} events, {invalid} invalid, bodies {body_bytes / 1e6:.2f} MB, "
        f"event {len(sample_event) / 1e6:.2f} MB"
    )
    modes = []
    for mode in args.mode_list:
        progress(f"{mode}: starting {args.binary}")
        modes.append(run_mode(mode, args, stack, templates, events - invalid))
    result = {
        "command": command_line(),
        "binary": shown_path(args.binary),
        "runs": args.runs,
        "batch": batch,
        "targets": {"scheduled_cpu_ms": CPU_TARGET_MS, "peak_rss_kb": RSS_TARGET_KB},
        "modes": modes,
        "total_s": round(time.monotonic() - started, 1),
    }
    print_result(result, markdown(result), args.json)
    return 0 if all(m["all_ok"] for m in modes) else 1


if __name__ == "__main__":
    sys.exit(main())
