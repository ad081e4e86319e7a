"""PARSE_JSON is strict about repeated keys, as Snowflake's is; 'd' keeps the last value.

https://docs.snowflake.com/sql-reference/functions/parse_json: the optional parameter 's' (strict,
the default) refuses duplicate keys with 100069 (22P02); 'd' allows them and the object keeps
the last value of each repeated key.
"""

from __future__ import annotations

import json

from sflocal import SqlApi

DOCS_EXAMPLE = '{"a": "one", "b": "two", "a": "three"}'


def flatten_insert(table: str, mode: str) -> str:
    parse = "PARSE_JSON(f.value:r::STRING" + (", 'd')" if mode else ")")
    return (
        f"INSERT INTO {table} (EVENT_ID, PAYLOAD) SELECT p:event_id::STRING, p "
        f"FROM (SELECT {parse} AS p FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) f) r"
    )


def bound_rows(*texts: str) -> dict:
    return {"1": {"type": "TEXT", "value": json.dumps([{"r": t} for t in texts])}}


def test_a_repeated_key_is_100069_in_a_plain_select(api: SqlApi) -> None:
    reply = api.submit(f"SELECT PARSE_JSON('{DOCS_EXAMPLE}')")
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (422, "100069", "22P02")
    assert reply.body["message"] == 'Error parsing JSON: duplicate object attribute "a", pos 31'
    explicit = api.submit(f"SELECT PARSE_JSON('{DOCS_EXAMPLE}', 's')")
    assert explicit.body["code"] == "100069"


def test_a_repeated_key_in_a_nested_object_is_100069(api: SqlApi) -> None:
    reply = api.submit("""SELECT PARSE_JSON('{"p": {"sku": 1, "sku": 2}}')""")
    assert (reply.status, reply.body["code"]) == (422, "100069")
    assert reply.body["message"] == 'Error parsing JSON: duplicate object attribute "sku", pos 25'


def test_d_keeps_the_last_value(api: SqlApi) -> None:
    rows = api.rows(
        f"SELECT PARSE_JSON('{DOCS_EXAMPLE}', 'd') AS V, "
        """PARSE_JSON('{"p": {"sku": 1, "sku": 2.50, "n": 12345678901234567890}}', 'd'):p AS P"""
    )
    assert [json.loads(v) for v in rows[0]] == [{"a": "three", "b": "two"}, {"sku": 2.5, "n": 12345678901234567890}]
    assert (rows[0][0].count('"a"'), rows[0][1].count('"sku"')) == (1, 1)  # one instance of each key
    assert '"n":12345678901234567890' in rows[0][1]  # no round trip through a double


def test_repeated_keys_without_d_fail_the_flatten_insert_and_touch_no_row(api: SqlApi, table: str) -> None:
    good = '{"event_id": "ok-1"}'
    repeated = '{"event_id": "dup-1", "properties": {"sku": "A", "sku": "B"}}'
    reply = api.submit(flatten_insert(table, ""), bindings=bound_rows(good, repeated))
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (422, "100069", "22P02")
    assert api.count(table) == 0


def test_d_loads_the_flatten_insert_with_the_last_values(api: SqlApi, table: str) -> None:
    repeated = '{"event_id": "dup-1", "event_id": "dup-2", "properties": {"sku": "A", "sku": "B"}}'
    reply = api.submit(flatten_insert(table, "d"), bindings=bound_rows(repeated))
    assert reply.status == 200, reply.body
    assert reply.body["stats"] == {"numRowsInserted": 1}
    rows = api.rows(f"SELECT EVENT_ID, PAYLOAD:properties.sku::STRING, PAYLOAD FROM {table}")
    assert rows[0][:2] == ["dup-2", "B"]
    assert json.loads(rows[0][2]) == {"event_id": "dup-2", "properties": {"sku": "B"}}


def test_the_bound_array_itself_is_parsed_strictly(api: SqlApi, table: str) -> None:
    bindings = {"1": {"type": "TEXT", "value": '[{"r": "{}", "r": "{}"}]'}}
    reply = api.submit(flatten_insert(table, "d"), bindings=bindings)
    assert (reply.status, reply.body["code"]) == (422, "100069")


def test_try_parse_json_gives_null_for_a_repeated_key(api: SqlApi) -> None:
    assert api.rows(f"SELECT TRY_PARSE_JSON('{DOCS_EXAMPLE}') IS NULL, TRY_PARSE_JSON('{DOCS_EXAMPLE}', 'd'):a") == [
        ["true", '"three"']
    ]


def test_empty_text_parses_to_null(api: SqlApi) -> None:
    assert api.rows("SELECT PARSE_JSON('') IS NULL, PARSE_JSON('   ') IS NULL") == [["true", "true"]]
