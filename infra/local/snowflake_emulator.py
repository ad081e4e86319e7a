"""The local Snowflake: fakesnow's driver protocol and Snowflake's SQL API v2 over one DuckDB.

Run (from the repository root)::

    .venv/bin/python infra/local/snowflake_emulator.py [--host 127.0.0.1] [--port 8085]
        [--bootstrap TRACKLAYER.EVENTS] [--async-threshold-ms 45000]

One Starlette app serves:

* fakesnow's own routes (``/session/v1/login-request``, ``/queries/v1/query-request``, ...), so
  snowflake-connector-python connects with ``account="fakesnow", host=..., port=...,
  protocol="http"`` and accepts any credentials;
* Snowflake's SQL API v2 (``/api/v2/statements``), authenticated as Snowflake does;
* Snowpipe Streaming's REST API (``/v2/streaming/...``, ``/oauth/token``): see
  ``streaming_emulator.py``, whose docstring is its reference (settings under ``"streaming"``,
  its fault actions and ``/__emulator/streaming/...`` control endpoints);
* control endpoints under ``/__emulator`` for tests (users, faults, settings, request report).

Both protocols use fakesnow's shared in-memory DuckDB (``fakesnow.server.shared_fs``): a row
inserted through the SQL API is visible to the connector and the other way round. The bootstrap
database and schema (default TRACKLAYER.EVENTS) exist from the start. They are also each SQL API
user's default namespace when a request names no database/schema. Databases and schemas a
request names are never created implicitly.

The local Snowflake is only worth what it refuses. The rules below are Snowflake's, each with
its source; a behaviour marked UNCONFIRMED is the most likely documented form, not one checked
against a real account.

Rules the SQL API enforces
--------------------------
1. Context names are case-sensitive. The body's ``warehouse``, ``database``, ``schema`` and
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
2. ``PARSE_JSON`` and ``TRY_PARSE_JSON`` are strict about repeated keys
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
3. A rejected key-pair JWT answers 401 ``390144`` 08001 with the message
   ``JWT token is invalid. [<uuid>]`` and nothing else: "Each JWT token is invalid error includes
   a UUID that appears in brackets" (https://docs.snowflake.com/user-guide/
   key-pair-auth-troubleshooting). The reason is kept per UUID and answered by
   ``SELECT SYSTEM$GET_LOGIN_FAILURE_DETAILS('<uuid>')`` as the documented JSON object
   ``{"clientIP", "clientType": "OTHER", "clientVersion": null, "username", "errorCode",
   "timestamp"}`` (https://docs.snowflake.com/sql-reference/functions/
   system_get_login_failure_details), and by
   ``SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('<uuid>'), '<key>')``; an
   unknown UUID gives NULL (UNCONFIRMED). ``errorCode`` is the reason's name as the official
   connector names the codes (snowflake-connector-python network.py
   CREDENTIAL_REJECTION_GS_CODES); the checks, in order:
   394306 JWT_TOKEN_INVALID_FORMAT (not a decodable JWT); 394305 JWT_TOKEN_INVALID_ALGORITHM
   (alg not RS256: none, HS256, ...); 394300 JWT_TOKEN_INVALID (iss not
   ``ACCOUNT.USER.SHA256:<base64>`` with upper-case ACCOUNT and USER, sub != ACCOUNT.USER of iss,
   no such registered user, or a signature that does not verify with the key the fingerprint
   names); 394304 JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH (the fingerprint is not one
   of the user's keys, rsa_public_key or rsa_public_key_2); 394303
   JWT_TOKEN_INVALID_EXPIRATION_TIME (iat or exp missing / not numbers, or exp - iat > 3600 s);
   394302 JWT_TOKEN_NOT_YET_VALID (iat more than 60 s in the future); 394301 JWT_TOKEN_EXPIRED
   (exp <= now). Which of these Snowflake reports for a bad signature or an unknown user, and
   whether errorCode also carries the number, is UNCONFIRMED. Only administrators with MONITOR
   may call the function in Snowflake; the emulator lets any user. (Snowflake's 2026_07 bundle,
   BCR-2421, pending, changes what an expired JWT answers on some REST endpoints to
   390318 "OAuth access token expired"; not modelled.)
4. Compile errors come before any row is touched. For ``INSERT INTO t [(cols)] SELECT ...``:
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
5. Results follow the spec (snowflake-rest-api-specs specifications/sqlapi.yaml): DML answers
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
6. Request parameters are read whatever their case: the SQL API guide writes
   ``"MULTI_STATEMENT_COUNT"`` (https://docs.snowflake.com/en/developer-guide/sql-api/
   submitting-multiple-statements), the OpenAPI spec ``multi_statement_count``.
7. ``CALL SYSTEM$WAIT(<amount>[, '<unit>'])`` (or ``SELECT`` instead of ``CALL``) waits that
   long, then answers one row, column ``SYSTEM$WAIT``, ``waited <amount> <unit>`` with the unit
   in lower case (``waited 10 seconds``, ``waited 2 minutes``); units DAYS, HOURS, MINUTES,
   SECONDS (the default), MILLISECONDS, MICROSECONDS, NANOSECONDS, any case
   (https://docs.snowflake.com/en/sql-reference/functions/system_wait). "SYSTEM$WAIT checks
   periodically for cancellation" (same page): a cancel or the request's ``timeout`` ends the
   wait at once (000604 / 408 000630, as for any statement). It is how tests and
   ``snowflake_check.py`` make a statement reliably slow without scanning data. Only that
   whole-statement form is intercepted (SYSTEM$WAIT inside another statement, or another unit,
   reaches fakesnow, which refuses it with 002003, not Snowflake's code). UNCONFIRMED: the text
   for an amount of 1 or a fraction (the docs show only plurals of whole numbers), and whether
   Snowflake needs a warehouse for it (here it needs none).

SQL API v2
----------
``POST /api/v2/statements?requestId=<uuid>&retry=true|false&async=true|false`` with headers
``Authorization: Bearer <token>``, ``X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT |
PROGRAMMATIC_ACCESS_TOKEN`` and ``User-Agent``. Body fields: ``statement``, ``timeout``,
``database``, ``schema``, ``warehouse``, ``role``, ``bindings``, ``parameters`` (``query_tag``,
``timezone``, ``multi_statement_count``, any case; default count 1, 0 = any).
``?nullable=false`` turns NULLs into the string "null".

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
* 202 when execution takes longer than the async threshold (default 45 s, see settings) or with
  ``async=true``: ``{"code": "333334", "message": "Asynchronous execution in progress. ...",
  "statementHandle", "statementStatusUrl"}``; the statement keeps running.
* ``GET /api/v2/statements/{handle}[?partition=N]``: 202 while running, then the final answer
  (200, 422, 408), or result partition N (rule 5).
  ``POST /api/v2/statements/{handle}/cancel``: 200. If the statement was still running the body
  is ``{"code": "000604", "sqlState": "57014", "message": "SQL execution canceled", ...}`` and
  later polls answer 422 with that body; if it had already finished the body has code "000000"
  and the statement keeps its answer. Unknown handle: 404 code "000709".
* Idempotency: with ``retry=true`` a requestId whose last execution succeeded is answered from
  the stored result without executing again, one still running gets 202 (same handle) once the
  async threshold has passed, one that failed executes again. Without ``retry=true`` a repeated
  requestId always executes again.
* Statement timeout (body ``timeout`` > 0, seconds): 408 ``{"code": "000630", "sqlState":
  "57014"}``; the statement is interrupted.
* Intercepted statements (fakesnow cannot run them): ``SHOW WAREHOUSES [LIKE '<pattern>']``,
  ``CREATE [OR REPLACE] WAREHOUSE [IF NOT EXISTS] <name> [WITH] <props>``, ``ALTER WAREHOUSE <name>
  SUSPEND | RESUME [IF SUSPENDED] | SET <props>`` (props AUTO_SUSPEND, AUTO_RESUME,
  WAREHOUSE_SIZE, INITIALLY_SUSPENDED), ``USE WAREHOUSE|ROLE <name>`` and GRANT/REVOKE/CREATE ROLE
  (succeed, no effect), ``SELECT CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_USER(),
  CURRENT_ACCOUNT(), CURRENT_DATABASE(), CURRENT_SCHEMA()`` (the resolved context, rule 1),
  ``SELECT SYSTEM$GET_LOGIN_FAILURE_DETAILS(...)`` and its JSON_EXTRACT_PATH_TEXT (rule 3),
  ``CALL SYSTEM$WAIT(...)`` (rule 7).
  Inside other statements CURRENT_ROLE()/CURRENT_WAREHOUSE()/CURRENT_USER()/CURRENT_ACCOUNT()
  are replaced by literals.
* Warehouses: a statement that needs one (rule 1) runs on the request's warehouse; SUSPENDED
  with auto_resume -> resumed (its ``resumes`` counter, see GET /__emulator/settings, goes up);
  SUSPENDED without auto_resume -> 422 000608. Default: TRACKLAYER_WH, STARTED, auto_resume
  true, auto_suspend 60 (no timer suspends it).

Error conventions (HTTP status, code, sqlState)
-----------------------------------------------
* 400 390142: invalid request - body not a JSON object, no ``statement``, bad field types,
  binding value not a string, missing User-Agent header, a result partition that does not exist.
* 401 390101 08001: missing/malformed ``Authorization: Bearer`` header, or the token type
  header missing or not KEYPAIR_JWT / PROGRAMMATIC_ACCESS_TOKEN (exact, upper-case).
* 401 390144 08001 "JWT token is invalid. [<uuid>]" (rule 3).
* 401 394400 08004 "Programmatic access token is invalid.": unknown, expired or revoked PAT.
* 422: SQL errors: fakesnow's errno as six digits and its sqlState, e.g. 002003 42S02 (object
  does not exist), 001003 42000 (syntax), 090105/090106 22000 (no current database/schema),
  391918 / 000606 / 390189 (rule 1), 100069 22P02 (rule 2), 000904 42000 / 002023 22000 /
  100038 22018 (rule 4), 100072 22000 (NULL into a NOT NULL column), 100037 22018 (bad bind
  value), 000008 0A000 (statement count mismatch), 000608 57P03 (warehouse suspended), 000604
  57014 (cancelled), 090064/090063 22000 (warehouse cannot be suspended / resumed in its state).
  The body has statementHandle and statementStatusUrl.
* 408 000630 57014: statement timeout.
* 500 000603 XX000: unhandled emulator exception (a bug or an unsupported feature; see the log).

What the emulator does NOT check (Snowflake would)
--------------------------------------------------
Privileges and grants (GRANT/REVOKE/CREATE ROLE succeed and change nothing; any granted role may
do anything; USE ROLE / USE WAREHOUSE inside a request change nothing and USE ROLE is not
checked); who may call SYSTEM$GET_LOGIN_FAILURE_DETAILS; quoted identifiers inside SQL text
(DuckDB resolves ``"tracklayer".events.t`` case-insensitively, Snowflake would not); strict
PARSE_JSON through the drivers' protocol (only SQL API statements are rewritten); numbers
PARSE_JSON cannot hold (``1e400`` is accepted, UNCONFIRMED what Snowflake does); OBJECT key
order (Snowflake does not keep it, DuckDB does); 002023 for INSERT ... VALUES and UPDATE/MERGE;
column counts (fakesnow's own error, 002043); warehouses suspending on their own; statement size
limits; result column names of unaliased expressions (DuckDB's).

Control endpoints (not counted in the request report)
-----------------------------------------------------
* ``GET /__emulator/health`` -> 200 ``{"status": "ok"}``.
* ``POST /__emulator/users`` ``{"account", "user", "rsa_public_key": PEM, "rsa_public_key_2"?: PEM,
  "pats"?: [{"token", "expires_at"?: epoch seconds or ISO 8601, "revoked"?: bool}],
  "default_role"?: "PUBLIC", "default_warehouse"?: "TRACKLAYER_WH" (null: none), "roles"?:
  ["ROLE", ...]}`` registers or replaces the user (ACCOUNT and USER are upper-cased) and answers
  its key fingerprints and ``roles``, the roles granted to it: those listed, its default role and
  PUBLIC (exact names, as SHOW ROLES shows them). ``GET`` answers a JSON array of the users.
* ``POST /__emulator/faults`` ``{"match": {"method"?, "path_prefix"?, "statement_contains"?, "binding_contains"?},
  "count"?: 1, "phase"?: "before_execute" | "after_execute", "probability"?: 1, "seed"?: int, "action": A}``
  where A is one of
  ``{"status": 429|500|503|..., "headers"?: {...}}`` (Snowflake-like body: 429 -> 390505, 500 ->
  000603, other -> "390<status>"), ``{"snowflake_error": {"status"?: 422, "code", "sqlState"?,
  "message"?}}`` (a 422 registers a failed statement so its handle can be polled),
  ``{"delay_ms": N}`` (before_execute: the statement starts N ms late, which counts towards the
  async threshold; after_execute: the answer is held back N ms), ``{"drop_connection": true}``
  (sends "200 OK" with a Content-Length, part of the body, then closes the connection: the client
  gets an I/O error while reading the body). Omitted match fields match anything;
  statement_contains (case-insensitive) and binding_contains (case-sensitive, in any bound
  value: targets the chunks holding one row) only match SQL API submissions. The next ``count``
  matching requests get the fault, first rule first. after_execute runs the request for real
  first (rows are inserted), then replaces its answer. ``probability`` (0 < p <= 1, default 1):
  a matching request takes the rule only with that probability; otherwise the rule is neither
  used nor consumed and the next rule is considered (``count`` still bounds the uses). Each
  matching request of a rule with p < 1 draws ``rng.random() < p`` once, where rng is the rule's
  own ``random.Random(seed)`` when the rule has a ``seed``, else the emulator's shared generator
  (seeded by the ``seed`` setting; unseeded after start and reset). Draws follow the order in
  which requests reach the rule, so a seeded run is reproducible when its requests arrive in the
  same order. ``GET`` answers a JSON array of the rules still armed (with ``remaining`` counts,
  ``probability``, ``seed`` and ``taken``, the uses so far); ``DELETE`` clears them
  (``{"cleared": n}``).
  A ``status`` action may carry ``"body": <any JSON>`` to answer instead of the Snowflake-like
  body (e.g. a bare string). The streaming actions ``channel_error``, ``fence_channel`` and
  ``commit_delay_ms`` are described in streaming_emulator.py.
* ``POST /__emulator/settings`` ``{"async_threshold_ms"?: N, "partition_bytes"?: N, "seed"?: int|null,
  "warehouses"?: {NAME: {"state"?: "STARTED"|"SUSPENDED", "auto_resume"?: bool, "auto_suspend"?:
  int|null, "size"?: str}}}`` (merged; unknown warehouses are created, named exactly as given).
  ``seed`` reseeds the shared generator of
  probabilistic fault rules (null: unseeded), every time it is posted. ``GET`` shows them.
* ``GET /__emulator/requests``: ``{"total", "by_path", "by_kind", "statements": [{"request_id",
  "retry", "kind", "query_tag", "status", "bytes", "handle", "executed", "fault"}]}`` for every
  request outside /__emulator since the last reset. Paths are grouped as "/api/v2/statements",
  "/api/v2/statements/{handle}", "/api/v2/statements/{handle}/cancel" and fakesnow's paths.
  ``statements`` holds one entry per POST /api/v2/statements (``kind`` is the first statement's
  first keyword, "UNKNOWN" without a statement; ``executed`` is false when the answer came from a
  fault or the idempotency store). ``DELETE`` clears the report.
  Streaming paths are grouped with placeholders for names, and ``by_streaming`` counts them by
  kind (hostname, token, open, append, status, drop).
* ``POST /__emulator/reset`` ``{"drop_data"?: false}`` clears faults, the report, stored
  statements and settings, seed and partition_bytes included (users and the login failures
  rule 3 keeps stay); with drop_data it also drops every schema of the bootstrap database and
  recreates the bootstrap schema.

Concurrency: SQL API statements run in a thread pool, each on a fresh fakesnow connection, one
at a time (a lock serialises DuckDB work, as Snowflake queues conflicting DML); the event loop
never blocks on DuckDB.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
import warnings
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb
import fakesnow.server
import jwt
import pyarrow as pa
import snowflake.connector.errors
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fakesnow.converter import from_binding
from fakesnow.fakes import FakeSnowflakeConnection
from fakesnow.rowtype import describe_as_rowtype
import sqlglot
from sqlglot import exp
from sqlglot.dialects.snowflake import Snowflake
from sqlglot.tokens import TokenType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import streaming_emulator

warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
log = logging.getLogger("snowflake_emulator")

STATEMENTS_PATH = "/api/v2/statements"
CONTROL_PREFIX = "/__emulator"
BEFORE, AFTER = "before_execute", "after_execute"
DML_KINDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})
ASYNC_MESSAGE = "Asynchronous execution in progress. Use provided query id to perform query monitoring and management."
MAX_STORED_STATEMENTS = 2000
DEFAULT_PARTITION_BYTES = 10_000_000
JWT_MAX_LIFETIME_S = 3600
JWT_MAX_FUTURE_IAT_S = 60


# --------------------------------------------------------------------------------------------
# Answers and errors
# --------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """An HTTP answer: status, Snowflake JSON body, optional extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


