"""The chaos test: real ingest and flush binaries against a local Snowflake that fails on purpose.

    .venv/bin/python -m tracklayer_local.chaos [--events 100000] [--seed 20261127] [--fault-rate 0.10]
        [--statement-bytes 250000] [--kill-probability 0.8] [--flush-budget 900] [--json FILE]
        [--events-sqs private|stack] [--keep-queues] [--load-method sql_api|streaming]

Needs a running stack (``python -m tracklayer_local.stack up``, found through ``--env-file``, default
``$STACK_DIR/stack.env``) and the debug binaries (``cargo build -p ingest -p flush``).

1. Generates ``--events`` realistic ecommerce events with the Rust generator (``sample-events``,
   testkit/src/sample.rs; ~600 bytes, unique event ids ``chaos<10 hex>-v<n>`` for valid and
   ``-b<n>`` for bad ones, 1% bad, cycling through its five defects: no merchant_id, value
   "12,50", currency "EURO", properties as an array, cut-off JSON). About 92% of the SQS messages
   hold one event, the rest a JSON array of 2-12 (an array never holds the cut-off JSON, which
   would reject the whole array).
2. Creates a fresh events queue with its DLQ (maxReceiveCount 5) and a fresh staging queue with
   its DLQ (maxReceiveCount 5, as template.yaml), and feeds the events through the real ``ingest``
   binary in scheduled mode with ``lambda_host.run_sqs(batch_size=1000, until_empty=True)``, in
   waves of one batch (the queue stays short, as when ingest keeps up with producers).
3. Arms chaos in the local Snowflake, for INSERT submissions only: probabilistic fault rules
   (seeded) that together hit ``--fault-rate`` of them: 429, 503 and 500 before execution; 503,
   500 and a dropped connection after execution (the rows landed, the answer is lost); and slow
   statements (1.2 s late with the async threshold lowered to 200 ms; the loader submits with
   ``async=true``, so every INSERT answers 202 and is polled, the late ones for longer).
   With ``--load-method streaming`` flush runs with ``TRACKLAYER_LOAD_METHOD=streaming`` on a new
   channel ``CHAOS_<run id>`` of each table's default pipe, the local Snowflake commits appends
   ``COMMIT_DELAY_MS`` (500 ms) after they arrive (its ``commit_delay_ms`` setting, restored
   afterwards), and the faults target the Snowpipe Streaming requests instead (the emulator's
   fault rules, faults.py and streaming.py, each target's rules adding up to ``--fault-rate``):
   appends get 429, 503 with a bare-string body, a dropped connection after the append was
   received (the rows will commit, the answer is lost), ERR_CHANNEL_MUST_BE_REOPENED (the channel
   is invalidated, its uncommitted rows discarded), a fence (the channel reopened as by another
   writer: the next append's continuation token is stale) and slow commits (2.5 s later); bulk
   channel status calls and token exchanges get 503s.
4. Runs the real ``flush`` binary again and again (``TRACKLAYER_VISIBILITY_SECONDS=10``,
   ``TRACKLAYER_FLUSH_MARGIN_SECONDS=1``). The first run, and then each run with probability
   ``--kill-probability`` (0.8) when allowed (always, until ``--min-kills``, 3, runs were), is
   SIGKILLed at a seeded random point: 70% of the kills 0-0.3 s after the run's 1st-10th INSERT
   was answered (streaming: append received; the first kill: 1st-3rd; seen in the emulator's
   request report; 3 s after the event at the latest), while chunks are inserted and not yet
   deleted; the others 0.05-2 s after the run got its event (maybe before any INSERT).
   Chunks a killed run inserted (or appended: they commit, unless the next run reopens the
   channel first) stay on the queue and come back to a later run, which loads them with
   statements that skip rows already in the table (its report counts them; with streaming these
   are the only SQL INSERTs). The other runs complete: each drains the queue (no ``max_seconds``:
   with a 1 s margin a bounded run leaves its last chunks unloaded at its deadline, and each such
   miss is one more receive). A run is killed only if it is over before chunks of earlier killed
   runs can be visible again, until a completed run that started after they came back has loaded
   them: no chunk is received by two killed runs, so the kills never push one to the DLQ (5
   receives). The loop ends when the staging queue is empty, in flight included, and the last
   (completed) run reported "loaded" or "empty" with nothing left; it gives up after
   ``--flush-budget`` seconds.
5. Disarms (clears the faults, restores the async threshold, the seed and the commit delay),
   reads the results back through snowflake-connector-python (COUNT(*), COUNT(DISTINCT EVENT_ID);
   the quarantine rows are matched by the run's prefix in RAW_TEXT and their SOURCE_MESSAGE_ID
   checked against the SQS message ids of the bad events), takes the fault counts from the
   emulator's request report (streaming: from the rules' use counts), prints a table, and exits 1
   if an event was lost, an event id was loaded twice, the quarantine does not hold exactly the
   bad events, a bad event was loaded, a DLQ is not empty, a queue was left with messages, or the
   flush loop did not finish (2: usage, no stack, no binaries). With streaming it also reports
   the appends, channel opens, bulk status calls and token exchanges (the request report's
   by_streaming) and the SQL INSERTs, and fails when the runs that reported sent INSERTs with
   more distinct requestIds than they counted redelivered chunks.

The events queue pair lives, by default (``--events-sqs private``), on a private moto server
(the stack's moto with the speed patches of ``moto_patches.py``, which keep its behaviour:
``python -m tracklayer_local.moto_patches --port PORT``) that this script starts on a free port:
moto pays, for every message sent or received, a few clock reads per message in the queue, which
makes 100,000 messages through the stack's moto take hours. The staging queue, the secret and
Snowflake are the stack's. ``--events-sqs stack`` puts the events queues on the stack's moto too
(fine for a few thousand events).

The fault rules, the async threshold and the commit delay are global to the local Snowflake: do not run other tests
against the same stack at the same time. Faults armed before are cleared.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracklayer_local.harness import (
    REPO,
    Control,
    SqsClient,
    add_stack_options,
    command_line,
    create_queue_pair,
    markdown_table,
    progress_to_stderr,
    query,
    queue_depth,
    read_env_file,
    sample_messages,
    snowflake_port,
    sqs_client,
)
from tracklayer_local.moto_patches import MotoVersionError, check_moto_version

MAX_RECEIVE_COUNT = 5
BATCH_SIZE = 1000
BAD_EVERY = 100  # 1%: the 100th, 200th, ... event
ARRAY_SHARE = 0.08  # share of messages holding a JSON array
ARRAY_SIZES = (2, 12)
ASYNC_THRESHOLD_MS = 200
SLOW_MS = 1200
VISIBILITY_S = 10
INGEST_TIMEOUT_S = 60
FLUSH_TIMEOUT_S = 120
KILL_DELAY_S = (0.05, 2.0)  # "timer" kills: this long after the run got its event
KILL_AFTER_LOADS = (1, 10)  # "loads" kills: after this many of the run's INSERTs were answered (appends received),
KILL_JITTER_S = (0.0, 0.3)  # plus this
KILL_LATEST_S = 3.0  # ... or at the latest this long after the run got its event
TIMER_KILLS = 0.3  # share of kills by timer (the first kill is a "loads" one)

LOAD_METHODS = ("sql_api", "streaming")
COMMIT_DELAY_MS = 500  # streaming: the local Snowflake's commit delay during the run (3000 by default)
SLOW_COMMIT_MS = 2500  # streaming: a slow commit is this much later still
STREAMING_503_BODY = "ERR_GENERAL_EXCEPTION_RETRY_REQUEST"  # the bare JSON string a live 503 carried

# What the faults target (fault match specs of the emulator, faults.py)
INSERTS = {"method": "POST", "path_prefix": "/api/v2/statements", "statement_contains": "INSERT INTO"}
APPENDS = {"method": "POST", "path_prefix": "/v2/streaming/data/"}
BULK_STATUS = {"method": "POST", "path_prefix": "/v2/streaming/databases/"}  # open is PUT, drop DELETE
TOKEN_EXCHANGE = {"method": "POST", "path_prefix": "/oauth/token"}

# By load method: (label, share of its target's faults, target, phase, action)
FAULT_MIXES: dict[str, list[tuple[str, float, dict[str, str], str, dict[str, Any]]]] = {
    "sql_api": [
        ("429 before execution", 0.20, INSERTS, "before_execute", {"status": 429}),
        ("503 before execution", 0.12, INSERTS, "before_execute", {"status": 503}),
        ("500 before execution", 0.08, INSERTS, "before_execute", {"status": 500}),
        ("503 after execution", 0.12, INSERTS, "after_execute", {"status": 503}),
        ("500 after execution", 0.08, INSERTS, "after_execute", {"status": 500}),
        ("dropped connection after execution", 0.20, INSERTS, "after_execute", {"drop_connection": True}),
        (f"slow ({SLOW_MS} ms: 202 + polling)", 0.20, INSERTS, "before_execute", {"delay_ms": SLOW_MS}),
    ],
    "streaming": [
        ("429 on append", 0.15, APPENDS, "before_execute", {"status": 429}),
        (
            "503 on append (bare-string body)",
            0.15,
            APPENDS,
            "before_execute",
            {"status": 503, "body": STREAMING_503_BODY},
        ),
        ("dropped connection after the append was received", 0.20, APPENDS, "after_execute", {"drop_connection": True}),
        (
            "ERR_CHANNEL_MUST_BE_REOPENED on append",
            0.15,
            APPENDS,
            "before_execute",
            {"channel_error": {"code": "ERR_CHANNEL_MUST_BE_REOPENED"}},
        ),
        ("fence on append (reopened by another writer)", 0.15, APPENDS, "before_execute", {"fence_channel": True}),
        (f"slow commit (+{SLOW_COMMIT_MS} ms)", 0.20, APPENDS, "before_execute", {"commit_delay_ms": SLOW_COMMIT_MS}),
        ("503 on bulk channel status", 1.0, BULK_STATUS, "before_execute", {"status": 503}),
        ("503 on the token exchange", 1.0, TOKEN_EXCHANGE, "before_execute", {"status": 503}),
    ],
}


progress = progress_to_stderr("chaos")


# ------------------------------------------------------------------------------------------------
# A private, faster moto for the events queue pair
# ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateSqs:
    """The patched moto in a child process (its own process group), stopped by its pid."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.popen: subprocess.Popen | None = None

    def __enter__(self) -> PrivateSqs:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:  # in our process group: a signal to the group stops it too
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "tracklayer_local.moto_patches", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"the private SQS server exited ({self.popen.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the private SQS server did not answer on {self.url}; see {self.log}")

    def __exit__(self, *_exc: object) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


