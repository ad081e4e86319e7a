"""Side by side: the same events loaded by a typical Python loader and by our stream-mode ingest.

    .venv/bin/python -m tracklayer_local.bench_python_baseline [--events 20000] [--batch 1000] [--runs 3]
        [--ours target/release/ingest] [--json FILE]

Needs a running stack (``python -m tracklayer_local.stack up``; ``--env-file``, default ``$STACK_DIR/stack.env``)
and the release ingest binary.

The events are ``bench_ingest.py``'s: ``--events`` realistic ecommerce events of ~600 bytes, one per
message body, 1% invalid, identical bodies for both sides. Each run, in alternating order:

* **Python** (a fresh ``python`` process, ``--python-only``): what a user typically writes with
  snowflake-connector-python (this venv's) against the same local Snowflake through the drivers'
  protocol (``account="fakesnow", host="127.0.0.1", port=..., protocol="http"``, database
  TRACKLAYER, schema EVENTS): ``json.loads`` each body, check the required fields and that
  ``properties`` is an object, convert to the RAW_EVENTS columns (event_time to naive UTC
  ``datetime``, ``Decimal`` value, upper-case currency, properties re-serialised with
  ``json.dumps``, the original text as raw payload), and
  ``cursor.executemany("INSERT INTO RAW_EVENTS_PY (...) VALUES (%s, ...)", rows)`` every
  ``--batch`` rows; invalid events go to RAW_EVENTS_REJECTED_PY the same way. Simplification:
  ``PARSE_JSON`` is not allowed in a ``VALUES`` list, so RAW_EVENTS_PY has the same columns as
  RAW_EVENTS but PROPERTIES and RAW_PAYLOAD are VARCHAR (a user wanting VARIANTs would need
  ``INSERT ... SELECT`` or a stage: more work on the server, not on the client). Measured: the
  process's CPU time (user + system, ``time.process_time()``) from before ``connect`` to after
  ``close`` (interpreter start, imports and generating the bodies are excluded), its peak RSS
  (``ru_maxrss``, which does include the interpreter, the connector and the bodies held in
  memory; its RSS after the imports and after building the bodies is reported too), and the
  wall time.
* **Ours**: the real ``ingest`` binary in stream mode under ``lambda_host`` (a fresh process),
  invoked with SQS events of ``--batch`` messages (the template's batch size) holding the same
  bodies. Measured: the process's whole CPU time (initialisation included) and peak RSS (VmHWM),
  and the wall time of the invocations. Ours parses more bytes: each SQS record carries a
  240-character receipt handle, attributes and an MD5 besides the body.

Both sides' rows are counted back through the connector (valid events in the table, invalid ones
in the quarantine) and a run fails unless both loaded exactly the valid events. Wall times are
mostly the local Snowflake's (fakesnow over DuckDB, in one Python process on the same cores):
it executes a 1,000-row ``VALUES`` list far more slowly than a real warehouse would, so compare
client CPU and memory, not wall time.

Prints progress on stderr, then a JSON result and a Markdown table (medians, min-max, and the
ratio ours / Python of the medians). Exit status 0 if every run loaded what it should, else 1.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tracklayer_local.bench_ingest import EVENT_ID_SLOT, make_event, make_templates
from tracklayer_local.harness import (
    bench_parser,
    bounded,
    command_line,
    connect,
    count_rows,
    markdown_table,
    print_result,
    progress_to_stderr,
    snowflake_port,
    span,
    spread,
    stack_or_exit,
    with_command,
)

PY_TABLE = "RAW_EVENTS_PY"
PY_REJECTED = "RAW_EVENTS_REJECTED_PY"
PY_COLUMNS = (
    "EVENT_ID, EVENT_TIME, MERCHANT_ID, EVENT_NAME, USER_ID, ANONYMOUS_ID, ORDER_ID, PLATFORM, SOURCE, "
    "VALUE, CURRENCY, CONSENT_STATUS, PROPERTIES, RAW_PAYLOAD"
)
PY_DDL = f"""CREATE TABLE IF NOT EXISTS {PY_TABLE} (
EVENT_ID STRING NOT NULL, EVENT_TIME TIMESTAMP_NTZ NOT NULL, LOADED_AT TIMESTAMP_NTZ DEFAULT CURRENT_TIMESTAMP(),
MERCHANT_ID STRING NOT NULL, EVENT_NAME STRING NOT NULL, USER_ID STRING, ANONYMOUS_ID STRING, ORDER_ID STRING,
PLATFORM STRING, SOURCE STRING, VALUE NUMBER(18, 4), CURRENCY STRING, CONSENT_STATUS STRING,
PROPERTIES VARCHAR, RAW_PAYLOAD VARCHAR)"""
PY_REJECTED_DDL = f"""CREATE TABLE IF NOT EXISTS {PY_REJECTED} (
REJECTED_AT TIMESTAMP_NTZ DEFAULT CURRENT_TIMESTAMP(), SOURCE_MESSAGE_ID STRING, EVENT_ID STRING,
MERCHANT_ID STRING, REASON STRING, DETAIL STRING, RAW_TEXT VARCHAR)"""


progress = progress_to_stderr("bench_python_baseline")


def bodies_for(events: int, seed: int, tag: str) -> list[str]:
    """The message bodies both sides load: bench_ingest's events with ids `<tag>-<index>-...`."""
    templates, _ = make_templates(events, seed)
    return [t.replace(EVENT_ID_SLOT, f"{tag}-{i:06d}") for i, t in enumerate(templates)]


