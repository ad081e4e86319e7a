"""GET /__emulator/requests reports what reached the local Snowflake (control calls excluded)."""

from __future__ import annotations

import json
import uuid

from sflocal import Control, Http, SqlApi, insert_batch, make_events, sfquery


def test_report_counts_statements_by_path_and_kind(api: SqlApi, control: Control, http: Http, table: str) -> None:
    http.request("DELETE", "/__emulator/requests")  # forget the table's CREATE
    statement, bindings = insert_batch(table, make_events(2))
    insert_id = str(uuid.uuid4())
    insert = api.submit(statement, bindings=bindings, request_id=insert_id, parameters={"query_tag": "batch-1"})
    api.submit(statement, bindings=bindings, request_id=insert_id, retry=True)
    select = api.submit(f"SELECT COUNT(*) FROM {table}")
    api.submit("SHOW WAREHOUSES LIKE 'TRACKLAYER_WH'")
    api.submit("ALTER WAREHOUSE TRACKLAYER_WH RESUME IF SUSPENDED")
    api.submit("SELECT * FROM NO_SUCH_TABLE")
    api.poll(select.body["statementHandle"])
    control.faults()  # control calls are not counted
    control.settings()

    report = control.requests()
    assert report["total"] == 7
    assert report["by_path"] == {"/api/v2/statements": 6, "/api/v2/statements/{handle}": 1}
    assert report["by_kind"] == {"INSERT": 2, "SELECT": 2, "SHOW": 1, "ALTER": 1}
    first, retried = report["statements"][:2]
    assert first == {
        "request_id": insert_id,
        "retry": False,
        "kind": "INSERT",
        "query_tag": "batch-1",
        "status": 200,
        "bytes": len(json.dumps(api.body(statement, bindings=bindings, parameters={"query_tag": "batch-1"}))),
        "handle": insert.body["statementHandle"],
        "executed": True,
        "fault": None,
    }
    assert (retried["retry"], retried["executed"], retried["handle"]) == (True, False, first["handle"])
    assert [s["status"] for s in report["statements"]] == [200, 200, 200, 200, 200, 422]


def test_report_records_faults(api: SqlApi, control: Control) -> None:
    control.fault({"status": 503})
    api.submit("SELECT 1")
    (entry,) = control.requests()["statements"]
    assert (entry["status"], entry["fault"], entry["executed"], entry["handle"]) == (503, "status", False, None)


def test_driver_protocol_requests_are_counted_by_path(control: Control, stack_env: dict[str, str], schema: str) -> None:
    assert sfquery(stack_env, "SELECT 1 AS ONE") == {"columns": ["ONE"], "rows": [["1"]]}
    report = control.requests()
    assert report["by_path"] == {"/session/v1/login-request": 1, "/queries/v1/query-request": 1}
    assert report["total"] == 2
    assert report["statements"] == []


def test_report_resets(api: SqlApi, control: Control, http: Http) -> None:
    api.submit("SELECT 1")
    assert control.requests()["total"] == 1
    assert http.request("DELETE", "/__emulator/requests").status == 200
    assert control.requests() == {"total": 0, "by_path": {}, "by_kind": {}, "by_streaming": {}, "statements": []}
