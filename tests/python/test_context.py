"""The request context (body warehouse, database, schema, role) follows Snowflake's rules.

The SQL API's context fields are case-sensitive: they must match the names SHOW returns
(https://docs.snowflake.com/en/developer-guide/sql-api/submitting-requests), so `tracklayer`
matches nothing when the database was created unquoted (TRACKLAYER).
"""

from __future__ import annotations

import uuid

import pytest

from sflocal import Control, Http, Identity, Reply, SqlApi, insert_batch, make_events

DATABASE, SCHEMA = "TRACKLAYER", "PYTEST"
CONTEXT = "SELECT CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE(), CURRENT_SCHEMA()"


def failure(reply: Reply) -> tuple[int, str, str | None]:
    return reply.status, reply.body["code"], reply.body.get("sqlState")


def test_exact_names_give_the_stored_names_back(api: SqlApi) -> None:
    assert api.rows(CONTEXT, warehouse="TRACKLAYER_WH", role="PYTEST_ROLE") == [
        ["PYTEST_ROLE", "TRACKLAYER_WH", "TRACKLAYER", "PYTEST"]
    ]


def test_a_lower_case_database_is_no_database(api: SqlApi, schema: str) -> None:
    assert api.rows(CONTEXT, database="tracklayer") == [["PYTEST_ROLE", "TRACKLAYER_WH", None, None]]
    created = api.submit("CREATE TABLE LOWER_DB_T (A STRING)", database="tracklayer")
    assert failure(created) == (422, "391918", None)
    assert created.body["message"] == "Unable to run <command> without specifying database/warehouse"
    assert created.body["statementHandle"]
    qualified = api.submit(f"SELECT COUNT(*) AS N FROM {DATABASE}.{schema}.NO_TABLE_HERE", database="tracklayer")
    assert failure(qualified) == (422, "002003", "42S02")  # qualified names need no current database


def test_a_lower_case_schema_is_no_schema(api: SqlApi) -> None:
    assert api.rows(CONTEXT, schema="pytest") == [["PYTEST_ROLE", "TRACKLAYER_WH", "TRACKLAYER", None]]
    created = api.submit("CREATE TABLE LOWER_SCHEMA_T (A STRING)", schema="pytest")
    assert failure(created) == (422, "090106", "22000")
    assert created.body["message"] == (
        "Cannot perform CREATE TABLE. This session does not have a current schema. "
        "Call 'USE SCHEMA', or use a qualified name."
    )


def test_a_lower_case_warehouse_is_no_warehouse(api: SqlApi, table: str) -> None:
    assert api.rows(CONTEXT, warehouse="tracklayer_wh") == [["PYTEST_ROLE", None, "TRACKLAYER", "PYTEST"]]
    assert api.rows("SELECT 1", warehouse="tracklayer_wh") == [["1"]]  # needs no warehouse
    statement, bindings = insert_batch(table, make_events(1))
    refused = api.submit(statement, bindings=bindings, warehouse="tracklayer_wh")
    assert failure(refused) == (422, "391918", None)
    assert api.count(table) == 0


def test_an_unknown_database_is_391918(api: SqlApi, table: str) -> None:
    reply = api.submit(f"SELECT COUNT(*) FROM {table}", database="NO_SUCH_DB", schema="NOPE")
    assert failure(reply) == (422, "391918", None)


def test_no_warehouse_at_all_is_000606(http: Http, control: Control, schema: str, table: str) -> None:
    identity = Identity("PYTEST", f"NO_WH_{uuid.uuid4().hex[:8].upper()}")
    control.register(identity, default_warehouse=None)
    api = SqlApi(http, identity.headers(), DATABASE, schema)
    assert api.rows(CONTEXT) == [["PUBLIC", None, "TRACKLAYER", "PYTEST"]]
    statement, bindings = insert_batch(table, make_events(1))
    reply = api.submit(statement, bindings=bindings)
    assert failure(reply) == (422, "000606", "57P03")
    assert reply.body["message"].startswith("No active warehouse selected in the current session.")


def test_a_quoted_mixed_case_warehouse_matches_only_its_exact_name(api: SqlApi) -> None:
    assert api.rows('CREATE WAREHOUSE IF NOT EXISTS "Mixed_Case_WH"') == [
        ["Warehouse Mixed_Case_WH successfully created."]
    ]
    assert api.rows(CONTEXT, warehouse="Mixed_Case_WH")[0][1] == "Mixed_Case_WH"
    assert api.rows(CONTEXT, warehouse="MIXED_CASE_WH")[0][1] is None


def test_a_role_must_be_granted(http: Http, control: Control, schema: str) -> None:
    identity = Identity("PYTEST", f"ROLES_{uuid.uuid4().hex[:8].upper()}")
    described = control.register(identity, default_role="LOADER_ROLE", roles=["REPORTER"])
    assert described["roles"] == ["LOADER_ROLE", "PUBLIC", "REPORTER"]
    api = SqlApi(http, identity.headers(), DATABASE, schema)
    assert api.rows("SELECT CURRENT_ROLE()") == [["LOADER_ROLE"]]
    for granted in ("REPORTER", "PUBLIC", "LOADER_ROLE"):
        assert api.rows("SELECT CURRENT_ROLE()", role=granted) == [[granted]]
    for refused in ("reporter", "SYSADMIN", "NO_SUCH_ROLE"):
        reply = api.submit("SELECT 1", role=refused)
        assert failure(reply) == (422, "390189", "08004"), refused
        assert reply.body["message"].startswith(f"Role '{refused}' specified in the connect string does not exist")


@pytest.mark.parametrize("key", ["multi_statement_count", "MULTI_STATEMENT_COUNT", "Multi_Statement_Count"])
def test_multi_statement_count_is_read_whatever_its_case(api: SqlApi, key: str) -> None:
    reply = api.submit("SELECT 1; SELECT 2", parameters={key: "2"})
    assert reply.status == 200, reply.body
    assert [api.poll(h).body["data"] for h in reply.body["statementHandles"]] == [[["1"]], [["2"]]]
