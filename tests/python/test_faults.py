"""Fault rules make the next matching requests fail the ways Snowflake and networks fail."""

from __future__ import annotations

import json
import time
import uuid
from http.client import IncompleteRead
from typing import Any

import pytest

from sflocal import Control, Http, SqlApi, insert_batch, make_events


def submit_raw(
    http: Http, api: SqlApi, statement: str, bindings: dict, request_id: str, retry: bool = False
) -> tuple[int, bytes]:
    """POST a statement with http.client and read the whole answer (raises if the connection drops)."""
    conn = http.connection()
    try:
        conn.request(
            "POST", api.path(request_id, retry), json.dumps(api.body(statement, bindings=bindings)), api.headers
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "390503"), (500, "000603"), (502, "390502"), (504, "390504")],
)
def test_status_fault_answers_without_executing(
    api: SqlApi, control: Control, table: str, status: int, code: str
) -> None:
    control.fault({"status": status})
    statement, bindings = insert_batch(table, make_events(1))
    reply = api.submit(statement, bindings=bindings)
    assert (reply.status, reply.body["code"]) == (status, code)
    assert control.faults() == []
    assert api.count(table) == 0


def test_429_has_code_390505_and_optional_headers(api: SqlApi, control: Control) -> None:
    control.fault({"status": 429, "headers": {"Retry-After": "2"}})
    reply = api.submit("SELECT 1")
    assert (reply.status, reply.body["code"]) == (429, "390505")
    assert reply.headers["retry-after"] == "2"


def test_snowflake_error_422_is_pollable(api: SqlApi, control: Control, table: str) -> None:
    error = {"status": 422, "code": "000608", "sqlState": "57P03", "message": "Warehouse is suspended."}
    control.fault({"snowflake_error": error})
    statement, bindings = insert_batch(table, make_events(1))
    reply = api.submit(statement, bindings=bindings)
    assert reply.status == 422
    assert {k: reply.body[k] for k in ("code", "sqlState", "message")} == {
        "code": "000608",
        "sqlState": "57P03",
        "message": "Warehouse is suspended.",
    }
    assert api.poll(reply.body["statementHandle"]).body == reply.body
    assert api.count(table) == 0


@pytest.mark.parametrize(
    "error",
    [
        {
            "status": 401,
            "code": "390422",
            "sqlState": "08004",
            "message": "IP 10.0.0.1 is not allowed to access Snowflake.",
        },
        {"status": 422, "code": "003001", "sqlState": "42501", "message": "Insufficient privileges."},
        {"status": 403, "code": "390432", "sqlState": "08004", "message": "Network policy is required."},
    ],
)
def test_snowflake_error_any_status_and_code(api: SqlApi, control: Control, error: dict) -> None:
    control.fault({"snowflake_error": error})
    reply = api.submit("SELECT 1")
    assert reply.status == error["status"]
    assert {k: reply.body[k] for k in ("code", "sqlState", "message")} == {
        k: error[k] for k in ("code", "sqlState", "message")
    }


def test_after_execute_503_leaves_the_row_inserted_and_retry_does_not_repeat_it(
    api: SqlApi, control: Control, table: str
) -> None:
    control.fault({"status": 503}, phase="after_execute", statement_contains="INSERT INTO")
    statement, bindings = insert_batch(table, make_events(1))
    request_id = str(uuid.uuid4())
    lost = api.submit(statement, bindings=bindings, request_id=request_id)
    assert lost.status == 503
    assert api.count(table) == 1
    retried = api.submit(statement, bindings=bindings, request_id=request_id, retry=True)
    assert (retried.status, retried.body["stats"]) == (200, {"numRowsInserted": 1})
    assert api.count(table) == 1


