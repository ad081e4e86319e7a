"""Results: rowType and string values as the SQL API returns them, partitions.

SQL API v2: the 200 answer
--------------------------
* 200: ``resultSetMetaData`` (numRows, format "jsonv2", rowType, partitionInfo), ``data``
  (every value a string or null: NUMBER as decimal text, TIMESTAMP_NTZ/LTZ as "<epoch
  s>.<9-digit ns>", TIMESTAMP_TZ the same plus " 1440" (UTC), DATE as days since epoch, TIME as
  "<seconds since midnight>.<9 digits>", BOOLEAN "true"/"false", VARIANT/OBJECT/ARRAY as compact
  JSON text, BINARY as upper-case hex), ``code`` "090001", ``sqlState`` "00000",
  ``statementHandle``, ``statementStatusUrl`` ("/api/v2/statements/<handle>?requestId=<id>"),
  ``requestId``, ``message``, ``createdOn`` (ms); DML adds ``stats`` (rule 5). An INSERT
  answers one row, column "number of rows inserted". Several statements
  (multi_statement_count) answer "Multiple statements executed successfully." and
  ``statementHandles``; each child handle can be polled.

Rule 5 (rule numbers as in the package docstring)
--------------------------------------------------
Results follow the spec (snowflake-rest-api-specs specifications/sqlapi.yaml): DML answers
   ``stats`` with numRowsInserted, numRowsUpdated, numRowsDeleted, numDuplicateRowsUpdated
   (those the statement reports). A result whose rows' JSON text exceeds the
   ``partition_bytes`` setting (default 10,000,000; Snowflake sizes partitions itself and does
   not document how, so the default is UNCONFIRMED) comes in several partitions:
   ``resultSetMetaData.partitionInfo`` lists each (rowCount, uncompressedSize = bytes of its
   rows' compact JSON, and for partitions 1.. compressedSize); the answer carries partition 0's
   rows; ``GET /api/v2/statements/{handle}?partition=N`` (N >= 1) answers ``{"data": [...]}``
   gzip-compressed with ``Content-Encoding: gzip``, whatever the request's Accept-Encoding
   (https://docs.snowflake.com/en/developer-guide/sql-api/handling-responses, "Retrieving
   additional partitions"). ``?partition=0`` answers the statement's answer; a partition that
   does not exist answers 400 390142 (UNCONFIRMED).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from fakesnow.rowtype import describe_as_rowtype

from tracklayer_local.emulator.errors import Answer
from tracklayer_local.emulator.requests import DML_KINDS
from tracklayer_local.emulator.statements import Statement


@dataclass
class Result:
    row_type: list[dict[str, Any]]
    rows: list[list[str | None]]


def column_info(name: str, sf_type: str) -> dict[str, Any]:
    info = {
        "name": name,
        "database": "",
        "schema": "",
        "table": "",
        "nullable": True,
        "type": sf_type,
        "byteLength": None,
        "length": None,
        "scale": None,
        "precision": None,
        "collation": None,
    }
    if sf_type == "text":
        info |= {"byteLength": 16777216, "length": 16777216}
    elif sf_type == "fixed":
        info |= {"precision": 38, "scale": 0}
    elif sf_type.startswith("timestamp"):
        info |= {"precision": 0, "scale": 9}
    return info


def row_type(describe_rows: list[tuple]) -> list[dict[str, Any]]:
    """Snowflake rowType from DuckDB's DESCRIBE rows (types fakesnow cannot map become text)."""
    infos = []
    for row in describe_rows:
        try:
            infos.append(dict(describe_as_rowtype([row])[0]))
        except NotImplementedError:
            infos.append(column_info(row[0], "text"))
    return infos


def epoch_text(nanos: int) -> str:
    """Decimal seconds with nine fraction digits, e.g. 1730534400123000000 -> '1730534400.123000000'."""
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    return f"{sign}{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


