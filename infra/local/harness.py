"""What the run scripts (benchmarks, chaos, demo, redrive, the Lambda host) and the tests share.

* the stack's settings: ``$STACK_DIR/stack.env`` (``stack.py up`` writes it) read into a dict;
* its SQS: a client for the stack's moto, queue pairs with a DLQ, queue depths, draining;
* its local Snowflake: the ``/__emulator`` control endpoints, queries through
  snowflake-connector-python (the drivers' protocol, as dbt and the Rust tests read), and one
  HTTP request per connection (the SQL API clients' transport);
* the functions' one-line JSON invocation summaries in their logs;
* the workspace's binaries, built with cargo on demand, and the one event generator
  (``sample-events``, crate ``tracklayer-testkit``) that benchmarks and tests send;
* output: progress lines on stderr, medians with their spread, Markdown tables (tabulate), and
  the command line that reproduces a run.

Standard library and boto3 only at import time (the Lambda host runs with no more); the
connector and tabulate are imported where they are used.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REGION = "us-east-1"
DATABASE, SCHEMA = "TRACKLAYER", "EVENTS"

# boto3 builds its clients at run time, so there is no static type to name: this alias says what
# the argument is.
SqsClient = Any
Progress = Callable[[str], None]


# ------------------------------------------------------------------------------------------------
# The stack's settings
# ------------------------------------------------------------------------------------------------


def stack_dir() -> Path:
    """``$STACK_DIR`` (default ``.local``), relative to the repository root unless absolute."""
    path = Path(os.environ.get("STACK_DIR", ".local"))
    return path if path.is_absolute() else REPO / path


def stack_env_path() -> Path:
    """Where ``stack.py up`` wrote the stack's settings."""
    return stack_dir() / "stack.env"


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments and lines without ``=`` skipped) as a dict."""
    pairs = (line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.strip().startswith("#")}


def add_stack_options(parser: argparse.ArgumentParser, json_help: str = "also write the JSON result here") -> None:
    """``--env-file`` (the stack's settings), ``--log-dir`` (the functions' logs) and ``--json``."""
    parser.add_argument("--env-file", type=Path, default=stack_env_path(), help="the stack's env file")
    parser.add_argument("--log-dir", type=Path, default=stack_dir() / "logs", help="where the functions' logs go")
    parser.add_argument("--json", type=Path, help=json_help)


def bounded(low: float, high: float | None = None, kind: type = int) -> Callable[[str], Any]:
    """An argparse ``type``: the option's text as ``kind``, refused (usage error, exit 2) outside
    ``low``..``high`` with the range in the message."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not in {low}..{'' if high is None else high}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value" messages
    return parse


def bench_parser(
    prog: str, doc: str, *, binaries: dict[str, str], memory: int = 256, seed: int = 20261102
) -> argparse.ArgumentParser:
    """A benchmark's parser: a path option per binary it runs (``{"flush": "flush"}`` is ``--flush``,
    default ``target/release/flush``), ``--memory`` (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``), ``--seed``
    (the generator's) and the stack's options (``add_stack_options``)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    for option, binary in binaries.items():
        parser.add_argument(f"--{option}", type=Path, default=REPO / "target" / "release" / binary)
    parser.add_argument("--memory", type=int, default=memory, help=f"AWS_LAMBDA_FUNCTION_MEMORY_SIZE, MB ({memory})")
    parser.add_argument("--seed", type=int, default=seed, help="generator seed")
    add_stack_options(parser)
    parser.set_defaults(bench_prog=prog, bench_binaries=binaries)
    return parser


def snowflake_port(env: dict[str, str]) -> int:
    """The local Snowflake's port, from ``SNOWFLAKE_EMULATOR_URL``."""
    return int(env["SNOWFLAKE_EMULATOR_URL"].rstrip("/").rsplit(":", 1)[1])


# ------------------------------------------------------------------------------------------------
# SQS
# ------------------------------------------------------------------------------------------------