class ApiError(Exception):
    """A Snowflake-style error answer."""

    def __init__(self, status: int, code: str, message: str, sql_state: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.sql_state = status, code, message, sql_state

    def answer(self, stmt: Statement | None = None) -> Answer:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.sql_state:
            body["sqlState"] = self.sql_state
        if stmt is not None:
            body |= stmt.links()
        return Answer(self.status, body)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "390142", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "390101", message, "08001")


def sql_error(code: str, sql_state: str, message: str) -> ApiError:
    return ApiError(422, code, message, sql_state)


def internal_error(exc: BaseException) -> ApiError:
    return ApiError(500, "000603", f"Emulator internal error: {type(exc).__name__}: {exc}", "XX000")


# --------------------------------------------------------------------------------------------
# Users and authentication
# --------------------------------------------------------------------------------------------

# Reason codes and names of rejected key-pair JWTs, as the official connector names them
# (snowflake-connector-python src/snowflake/connector/network.py, CREDENTIAL_REJECTION_GS_CODES).
JWT_TOKEN_INVALID = ("394300", "JWT_TOKEN_INVALID")
JWT_TOKEN_EXPIRED = ("394301", "JWT_TOKEN_EXPIRED")
JWT_TOKEN_NOT_YET_VALID = ("394302", "JWT_TOKEN_NOT_YET_VALID")
JWT_TOKEN_INVALID_EXPIRATION_TIME = ("394303", "JWT_TOKEN_INVALID_EXPIRATION_TIME")
JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH = ("394304", "JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH")
JWT_TOKEN_INVALID_ALGORITHM = ("394305", "JWT_TOKEN_INVALID_ALGORITHM")
JWT_TOKEN_INVALID_FORMAT = ("394306", "JWT_TOKEN_INVALID_FORMAT")

