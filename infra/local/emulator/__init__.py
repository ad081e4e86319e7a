"""The local Snowflake: fakesnow's driver protocol and Snowflake's SQL API v2 over one DuckDB.

Run (from the repository root)::

    .venv/bin/python -m tracklayer_local.emulator [--host 127.0.0.1] [--port 8085]
        [--bootstrap TRACKLAYER.EVENTS] [--async-threshold-ms 45000]

One Starlette app serves:

* fakesnow's own routes (``/session/v1/login-request``, ``/queries/v1/query-request``, ...), so
  snowflake-connector-python connects with ``account="fakesnow", host=..., port=...,
  protocol="http"`` and accepts any credentials;
* Snowflake's SQL API v2 (``/api/v2/statements``), authenticated as Snowflake does;
* Snowpipe Streaming's REST API (``/v2/streaming/...``, ``/oauth/token``): see
  ``streaming.py``, whose docstring is its reference (settings under ``"streaming"``,
  its fault actions and ``/__emulator/streaming/...`` control endpoints);
* control endpoints under ``/__emulator`` for tests (users, faults, settings, request report).

Both protocols use fakesnow's shared in-memory DuckDB (``fakesnow.server.shared_fs``): a row
inserted through the SQL API is visible to the connector and the other way round. The bootstrap
database and schema (default TRACKLAYER.EVENTS) exist from the start. They are also each SQL API
user's default namespace when a request names no database/schema. Databases and schemas a
request names are never created implicitly.

The local Snowflake is only worth what it refuses. The rules below are Snowflake's, each with
its source; a behaviour marked UNCONFIRMED is the most likely documented form, not one checked
against a real account. Each rule's text, with its source, is in the docstring of the module
that enforces it:

1. context names are case-sensitive; the role must be granted: ``requests.py``
2. PARSE_JSON / TRY_PARSE_JSON refuse repeated keys: ``parse_json.py``
3. a rejected key-pair JWT says only ``JWT token is invalid. [<uuid>]``: ``auth.py``
4. INSERT ... SELECT compile errors come before any row: ``compile_checks.py``
5. results and their partitions follow the spec: ``results.py``
6. request parameters in any case: ``requests.py``
7. ``CALL SYSTEM$WAIT(n[, 'unit'])`` waits, and a cancel or timeout ends it: ``intercepts.py``
8. a user's network policy refuses other addresses with 390422 and the address seen: ``auth.py``

The SQL API's requests: ``requests.py``; answers: ``results.py``, ``statements.py`` (handles,
202 and polling, cancel, idempotency, timeouts); errors: ``errors.py``; intercepted statements
and warehouses: ``intercepts.py``; control endpoints: ``app.py``, ``auth.py`` (users),
``faults.py``, ``settings.py``, ``report.py``; execution and concurrency: ``engine.py``;
Snowpipe Streaming: ``streaming.py``.

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
"""
