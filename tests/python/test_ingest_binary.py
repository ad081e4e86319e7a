"""The real `target/debug/ingest` end to end: lambda_host's Runtime API and SQS event source mapping,
moto's queues, and the local Snowflake (rows read back through snowflake-connector-python).

* stream mode through an SQS mapping: valid events land exactly once, invalid ones go to the
  quarantine with their SQS message ids, and a poison message (its chunk always fails with a
  SQL compilation error, injected) is retried and ends in the DLQ, alone;
* stream mode through a direct invocation;
* scheduled mode: chunks are staged on the staging queue and Snowflake is never contacted.

Skipped only when `target/debug/ingest` is not built (`cargo build -p ingest`; `make test` builds
it first).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sflocal import Control, fake_received, staged_chunk
from tracklayer_local.harness import (
    REPO,
    SqsClient,
    create_queue_pair,
    drain,
    invocation_summaries,
    query,
    queue_depth,
    snowflake_port,
    sqs_client,
)
from tracklayer_local.lambda_host import LambdaHost, run_sqs, sqs_event

INGEST = REPO / "target" / "debug" / "ingest"
MAX_RECEIVE_COUNT = 3
SUMMARY_MESSAGE = "ingest invocation summary"
INJECTED = "SQL compilation error (injected)"

pytestmark = pytest.mark.skipif(
    not INGEST.is_file(), reason=f"{INGEST} is not built: run `cargo build -p ingest` (make test builds it)"
)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def sqs(stack_env: dict[str, str]) -> SqsClient:
    return sqs_client(stack_env)


@pytest.fixture
def queues(sqs: SqsClient) -> Iterator[tuple[str, str]]:
    """A fresh queue and its DLQ (maxReceiveCount 3, visibility 30 s); deleted after the test."""
    main, dlq = create_queue_pair(
        sqs, f"pytest-ingest-{uuid.uuid4().hex[:10]}", MAX_RECEIVE_COUNT, {"VisibilityTimeout": "30"}
    )
    yield main, dlq
    for url in (main, dlq):
        sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def staging_queue(sqs: SqsClient) -> Iterator[str]:
    url = sqs.create_queue(QueueName=f"pytest-ingest-staging-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    yield url
    sqs.delete_queue(QueueUrl=url)


def event(event_id: str, number: int = 0, pad: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid ecommerce event; `pad` adds a properties.pad string of that many characters."""
    properties: dict[str, Any] = {"products": [{"sku": f"SKU-{number}", "quantity": 1, "price": 19.99}]}
    if pad:
        properties["pad"] = "x" * pad
    return {
        "event_id": event_id,
        "event_time": "2026-11-02T10:00:00+02:00",
        "merchant_id": f"merchant-{number % 3}",
        "event_name": "purchase",
        "platform": "shopify",
        "value": 19.99,
        "currency": "eur",
        "properties": properties,
        **fields,
    }


def stream_env(stack_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**stack_env, "TRACKLAYER_LOAD_MODE": "stream", "TRACKLAYER_SECRET_ID": stack_env["TRACKLAYER_SECRET_ID"],
            **extra}  # fmt: skip


def snowflake(stack_env: dict[str, str], sql: str) -> list[list[Any]]:
    """Rows of a query on TRACKLAYER.EVENTS through the drivers' protocol (infra/local/sfquery.py)."""
    return query(sql, snowflake_port(stack_env))["rows"]


def summaries(log: Path) -> list[dict[str, Any]]:
    """The function's one-line JSON invocation summaries, in order."""
    return invocation_summaries(log, 0, SUMMARY_MESSAGE)


SOURCE_ARN = "arn:aws:sqs:us-east-1:123456789012:tracklayer-events"


# ------------------------------------------------------------------------------------------------
# Stream mode
# ------------------------------------------------------------------------------------------------