ISSUER_RE = re.compile(r"([^.\s]+)\.([^.\s]+)\.SHA256:([A-Za-z0-9+/]+=*)")
MAX_LOGIN_FAILURES = 2000


class JwtRejected(Exception):
    """Why a key-pair JWT was refused: kept by the emulator, never put in the answer."""

    def __init__(self, reason: tuple[str, str], detail: str, username: str | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.username = reason, detail, username


@dataclass
class LoginFailure:
    """One refused login, as SYSTEM$GET_LOGIN_FAILURE_DETAILS describes it."""

    client_ip: str | None
    username: str | None
    error_code: str
    reason_code: str
    detail: str
    timestamp: int

    def details_json(self) -> str:
        """The documented JSON (docs.snowflake.com/sql-reference/functions/system_get_login_failure_details)."""
        return json.dumps(
            {
                "clientIP": self.client_ip,
                "clientType": "OTHER",
                "clientVersion": None,
                "username": self.username,
                "errorCode": self.error_code,
                "timestamp": self.timestamp,
            },
            separators=(",", ":"),
        )


class LoginFailures:
    """Refused logins by the UUID their 390144 answer shows (the newest MAX_LOGIN_FAILURES)."""

    def __init__(self) -> None:
        self._by_uuid: OrderedDict[str, LoginFailure] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, rejected: JwtRejected, client_ip: str | None, now: float) -> str:
        failure_id = str(uuid.uuid4())
        code, name = rejected.reason
        failure = LoginFailure(client_ip, rejected.username, name, code, rejected.detail, int(now))
        with self._lock:
            self._by_uuid[failure_id] = failure
            while len(self._by_uuid) > MAX_LOGIN_FAILURES:
                self._by_uuid.popitem(last=False)
        log.warning("JWT token is invalid. [%s]: %s %s: %s", failure_id, code, name, rejected.detail)
        return failure_id

    def get(self, failure_id: str) -> LoginFailure | None:
        with self._lock:
            return self._by_uuid.get(failure_id)


def jwt_invalid(failure_id: str) -> ApiError:
    return ApiError(401, "390144", f"JWT token is invalid. [{failure_id}]", "08001")


def pat_invalid() -> ApiError:
    return ApiError(401, "394400", "Programmatic access token is invalid.", "08004")


def key_fingerprint(key: RSAPublicKey) -> str:
    """Base64 SHA-256 of the DER SubjectPublicKeyInfo, as in RSA_PUBLIC_KEY_FP (without 'SHA256:')."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def load_public_key(pem: Any) -> RSAPublicKey:
    if not isinstance(pem, str):
        raise ValueError("public keys must be PEM strings")
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, RSAPublicKey):
        raise ValueError("public keys must be RSA keys")
    return key


def parse_instant(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string (naive means UTC); None stays None."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        at = datetime.fromisoformat(value)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    raise ValueError(f"not a time: {value!r}")


@dataclass
class Pat:
    token: str
    expires_at: float | None
    revoked: bool

    def valid(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > now)


@dataclass
class User:
    account: str
    name: str
    keys: dict[str, RSAPublicKey]  # fingerprint -> key
    pats: list[Pat]
    default_role: str
    default_warehouse: str | None
    roles: frozenset[str] = frozenset()

    @property
    def granted_roles(self) -> frozenset[str]:
        """The roles the user may name in a request: those granted, its default role and PUBLIC."""
        return self.roles | {self.default_role, "PUBLIC"}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> User:
        account, name = spec.get("account"), spec.get("user")
        if not isinstance(account, str) or not isinstance(name, str) or not account or not name:
            raise ValueError("account and user are required strings")
        keys = [load_public_key(spec[k]) for k in ("rsa_public_key", "rsa_public_key_2") if spec.get(k)]
        pats = [
            Pat(str(p["token"]), parse_instant(p.get("expires_at")), bool(p.get("revoked", False)))
            for p in spec.get("pats") or []
        ]
        roles = spec.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise ValueError("roles must be a list of role names (as SHOW ROLES shows them)")
        return cls(
            account=account.upper(),
            name=name.upper(),
            keys={key_fingerprint(k): k for k in keys},
            pats=pats,
            default_role=spec.get("default_role") or "PUBLIC",
            default_warehouse=spec.get("default_warehouse", "TRACKLAYER_WH"),
            roles=frozenset(roles),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "user": self.name,
            "fingerprints": [f"SHA256:{fp}" for fp in self.keys],
            "pats": len(self.pats),
            "default_role": self.default_role,
            "default_warehouse": self.default_warehouse,
            "roles": sorted(self.granted_roles),
        }


class Users:
    """Registered users, keyed by (ACCOUNT, USER)."""

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], User] = {}
        self._lock = threading.Lock()

    def register(self, user: User) -> None:
        with self._lock:
            self._users[(user.account, user.name)] = user

    def get(self, account: str, name: str) -> User | None:
        with self._lock:
            return self._users.get((account, name))

    def by_pat(self, token: str) -> tuple[User, Pat] | None:
        with self._lock:
            for user in self._users.values():
                for pat in user.pats:
                    if pat.token == token:
                        return user, pat
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [u.describe() for u in self._users.values()]


def authenticate(users: Users, failures: LoginFailures, headers: Any, now: float, client_ip: str | None) -> User:
    """The user a request's Authorization headers identify, or an ApiError (401)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Authorization header is missing or is not 'Bearer <token>'.")
    token_type = headers.get("x-snowflake-authorization-token-type")
    if token_type == "KEYPAIR_JWT":
        try:
            return verify_keypair_jwt(users, token, now)
        except JwtRejected as rejected:
            raise jwt_invalid(failures.record(rejected, client_ip, now)) from None
    if token_type == "PROGRAMMATIC_ACCESS_TOKEN":
        return verify_pat(users, token, now)
    raise unauthorized(
        f"X-Snowflake-Authorization-Token-Type {token_type!r} is missing or not supported here "
        "(use KEYPAIR_JWT or PROGRAMMATIC_ACCESS_TOKEN)."
    )


