"""SQL API submissions: the body, its context, statement kinds and splitting, bindings.

SQL API v2
----------
``POST /api/v2/statements?requestId=<uuid>&retry=true|false&async=true|false`` with headers
``Authorization: Bearer <token>``, ``X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT |
PROGRAMMATIC_ACCESS_TOKEN`` and ``User-Agent``. Body fields: ``statement``, ``timeout``,
``database``, ``schema``, ``warehouse``, ``role``, ``bindings``, ``parameters`` (``query_tag``,
``timezone``, ``multi_statement_count``, any case; default count 1, 0 = any).
``?nullable=false`` turns NULLs into the string "null".

Rule 1 (rule numbers as in the package docstring)
--------------------------------------------------
Context names are case-sensitive. The body's ``warehouse``, ``database``, ``schema`` and
   ``role`` must match an object's name exactly as SHOW returns it (unquoted-created names are
   upper case): "The values in these fields are case-sensitive and must match the case of the
   field returned by a SQL SHOW command" (https://docs.snowflake.com/en/developer-guide/sql-api/
   submitting-requests; snowflake-rest-api-specs specifications/sqlapi.yaml). Omitted fields take
   the user's DEFAULT_WAREHOUSE / DEFAULT_NAMESPACE / DEFAULT_ROLE (same page). A name that
   matches nothing leaves that part of the context empty, and a statement fails only if it
   needs it:

   * ``CURRENT_ROLE()``, ``CURRENT_WAREHOUSE()``, ``CURRENT_DATABASE()``, ``CURRENT_SCHEMA()``
     answer the stored objects' names, NULL where nothing matched; ``SELECT 1`` and fully
     qualified names need no database.
   * A statement with an unqualified object name (``CREATE TABLE T``, ``INSERT INTO T``) needs a
     current database and schema. Body ``database`` given but matching nothing: 422 ``391918``
     "Unable to run <command> without specifying database/warehouse", no sqlState (exactly what
     rinsed-org/rb-snowflake-client#26 got for lower-case names; UNCONFIRMED: whether
     ``<command>`` is literal, and whether a missing default namespace gives 391918 too). No
     database at all: 422 ``090105`` 22000 "Cannot perform <KIND>. This session does not have a
     current database. Call 'USE DATABASE', or use a qualified name."; database found but the
     schema not: 422 ``090106`` 22000 (same text with schema / 'USE SCHEMA'). These are the
     drivers' session errors (fakesnow raises them; public dbt/JDBC traces); that the SQL API
     answers 090106 for an unmatched body schema is UNCONFIRMED.
   * DML (INSERT/UPDATE/DELETE/MERGE/COPY) and SELECTs with a FROM need a warehouse. Body
     ``warehouse`` given but matching none: 422 ``391918`` (as above). None named and the user
     has no default warehouse (or it does not exist): 422 ``000606`` 57P03 "No active warehouse
     selected in the current session.  Select an active warehouse with the 'use warehouse'
     command." (dbt-labs/dbt-snowflake#24, snowflakedb/pdo_snowflake#179).
   * ``role``: the request's role (body ``role`` or the user's default role) must be granted to
     the user; the default role and PUBLIC always are. Otherwise, whatever the statement: 422
     ``390189`` 08004 "Role '<ROLE>' specified in the connect string does not exist or not
     authorized. Contact your local system administrator, or attempt to login with another
     role, e.g. PUBLIC." (code: gosnowflake internal/errors/errors.go ErrRoleNotExist and its
     TestValidateDatabaseParameter; the message is the drivers'; the HTTP status 422 and
     sqlState are UNCONFIRMED for the SQL API).
   * Names inside SQL text follow SQL identifier rules: unquoted names are upper-cased,
     ``"Quoted"`` names keep their case (CREATE/ALTER WAREHOUSE, USE WAREHOUSE).

Rule 6
------
Request parameters are read whatever their case: the SQL API guide writes
   ``"MULTI_STATEMENT_COUNT"`` (https://docs.snowflake.com/en/developer-guide/sql-api/
   submitting-multiple-statements), the OpenAPI spec ``multi_statement_count``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from fakesnow.converter import from_binding
from sqlglot.dialects.snowflake import Snowflake
from sqlglot.tokens import TokenType

from tracklayer_local.emulator.auth import User
from tracklayer_local.emulator.errors import ApiError, bad_request, sql_error

DML_KINDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})


@dataclass
class SqlRequest:
    """A validated submission. Context names are as the body (or the user's defaults) gave them."""

    statement: str
    bindings: dict[str, Any] | None
    database: str | None
    schema: str | None
    warehouse: str | None
    role: str
    timeout: int
    multi_statement_count: int
    nullable: bool
    user: User
    named: frozenset[str] = frozenset()  # the context fields the body itself set


@dataclass(frozen=True)
class Context:
    """A request's context once resolved: the stored objects' names, None where none matched."""

    role: str
    warehouse: str | None
    database: str | None
    schema: str | None


def parameter(parameters: dict[str, Any], name: str, default: Any = None) -> Any:
    """A request parameter by name, whatever its case (the SQL API guide writes MULTI_STATEMENT_COUNT,
    the OpenAPI spec multi_statement_count)."""
    for key, value in parameters.items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return default


def parse_sql_request(body: Any, nullable: bool, user: User, namespace: tuple[str, str]) -> SqlRequest:
    """Validate a POST /api/v2/statements body (ApiError 400 when invalid)."""
    if not isinstance(body, dict):
        raise bad_request("Incoming request does not contain a valid payload.")
    statement = body.get("statement")
    if not isinstance(statement, str) or not statement.strip():
        raise bad_request("The request body has no statement.")
    bindings = body.get("bindings")
    if bindings is not None and not (
        isinstance(bindings, dict)
        and all(isinstance(b, dict) and isinstance(b.get("value"), (str, type(None))) for b in bindings.values())
    ):
        raise bad_request('bindings must be {"<n>": {"type": "...", "value": "<string>"}}.')
    context = {k: body.get(k) for k in ("database", "schema", "warehouse", "role")}
    if not all(isinstance(v, (str, type(None))) for v in context.values()):
        raise bad_request("database, schema, warehouse and role must be strings.")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request("parameters must be an object.")
    try:
        timeout = int(body.get("timeout") or 0)
        multi_statement_count = int(parameter(parameters, "multi_statement_count", 1))
    except (TypeError, ValueError):
        raise bad_request("timeout and multi_statement_count must be integers.") from None
    database = context["database"] or namespace[0]
    schema = context["schema"] or (namespace[1] if database == namespace[0] else None)
    return SqlRequest(
        statement=statement,
        bindings=bindings or None,
        database=database,
        schema=schema,
        warehouse=context["warehouse"] or user.default_warehouse,
        role=context["role"] or user.default_role,
        timeout=timeout,
        multi_statement_count=multi_statement_count,
        nullable=nullable,
        user=user,
        named=frozenset(k for k, v in context.items() if v),
    )


def role_not_authorized(role: str) -> ApiError:
    return sql_error(
        "390189",
        "08004",
        f"Role '{role}' specified in the connect string does not exist or not authorized. Contact your local "
        "system administrator, or attempt to login with another role, e.g. PUBLIC.",
    )


def no_context_named() -> ApiError:
    """391918: the body named a database or warehouse that matches none (rinsed-org/rb-snowflake-client#26)."""
    return ApiError(422, "391918", "Unable to run <command> without specifying database/warehouse")


LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|//[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
KIND_ALIASES = {"WITH": "SELECT", "DESC": "DESCRIBE"}


def statement_kind(sql: str | None) -> str:
    """The first keyword, upper-case (WITH counts as SELECT); UNKNOWN without one."""
    if not sql:
        return "UNKNOWN"
    word = re.match(r"[A-Za-z_]*", sql[LEADING_NOISE.match(sql).end() :])[0].upper()
    return KIND_ALIASES.get(word, word) or "UNKNOWN"


@dataclass
class Piece:
    sql: str
    placeholders: int


def split_statements(sql: str) -> list[Piece]:
    """Split on top-level semicolons (not in strings or comments), counting ? per statement."""
    if ";" not in sql:
        return [Piece(sql, sql.count("?"))]
    try:
        tokens = Snowflake().tokenize(sql)
    except Exception:  # noqa: BLE001 - let fakesnow report the syntax error
        return [Piece(sql, sql.count("?"))]
    pieces, start, placeholders, has_tokens = [], 0, 0, False
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            if has_tokens:
                pieces.append(Piece(sql[start : token.start].strip(), placeholders))
            start, placeholders, has_tokens = token.end + 1, 0, False
        else:
            has_tokens = True
            placeholders += token.token_type == TokenType.PLACEHOLDER
    if has_tokens:
        pieces.append(Piece(sql[start:].strip(), placeholders))
    return pieces or [Piece(sql, 0)]


def bind_value(position: str, binding: dict[str, Any]) -> Any:
    """A SQL API binding ({"type", "value"}, value a string) as a Python value for fakesnow."""
    kind, value = str(binding.get("type", "TEXT")).upper(), binding.get("value")
    if value is None:
        return None
    try:
        if kind == "FIXED":
            number = Decimal(value)
            if not number.is_finite():
                raise InvalidOperation
            return int(number) if number == number.to_integral_value() and "." not in value else number
        if kind == "REAL":
            return float(value)
        if kind == "BOOLEAN":
            if value.lower() not in ("true", "false"):
                raise ValueError
            return value.lower() == "true"
        if kind in ("DATE", "TIME", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ"):
            # epoch numbers as the drivers send them; other text is cast by the database
            return from_binding({"type": kind, "value": value}) if re.fullmatch(r"-?\d+( \d+)?", value) else value
        if kind == "BINARY":
            return bytes.fromhex(value)
        if kind in ("TEXT", "VARIANT", "OBJECT", "ARRAY"):
            return value
    except (ArithmeticError, ValueError):
        raise sql_error("100037", "22018", f"Bind variable {position}: {value!r} is not a valid {kind}.") from None
    raise sql_error("100037", "22018", f"Bind variable {position}: unsupported type {kind}.")


def bind_values(bindings: dict[str, Any] | None) -> list[Any] | dict[str, Any] | None:
    """Positional bindings ("1", "2", ...) as a list, named ones as a dict."""
    if not bindings:
        return None
    if all(k.isdigit() for k in bindings):
        missing = [str(i) for i in range(1, len(bindings) + 1) if str(i) not in bindings]
        if missing:
            raise sql_error("100037", "22018", f"Bind variables are not numbered 1..n (missing {missing}).")
        return [bind_value(str(i), bindings[str(i)]) for i in range(1, len(bindings) + 1)]
    return {name: bind_value(name, b) for name, b in bindings.items()}