@pytest.mark.parametrize(
    ("phase", "rows_after_drop", "retried_stats"),
    [
        # before execute: the drop raises and inserts nothing; the retry inserts the row
        ("before_execute", 0, None),
        # after execute: the drop raises but the row is in; the retry answers with the first run's stats
        ("after_execute", 1, {"numRowsInserted": 1}),
    ],
    ids=["before_execute_raises_and_inserts_nothing", "after_execute_raises_but_the_row_is_in"],
)
def test_drop_connection(
    http: Http,
    api: SqlApi,
    control: Control,
    table: str,
    phase: str,
    rows_after_drop: int,
    retried_stats: dict[str, int] | None,
) -> None:
    control.fault({"drop_connection": True}, phase=phase, statement_contains="INSERT INTO")
    statement, bindings = insert_batch(table, make_events(1))
    request_id = str(uuid.uuid4())
    with pytest.raises(IncompleteRead):
        submit_raw(http, api, statement, bindings, request_id)
    assert api.count(table) == rows_after_drop
    status, raw = submit_raw(http, api, statement, bindings, request_id, retry=True)
    assert status == 200
    if retried_stats is not None:
        assert json.loads(raw)["stats"] == retried_stats
    assert api.count(table) == 1


def test_drop_connection_also_breaks_requests_library(
    http: Http, api: SqlApi, control: Control, stack_env: dict[str, str]
) -> None:
    import requests  # installed with moto and the connector

    control.fault({"drop_connection": True})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.post(
            stack_env["SNOWFLAKE_EMULATOR_URL"] + api.path(), json=api.body("SELECT 1"), headers=api.headers, timeout=10
        )


def test_delay_before_execute_slows_the_answer(api: SqlApi, control: Control) -> None:
    control.fault({"delay_ms": 600})
    started = time.monotonic()
    reply = api.submit("SELECT 1")
    assert reply.status == 200
    assert time.monotonic() - started >= 0.6


def test_delay_after_execute_holds_the_answer_back(api: SqlApi, control: Control, table: str) -> None:
    control.fault({"delay_ms": 600}, phase="after_execute")
    statement, bindings = insert_batch(table, make_events(1))
    started = time.monotonic()
    reply = api.submit(statement, bindings=bindings)
    assert reply.status == 200
    assert time.monotonic() - started >= 0.6
    assert api.count(table) == 1


def test_count_and_statement_filter(api: SqlApi, control: Control, table: str) -> None:
    control.fault({"status": 503}, count=2, statement_contains="insert into")
    assert api.submit("SELECT 1").status == 200  # does not match: the rule stays
    assert control.faults()[0]["remaining"] == 2
    statement, bindings = insert_batch(table, make_events(1))
    assert [api.submit(statement, bindings=bindings).status for _ in range(3)] == [503, 503, 200]
    assert control.faults() == []


def test_faults_on_polls(api: SqlApi, control: Control) -> None:
    handle = api.submit("SELECT 1").body["statementHandle"]
    control.fault({"status": 503}, method="GET", path_prefix="/api/v2/statements/")
    assert api.poll(handle).status == 503
    assert api.poll(handle).status == 200


def test_faults_are_listed_and_cleared(control: Control, http: Http) -> None:
    control.fault({"status": 503}, count=3)
    control.fault({"delay_ms": 10}, phase="after_execute", method="GET")
    listed = control.faults()
    assert [(f["remaining"], f["phase"], f["action"]) for f in listed] == [
        (3, "before_execute", {"status": 503}),
        (1, "after_execute", {"delay_ms": 10}),
    ]
    assert http.request("DELETE", "/__emulator/faults").body == {"cleared": 2}
    assert control.faults() == []


def test_invalid_fault_is_rejected(http: Http) -> None:
    reply = http.request("POST", "/__emulator/faults", {"action": {"status": 503, "delay_ms": 5}})
    assert reply.status == 400


def test_after_execute_fault_on_cancel_still_cancels(api: SqlApi, control: Control, table: str) -> None:
    control.settings(async_threshold_ms=100)
    control.fault({"delay_ms": 3000}, statement_contains="INSERT INTO")
    statement, bindings = insert_batch(table, make_events(1))
    handle = api.submit(statement, bindings=bindings).body["statementHandle"]
    control.fault({"status": 503}, phase="after_execute", method="POST", path_prefix=f"/api/v2/statements/{handle}")
    assert api.cancel(handle).status == 503
    polled = api.poll(handle)
    assert (polled.status, polled.body["code"]) == (422, "000604")