def verify_keypair_jwt(users: Users, token: str, now: float) -> User:
    """Check a key-pair JWT the way Snowflake does (see the module docstring for the order)."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise JwtRejected(JWT_TOKEN_INVALID_FORMAT, f"Token is not a decodable JWT: {e}") from None
    if header.get("alg") != "RS256":
        raise JwtRejected(JWT_TOKEN_INVALID_ALGORITHM, f"Algorithm {header.get('alg')!r} is not supported; use RS256.")

    issuer = claims.get("iss")
    match = ISSUER_RE.fullmatch(issuer) if isinstance(issuer, str) else None
    if not match or match[1] != match[1].upper() or match[2] != match[2].upper():
        raise JwtRejected(
            JWT_TOKEN_INVALID, f"Issuer {issuer!r} is not ACCOUNT.USER.SHA256:<fingerprint> (upper-case)."
        )
    account, name, fingerprint = match.groups()
    subject = claims.get("sub")
    user = users.get(account, name)
    if subject != f"{account}.{name}" or user is None:
        raise JwtRejected(
            JWT_TOKEN_INVALID, f"Subject {subject!r} / issuer {account}.{name} is not a registered user."
        )
    key = user.keys.get(fingerprint)
    if key is None:
        raise JwtRejected(
            JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH,
            f"Fingerprint SHA256:{fingerprint} matches no key of {account}.{name}.",
            user.name,
        )
    try:
        jwt.PyJWS().decode(token, key=key, algorithms=["RS256"])
    except jwt.PyJWTError as e:
        raise JwtRejected(JWT_TOKEN_INVALID, f"Signature verification failed: {e}", user.name) from None

    issued, expires = claims.get("iat"), claims.get("exp")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (issued, expires)):
        raise JwtRejected(JWT_TOKEN_INVALID_EXPIRATION_TIME, "Claims iat and exp are required numbers.", user.name)
    if expires - issued > JWT_MAX_LIFETIME_S:
        raise JwtRejected(
            JWT_TOKEN_INVALID_EXPIRATION_TIME,
            f"Lifetime exp - iat = {expires - issued}s exceeds {JWT_MAX_LIFETIME_S}s.",
            user.name,
        )
    if issued > now + JWT_MAX_FUTURE_IAT_S:
        raise JwtRejected(
            JWT_TOKEN_NOT_YET_VALID, f"iat {issued} is more than {JWT_MAX_FUTURE_IAT_S}s in the future.", user.name
        )
    if expires <= now:
        raise JwtRejected(JWT_TOKEN_EXPIRED, f"Token expired at {expires} (now {int(now)}).", user.name)
    return user


def verify_pat(users: Users, token: str, now: float) -> User:
    found = users.by_pat(token)
    if found is None or not found[1].valid(now):
        raise pat_invalid()
    return found[0]


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------

FAULT_ACTIONS = ("status", "snowflake_error", "delay_ms", "drop_connection", *streaming_emulator.HANDLER_FAULTS)


@dataclass
class Fault:
    """A rule that makes the next `remaining` matching requests misbehave."""

    id: int
    method: str | None
    path_prefix: str | None
    statement_contains: str | None
    binding_contains: str | None
    remaining: int
    phase: str
    action: dict[str, Any]
    probability: float = 1.0
    seed: int | None = None
    taken: int = 0
    rng: random.Random | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, fault_id: int, spec: Any) -> Fault:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        match, action = spec.get("match") or {}, spec.get("action")
        kinds = [k for k in FAULT_ACTIONS if isinstance(action, dict) and k in action]
        if len(kinds) != 1:
            raise ValueError(f"action needs exactly one of {', '.join(FAULT_ACTIONS)}")
        phase = spec.get("phase", BEFORE)
        if phase not in (BEFORE, AFTER):
            raise ValueError(f"phase must be {BEFORE} or {AFTER}")
        streaming_emulator.check_fault(kinds[0], action, match, phase)
        count = spec.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        error = action.get("snowflake_error")
        if kinds[0] == "snowflake_error" and not (isinstance(error, dict) and error.get("code")):
            raise ValueError("snowflake_error needs at least a code")
        if kinds[0] == "status" and not isinstance(action["status"], int):
            raise ValueError("status must be an integer")
        probability = spec.get("probability", 1)
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 < probability <= 1:
            raise ValueError("probability must be a number, 0 < p <= 1")
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        return cls(
            id=fault_id,
            method=(match.get("method") or "").upper() or None,
            path_prefix=match.get("path_prefix"),
            statement_contains=match.get("statement_contains"),
            binding_contains=match.get("binding_contains"),
            remaining=count,
            phase=phase,
            action=action,
            probability=float(probability),
            seed=seed,
            rng=None if seed is None else random.Random(seed),
        )

    @property
    def kind(self) -> str:
        return next(k for k in FAULT_ACTIONS if k in self.action)

    @property
    def status(self) -> int | None:
        """The HTTP status a status or snowflake_error action answers with."""
        if self.kind == "status":
            return self.action["status"]
        if self.kind == "snowflake_error":
            return self.action["snowflake_error"].get("status", 422)
        return None

    @property
    def delay_s(self) -> float:
        return self.action.get("delay_ms", 0) / 1000

    def matches(self, method: str, path: str, statement: str | None, bindings: str | None = None) -> bool:
        if self.method and self.method != method:
            return False
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        if self.binding_contains is not None and (bindings is None or self.binding_contains not in bindings):
            return False
        if self.statement_contains is not None:
            return statement is not None and self.statement_contains.lower() in statement.lower()
        return True

    def answer(self, stmt: Statement | None) -> Answer:
        """The error answer of a status or snowflake_error action."""
        if self.kind == "status":
            body = self.action["body"] if "body" in self.action else status_fault_body(self.status)
            return Answer(self.status, body, self.action.get("headers"))
        error = self.action["snowflake_error"]
        body = {
            "code": str(error["code"]),
            "sqlState": error.get("sqlState", "XX000"),
            "message": error.get("message", f"Injected Snowflake error {error['code']}."),
        }
        if stmt is not None:
            body |= stmt.links()
        return Answer(self.status, body, self.action.get("headers"))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "match": {
                "method": self.method,
                "path_prefix": self.path_prefix,
                "statement_contains": self.statement_contains,
                "binding_contains": self.binding_contains,
            },
            "remaining": self.remaining,
            "phase": self.phase,
            "action": self.action,
            "probability": self.probability,
            "seed": self.seed,
            "taken": self.taken,
        }


def binding_text(body: Any) -> str | None:
    """The bound values of a submission, joined, for a fault's binding_contains."""
    bindings = body.get("bindings") if isinstance(body, dict) else None
    if not isinstance(bindings, dict):
        return None
    return "\n".join(str(b.get("value")) for b in bindings.values() if isinstance(b, dict))


def status_fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"code": "390505", "message": "Too many requests (emulator fault). Retry later."}
    if status == 500:
        return {"code": "000603", "sqlState": "XX000", "message": "SQL execution internal error (emulator fault)."}
    return {"code": f"390{status}", "message": f"HTTP {status} (emulator fault)."}


class Faults:
    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()
        self._rng = random.Random()

    def reseed(self, seed: int | None) -> None:
        """Reseed the generator shared by probabilistic rules without a seed of their own."""
        with self._lock:
            self._rng = random.Random(seed)

    def add(self, spec: Any) -> Fault:
        with self._lock:
            fault = Fault.parse(self._next_id, spec)
            self._next_id += 1
            self._rules.append(fault)
            return fault

    def take(self, method: str, path: str, statement: str | None, bindings: str | None = None) -> Fault | None:
        """Consume one use of the first rule matching the request (and winning its draw, if p < 1)."""
        with self._lock:
            for fault in self._rules:
                if fault.matches(method, path, statement, bindings):
                    if fault.probability < 1 and (fault.rng or self._rng).random() >= fault.probability:
                        continue
                    fault.taken += 1
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._rules.remove(fault)
                    return fault
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._rules]

    def clear(self) -> int:
        with self._lock:
            cleared, self._rules = len(self._rules), []
            return cleared


class DroppedResponse(Response):
    """Starts a 200 answer with a Content-Length, sends part of the body, then stops.

    uvicorn closes the connection when the app returns before completing the body, so the client
    sees a connection closed mid-body (IncompleteRead / "error decoding response body").
    """

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"65536")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"resultSetMetaData": {"numRows": ', "more_body": True})


# --------------------------------------------------------------------------------------------
# Settings, warehouses, request report
# --------------------------------------------------------------------------------------------

WAREHOUSE_STATES = ("STARTED", "SUSPENDED")


@dataclass
class Warehouse:
    name: str
    state: str = "STARTED"
    auto_resume: bool = True
    auto_suspend: int | None = 60
    size: str = "X-Small"
    resumes: int = 0

    def update(self, spec: dict[str, Any]) -> None:
        if "state" in spec:
            if spec["state"] not in WAREHOUSE_STATES:
                raise ValueError(f"state must be one of {WAREHOUSE_STATES}")
            self.state = spec["state"]
        if "auto_resume" in spec:
            self.auto_resume = bool(spec["auto_resume"])
        if "auto_suspend" in spec:
            self.auto_suspend = None if spec["auto_suspend"] is None else int(spec["auto_suspend"])
        if "size" in spec:
            self.size = str(spec["size"])

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "auto_resume": self.auto_resume,
            "auto_suspend": self.auto_suspend,
            "size": self.size,
            "resumes": self.resumes,
        }