# ------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------


@dataclass
class Message:
    body: str
    valid: int = 0
    bad: list[str] = field(default_factory=list)  # bad kind names
    message_id: str | None = None


@dataclass
class Plan:
    prefix: str
    messages: list[Message]
    events: int
    valid: int
    bad: int
    bad_by_kind: collections.Counter
    bad_by_reason: collections.Counter
    array_messages: int
    body_bytes: int


def generate(events: int, seed: int, prefix: str) -> Plan:
    """The run's events from the Rust generator (``harness.sample_messages``), 1% bad."""
    messages: list[Message] = []
    by_kind: collections.Counter = collections.Counter()
    by_reason: collections.Counter = collections.Counter()
    arrays = 0
    shape = {"array_share": ARRAY_SHARE, "array_sizes": ARRAY_SIZES}
    for sample in sample_messages(events, seed, bad_every=BAD_EVERY, id_prefix=prefix, **shape):
        kinds = [defect["kind"] for defect in sample.defects]
        messages.append(Message(sample.body, valid=sample.valid, bad=kinds))
        by_kind.update(kinds)
        by_reason.update(defect["reason"] for defect in sample.defects)
        arrays += sample.array
    bad = sum(by_kind.values())
    return Plan(
        prefix=prefix,
        messages=messages,
        events=events,
        valid=events - bad,
        bad=bad,
        bad_by_kind=by_kind,
        bad_by_reason=by_reason,
        array_messages=arrays,
        body_bytes=sum(len(m.body.encode()) for m in messages),
    )