def sqs_client(env: dict[str, str] | None = None, region: str | None = None) -> SqsClient:
    """An SQS client for ``AWS_ENDPOINT_URL`` (the stack's moto) with the env's test credentials."""
    import boto3

    env = dict(os.environ) if env is None else env
    return boto3.client(
        "sqs",
        endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        region_name=region or env.get("AWS_REGION") or DEFAULT_REGION,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
    )


@dataclass(frozen=True)
class QueueDepth:
    """A queue's approximate message counts, as GetQueueAttributes gives them."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def queue_depth(sqs: SqsClient, url: str) -> QueueDepth:
    """Visible, in-flight and delayed messages of the queue at `url`."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(DEPTH_ATTRIBUTES))["Attributes"]
    visible, in_flight, delayed = (int(attributes.get(name, 0)) for name in DEPTH_ATTRIBUTES)
    return QueueDepth(visible, in_flight, delayed)


def queue_arn(sqs: SqsClient, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def create_queue_pair(
    sqs: SqsClient, name: str, max_receive_count: int, attributes: dict[str, str] | None = None
) -> tuple[str, str]:
    """A queue named `name` whose redrive policy sends a message to `<name>-dlq` after
    `max_receive_count` receives; returns (queue URL, DLQ URL)."""
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dlq), "maxReceiveCount": max_receive_count}
    queue_attributes = {**(attributes or {}), "RedrivePolicy": json.dumps(redrive)}
    url = sqs.create_queue(QueueName=name, Attributes=queue_attributes)["QueueUrl"]
    return url, dlq