class Settings:
    """Async threshold and warehouses; reset() restores the start-up values."""

    def __init__(self, async_threshold_ms: int) -> None:
        self._default_threshold_ms = async_threshold_ms
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.async_threshold_ms = self._default_threshold_ms
            self.partition_bytes = DEFAULT_PARTITION_BYTES
            self.seed: int | None = None
            self.warehouses = {"TRACKLAYER_WH": Warehouse("TRACKLAYER_WH")}

    def warehouse(self, name: str | None) -> Warehouse | None:
        """The warehouse whose name is exactly `name` (as SHOW WAREHOUSES shows it)."""
        return self.warehouses.get(name) if name else None

    def update(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise ValueError("settings are a JSON object")
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer or null")
        with self.lock:
            if "seed" in spec:
                self.seed = seed
            if "async_threshold_ms" in spec:
                self.async_threshold_ms = int(spec["async_threshold_ms"])
            if "partition_bytes" in spec:
                partition_bytes = spec["partition_bytes"]
                if isinstance(partition_bytes, bool) or not isinstance(partition_bytes, int) or partition_bytes < 1:
                    raise ValueError("partition_bytes must be a positive integer")
                self.partition_bytes = partition_bytes
            for name, wh_spec in (spec.get("warehouses") or {}).items():
                self.warehouses.setdefault(name, Warehouse(name)).update(wh_spec)

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "async_threshold_ms": self.async_threshold_ms,
                "partition_bytes": self.partition_bytes,
                "seed": self.seed,
                "warehouses": {name: wh.describe() for name, wh in self.warehouses.items()},
            }


def path_key(path: str) -> str:
    """Group SQL API paths by template so handles don't each get a key."""
    path = path.rstrip("/") or "/"
    if path.startswith(STATEMENTS_PATH + "/"):
        return STATEMENTS_PATH + ("/{handle}/cancel" if path.endswith("/cancel") else "/{handle}")
    return streaming_emulator.path_template(path) or path


