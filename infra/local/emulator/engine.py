"""Execution on fakesnow's shared DuckDB.

Concurrency
-----------
Concurrency: SQL API statements run in a thread pool, each on a fresh fakesnow connection, one
at a time (a lock serialises DuckDB work, as Snowflake queues conflicting DML); the event loop
never blocks on DuckDB.
"""

from __future__ import annotations

import re
import threading
import warnings
from typing import Any

import duckdb
import fakesnow.server
import snowflake.connector.errors
from fakesnow.fakes import FakeSnowflakeConnection

from tracklayer_local.emulator.compile_checks import check_insert
from tracklayer_local.emulator.errors import ApiError, internal_error, sql_error
from tracklayer_local.emulator.parse_json import DUPLICATE_KEY_ERROR, register_json_udfs, strict_json_sql
from tracklayer_local.emulator.requests import Context
from tracklayer_local.emulator.results import Result, row_type, table_rows
from tracklayer_local.emulator.statements import Statement

warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")


class Cancelled(Exception):
    """The statement was cancelled (or timed out) before it reached the database."""


class Engine:
    """Runs SQL on the shared DuckDB, one statement at a time, each on a fresh connection."""

    def __init__(self, namespace: tuple[str, str]) -> None:
        self.namespace = namespace
        self.lock = threading.Lock()

    def bootstrap(self) -> None:
        """Create the bootstrap database and schema (fakesnow creates them on connect); add the UDFs."""
        with self.lock:
            fakesnow.server.shared_fs.connect(*self.namespace).close()
            register_json_udfs(fakesnow.server.shared_fs.duck_conn)

    def drop_data(self) -> list[str]:
        """Drop every schema of the bootstrap database, then recreate the bootstrap schema."""
        database = self.namespace[0]
        with self.lock:
            duck = fakesnow.server.shared_fs.duck_conn.cursor()
            try:
                schemas = [
                    name
                    for (name,) in duck.execute(
                        "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = ? "
                        "AND schema_name NOT IN ('main', '_fs_information_schema')",
                        [database],
                    ).fetchall()
                ]
                for name in schemas:
                    duck.execute(f'DROP SCHEMA "{database}"."{name}" CASCADE')
            finally:
                duck.close()
            fakesnow.server.shared_fs.connect(*self.namespace).close()
        return schemas

    def resolve(self, database: str | None, schema: str | None) -> tuple[str | None, str | None]:
        """The database and schema named exactly so (as SHOW shows them), or None for each missing."""
        with self.lock:
            duck = fakesnow.server.shared_fs.duck_conn.cursor()
            try:
                rows = duck.execute("SELECT catalog_name, schema_name FROM information_schema.schemata").fetchall()
            finally:
                duck.close()
        databases = {catalog for catalog, _ in rows if catalog not in INTERNAL_CATALOGS}
        if database not in databases:
            return None, None
        schemas = {name for catalog, name in rows if catalog == database and name not in INTERNAL_SCHEMAS}
        return database, schema if schema in schemas | {"INFORMATION_SCHEMA"} else None

    def run(self, stmt: Statement, sql: str, params: Any, ctx: Context) -> Result:
        """Execute one statement; SQL errors become ApiError 422."""
        with self.lock:
            if stmt.cancelled.is_set():
                raise Cancelled
            conn = FakeSnowflakeConnection(
                fakesnow.server.shared_fs.duck_conn.cursor(),
                {},  # a private results cache: freed with the connection
                ctx.database,
                ctx.schema,
                create_database=False,
                create_schema=False,
            )
            stmt.duck = conn._duck_conn
            try:
                cur = conn.cursor()
                check_insert(cur, sql)
                cur.execute(strict_json_sql(sql), binding_params=params, server=True)
                describe = cur._describe_last_sql()
                table = cur._arrow_table
            except (snowflake.connector.errors.ProgrammingError, snowflake.connector.errors.OperationalError) as e:
                raise sql_error(*snowflake_error(e)) from None
            except duckdb.Error as e:
                raise duck_error(e) from None
            finally:
                stmt.duck = None
                conn.close()
        return Result(row_type(describe), table_rows(table))


INTERNAL_CATALOGS = frozenset({"system", "temp", "memory"})
INTERNAL_SCHEMAS = frozenset({"main", "_fs_information_schema", "information_schema", "pg_catalog"})
NOT_A_NUMBER = re.compile(r"Could not convert string '(.*)' to (?:INT\d*|UINT\d*|HUGEINT|DECIMAL|DOUBLE|FLOAT)", re.S)


def snowflake_error(e: snowflake.connector.errors.Error) -> tuple[str, str, str]:
    """(code, sqlState, message) of a fakesnow error, with DuckDB's numeric conversion as Snowflake words it."""
    message = e.raw_msg or e.msg or ""
    if match := NOT_A_NUMBER.search(message):
        return "100038", "22018", f"Numeric value '{match[1]}' is not recognized"
    return f"{e.errno:06d}", e.sqlstate or "42000", message


def duck_error(e: Exception) -> ApiError:
    """A DuckDB error fakesnow lets through, as the Snowflake error it stands for."""
    message = str(e)
    if DUPLICATE_KEY_ERROR in message:
        return sql_error("100069", "22P02", message[message.index(DUPLICATE_KEY_ERROR) :].strip())
    if isinstance(e, duckdb.ConstraintException) and "NOT NULL" in message:
        return sql_error("100072", "22000", "NULL result in a non-nullable column")
    if match := NOT_A_NUMBER.search(message):
        return sql_error("100038", "22018", f"Numeric value '{match[1]}' is not recognized")
    return internal_error(e)
