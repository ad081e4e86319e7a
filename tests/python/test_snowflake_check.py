"""`infra/local/snowflake_check.py` (`make snowflake-check`), run as users run it.

* ``--local-only`` against the running stack: each rule's local answer is exactly what the
  emulator's docstring documents (status, code, sqlState, values, rows), the real binaries load
  1,000 sample events (every valid one once, the bad ones quarantined by reason), and nothing
  of the run is left behind.
* Without credentials: it names the variables it needs, exits 0 and contacts nothing.
* Both columns: the "account" column pointed at the local Snowflake too (SNOWFLAKE_HOST), with
  an encrypted key file and lower-case names, answers the same; the one setting made to differ
  (a monitor role the user was not granted) is the one row reported as a disagreement.
* Ctrl-C in the middle of a run still drops the scratch schema and deletes its secret.

Skipped only when the binaries are not built (`make test` builds them first).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization

from conftest import DATABASE, stack_env_path
from sflocal import Control, Identity, SqlApi, public_pem

REPO = Path(__file__).resolve().parents[2]
SCRIPT = ["-m", "tracklayer_local.snowflake_check"]
BINARIES = [REPO / "target" / "debug" / name for name in ("connection-test", "ingest", "flush")]
MISSING = [str(b.relative_to(REPO)) for b in BINARIES if not b.is_file()]
needs_binaries = pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not built: run `cargo build`")
TIMEOUT_S = 240

OK, ACCEPTED = [200, "090001"], [202, "333334"]
# What the emulator's docstring documents for each rule (rule numbers of snowflake_emulator.py).
DOCUMENTED = {
    # rule 1: exact names resolve; another case leaves that part of the context NULL, and a
    # statement needing it fails (391918 when the body named it, 090106 for the schema); a role
    # not granted fails whatever the statement (390189)
    "context.exact": {
        "answer": OK,
        "current": dict.fromkeys(("user", "role", "warehouse", "database", "schema"), "configured"),
    },
    "context.warehouse": {"select": OK, "current": {"warehouse": None}, "insert": [422, "391918"]},
    "context.database": {"select": OK, "current": {"database": None, "schema": None}, "insert": [422, "391918"]},
    "context.schema": {"select": OK, "current": {"schema": None}, "insert": [422, "090106"]},
    "context.role": {"select": [422, "390189"], "current": None, "insert": [422, "390189"]},
    # rule 2: strict PARSE_JSON everywhere, 'd' keeps the last value
    "parse_json.select": {"answer": [422, "100069"], "sqlState": "22P02"},
    "parse_json.flatten_insert": {"answer": [422, "100069"], "sqlState": "22P02", "rows": 0},
    "parse_json.last_value": {"select": OK, "value": "2", "insert": OK, "stored": ["2"]},
    # SQL API section: timeout 408 000630, cancel 000604, retry=true answers the running or
    # succeeded statement (same handle) whatever its text; rule 7: SYSTEM$WAIT
    "timeout": {"answer": [408, "000630"], "sqlState": "57014"},
    "cancel": {"submit": 202, "cancel": [200, "000604"], "poll": [422, "000604"]},
    "retry.while_running": {"first": ACCEPTED, "second": ACCEPTED, "same_handle": True, "rows": 1},
    "retry.other_text": {"first": OK, "second": OK, "same_handle": True, "rows": ["first"]},
    # rule 3: a rejected JWT says only the UUID; the reason is read by it
    "jwt.unknown_key": {"answer": [401, "390144"], "sqlState": "08001", "message": "JWT token is invalid. [<uuid>]"},
    "jwt.failure_details": {"answer": OK, "errorCode": "JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH"},
    # rule 4: compile errors before any row
    "compile.type_mismatch": {"answer": [422, "002023"], "sqlState": "22000", "rows": 0},
    "compile.missing_column": {"answer": [422, "000904"], "sqlState": "42000", "rows": 0},
    # error conventions: 394400 for an unknown PAT, 400 390142 without User-Agent, 404 000709
    "pat.invalid": {"answer": [401, "394400"]},
    "headers.no_user_agent": {"answer": [400, "390142"]},
    "handle.unknown": {"answer": [404, "000709"]},
}
# 1,000 events, one in 25 broken (cycling missing merchant_id, value "12,50", currency "EURO",
# cut-off JSON): 960 valid, 10 + 20 + 10 quarantined; one valid event in 100 repeats a key.


def clean_load(valid: int, invalid_field: int, invalid_json: int, missing_field: int, repeated: int) -> dict[str, Any]:
    """What the load step reports when every valid event landed once and every broken one is quarantined."""
    return {
        "flush": "loaded",
        "loaded": valid,
        "distinct": valid,
        "bad_loaded": 0,
        "quarantine": {"invalid_field": invalid_field, "invalid_json": invalid_json, "missing_field": missing_field},
        "repeated_key_last_value": repeated,
        "nested_field": repeated,
    }


LOAD_1000 = clean_load(960, invalid_field=20, invalid_json=10, missing_field=10, repeated=10)
LOAD_100 = clean_load(96, invalid_field=2, invalid_json=1, missing_field=1, repeated=1)


def check_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any SNOWFLAKE_* setting (stack.env exports two), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNOWFLAKE_")}
    return env | extra


def run_check(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "check.json"
    command = [sys.executable, *SCRIPT, *args, "--json", str(report), "--log-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert report.is_file(), f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    return done, json.loads(report.read_text())


def rows_by_rule(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["rule"]: row for row in report["rows"]}


def schema_exists(api: SqlApi, schema: str) -> bool:
    sql = f"SELECT COUNT(*) AS N FROM {DATABASE}.INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = '{schema}'"
    return api.rows(sql) != [["0"]]


def aws(stack_env: dict[str, str], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@needs_binaries
def test_local_column_answers_what_the_emulator_documents(
    stack_env: dict[str, str], api: SqlApi, tmp_path: Path
) -> None:
    done, report = run_check(["--local-only", "--env-file", str(stack_env_path())], check_env(), tmp_path)
    detail = f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, detail
    assert report["columns"] == ["local"] and report["problems"] == [] and report["failed_checks"] == [], detail
    rows = rows_by_rule(report)
    assert list(rows) == [*DOCUMENTED, "binaries.connection_test", "binaries.load"], detail
    for rule, documented in DOCUMENTED.items():
        assert rows[rule]["local"]["compared"] == documented, (rule, rows[rule]["local"])
        assert rows[rule]["account"] is None and rows[rule]["agree"] is None, rule

    observed = {rule: row["local"]["observed"] for rule, row in rows.items()}
    assert observed["parse_json.select"]["reply"]["message"].startswith(
        'Error parsing JSON: duplicate object attribute "a"'
    )
    assert "expecting VARIANT but got VARCHAR" in observed["compile.type_mismatch"]["reply"]["message"]
    assert "invalid identifier 'NO_SUCH_COLUMN'" in observed["compile.missing_column"]["reply"]["message"]
    assert observed["context.warehouse"]["sent"] == {"warehouse": "tracklayer_wh"}
    assert re.fullmatch(r"[0-9a-f-]{36}", observed["jwt.failure_details"]["failure_id"])
    retried = observed["retry.while_running"]
    assert [f["status"] for f in retried["final"]] == [200], retried  # one statement ran, and it succeeded

    connection = rows["binaries.connection_test"]["local"]
    assert connection["compared"] == {"ok": True, "failed": []} and connection["ok"] is True, connection
    assert [c["status"] for c in connection["observed"]["report"]["checks"]] == ["pass"] * 11, connection
    load = rows["binaries.load"]["local"]
    assert load["compared"] == LOAD_1000 and load["ok"] is True, load

    # the printed table: every rule, the account's column not run
    assert "your account" in done.stdout and done.stdout.count("not run") >= len(rows), detail
    for rule in rows:
        assert f"[{rule}]" in done.stdout, rule
    # nothing of the run is left: schema, queues, secret
    assert not schema_exists(api, report["schema"]), detail
    assert aws(stack_env, "sqs").list_queues(QueueNamePrefix=report["run"]).get("QueueUrls", []) == []
    names = [s["Name"] for s in aws(stack_env, "secretsmanager").list_secrets()["SecretList"]]
    assert not [n for n in names if report["run"] in n], names


def test_without_credentials_it_names_what_it_needs_and_contacts_nothing(
    stack_env: dict[str, str], control: Control, tmp_path: Path
) -> None:
    env = check_env(SNOWFLAKE_ACCOUNT="xy12345.eu-central-1", STACK_DIR=str(tmp_path))
    command = [sys.executable, *SCRIPT, "--build", "--env-file", str(stack_env_path())]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in ("SNOWFLAKE_USER", "SNOWFLAKE_PRIVATE_KEY_PATH", "SNOWFLAKE_ROLE", "SNOWFLAKE_WAREHOUSE"):
        assert any(line.split()[:1] == [name] and line.endswith("<- missing") for line in lines), (name, done.stdout)
    assert not any(line.split()[:1] == ["SNOWFLAKE_ACCOUNT"] and "missing" in line for line in lines), done.stdout
    assert "SNOWFLAKE_DATABASE" in done.stdout and "nothing was run or contacted" in done.stdout
    assert "cargo" not in done.stdout + done.stderr  # --build waits for credentials too
    assert control.call("GET", "/requests")["total"] == 0
    assert list(tmp_path.iterdir()) == []  # no private services were started


@needs_binaries
def test_the_account_column_runs_the_same_path_and_a_difference_is_reported(
    stack_env: dict[str, str], control: Control, api: SqlApi, tmp_path: Path
) -> None:
    identity = Identity("LOCALTEST", "CHECK_ACCOUNT")
    control.register(
        identity, rsa_public_key=public_pem(identity.key), default_role="TRACKLAYER_WRITER", roles=["TRACKLAYER_WRITER"]
    )
    key_file = tmp_path / "rsa_key.p8"
    key_file.write_bytes(
        identity.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret pass"),
        )
    )
    env = check_env(
        SNOWFLAKE_ACCOUNT="localtest",
        SNOWFLAKE_USER="check_account",
        SNOWFLAKE_PRIVATE_KEY_PATH=str(key_file),
        SNOWFLAKE_PRIVATE_KEY_PASSPHRASE="s3cret pass",
        SNOWFLAKE_ROLE="tracklayer_writer",
        SNOWFLAKE_WAREHOUSE="tracklayer_wh",
        SNOWFLAKE_HOST=stack_env["SNOWFLAKE_EMULATOR_URL"],
        SNOWFLAKE_MONITOR_ROLE="NOT_GRANTED_MONITOR",
    )
    done, report = run_check(["--events", "100", "--env-file", str(stack_env_path())], env, tmp_path)
    detail = f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    assert done.returncode == 1, detail  # a disagreement is a finding
    assert report["columns"] == ["local", "account"] and report["problems"] == [], detail
    assert report["disagree"] == ["jwt.failure_details"] and report["failed_checks"] == [], detail
    rows = rows_by_rule(report)
    for rule, row in rows.items():
        if rule != "jwt.failure_details":
            assert row["agree"] is True and row["account"]["compared"] == row["local"]["compared"], (rule, row)
    assert rows["jwt.failure_details"]["account"]["compared"] == {"answer": [422, "390189"], "errorCode": None}
    assert rows["binaries.load"]["account"]["compared"] == LOAD_100
    assert rows["binaries.connection_test"]["account"]["ok"] is True
    table_row = [line for line in done.stdout.splitlines() if line.startswith("SYSTEM$GET_LOGIN_FAILURE_DETAILS ")]
    assert len(table_row) == 1 and table_row[0].endswith("  NO"), detail
    assert not schema_exists(api, report["schema"]), detail
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert "s3cret pass" not in done.stdout + done.stderr + json.dumps(report)
    assert "PRIVATE KEY" not in json.dumps(report)


@needs_binaries
def test_an_interrupted_run_still_drops_its_schema_and_secret(
    stack_env: dict[str, str], api: SqlApi, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        *SCRIPT,
        "--local-only",
        "--env-file",
        str(stack_env_path()),
        "--log-dir",
        str(tmp_path),
    ]
    process = subprocess.Popen(
        command, cwd=REPO, env=check_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[str] = []
    schema = secret = None
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if m := re.search(r"scratch schema TRACKLAYER\.(TRACKLAYER_CHECK_\w+)", line):
                schema = m[1]
            if m := re.search(r"binaries: secret (\S+);", line):
                secret = m[1]
                assert schema_exists(api, schema), "".join(seen)
                process.send_signal(signal.SIGINT)
                break
        rest = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(seen) + rest
    assert process.returncode == 130, output
    assert "interrupted" in output and "!!" not in output, output
    assert schema and not schema_exists(api, schema), output
    secrets = aws(stack_env, "secretsmanager")
    assert secret and secret not in [s["Name"] for s in secrets.list_secrets()["SecretList"]], output