class Report:
    """Requests served outside /__emulator since the last reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._total = 0
            self._by_path: Counter[str] = Counter()
            self._by_kind: Counter[str] = Counter()
            self._by_streaming: Counter[str] = Counter()
            self._statements: list[dict[str, Any]] = []

    def count(self, path: str, method: str = "") -> None:
        with self._lock:
            self._total += 1
            self._by_path[path_key(path)] += 1
            if kind := streaming_emulator.request_kind(method, path):
                self._by_streaming[kind] += 1

    def add_statement(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._by_kind[entry["kind"]] += 1
            self._statements.append(entry)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "by_path": dict(self._by_path),
                "by_kind": dict(self._by_kind),
                "by_streaming": dict(self._by_streaming),
                "statements": list(self._statements),
            }


# --------------------------------------------------------------------------------------------
# Statements (handles) and the idempotency store
# --------------------------------------------------------------------------------------------


@dataclass
class Statement:
    """One execution: its handle, its final answer once known, and what cancels it."""

    handle: str
    request_id: str
    created_on: int
    answer: Answer | None = None
    future: Future | None = None
    duck: Any = None  # the DuckDB connection while executing, to interrupt it
    partitions: list[bytes] = field(default_factory=list)  # result partitions 1.., gzip-compressed JSON
    cancelled: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def links(self) -> dict[str, str]:
        return {
            "statementHandle": self.handle,
            "statementStatusUrl": f"{STATEMENTS_PATH}/{self.handle}?requestId={self.request_id}",
        }

    def accepted(self) -> Answer:
        return Answer(202, {"code": "333334", "message": ASYNC_MESSAGE, **self.links()})

    def finish(self, answer: Answer) -> bool:
        """Set the final answer unless one is already set (the first one wins)."""
        with self._lock:
            if self.answer is not None:
                return False
            self.answer = answer
            return True

    def abort(self, answer: Answer) -> bool:
        """Finish with `answer` (cancel or timeout) and stop the execution, if still running."""
        if not self.finish(answer):
            return False
        self.cancelled.set()
        duck = self.duck
        if duck is not None:
            try:
                duck.interrupt()
            except Exception:  # noqa: BLE001 - the connection may just have closed
                log.debug("interrupt failed", exc_info=True)
        return True

    @property
    def succeeded(self) -> bool:
        return self.answer is not None and self.answer.status == 200


class Statements:
    """Handles -> statements (the newest MAX_STORED_STATEMENTS) and requestId -> latest handle."""

    def __init__(self) -> None:
        self._by_handle: OrderedDict[str, Statement] = OrderedDict()
        self._by_request: dict[str, Statement] = {}
        self._lock = threading.Lock()

    def claim(self, request_id: str, retry: bool) -> tuple[Statement, bool]:
        """For a retry, the earlier running or successful statement; else a new one (True)."""
        with self._lock:
            earlier = self._by_request.get(request_id)
            if retry and earlier is not None and (earlier.answer is None or earlier.succeeded):
                return earlier, False
            stmt = self._create(request_id)
            self._by_request[request_id] = stmt
            return stmt, True

    def child(self, parent: Statement) -> Statement:
        """A statement of a multi-statement request (pollable, not tied to the requestId)."""
        with self._lock:
            return self._create(parent.request_id)

    def _create(self, request_id: str) -> Statement:
        stmt = Statement(str(uuid.uuid4()), request_id, int(time.time() * 1000))
        self._by_handle[stmt.handle] = stmt
        while len(self._by_handle) > MAX_STORED_STATEMENTS:
            _, old = self._by_handle.popitem(last=False)
            if self._by_request.get(old.request_id) is old:
                del self._by_request[old.request_id]
        return stmt

    def get(self, handle: str) -> Statement | None:
        with self._lock:
            return self._by_handle.get(handle)

    def clear(self) -> None:
        with self._lock:
            self._by_handle.clear()
            self._by_request.clear()


# --------------------------------------------------------------------------------------------
# Requests: parsing, statement kinds and splitting, bindings
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Results: rowType and string values as the SQL API returns them
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# PARSE_JSON as Snowflake parses it (DuckDB's JSON keeps duplicate keys silently)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Compile-time checks of INSERT ... SELECT (fakesnow only fails once rows are converted)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Execution on fakesnow's shared DuckDB
# --------------------------------------------------------------------------------------------


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
            stmt.duck = conn._duck_conn  # noqa: SLF001
            try:
                cur = conn.cursor()
                check_insert(cur, sql)
                cur.execute(strict_json_sql(sql), binding_params=params, server=True)
                describe = cur._describe_last_sql()  # noqa: SLF001
                table = cur._arrow_table  # noqa: SLF001
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


# --------------------------------------------------------------------------------------------
# Intercepted statements (warehouses, context functions, no-op DCL)
# --------------------------------------------------------------------------------------------

NAME = r'("[^"]+"|[A-Za-z_][\w$]*)'
END = r"\s*;?\s*$"
SHOW_WAREHOUSES = re.compile(r"^\s*SHOW\s+WAREHOUSES(?:\s+LIKE\s+'((?:[^']|'')*)')?" + END, re.I)
CREATE_WAREHOUSE = re.compile(
    r"^\s*CREATE\s+(OR\s+REPLACE\s+)?WAREHOUSE\s+(IF\s+NOT\s+EXISTS\s+)?" + NAME + r"(?:\s+WITH\b)?(.*?)" + END,
    re.I | re.S,
)
ALTER_WAREHOUSE = re.compile(
    r"^\s*ALTER\s+WAREHOUSE\s+(IF\s+EXISTS\s+)?" + NAME + r"\s+(SUSPEND|RESUME(?:\s+IF\s+SUSPENDED)?|SET\s+.*?)" + END,
    re.I | re.S,
)
USE_CONTEXT = re.compile(r"^\s*USE\s+(WAREHOUSE|ROLE|SECONDARY\s+ROLES)\s+" + NAME + END, re.I)
NOOP_DCL = re.compile(r"^\s*(GRANT|REVOKE|CREATE\s+(OR\s+REPLACE\s+)?ROLE)\b", re.I)
CONTEXT_FN = r"CURRENT_(?:ROLE|WAREHOUSE|USER|ACCOUNT|DATABASE|SCHEMA)\s*\(\s*\)"
CONTEXT_SELECT = re.compile(rf"^\s*SELECT\s+({CONTEXT_FN}(?:\s*,\s*{CONTEXT_FN})*)" + END, re.I)
CONTEXT_IN_SQL = re.compile(r"\bCURRENT_(ROLE|WAREHOUSE|USER|ACCOUNT)\s*\(\s*\)", re.I)
WAREHOUSE_PROP = re.compile(r"(\w+)\s*=\s*('[^']*'|\S+)")
USES_TABLES = re.compile(r"\bFROM\b", re.I)
LOGIN_FAILURE_CALL = r"SYSTEM\$GET_LOGIN_FAILURE_DETAILS\s*\(\s*'(?P<uuid>[0-9A-Fa-f-]{36})'\s*\)"
LOGIN_FAILURE_SELECT = re.compile(
    r"^\s*SELECT\s+(?:(?P<call>"
    + LOGIN_FAILURE_CALL
    + r")|(?P<extract>JSON_EXTRACT_PATH_TEXT\s*\(\s*"
    + LOGIN_FAILURE_CALL.replace("(?P<uuid>", "(?P<uuid2>")
    + r"\s*,\s*'(?P<key>(?:[^']|'')*)'\s*\)))"
    + END,
    re.I,
)

SYSTEM_WAIT = re.compile(
    r"^\s*(?:CALL|SELECT)\s+SYSTEM\$WAIT\s*\(\s*(?P<amount>\d+(?:\.\d+)?)\s*"
    r"(?:,\s*'(?P<unit>DAYS|HOURS|MINUTES|SECONDS|MILLISECONDS|MICROSECONDS|NANOSECONDS)'\s*)?\)" + END,
    re.I,
)
WAIT_UNIT_SECONDS = {
    "DAYS": 86400.0,
    "HOURS": 3600.0,
    "MINUTES": 60.0,
    "SECONDS": 1.0,
    "MILLISECONDS": 1e-3,
    "MICROSECONDS": 1e-6,
    "NANOSECONDS": 1e-9,
}

SHOW_WAREHOUSES_COLUMNS = [
    ("name", "text"),
    ("state", "text"),
    ("type", "text"),
    ("size", "text"),
    ("min_cluster_count", "fixed"),
    ("max_cluster_count", "fixed"),
    ("started_clusters", "fixed"),
    ("running", "fixed"),
    ("queued", "fixed"),
    ("is_default", "text"),
    ("is_current", "text"),
    ("auto_suspend", "fixed"),
    ("auto_resume", "text"),
    ("available", "text"),
    ("provisioning", "text"),
    ("quiescing", "text"),
    ("other", "text"),
    ("created_on", "timestamp_ltz"),
    ("resumed_on", "timestamp_ltz"),
    ("updated_on", "timestamp_ltz"),
    ("owner", "text"),
    ("comment", "text"),
    ("resource_monitor", "text"),
    ("scaling_policy", "text"),
]


def unquote(name: str) -> str:
    return name[1:-1] if name.startswith('"') else name.upper()


def sql_literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def like_regex(pattern: str) -> re.Pattern[str]:
    parts = ("." if c == "_" else ".*" if c == "%" else re.escape(c) for c in pattern.replace("''", "'"))
    return re.compile("".join(parts), re.I | re.S)


class Intercepts:
    """Statements answered from the emulator's own state instead of fakesnow."""

    def __init__(self, settings: Settings, login_failures: LoginFailures) -> None:
        self.settings = settings
        self.login_failures = login_failures

    def answer(self, sql: str, req: SqlRequest, ctx: Context) -> Result | None:
        if m := SHOW_WAREHOUSES.match(sql):
            return self.show_warehouses(m[1], ctx)
        if m := LOGIN_FAILURE_SELECT.match(sql):
            return self.login_failure_details(m)
        if m := CREATE_WAREHOUSE.match(sql):
            return self.create_warehouse(unquote(m[3]), bool(m[1]), bool(m[2]), m[4])
        if m := ALTER_WAREHOUSE.match(sql):
            return self.alter_warehouse(unquote(m[2]), bool(m[1]), m[3])
        if m := USE_CONTEXT.match(sql):
            if m[1].upper() == "WAREHOUSE" and self.settings.warehouse(unquote(m[2])) is None:
                raise does_not_exist(unquote(m[2]))
            return status_result()
        if NOOP_DCL.match(sql):
            return status_result()
        if m := CONTEXT_SELECT.match(sql):
            names = [re.sub(r"\s+", "", fn).upper() for fn in m[1].split(",")]
            values = {
                "CURRENT_ROLE()": ctx.role,
                "CURRENT_WAREHOUSE()": ctx.warehouse,
                "CURRENT_USER()": req.user.name,
                "CURRENT_ACCOUNT()": req.user.account,
                "CURRENT_DATABASE()": ctx.database,
                "CURRENT_SCHEMA()": ctx.schema,
            }
            return Result([column_info(n, "text") for n in names], [[values[n] for n in names]])
        return None

    def login_failure_details(self, m: re.Match[str]) -> Result:
        """SYSTEM$GET_LOGIN_FAILURE_DETAILS('<uuid>'), or JSON_EXTRACT_PATH_TEXT of one of its keys."""
        failure = self.login_failures.get(m["uuid"] or m["uuid2"])
        details = failure.details_json() if failure else None
        column = re.sub(r"\s+", "", m["call"] or m["extract"]).upper()
        if m["extract"] is None:
            return Result([column_info(column, "text")], [[details]])
        value = json.loads(details).get(m["key"].replace("''", "'")) if details else None
        shown = None if value is None else value if isinstance(value, str) else json.dumps(value)
        return Result([column_info(column, "text")], [[shown]])

    def show_warehouses(self, pattern: str | None, ctx: Context) -> Result:
        regex = like_regex(pattern) if pattern is not None else None
        current = ctx.warehouse
        with self.settings.lock:
            rows = [
                self.warehouse_row(wh, wh.name == current)
                for wh in self.settings.warehouses.values()
                if regex is None or regex.fullmatch(wh.name)
            ]
        return Result([column_info(n, t) for n, t in SHOW_WAREHOUSES_COLUMNS], rows)

    @staticmethod
    def warehouse_row(wh: Warehouse, current: bool) -> list[str | None]:
        started = wh.state == "STARTED"
        epoch = "0.000000000"
        values = {
            "name": wh.name,
            "state": wh.state,
            "type": "STANDARD",
            "size": wh.size,
            "min_cluster_count": "1",
            "max_cluster_count": "1",
            "started_clusters": "1" if started else "0",
            "running": "0",
            "queued": "0",
            "is_default": "N",
            "is_current": "Y" if current else "N",
            "auto_suspend": None if wh.auto_suspend is None else str(wh.auto_suspend),
            "auto_resume": "true" if wh.auto_resume else "false",
            "available": "100" if started else "",
            "provisioning": "0",
            "quiescing": "0",
            "other": "0",
            "created_on": epoch,
            "resumed_on": epoch,
            "updated_on": epoch,
            "owner": "SYSADMIN",
            "comment": "",
            "resource_monitor": "null",
            "scaling_policy": "STANDARD",
        }
        return [values[name] for name, _ in SHOW_WAREHOUSES_COLUMNS]

    def create_warehouse(self, name: str, replace: bool, if_not_exists: bool, props: str) -> Result:
        with self.settings.lock:
            if name in self.settings.warehouses and not replace:
                if if_not_exists:
                    return status_result(f"{name} already exists, statement succeeded.")
                raise sql_error("002002", "42710", f"SQL compilation error:\nObject '{name}' already exists.")
            wh = Warehouse(name)
            apply_warehouse_props(wh, props)
            self.settings.warehouses[name] = wh
        return status_result(f"Warehouse {name} successfully created.")

    def alter_warehouse(self, name: str, if_exists: bool, action: str) -> Result:
        with self.settings.lock:
            wh = self.settings.warehouses.get(name)
            if wh is None:
                if if_exists:
                    return status_result()
                raise does_not_exist(name)
            verb = action.split()[0].upper()
            if verb == "SUSPEND":
                if wh.state == "SUSPENDED":
                    raise sql_error("090064", "22000", f"Invalid state. Warehouse '{name}' cannot be suspended.")
                wh.state = "SUSPENDED"
            elif verb == "RESUME":
                if wh.state == "STARTED" and "IF" not in action.upper():
                    raise sql_error("090063", "22000", f"Invalid state. Warehouse '{name}' cannot be resumed.")
                if wh.state == "SUSPENDED":
                    wh.state, wh.resumes = "STARTED", wh.resumes + 1
            else:
                apply_warehouse_props(wh, action[3:])
        return status_result()

    def require_warehouse(self, kind: str, sql: str, req: SqlRequest, ctx: Context) -> None:
        """Fail like Snowflake when the statement needs a warehouse that cannot run; auto-resume."""
        if kind not in DML_KINDS | {"COPY"} and not (kind == "SELECT" and USES_TABLES.search(sql)):
            return
        with self.settings.lock:
            wh = self.settings.warehouse(ctx.warehouse)
            if wh is None:
                if "warehouse" in req.named:
                    raise no_context_named()
                raise sql_error(
                    "000606",
                    "57P03",
                    "No active warehouse selected in the current session.  "
                    "Select an active warehouse with the 'use warehouse' command.",
                )
            if wh.state == "SUSPENDED":
                if not wh.auto_resume:
                    raise sql_error(
                        "000608", "57P03", f"Warehouse '{wh.name}' is suspended and AUTO_RESUME is disabled."
                    )
                wh.state, wh.resumes = "STARTED", wh.resumes + 1

    @staticmethod
    def with_context_literals(sql: str, req: SqlRequest, ctx: Context) -> str:
        """Replace CURRENT_ROLE() etc. inside a statement fakesnow runs by the request's values."""
        if not CONTEXT_IN_SQL.search(sql):
            return sql
        values = {
            "ROLE": ctx.role,
            "WAREHOUSE": ctx.warehouse,
            "USER": req.user.name,
            "ACCOUNT": req.user.account,
        }
        return CONTEXT_IN_SQL.sub(lambda m: sql_literal(values[m[1].upper()]), sql)


