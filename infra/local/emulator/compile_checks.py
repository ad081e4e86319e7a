"""Compile-time checks of INSERT ... SELECT (fakesnow only fails once rows are converted).

Rule 4 (rule numbers as in the package docstring)
--------------------------------------------------
Compile errors come before any row is touched. For ``INSERT INTO t [(cols)] SELECT ...``:
   a column ``t`` does not have answers 422 ``000904`` 42000 "SQL compilation error: error line
   L at position P\ninvalid identifier 'NAME'" (L 1-based, P the 0-based column of the name;
   dbt docs traces such as "error line 3 at position 6 invalid identifier 'ORDERID'"); a select
   expression whose type has no implicit coercion to its column's type answers 422 ``002023``
   22000 "SQL compilation error:\nExpression type does not match column data type, expecting
   <column type> but got <expression type> for column <NAME>" (the ALTER TABLE docs example and
   public traces: expecting TIMESTAMP_NTZ(9) but got NUMBER(38,0); expecting DATE but got
   NUMBER(38,0); expecting VARIANT but got VARCHAR(16777216)). Refused pairs (``NOT_COERCIBLE``,
   from https://docs.snowflake.com/en/sql-reference/data-type-conversion "Data types that can be
   cast": castable only explicitly, or not at all): VARCHAR -> VARIANT/OBJECT/ARRAY; NUMBER,
   FLOAT, BOOLEAN -> DATE/TIME/TIMESTAMP/BINARY; DATE -> NUMBER/FLOAT/BOOLEAN/TIME/VARIANT/BINARY;
   TIME -> NUMBER/FLOAT/BOOLEAN/DATE/TIMESTAMP/VARIANT/BINARY; TIMESTAMP ->
   NUMBER/FLOAT/BOOLEAN/VARIANT/BINARY; BINARY -> anything but VARCHAR/BINARY. Everything else
   compiles (VARIANT -> VARCHAR, NUMBER -> VARCHAR, TIMESTAMP -> DATE, VARCHAR -> NUMBER, ...);
   a value that does not convert then fails at run time, e.g. text into NUMBER: 422 ``100038``
   22018 "Numeric value 'abc' is not recognized". Only the pairs with a public trace are
   confirmed; the rest follow the conversion table. Column-count mismatches and
   ``INSERT ... VALUES`` are left to fakesnow.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb
import snowflake.connector.errors
import sqlglot
from sqlglot import exp

from tracklayer_local.emulator.errors import ApiError, sql_error
from tracklayer_local.emulator.requests import statement_kind

INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
DUCK_TYPES = {
    "VARCHAR": "VARCHAR(16777216)",
    "JSON": "VARIANT",
    "TIMESTAMP": "TIMESTAMP_NTZ(9)",
    "TIMESTAMP_NS": "TIMESTAMP_NTZ(9)",
    "TIMESTAMP_MS": "TIMESTAMP_NTZ(9)",
    "TIMESTAMP_S": "TIMESTAMP_NTZ(9)",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP_TZ(9)",
    "DATE": "DATE",
    "TIME": "TIME(9)",
    "BOOLEAN": "BOOLEAN",
    "DOUBLE": "FLOAT",
    "FLOAT": "FLOAT",
    "BLOB": "BINARY(8388608)",
}
TYPE_CLASSES = (
    ("VARCHAR", "text"),
    ("NUMBER", "fixed"),
    ("FLOAT", "real"),
    ("BOOLEAN", "boolean"),
    ("DATE", "date"),
    ("TIMESTAMP", "timestamp"),
    ("TIME", "time"),
    ("VARIANT", "semi"),
    ("OBJECT", "semi"),
    ("ARRAY", "semi"),
    ("BINARY", "binary"),
)
# (expression class, column class) pairs an INSERT refuses at compile time with 002023: no implicit
# coercion exists between them (https://docs.snowflake.com/en/sql-reference/data-type-conversion,
# "Data types that can be cast": castable but not coercible, or not castable at all). Every other
# pair compiles, and a value that does not convert fails at run time (e.g. 100038 for text that is
# not a number, 100040 / 100035 for text that is not a date / timestamp).
NOT_COERCIBLE = {
    ("text", "semi"),  # VARCHAR -> VARIANT: castable (TO_VARIANT), never coerced
    *(("fixed", t) for t in ("date", "time", "timestamp", "binary")),
    *(("real", t) for t in ("date", "time", "timestamp", "binary")),
    *(("boolean", t) for t in ("date", "time", "timestamp", "binary")),
    *(("date", t) for t in ("fixed", "real", "boolean", "time", "semi", "binary")),
    *(("time", t) for t in ("fixed", "real", "boolean", "date", "timestamp", "semi", "binary")),
    *(("timestamp", t) for t in ("fixed", "real", "boolean", "semi", "binary")),
    *(("binary", t) for t in ("fixed", "real", "boolean", "date", "time", "timestamp", "semi")),
}


def snowflake_type(duck_type: str) -> str | None:
    """The Snowflake type a DuckDB result type stands for, as Snowflake spells it in messages."""
    upper = duck_type.upper()
    if upper.startswith("DECIMAL"):
        match = re.search(r"\((\d+),\s*(\d+)\)", upper)
        return f"NUMBER({match[1]},{match[2]})" if match else "NUMBER(38,0)"
    if upper in INTEGER_TYPES:
        return "NUMBER(38,0)"
    return DUCK_TYPES.get(upper)


def type_class(sf_type: str) -> str | None:
    return next((cls for prefix, cls in TYPE_CLASSES if sf_type.upper().startswith(prefix)), None)


def sql_position(sql: str, offset: int) -> tuple[int, int]:
    """Snowflake's 'line L at position P' for an offset (1-based line, 0-based position)."""
    line_start = sql.rfind("\n", 0, offset) + 1
    return sql.count("\n", 0, offset) + 1, offset - line_start