def test_stream_mode_through_sqs_poison_message_reaches_the_dlq_alone(
    sqs: SqsClient, queues: tuple[str, str], control: Control, stack_env: dict[str, str], tmp_path: Path
) -> None:
    queue_url, dlq_url = queues
    prefix = f"pyt-{uuid.uuid4().hex[:10]}"
    # ~12 kB per event and 10 kB statements: every message is a chunk (a statement) of its own.
    valid = {f"{prefix}-ok-{i:02d}": json.dumps(event(f"{prefix}-ok-{i:02d}", i, pad=12_000)) for i in range(40)}
    poison_id = f"{prefix}-poison"
    poison_body = json.dumps(event(poison_id, 99, pad=12_000))
    invalid_json = f'{{"event_id": "{prefix}-badjson", "merchant_id": "m1", "event_name": '
    missing = event(f"{prefix}-nomerchant", 7)
    del missing["merchant_id"]
    missing_body = json.dumps(missing)

    bodies = [*list(valid.values())[:20], invalid_json, poison_body, missing_body, *list(valid.values())[20:]]
    message_ids = {body: sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"] for body in bodies}
    assert len(message_ids) == 43

    control.call(
        "POST",
        "/faults",
        {
            "match": {"binding_contains": poison_id},
            "count": 100,
            "action": {"snowflake_error": {"status": 422, "code": "001003", "sqlState": "42000", "message": INJECTED}},
        },
    )
    log = tmp_path / "ingest.log"
    env = stream_env(stack_env, TRACKLAYER_MAX_STATEMENT_BYTES="10000")
    try:
        with LambdaHost(INGEST, "ingest", env=env, timeout=60, log=log) as host:
            stats = run_sqs(host, queue_url, batch_size=10, until_empty=True, wait=0)
        faulted = [s for s in control.requests()["statements"] if s["fault"]]
        armed = control.faults()
    finally:
        cleared = control.call("DELETE", "/faults")["cleared"]
    text = log.read_text(errors="replace")

    # SQS: the poison message was received MAX_RECEIVE_COUNT times, failed each time, then redriven.
    assert stats["invocation_errors"] == 0, (stats, text[-3000:])
    assert stats["messages_failed"] == MAX_RECEIVE_COUNT, (stats, text[-3000:])
    assert stats["messages_received"] == 43 + MAX_RECEIVE_COUNT - 1
    assert stats["messages_deleted"] == 42
    dead = drain(sqs, dlq_url)
    assert [m["Body"] for m in dead] == [poison_body]
    assert [m["MessageId"] for m in dead] == [message_ids[poison_body]]
    assert drain(sqs, queue_url) == []
    assert queue_depth(sqs, queue_url).total == 0

    # Snowflake: each valid event exactly once, nothing of the poison message.
    rows = snowflake(
        stack_env,
        f"SELECT EVENT_ID, COUNT(*) AS N FROM RAW_EVENTS WHERE EVENT_ID LIKE '{prefix}-%' GROUP BY EVENT_ID",
    )
    assert sorted(rows) == sorted([event_id, "1"] for event_id in valid)
    rejected = snowflake(
        stack_env,
        "SELECT SOURCE_MESSAGE_ID, EVENT_ID, MERCHANT_ID, REASON, RAW_TEXT FROM RAW_EVENTS_REJECTED "
        f"WHERE RAW_TEXT LIKE '%{prefix}-%' ORDER BY REASON",
    )
    assert rejected == [
        [message_ids[invalid_json], None, None, "invalid_json", invalid_json],
        [message_ids[missing_body], f"{prefix}-nomerchant", None, "missing_field", missing_body],
    ]
    # The injected error hit only the poison message's statement, once per receive (no retries):
    # the rule was taken that often and stays armed for the rest of its 100 uses, the one rule cleared.
    assert len(faulted) == MAX_RECEIVE_COUNT, faulted
    assert [(rule["taken"], rule["remaining"]) for rule in armed] == [(MAX_RECEIVE_COUNT, 100 - MAX_RECEIVE_COUNT)]
    assert cleared == 1

    # The function's own summaries: one per batch, failures only for the poison message's batches.
    lines = summaries(log)
    assert len(lines) == stats["batches"], text[-3000:]
    failing = [line for line in lines if line["failures"]]
    assert [line["failures"] for line in failing] == [1] * MAX_RECEIVE_COUNT
    assert all(INJECTED in line["error"] and "001003" in line["error"] and line["fix"] for line in failing)
    assert all(line["FailedMessages"] == 1 for line in failing)
    assert sum(line["messages"] for line in lines) == stats["messages_received"]
    assert sum(line["EventsLoaded"] for line in lines) == 40
    assert sum(line["rejected"] for line in lines) == 2
    for line in lines:
        assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TrackLayer"
        assert {"request_id", "chunks", "statements", "bytes", "duration_ms", "LoadLatencyMs"} <= set(line)
    poison_receipts = [
        response
        for response in stats["responses"]
        if response["payload"].get("batchItemFailures") == [{"itemIdentifier": message_ids[poison_body]}]
    ]
    assert poison_receipts, stats["responses"]


def test_stream_mode_direct_invocation_loads_every_record(
    control: Control, stack_env: dict[str, str], tmp_path: Path
) -> None:
    prefix = f"pyt-{uuid.uuid4().hex[:10]}"
    events = [
        event(f"{prefix}-a", 1, value=10.5, currency="usd", event_name=" add_to_cart "),
        event(f"{prefix}-b", 2, value="1234.56", currency="EUR"),
        event(f"{prefix}-c", 3, event_time=1793613600000),  # epoch milliseconds
    ]
    del events[2]["value"], events[2]["currency"]
    messages = [fake_received(json.dumps(e)) for e in events]
    log = tmp_path / "ingest.log"
    with LambdaHost(INGEST, "ingest", env=stream_env(stack_env), timeout=60, log=log) as host:
        assert host.wait_ready(), host.log_tail()
        cpu_before = host.cpu_ms()
        ok, payload = host.invoke(sqs_event(messages, SOURCE_ARN))
        cpu_after = host.cpu_ms()
    text = log.read_text(errors="replace")
    assert (ok, payload) == (True, {"batchItemFailures": []}), text[-3000:]
    # lambda_host's CPU accounting: readings only grow, and the summary has the last one.
    assert cpu_before is not None and cpu_after is not None and 0 <= cpu_before <= cpu_after
    assert host.summary()["cpu_ms"] >= cpu_after > 0
    assert host.cpu_ms() is None  # no process runs any more

    rows = snowflake(
        stack_env,
        "SELECT EVENT_ID, MERCHANT_ID, EVENT_NAME, PLATFORM, VALUE, CURRENCY, EVENT_TIME FROM RAW_EVENTS "
        f"WHERE EVENT_ID LIKE '{prefix}-%' ORDER BY EVENT_ID",
    )
    assert rows == [
        [f"{prefix}-a", "merchant-1", "add_to_cart", "shopify", "10.5000", "USD", "2026-11-02 08:00:00.000"],
        [f"{prefix}-b", "merchant-2", "purchase", "shopify", "1234.5600", "EUR", "2026-11-02 08:00:00.000"],
        [f"{prefix}-c", "merchant-0", "purchase", "shopify", None, None, "2026-11-02 10:00:00.000"],
    ]
    [line] = summaries(log)
    assert (line["messages"], line["events"], line["rejected"], line["failures"]) == (3, 3, 0, 0)
    assert line["EventsLoaded"] == 3 and line["Mode"] == "stream" and "error" not in line


def test_repeated_keys_load_with_the_last_value_and_raw_payload_is_an_object(
    control: Control, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """Repeated keys inside properties and in unknown fields are valid events, not quarantined."""
    prefix = f"pyt-{uuid.uuid4().hex[:10]}"
    head = (
        f'"event_id":"{prefix}-{{}}","event_time":"2026-11-02T10:00:00Z","merchant_id":"m-dup","event_name":"purchase"'
    )
    page = '{"page":{"url":"https://a.example/old","url":"https://a.example/new"}}'
    bodies = [
        "{" + head.format("props") + ',"properties":{"sku":"FIRST","sku":"LAST","qty":1}}',
        "{" + head.format("unknown") + f',"context":{page},"context2":1,"context2":2}}',
    ]
    messages = [fake_received(body) for body in bodies]
    log = tmp_path / "ingest.log"
    with LambdaHost(INGEST, "ingest", env=stream_env(stack_env), timeout=60, log=log) as host:
        assert host.wait_ready(), host.log_tail()
        ok, payload = host.invoke(sqs_event(messages, SOURCE_ARN))
    assert (ok, payload) == (True, {"batchItemFailures": []}), log.read_text(errors="replace")[-3000:]
    [line] = summaries(log)
    assert (line["events"], line["rejected"], line["EventsLoaded"]) == (2, 0, 2)

    rows = snowflake(
        stack_env,
        "SELECT EVENT_ID, PROPERTIES:sku::STRING, RAW_PAYLOAD:properties.sku::STRING, "
        "RAW_PAYLOAD:context.page.url::STRING, RAW_PAYLOAD:context2::NUMBER, RAW_PAYLOAD "
        f"FROM RAW_EVENTS WHERE EVENT_ID LIKE '{prefix}-%' ORDER BY EVENT_ID",
    )
    assert [row[:5] for row in rows] == [
        [f"{prefix}-props", "LAST", "LAST", None, None],
        [f"{prefix}-unknown", None, None, "https://a.example/new", "2"],
    ]
    assert json.loads(rows[0][5]) == {
        "event_id": f"{prefix}-props",
        "event_time": "2026-11-02T10:00:00Z",
        "merchant_id": "m-dup",
        "event_name": "purchase",
        "properties": {"sku": "LAST", "qty": 1},
    }
    rejected = snowflake(stack_env, f"SELECT COUNT(*) FROM RAW_EVENTS_REJECTED WHERE RAW_TEXT LIKE '%{prefix}-%'")
    assert rejected == [["0"]]


# ------------------------------------------------------------------------------------------------
# Scheduled mode
# ------------------------------------------------------------------------------------------------


def test_scheduled_mode_stages_chunks_and_never_contacts_snowflake(
    sqs: SqsClient, staging_queue: str, control: Control, stack_env: dict[str, str], tmp_path: Path
) -> None:
    prefix = f"pyt-{uuid.uuid4().hex[:10]}"
    events = [event(f"{prefix}-{i}", i) for i in range(5)]
    invalid = f'{{"event_id": "{prefix}-bad", '
    messages = [fake_received(json.dumps(e)) for e in events[:3]]
    messages += [fake_received(invalid), fake_received("\n".join(json.dumps(e) for e in events[3:]))]  # NDJSON
    env = {**stack_env, "TRACKLAYER_LOAD_MODE": "scheduled", "TRACKLAYER_STAGING_QUEUE_URL": staging_queue}
    control.call("DELETE", "/requests")
    assert control.requests()["total"] == 0

    log = tmp_path / "ingest.log"
    with LambdaHost(INGEST, "ingest", env=env, timeout=60, log=log) as host:
        ok, payload = host.invoke(sqs_event(messages, SOURCE_ARN))
    text = log.read_text(errors="replace")
    assert (ok, payload) == (True, {"batchItemFailures": []}), text[-3000:]

    report = control.requests()
    assert report["total"] == 0, report  # the function never contacted Snowflake

    staged: dict[str, list[dict[str, Any]]] = {"raw_events": [], "raw_events_rejected": []}
    for message in drain(sqs, staging_queue):
        table, rows = staged_chunk(message["Body"])
        staged[table].extend(rows)
    assert sorted(json.loads(row["r"])["event_id"] for row in staged["raw_events"]) == [e["event_id"] for e in events]
    [rejected] = staged["raw_events_rejected"]
    assert (rejected["m"], rejected["re"], rejected["r"]) == (messages[3]["MessageId"], "invalid_json", invalid)
    [line] = summaries(log)
    assert (line["Mode"], line["messages"], line["events"], line["rejected"]) == ("scheduled", 5, 6, 1)
    assert (line["EventsStaged"], line["EventsLoaded"], line["failures"]) == (5, 0, 0)
