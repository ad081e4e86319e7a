"""The SQL API answers in Snowflake's documented formats, over the database the drivers see."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from sflocal import Control, Reply, SqlApi, insert_batch, make_events, sfquery


def test_success_body_has_the_documented_shape(api: SqlApi) -> None:
    request_id = str(uuid.uuid4())
    reply = api.submit("SELECT 1 AS ONE, 'x' AS LETTER", request_id=request_id)
    assert reply.status == 200
    body = reply.body
    handle = body["statementHandle"]
    assert body["code"] == "090001"
    assert body["sqlState"] == "00000"
    assert body["message"] == "Statement executed successfully."
    assert body["requestId"] == request_id
    assert body["statementStatusUrl"] == f"/api/v2/statements/{handle}?requestId={request_id}"
    assert isinstance(body["createdOn"], int)
    meta = body["resultSetMetaData"]
    assert meta["numRows"] == 1
    assert meta["format"] == "jsonv2"
    assert meta["partitionInfo"] == [{"rowCount": 1, "uncompressedSize": len('[["1","x"]]')}]
    assert [(c["name"], c["type"]) for c in meta["rowType"]] == [("ONE", "fixed"), ("LETTER", "text")]
    assert set(meta["rowType"][0]) >= {
        "name",
        "type",
        "nullable",
        "scale",
        "precision",
        "length",
        "byteLength",
        "database",
        "schema",
        "table",
    }
    assert body["data"] == [["1", "x"]]
    assert "stats" not in body


def test_values_are_strings_as_the_sql_api_gives_them(api: SqlApi) -> None:
    reply = api.submit(
        "SELECT 19.99::NUMBER(18,4) AS AMOUNT, '2024-11-02 08:00:00.123'::TIMESTAMP_NTZ AS TS, "
        "'2024-11-02'::DATE AS D, TRUE AS B, FALSE AS F, NULL AS N, PARSE_JSON('{\"a\": [1, 2]}') AS V, "
        "42 AS I, '1969-12-31 23:59:59.5'::TIMESTAMP_NTZ AS BEFORE_EPOCH"
    )
    assert reply.status == 200, reply.body
    assert reply.body["data"] == [
        ["19.9900", "1730534400.123000000", "20029", "true", "false", None, '{"a":[1,2]}', "42", "-0.500000000"]
    ]
    types = [c["type"] for c in reply.body["resultSetMetaData"]["rowType"]]
    assert types == [
        "fixed",
        "timestamp_ntz",
        "date",
        "boolean",
        "boolean",
        "text",
        "variant",
        "fixed",
        "timestamp_ntz",
    ]
    amount = reply.body["resultSetMetaData"]["rowType"][0]
    assert (amount["precision"], amount["scale"]) == (18, 4)


def test_nullable_false_turns_nulls_into_the_string_null(api: SqlApi) -> None:
    reply = api.http.request("POST", api.path() + "&nullable=false", api.body("SELECT NULL AS N"), api.headers)
    assert reply.body["data"] == [["null"]]


def test_batch_insert_answers_the_row_count_and_stats(api: SqlApi, table: str) -> None:
    statement, bindings = insert_batch(table, make_events(3))
    reply = api.submit(statement, bindings=bindings)
    assert reply.status == 200, reply.body
    assert reply.body["data"] == [["3"]]
    assert [c["name"] for c in reply.body["resultSetMetaData"]["rowType"]] == ["number of rows inserted"]
    assert reply.body["stats"] == {"numRowsInserted": 3}
    assert api.rows(f"SELECT EVENT_ID, OCCURRED_AT, AMOUNT FROM {table} ORDER BY EVENT_ID") == [
        ["evt-0", "1730534400.123000000", "19.9900"],
        ["evt-1", "1730534400.123000000", "19.9900"],
        ["evt-2", "1730534400.123000000", "19.9900"],
    ]


def test_update_and_delete_report_stats(api: SqlApi, table: str) -> None:
    statement, bindings = insert_batch(table, make_events(3))
    api.submit(statement, bindings=bindings)
    update = api.submit(f"UPDATE {table} SET AMOUNT = 1 WHERE EVENT_ID <> 'evt-0'")
    assert update.body["stats"] == {"numRowsUpdated": 2, "numDuplicateRowsUpdated": 0}
    delete = api.submit(f"DELETE FROM {table} WHERE EVENT_ID = 'evt-0'")
    assert delete.body["stats"] == {"numRowsDeleted": 1}


def test_rows_written_through_the_sql_api_are_read_by_the_connector(
    api: SqlApi, table: str, stack_env: dict[str, str]
) -> None:
    statement, bindings = insert_batch(table, make_events(2, prefix="conn"))
    assert api.submit(statement, bindings=bindings).status == 200
    result = sfquery(
        stack_env,
        f"SELECT EVENT_ID, OCCURRED_AT, AMOUNT, PAYLOAD:items[0]:sku::STRING AS SKU, "
        f"NULL AS NOTHING, 7 AS SEVEN FROM {table} ORDER BY EVENT_ID",
    )
    assert result == {
        "columns": ["EVENT_ID", "OCCURRED_AT", "AMOUNT", "SKU", "NOTHING", "SEVEN"],
        "rows": [
            ["conn-0", "2024-11-02 08:00:00.123", "19.9900", "SKU-0", None, "7"],
            ["conn-1", "2024-11-02 08:00:00.123", "19.9900", "SKU-1", None, "7"],
        ],
    }


def test_bindings_of_several_types(api: SqlApi) -> None:
    reply = api.submit(
        "SELECT ? AS T, ? + 1 AS I, ? AS D, ? AS B",
        bindings={
            "1": {"type": "TEXT", "value": "hello"},
            "2": {"type": "FIXED", "value": "41"},
            "3": {"type": "FIXED", "value": "19.99"},
            "4": {"type": "BOOLEAN", "value": "true"},
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body["data"] == [["hello", "42", "19.99", "true"]]


def test_a_bad_bind_value_is_100037(api: SqlApi) -> None:
    reply = api.submit("SELECT ?", bindings={"1": {"type": "FIXED", "value": "abc"}})
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (422, "100037", "22018")


def test_a_non_string_bind_value_is_a_bad_request(api: SqlApi) -> None:
    reply = api.submit("SELECT ?", bindings={"1": {"type": "FIXED", "value": 5}})
    assert (reply.status, reply.body["code"]) == (400, "390142")


def test_missing_object_is_422_002003_and_pollable(api: SqlApi) -> None:
    reply = api.submit("SELECT * FROM NO_SUCH_TABLE")
    assert reply.status == 422
    assert (reply.body["code"], reply.body["sqlState"]) == ("002003", "42S02")
    assert "NO_SUCH_TABLE" in reply.body["message"]
    handle = reply.body["statementHandle"]
    assert reply.body["statementStatusUrl"].startswith(f"/api/v2/statements/{handle}?requestId=")
    polled = api.poll(handle)
    assert (polled.status, polled.body) == (422, reply.body)


def test_syntax_error_is_001003(api: SqlApi) -> None:
    reply = api.submit("SELEC 1")
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (422, "001003", "42000")


def test_invalid_body_is_400(api: SqlApi) -> None:
    reply = api.http.request("POST", api.path(), b"not json", api.headers)
    assert (reply.status, reply.body["code"]) == (400, "390142")
    reply = api.http.request("POST", api.path(), {"database": "TRACKLAYER"}, api.headers)
    assert (reply.status, reply.body["code"]) == (400, "390142")


def test_retry_true_does_not_execute_a_succeeded_request_again(api: SqlApi, control: Control, table: str) -> None:
    statement, bindings = insert_batch(table, make_events(1))
    request_id = str(uuid.uuid4())
    first = api.submit(statement, bindings=bindings, request_id=request_id)
    assert first.status == 200
    again = api.submit(statement, bindings=bindings, request_id=request_id, retry=True)
    assert again.status == 200
    assert again.body == first.body
    assert api.count(table) == 1
    executed = [(s["retry"], s["executed"]) for s in control.requests()["statements"] if s["kind"] == "INSERT"]
    assert executed == [(False, True), (True, False)]


def test_a_repeated_request_id_without_retry_executes_again(api: SqlApi, table: str) -> None:
    statement, bindings = insert_batch(table, make_events(1))
    request_id = str(uuid.uuid4())
    first = api.submit(statement, bindings=bindings, request_id=request_id)
    second = api.submit(statement, bindings=bindings, request_id=request_id)
    assert (first.status, second.status) == (200, 200)
    assert first.body["statementHandle"] != second.body["statementHandle"]
    assert api.count(table) == 2


def test_retry_true_executes_a_failed_request_again(api: SqlApi, control: Control, table: str) -> None:
    statement, bindings = insert_batch(table, make_events(1))
    request_id = str(uuid.uuid4())
    control.fault({"snowflake_error": {"code": "000608", "sqlState": "57P03", "message": "Warehouse suspended."}})
    failed = api.submit(statement, bindings=bindings, request_id=request_id)
    assert (failed.status, failed.body["code"]) == (422, "000608")
    retried = api.submit(statement, bindings=bindings, request_id=request_id, retry=True)
    assert retried.status == 200
    assert retried.body["statementHandle"] != failed.body["statementHandle"]
    assert api.count(table) == 1


def test_slow_statement_answers_202_then_polls_to_200(api: SqlApi, control: Control, table: str) -> None:
    control.settings(async_threshold_ms=200)
    control.fault({"delay_ms": 1500}, statement_contains="INSERT INTO")
    statement, bindings = insert_batch(table, make_events(2))
    request_id = str(uuid.uuid4())
    started = time.monotonic()
    accepted = api.submit(statement, bindings=bindings, request_id=request_id)
    assert time.monotonic() - started < 1.2
    assert accepted.status == 202
    handle = accepted.body["statementHandle"]
    assert accepted.body == {
        "code": "333334",
        "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring "
        "and management.",
        "statementHandle": handle,
        "statementStatusUrl": f"/api/v2/statements/{handle}?requestId={request_id}",
    }
    assert api.poll(handle).status == 202
    resubmitted = api.submit(statement, bindings=bindings, request_id=request_id, retry=True)
    assert (resubmitted.status, resubmitted.body["statementHandle"]) == (202, handle)

    done = api.wait(handle)
    assert done.status == 200
    assert done.body["stats"] == {"numRowsInserted": 2}
    assert done.body["statementHandle"] == handle
    assert api.count(table) == 2


def test_async_true_answers_202_at_once(api: SqlApi) -> None:
    accepted = api.submit("SELECT 7", run_async=True)
    assert (accepted.status, accepted.body["code"]) == (202, "333334")
    assert api.wait(accepted.body["statementHandle"]).body["data"] == [["7"]]


def test_cancel_a_running_statement(api: SqlApi, control: Control, table: str) -> None:
    control.settings(async_threshold_ms=100)
    control.fault({"delay_ms": 3000}, statement_contains="INSERT INTO")
    statement, bindings = insert_batch(table, make_events(1))
    handle = api.submit(statement, bindings=bindings).body["statementHandle"]
    cancelled = api.cancel(handle)
    assert cancelled.status == 200
    assert (cancelled.body["code"], cancelled.body["sqlState"]) == ("000604", "57014")
    polled = api.poll(handle)
    assert (polled.status, polled.body["code"]) == (422, "000604")
    time.sleep(0.3)
    assert api.count(table) == 0
    again = api.cancel(handle)
    assert (again.status, again.body["code"]) == (200, "000000")


def test_unknown_handle_is_404(api: SqlApi) -> None:
    reply = api.poll(str(uuid.uuid4()))
    assert (reply.status, reply.body["code"]) == (404, "000709")


def test_statement_timeout_is_408(api: SqlApi, control: Control) -> None:
    control.fault({"delay_ms": 3000}, statement_contains="SELECT 8")
    started = time.monotonic()
    reply = api.submit("SELECT 8", timeout=1)
    assert 0.9 < time.monotonic() - started < 2.5
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (408, "000630", "57014")


def test_system_wait_waits_and_answers_as_documented(api: SqlApi) -> None:
    reply = api.submit("CALL SYSTEM$WAIT(200, 'MILLISECONDS')")
    assert reply.status == 200, reply.body
    assert [c["name"] for c in reply.body["resultSetMetaData"]["rowType"]] == ["SYSTEM$WAIT"]
    assert reply.body["data"] == [["waited 200 milliseconds"]]
    assert api.rows("SELECT SYSTEM$WAIT(0)") == [["waited 0 seconds"]]


def test_a_timeout_or_cancel_ends_system_wait_at_once(api: SqlApi, control: Control, table: str) -> None:
    """SYSTEM$WAIT checks for cancellation (docs): the 408 comes once the statement has stopped."""
    control.settings(async_threshold_ms=120_000)  # the answer comes when the statement has stopped
    started = time.monotonic()
    reply = api.submit("CALL SYSTEM$WAIT(60)", timeout=1)
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (408, "000630", "57014")
    assert time.monotonic() - started < 30, "the wait went on after the timeout"

    statement = f"CALL SYSTEM$WAIT(60); INSERT INTO {table} (EVENT_ID) VALUES ('after the wait')"
    accepted = api.submit(statement, run_async=True, parameters={"MULTI_STATEMENT_COUNT": "2"})
    assert accepted.status == 202, accepted.body
    handle = accepted.body["statementHandle"]
    assert api.cancel(handle).body["code"] == "000604"
    polled = api.poll(handle)
    assert (polled.status, polled.body["code"]) == (422, "000604")


def test_multi_statement_needs_the_count(api: SqlApi) -> None:
    refused = api.submit("SELECT 1; SELECT 2")
    assert (refused.status, refused.body["code"]) == (422, "000008")
    reply = api.submit(
        "SELECT 1; SELECT ?", parameters={"multi_statement_count": 2}, bindings={"1": {"type": "FIXED", "value": "2"}}
    )
    assert reply.status == 200, reply.body
    assert reply.body["data"] == [["Multiple statements executed successfully."]]
    handles = reply.body["statementHandles"]
    assert [api.poll(h).body["data"] for h in handles] == [[["1"]], [["2"]]]


def test_warehouse_statements_are_intercepted(api: SqlApi, control: Control) -> None:
    shown = api.submit("SHOW WAREHOUSES LIKE 'TRACKLAYER_WH'")
    assert shown.status == 200
    row = dict(zip([c["name"] for c in shown.body["resultSetMetaData"]["rowType"]], shown.body["data"][0], strict=True))
    assert (row["name"], row["state"], row["auto_resume"], row["auto_suspend"]) == (
        "TRACKLAYER_WH",
        "STARTED",
        "true",
        "60",
    )
    assert api.submit("SHOW WAREHOUSES LIKE 'OTHER%'").body["data"] == []

    assert api.rows("ALTER WAREHOUSE TRACKLAYER_WH SUSPEND") == [["Statement executed successfully."]]
    assert control.settings()["warehouses"]["TRACKLAYER_WH"]["state"] == "SUSPENDED"
    twice = api.submit("ALTER WAREHOUSE TRACKLAYER_WH SUSPEND")
    assert (twice.status, twice.body["code"]) == (422, "090064")
    assert api.submit("ALTER WAREHOUSE TRACKLAYER_WH RESUME").status == 200
    assert api.submit("ALTER WAREHOUSE TRACKLAYER_WH RESUME IF SUSPENDED").status == 200
    assert api.submit("ALTER WAREHOUSE NO_SUCH_WH SUSPEND").body["code"] == "002003"

    assert api.submit("USE WAREHOUSE TRACKLAYER_WH").status == 200
    assert api.submit("USE ROLE TRACKLAYER_WRITER").status == 200
    assert api.rows("SELECT CURRENT_ROLE(), CURRENT_WAREHOUSE()", role="TRACKLAYER_WRITER") == [
        ["TRACKLAYER_WRITER", "TRACKLAYER_WH"]
    ]
    assert api.rows("SELECT CURRENT_ROLE()") == [["PYTEST_ROLE"]]  # the user's default role


def test_a_suspended_warehouse_auto_resumes_for_dml(api: SqlApi, control: Control, table: str) -> None:
    control.settings(warehouses={"TRACKLAYER_WH": {"state": "SUSPENDED"}})
    statement, bindings = insert_batch(table, make_events(1))
    assert api.submit(statement, bindings=bindings).status == 200
    assert control.settings()["warehouses"]["TRACKLAYER_WH"] == {
        "state": "STARTED",
        "auto_resume": True,
        "auto_suspend": 60,
        "size": "X-Small",
        "resumes": 1,
    }


def test_a_suspended_warehouse_without_auto_resume_fails_dml(api: SqlApi, control: Control, table: str) -> None:
    control.settings(warehouses={"TRACKLAYER_WH": {"state": "SUSPENDED", "auto_resume": False, "auto_suspend": 600}})
    statement, bindings = insert_batch(table, make_events(1))
    reply = api.submit(statement, bindings=bindings)
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (422, "000608", "57P03")
    assert api.submit("SELECT 1").status == 200  # needs no warehouse
    shown = api.rows("SHOW WAREHOUSES LIKE 'TRACKLAYER_WH'")[0]
    assert (shown[1], shown[11], shown[12]) == ("SUSPENDED", "600", "false")


def test_four_concurrent_batches_all_land(api: SqlApi, table: str) -> None:
    def load(n: int) -> Reply:
        statement, bindings = insert_batch(table, make_events(50, prefix=f"c{n}"))
        return api.submit(statement, bindings=bindings)

    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(load, range(4)))
    assert [r.status for r in replies] == [200] * 4
    assert [r.body["stats"]["numRowsInserted"] for r in replies] == [50] * 4
    assert api.count(table) == 200


def test_warehouse_and_role_setup_statements_are_accepted(api: SqlApi, control: Control) -> None:
    created = api.rows(
        "CREATE WAREHOUSE IF NOT EXISTS PYTEST_WH WITH WAREHOUSE_SIZE = 'XSMALL' AUTO_SUSPEND = 60 "
        "AUTO_RESUME = FALSE INITIALLY_SUSPENDED = TRUE"
    )
    assert created == [["Warehouse PYTEST_WH successfully created."]]
    assert control.settings()["warehouses"]["PYTEST_WH"] == {
        "state": "SUSPENDED",
        "auto_resume": False,
        "auto_suspend": 60,
        "size": "XSMALL",
        "resumes": 0,
    }
    assert api.submit("CREATE WAREHOUSE PYTEST_WH").body["code"] == "002002"
    assert api.submit("ALTER WAREHOUSE PYTEST_WH SET AUTO_SUSPEND = 120 AUTO_RESUME = TRUE").status == 200
    assert control.settings()["warehouses"]["PYTEST_WH"]["auto_suspend"] == 120
    for statement in ("CREATE ROLE IF NOT EXISTS TRACKLAYER_WRITER", "GRANT USAGE ON WAREHOUSE PYTEST_WH TO ROLE X"):
        assert api.submit(statement).status == 200


def test_a_large_result_comes_in_partitions_the_later_ones_gzip(api: SqlApi, control: Control, table: str) -> None:
    statement, bindings = insert_batch(table, make_events(40, prefix="part"))
    assert api.submit(statement, bindings=bindings).status == 200
    expected = sorted([f"part-{i}", "19.9900"] for i in range(40))
    query = f"SELECT EVENT_ID, AMOUNT FROM {table} ORDER BY EVENT_ID"
    assert control.settings()["partition_bytes"] == 10_000_000  # the default: one partition here
    assert len(api.submit(query).body["resultSetMetaData"]["partitionInfo"]) == 1

    control.settings(partition_bytes=200)
    reply = api.submit(query)
    assert reply.status == 200, reply.body
    meta = reply.body["resultSetMetaData"]
    info = meta["partitionInfo"]
    assert meta["numRows"] == 40 and len(info) > 2
    assert sum(p["rowCount"] for p in info) == 40
    assert reply.body["data"] == expected[: info[0]["rowCount"]]
    assert info[0]["uncompressedSize"] == len(json.dumps(reply.body["data"], separators=(",", ":")))
    assert "compressedSize" not in info[0]
    rows = list(reply.body["data"])
    for n, part in enumerate(info[1:], start=1):
        fetched = api.poll(reply.body["statementHandle"], partition=n)
        assert (fetched.status, fetched.headers["content-encoding"]) == (200, "gzip")
        assert len(fetched.raw) == part["compressedSize"]
        body = json.loads(gzip.decompress(fetched.raw))
        assert list(body) == ["data"] and len(body["data"]) == part["rowCount"]
        assert part["uncompressedSize"] == len(json.dumps(body["data"], separators=(",", ":")))
        assert part["uncompressedSize"] <= 200
        rows += body["data"]
    assert rows == expected
    beyond = api.poll(reply.body["statementHandle"], partition=len(info))
    assert (beyond.status, beyond.body["code"]) == (400, "390142")
