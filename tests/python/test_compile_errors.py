"""An INSERT that cannot compile fails as a compile error before any row is touched.

Snowflake checks an INSERT's column list (000904 invalid identifier) and whether each select
expression's type can be coerced to its column's type (002023) when it compiles the statement,
so the whole statement fails the same way whatever its rows hold. Values that merely fail to
convert fail at run time instead (100038 for text that is not a number).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from sflocal import SqlApi

ROWS = [
    {"id": "e-1", "t": "2026-11-02 08:00:00.123", "v": "19.9900", "p": {"sku": "A-1"}},
    {"id": "e-2", "t": "2026-11-02 09:00:00.000", "v": "5.0000", "p": {"sku": "B-2"}},
]
INSERT = (
    "INSERT INTO {table} (EVENT_ID, EVENT_TIME, VALUE, PROPERTIES) "
    "SELECT f.value:id::STRING, f.value:t::TIMESTAMP_NTZ, f.value:v::NUMBER(18, 4), f.value:p "
    "FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) f"
)
BINDINGS = {"1": {"type": "TEXT", "value": json.dumps(ROWS)}}


@pytest.fixture
def make_table(api: SqlApi) -> Callable[[str], str]:
    def make(columns: str) -> str:
        name = f"TYPED_{uuid.uuid4().hex[:8].upper()}"
        api.rows(f"CREATE TABLE {name} ({columns})")
        return name

    return make


def test_a_column_the_table_lacks_is_000904(api: SqlApi, make_table: Callable[[str], str]) -> None:
    table = make_table("EVENT_ID STRING, EVENT_TIME TIMESTAMP_NTZ, VALUE NUMBER(18,4), PROPS VARIANT")
    sql = INSERT.format(table=table)
    reply = api.submit(sql, bindings=BINDINGS)
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (422, "000904", "42000")
    position = sql.index("PROPERTIES")
    assert reply.body["message"] == (
        f"SQL compilation error: error line 1 at position {position}\ninvalid identifier 'PROPERTIES'"
    )
    assert api.count(table) == 0


@pytest.mark.parametrize(
    ("column", "column_type", "expecting", "got"),
    [
        ("EVENT_TIME", "NUMBER", "NUMBER(38,0)", "TIMESTAMP_NTZ(9)"),
        ("EVENT_TIME", "VARIANT", "VARIANT", "TIMESTAMP_NTZ(9)"),
        ("VALUE", "DATE", "DATE", "NUMBER(18,4)"),
        ("VALUE", "TIMESTAMP_NTZ", "TIMESTAMP_NTZ(9)", "NUMBER(18,4)"),
        ("EVENT_ID", "VARIANT", "VARIANT", "VARCHAR(16777216)"),
    ],
)
def test_a_type_no_coercion_reaches_is_002023(
    api: SqlApi, make_table: Callable[[str], str], column: str, column_type: str, expecting: str, got: str
) -> None:
    types = {"EVENT_ID": "STRING", "EVENT_TIME": "TIMESTAMP_NTZ", "VALUE": "NUMBER(18,4)", "PROPERTIES": "VARIANT"}
    types[column] = column_type
    table = make_table(", ".join(f"{c} {t}" for c, t in types.items()))
    reply = api.submit(INSERT.format(table=table), bindings=BINDINGS)
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (422, "002023", "22000")
    assert reply.body["message"] == (
        "SQL compilation error:\nExpression type does not match column data type, "
        f"expecting {expecting} but got {got} for column {column}"
    )
    assert api.count(table) == 0


def test_coercible_types_load(api: SqlApi, make_table: Callable[[str], str]) -> None:
    """VARCHAR takes numbers and VARIANTs, DATE takes timestamps: these compile and load."""
    table = make_table("EVENT_ID STRING, EVENT_TIME DATE, VALUE VARCHAR, PROPERTIES VARCHAR")
    reply = api.submit(INSERT.format(table=table), bindings=BINDINGS)
    assert reply.status == 200, reply.body
    assert reply.body["stats"] == {"numRowsInserted": 2}
    assert api.rows(f"SELECT EVENT_ID, EVENT_TIME, PROPERTIES FROM {table} ORDER BY EVENT_ID") == [
        ["e-1", "20759", '{"sku":"A-1"}'],
        ["e-2", "20759", '{"sku":"B-2"}'],
    ]


def test_text_that_is_not_a_number_fails_at_run_time_with_100038(api: SqlApi, make_table: Callable[[str], str]) -> None:
    table = make_table("EVENT_ID NUMBER, EVENT_TIME TIMESTAMP_NTZ, VALUE NUMBER(18,4), PROPERTIES VARIANT")
    reply = api.submit(INSERT.format(table=table), bindings=BINDINGS)
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (422, "100038", "22018")
    assert reply.body["message"] == "Numeric value 'e-1' is not recognized"
    assert api.count(table) == 0