# ------------------------------------------------------------------------------------------------
# The Python loader, as a user would write it
# ------------------------------------------------------------------------------------------------


def python_loader(bodies: list[str], message_ids: list[str], port: int, batch: int) -> dict[str, int]:
    """Parses, converts and inserts `bodies` with executemany; returns row counts."""
    from datetime import UTC, datetime
    from decimal import Decimal, InvalidOperation

    insert = f"INSERT INTO {PY_TABLE} ({PY_COLUMNS}) VALUES ({', '.join(['%s'] * 14)})"
    reject = (
        f"INSERT INTO {PY_REJECTED} (SOURCE_MESSAGE_ID, EVENT_ID, MERCHANT_ID, REASON, DETAIL, RAW_TEXT) "
        "VALUES (%s, %s, %s, %s, %s, %s)"
    )
    conn = connect(port, network_timeout=600)
    try:
        cur = conn.cursor()
        cur.execute(PY_DDL)
        cur.execute(PY_REJECTED_DDL)
        rows: list[tuple] = []
        rejected: list[tuple] = []
        loaded = quarantined = 0
        for body, message_id in zip(bodies, message_ids, strict=True):
            event = None
            try:
                event = json.loads(body)
                for field in ("event_id", "event_time", "merchant_id", "event_name"):
                    if not event.get(field):
                        raise ValueError(f"missing {field}")
                stamp = event["event_time"]
                if isinstance(stamp, (int, float)):
                    when = datetime.fromtimestamp(stamp / 1000, UTC)
                else:
                    when = datetime.fromisoformat(stamp)
                    if when.tzinfo is None:
                        raise ValueError("event_time without an offset")
                when = when.astimezone(UTC).replace(tzinfo=None)
                value = event.get("value")
                if value is not None:
                    value = Decimal(str(value)).quantize(Decimal("0.0001"))
                currency = event.get("currency")
                if currency is not None:
                    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
                        raise ValueError(f"bad currency {currency!r}")
                    currency = currency.upper()
                properties = event.get("properties")
                if properties is not None and not isinstance(properties, dict):
                    raise ValueError("properties is not an object")
                rows.append(
                    (
                        str(event["event_id"]), when, event["merchant_id"], event["event_name"].strip(),
                        event.get("user_id"), event.get("anonymous_id"), event.get("order_id"),
                        event.get("platform"), event.get("source"), value, currency, event.get("consent_status"),
                        json.dumps(properties) if properties is not None else None, body,
                    )
                )  # fmt: skip
            except (ValueError, TypeError, KeyError, AttributeError, InvalidOperation) as e:
                event_id = event.get("event_id") if isinstance(event, dict) else None
                rejected.append((message_id, event_id, None, type(e).__name__, str(e)[:200], body))
            if len(rows) >= batch:
                cur.executemany(insert, rows)
                loaded += len(rows)
                rows = []
            if len(rejected) >= batch:
                cur.executemany(reject, rejected)
                quarantined += len(rejected)
                rejected = []
        if rows:
            cur.executemany(insert, rows)
            loaded += len(rows)
        if rejected:
            cur.executemany(reject, rejected)
            quarantined += len(rejected)
    finally:
        conn.close()
    return {"loaded": loaded, "quarantined": quarantined}