def invalid_identifier(sql: str, ident: exp.Identifier) -> ApiError:
    line, position = sql_position(sql, ident.meta.get("start", 0))
    shown = f'"{ident.this}"' if ident.quoted else ident.this.upper()
    return sql_error(
        "000904",
        "42000",
        f"SQL compilation error: error line {line} at position {position}\ninvalid identifier '{shown}'",
    )


def type_mismatch(expected: str, got: str, column: str) -> ApiError:
    return sql_error(
        "002023",
        "22000",
        "SQL compilation error:\nExpression type does not match column data type, "
        f"expecting {expected} but got {got} for column {column}",
    )


def check_insert(cur: Any, sql: str) -> None:
    """000904 for a column the table lacks, 002023 for a select expression no column type takes.

    Run before the INSERT itself, so no row is touched. Only INSERT ... SELECT is checked
    (VALUES lists, column counts and everything else are left to fakesnow).
    """
    if statement_kind(sql) != "INSERT":
        return
    try:
        insert = sqlglot.parse_one(sql, read="snowflake")
    except sqlglot.errors.ParseError:
        return
    if not isinstance(insert, exp.Insert) or not isinstance(insert.expression, exp.Query):
        return
    target = insert.this
    table = target.this if isinstance(target, exp.Schema) else target
    if not isinstance(table, exp.Table):
        return
    try:
        cur.execute(f"DESCRIBE TABLE {table.sql(dialect='snowflake')}")
        columns = {row[0]: row[1] for row in cur.fetchall()}
    except snowflake.connector.errors.Error:
        return  # no such table: the INSERT reports it
    if isinstance(target, exp.Schema):
        named = [i for i in target.expressions if isinstance(i, exp.Identifier)]
        for ident in named:
            if (ident.this if ident.quoted else ident.this.upper()) not in columns:
                raise invalid_identifier(sql, ident)
        names = [i.this if i.quoted else i.this.upper() for i in named]
    else:
        names = list(columns)
    select = insert.expression.transform(lambda e: exp.Null() if isinstance(e, exp.Placeholder) else e)
    try:
        cur.execute(f"DESCRIBE {select.sql(dialect='snowflake')}")
        got = [row[1] for row in cur.fetchall()]
    except (snowflake.connector.errors.Error, duckdb.Error):
        return  # the INSERT itself reports what is wrong with its query
    if len(got) != len(names):
        return
    for column, duck_type in zip(names, got, strict=True):
        expression_type, column_type = snowflake_type(duck_type), columns[column]
        if expression_type and (type_class(expression_type), type_class(column_type)) in NOT_COERCIBLE:
            raise type_mismatch(column_type, expression_type, column)