def drain(sqs: SqsClient, url: str, **receive: Any) -> list[dict[str, Any]]:
    """Receives and deletes every message visible now (PurgeQueue is allowed once a minute)."""
    messages: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, **receive)
        batch = got.get("Messages", [])
        if not batch:
            return messages
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        done = {e["Id"] for e in sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Successful", [])}
        messages.extend(m for i, m in enumerate(batch) if str(i) in done)


# ------------------------------------------------------------------------------------------------
# The local Snowflake
# ------------------------------------------------------------------------------------------------


def one_request(
    conn: http.client.HTTPConnection, method: str, path: str, payload: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Sends one request on ``conn`` and closes it (so a dropped connection never affects the
    next request); the status, the headers with lower-case names, and the body as received."""
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, raw
    finally:
        conn.close()


class Control:
    """The local Snowflake's ``/__emulator`` control endpoints (see the emulator package)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/__emulator"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else None

    def suspend_warehouses(self) -> int:
        """Suspends every warehouse (a statement that needs one then resumes it and counts a
        resume); returns the resumes counted so far, summed over the warehouses."""
        found = self.call("GET", "/settings").get("warehouses", {})
        self.call("POST", "/settings", {"warehouses": {name: {"state": "SUSPENDED"} for name in found}})
        return sum(int(w.get("resumes") or 0) for w in found.values())


def connect(port: int, database: str = DATABASE, schema: str = SCHEMA, network_timeout: int = 120) -> Any:
    """snowflake-connector-python to the local Snowflake (its fakesnow routes take any credentials)."""
    import snowflake.connector

    return snowflake.connector.connect(
        account="fakesnow",
        user="local",
        password="local",
        host="127.0.0.1",
        port=port,
        protocol="http",
        database=database,
        schema=schema,
        login_timeout=30,
        network_timeout=network_timeout,
    )


def dbt_environment(env: dict[str, str], schema: str) -> dict[str, str]:
    """This process's environment for `dbt` against the local Snowflake (infra/dbt/profiles.yml's
    target "local"), in `schema`, with dbt's telemetry off."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DBT_") and k not in ("SNOWFLAKE_HOST", "SNOWFLAKE_PORT")
    }
    environment.update(
        DBT_TARGET="local",
        DBT_SCHEMA=schema,
        SNOWFLAKE_HOST="127.0.0.1",
        SNOWFLAKE_PORT=str(snowflake_port(env)),
        DO_NOT_TRACK="1",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    return environment


def count_rows(port: int, table: str, column: str, prefix: str) -> int:
    """Rows of `table` whose `column` starts with `prefix`, read through the drivers' protocol."""
    conn = connect(port)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) AS N FROM {table} WHERE {column} LIKE %s", (prefix + "%",))
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def as_json_value(value: Any) -> str | None:
    """A result value as sfquery prints it: text as is, datetimes to the millisecond, else str()."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    return str(value)


def query(sql: str, port: int, database: str = DATABASE, schema: str = SCHEMA) -> dict[str, list]:
    """``{"columns": [...], "rows": [[...]]}`` of one statement, values as ``as_json_value`` gives them."""
    conn = connect(port, database, schema, network_timeout=60)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        columns = [d.name for d in cur.description]
        rows = [[as_json_value(v) for v in row] for row in cur.fetchall()]
    finally:
        conn.close()
    return {"columns": columns, "rows": rows}


# ------------------------------------------------------------------------------------------------
# The functions' invocation summaries
# ------------------------------------------------------------------------------------------------


def log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def invocation_summaries(log: Path, offset: int = 0, message: str = "ingest invocation summary") -> list[dict]:
    """The one-line JSON summaries the function wrote to `log` after byte `offset`, in order."""
    with open(log, "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", errors="replace")
    found = []
    for line in text.splitlines():
        if not line.lstrip().startswith("{") or message not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == message:
            found.append(record)
    return found


# ------------------------------------------------------------------------------------------------
# Binaries and the event generator
# ------------------------------------------------------------------------------------------------


def binary_path(binary: str, release: bool) -> Path:
    """Where cargo puts `binary` of this workspace, in the release or the debug profile."""
    return REPO / "target" / ("release" if release else "debug") / binary


@cache
def build_binary(package: str, binary: str, release: bool) -> Path:
    """``cargo build --locked [--release] -p <package> --bin <binary>`` (once per process; cargo
    does nothing when it is fresh) and the binary's path; RuntimeError with cargo's output if
    the build fails."""
    command = ["cargo", "build", "--locked", "--quiet", "-p", package, "--bin", binary]
    if release:
        command.append("--release")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-4000:]}")
    return binary_path(binary, release)


@dataclass
class SampleMessage:
    """One SQS message body from ``sample-events --format messages`` and what it holds."""

    body: str
    events: int
    array: bool
    defects: list[dict[str, str]] = field(default_factory=list)  # {"kind": ..., "reason": ...}

    @property
    def valid(self) -> int:
        return self.events - len(self.defects)


def sample_messages(
    events: int,
    seed: int,
    *,
    bad_every: int = 0,
    defects: Iterable[str] = (),
    id_prefix: str | None = None,
    per_message: int = 1,
    array_share: float = 0.0,
    array_sizes: tuple[int, int] = (2, 12),
    release: bool = False,
) -> list[SampleMessage]:
    """`events` realistic events from the Rust generator (testkit/src/sample.rs, ~600 bytes
    each) as message bodies: every `bad_every`-th event defective (cycling through `defects`,
    default all five kinds), ids ``<id_prefix>-v<n>``/``-b<n>`` when a prefix is given, bodies
    of `per_message` NDJSON lines or, for `array_share` of them, JSON arrays of `array_sizes`
    events. The same arguments always give the same bodies."""
    command = [
        str(build_binary("tracklayer-testkit", "sample-events", release)),
        *("--format", "messages", "--events", str(events), "--seed", str(seed)),
        *("--bad-every", str(bad_every), "--per-message", str(per_message)),
        *("--array-share", str(array_share), "--array-sizes", f"{array_sizes[0]}-{array_sizes[1]}"),
    ]
    if defects:
        command += ["--defects", ",".join(defects)]
    if id_prefix is not None:
        command += ["--id-prefix", id_prefix]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed: {done.stderr.strip()}")
    return [SampleMessage(**json.loads(line)) for line in done.stdout.splitlines()]


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def progress_to_stderr(name: str) -> Progress:
    """A progress function printing ``<name>: <line>`` on stderr."""

    def progress(line: str) -> None:
        print(f"{name}: {line}", file=sys.stderr, flush=True)

    return progress


def spread(values: Iterable[float], digits: int = 1, mean: bool = False) -> dict[str, float | None]:
    """Median, min and max (and mean), rounded; None each when there are no values."""
    values = list(values)
    keys = ("median", "min", "max", "mean") if mean else ("median", "min", "max")
    if not values:
        return dict.fromkeys(keys)
    figures = {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }
    if mean:
        figures["mean"] = round(statistics.fmean(values), digits)
    return figures


def span(values: dict[str, Any] | None, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    """``median (min-max)`` of a `spread`, each divided by `scale`; ``n/a`` without figures."""
    if not values or values.get("median") is None:
        return "n/a"

    def shown(value: float) -> str:
        return f"{value / scale:,.{digits}f}"

    return f"{shown(values['median'])}{unit} ({shown(values['min'])}-{shown(values['max'])})"


def markdown_table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A GitHub Markdown table; cells are shown as given (no number parsing)."""
    from tabulate import tabulate

    return tabulate(
        [[str(cell) for cell in row] for row in rows], headers=header, tablefmt="github", disable_numparse=True
    )


def with_command(lines: list[str], command: str) -> str:
    """A benchmark's section of BENCHMARKS.md: its lines, then the command that reproduces it."""
    return "\n".join([*lines, "", f"Command: `{command}`"])


def print_result(result: dict[str, Any], markdown: str, json_path: Path | None) -> None:
    """A benchmark's result: JSON on stdout (and to `json_path`), then its Markdown."""
    text = json.dumps(result, indent=2)
    if json_path:
        json_path.write_text(text + "\n")
    print(text)
    print()
    print(markdown)


def verdict(ok: bool | None) -> str:
    """A goal's outcome in a report: pass, FAIL, or n/a when it was not measured."""
    return "n/a" if ok is None else ("pass" if ok else "FAIL")


def stack_or_exit(args: argparse.Namespace) -> dict[str, str]:
    """The stack's settings, once every binary of a ``bench_parser`` command line is built and the
    stack is up; otherwise exit 2 with one line saying what to build or start."""
    problems = [
        f"{getattr(args, option)} is not built (cargo build --release -p {binary})"
        for option, binary in args.bench_binaries.items()
        if not getattr(args, option).is_file()
    ]
    if not args.env_file.is_file():
        problems.append(f"{args.env_file} missing: start the stack (python -m tracklayer_local.stack up)")
    if problems:
        print(f"{args.bench_prog}: {problems[0]}", file=sys.stderr)
        raise SystemExit(2)
    return read_env_file(args.env_file)


def shown_path(path: Path) -> str:
    """`path` relative to the repository root when it is inside it."""
    full = Path(path).resolve()
    return str(full.relative_to(REPO)) if full.is_relative_to(REPO) else str(path)


def command_line(argv: list[str] | None = None, module: str | None = None) -> str:
    """The command that reruns this process: ``[STACK_DIR=...] .venv/bin/python -m <module> <argv>``."""
    python = Path(sys.executable)
    shown_python = str(python.relative_to(REPO)) if python.is_relative_to(REPO) else str(python)
    if module is None:
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else None
    entry = ["-m", module] if module else [sys.argv[0]]
    prefix = f"STACK_DIR={shlex.quote(os.environ['STACK_DIR'])} " if "STACK_DIR" in os.environ else ""
    return prefix + shlex.join([shown_python, *entry, *(sys.argv[1:] if argv is None else argv)])


def wait_until(check: Callable[[], bool], what: str, timeout: float, interval: float = 0.5) -> None:
    """Polls `check` until it holds; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)