NANOS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def column_strings(column: pa.ChunkedArray) -> list[str | None]:
    """One result column as the SQL API's strings (None for NULL)."""
    kind = column.type

    def each(values: list[Any], fmt: Callable[[Any], str]) -> list[str | None]:
        return [None if v is None else fmt(v) for v in values]

    if pa.types.is_timestamp(kind):
        per = NANOS_PER_UNIT[kind.unit]
        suffix = " 1440" if kind.tz else ""
        return each(column.cast(pa.int64()).to_pylist(), lambda v: epoch_text(v * per) + suffix)
    if pa.types.is_time(kind):
        per = NANOS_PER_UNIT[kind.unit]
        return each(column.cast(pa.int64()).to_pylist(), lambda v: epoch_text(v * per))
    if pa.types.is_date(kind):
        return each(column.cast(pa.date32()).cast(pa.int32()).to_pylist(), str)
    if pa.types.is_boolean(kind):
        return each(column.to_pylist(), lambda v: "true" if v else "false")
    if pa.types.is_decimal(kind):
        return each(column.to_pylist(), lambda v: format(v, "f"))
    if pa.types.is_floating(kind):
        return each(column.to_pylist(), float_text)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return each(column.to_pylist(), lambda v: v.hex().upper())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind):
        return each(column.to_pylist(), str)
    return each(column.to_pylist(), lambda v: json.dumps(v, default=str, separators=(",", ":")))


def float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def table_rows(table: pa.Table | None) -> list[list[str | None]]:
    if table is None or table.num_columns == 0:
        return []
    return [list(row) for row in zip(*(column_strings(c) for c in table.columns), strict=True)]


DML_STATS = {
    "number of rows inserted": "numRowsInserted",
    "number of rows updated": "numRowsUpdated",
    "number of rows deleted": "numRowsDeleted",
    "number of multi-joined rows updated": "numDuplicateRowsUpdated",
}


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def split_partitions(rows: list[list[str | None]], partition_bytes: int) -> list[list[list[str | None]]]:
    """Consecutive rows, cut so each partition's JSON text stays within partition_bytes (at least one row)."""
    partitions: list[list[list[str | None]]] = [[]]
    size = 2  # the brackets
    for row in rows:
        row_bytes = len(compact_json(row).encode()) + 1
        if partitions[-1] and size + row_bytes > partition_bytes:
            partitions.append([])
            size = 2
        partitions[-1].append(row)
        size += row_bytes
    return partitions


def success_answer(stmt: Statement, result: Result, kind: str, nullable: bool, partition_bytes: int) -> Answer:
    data = result.rows if nullable else [["null" if v is None else v for v in row] for row in result.rows]
    partitions = split_partitions(data, partition_bytes)
    info: list[dict[str, int]] = []
    stmt.partitions = []
    for index, rows in enumerate(partitions):
        text = compact_json(rows).encode()
        entry = {"rowCount": len(rows), "uncompressedSize": len(text)}
        if index > 0:
            compressed = gzip.compress(compact_json({"data": rows}).encode())
            stmt.partitions.append(compressed)
            entry["compressedSize"] = len(compressed)
        info.append(entry)
    body: dict[str, Any] = {
        "resultSetMetaData": {
            "numRows": len(data),
            "format": "jsonv2",
            "partitionInfo": info,
            "rowType": result.row_type,
        },
        "data": partitions[0],
        "code": "090001",
        "requestId": stmt.request_id,
        "sqlState": "00000",
        "message": "Statement executed successfully.",
        "createdOn": stmt.created_on,
        **stmt.links(),
    }
    if kind in DML_KINDS and data:
        body["stats"] = {
            DML_STATS[col["name"]]: int(value or 0)
            for col, value in zip(result.row_type, data[0], strict=True)
            if col["name"] in DML_STATS
        }
    return Answer(200, body)


def text_result(column: str, text: str) -> Result:
    return Result([column_info(column, "text")], [[text]])


def status_result(text: str = "Statement executed successfully.") -> Result:
    return text_result("status", text)