def vm_rss_kb() -> int | None:
    """This process's resident set size now (VmRSS), in kB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def python_only(args: argparse.Namespace) -> int:
    """One Python run in this process: prints its measurements as JSON."""
    import snowflake.connector  # noqa: F401 - imported before the measurement starts, as in a warm process

    rss_imports = vm_rss_kb()
    bodies = bodies_for(args.events, args.seed, args.tag)
    message_ids = [str(uuid.UUID(int=i)) for i in range(len(bodies))]
    rss_before = vm_rss_kb()
    cpu0, wall0 = time.process_time(), time.monotonic()
    counts = python_loader(bodies, message_ids, args.port, args.batch)
    cpu = (time.process_time() - cpu0) * 1000
    wall = (time.monotonic() - wall0) * 1000
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                **counts,
                "cpu_ms": round(cpu, 1),
                "wall_ms": round(wall, 1),
                "peak_rss_kb": usage.ru_maxrss,
                "rss_after_imports_kb": rss_imports,
                "rss_before_load_kb": rss_before,
            }
        )
    )
    return 0


# ------------------------------------------------------------------------------------------------
# Ours, and the comparison
# ------------------------------------------------------------------------------------------------


def run_ours(args: argparse.Namespace, stack: dict[str, str], bodies: list[str]) -> dict[str, Any]:
    from tracklayer_local.lambda_host import LambdaHost

    env = {
        **stack,
        "TRACKLAYER_LOAD_MODE": "stream",
        "TRACKLAYER_SECRET_ID": stack.get("TRACKLAYER_SECRET_ID", "tracklayer/snowflake"),
    }
    events = [make_event(bodies[i : i + args.batch], "unused") for i in range(0, len(bodies), args.batch)]
    log = args.log_dir / "bench-baseline-ingest.log"
    wall = 0.0
    failures = 0
    with LambdaHost(args.ours, "ingest", env=env, timeout=120, memory_mb=args.memory, log=log) as host:
        if not host.wait_ready():
            raise RuntimeError(f"ingest did not start: {host.init_error or host.log_tail()}")
        for event in events:
            ok, payload = host.invoke(event)
            wall += host.durations_ms[-1]
            if not ok or (payload or {}).get("batchItemFailures"):
                failures += 1
        time.sleep(0.2)
        host.cpu_ms()  # a last sample before the stop
    summary = host.summary()
    return {
        "cpu_ms": summary["cpu_ms"],
        "wall_ms": round(wall, 1),
        "peak_rss_kb": summary["peak_rss_kb"],
        "invocations": len(events),
        "failed_invocations": failures,
        "restarts": summary["restarts"],
    }


def run_python(args: argparse.Namespace, port: int, tag: str) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "tracklayer_local.bench_python_baseline", "--python-only", "--events", str(args.events),
        "--batch", str(args.batch), "--seed", str(args.seed),
        "--port", str(port), "--tag", tag,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the Python loader failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace, stack: dict[str, str]) -> dict[str, Any]:
    port = snowflake_port(stack)
    invalid = sum(1 for i in range(args.events) if i % 100 == 50)
    valid = args.events - invalid
    runs = []
    for number in range(1, args.runs + 1):
        run: dict[str, Any] = {"run": number}
        order = ("python", "ours") if number % 2 else ("ours", "python")
        for side in order:
            tag = f"{'p' if side == 'python' else 'o'}{uuid.uuid4().hex[:9]}"
            if side == "python":
                measured = run_python(args, port, tag)
                measured["rows"] = count_rows(port, PY_TABLE, "EVENT_ID", tag + "-")
                measured["rejected_rows"] = measured.get("quarantined")
            else:
                measured = run_ours(args, stack, bodies_for(args.events, args.seed, tag))
                measured["rows"] = count_rows(port, "RAW_EVENTS", "EVENT_ID", tag + "-")
            measured["ok"] = measured["rows"] == valid and not measured.get("failed_invocations")
            measured["cpu_us_per_event"] = round(measured["cpu_ms"] * 1000 / args.events, 2)
            run[side] = measured
            progress(
                f"run {number} {side}: cpu {measured['cpu_ms']} ms ({measured['cpu_us_per_event']} us/event), "
                f"wall {measured['wall_ms']} ms, peak RSS {measured['peak_rss_kb'] / 1024:.1f} MB, "
                f"{measured['rows']} rows {'ok' if measured['ok'] else 'WRONG (expected ' + str(valid) + ')'}"
            )
        run["cpu_ratio"] = (
            round(run["ours"]["cpu_ms"] / run["python"]["cpu_ms"], 4) if run["python"]["cpu_ms"] else None
        )
        runs.append(run)

    def side(name: str, key: str) -> dict[str, float | None]:
        return spread([r[name][key] for r in runs if r[name].get(key) is not None], digits=3)

    summary = {
        name: {key: side(name, key) for key in ("cpu_ms", "cpu_us_per_event", "wall_ms", "peak_rss_kb")}
        for name in ("python", "ours")
    }
    summary["python"]["rss_after_imports_kb"] = side("python", "rss_after_imports_kb")
    summary["python"]["rss_before_load_kb"] = side("python", "rss_before_load_kb")
    py_cpu, our_cpu = summary["python"]["cpu_ms"]["median"], summary["ours"]["cpu_ms"]["median"]
    summary["cpu_ratio_of_medians"] = round(our_cpu / py_cpu, 4) if py_cpu else None
    summary["cpu_ratio_per_run"] = spread([r["cpu_ratio"] for r in runs if r["cpu_ratio"] is not None], digits=3)
    py_rss, our_rss = summary["python"]["peak_rss_kb"]["median"], summary["ours"]["peak_rss_kb"]["median"]
    summary["rss_ratio_of_medians"] = round(our_rss / py_rss, 4) if py_rss else None
    return {
        "events": args.events,
        "valid": valid,
        "batch": args.batch,
        "runs": runs,
        "summary": summary,
        "all_ok": all(r["python"]["ok"] and r["ours"]["ok"] for r in runs),
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]

    lines = [
        f"{result['events']:,} events (~600 B, 1% invalid), batches of {result['batch']:,}; "
        f"{len(result['runs'])} runs, alternating which side goes first.",
        "",
    ]
    header = ["loader", "client CPU, ms", "CPU per event, us", "peak RSS, MB", "wall, ms (mostly the local server)"]
    sides = (("python", "Python: snowflake-connector-python executemany"), ("ours", "ours: ingest, stream mode"))
    rows = [
        [
            label, span(s[name]["cpu_ms"]), span(s[name]["cpu_us_per_event"], digits=2),
            span(s[name]["peak_rss_kb"], 1024), span(s[name]["wall_ms"], digits=0),
        ]
        for name, label in sides
    ]  # fmt: skip
    lines.append(markdown_table(header, rows))
    ratio = s["cpu_ratio_per_run"]
    lines += [
        "",
        f"Client CPU ours / Python: {s['cpu_ratio_of_medians']:.3f} (ratio of medians; per run "
        f"{ratio['median']:.3f}, {ratio['min']:.3f}-{ratio['max']:.3f}); peak RSS ours / Python: "
        f"{s['rss_ratio_of_medians']:.3f}. Python's RSS after importing the connector: "
        f"{span(s['python']['rss_after_imports_kb'], 1024)} MB; with the bodies, before loading: "
        f"{span(s['python']['rss_before_load_kb'], 1024)} MB.",
    ]
    return with_command(lines, result["command"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser("bench_python_baseline", __doc__, binaries={"ours": "ingest"})
    parser.add_argument("--events", type=bounded(100), default=20_000, help="events per side per run (20000)")
    parser.add_argument(
        "--batch", type=bounded(1, 10_000), default=1000, help="rows an executemany, messages a call (1000)"
    )
    parser.add_argument("--runs", type=bounded(1), default=3, help="runs of both sides (3)")
    parser.add_argument("--python-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.python_only:
        return python_only(args)
    stack = stack_or_exit(args)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = {"command": command_line(), "ours_binary": str(args.ours), **compare(args, stack)}
    result["total_s"] = round(time.monotonic() - started, 1)
    print_result(result, markdown(result), args.json)
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