def test_drop_connection_on_a_poll(http: Http, api: SqlApi, control: Control) -> None:
    handle = api.submit("SELECT 1").body["statementHandle"]
    control.fault({"drop_connection": True}, method="GET", path_prefix="/api/v2/statements/")
    conn = http.connection()
    try:
        conn.request("GET", f"/api/v2/statements/{handle}", headers=api.headers)
        with pytest.raises(IncompleteRead):
            conn.getresponse().read()
    finally:
        conn.close()
    assert api.poll(handle).status == 200


# ------------------------------------------------------------------------------------------------
# Probabilistic rules: "probability" and "seed"
# ------------------------------------------------------------------------------------------------


def probabilistic_fault(control: Control, p: float, count: int = 1000, **extra: Any) -> dict:
    spec = {"match": {"method": "POST", "path_prefix": "/api/v2/statements"}, "action": {"status": 503}}
    return control.call("POST", "/faults", {**spec, "count": count, "probability": p, **extra})


def statuses(api: SqlApi, requests: int) -> list[int]:
    return [api.submit("SELECT 1").status for _ in range(requests)]


def test_probability_with_a_rule_seed_is_exact_and_reproducible(api: SqlApi, control: Control) -> None:
    import random

    described = probabilistic_fault(control, 0.5, seed=1234)
    assert (described["probability"], described["seed"], described["taken"]) == (0.5, 1234, 0)
    first = statuses(api, 200)
    rng = random.Random(1234)  # the documented draw: rng.random() < p, once per matching request
    assert first == [503 if rng.random() < 0.5 else 200 for _ in range(200)]
    faulted = first.count(503)
    assert 75 <= faulted <= 125  # binomial(200, 0.5): 100 +- 3.5 sigma
    assert set(first) == {200, 503}
    [rule] = control.faults()
    assert (rule["taken"], rule["remaining"]) == (faulted, 1000 - faulted)

    control.call("DELETE", "/faults")
    probabilistic_fault(control, 0.5, seed=1234)
    assert statuses(api, 200) == first  # same seed, same requests: same faults
    assert control.requests()["statements"][-1]["fault"] in (None, "status")


def test_settings_seed_drives_rules_without_their_own(api: SqlApi, control: Control) -> None:
    assert control.settings(seed=99)["seed"] == 99
    probabilistic_fault(control, 0.25)
    first = statuses(api, 120)
    assert 10 <= first.count(503) <= 50  # binomial(120, 0.25): 30 +- 4 sigma

    control.call("DELETE", "/faults")
    control.settings(seed=99)  # posting the seed again restarts the sequence
    probabilistic_fault(control, 0.25)
    assert statuses(api, 120) == first

    control.call("DELETE", "/faults")
    control.settings(seed=100)
    probabilistic_fault(control, 0.25)
    assert statuses(api, 120) != first
    assert control.settings()["seed"] == 100
    control.reset()
    assert control.settings()["seed"] is None


def test_a_lost_draw_falls_through_to_the_next_rule_and_count_bounds_uses(api: SqlApi, control: Control) -> None:
    probabilistic_fault(control, 0.5, count=5, seed=7)
    control.fault({"status": 429}, count=1000)
    replies = statuses(api, 60)
    assert replies.count(503) == 5  # the rule is used up after 5 wins, then removed
    assert replies.count(429) == 55  # every other request falls through to the second rule
    assert [f["action"] for f in control.faults()] == [{"status": 429}]
    assert [e["fault"] for e in control.requests()["statements"]] == ["status"] * 60


def test_probability_one_is_the_plain_rule(api: SqlApi, control: Control) -> None:
    probabilistic_fault(control, 1, count=3)
    assert statuses(api, 4) == [503, 503, 503, 200]


@pytest.mark.parametrize(
    "extra",
    [
        {"probability": 0},
        {"probability": 1.5},
        {"probability": -0.1},
        {"probability": "half"},
        {"seed": "x"},
        {"probability": True},
    ],
)
def test_invalid_probability_or_seed_is_rejected(http: Http, extra: dict) -> None:
    reply = http.request("POST", "/__emulator/faults", {"action": {"status": 503}, **extra})
    assert reply.status == 400
    assert http.request("GET", "/__emulator/faults").body == []


def test_invalid_settings_seed_is_rejected(http: Http) -> None:
    assert http.request("POST", "/__emulator/settings", {"seed": "abc"}).status == 400