# ------------------------------------------------------------------------------------------------
# Queues
# ------------------------------------------------------------------------------------------------


def create_pair(sqs: SqsClient, name: str, visibility: int) -> tuple[str, str]:
    """A queue and its DLQ (maxReceiveCount 5)."""
    return create_queue_pair(sqs, name, MAX_RECEIVE_COUNT, {"VisibilityTimeout": str(visibility)})


def depth(sqs: SqsClient, url: str) -> dict[str, int]:
    found = queue_depth(sqs, url)
    return {"visible": found.visible, "in_flight": found.in_flight, "delayed": found.delayed, "total": found.total}


def sender(sqs: SqsClient) -> SqsClient:
    """A client like `sqs` that never resends a SendMessageBatch by itself: a call the server
    answered with an error may have queued some of its messages, and an automatic retry would
    queue them twice (send_wave resends only the entries that did not succeed)."""
    import boto3
    from botocore.config import Config

    credentials = sqs._request_signer._credentials
    return boto3.client(
        "sqs",
        endpoint_url=sqs.meta.endpoint_url,
        region_name=sqs.meta.region_name,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=8),
    )


def send_wave(sqs: SqsClient, url: str, messages: list[Message], pool: ThreadPoolExecutor) -> None:
    """SendMessageBatch calls of 10, a few in flight; sets each message's MessageId."""

    def one(batch: list[Message]) -> None:
        pending = {str(i): m for i, m in enumerate(batch)}
        for _attempt in range(5):
            result = sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": k, "MessageBody": m.body} for k, m in pending.items()]
            )
            for ok in result.get("Successful", []):
                pending.pop(ok["Id"]).message_id = ok["MessageId"]
            if not pending:
                return
            time.sleep(0.2)
        raise RuntimeError(f"SendMessageBatch kept failing: {result.get('Failed')}")

    batches = [messages[i : i + 10] for i in range(0, len(messages), 10)]
    for future in [pool.submit(one, b) for b in batches]:
        future.result()


# ------------------------------------------------------------------------------------------------
# Fault rules for the local Snowflake
# ------------------------------------------------------------------------------------------------


def fault_rules(rate: float, load_method: str = "sql_api") -> list[tuple[str, dict[str, Any]]]:
    """The rules, first first: each one's probability is its share of `rate` among the requests
    of its target the rules before it let through, so each target's unconditional rates add up
    to `rate`."""
    rules: list[tuple[str, dict[str, Any]]] = []
    left: dict[str, float] = collections.defaultdict(lambda: 1.0)
    for label, share, target, phase, action in FAULT_MIXES[load_method]:
        key = json.dumps(target, sort_keys=True)
        p = min(1.0, rate * share / left[key])
        left[key] -= rate * share
        spec = {"match": dict(target), "count": 1_000_000, "phase": phase, "probability": p, "action": action}
        rules.append((label, spec))
    return rules


# ------------------------------------------------------------------------------------------------
# Running the binaries
# ------------------------------------------------------------------------------------------------