def system_wait(stmt: Statement, m: re.Match[str]) -> Result:
    """SYSTEM$WAIT (rule 7): waits outside the DuckDB lock; a cancel or timeout ends it."""
    unit = (m["unit"] or "SECONDS").upper()
    if stmt.cancelled.wait(float(m["amount"]) * WAIT_UNIT_SECONDS[unit]):
        raise Cancelled
    return text_result("SYSTEM$WAIT", f"waited {m['amount']} {unit.lower()}")


def does_not_exist(name: str) -> ApiError:
    return sql_error("002003", "02000", f"SQL compilation error:\nObject '{name}' does not exist or not authorized.")


def apply_warehouse_props(wh: Warehouse, props: str) -> None:
    for key, raw in WAREHOUSE_PROP.findall(props):
        key, value = key.upper(), raw.strip("'").upper()
        if key == "AUTO_SUSPEND":
            wh.auto_suspend = None if value in ("NULL", "0") else int(value)
        elif key == "AUTO_RESUME":
            wh.auto_resume = value == "TRUE"
        elif key == "WAREHOUSE_SIZE":
            wh.size = value
        elif key == "INITIALLY_SUSPENDED" and value == "TRUE":
            wh.state = "SUSPENDED"


# --------------------------------------------------------------------------------------------
# The emulator: HTTP handlers over the pieces above
# --------------------------------------------------------------------------------------------


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


async def read_body(request: Request) -> bytes:
    body = await request.body()
    return gzip.decompress(body) if request.headers.get("content-encoding") == "gzip" else body


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def api_endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """ApiError -> its answer; anything else -> 500 000603 (logged)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as e:
            return e.answer().response()
        except Exception as e:
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            return internal_error(e).answer().response()

    return endpoint


def control_endpoint(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """Returns the handler's JSON; invalid input (ValueError, KeyError, TypeError) -> 400."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(request))
        except (ValueError, KeyError, TypeError) as e:
            return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=400)

    return endpoint


class Emulator:
    """State and handlers of the local Snowflake."""

    def __init__(self, namespace: tuple[str, str], async_threshold_ms: int) -> None:
        self.namespace = namespace
        self.users = Users()
        self.faults = Faults()
        self.settings = Settings(async_threshold_ms)
        self.report = Report()
        self.statements = Statements()
        self.engine = Engine(namespace)
        self.login_failures = LoginFailures()
        self.intercepts = Intercepts(self.settings, self.login_failures)
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="statement")
        self.streaming = streaming_emulator.Streaming(
            self.engine.lock, self.keypair_principal, lambda account, name: self.users.get(account, name) is not None
        )

    def keypair_principal(self, token: str) -> streaming_emulator.Principal:
        """The user of a key-pair JWT for the streaming endpoints (its 401 as a streaming AuthError)."""
        now = time.time()
        try:
            user = verify_keypair_jwt(self.users, token, now)
        except JwtRejected as rejected:
            refused = jwt_invalid(self.login_failures.record(rejected, None, now))
            raise streaming_emulator.AuthError(refused.code, refused.message) from None
        return streaming_emulator.Principal.of(user)

    # ---- SQL API ---------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        """POST /api/v2/statements, recorded in the request report."""
        raw = await read_body(request)
        body = parse_json(raw)
        sql = body.get("statement") if isinstance(body, dict) and isinstance(body.get("statement"), str) else None
        parameters = body.get("parameters") if isinstance(body, dict) else None
        entry: dict[str, Any] = {
            "request_id": request.query_params.get("requestId") or str(uuid.uuid4()),
            "retry": flag(request.query_params.get("retry")),
            "kind": statement_kind(sql),
            "query_tag": parameter(parameters, "query_tag") if isinstance(parameters, dict) else None,
            "status": None,
            "bytes": len(raw),
            "handle": None,
            "executed": False,
            "fault": None,
        }
        try:
            response = await self.answer_submission(request, body, sql, entry)
        except ApiError as e:
            response = e.answer().response()
        except Exception as e:
            log.exception("unhandled error in POST %s", STATEMENTS_PATH)
            response = internal_error(e).answer().response()
        entry["status"] = response.status_code
        self.report.add_statement(entry)
        return response

    async def answer_submission(self, request: Request, body: Any, sql: str | None, entry: dict) -> Response:
        fault = self.faults.take("POST", request.url.path, sql, binding_text(body))
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.phase == BEFORE and fault.kind != "delay_ms":
                return self.fault_response(fault, None, entry)
        if not request.headers.get("user-agent", "").strip():
            raise bad_request("The User-Agent header is required.")
        user = authenticate(self.users, self.login_failures, request.headers, time.time(), client_ip(request))
        req = parse_sql_request(body, request.query_params.get("nullable") != "false", user, self.namespace)

        stmt, is_new = self.statements.claim(entry["request_id"], entry["retry"])
        entry["handle"], entry["executed"] = stmt.handle, is_new
        if is_new:
            delay = fault.delay_s if fault is not None and fault.phase == BEFORE else 0.0
            self.start(stmt, req, delay)
        run_async = flag(request.query_params.get("async"))
        answer = await self.settle(stmt, 0 if run_async else self.settings.async_threshold_ms / 1000)

        if fault is not None and fault.phase == AFTER:
            if fault.kind != "delay_ms":
                return self.fault_response(fault, stmt, entry)
            await asyncio.sleep(fault.delay_s)
        return answer.response()

    def fault_response(self, fault: Fault, stmt: Statement | None, entry: dict) -> Response:
        """The response a fault gives a statement submission."""
        if fault.kind == "drop_connection":
            return DroppedResponse()
        if stmt is None and fault.status == 422:
            # Snowflake's 422s carry a handle: register a failed statement that polls to this error
            stmt, _ = self.statements.claim(entry["request_id"], retry=False)
            stmt.finish(fault.answer(stmt))
            entry["handle"] = stmt.handle
        return fault.answer(stmt).response()

    def start(self, stmt: Statement, req: SqlRequest, delay_s: float) -> None:
        stmt.future = self.executor.submit(self.execute, stmt, req, delay_s)
        if req.timeout > 0:
            answer = ApiError(
                408,
                "000630",
                f"Statement reached its statement or warehouse timeout of {req.timeout} second(s) and was canceled.",
                "57014",
            ).answer(stmt)
            asyncio.get_running_loop().call_later(req.timeout, stmt.abort, answer)

    async def settle(self, stmt: Statement, wait_s: float) -> Answer:
        """The final answer if it comes within wait_s, else 202."""
        if stmt.answer is None and stmt.future is not None and wait_s > 0:
            await asyncio.wait([asyncio.wrap_future(stmt.future)], timeout=wait_s)
        return stmt.answer or stmt.accepted()

    async def status(self, request: Request) -> Response:
        """GET /api/v2/statements/{handle}[?partition=N]: the answer, or result partition N (gzip)."""
        stmt = self.polled_statement(request)
        answer = stmt.answer or stmt.accepted()
        partition = request.query_params.get("partition")
        if partition is None or answer.status != 200:
            return answer.response()
        if not partition.isdigit() or int(partition) > len(stmt.partitions):
            raise bad_request(
                f"partition {partition!r} does not exist: this result has partitions 0 to {len(stmt.partitions)}."
            )
        if int(partition) == 0:
            return answer.response()
        compressed = stmt.partitions[int(partition) - 1]
        return Response(
            compressed, media_type="application/json", headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        )

    async def cancel(self, request: Request) -> Response:
        """POST /api/v2/statements/{handle}/cancel."""
        stmt = self.polled_statement(request)
        cancelled = ApiError(422, "000604", "SQL execution canceled", "57014").answer(stmt)
        if stmt.abort(cancelled):
            return JSONResponse(cancelled.body)
        return JSONResponse(
            {"code": "000000", "sqlState": "00000", "message": "Statement already finished.", **stmt.links()}
        )

    def polled_statement(self, request: Request) -> Statement:
        if not request.headers.get("user-agent", "").strip():
            raise bad_request("The User-Agent header is required.")
        authenticate(self.users, self.login_failures, request.headers, time.time(), client_ip(request))
        handle = request.path_params["handle"]
        stmt = self.statements.get(handle)
        if stmt is None:
            raise ApiError(404, "000709", f"Statement {handle} not found.", "02000")
        return stmt

    # ---- execution (worker threads) ---------------------------------------------------------

    def execute(self, stmt: Statement, req: SqlRequest, delay_s: float) -> None:
        """Run a request's statements and store the answer (unless cancelled first)."""
        if delay_s and stmt.cancelled.wait(delay_s):
            return
        try:
            answer = self.run_request(stmt, req)
        except Cancelled:
            return
        except ApiError as e:
            answer = e.answer(stmt)
        except Exception as e:
            if stmt.cancelled.is_set():
                return
            log.exception("unhandled error executing %r", req.statement[:200])
            answer = internal_error(e).answer(stmt)
        stmt.finish(answer)

    def run_request(self, stmt: Statement, req: SqlRequest) -> Answer:
        ctx = self.resolve_context(req)
        pieces = split_statements(req.statement)
        expected = req.multi_statement_count
        if expected != 0 and len(pieces) != expected:
            raise sql_error(
                "000008",
                "0A000",
                f"Actual statement count {len(pieces)} did not match the desired statement count {expected}.",
            )
        params = bind_values(req.bindings)
        if len(pieces) == 1:
            return self.run_one(stmt, pieces[0].sql, params, req, ctx)

        handles, position = [], 0
        for piece in pieces:
            child = self.statements.child(stmt)
            child.cancelled = stmt.cancelled  # cancelling the request stops the statement running now
            handles.append(child.handle)
            if isinstance(params, list):
                piece_params = params[position : position + piece.placeholders]
                position += piece.placeholders
            else:
                piece_params = params
            try:
                child.finish(self.run_one(child, piece.sql, piece_params, req, ctx))
            except ApiError as e:
                child.finish(e.answer(child))
                raise
        answer = self.success(
            stmt, text_result("multiple statement execution", "Multiple statements executed successfully."), "", True
        )
        answer.body["statementHandles"] = handles
        return answer

    def resolve_context(self, req: SqlRequest) -> Context:
        """The request's role, warehouse, database and schema, each matched exactly (case-sensitive)."""
        if req.role not in req.user.granted_roles:
            raise role_not_authorized(req.role)
        with self.settings.lock:
            warehouse = req.warehouse if self.settings.warehouse(req.warehouse) else None
        database, schema = self.engine.resolve(req.database, req.schema)
        return Context(req.role, warehouse, database, schema)

    def run_one(self, stmt: Statement, sql: str, params: Any, req: SqlRequest, ctx: Context) -> Answer:
        kind = statement_kind(sql)
        if m := SYSTEM_WAIT.match(sql):
            return self.success(stmt, system_wait(stmt, m), kind, req.nullable)
        result = self.intercepts.answer(sql, req, ctx)
        if result is None:
            self.intercepts.require_warehouse(kind, sql, req, ctx)
            try:
                literal_sql = self.intercepts.with_context_literals(sql, req, ctx)
                result = self.engine.run(stmt, literal_sql, params or None, ctx)
            except ApiError as e:
                if e.code == "090105" and "database" in req.named:
                    raise no_context_named() from None
                raise
        return self.success(stmt, result, kind, req.nullable)

    def success(self, stmt: Statement, result: Result, kind: str, nullable: bool) -> Answer:
        with self.settings.lock:
            partition_bytes = self.settings.partition_bytes
        return success_answer(stmt, result, kind, nullable, partition_bytes)

    # ---- control endpoints -----------------------------------------------------------------

    async def health(self, request: Request) -> dict[str, Any]:
        return {"status": "ok"}

    async def register_user(self, request: Request) -> dict[str, Any]:
        user = User.from_spec(json.loads(await request.body()))
        self.users.register(user)
        return user.describe()

    async def list_users(self, request: Request) -> list[dict[str, Any]]:
        return self.users.describe()

    async def add_fault(self, request: Request) -> dict[str, Any]:
        return self.faults.add(json.loads(await request.body())).describe()

    async def list_faults(self, request: Request) -> list[dict[str, Any]]:
        return self.faults.describe()

    async def clear_faults(self, request: Request) -> dict[str, Any]:
        return {"cleared": self.faults.clear()}

    async def update_settings(self, request: Request) -> dict[str, Any]:
        spec = json.loads(await request.body())
        if isinstance(spec, dict) and "streaming" in spec:
            self.streaming.update_settings(spec["streaming"])
        self.settings.update(spec)
        if isinstance(spec, dict) and "seed" in spec:
            self.faults.reseed(spec["seed"])
        return await self.get_settings(request)

    async def get_settings(self, request: Request) -> dict[str, Any]:
        return {**self.settings.describe(), "streaming": self.streaming.settings.describe()}

    async def get_requests(self, request: Request) -> dict[str, Any]:
        return self.report.describe()

    async def clear_requests(self, request: Request) -> dict[str, Any]:
        self.report.clear()
        return {"cleared": True}

    async def reset(self, request: Request) -> dict[str, Any]:
        spec = json.loads(await request.body() or b"{}")
        self.faults.clear()
        self.faults.reseed(None)
        self.report.clear()
        self.statements.clear()
        self.settings.reset()
        self.streaming.reset()
        dropped = await asyncio.to_thread(self.engine.drop_data) if spec.get("drop_data") else []
        return {"reset": True, "dropped_schemas": dropped}


