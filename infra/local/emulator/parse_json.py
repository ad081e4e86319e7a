"""PARSE_JSON as Snowflake parses it (DuckDB's JSON keeps duplicate keys silently).

Rule 2 (rule numbers as in the package docstring)
--------------------------------------------------
``PARSE_JSON`` and ``TRY_PARSE_JSON`` are strict about repeated keys
   (https://docs.snowflake.com/sql-reference/functions/parse_json): by default (``'s'``) a JSON
   object that repeats a key, at any depth, fails the statement with 422 ``100069`` 22P02
   ``Error parsing JSON: duplicate object attribute "a", pos 31`` (the docs' example message;
   ``pos`` here is the 1-based character position of the repeated key's value, UNCONFIRMED
   beyond that example). With ``'d'`` the object keeps each repeated key once, with its last
   value; TRY_PARSE_JSON gives NULL instead of the error. Empty or blank text parses to NULL
   (same page). This holds everywhere a statement calls them, plain SELECTs and
   ``INSERT ... SELECT ... FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?)))`` alike: the emulator
   puts a DuckDB function around each argument (``strict_json_sql``), because fakesnow and
   DuckDB accept repeated keys silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from sqlglot.dialects.snowflake import Snowflake
from sqlglot.tokens import TokenType

JSON_FUNCTIONS = {"PARSE_JSON": False, "TRY_PARSE_JSON": True}  # name -> NULL instead of an error
JSON_UDFS = {  # (NULL on error, duplicates allowed) -> the DuckDB function put around the argument
    (False, False): "SF_PARSE_JSON_STRICT",
    (False, True): "SF_PARSE_JSON_LAST_WINS",
    (True, False): "SF_TRY_PARSE_JSON_STRICT",
    (True, True): "SF_TRY_PARSE_JSON_LAST_WINS",
}
DUPLICATE_KEY_ERROR = "Error parsing JSON: duplicate object attribute"
JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^"{}\[\]:,\s]+', re.S)


class DuplicateKey(ValueError):
    """A JSON object repeats a key and the parse is strict."""


class RawNumber(str):
    """A JSON number kept as its text, so re-serializing never changes it."""


def reject_duplicates(pairs: list[tuple[str, Any]]) -> None:
    if len({key for key, _ in pairs}) != len(pairs):
        raise DuplicateKey


def duplicate_key_position(text: str) -> tuple[str, int]:
    """The first key an object repeats and the 1-based position of its value in `text`."""
    stack: list[set[str] | None] = []  # the keys of each open object; None for an open array
    expecting_key = False
    tokens = JSON_TOKEN.finditer(text)
    for match in tokens:
        token = match.group()
        if token == "{":
            stack.append(set())
            expecting_key = True
        elif token == "[":
            stack.append(None)
            expecting_key = False
        elif token in ("}", "]"):
            stack.pop()
            expecting_key = False
        elif token == ",":
            expecting_key = bool(stack) and stack[-1] is not None
        elif expecting_key and token.startswith('"'):
            key = json.loads(token)
            keys = stack[-1]
            if key in keys:
                next(tokens)  # the colon
                return key, next(tokens).start() + 1
            keys.add(key)
            expecting_key = False
    raise ValueError("no repeated key")


def dump_raw(value: Any) -> str:
    """JSON text of a value parsed with RawNumber numbers (compact, numbers as written)."""
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + dump_raw(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_raw(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def parse_json_text(text: str | None, last_wins: bool) -> str | None:
    """The JSON text DuckDB gets for Snowflake's PARSE_JSON(text [, 'd']).

    Empty or blank text is NULL, as the PARSE_JSON docs say. A repeated key raises DuplicateKey
    (strict, the default 's') or keeps the key's last value ('d'). Text that is not JSON goes
    through unchanged, for DuckDB's JSON() to refuse.
    """
    if text is None or not text.strip():
        return None
    try:
        json.loads(text, object_pairs_hook=reject_duplicates)
    except DuplicateKey:
        if not last_wins:
            key, position = duplicate_key_position(text)
            raise DuplicateKey(f"{DUPLICATE_KEY_ERROR} {json.dumps(key, ensure_ascii=False)}, pos {position}") from None
        parsed = json.loads(text, object_pairs_hook=dict, parse_float=RawNumber, parse_int=RawNumber)
        return dump_raw(parsed)
    except (ValueError, RecursionError):
        return text
    return text


def json_udf(null_on_error: bool, last_wins: bool) -> Callable[[pa.Array], pa.Array]:
    def udf(texts: pa.Array) -> pa.Array:
        out = []
        for text in texts.to_pylist():
            try:
                out.append(parse_json_text(text, last_wins))
            except DuplicateKey:
                if not null_on_error:
                    raise
                out.append(None)
        return pa.array(out, pa.string())

    return udf


def register_json_udfs(duck: Any) -> None:
    """The functions strict_json_sql puts around PARSE_JSON's argument, on the shared DuckDB."""
    for (null_on_error, last_wins), name in JSON_UDFS.items():
        duck.create_function(
            name, json_udf(null_on_error, last_wins), ["VARCHAR"], "VARCHAR", type="arrow", null_handling="special"
        )


def strict_json_sql(sql: str) -> str:
    """Put the JSON_UDFS function around each PARSE_JSON / TRY_PARSE_JSON argument; drop the mode.

    `PARSE_JSON(x)` and `PARSE_JSON(x, 's')` become `PARSE_JSON(SF_PARSE_JSON_STRICT(x))`,
    `PARSE_JSON(x, 'd')` becomes `PARSE_JSON(SF_PARSE_JSON_LAST_WINS(x))`. Only the tokens around
    the call change, so fakesnow reads the rest of the statement as written.
    """
    if "parse_json" not in sql.lower():
        return sql
    try:
        tokens = Snowflake().tokenize(sql)
    except Exception:  # noqa: BLE001 - let fakesnow report the syntax error
        return sql
    edits: list[tuple[int, int, str]] = []
    for i, token in enumerate(tokens[:-1]):
        name = token.text.upper()
        if name not in JSON_FUNCTIONS or tokens[i + 1].token_type != TokenType.L_PAREN:
            continue
        if i > 0 and tokens[i - 1].token_type == TokenType.DOT:
            continue
        close, comma = call_extent(tokens, i + 1)
        if close is None:
            continue
        mode = tokens[comma + 1 : close] if comma is not None else []
        last_wins = len(mode) == 1 and mode[0].token_type == TokenType.STRING and mode[0].text == "d"
        after_paren = tokens[i + 1].end + 1
        edits.append((after_paren, after_paren, JSON_UDFS[(JSON_FUNCTIONS[name], last_wins)] + "("))
        end_of_argument = tokens[comma].start if comma is not None else tokens[close].start
        edits.append((end_of_argument, tokens[close].start, ")"))
    for start, end, text in sorted(edits, reverse=True):
        sql = sql[:start] + text + sql[end:]
    return sql


def call_extent(tokens: list[Any], open_index: int) -> tuple[int | None, int | None]:
    """The index of the parenthesis closing tokens[open_index], and of its first top-level comma."""
    depth, comma = 0, None
    for j in range(open_index, len(tokens)):
        kind = tokens[j].token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return j, comma
        elif kind == TokenType.COMMA and depth == 1 and comma is None:
            comma = j
    return None, None