def ingest_all(args: argparse.Namespace, plan: Plan, env: dict[str, str], sqs: SqsClient, url: str) -> dict[str, Any]:
    from tracklayer_local.lambda_host import LambdaHost, run_sqs

    totals = collections.Counter()
    wave = BATCH_SIZE
    started = time.monotonic()
    log = args.log_dir / "chaos-ingest.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    send_s = 0.0
    send_sqs = sender(sqs)
    with (
        ThreadPoolExecutor(max_workers=4) as pool,
        LambdaHost(args.ingest_binary, "ingest", env=env, timeout=INGEST_TIMEOUT_S, memory_mb=256, log=log) as host,
    ):
        if not host.wait_ready():
            raise RuntimeError(f"ingest did not start: {host.init_error or host.log_tail()}")
        waves = [plan.messages[i : i + wave] for i in range(0, len(plan.messages), wave)]
        for number, messages in enumerate(waves, 1):
            t = time.monotonic()
            send_wave(send_sqs, url, messages, pool)
            send_s += time.monotonic() - t
            stats = run_sqs(
                host, url, batch_size=BATCH_SIZE, until_empty=True, wait=0, sqs=sqs, progress=lambda _l: None
            )
            for key in ("batches", "messages_received", "messages_deleted", "messages_failed", "invocation_errors"):
                totals[key] += stats[key]
            if stats.get("interrupted"):  # run_sqs took our Ctrl-C / SIGTERM: pass it on
                raise KeyboardInterrupt
            if stats["init_error"]:
                raise RuntimeError(f"ingest could not start: {stats['init_error']}")
            if number % max(1, len(waves) // 10) == 0 or number == len(waves):
                progress(
                    f"ingest: {number}/{len(waves)} waves, {totals['messages_deleted']:,} messages done, "
                    f"{totals['messages_failed']} failed, {time.monotonic() - started:.0f} s"
                )
        # failed messages come back at once (visibility 0): drain them too
        stats = run_sqs(host, url, batch_size=BATCH_SIZE, until_empty=True, wait=0, sqs=sqs, progress=lambda _l: None)
        for key in ("batches", "messages_received", "messages_deleted", "messages_failed", "invocation_errors"):
            totals[key] += stats[key]
        summary = host.summary()
    return {
        **totals,
        "send_s": round(send_s, 1),
        "seconds": round(time.monotonic() - started, 1),
        "restarts": summary["restarts"],
        "log": str(log),
    }


@dataclass
class FlushRun:
    number: int
    kill: tuple[str, float, float] | None  # ("timer", seconds, 0) | ("loads", count, jitter s)
    max_seconds: int | None
    killed_at_s: float | None = None
    killed: bool = False
    ok: bool = False
    status: str | None = None
    chunks_loaded: int = 0
    events_loaded: int = 0
    events_rejected: int = 0
    chunks_redelivered: int = 0  # chunks SQS had delivered before (loaded skipping rows already there)
    rows_already_loaded: int = 0  # rows of those that were already in the table
    appends: int = 0  # streaming: appends the run reports Snowflake accepted
    leftover: int | None = None
    error: str | None = None
    seconds: float = 0.0
    report_from: int = 0  # the emulator's request report length before and after the run
    report_to: int | None = None
    appends_from: int = 0  # streaming: the appends the emulator had counted before the run


def shifted(run: FlushRun, offset: int) -> FlushRun:
    return FlushRun(**{**run.__dict__, "report_from": run.report_from - offset,
                       "report_to": None if run.report_to is None else run.report_to - offset})  # fmt: skip


LOADS = {"sql_api": "INSERT answer(s)", "streaming": "append(s) received"}


def describe_kill(kill: tuple[str, float, float] | None, load_method: str) -> str:
    if kill is None:
        return "none"
    mode, value, jitter = kill
    if mode == "timer":
        return f"timer {value} s"
    return f"after {int(value)} {LOADS[load_method]} + {jitter} s, at {KILL_LATEST_S} s at the latest"


def report_marks(control: Control) -> tuple[int, int]:
    """The request report's length (SQL API submissions) and the appends it counted."""
    report = control.call("GET", "/requests")
    return len(report["statements"]), report["by_streaming"].get("append", 0)


def loads_answered(control: Control, run: FlushRun, load_method: str) -> int:
    """The run's loads so far: INSERTs answered (sql_api), or appends that reached the local
    Snowflake (streaming: the report counts requests by kind as they arrive, not their answers;
    an append is received, and soon committed, before its answer)."""
    report = control.call("GET", "/requests")
    if load_method == "streaming":
        return report["by_streaming"].get("append", 0) - run.appends_from
    statements = report["statements"][run.report_from :]
    return sum(
        1 for s in statements if s.get("kind") == "INSERT" and s.get("executed") and s.get("status") in (200, 202)
    )


def flush_once(host: Any, run: FlushRun, control: Control, load_method: str) -> FlushRun:
    """One invocation; SIGKILL the process at the run's kill point (if planned and still busy)."""
    host.start()
    if not host.wait_ready():
        run.error = f"flush did not start: {host.init_error or host.log_tail()}"
        return run
    pid = host.pid
    box: dict[str, Any] = {}
    event = {} if run.max_seconds is None else {"max_seconds": run.max_seconds}
    worker = threading.Thread(target=lambda: box.setdefault("result", host.invoke(event)), daemon=True)
    started = time.monotonic()
    worker.start()
    sent_kill = False
    if run.kill is not None:
        mode, value, jitter = run.kill
        if mode == "timer":
            worker.join(value)
        else:
            latest = started + KILL_LATEST_S
            while worker.is_alive() and time.monotonic() < latest:
                if loads_answered(control, run, load_method) >= value:
                    time.sleep(jitter)
                    break
                worker.join(0.05)
        if worker.is_alive() and pid is not None and host.pid == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                sent_kill = True
                run.killed_at_s = round(time.monotonic() - started, 3)
    worker.join(FLUSH_TIMEOUT_S + 30)
    run.seconds = round(time.monotonic() - started, 2)
    ok, payload = box.get("result", (False, {"errorType": "Chaos.NoAnswer"}))
    run.ok = ok
    if ok and isinstance(payload, dict):
        run.status = payload.get("status")
        run.chunks_loaded = int(payload.get("chunks_loaded") or 0)
        run.events_loaded = int(payload.get("events_loaded") or 0)
        run.events_rejected = int(payload.get("events_rejected") or 0)
        run.chunks_redelivered = int(payload.get("chunks_redelivered") or 0)
        run.rows_already_loaded = int(payload.get("rows_already_loaded") or 0)
        run.appends = int(payload.get("appends") or 0)
        run.leftover = payload.get("leftover_estimate")
        run.error = payload.get("error")
    else:
        kind = payload.get("errorType") if isinstance(payload, dict) else None
        run.killed = sent_kill and kind == "Runtime.ExitError"
        run.status = "killed" if run.killed else f"error ({kind})"
        if not run.killed:
            run.error = str(payload)[:300]
    return run


def flush_loop(
    args: argparse.Namespace,
    env: dict[str, str],
    sqs: SqsClient,
    staging: str,
    control: Control,
) -> tuple[list[FlushRun], bool]:
    from tracklayer_local.lambda_host import LambdaHost

    rng = random.Random(args.seed + 1)
    runs: list[FlushRun] = []
    log = args.log_dir / "chaos-flush.log"
    log.write_text("")
    give_up = time.monotonic() + args.flush_budget
    # Killed runs whose chunks have not been loaded since: (when the run got its event, when its
    # chunks are all visible again). Their chunks were received after the first and before the
    # kill, so they stay hidden until first + VISIBILITY_S and are back by kill + VISIBILITY_S.
    outstanding: list[tuple[float, float]] = []
    finished = False
    with LambdaHost(args.flush_binary, "flush", env=env, timeout=FLUSH_TIMEOUT_S, memory_mb=256, log=log) as host:
        while time.monotonic() < give_up:
            queue = depth(sqs, staging)
            last = runs[-1] if runs else None
            if (
                last is not None
                and not last.killed
                and last.status in ("loaded", "empty")
                and not last.leftover
                and queue["total"] == 0
            ):
                finished = True
                break
            if last is not None and queue["visible"] == 0 and queue["total"] > 0:
                # only chunks in flight (a killed run's, or failed ones): wait until they come back
                while time.monotonic() < give_up:
                    queue = depth(sqs, staging)
                    if queue["visible"] > 0 or queue["total"] == 0:
                        break
                    time.sleep(0.5)
                continue
            now = time.monotonic()
            # A run may be killed only if it is over (killed) before any outstanding killed chunk
            # can come back: no chunk is ever received by two killed runs.
            may_kill = queue["visible"] > 0 and all(
                now + KILL_LATEST_S + KILL_JITTER_S[1] + 1.0 < hidden_until for hidden_until, _ in outstanding
            )
            kills = sum(1 for r in runs if r.killed)
            kill = may_kill and (kills < args.min_kills or rng.random() < args.kill_probability)
            number = len(runs) + 1
            if kill:
                if runs and rng.random() < TIMER_KILLS:
                    plan = ("timer", round(rng.uniform(*KILL_DELAY_S), 3), 0.0)
                else:  # the first kill comes early in a batch of 10 chunks: some loaded, none deleted
                    after = rng.randint(*KILL_AFTER_LOADS) if runs else rng.randint(1, 3)
                    plan = ("loads", after, round(rng.uniform(*KILL_JITTER_S), 3))
                run = FlushRun(number, plan, None)
            else:
                run = FlushRun(number, None, None)
                if outstanding and now >= max(back for _, back in outstanding):
                    outstanding = []  # this run drains the queue: the killed chunks are loaded
            run.report_from, run.appends_from = report_marks(control)
            got_event = time.monotonic()
            flush_once(host, run, control, args.load_method)
            run.report_to = report_marks(control)[0]
            if run.killed:
                outstanding.append((got_event + VISIBILITY_S, time.monotonic() + VISIBILITY_S + 0.5))
            runs.append(run)
            progress(
                f"flush run {number}: {run.status}"
                + (f" {run.killed_at_s} s in ({describe_kill(run.kill, args.load_method)})" if run.killed else "")
                + (
                    f" (kill {describe_kill(run.kill, args.load_method)} planned, it finished first)"
                    if run.kill is not None and not run.killed
                    else ""
                )
                + (f" (max_seconds {run.max_seconds})" if run.max_seconds else "")
                + f", {run.chunks_loaded} chunks, {run.events_loaded:,} events + {run.events_rejected} rejected"
                + f", {run.seconds} s; queue {queue['visible']} visible, {queue['in_flight']} in flight before"
                + (f"; error: {run.error[:160]}" if run.error else "")
            )
    return runs, finished


# ------------------------------------------------------------------------------------------------
# Reading back
# ------------------------------------------------------------------------------------------------


def sql(port: int, statement: str) -> list[list[Any]]:
    return query(statement, port)["rows"]


def report_figures(statements: list[dict[str, Any]], runs: list[FlushRun]) -> dict[str, Any]:
    """Fault and retry figures from the emulator's request report (the flush loop's part)."""
    inserts = [(i, s) for i, s in enumerate(statements) if s.get("kind") == "INSERT"]
    faults = collections.Counter(s["fault"] for _, s in inserts if s.get("fault"))
    # INSERTs that ran while a killed run was alive (entries are recorded when answered, so each
    # run's entries lie between its two report marks): the statement ran and its rows landed,
    # even if the answer was a 202 the dead run never polled. Their chunks come back to a later
    # run, which loads them with statements that skip rows already there (the runs' reports count
    # those rows); an INSERT re-sent with its requestId and retry=true is answered from the store.
    killed_windows = [(r.report_from, r.report_to) for r in runs if r.killed and r.report_to is not None]
    inserted_by_killed: dict[str, int] = {}
    for index, entry in inserts:
        ran = entry.get("executed") and entry.get("status") not in (None, 400, 401, 422)
        if ran and any(a <= index < b for a, b in killed_windows):
            inserted_by_killed.setdefault(entry["request_id"], index)
    resent = {
        entry["request_id"]
        for index, entry in inserts
        if entry["request_id"] in inserted_by_killed
        and index > inserted_by_killed[entry["request_id"]]
        and entry.get("retry")
        and not entry.get("executed")
        and entry.get("status") in (200, 202)
    }
    # In how many runs a chunk was submitted: a lower bound of its receives (the DLQ takes it at 5)
    windows = [(r.report_from, r.report_to) for r in runs if r.report_to is not None]
    runs_of: dict[str, set[int]] = collections.defaultdict(set)
    for index, entry in inserts:
        for number, (a, b) in enumerate(windows):
            if a <= index < b:
                runs_of[entry["request_id"]].add(number)
    return {
        "insert_submissions": len(inserts),
        "most_runs_submitting_one_chunk": max((len(v) for v in runs_of.values()), default=0),
        "chunks_submitted": len({s["request_id"] for _, s in inserts}),
        "faults": sum(faults.values()),
        "faults_by_kind": dict(faults),
        "async_202": sum(1 for _, s in inserts if s.get("status") == 202),
        "retry_submissions": sum(1 for _, s in inserts if s.get("retry")),
        "answered_from_store": sum(
            1 for _, s in inserts if s.get("retry") and not s.get("executed") and s.get("status") in (200, 202)
        ),
        "executions": sum(1 for _, s in inserts if s.get("executed")),
        "statements_landed_by_killed_runs": len(inserted_by_killed),
        "statements_resent_after_kill": len(resent),
        "chunks_redelivered": sum(r.chunks_redelivered for r in runs),
        "rows_already_loaded": sum(r.rows_already_loaded for r in runs),
    }


def streaming_figures(
    counted: dict[str, int], statements: list[dict[str, Any]], runs: list[FlushRun], channels: list[dict[str, Any]]
) -> dict[str, Any]:
    """The streaming requests of the flush loop (`counted`: the report's by_streaming, loop only)
    and the SQL INSERTs beside them. Flush streams a chunk's first delivery through its channel
    and loads a redelivered one (SQS delivered it before: a killed run may have streamed it)
    through the SQL API's INSERT ... WHERE NOT EXISTS, so a run that reported (`ok`) sent INSERTs
    (distinct requestIds, retries reuse theirs) for at most as many statements as it counted
    redelivered chunks; killed runs report nothing, so their INSERTs are only counted.
    `channels` are the run's channels (emulator's /streaming/channels)."""
    reported = [(r.report_from, r.report_to) for r in runs if r.ok and r.report_to is not None]
    inserts = [(i, s) for i, s in enumerate(statements) if s.get("kind") == "INSERT"]
    by_reporting = {s["request_id"] for i, s in inserts if any(a <= i < b for a, b in reported)}
    return {
        "appends_received": counted.get("append", 0),
        "appends_accepted": sum(r.appends for r in runs),
        "channel_opens": counted.get("open", 0),
        "status_calls": counted.get("status", 0),
        "token_exchanges": counted.get("token", 0),
        "hostname_lookups": counted.get("hostname", 0),
        "insert_request_ids_of_reporting_runs": len(by_reporting),
        "chunks_redelivered_of_reporting_runs": sum(r.chunks_redelivered for r in runs if r.ok),
        "pipe_rows_inserted": sum(int(c.get("rows_inserted") or 0) for c in channels),
        "pipe_rows_refused": sum(int(c.get("rows_errors") or 0) for c in channels),
        "channels_pending_batches": sum(int(c.get("pending_batches") or 0) for c in channels),
    }


def rule_faults(rules: list[tuple[str, dict[str, Any], int]], taken: dict[int, int]) -> dict[str, Any]:
    """Faults injected, by action kind, from the rules' use counts (the report has an entry, with
    its fault, for SQL API submissions only)."""
    by_kind: collections.Counter = collections.Counter()
    for _label, spec, rule_id in rules:
        by_kind[next(k for k in spec["action"] if k not in ("body", "headers"))] += taken.get(rule_id, 0)
    return {"faults": sum(by_kind.values()), "faults_by_kind": {k: v for k, v in by_kind.items() if v}}


def chaos_settings(settings: dict[str, Any], load_method: str, seed: int | None) -> dict[str, Any]:
    """The local Snowflake's settings for the run (`settings` as GET /settings answers them)."""
    update: dict[str, Any] = {"async_threshold_ms": ASYNC_THRESHOLD_MS, "seed": seed}
    if load_method == "streaming":
        update["streaming"] = {"commit_delay_ms": COMMIT_DELAY_MS}
    return update


def disarm(control: Control, before: dict[str, Any]) -> None:
    """Clears the faults and restores the settings chaos_settings changed."""
    control.call("DELETE", "/faults")
    restore = {"async_threshold_ms": before["async_threshold_ms"], "seed": before.get("seed")}
    if "streaming" in before:
        restore["streaming"] = {"commit_delay_ms": before["streaming"]["commit_delay_ms"]}
    control.call("POST", "/settings", restore)


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events to send (100000)")
    parser.add_argument("--seed", type=int, default=20261127, help="seed of events, faults and kills")
    parser.add_argument("--fault-rate", type=float, default=0.10, help="share of INSERT submissions that fail (0.10)")
    parser.add_argument(
        "--statement-bytes", type=int, default=250_000,
        help="TRACKLAYER_MAX_STATEMENT_BYTES of both binaries (250000; production: 1000000): smaller "
        "statements make more chunks, so more faults and more chunks in flight when a flush is killed",
    )  # fmt: skip
    parser.add_argument(
        "--load-method", choices=LOAD_METHODS, default="sql_api",
        help="flush's TRACKLAYER_LOAD_METHOD (sql_api: INSERTs; streaming: Snowpipe Streaming appends, "
        "redeliveries through INSERTs); the faults target its requests",
    )  # fmt: skip
    parser.add_argument("--kill-probability", type=float, default=0.8, help="kill a run when allowed (0.8)")
    parser.add_argument(
        "--min-kills", type=int, default=3, help="kill every run allowed to be killed until this many were (3)"
    )
    parser.add_argument("--flush-budget", type=float, default=900, help="give the flush loop up after N s (900)")
    parser.add_argument(
        "--events-sqs",
        choices=("private", "stack"),
        default="private",
        help="where the events queue pair lives (private: a patched moto this script starts)",
    )
    parser.add_argument("--ingest-binary", type=Path, default=REPO / "target" / "debug" / "ingest")
    parser.add_argument("--flush-binary", type=Path, default=REPO / "target" / "debug" / "flush")
    add_stack_options(parser, "also write the figures here")
    parser.add_argument("--keep-queues", action="store_true", help="do not delete the run's queues")
    args = parser.parse_args(argv)
    if args.events < 100 or not 0 < args.fault_rate < 1 or not 0 <= args.kill_probability <= 1:
        parser.error("--events >= 100, 0 < --fault-rate < 1, 0 <= --kill-probability <= 1")
    if args.statement_bytes < 10_000:
        parser.error("--statement-bytes >= 10000 (the binaries' minimum)")
    return args


def table(rows: list[tuple[str, Any, str]]) -> str:
    def shown(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)

    return markdown_table(["figure", "value", "check"], [(name, shown(value), check) for name, value, check in rows])


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM cleans up like Ctrl-C
    for binary in (args.ingest_binary, args.flush_binary):
        if not binary.is_file():
            progress(f"{binary} is not built (cargo build -p ingest -p flush)")
            return 2
    if not args.env_file.is_file():
        progress(f"{args.env_file} missing: start the stack (python -m tracklayer_local.stack up)")
        return 2
    stack = read_env_file(str(args.env_file))
    control = Control(stack["SNOWFLAKE_EMULATOR_URL"])
    try:
        control.call("GET", "/health")
    except OSError as e:
        progress(f"the local Snowflake does not answer at {stack['SNOWFLAKE_EMULATOR_URL']}: {e}")
        return 2
    port = snowflake_port(stack)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:10]
    prefix = f"chaos{run_id}"
    channel = f"CHAOS_{run_id.upper()}"  # a new channel on each pipe (streaming), offsets from 1

    plan = generate(args.events, args.seed, prefix)
    progress(
        f"{plan.events:,} events ({plan.bad} bad) in {len(plan.messages):,} messages "
        f"({plan.array_messages:,} arrays), {plan.body_bytes / 1e6:.1f} MB, prefix {prefix}; "
        f"{time.monotonic() - started:.1f} s"
    )

    stack_sqs = sqs_client(stack)
    figures: dict[str, Any] = {
        "command": command_line(argv, "tracklayer_local.chaos"),
        "prefix": prefix,
        "seed": args.seed,
        "load_method": args.load_method,
    }
    if args.events_sqs == "private":
        try:
            check_moto_version()
        except MotoVersionError as e:
            progress(str(e))
            return 2
    private = PrivateSqs(args.log_dir / "chaos-sqs.log") if args.events_sqs == "private" else None
    settings_before = control.call("GET", "/settings")
    queues: list[tuple[Any, str]] = []
    statements_from = 0
    streamed_from: dict[str, int] = {}
    armed = False
    try:
        if private is not None:
            private.__enter__()
            events_sqs = sqs_client({**stack, "AWS_ENDPOINT_URL": private.url})
        else:
            events_sqs = stack_sqs
        events_url, events_dlq = create_pair(events_sqs, f"chaos-{run_id}-events", 60)
        staging_url, staging_dlq = create_pair(stack_sqs, f"chaos-{run_id}-staging", 60)
        queues = [
            (events_sqs, events_url),
            (events_sqs, events_dlq),
            (stack_sqs, staging_url),
            (stack_sqs, staging_dlq),
        ]
        common = {
            **stack,
            "TRACKLAYER_STAGING_QUEUE_URL": staging_url,
            "TRACKLAYER_MAX_STATEMENT_BYTES": str(args.statement_bytes),
            "TRACKLAYER_MAX_CONCURRENT_STATEMENTS": "4",
        }

        # 1-2: events through ingest (scheduled mode: Snowflake is not contacted)
        ingest = ingest_all(args, plan, {**common, "TRACKLAYER_LOAD_MODE": "scheduled"}, events_sqs, events_url)
        staged = depth(stack_sqs, staging_url)["total"]
        progress(f"ingest done in {ingest['seconds']} s: {staged} chunks staged")

        # 3: chaos on
        control.call("DELETE", "/faults")
        control.call("POST", "/settings", chaos_settings(settings_before, args.load_method, args.seed))
        armed = True
        rules = []
        for label, spec in fault_rules(args.fault_rate, args.load_method):
            rules.append((label, spec, control.call("POST", "/faults", spec)["id"]))
        marks = control.call("GET", "/requests")
        statements_from, streamed_from = len(marks["statements"]), marks["by_streaming"]

        # 4: flush, killed now and then
        flush_started = time.monotonic()
        flush_env = {
            **common,
            "TRACKLAYER_SECRET_ID": stack.get("TRACKLAYER_SECRET_ID", "tracklayer/snowflake"),
            "TRACKLAYER_VISIBILITY_SECONDS": str(VISIBILITY_S),
            "TRACKLAYER_FLUSH_MARGIN_SECONDS": "1",
            "TRACKLAYER_FLUSH_RECEIVERS": "2",
            "TRACKLAYER_LOAD_METHOD": args.load_method,
            "TRACKLAYER_STREAMING_CHANNEL": channel,
        }
        runs, finished = flush_loop(args, flush_env, stack_sqs, staging_url, control)
        flush_s = time.monotonic() - flush_started

        # 5: chaos off, then read back
        taken = {f["id"]: f["taken"] for f in control.call("GET", "/faults")}
        requests = control.call("GET", "/requests")
        report = requests["statements"]
        streamed = {k: v - streamed_from.get(k, 0) for k, v in requests["by_streaming"].items()}
        channels = [c for c in control.call("GET", "/streaming/channels") if c.get("channel_name") == channel]
        disarm(control, settings_before)
        armed = False

        loaded_rows, loaded_distinct = (
            int(v)
            for v in sql(
                port,
                f"SELECT COUNT(*) AS n, COUNT(DISTINCT EVENT_ID) AS d FROM RAW_EVENTS "
                f"WHERE EVENT_ID LIKE '{prefix}-v%'",
            )[0]
        )
        bad_loaded = int(sql(port, f"SELECT COUNT(*) AS n FROM RAW_EVENTS WHERE EVENT_ID LIKE '{prefix}-b%'")[0][0])
        quarantine = sql(
            port,
            f"SELECT REASON, SOURCE_MESSAGE_ID, COUNT(*) AS n, COUNT(DISTINCT RAW_TEXT) AS d "
            f"FROM RAW_EVENTS_REJECTED WHERE RAW_TEXT LIKE '%{prefix}-%' GROUP BY REASON, SOURCE_MESSAGE_ID",
        )
        quarantined = sum(int(r[2]) for r in quarantine)
        quarantined_distinct = sum(int(r[3]) for r in quarantine)
        by_reason = collections.Counter()
        for reason, _message_id, n, _d in quarantine:
            by_reason[reason] += int(n)
        bad_ids = collections.Counter({m.message_id: len(m.bad) for m in plan.messages if m.bad})
        seen_ids = collections.Counter()
        for _reason, message_id, n, _d in quarantine:
            seen_ids[message_id] += int(n)
        wrong_message_ids = sum(n for mid, n in seen_ids.items() if mid not in bad_ids)
        per_message_mismatch = sum(1 for mid, n in bad_ids.items() if seen_ids.get(mid, 0) != n)

        left = {
            "events_queue": depth(events_sqs, events_url)["total"],
            "events_dlq": depth(events_sqs, events_dlq)["total"],
            "staging_queue": depth(stack_sqs, staging_url)["total"],
            "staging_dlq": depth(stack_sqs, staging_dlq)["total"],
        }
    finally:
        if armed:
            with contextlib.suppress(Exception):
                disarm(control, settings_before)
        if not args.keep_queues:
            for client, url in queues:
                with contextlib.suppress(Exception):
                    client.delete_queue(QueueUrl=url)
        if private is not None:
            private.__exit__()

    loop_runs = [shifted(r, statements_from) for r in runs]
    chaos = report_figures(report[statements_from:], loop_runs)
    streaming = args.load_method == "streaming"
    if streaming:
        chaos |= rule_faults(rules, taken)
        chaos |= streaming_figures(streamed, report[statements_from:], loop_runs, channels)
    lost = plan.valid - loaded_distinct
    duplicates = loaded_rows - loaded_distinct
    kills = sum(1 for r in runs if r.killed)
    statuses = collections.Counter(r.status for r in runs)
    figures.update(
        {
            "events_sent": plan.events,
            "messages_sent": len(plan.messages),
            "array_messages": plan.array_messages,
            "valid_sent": plan.valid,
            "bad_sent": plan.bad,
            "bad_sent_by_kind": dict(plan.bad_by_kind),
            "bad_sent_by_reason": dict(plan.bad_by_reason),
            "loaded_distinct": loaded_distinct,
            "loaded_rows": loaded_rows,
            "bad_loaded": bad_loaded,
            "quarantined": quarantined,
            "quarantined_distinct": quarantined_distinct,
            "quarantined_by_reason": dict(by_reason),
            "quarantine_wrong_message_ids": wrong_message_ids,
            "quarantine_messages_mismatched": per_message_mismatch,
            "lost": lost,
            "duplicates": duplicates,
            "left": left,
            "ingest": ingest,
            "chunks_staged": staged,
            "fault_rate": args.fault_rate,
            "fault_rules": {label: taken.get(rule_id, 0) for label, _spec, rule_id in rules},
            **chaos,
            "flush_runs": len(runs),
            "flush_kills": kills,
            "flush_statuses": dict(statuses),
            "flush_runs_detail": [r.__dict__ for r in runs],
            "flush_finished": finished,
            "flush_s": round(flush_s, 1),
            "total_s": round(time.monotonic() - started, 1),
            "events_sqs": args.events_sqs,
            "statement_bytes": args.statement_bytes,
        }
    )
    checks = {
        "no event lost": lost == 0,
        "no duplicate": duplicates == 0,
        "quarantine == bad sent": quarantined == plan.bad
        and quarantined_distinct == plan.bad
        and wrong_message_ids == 0
        and per_message_mismatch == 0
        and dict(by_reason) == dict(plan.bad_by_reason),
        "no bad event loaded": bad_loaded == 0,
        "DLQs empty": left["events_dlq"] == 0 and left["staging_dlq"] == 0,
        "queues drained": left["events_queue"] == 0 and left["staging_queue"] == 0,
        "flush loop finished": finished,
    }
    if streaming:
        checks["INSERTs only for redeliveries"] = (
            chaos["insert_request_ids_of_reporting_runs"] <= chaos["chunks_redelivered_of_reporting_runs"]
        )
    figures["checks"] = checks
    figures["passed"] = all(checks.values())

    def mark(ok: bool) -> str:
        return "ok" if ok else "**FAIL**"

    rows = [
        (
            "events sent (messages, of which arrays)",
            f"{plan.events:,} ({len(plan.messages):,}, {plan.array_messages:,})",
            "",
        ),
        ("valid events sent", plan.valid, ""),
        ("bad events sent", plan.bad, ", ".join(f"{k} {v}" for k, v in sorted(plan.bad_by_reason.items()))),
        ("distinct valid event_ids in RAW_EVENTS", loaded_distinct, ""),
        ("rows in RAW_EVENTS for the run", loaded_rows, ""),
        (
            "rows quarantined (RAW_EVENTS_REJECTED)",
            quarantined,
            mark(checks["quarantine == bad sent"]) + " = bad sent, by reason and SQS message id",
        ),
        ("events lost (valid sent - distinct loaded)", lost, mark(checks["no event lost"])),
        ("duplicate event_ids (rows - distinct)", duplicates, mark(checks["no duplicate"])),
        ("bad events in RAW_EVENTS", bad_loaded, mark(checks["no bad event loaded"])),
        (
            "messages left in the events DLQ / staging DLQ",
            f"{left['events_dlq']} / {left['staging_dlq']}",
            mark(checks["DLQs empty"]),
        ),
        (
            "messages left in the events queue / staging queue",
            f"{left['events_queue']} / {left['staging_queue']}",
            mark(checks["queues drained"]),
        ),
        ("ingest invocations (messages failed)", f"{ingest['batches']} ({ingest['messages_failed']})", ""),
        ("chunks staged", staged, ""),
        (
            "INSERT submissions (distinct requestIds)",
            f"{chaos['insert_submissions']:,} ({chaos['chunks_submitted']:,})",
            "",
        ),
        (
            "faults injected (statements with a fault)",
            chaos["faults"],
            ", ".join(f"{k} {v}" for k, v in sorted(chaos["faults_by_kind"].items())),
        ),
        (
            "faults injected, by rule",
            "",
            "; ".join(f"{label}: {taken.get(rid, 0)}" for label, _spec, rid in rules),
        ),
        ("answers 202 (async submissions), polled", chaos["async_202"], ""),
        (
            "retry=true submissions / answered from the store",
            f"{chaos['retry_submissions']} / {chaos['answered_from_store']}",
            "",
        ),
        ("INSERTs that landed while a killed flush ran", chaos["statements_landed_by_killed_runs"], ""),
        (
            "chunks delivered again / their rows found already loaded, not inserted again",
            f"{chaos['chunks_redelivered']} / {chaos['rows_already_loaded']:,}",
            "",
        ),
        ("most flush runs that sent one statement (requestId)", chaos["most_runs_submitting_one_chunk"], ""),
        (
            "flush runs / killed",
            f"{len(runs)} / {kills}",
            ", ".join(f"{k} {v}" for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))),
        ),
        (
            "time: total / ingest / flush loop",
            f"{figures['total_s']} s / {ingest['seconds']} s / {figures['flush_s']} s",
            mark(finished),
        ),
    ]
    if streaming:
        at = next(i for i, row in enumerate(rows) if row[0].startswith("INSERT submissions"))
        rows[at:at] = [
            (
                "appends received (local Snowflake) / accepted (flush reports)",
                f"{chaos['appends_received']:,} / {chaos['appends_accepted']:,}",
                f"commit delay {COMMIT_DELAY_MS} ms",
            ),
            ("channel opens / bulk status calls", f"{chaos['channel_opens']:,} / {chaos['status_calls']:,}", ""),
            ("token exchanges / hostname lookups", f"{chaos['token_exchanges']} / {chaos['hostname_lookups']}", ""),
            (
                "rows the pipes committed / refused",
                f"{chaos['pipe_rows_inserted']:,} / {chaos['pipe_rows_refused']}",
                f"channel {channel}",
            ),
            (
                "INSERT requestIds of runs that reported / chunks they counted redelivered",
                f"{chaos['insert_request_ids_of_reporting_runs']} / {chaos['chunks_redelivered_of_reporting_runs']}",
                mark(checks["INSERTs only for redeliveries"]) + " (<=: redeliveries load by INSERT)",
            ),
        ]
    print(table(rows))
    print()
    failed = ", ".join(k for k, v in checks.items() if not v)
    if figures["passed"]:
        print("PASSED: every check passed")
    else:
        print(f"FAILED: {failed} failed")
    print(f"Command: `{figures['command']}`")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