class TrafficMiddleware:
    """Counts requests outside /__emulator and applies faults to those the SQL API handler doesn't.

    POST /api/v2/statements applies its own faults (it knows the statement text and can delay
    execution); every other path (polls, cancels, fakesnow's driver protocol) gets them here.
    """

    def __init__(self, app: Any, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.emulator.report.count(path, method)
        submission = method == "POST" and path.rstrip("/") == STATEMENTS_PATH
        fault = None if submission else self.emulator.faults.take(method, path, None)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.kind in streaming_emulator.HANDLER_FAULTS:
            scope.setdefault("state", {})[streaming_emulator.FAULT_STATE] = fault
            await self.app(scope, receive, send)
        elif fault.kind == "delay_ms":
            await self.delayed(fault, scope, receive, send)
        else:
            await self.replaced(fault, scope, receive, send)

    async def replaced(self, fault: Fault, scope: Any, receive: Any, send: Any) -> None:
        """Answer with the fault (after_execute: once the request has been served for real)."""
        if fault.phase == AFTER:
            await self.app(scope, receive, self.discard)
        reply = DroppedResponse() if fault.kind == "drop_connection" else fault.answer(None).response()
        await reply(scope, receive, send)

    async def delayed(self, fault: Fault, scope: Any, receive: Any, send: Any) -> None:
        """before_execute: wait, then serve; after_execute: serve, hold the answer back, send it."""
        if fault.phase == BEFORE:
            await asyncio.sleep(fault.delay_s)
            await self.app(scope, receive, send)
            return
        messages: list[Any] = []

        async def capture(message: Any) -> None:
            messages.append(message)

        await self.app(scope, receive, capture)
        await asyncio.sleep(fault.delay_s)
        for message in messages:
            await send(message)

    @staticmethod
    async def discard(message: Any) -> None:
        """Swallows the real answer of a request whose answer a fault replaces."""


def create_app(emulator: Emulator) -> Starlette:
    e = emulator
    streaming = streaming_emulator.StreamingApi(e.streaming)
    control = [
        ("/health", "GET", e.health),
        ("/users", "POST", e.register_user),
        ("/users", "GET", e.list_users),
        ("/faults", "POST", e.add_fault),
        ("/faults", "GET", e.list_faults),
        ("/faults", "DELETE", e.clear_faults),
        ("/settings", "POST", e.update_settings),
        ("/settings", "GET", e.get_settings),
        ("/requests", "GET", e.get_requests),
        ("/requests", "DELETE", e.clear_requests),
        ("/reset", "POST", e.reset),
        *streaming.control_routes(),
    ]
    routes = [
        *fakesnow.server.routes,
        Route(STATEMENTS_PATH, e.submit, methods=["POST"]),
        Route(STATEMENTS_PATH + "/", e.submit, methods=["POST"]),
        Route(STATEMENTS_PATH + "/{handle}", api_endpoint(e.status), methods=["GET"]),
        Route(STATEMENTS_PATH + "/{handle}/cancel", api_endpoint(e.cancel), methods=["POST"]),
        *streaming.routes(),
        *(Route(CONTROL_PREFIX + path, control_endpoint(h), methods=[m]) for path, m, h in control),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202
        yield
        emulator.executor.shutdown(wait=False, cancel_futures=True)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(TrafficMiddleware, emulator=emulator)
    return app


def parse_namespace(value: str) -> tuple[str, str]:
    database, dot, schema = value.upper().partition(".")
    if not dot or not database or not schema:
        raise argparse.ArgumentTypeError("expected DATABASE.SCHEMA")
    return database, schema


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--bootstrap", type=parse_namespace, default=("TRACKLAYER", "EVENTS"), metavar="DB.SCHEMA")
    parser.add_argument("--async-threshold-ms", type=int, default=45_000)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("fakesnow.server").propagate = False  # it logs through uvicorn's handlers already
    emulator = Emulator(args.bootstrap, args.async_threshold_ms)
    emulator.engine.bootstrap()
    log.info("bootstrapped %s.%s; serving on http://%s:%d", *args.bootstrap, args.host, args.port)
    # keep idle connections open longer than HTTP clients' pools do (reqwest: 90 s), so a client
    # never reuses a connection the server is closing
    uvicorn.run(create_app(emulator), host=args.host, port=args.port, timeout_keep_alive=120, log_level="info")


if __name__ == "__main__":
    main()
