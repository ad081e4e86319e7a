"""`make redrive-local`: the way back from both dead-letter queues, through the real binaries.

    .venv/bin/python -m tracklayer_local.redrive [--events 40] [--env-file .local/stack.env]
        [--target-dir target/debug] [--log-dir DIR] [--json figures.json]

Needs a running local stack and the debug binaries (`cargo build -p ingest -p flush`). On fresh
queues of its own (events queue + DLQ, staging queue + DLQ) and a secret of its own:

1. **events dead-lettered**: ingest (scheduled mode) runs with a `TRACKLAYER_STAGING_QUEUE_URL`
   that names no queue. Every SendMessageBatch fails, ingest reports every message as failed,
   the event source mapping returns them, and after `maxReceiveCount` receives they are in the
   events DLQ. Nothing is staged, nothing is in Snowflake.
2. **fixed and redriven**: the right URL; the events DLQ is moved back to the events queue with
   SQS `StartMessageMoveTask` when the local SQS runs it, else (moto 5.2.5 answers 500: it does
   not implement it) with the local stand-in, labelled as such: receive from the DLQ, send each
   body to the queue, delete it from the DLQ: a new message, as SQS's own redrive makes. ingest
   stages every event.
3. **chunks dead-lettered**: flush runs with a secret naming a user the local Snowflake does not
   know (390144 for every JWT). The run stops at authentication; the chunks it received come back
   after its visibility timeout (`TRACKLAYER_VISIBILITY_SECONDS=10`), and the next run's receive
   moves them to the staging DLQ.
4. **fixed and redriven**: the secret gets the right user; the staging DLQ is moved back the same
   way, and one flush run loads everything.
5. **accounting**: every valid event is in RAW_EVENTS exactly once, every bad one in the
   quarantine exactly once, nothing else of this run landed, and all four queues are empty.

The demo's queues dead-letter sooner than the template's (maxReceiveCount 2 for events, 1 for
staged chunks, instead of 5) so the whole run takes about half a minute. Exit status 0 when every
check passed, 1 otherwise, 2 for a setup problem. `--json` writes every figure
(`tests/python/test_redrive.py` runs this with `--events 30` in `make test`).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from snowflake.connector.errors import ProgrammingError

from tracklayer_local.harness import (
    REPO,
    SqsClient,
    create_queue_pair,
    invocation_summaries,
    query,
    queue_arn,
    queue_depth,
    read_env_file,
    snowflake_port,
    sqs_client,
    stack_env_path,
    wait_until,
)
from tracklayer_local.lambda_host import LambdaHost, run_sqs

EVENTS_MAX_RECEIVES = 2
STAGING_MAX_RECEIVES = 1
VISIBILITY_S = 10  # flush's smallest TRACKLAYER_VISIBILITY_SECONDS
WAIT_S = 60
UNKNOWN_USER = "TRACKLAYER_SVC_RETIRED"
STEPS = 5


class SetupError(Exception):
    """A problem with the stack or the binaries (exit status 2)."""


def say(line: str = "") -> None:
    print(line, flush=True)


# ------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    prefix: str
    bodies: list[str]
    valid: list[str]  # event ids
    bad: Counter  # reason -> events


def generate(events: int, prefix: str) -> Plan:
    """`events` purchase and view events, two in every 15 broken (no merchant_id; value "12,50");
    packed one per message, with every fourth message a JSON array of three."""
    valid, bad, items = [], Counter(), []
    for i in range(events):
        event_id = f"{prefix}-{i:04d}"
        event: dict[str, Any] = {
            "event_id": event_id, "event_time": f"2026-11-02T10:{i % 60:02d}:00Z", "merchant_id": "mrc_redrive",
            "event_name": "purchase" if i % 3 == 0 else "view_content", "platform": "web",
            "value": "19.99", "currency": "EUR",
        }  # fmt: skip
        if i % 15 == 7:
            del event["merchant_id"]
            bad["missing_field"] += 1
        elif i % 15 == 14:
            event["value"] = "12,50"
            bad["invalid_field"] += 1
        else:
            valid.append(event_id)
        items.append(event)
    bodies, i = [], 0
    while i < len(items):
        if len(bodies) % 4 == 3 and i + 3 <= len(items):
            bodies.append(json.dumps(items[i : i + 3]))
            i += 3
        else:
            bodies.append(json.dumps(items[i]))
            i += 1
    return Plan(prefix, bodies, valid, bad)


# ------------------------------------------------------------------------------------------------
# Queues and the redrive
# ------------------------------------------------------------------------------------------------


@dataclass
class Pair:
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str


def create_pair(sqs: SqsClient, name: str, max_receives: int) -> Pair:
    url, dlq_url = create_queue_pair(sqs, name, max_receives, {"VisibilityTimeout": "30"})
    return Pair(url, queue_arn(sqs, url), dlq_url, queue_arn(sqs, dlq_url))


def depth(sqs: SqsClient, url: str) -> int:
    """Messages on the queue, visible or in flight."""
    found = queue_depth(sqs, url)
    return found.visible + found.in_flight


def in_flight(sqs: SqsClient, url: str) -> int:
    return queue_depth(sqs, url).in_flight


def send_all(sqs: Any, url: str, bodies: list[str]) -> list[str]:
    ids = []
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if answer.get("Failed"):
            raise SetupError(f"SendMessageBatch refused {answer['Failed']}")
        ids += [s["MessageId"] for s in answer["Successful"]]
    return ids


def move_messages(sqs: Any, source_url: str, destination_url: str) -> int:
    """The local stand-in for StartMessageMoveTask: receive, send, delete, as SQS's task does
    (each message arrives as a new one: new id, SentTimestamp and receive count)."""
    moved = 0
    while True:
        got = sqs.receive_message(
            QueueUrl=source_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30,
            MessageAttributeNames=["All"],
        ).get("Messages", [])  # fmt: skip
        if not got:
            return moved
        entries = []
        for i, message in enumerate(got):
            entry = {"Id": str(i), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        answer = sqs.send_message_batch(QueueUrl=destination_url, Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"the stand-in could not send {answer['Failed']}; the messages stay in the DLQ")
        sqs.delete_message_batch(
            QueueUrl=source_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )
        moved += len(got)


def redrive(env: dict[str, str], pair: Pair) -> dict[str, Any]:
    """Moves the DLQ back to its queue: StartMessageMoveTask if the local SQS runs it, else the
    labelled stand-in."""
    sqs = sqs_client(env)
    strict = boto3.client(
        "sqs", endpoint_url=env.get("AWS_ENDPOINT_URL") or None, region_name=env.get("AWS_REGION"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )  # fmt: skip
    say(f"    $ aws sqs start-message-move-task --source-arn {pair.dlq_arn} --destination-arn {pair.arn}")
    try:
        strict.start_message_move_task(SourceArn=pair.dlq_arn, DestinationArn=pair.arn)
    except ClientError as e:
        status, code = e.response["ResponseMetadata"].get("HTTPStatusCode"), e.response["Error"].get("Code")
        answer = f"HTTP {status}" + (f" {code}" if code != str(status) else "")
        say(f"    the local SQS answers {answer}: moto does not implement StartMessageMoveTask")
        say("    LOCAL STAND-IN for StartMessageMoveTask: receive from the DLQ, send to the queue, delete from the DLQ")
        moved = move_messages(sqs, pair.dlq_url, pair.url)
        say(f"    moved {moved} messages (new messages, as SQS's redrive makes them)")
        return {"method": "local stand-in (receive, send, delete)", "moved": moved, "start_message_move_task": answer}
    say("    $ aws sqs list-message-move-tasks --source-arn ... (until COMPLETED)")
    task: dict[str, Any] = {}

    def done() -> bool:
        task.update(sqs.list_message_move_tasks(SourceArn=pair.dlq_arn, MaxResults=1)["Results"][0])
        return task["Status"] in ("COMPLETED", "FAILED", "CANCELLED")

    wait_until(done, "the message move task", WAIT_S)
    say(f"    {task['Status']}: {task.get('ApproximateNumberOfMessagesMoved')} messages moved")
    return {"method": "StartMessageMoveTask", "moved": int(task.get("ApproximateNumberOfMessagesMoved", 0)),
            "status": task["Status"]}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    env: dict[str, str]
    log_dir: Path
    plan: Plan
    events: Pair
    staging: Pair
    secret_id: str
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def binary(self, name: str) -> Path:
        path = Path(self.args.target_dir)
        return (path if path.is_absolute() else REPO / path) / name

    def log(self, name: str) -> Path:
        path = self.log_dir / f"redrive-{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def check(self, ok: bool, label: str) -> None:
        say(f"    {'ok' if ok else '!!'}  {label}")
        if not ok:
            self.problems.append(label)

    def snowflake(self, sql: str) -> list[list[Any]]:
        """Rows of a query; none while the table does not exist yet (the loader creates it on
        its first load: 002003 on a fresh stack)."""
        try:
            return query(sql, snowflake_port(self.env))["rows"]
        except ProgrammingError as e:
            if e.errno == 2003:
                return []
            raise

    def loaded(self) -> Counter:
        rows = self.snowflake(
            f"SELECT EVENT_ID, COUNT(*) AS N FROM RAW_EVENTS WHERE EVENT_ID LIKE '{self.plan.prefix}-%' GROUP BY 1"
        )
        return Counter({r[0]: int(r[1]) for r in rows})

    def quarantined(self) -> Counter:
        rows = self.snowflake(
            "SELECT REASON, COUNT(*) AS N FROM RAW_EVENTS_REJECTED "
            f"WHERE RAW_TEXT LIKE '%{self.plan.prefix}-%' GROUP BY 1"
        )
        return Counter({r[0]: int(r[1]) for r in rows})


def ingest(run: Run, staging_url: str, log: Path) -> dict[str, Any]:
    env = {**run.env, "TRACKLAYER_LOAD_MODE": "scheduled", "TRACKLAYER_STAGING_QUEUE_URL": staging_url}
    log.write_text("")
    with LambdaHost(run.binary("ingest"), "ingest", env=env, timeout=60, memory_mb=256, log=log) as host:
        return run_sqs(host, run.events.url, batch_size=10, until_empty=True, wait=0, sqs=sqs_client(run.env))


def flush_env(run: Run) -> dict[str, str]:
    return {**run.env, "TRACKLAYER_SECRET_ID": run.secret_id, "TRACKLAYER_STAGING_QUEUE_URL": run.staging.url,
            "TRACKLAYER_VISIBILITY_SECONDS": str(VISIBILITY_S), "TRACKLAYER_FLUSH_MARGIN_SECONDS": "2"}  # fmt: skip


def events_dead_lettered(run: Run, sqs: Any) -> None:
    say(
        f"\n[1/{STEPS}] events dead-lettered: ingest (scheduled) with a TRACKLAYER_STAGING_QUEUE_URL that names no "
        "queue"
    )
    ids = send_all(sqs, run.events.url, run.plan.bodies)
    say(f"    sent {len(ids)} messages ({len(run.plan.valid) + sum(run.plan.bad.values())} events) to the events queue")
    wrong = run.staging.url + "-missing"
    stats = ingest(run, wrong, run.log("ingest-misconfigured"))
    summaries = invocation_summaries(run.log("ingest-misconfigured"))
    first = next((s for s in summaries if s.get("error")), {})
    run.figures.update(
        messages_sent=len(ids), ingest_invocations_misconfigured=stats["batches"],
        ingest_error=first.get("error", ""), ingest_fix=first.get("fix", ""),
        events_dlq_after_misconfiguration=depth(sqs, run.events.dlq_url),
        staged_while_misconfigured=depth(sqs, run.staging.url),
    )  # fmt: skip
    say(f"    ingest: {stats['batches']} invocations, every message failed: {first.get('error', '?')[:110]}")
    say(f"      fix: {first.get('fix', '?')}")
    run.check(
        run.figures["events_dlq_after_misconfiguration"] == len(ids), f"all {len(ids)} messages in the events DLQ"
    )
    run.check(depth(sqs, run.events.url) == 0, "the events queue is empty")
    run.check(run.figures["staged_while_misconfigured"] == 0, "nothing staged")


def events_redriven(run: Run, sqs: Any) -> None:
    say(f"\n[2/{STEPS}] fix the URL, redrive the events DLQ, ingest stages them")
    run.figures["events_redrive"] = redrive(run.env, run.events)
    stats = ingest(run, run.staging.url, run.log("ingest"))
    summaries = invocation_summaries(run.log("ingest"))
    run.figures.update(
        chunks_staged=depth(sqs, run.staging.url), events_staged=sum(int(s.get("EventsStaged", 0)) for s in summaries),
        ingest_failures_after_fix=stats["messages_failed"],
    )  # fmt: skip
    say(f"    ingest: {stats['batches']} invocations, {run.figures['events_staged']} events staged in "
        f"{run.figures['chunks_staged']} chunks")  # fmt: skip
    run.check(run.figures["events_redrive"]["moved"] == run.figures["messages_sent"], "every message moved back")
    run.check(depth(sqs, run.events.dlq_url) == 0 and depth(sqs, run.events.url) == 0, "events queue and DLQ empty")
    run.check(run.figures["events_staged"] == len(run.plan.valid), f"{len(run.plan.valid)} valid events staged")


def chunks_dead_lettered(run: Run, sqs: Any, secrets: Any, good_secret: str) -> None:
    say(f"\n[3/{STEPS}] chunks dead-lettered: flush with a secret naming user {UNKNOWN_USER}, unknown to Snowflake")
    wrong = json.loads(good_secret) | {"user": UNKNOWN_USER}
    secrets.put_secret_value(SecretId=run.secret_id, SecretString=json.dumps(wrong))
    reports = []
    with LambdaHost(run.binary("flush"), "flush", env=flush_env(run), timeout=60, memory_mb=256,
                    log=run.log("flush-misconfigured")) as host:  # fmt: skip
        while depth(sqs, run.staging.url):
            if in_flight(sqs, run.staging.url):
                say(f"    waiting for the chunks' visibility timeout ({VISIBILITY_S} s); the next run's receive "
                    f"moves them to the DLQ (maxReceiveCount {STAGING_MAX_RECEIVES})")  # fmt: skip
                wait_until(
                    lambda: in_flight(sqs, run.staging.url) == 0, "the failed chunks' visibility timeout", WAIT_S
                )
            ok, report = host.invoke({})
            reports.append(report if ok else {"status": "error", **report})
            say(f"    flush run {len(reports)}: {reports[-1].get('status')}"
                + (f": {reports[-1]['error'][:100]}" if reports[-1].get("error") else ""))  # fmt: skip
            if len(reports) > 10:
                break
    failed = next((r for r in reports if r.get("error")), {})
    run.figures.update(
        flush_runs_misconfigured=len(reports), flush_error=failed.get("error", ""), flush_fix=failed.get("fix", ""),
        staging_dlq_after_misconfiguration=depth(sqs, run.staging.dlq_url),
        rows_before_redrive=sum(run.loaded().values()),
    )  # fmt: skip
    say(f"      fix: {failed.get('fix', '?')}")
    chunks = run.figures["chunks_staged"]
    run.check(run.figures["staging_dlq_after_misconfiguration"] == chunks, f"all {chunks} chunks in the staging DLQ")
    run.check(run.figures["rows_before_redrive"] == 0, "no row of this run in RAW_EVENTS")


def chunks_redriven(run: Run, sqs: Any, secrets: Any, good_secret: str) -> None:
    say(f"\n[4/{STEPS}] fix the secret, redrive the staging DLQ, flush loads them")
    secrets.put_secret_value(SecretId=run.secret_id, SecretString=good_secret)
    run.figures["staging_redrive"] = redrive(run.env, run.staging)
    with LambdaHost(run.binary("flush"), "flush", env=flush_env(run), timeout=60, memory_mb=256,
                    log=run.log("flush")) as host:  # fmt: skip
        ok, report = host.invoke({})
    run.figures["flush_report"] = report
    say(f"    flush: {report.get('status')}: {report.get('events_loaded')} events loaded, "
        f"{report.get('events_rejected')} quarantined, {report.get('chunks_loaded')} chunks, "
        f"{report.get('statements')} statements")  # fmt: skip
    run.check(ok and report.get("status") == "loaded", "flush answered loaded")
    run.check(run.figures["staging_redrive"]["moved"] == run.figures["chunks_staged"], "every chunk moved back")


def account(run: Run, sqs: Any) -> None:
    say(f"\n[5/{STEPS}] account: every event exactly once")
    loaded, quarantined = run.loaded(), run.quarantined()
    valid = set(run.plan.valid)
    run.figures.update(
        events_sent=len(run.plan.valid) + sum(run.plan.bad.values()), valid_sent=len(valid),
        bad_sent=sum(run.plan.bad.values()), bad_sent_by_reason=dict(run.plan.bad),
        loaded_rows=sum(loaded.values()), loaded_distinct=len(loaded),
        missing=len(valid - set(loaded)), duplicates=sum(n - 1 for n in loaded.values() if n > 1),
        bad_loaded=len(set(loaded) - valid), quarantined=sum(quarantined.values()),
        quarantined_by_reason=dict(quarantined),
        left={name: depth(sqs, url) for name, url in (
            ("events_queue", run.events.url), ("events_dlq", run.events.dlq_url),
            ("staging_queue", run.staging.url), ("staging_dlq", run.staging.dlq_url))},
    )  # fmt: skip
    f = run.figures
    say(f"    sent {f['events_sent']}: {f['valid_sent']} valid, {f['bad_sent']} bad {f['bad_sent_by_reason']}")
    say(f"    RAW_EVENTS: {f['loaded_rows']} rows, {f['loaded_distinct']} distinct event ids; "
        f"RAW_EVENTS_REJECTED: {f['quarantined']} {f['quarantined_by_reason']}")  # fmt: skip
    run.check(f["missing"] == 0 and f["loaded_distinct"] == f["valid_sent"], "every valid event loaded")
    run.check(f["duplicates"] == 0 and f["loaded_rows"] == f["valid_sent"], "none loaded twice")
    run.check(f["bad_loaded"] == 0, "no bad event in RAW_EVENTS")
    run.check(f["quarantined_by_reason"] == f["bad_sent_by_reason"], "every bad event quarantined exactly once")
    run.check(all(n == 0 for n in f["left"].values()), "all four queues empty")


def setup(args: argparse.Namespace) -> tuple[dict[str, str], Path]:
    env_path = Path(args.env_file) if args.env_file else stack_env_path()
    if not env_path.is_file():
        raise SetupError(f"{env_path} does not exist: start the local stack first (`make stack-up`)")
    env = read_env_file(str(env_path))
    for name in ("ingest", "flush"):
        path = Path(args.target_dir) / name
        if not (path if path.is_absolute() else REPO / path).is_file():
            raise SetupError(f"{path} is missing: build it first (`cargo build -p ingest -p flush`)")
    return env, Path(args.log_dir) if args.log_dir else env_path.parent / "logs"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40, help="events to send (40)")
    parser.add_argument("--env-file", help="the stack's settings (default $STACK_DIR/stack.env, .local/stack.env)")
    parser.add_argument("--target-dir", default="target/debug", help="where the built binaries are (target/debug)")
    parser.add_argument("--log-dir", help="the functions' logs (default: the stack's logs directory)")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    if args.events < 15:
        parser.error("--events must be at least 15 (two in every 15 events are broken on purpose)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        env, log_dir = setup(args)
    except SetupError as e:
        print(f"redrive: {e}", file=sys.stderr)
        return 2
    prefix = f"redrive{uuid.uuid4().hex[:10]}"
    sqs = sqs_client(env)
    secrets = boto3.client(
        "secretsmanager", endpoint_url=env.get("AWS_ENDPOINT_URL") or None, region_name=env.get("AWS_REGION"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
    )  # fmt: skip
    good_secret = secrets.get_secret_value(SecretId=env["TRACKLAYER_SECRET_ID"])["SecretString"]
    secret_id = secrets.create_secret(Name=f"tracklayer/{prefix}", SecretString=good_secret)["ARN"]
    events = create_pair(sqs, f"{prefix}-events", EVENTS_MAX_RECEIVES)
    staging = create_pair(sqs, f"{prefix}-staging", STAGING_MAX_RECEIVES)
    run = Run(args, env, log_dir, generate(args.events, prefix), events, staging, secret_id)
    say("The way back from the dead-letter queues, on the local stack, through the real ingest and flush binaries")
    say(f"  run {prefix}: fresh queues (maxReceiveCount {EVENTS_MAX_RECEIVES} events, {STAGING_MAX_RECEIVES} staging), "
        f"secret {secret_id.rsplit(':', 1)[-1]}; logs {log_dir}/redrive-*.log")  # fmt: skip
    try:
        events_dead_lettered(run, sqs)
        events_redriven(run, sqs)
        chunks_dead_lettered(run, sqs, secrets, good_secret)
        chunks_redriven(run, sqs, secrets, good_secret)
        account(run, sqs)
    except (TimeoutError, RuntimeError, SetupError) as e:
        run.problems.append(str(e))
        say(f"    !! {e}")
    finally:
        for url in (events.url, events.dlq_url, staging.url, staging.dlq_url):
            sqs.delete_queue(QueueUrl=url)
        secrets.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    run.figures["ok"] = not run.problems
    run.figures["problems"] = run.problems
    if args.json:
        Path(args.json).write_text(json.dumps(run.figures, indent=2, default=str))
    say()
    if run.problems:
        say("REDRIVE FAILED:\n" + "\n".join(f"  - {p}" for p in run.problems))
        return 1
    f = run.figures
    say(f"Redrive OK: {f['messages_sent']} messages dead-lettered by a wrong staging queue URL and "
        f"{f['chunks_staged']} chunks by a wrong user came back after the fixes; {f['valid_sent']} events "
        f"loaded once, {f['bad_sent']} quarantined once.")  # fmt: skip
    say(
        "In AWS the same moves are `aws sqs start-message-move-task` (docs/operations.md, Redriving a dead-letter "
        "queue)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
