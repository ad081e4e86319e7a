"""infra/local/lambda_host.py: the Runtime API, the SQS event source mapping, and the real ingest binary.

The host is tested with a small fake runtime client (a Python script polling the Runtime API like
Rust's lambda_runtime does), so these tests do not depend on our functions' behaviour; the last
test runs the real `target/debug/ingest` in scheduled mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sflocal import fake_received, staged_chunk
from tracklayer_local.harness import REPO, SqsClient, create_queue_pair, sqs_client
from tracklayer_local.harness import drain as drain_visible
from tracklayer_local.lambda_host import LambdaHost, batch_failures, run_sqs, sqs_event

HostFactory = Callable[..., LambdaHost]  # host_for(mode, **options): a started host over the fake runtime


LAMBDA_HOST = ["-m", "tracklayer_local.lambda_host"]  # the CLI, run as a module
INGEST = REPO / "target" / "debug" / "ingest"
MAX_RECEIVE_COUNT = 3

FAKE_RUNTIME = textwrap.dedent(
    """\
    #!{python}
    # A Lambda custom runtime in miniature; FAKE_MODE picks its behaviour.
    import json, os, sys, time, urllib.request

    API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
    MODE = os.environ.get("FAKE_MODE", "echo")
    RECORD = os.environ.get("FAKE_RECORD")
    MARKER = os.environ.get("FAKE_MARKER", "")


    def post(path, payload):
        request = urllib.request.Request(
            API + path, data=json.dumps(payload).encode(), method="POST",
            headers={{"Content-Type": "application/json"}},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status


    def first_time():
        if os.path.exists(MARKER):
            return False
        open(MARKER, "w").close()
        return True


    print("fake runtime starting in mode", MODE, flush=True)
    if MODE == "exit-at-start":
        print("fake: cannot start: FAKE_SETTING is not set", file=sys.stderr, flush=True)
        sys.exit(3)
    if MODE == "init-error":
        print("fake: posting an init error", file=sys.stderr, flush=True)
        post("/init/error", {{"errorType": "Fake.ConfigError", "errorMessage": "FAKE_SETTING is not set"}})
        time.sleep(60)  # the host must stop us
    if MODE == "slow-init":
        time.sleep(60)

    while True:
        with urllib.request.urlopen(API + "/invocation/next") as response:
            event = json.loads(response.read())
            headers = {{k.lower(): v for k, v in response.headers.items()}}
        request_id = headers["lambda-runtime-aws-request-id"]
        env = {{k: v for k, v in os.environ.items() if k.startswith(("AWS_LAMBDA_", "AWS_REGION", "FAKE_"))}}
        seen = {{"event": event, "headers": headers, "env": env, "pid": os.getpid(), "now_ms": int(time.time() * 1000)}}
        seen["got_monotonic"] = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the host's
        if RECORD:
            with open(RECORD, "a") as record:
                record.write(json.dumps(seen) + "\\n")
        if MODE == "echo":
            seen["answering_monotonic"] = time.monotonic()
            post(f"/invocation/{{request_id}}/response", seen)
        elif MODE == "error":
            error = {{"errorType": "Fake.Failure", "errorMessage": "failed on purpose"}}
            post(f"/invocation/{{request_id}}/error", error)
        elif MODE == "die-once":
            if first_time():
                print("fake: dying now", file=sys.stderr, flush=True)
                os._exit(7)
            post(f"/invocation/{{request_id}}/response", seen)
        elif MODE == "sleep-once":
            if first_time():
                time.sleep(60)
            post(f"/invocation/{{request_id}}/response", seen)
        elif MODE == "sqs":
            failed = [r["messageId"] for r in event["Records"] if r["body"].startswith("fail")]
            failures = [{{"itemIdentifier": i}} for i in failed]
            post(f"/invocation/{{request_id}}/response", {{"batchItemFailures": failures}})
        elif MODE == "sqs-bad-id":
            failures = [{{"itemIdentifier": "not-in-batch"}}]
            post(f"/invocation/{{request_id}}/response", {{"batchItemFailures": failures}})
    """
)


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    path = tmp_path / "fake-runtime"
    path.write_text(FAKE_RUNTIME.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def host_for(fake: Path, tmp_path: Path, stack_env: dict[str, str]) -> Iterator[HostFactory]:
    """host_for(mode, **options) -> a started LambdaHost over the fake runtime; all closed after the test."""
    hosts: list[LambdaHost] = []

    def make(mode: str, **options: Any) -> LambdaHost:
        env = {
            **stack_env,
            "FAKE_MODE": mode,
            "FAKE_RECORD": str(tmp_path / "seen.jsonl"),
            "FAKE_MARKER": str(tmp_path / "marker"),
            **options.pop("env", {}),
        }
        options.setdefault("timeout", 10)
        options.setdefault("log", tmp_path / "fake.log")
        host = LambdaHost(fake, options.pop("name", "fake"), env=env, **options)
        hosts.append(host)
        host.start()
        return host

    yield make
    for host in hosts:
        host.close()


def seen(tmp_path: Path) -> list[dict]:
    """What the fake runtime received, one entry per invocation."""
    path = tmp_path / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def sqs(stack_env: dict[str, str]) -> SqsClient:
    return sqs_client(stack_env)


@pytest.fixture
def queues(sqs: SqsClient) -> Iterator[tuple[str, str, str]]:
    """A fresh queue and its DLQ (redrive after MAX_RECEIVE_COUNT receives); deleted after the test."""
    name = f"pytest-lambda-host-{uuid.uuid4().hex[:10]}"
    main, dlq = create_queue_pair(sqs, name, MAX_RECEIVE_COUNT, {"VisibilityTimeout": "30"})
    yield name, main, dlq
    for url in (main, dlq):
        sqs.delete_queue(QueueUrl=url)


def send(sqs: SqsClient, queue_url: str, bodies: list[str]) -> dict[str, str]:
    """Sends the bodies in order; returns body -> message id."""
    return {body: sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"] for body in bodies}


def drain(sqs: SqsClient, queue_url: str) -> list[dict]:
    """Receives (and deletes) everything visible now, with the system attributes."""
    return drain_visible(sqs, queue_url, MessageSystemAttributeNames=["All"])


# ------------------------------------------------------------------------------------------------
# Runtime API
# ------------------------------------------------------------------------------------------------


def test_event_round_trip_and_headers(host_for: HostFactory, tmp_path: Path) -> None:
    host = host_for("echo", timeout=12, memory_mb=256, name="echo-fn")
    event = {"hello": "wörld", "n": [1, 2.5, None], "nested": {"a": True}}
    before_ms = int(time.time() * 1000)
    results, invoke_ms = [], []
    for _ in range(2):
        started = time.monotonic()
        results.append(host.invoke(event))
        invoke_ms.append((time.monotonic() - started) * 1000)
    after_ms = int(time.time() * 1000)

    assert [ok for ok, _ in results] == [True, True]
    first, second = (payload for _, payload in results)
    assert first["event"] == event
    headers = first["headers"]
    request_id = headers["lambda-runtime-aws-request-id"]
    assert uuid.UUID(request_id)
    assert second["headers"]["lambda-runtime-aws-request-id"] != request_id
    deadline = int(headers["lambda-runtime-deadline-ms"])
    assert deadline > first["now_ms"]
    assert before_ms + 12_000 <= deadline <= after_ms + 12_000
    assert headers["lambda-runtime-invoked-function-arn"] == "arn:aws:lambda:us-east-1:123456789012:function:echo-fn"
    assert headers["lambda-runtime-trace-id"].startswith("Root=1-")
    assert [entry["headers"]["lambda-runtime-aws-request-id"] for entry in seen(tmp_path)] == [
        request_id,
        second["headers"]["lambda-runtime-aws-request-id"],
    ]
    env = first["env"]
    assert env["AWS_LAMBDA_RUNTIME_API"] == f"127.0.0.1:{host.port}"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "echo-fn"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/echo-fn"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_REGION"] == "us-east-1"
    assert env["FAKE_MODE"] == "echo"  # the caller's variables pass through

    assert first["pid"] == second["pid"] == host.pid  # one warm process
    summary = host.summary()
    assert summary["cold_start_ms"] > 0 and len(summary["cold_starts_ms"]) == 1
    assert summary["restarts"] == 0 and summary["invocations"] == 2
    # Each duration (rounded to 0.1 ms) covers the function's work on the event, as its own clock
    # saw it, and lies within the invoke() call that waited for it.
    work_ms = [(p["answering_monotonic"] - p["got_monotonic"]) * 1000 for _, p in results]
    assert len(summary["durations_ms"]) == 2
    for duration, work, waited in zip(summary["durations_ms"], work_ms, invoke_ms, strict=True):
        assert work - 0.05 <= duration <= waited + 0.05, (duration, work, waited)
    pid = host.pid
    host.close()
    assert host.summary()["peak_rss_kb"] > 1000
    assert not alive(pid)
    assert "fake runtime starting in mode echo" in (tmp_path / "fake.log").read_text()


def test_function_error_is_returned_and_the_process_stays_warm(host_for: HostFactory) -> None:
    host = host_for("error")
    pid = host.pid
    for _ in range(2):
        ok, payload = host.invoke({"x": 1})
        assert not ok
        assert payload == {"errorType": "Fake.Failure", "errorMessage": "failed on purpose"}
    assert host.pid == pid and host.summary()["restarts"] == 0


def test_init_error_stops_the_host(host_for: HostFactory) -> None:
    host = host_for("init-error", timeout=30)
    pid = host.pid
    started = time.monotonic()
    ok, payload = host.invoke({})
    assert time.monotonic() - started < 5
    assert not ok
    assert payload["errorType"] == "Fake.ConfigError"
    assert "FAKE_SETTING is not set" in payload["errorMessage"]
    assert "fake: posting an init error" in payload["errorMessage"]  # the log tail
    assert host.init_error == payload
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the host must stop a function that failed to initialise"
    started = time.monotonic()
    assert host.invoke({}) == (False, payload)  # stopped: no new process
    assert time.monotonic() - started < 1
    assert host.summary()["restarts"] == 0


def test_exit_before_init_is_an_init_failure(host_for: HostFactory) -> None:
    host = host_for("exit-at-start", timeout=30)
    started = time.monotonic()
    ok, payload = host.invoke({})
    assert time.monotonic() - started < 5
    assert not ok and payload["errorType"] == "Runtime.ExitError"
    assert "exited with status 3 before asking for an invocation" in payload["errorMessage"]
    assert "FAKE_SETTING is not set" in payload["errorMessage"]
    assert host.invoke({})[0] is False and host.summary()["restarts"] == 0


def test_child_death_fails_the_invocation_without_hanging_and_restarts(host_for: HostFactory, tmp_path: Path) -> None:
    host = host_for("die-once", timeout=30)
    first_pid = host.pid
    started = time.monotonic()
    ok, payload = host.invoke({"n": 1})
    assert time.monotonic() - started < 5, "a dead function must not keep the caller waiting"
    assert not ok and payload["errorType"] == "Runtime.ExitError"
    assert "exited with status 7 while handling the invocation" in payload["errorMessage"]
    assert "fake: dying now" in payload["errorMessage"]
    assert not alive(first_pid)

    ok, payload = host.invoke({"n": 2})  # a new execution environment, as Lambda starts one
    assert ok and payload["event"] == {"n": 2}
    assert payload["pid"] != first_pid
    summary = host.summary()
    assert summary["restarts"] == 1 and len(summary["cold_starts_ms"]) == 2


def test_timeout_kills_the_process_and_the_next_invocation_starts_a_new_one(host_for: HostFactory) -> None:
    host = host_for("sleep-once", timeout=1)
    first_pid = host.pid
    started = time.monotonic()
    ok, payload = host.invoke({})
    assert 1 <= time.monotonic() - started < 5
    assert not ok and payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    assert not alive(first_pid)
    ok, payload = host.invoke({"again": True})
    assert ok and payload["event"] == {"again": True} and payload["pid"] != first_pid
    assert host.summary()["restarts"] == 1


def test_initialisation_that_never_finishes_is_bounded(host_for: HostFactory) -> None:
    host = host_for("slow-init", timeout=30, init_timeout=1)
    pid = host.pid
    started = time.monotonic()
    ok, payload = host.invoke({})
    assert time.monotonic() - started < 4
    assert not ok and payload["errorType"] == "Runtime.InitTimeout"
    assert not alive(pid)


def test_cli_invoke_prints_one_summary(fake: Path, tmp_path: Path, stack_env: dict[str, str]) -> None:
    log = tmp_path / "cli.log"
    result = subprocess.run(
        [sys.executable, *LAMBDA_HOST, "invoke", "--binary", str(fake), "--name", "cli-fn",
         "--event", '{"n": 1}', "--repeat", "3", "--timeout", "5", "--log", str(log)],
        env={**os.environ, **stack_env, "FAKE_MODE": "echo"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [r["event"] for r in summary["responses"]] == [{"n": 1}] * 3
    assert summary["errors"] == []
    assert summary["cold_start_ms"] > 0 and summary["peak_rss_kb"] > 1000
    assert len(summary["durations_ms"]) == 3
    assert "cold start" in result.stderr
    assert "fake runtime starting" in log.read_text()


def test_cli_exits_1_when_invocations_fail(fake: Path, tmp_path: Path, stack_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, *LAMBDA_HOST, "invoke", "--binary", str(fake), "--name", "cli-fn",
         "--log", str(tmp_path / "cli.log")],
        env={**os.environ, **stack_env, "FAKE_MODE": "error"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["responses"] == [] and summary["errors"][0]["errorType"] == "Fake.Failure"


# ------------------------------------------------------------------------------------------------
# SQS event source mapping
# ------------------------------------------------------------------------------------------------


def test_batch_failure_rules() -> None:
    ids = ["a", "b"]
    assert batch_failures(True, None, ids) == (set(), None)
    assert batch_failures(True, {}, ids) == (set(), None)
    assert batch_failures(True, {"batchItemFailures": []}, ids) == (set(), None)
    assert batch_failures(True, {"batchItemFailures": [{"itemIdentifier": "b"}]}, ids) == ({"b"}, None)
    for bad in ("ok", [1], {"batchItemFailures": [{"itemIdentifier": ""}]}, {"batchItemFailures": [{"id": "a"}]},
                {"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"batchItemFailures": "a"}):  # fmt: skip
        failed, why = batch_failures(True, bad, ids)
        assert failed == {"a", "b"} and why, bad
    assert batch_failures(False, {"errorType": "X"}, ids)[0] == {"a", "b"}


def test_sqs_mapping_deletes_acknowledged_messages_and_leaves_item_failures(
    host_for: HostFactory, sqs: SqsClient, queues: tuple[str, str, str], tmp_path: Path
) -> None:
    name, queue_url, _dlq = queues
    bodies = [f"ok-{i}" for i in range(9)] + [f"fail-{i}" for i in range(3)]
    ids = send(sqs, queue_url, bodies)
    host = host_for("sqs")

    summary = run_sqs(host, queue_url, batch_size=15, max_batches=1, wait=0)

    assert {k: summary[k] for k in ("batches", "messages_received", "messages_deleted", "messages_failed")} == {
        "batches": 1,
        "messages_received": 12,
        "messages_deleted": 9,
        "messages_failed": 3,
    }
    assert summary["invocation_errors"] == 0 and summary["cold_start_ms"] > 0
    assert summary["responses"][-1]["ok"] is True
    [invocation] = seen(tmp_path)
    records = invocation["event"]["Records"]
    assert len(records) == 12  # batch size 15: two ReceiveMessage calls
    record = next(r for r in records if r["body"] == "ok-0")
    assert record["messageId"] == ids["ok-0"]
    assert set(record) == {
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
        "eventSource", "eventSourceARN", "awsRegion",
    }  # fmt: skip
    assert set(record["attributes"]) == {
        "ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"
    }  # fmt: skip
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {}
    assert record["md5OfBody"] == hashlib.md5(b"ok-0").hexdigest()
    assert (record["eventSource"], record["awsRegion"]) == ("aws:sqs", "us-east-1")
    assert record["eventSourceARN"] == f"arn:aws:sqs:us-east-1:123456789012:{name}"

    left = drain(sqs, queue_url)  # visible again at once
    assert sorted(m["Body"] for m in left) == ["fail-0", "fail-1", "fail-2"]
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in left} == {"2"}


def test_sqs_mapping_on_an_invocation_error_deletes_nothing(
    host_for: HostFactory, sqs: SqsClient, queues: tuple[str, str, str]
) -> None:
    _name, queue_url, _dlq = queues
    send(sqs, queue_url, ["a", "b", "c"])
    host = host_for("error")
    summary = run_sqs(host, queue_url, max_batches=1, wait=0)
    assert (summary["invocation_errors"], summary["messages_deleted"], summary["messages_failed"]) == (1, 0, 3)
    assert summary["responses"][-1] == {
        "batch": 1,
        "ok": False,
        "payload": {"errorType": "Fake.Failure", "errorMessage": "failed on purpose"},
    }
    assert sorted(m["Body"] for m in drain(sqs, queue_url)) == ["a", "b", "c"]


def test_sqs_mapping_treats_an_unknown_item_identifier_as_a_whole_batch_failure(
    host_for: HostFactory, sqs: SqsClient, queues: tuple[str, str, str]
) -> None:
    _name, queue_url, _dlq = queues
    send(sqs, queue_url, ["a", "b"])
    summary = run_sqs(host_for("sqs-bad-id"), queue_url, max_batches=1, wait=0)
    assert (summary["invocation_errors"], summary["messages_deleted"], summary["messages_failed"]) == (0, 0, 2)
    assert len(drain(sqs, queue_url)) == 2


def test_a_message_that_keeps_failing_lands_in_the_dlq(
    host_for: HostFactory, sqs: SqsClient, queues: tuple[str, str, str], tmp_path: Path
) -> None:
    _name, queue_url, dlq_url = queues
    ids = send(sqs, queue_url, ["ok-1", "fail-1"])
    host = host_for("sqs")

    summary = run_sqs(host, queue_url, until_empty=True, wait=0)

    assert summary["batches"] == MAX_RECEIVE_COUNT
    assert summary["messages_received"] == 1 + MAX_RECEIVE_COUNT
    assert (summary["messages_deleted"], summary["messages_failed"]) == (1, MAX_RECEIVE_COUNT)
    counts = [
        r["attributes"]["ApproximateReceiveCount"]
        for entry in seen(tmp_path)
        for r in entry["event"]["Records"]
        if r["body"] == "fail-1"
    ]
    assert counts == [str(n) for n in range(1, MAX_RECEIVE_COUNT + 1)]
    assert drain(sqs, queue_url) == []
    dead = drain(sqs, dlq_url)
    assert [(m["MessageId"], m["Body"]) for m in dead] == [(ids["fail-1"], "fail-1")]


def test_cli_sqs_until_empty(
    fake: Path, tmp_path: Path, sqs: SqsClient, queues: tuple[str, str, str], stack_env: dict[str, str]
) -> None:
    _name, queue_url, _dlq = queues
    send(sqs, queue_url, [f"ok-{i}" for i in range(7)])
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in stack_env.items()))
    bare_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # all from --env-file
    result = subprocess.run(
        [sys.executable, *LAMBDA_HOST, "sqs", "--binary", str(fake), "--name", "cli-sqs",
         "--queue-url", queue_url, "--batch-size", "3", "--until-empty", "--wait", "0",
         "--env-file", str(env_file), "--env", "FAKE_MODE=sqs", "--log", str(tmp_path / "cli.log")],
        env=bare_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["batches"], summary["messages_received"], summary["messages_deleted"]) == (3, 7, 7)
    assert summary["messages_failed"] == 0 and summary["invocation_errors"] == 0
    assert summary["cold_start_ms"] > 0 and summary["peak_rss_kb"] > 1000
    assert drain(sqs, queue_url) == []


# ------------------------------------------------------------------------------------------------
# The real ingest binary
# ------------------------------------------------------------------------------------------------

# Staged chunk envelope "table" -> Snowflake table.
STAGED_TABLES = {"raw_events": "RAW_EVENTS", "raw_events_rejected": "RAW_EVENTS_REJECTED"}


@pytest.mark.skipif(not INGEST.exists(), reason=f"{INGEST} is not built (cargo build -p ingest)")
def test_real_ingest_stages_valid_and_rejected_rows(sqs: SqsClient, stack_env: dict[str, str], tmp_path: Path) -> None:
    staging = sqs.create_queue(QueueName=f"pytest-lambda-host-staging-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    events = [
        {"event_id": "e1", "event_time": "2026-11-02T10:00:00+02:00", "merchant_id": "m1",
         "event_name": "purchase", "value": 19.99, "currency": "EUR"},
        {"event_id": "e2", "event_time": "2026-11-02T11:30:00Z", "merchant_id": "m2",
         "event_name": "page_view"},
    ]  # fmt: skip
    invalid_body = '{"event_id": "e3", "merchant_id": '
    messages = [fake_received(json.dumps(events[0])), fake_received(invalid_body), fake_received(json.dumps(events[1]))]
    event = sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:tracklayer-events")
    env = {**stack_env, "TRACKLAYER_LOAD_MODE": "scheduled", "TRACKLAYER_STAGING_QUEUE_URL": staging}
    try:
        with LambdaHost(INGEST, "ingest", env=env, timeout=30, log=tmp_path / "ingest.log") as host:
            ok, payload = host.invoke(event)
            summary = host.summary()
        log = (tmp_path / "ingest.log").read_text()
        assert (ok, payload) == (True, {"batchItemFailures": []}), log
        assert summary["cold_start_ms"] > 0 and summary["peak_rss_kb"] > 1000

        rows: dict[str, list] = {"RAW_EVENTS": [], "RAW_EVENTS_REJECTED": []}
        for message in drain(sqs, staging):
            table, chunk = staged_chunk(message["Body"])
            rows[STAGED_TABLES[table]].extend(chunk)
        assert len(rows["RAW_EVENTS"]) == 2, log
        assert len(rows["RAW_EVENTS_REJECTED"]) == 1, log
        assert sorted(json.loads(row["r"])["event_id"] for row in rows["RAW_EVENTS"]) == ["e1", "e2"]
        assert rows["RAW_EVENTS_REJECTED"][0]["m"] == messages[1]["MessageId"]
        assert "ingest invocation summary" in log
    finally:
        sqs.delete_queue(QueueUrl=staging)
