"""Snowpipe Streaming (high-performance architecture) REST API for the local Snowflake.

Mounted by ``app.py`` on the same port as the SQL API. Rows land in the same
fakesnow DuckDB tables the SQL API, the Python connector and dbt read. The facts below come from
``/work/shared/notes/snowpipe-streaming.md``; each rule names its source key from that file's §0:

* [REST-old]/[REST-new] ``docs.snowflake.com/en/user-guide/snowpipe-streaming/`` +
  ``snowpipe-streaming-high-performance-rest-api`` (2025 and 2026 versions; ``...`` below is that
  folder), [TUT] ``.../snowpipe-streaming-high-performance-rest-tutorial``,
  [LIM-old]/[LIM-new] ``.../snowpipe-streaming-high-performance-limitations``, [PIPE]
  ``.../snowpipe-streaming-pipe-object``, [RN-DP] ``/release-notes/2025/other/2025-12-11-default-pipe``,
  [NC] "Named Channels and exactly-once delivery", [BP] "Best practices ... high-performance
  architecture", [ERR] ``.../snowpipe-streaming-high-performance-error-handling``, [TS]
  ``.../snowpipe-streaming-table-support``, [OVR] ``.../snowpipe-streaming-high-performance-overview``;
* [OF] snowflakedb/snowflake-openflow-components (Snowflake's own client), [RP] redpanda-data/connect
  ``internal/impl/snowflake/streamingv2`` (comments report live-account measurements), [AR]
  artie-labs/transfer, [SB] supabase/etl, [SD] hupe1980/snowduck (another emulator, not authoritative);
* [NOTES] ``/work/shared/notes/snowflake.md`` (the team's Snowflake facts, with their sources);
  [AUTH] ``docs.snowflake.com/en/developer-guide/snowflake-rest-api/authentication``; [TO_TS]
  ``docs.snowflake.com/en/sql-reference/functions/to_timestamp``. ``-*`` means both versions.

"Unconfirmed" marks a rule no source settles; the emulator then picks the stricter reading, or
accepts every documented form, and a setting (below) switches to the other reading.

Hosts
-----
Snowflake has a control host (the account URL) and an ingest host that ``GET /v2/streaming/hostname``
names [TUT][REST-*]. Locally both are this server: the hostname endpoint answers the ``Host`` the
request came in on (``127.0.0.1:8104``), lower-cased as [OF] does, so the ingest host is reachable.
A client must then call the ingest host with the control host's scheme: plain http is only for a
loopback emulator, Snowflake is https. ``_`` never appears in a local host name, so the
``_`` -> ``-`` replacement clients must apply [TUT] changes nothing here.

Every endpoint, every request
-----------------------------
* ``Accept`` must list ``application/json`` (media-type parameters allowed), else 400 code
  ``391902`` "Unsupported Accept header <value> is specified" [RP client.go: a live account answers
  391902 when Accept is absent]. The HTTP status and the fate of other values (``*/*``) are
  unconfirmed; the emulator refuses them (setting ``require_accept``).
* A request with a body must send the ``Content-Type`` [REST-new] lists for it
  (``application/x-ndjson`` for append rows, ``application/json`` for open, drop and bulk status,
  ``application/x-www-form-urlencoded`` for the token exchange), else 415 ``ERR_BAD_REQUEST``
  (status and code are the emulator's own: unconfirmed).
* Error bodies are ``{"error_code": C, "message": M}``, the form a live account returned [RP
  errors.go]; setting ``error_key: "code"`` gives the documented ``{"code": C, "message": M}``
  [REST-*]. Faults can also answer a bare JSON string (see Faults).
* Path segments are percent-decoded one by one (so ``%2F`` stays inside a name [OF UriEncoder]).
  Database, schema, pipe and channel names are case-insensitive in URIs [REST-*]: unquoted names
  are upper-cased, ``"quoted"`` ones (``%22My%20Table-STREAMING%22``) kept exactly [OF].

Authentication
--------------
* Control plane (hostname, token exchange): a key-pair JWT, checked by the SQL API's verifier
  (``verify_keypair_jwt``, same rules and 401 ``390144`` messages) [AUTH][OF][RP]. Token-type header
  ``KEYPAIR_JWT`` [TUT][RP] or none [OF]; any other type (a PAT: raw-REST support is unconfirmed,
  only third-party samples send one [LIM-new]) -> 401 ``390101``.
* ``POST /oauth/token`` [REST-*][TUT]: form body ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
  and ``scope=<ingest host>[ session:role:<ROLE>]``; the JWT as ``Authorization: Bearer`` [REST-*][OF]
  [AR] or as form field ``assertion`` [RP] (RFC 7523 §2.1), not both. The role is the scope's
  ``session:role:`` [RP token.go, verified live], else the JWT's ``scp`` claim [OF], else the user's
  default role; it must be granted to the user (default role, PUBLIC, and the user's ``roles``
  when the emulator's users have them). Answer: the scoped token as raw text [OF][AR][RP][SD], a
  JWT whose ``exp`` is ``token_lifetime_s`` (3600) ahead [AR reads exp; OF/RP refresh at 54/55 min];
  setting ``token_format: "json"`` answers the documented ``{"token": ...}`` [REST-*]. Errors use
  RFC 6749 §5.2 bodies ``{"error", "error_description"}``: 400 ``unsupported_grant_type``,
  ``invalid_request`` (no scope, JWT twice), ``invalid_scope`` (another host, a role not granted,
  an unknown scope item); 401 for a missing or invalid JWT (Snowflake's body here is unconfirmed).
* Data plane (open, append, drop, bulk status): ``Authorization: Bearer <scoped token>`` with
  token-type header ``OAUTH`` [RP] or none [OF][AR]. 401 ``390303`` when the token is not one this
  emulator issued, was issued for another host (its scope), or its user is gone; 401 ``390318``
  when it expired; 401 ``390101`` without a bearer token. A key-pair JWT (header ``KEYPAIR_JWT``)
  is refused (401 ``390303``) except on bulk status, which [RP] calls on the account host with a
  key-pair JWT and reports working. The 401 codes are Snowflake's OAuth-token codes; which ones
  the streaming endpoints use is unconfirmed. Grants are not modelled (any granted role may
  ingest; [RP] saw ``ERR_DATABASE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED`` for a role lacking them).

Hostname
--------
``GET /v2/streaming/hostname`` -> 200 ``text/plain`` body ``127.0.0.1:8104``: every real client
reads plain text [SB][OF][AR][RP]; setting ``hostname_format: "json"`` answers the documented
``{"hostname": ...}`` [REST-*]. (Content negotiation cannot pick: real clients send
``Accept: application/json`` and still get text.)

Default pipes
-------------
Only default pipes exist here: ``<TABLE>-STREAMING`` [RN-DP][PIPE][TUT] for an existing table
(quoted: ``"My Table-STREAMING"``). A default pipe comes into existence with the first successful
open-channel call on it [RN-DP][PIPE]; append, bulk status and drop on a pipe never opened
answer 404 like an unknown pipe (stricter than a pre-created pipe; unconfirmed). Custom pipes
(CREATE PIPE) are not emulated: their names are unknown pipes. 404 codes (each with the
configured error key) [RP errors.go; the schema code by analogy, unconfirmed]:
``ERR_DATABASE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED``, ``ERR_SCHEMA_DOES_NOT_EXIST_OR_NOT_AUTHORIZED``,
``ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED`` (unknown pipe, or its table does not exist or was
dropped). Mapping [PIPE]: MATCH_BY_COLUMN_NAME, JSON keys to column names. Whether the default
pipe matches case-sensitively is undocumented: CASE_SENSITIVE here (keys must spell the column as
stored, ``EVENT_ID`` for an unquoted column), the stricter reading; setting
``match_by_column_name: "CASE_INSENSITIVE"`` for the other. Keys matching no column are ignored;
columns no key names take their DEFAULT, else NULL (COPY MATCH_BY_COLUMN_NAME semantics; [PIPE]
"the default pipe applies the DEFAULT when the payload omits the column"). An explicit JSON
null is NULL.

``DEFAULT`` expressions are evaluated once, when the default pipe is compiled (created, or
recompiled because the table's columns changed), not per row: [LIM-new] says time functions
such as CURRENT_TIMESTAMP() in column DEFAULTs are evaluated at compile time, so rows hours apart
share one value. So every row of a pipe gets the same ``LOADED_AT ... DEFAULT CURRENT_TIMESTAMP()``
value; send the load time from the client instead. AUTOINCREMENT/IDENTITY columns (DuckDB
sequences) still take a new value per row [PIPE].

Conversions (ON_ERROR = CONTINUE, the only mode [LIM-*]: a row that fails is counted in
``rows_error_count`` and ``last_error_*`` and not inserted; the others are). [BP][TS] give only the
SDK's table, so the exact REST coercions are unconfirmed; these follow Snowflake's casts
(messages modelled on its COPY errors):

* NUMBER(p,s): a JSON number or a numeric string; rounded half away from zero to s [NOTES]; more
  than p-s integer digits -> error. Booleans, objects, other strings -> error. NUMBER without a
  precision is fakesnow's BIGINT: 64-bit here (emulator limit; Snowflake holds 38 digits).
* FLOAT: number or numeric string (``NaN``, ``inf``, ``-inf`` too).
* VARCHAR(n): a string as is; a number or boolean as its JSON text; an object/array as compact
  JSON; longer than n characters -> error ("String '...' is too long and would be truncated").
* BOOLEAN: true/false, a number (0 = false), or the strings Snowflake accepts (true/false, t/f,
  yes/no, y/n, on/off, 1/0; any case).
* TIMESTAMP_NTZ: ISO-8601 ``YYYY-MM-DD[(T| )HH:MM[:SS[.fffffffff]]][Z|+HH[:MM]|-HH[:MM]]``;
  the offset is dropped, wall-clock kept, as Snowflake does [NOTES]; an integer, as a JSON number
  or a string of digits, is epoch seconds, ms, µs or ns by magnitude (< 31536000000 s,
  < 31536000000000 ms, < 31536000000000000 µs, else ns), a number with a fraction is epoch
  seconds ([TO_TS]: the '<integer>' and VARIANT rules). Fractions beyond microseconds are
  truncated (DuckDB keeps µs: emulator limit).
  TIMESTAMP_LTZ/TZ: the same, instants in UTC (no offset: UTC, the emulator's session zone).
  DATE: the date part of any accepted timestamp. TIME: ``HH:MM[:SS[.f]]``.
* VARIANT/OBJECT/ARRAY: the JSON value as sent. A JSON string stays a string, it is not parsed
  [BP "the HPA treats string literals as literal text"]. fakesnow stores all three as JSON, so
  OBJECT/ARRAY shape is not checked (emulator limit).
* BINARY: BASE64 text [PIPE: default pipes decode BINARY as BASE64].
* A NOT NULL column receiving NULL -> error. A line that is not a JSON object, has duplicate keys
  (Snowflake's JSON parsing refuses them by default [NOTES]) or NaN/Infinity (not RFC 8259
  [REST-*]) -> error.

Channels
--------
State per channel: client sequencer, row sequencer, committed offset token (null for a new channel
[NC]), counters, created_on_ms; continuation token ``"<client_seq>_<row_seq>"`` (opaque to clients;
the format follows [OF]'s test fixtures ``0_1``, unconfirmed).

* Open: ``PUT /v2/streaming/databases/{db}/schemas/{schema}/pipes/{pipe}/channels/{channel}[?requestId=]``,
  body empty, ``{}``, or ``{"offset_token"?: str|null, "fail_on_uncommitted_rows"?: bool}``
  [REST-*][OF][RP]. Creates the channel, or reopens it: the client sequencer goes up (an older
  continuation token is now stale: fencing) and uncommitted rows are discarded [REST-*][NC]; with
  ``fail_on_uncommitted_rows: true`` and uncommitted rows -> 409 ``ERR_CHANNEL_HAS_UNCOMMITTED_DATA``
  and nothing changes [REST-new]. ``offset_token`` becomes the committed offset token (whether it
  overrides a committed one is unconfirmed). 200 ``{"next_continuation_token", "channel_status":
  {...}}`` with ``channel_status_code`` ``SUCCESS`` ([OF][RP][BP]; the docs' example says ACTIVE).
  A pipe holds at most ``max_channels_per_pipe`` (2,000 [LIM-*]) channels: one more -> 429
  ``ERR_TOO_MANY_CHANNELS`` (status and code unconfirmed).
* Append: ``POST /v2/streaming/data/databases/{db}/schemas/{schema}/pipes/{pipe}/channels/{channel}/rows``
  [REST-*] with ``continuationToken`` (required [REST-*]), ``offsetToken`` [REST-old][TUT][OF][SB]
  or ``startOffsetToken`` + ``endOffsetToken`` [REST-new][RP] (either form, not both; an empty
  token counts as none; [AR] sends none), ``requestId`` optional [BP]. Checks, in order: Accept,
  token, Content-Type, size and body framing, offset parameters, pipe (404), channel (404
  ``ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED``), streaming faults, a channel invalidated by
  a 409 code answers that code again until it is reopened [ERR][BP], a token from an
  older client sequencer -> 400 ``STALE_CONTINUATION_TOKEN_SEQUENCER`` "Channel sequencer in the
  continuation token is stale. Please reopen the channel" [REST-*; 400 per SB, SD], a token of the
  current sequencer but not the latest -> 409 ``ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER`` and the
  channel is invalidated (uncommitted rows discarded; a reopen code [ERR]; the emulator's choice for
  a replayed token), more than ``max_appends_per_second`` (10 [LIM-*]) accepted appends on the
  channel within one second -> 429 ``ERR_TOO_MANY_REQUESTS`` (code unconfirmed).
  200 ``{"next_continuation_token", "status_code": 0, "message": "Success"}`` [REST-*][OF InsertStatus]
  means received, not committed [TUT][NC]. With ``dedupe_request_id`` on, a retry carrying the
  requestId and continuation token of one of the channel's last 100 appends gets that append's
  answer again and appends nothing ([BP] says to reuse the requestId on retries; whether Snowflake
  deduplicates is unconfirmed, so by default a retry of an append that was received fails with the
  row-sequencer 409 and the client must reopen and replay from the committed offset [NC]).
* Body [REST-*]: NDJSON, one JSON object per line, each line ending in ``\\n`` (``\\r\\n`` allowed);
  ``Content-Encoding`` absent, ``gzip`` or ``zstd`` [REST-*][BP]; others -> 415. Not UTF-8, no final
  newline, or no rows -> 400 ``ERR_BAD_REQUEST``. Size: at most ``max_append_bytes`` (4,000,000:
  "4 MB" read as decimal, the stricter reading) on the wire, i.e. after compression
  [REST-new][LIM-new][BP]; [RP] instead caps the uncompressed body at 4 MiB
  (``max_append_uncompressed_bytes``, off by default). Over -> 413 ``ERR_PAYLOAD_TOO_LARGE``
  (the status for oversize is undocumented: unconfirmed). The emulator stops decompressing at
  256 MiB (413).
* Commit: each accepted append is committed ``commit_delay_ms`` (3000; Snowflake "typically a few
  seconds" [RP], 5-10 s from ingest to query [OVR]) after it arrived, in order per channel, on a
  background thread: its valid rows are inserted in one DuckDB statement under the SQL API's
  engine lock, then ``last_committed_offset_token`` becomes the batch's (end) offset token, if
  it has one. ``"manual"``: nothing commits until ``POST /__emulator/streaming/commit``.
* Bulk status: ``POST /v2/streaming/databases/{db}/schemas/{schema}/pipes/{pipe}:bulk-channel-status``
  ``{"channel_names": [...]}`` [REST-*]; names case-sensitive [REST-*], compared with the stored
  name (upper-case unless the URI quoted it); unknown names are absent [REST-*]. Each status has
  ``channel_status_code``, ``last_committed_offset_token``, ``database_name``, ``schema_name``,
  ``pipe_name``, ``channel_name``, ``created_on_ms``, ``rows_inserted``, ``rows_parsed`` (every row
  the emulator processed), both ``rows_errors`` [REST-*] and ``rows_error_count`` [RP][AR]
  (cumulative, never reset by commit or reopen [RP]), ``last_error_offset_upper_bound`` (the end
  offset token of the batch with the latest error [REST-*]), ``last_error_message``,
  ``last_error_timestamp`` (epoch ms [OF]) and ``snowflake_avg_processing_latency_ms`` (mean append
  -> commit time). An invalidated channel reports its 409 code as ``channel_status_code``.
* Drop: ``DELETE .../pipes/{pipe}/channels/{channel}[?requestId=]``, optional body
  ``{"fail_on_uncommitted_rows": bool}`` (409 as for open) [REST-new]; 200 with an empty body
  [REST-*]. The channel, its counters and offset token are gone [REST-*][NC]; unknown channel ->
  404 ``ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED``.
* Not emulated: Elastic Channels, ``:pipe-info``, file fragments, SHOW CHANNELS, the 30-day expiry of
  inactive channels, the ``x-snowflake-session`` header [OF] (ignored), and
  ``x-snowflake-uncompressed-content-length`` (ignored).

Settings (``POST /__emulator/settings {"streaming": {...}}``, merged; ``GET`` shows them; reset restores)
--------------------------------------------------------------------------------------------------
``commit_delay_ms`` (3000 | int >= 0 | "manual"), ``hostname_format`` / ``token_format`` ("text" |
"json"), ``token_lifetime_s`` (3600; 0 issues already-expired tokens), ``error_key`` ("error_code" |
"code"), ``require_accept`` (true), ``max_append_bytes`` (4000000), ``max_append_uncompressed_bytes``
(null), ``max_appends_per_second`` (10 | null), ``max_channels_per_pipe`` (2000),
``match_by_column_name`` ("CASE_SENSITIVE" | "CASE_INSENSITIVE"), ``dedupe_request_id`` (false).
An unknown key or a bad value -> 400 naming it.

Faults (``POST /__emulator/faults``, matched on method and ``path_prefix`` like every fault)
------------------------------------------------------------------------------------------
The generic actions work on streaming paths: ``{"status": 429}`` / ``{"status": 503, "body":
"ERR_GENERAL_EXCEPTION_RETRY_REQUEST"}`` (a bare JSON string, as [RP] measured a 503) /
``{"status": 409, "body": {...}}``, ``{"delay_ms": N}`` and ``{"drop_connection": true}`` (with
``after_execute``: the append is received, the answer lost). These streaming actions are applied
by the endpoint and need a ``path_prefix`` under ``/v2/streaming/`` (and phase before_execute):

* ``{"channel_error": {"code": "ERR_CHANNEL_MUST_BE_REOPENED", "status"?: 409, "message"?}}``: on a
  channel path the channel is invalidated as Snowflake does for its reopen codes [ERR][BP]: its
  uncommitted rows are discarded and every append answers this error until the channel is
  reopened; elsewhere only the answer.
* ``{"fence_channel": true}``: before serving the request, the channel is reopened as if by another
  writer (sequencer up, uncommitted rows discarded [REST-*][NC]); the request then fails as the
  fenced writer's would (an append: 400 ``STALE_CONTINUATION_TOKEN_SEQUENCER``).
* ``{"commit_delay_ms": N}``: on an append, its batch commits N ms later than the setting says (and
  so do the channel's later batches: commits are in order).

Control endpoints
-----------------
* ``POST /__emulator/streaming/commit`` ``{"database"?, "schema"?, "pipe"?, "channel"?}`` (names
  as stored) commits every matching pending batch now: ``{"batches", "rows_inserted", "rows_errors"}``.
* ``POST /__emulator/streaming/fence`` ``{"database", "schema", "pipe", "channel"}`` reopens a
  channel as another writer would; answers its status; 400 for an unknown channel.
* ``GET /__emulator/streaming/channels``: every channel with its sequencers and pending batches.

The request report counts streaming requests in ``by_path`` (templated paths) and in
``by_streaming`` by kind: ``hostname``, ``token``, ``open``, ``append``, ``status``, ``drop``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import io
import json
import logging
import re
import secrets
import threading
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

import duckdb
import fakesnow.server
import jwt
import pyarrow as pa
import zstandard
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("streaming_emulator")

PREFIX = "/v2/streaming"
TOKEN_PATH = "/oauth/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PIPE_SUFFIX = "-STREAMING"
STATUS_SUFFIX = ":bulk-channel-status"
FAULT_STATE = "streaming_fault"
HANDLER_FAULTS = ("channel_error", "fence_channel", "commit_delay_ms")
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024
REMEMBERED_APPENDS = 100
CHANNEL_TEMPLATE = PREFIX + "/databases/{database}/schemas/{schema}/pipes/{pipe}/channels/{channel}"
PATH_TEMPLATES = {
    "hostname": PREFIX + "/hostname",
    "token": TOKEN_PATH,
    "open": CHANNEL_TEMPLATE,
    "drop": CHANNEL_TEMPLATE,
    "append": PREFIX + "/data/databases/{database}/schemas/{schema}/pipes/{pipe}/channels/{channel}/rows",
    "status": PREFIX + "/databases/{database}/schemas/{schema}/pipes/{pipe}" + STATUS_SUFFIX,
}

ERR_BAD_REQUEST = "ERR_BAD_REQUEST"
ERR_DATABASE = "ERR_DATABASE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED"
ERR_SCHEMA = "ERR_SCHEMA_DOES_NOT_EXIST_OR_NOT_AUTHORIZED"
ERR_PIPE = "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED"
ERR_CHANNEL = "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED"
ERR_UNCOMMITTED = "ERR_CHANNEL_HAS_UNCOMMITTED_DATA"
ERR_ROW_SEQUENCER = "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER"
STALE_TOKEN = "STALE_CONTINUATION_TOKEN_SEQUENCER"
AUTH_MISSING, AUTH_INVALID, AUTH_EXPIRED = "390101", "390303", "390318"


# --------------------------------------------------------------------------------------------
# Report and fault hooks (called by app.py, faults.py and report.py)
# --------------------------------------------------------------------------------------------


def request_kind(method: str, path: str) -> str | None:
    """hostname, token, open, append, status, drop (or other) for a streaming path; None otherwise."""
    if path.rstrip("/") == TOKEN_PATH:
        return "token"
    if not path.startswith(PREFIX + "/"):
        return None
    if path.rstrip("/") == PREFIX + "/hostname":
        return "hostname"
    if path.startswith(PREFIX + "/data/") and path.endswith("/rows"):
        return "append"
    if path.endswith(STATUS_SUFFIX):
        return "status"
    if "/channels/" in path:
        return {"PUT": "open", "DELETE": "drop"}.get(method, "other")
    return "other"


def path_template(path: str) -> str | None:
    """The report key of a streaming path (names replaced by placeholders); None otherwise."""
    kind = request_kind("PUT", path)
    if kind is None:
        return None
    return PATH_TEMPLATES.get(kind, PREFIX + "/{other}")


def check_fault(kind: str, action: dict[str, Any], match: dict[str, Any], phase: str) -> None:
    """ValueError unless a streaming fault action is well formed and targets /v2/streaming/."""
    if kind not in HANDLER_FAULTS:
        return
    if not str(match.get("path_prefix") or "").startswith(PREFIX + "/"):
        raise ValueError(f"a {kind} fault needs match.path_prefix under {PREFIX}/")
    if phase != "before_execute":
        raise ValueError(f"a {kind} fault is applied by the endpoint before it answers: use phase before_execute")
    value = action[kind]
    if kind == "channel_error":
        if not isinstance(value, dict) or not isinstance(value.get("code"), str) or not value["code"]:
            raise ValueError('channel_error needs {"code": "<ERR_...>"}')
        status = value.get("status", 409)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("channel_error.status must be an HTTP error status (400-599)")
    elif kind == "fence_channel" and value is not True:
        raise ValueError("fence_channel must be true")
    elif kind == "commit_delay_ms" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError("commit_delay_ms must be an integer >= 0")


# --------------------------------------------------------------------------------------------
# Errors and settings
# --------------------------------------------------------------------------------------------


class StreamingError(Exception):
    """An error answer of the streaming API: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class AuthError(StreamingError):
    """401: credentials missing, invalid or expired."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(401, code, message)


class OAuthError(Exception):
    """An RFC 6749 §5.2 error of the token exchange."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def bad_request(message: str, status: int = 400) -> StreamingError:
    return StreamingError(status, ERR_BAD_REQUEST, message)


def choice(*allowed: Any) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"streaming.{key} must be one of {', '.join(map(repr, allowed))}")
        return value

    return check


def whole(minimum: int, nullable: bool = False, also: tuple[str, ...] = ()) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if (value is None and nullable) or value in also:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            extra = "".join(f" or {v!r}" for v in also) + (" or null" if nullable else "")
            raise ValueError(f"streaming.{key} must be an integer >= {minimum}{extra}")
        return value

    return check


def flag_value(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"streaming.{key} must be true or false")
    return value


SETTING_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "commit_delay_ms": whole(0, also=("manual",)),
    "hostname_format": choice("text", "json"),
    "token_format": choice("text", "json"),
    "token_lifetime_s": whole(0),
    "error_key": choice("error_code", "code"),
    "require_accept": flag_value,
    "max_append_bytes": whole(1),
    "max_append_uncompressed_bytes": whole(1, nullable=True),
    "max_appends_per_second": whole(1, nullable=True),
    "max_channels_per_pipe": whole(1),
    "match_by_column_name": choice("CASE_SENSITIVE", "CASE_INSENSITIVE"),
    "dedupe_request_id": flag_value,
}


@dataclass
class StreamingSettings:
    """The streaming knobs of POST /__emulator/settings (see the module docstring)."""

    commit_delay_ms: int | str = 3000
    hostname_format: str = "text"
    token_format: str = "text"
    token_lifetime_s: int = 3600
    error_key: str = "error_code"
    require_accept: bool = True
    max_append_bytes: int = 4_000_000
    max_append_uncompressed_bytes: int | None = None
    max_appends_per_second: int | None = 10
    max_channels_per_pipe: int = 2000
    match_by_column_name: str = "CASE_SENSITIVE"
    dedupe_request_id: bool = False

    def update(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise ValueError("settings.streaming must be a JSON object")
        checked = {}
        for key, value in spec.items():
            check = SETTING_CHECKS.get(key)
            if check is None:
                raise ValueError(f"unknown streaming setting {key!r} (known: {', '.join(SETTING_CHECKS)})")
            checked[key] = check(key, value)
        for key, value in checked.items():
            setattr(self, key, value)

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def commit_delay_s(self) -> float | None:
        return None if self.commit_delay_ms == "manual" else self.commit_delay_ms / 1000


# --------------------------------------------------------------------------------------------
# Identities and scoped tokens
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """A user a key-pair JWT identified, with the roles it may use."""

    account: str
    user: str
    default_role: str
    roles: frozenset[str]

    @classmethod
    def of(cls, user: Any) -> Principal:
        """From the SQL API's User: its default role, PUBLIC, and its `roles` when Users have them."""
        default = str(user.default_role or "PUBLIC").upper()
        granted = {default, "PUBLIC", *(str(r).upper() for r in getattr(user, "roles", None) or ())}
        return cls(user.account, user.name, default, frozenset(granted))


Keypair = Callable[[str], Principal]
UserExists = Callable[[str, str], bool]


@dataclass(frozen=True)
class Scoped:
    """What a valid scoped token grants: a user, acting as a role, on one ingest host."""

    account: str
    user: str
    role: str


class ScopedTokens:
    """Issues and checks the scoped tokens of POST /oauth/token (HS256 JWTs, a per-process key)."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def issue(self, who: Principal, host: str, role: str, lifetime_s: int, now: float) -> str:
        claims = {
            "iss": "tracklayer-local-snowflake",
            "sub": f"{who.account}.{who.user}",
            "scope": host,
            "role": role,
            "iat": int(now),
            "exp": int(now) + lifetime_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str, host: str, now: float) -> Scoped:
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.PyJWTError:
            raise AuthError(
                AUTH_INVALID, "Invalid OAuth access token: not a scoped token from POST /oauth/token."
            ) from None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            raise AuthError(AUTH_EXPIRED, "OAuth access token expired: exchange a new one at POST /oauth/token.")
        if str(claims.get("scope", "")).lower() != host:
            raise AuthError(AUTH_INVALID, f"Invalid OAuth access token: it was issued for another host, not {host}.")
        account, _, user = str(claims.get("sub", "")).partition(".")
        return Scoped(account, user, str(claims.get("role", "")))


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(AUTH_MISSING, "Authorization header is missing or is not 'Bearer <token>'.")
    return token.strip()


def token_type(request: Request) -> str | None:
    return request.headers.get("x-snowflake-authorization-token-type")


def request_host(request: Request) -> str:
    return request.headers.get("host", "").strip().lower()


# --------------------------------------------------------------------------------------------
# Tables and default pipes
# --------------------------------------------------------------------------------------------

INTEGER_RANGES = {
    "TINYINT": 2**7,
    "SMALLINT": 2**15,
    "INTEGER": 2**31,
    "BIGINT": 2**63,
    "HUGEINT": 2**127,
}
KINDS = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "DOUBLE": "float",
    "FLOAT": "float",
    "REAL": "float",
    "JSON": "variant",
    "BLOB": "binary",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp_ntz",
    "TIMESTAMP_NS": "timestamp_ntz",
    "TIMESTAMP_MS": "timestamp_ntz",
    "TIMESTAMP_S": "timestamp_ntz",
    "TIMESTAMP WITH TIME ZONE": "timestamp_tz",
    **dict.fromkeys(INTEGER_RANGES, "integer"),
}


@dataclass(frozen=True)
class Column:
    """A target column as fakesnow stores it in DuckDB."""

    name: str
    duck_type: str
    nullable: bool
    default_sql: str | None
    length: int | None
    precision: int | None
    scale: int | None

    @property
    def kind(self) -> str:
        if self.duck_type.startswith("DECIMAL"):
            return "number"
        return KINDS.get(self.duck_type, "unsupported")

    @property
    def sequence_default(self) -> bool:
        """AUTOINCREMENT/IDENTITY: DuckDB draws a value per row."""
        return bool(self.default_sql) and "nextval(" in self.default_sql.lower()

    def arrow_type(self) -> pa.DataType:
        kind = self.kind
        if kind == "number":
            return pa.decimal128(self.precision or 38, self.scale or 0)
        if kind == "integer":
            return pa.decimal128(38, 0) if self.duck_type == "HUGEINT" else pa.int64()
        return {
            "float": pa.float64(),
            "boolean": pa.bool_(),
            "binary": pa.binary(),
            "date": pa.date32(),
            "time": pa.time64("us"),
            "timestamp_ntz": pa.timestamp("us"),
            "timestamp_tz": pa.timestamp("us", tz="UTC"),
        }.get(kind, pa.string())


@dataclass
class Pipe:
    """A default pipe: its table's columns and the DEFAULT values compiled with it."""

    database: str
    schema: str
    name: str
    table: str
    columns: tuple[Column, ...]
    defaults: dict[str, Any]

    @property
    def qualified_table(self) -> str:
        return ".".join(quote_identifier(p) for p in (self.database, self.schema, self.table))


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


HIDDEN_CATALOGS = ("memory", "system", "temp", "_fs_global")
HIDDEN_SCHEMAS = ("main", "_fs_information_schema", "information_schema", "pg_catalog")


class Catalog:
    """Resolves database/schema/pipe names against fakesnow's DuckDB; holds the default pipes."""

    def __init__(self, engine_lock: threading.Lock) -> None:
        self.engine_lock = engine_lock
        self._pipes: dict[tuple[str, str, str], Pipe] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._pipes.clear()

    def resolve(self, database: str, schema: str, pipe: str, create: bool = False) -> Pipe:
        """The default pipe, compiled on first use if `create` (an open); StreamingError 404 otherwise."""
        key = (database, schema, pipe)
        with self.engine_lock:
            duck = fakesnow.server.shared_fs.duck_conn.cursor()
            try:
                try:
                    columns = self.table_columns(duck, database, schema, pipe)
                except StreamingError:
                    with self._lock:
                        self._pipes.pop(key, None)
                    raise
                with self._lock:
                    known = self._pipes.get(key)
                    if known is not None and known.columns == columns:
                        return known
                    if known is None and not create:
                        raise StreamingError(
                            404, ERR_PIPE, f"Pipe {database}.{schema}.{pipe} does not exist or not authorized."
                        )
                    compiled = Pipe(database, schema, pipe, pipe[: -len(PIPE_SUFFIX)], columns, {})
                    compiled.defaults = compile_defaults(duck, columns)
                    self._pipes[key] = compiled
                    return compiled
            finally:
                duck.close()

    def table_columns(self, duck: Any, database: str, schema: str, pipe: str) -> tuple[Column, ...]:
        """The columns of the pipe's table; 404 for a missing database, schema, pipe or table."""
        if (
            database in HIDDEN_CATALOGS
            or not duck.execute(
                "SELECT 1 FROM information_schema.schemata WHERE catalog_name = ? LIMIT 1", [database]
            ).fetchall()
        ):
            raise StreamingError(404, ERR_DATABASE, f"Database {database} does not exist or not authorized.")
        if (
            schema.lower() in HIDDEN_SCHEMAS
            or not duck.execute(
                "SELECT 1 FROM information_schema.schemata WHERE catalog_name = ? AND schema_name = ?",
                [database, schema],
            ).fetchall()
        ):
            raise StreamingError(404, ERR_SCHEMA, f"Schema {database}.{schema} does not exist or not authorized.")
        missing = StreamingError(404, ERR_PIPE, f"Pipe {database}.{schema}.{pipe} does not exist or not authorized.")
        if not pipe.endswith(PIPE_SUFFIX) or len(pipe) == len(PIPE_SUFFIX):
            raise missing
        rows = duck.execute(
            "SELECT c.column_name, c.data_type, c.column_default, c.is_nullable, e.ext_character_maximum_length, "
            "c.numeric_precision, c.numeric_scale "
            "FROM information_schema.columns c "
            "JOIN duckdb_tables() t ON t.database_name = c.table_catalog AND t.schema_name = c.table_schema "
            "AND t.table_name = c.table_name "
            "LEFT JOIN _fs_global._fs_information_schema._fs_columns_ext e ON e.ext_table_catalog = c.table_catalog "
            "AND e.ext_table_schema = c.table_schema AND e.ext_table_name = c.table_name "
            "AND e.ext_column_name = c.column_name "
            "WHERE c.table_catalog = ? AND c.table_schema = ? AND c.table_name = ? ORDER BY c.ordinal_position",
            [database, schema, pipe[: -len(PIPE_SUFFIX)]],
        ).fetchall()
        if not rows:
            raise missing
        return tuple(
            Column(name, duck_type, nullable == "YES", default, length, precision, scale)
            for name, duck_type, default, nullable, length, precision, scale in rows
        )


def compile_defaults(duck: Any, columns: Iterable[Column]) -> dict[str, Any]:
    """Each non-sequence DEFAULT evaluated once, as Snowflake does when it compiles the pipe [LIM-new]."""
    values = {}
    for column in columns:
        if column.default_sql and not column.sequence_default:
            (value,) = duck.execute(f"SELECT CAST({column.default_sql} AS {column.duck_type})").fetchone()
            values[column.name] = value
    return values


# --------------------------------------------------------------------------------------------
# JSON values to column values
# --------------------------------------------------------------------------------------------


class RowError(Exception):
    """A row the pipe cannot load (ON_ERROR = CONTINUE counts it and skips it)."""


def shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def reject_constant(name: str) -> Any:
    raise RowError(f"{name} is not valid JSON (RFC 8259)")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RowError(f"Duplicate field key '{key}'")
        obj[key] = value
    return obj


def parse_row(line: str) -> dict[str, Any]:
    """One NDJSON line as a JSON object (numbers with a fraction as Decimal, exactly as sent)."""
    try:
        value = json.loads(line, parse_float=Decimal, parse_constant=reject_constant, object_pairs_hook=unique_keys)
    except ValueError as e:
        raise RowError(f"Error parsing JSON: {e}") from None
    if not isinstance(value, dict):
        raise RowError(f"Row is not a JSON object: {shown(line)}")
    return value


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=float)


NUMERIC_TEXT = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")
BOOLEAN_TEXT = {
    **dict.fromkeys(("true", "t", "yes", "y", "on", "1"), True),
    **dict.fromkeys(("false", "f", "no", "n", "off", "0"), False),
}
ISO_TIMESTAMP = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?\s*",
    re.IGNORECASE,
)
EPOCH_TEXT = re.compile(r"\s*-?\d+\s*")
ISO_TIME = re.compile(r"\s*(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?\s*")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise RowError(f"Numeric value '{shown(value)}' is not recognized")
    if isinstance(value, str):
        if not NUMERIC_TEXT.fullmatch(value):
            raise RowError(f"Numeric value '{shown(value)}' is not recognized")
        value = value.strip()
    number = Decimal(value)
    if not number.is_finite():
        raise RowError(f"Numeric value '{shown(value)}' is not recognized")
    return number


def to_number(column: Column, value: Any) -> Decimal | int:
    number = to_decimal(value)
    scale = (column.scale or 0) if column.kind == "number" else 0
    rounded = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    if column.kind == "integer":
        bound = INTEGER_RANGES[column.duck_type]
        if not -bound <= rounded < bound:
            raise RowError(f"Numeric value '{shown(value)}' is out of range")
        return int(rounded) if column.duck_type != "HUGEINT" else rounded
    precision = column.precision or 38
    if rounded.adjusted() >= precision - scale:
        raise RowError(f"Numeric value '{shown(value)}' is out of range")
    return rounded


def to_float(value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value.strip())
    return float(to_decimal(value))


def to_text(column: Column, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, Decimal)):
        text = str(value)
    else:
        text = json_text(value)
    if column.length is not None and len(text) > column.length:
        raise RowError(f"String '{shown(text)}' is too long and would be truncated")
    return text


def to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal)):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in BOOLEAN_TEXT:
        return BOOLEAN_TEXT[value.strip().lower()]
    raise RowError(f"Boolean value '{shown(value)}' is not recognized")


def epoch_instant(value: Any) -> datetime:
    """An integer (JSON or digits) is s/ms/µs/ns by magnitude, a fraction is seconds [TO_TS]."""
    number = int(value.strip()) if isinstance(value, str) else value
    if not isinstance(number, int):
        return EPOCH + timedelta(microseconds=int(to_decimal(number) * 10**6))
    for limit, per_second in ((31536000000, 1), (31536000000000, 1000), (31536000000000000, 10**6)):
        if abs(number) < limit:
            return EPOCH + timedelta(microseconds=number * 10**6 // per_second)
    return EPOCH + timedelta(microseconds=number // 1000)


def zone_offset(zone: str | None) -> timedelta | None:
    if zone is None:
        return None
    if zone.upper() == "Z":
        return timedelta(0)
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return offset if zone[0] == "+" else -offset


def parse_timestamp(value: Any) -> tuple[datetime, timedelta | None]:
    """(naive wall-clock time, the UTC offset the value named or None); epoch values are UTC."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise RowError(f"Timestamp '{shown(value)}' is not recognized")
    try:
        if not isinstance(value, str) or EPOCH_TEXT.fullmatch(value):
            return epoch_instant(value).replace(tzinfo=None), timedelta(0)
        match = ISO_TIMESTAMP.fullmatch(value)
        if match is None:
            raise ValueError
        year, month, day, hour, minute, second, fraction, zone = match.groups()
        micros = int((fraction or "").ljust(6, "0")[:6])
        wall = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micros)
        return wall, zone_offset(zone)
    except (ValueError, OverflowError, RowError):
        raise RowError(f"Timestamp '{shown(value)}' is not recognized") from None


def to_timestamp_ntz(value: Any) -> datetime:
    """Wall-clock time: a zone in the text is dropped, as TIMESTAMP_NTZ does [NOTES]."""
    return parse_timestamp(value)[0]


def to_timestamp_tz(value: Any) -> datetime:
    """The instant in UTC; no zone in the text means UTC (the emulator's session time zone)."""
    wall, offset = parse_timestamp(value)
    return (wall - (offset or timedelta(0))).replace(tzinfo=UTC)


def to_date(value: Any) -> date:
    try:
        return to_timestamp_ntz(value).date()
    except RowError:
        raise RowError(f"Date '{shown(value)}' is not recognized") from None


def to_time(value: Any) -> clock_time:
    match = ISO_TIME.fullmatch(value) if isinstance(value, str) else None
    try:
        if match is None:
            raise ValueError
        hour, minute, second, fraction = match.groups()
        return clock_time(int(hour), int(minute), int(second or 0), int((fraction or "").ljust(6, "0")[:6]))
    except ValueError:
        raise RowError(f"Time '{shown(value)}' is not recognized") from None


def to_binary(value: Any) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise RowError(f"The following string is not a legal base64-encoded value: '{shown(value)}'") from None


def convert(column: Column, value: Any) -> Any:
    """A JSON value as the column's DuckDB value, or RowError with Snowflake's wording."""
    if value is None:
        return None
    kind = column.kind
    if kind in ("number", "integer"):
        return to_number(column, value)
    converters: dict[str, Callable[[Any], Any]] = {
        "float": to_float,
        "text": lambda v: to_text(column, v),
        "boolean": to_boolean,
        "variant": json_text,
        "binary": to_binary,
        "date": to_date,
        "time": to_time,
        "timestamp_ntz": to_timestamp_ntz,
        "timestamp_tz": to_timestamp_tz,
    }
    if kind not in converters:
        raise RowError(f"Column {column.name} of type {column.duck_type} is not supported by the emulator's pipes")
    return converters[kind](value)


def matched_values(obj: dict[str, Any], case_sensitive: bool) -> dict[str, Any]:
    """The row's keys as the pipe matches them to column names (MATCH_BY_COLUMN_NAME)."""
    if case_sensitive:
        return obj
    folded: dict[str, Any] = {}
    for key, value in obj.items():
        if key.upper() in folded:
            raise RowError(f"Field keys '{key}' and another differ only in case (CASE_INSENSITIVE matching)")
        folded[key.upper()] = value
    return folded


def row_values(pipe: Pipe, line: str, case_sensitive: bool) -> dict[str, Any]:
    """One NDJSON line as column -> value (sequence columns the row omits are left out)."""
    values = matched_values(parse_row(line), case_sensitive)
    row = {}
    for column in pipe.columns:
        key = column.name if case_sensitive else column.name.upper()
        if key in values:
            try:
                value = convert(column, values[key])
            except RowError as e:
                raise RowError(f"{e} (column {column.name})") from None
        elif column.sequence_default:
            continue
        else:
            value = pipe.defaults.get(column.name)
        if value is None and not column.nullable:
            raise RowError(f"NULL result in a non-nullable column {column.name}")
        row[column.name] = value
    return row


def insert_rows(pipe: Pipe, rows: list[dict[str, Any]]) -> None:
    """INSERT rows that have the same columns in one statement (raises duckdb.Error)."""
    columns = [c for c in pipe.columns if c.name in rows[0]]
    table = pa.table({c.name: pa.array([r[c.name] for r in rows], type=c.arrow_type()) for c in columns})
    view = "_streaming_batch_" + uuid.uuid4().hex
    exprs = [
        f"CAST({quote_identifier(c.name)} AS JSON)" if c.kind == "variant" else quote_identifier(c.name)
        for c in columns
    ]
    names = ", ".join(quote_identifier(c.name) for c in columns)
    duck = fakesnow.server.shared_fs.duck_conn.cursor()
    try:
        duck.register(view, table)
        duck.execute(f"INSERT INTO {pipe.qualified_table} ({names}) SELECT {', '.join(exprs)} FROM {view}")
    finally:
        duck.close()


# --------------------------------------------------------------------------------------------
# Channels and their batches
# --------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """One accepted append, waiting for its commit."""

    lines: list[str]
    end_offset: str | None
    received_at: float
    extra_delay_s: float = 0.0


@dataclass
class Outcome:
    """What committing batches did."""

    batches: int = 0
    rows_inserted: int = 0
    rows_errors: int = 0

    def add(self, other: Outcome) -> None:
        self.batches += other.batches
        self.rows_inserted += other.rows_inserted
        self.rows_errors += other.rows_errors

    def describe(self) -> dict[str, int]:
        return {"batches": self.batches, "rows_inserted": self.rows_inserted, "rows_errors": self.rows_errors}


@dataclass
class Channel:
    """A named channel's server-side state (see the module docstring)."""

    database: str
    schema: str
    pipe: str
    name: str
    created_on_ms: int
    client_seq: int = 0
    row_seq: int = 0
    committed_offset: str | None = None
    rows_inserted: int = 0
    rows_parsed: int = 0
    rows_errors: int = 0
    last_error_offset: str | None = None
    last_error_message: str | None = None
    last_error_ms: int | None = None
    latency_ms_total: float = 0.0
    latency_batches: int = 0
    invalid: StreamingError | None = None
    pending: deque[Batch] = field(default_factory=deque)
    accepted_at: deque[float] = field(default_factory=deque)
    answered: OrderedDict[str, tuple[str, dict[str, Any]]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def token(self) -> str:
        return f"{self.client_seq}_{self.row_seq}"

    def reopen(self) -> None:
        """Fence the current writer: new sequencer, uncommitted rows gone [REST-*][NC]."""
        self.client_seq += 1
        self.row_seq = 0
        self.pending.clear()
        self.answered.clear()
        self.invalid = None

    def invalidate(self, error: StreamingError) -> None:
        """A reopen code: the channel answers `error` until reopened; its uncommitted rows are gone."""
        self.invalid = error
        self.pending.clear()

    def status(self) -> dict[str, Any]:
        average = self.latency_ms_total / self.latency_batches if self.latency_batches else 0
        return {
            "database_name": self.database,
            "schema_name": self.schema,
            "pipe_name": self.pipe,
            "channel_name": self.name,
            "channel_status_code": self.invalid.code if self.invalid else "SUCCESS",
            "last_committed_offset_token": self.committed_offset,
            "created_on_ms": self.created_on_ms,
            "rows_inserted": self.rows_inserted,
            "rows_parsed": self.rows_parsed,
            "rows_errors": self.rows_errors,
            "rows_error_count": self.rows_errors,
            "last_error_offset_upper_bound": self.last_error_offset,
            "last_error_message": self.last_error_message,
            "last_error_timestamp": self.last_error_ms,
            "snowflake_avg_processing_latency_ms": round(average),
        }

    def describe(self) -> dict[str, Any]:
        return {
            **self.status(),
            "client_sequencer": self.client_seq,
            "row_sequencer": self.row_seq,
            "continuation_token": self.token,
            "pending_batches": len(self.pending),
            "pending_rows": sum(len(b.lines) for b in self.pending),
        }

    def admit(self, limit: int | None, now: float) -> None:
        """429 when the channel already took `limit` appends in the last second [LIM-*]."""
        while self.accepted_at and self.accepted_at[0] <= now - 1:
            self.accepted_at.popleft()
        if limit is not None and len(self.accepted_at) >= limit:
            raise StreamingError(
                429,
                "ERR_TOO_MANY_REQUESTS",
                f"Channel {self.name} received more than {limit} appends in one second; slow down and retry.",
            )

    def check_token(self, token: str | None) -> None:
        if not token:
            raise bad_request(
                "Query parameter continuationToken is required: use the token of the open or last append."
            )
        seq, _, row = token.partition("_")
        if seq != str(self.client_seq):
            raise StreamingError(
                400, STALE_TOKEN, "Channel sequencer in the continuation token is stale. Please reopen the channel"
            )
        if row != str(self.row_seq):
            error = StreamingError(
                409,
                ERR_ROW_SEQUENCER,
                f"Continuation token {token} is not the channel's latest; reopen the channel and replay "
                "from its last committed offset token.",
            )
            self.invalidate(error)
            raise error

    def remember(self, request_id: str | None, token: str, answer: dict[str, Any]) -> None:
        if request_id:
            self.answered[request_id] = (token, answer)
            while len(self.answered) > REMEMBERED_APPENDS:
                self.answered.popitem(last=False)

    def record(self, batch: Batch, inserted: int, errors: list[str], now: float) -> None:
        self.rows_inserted += inserted
        self.rows_parsed += len(batch.lines)
        self.rows_errors += len(errors)
        if errors:
            self.last_error_offset = batch.end_offset
            self.last_error_message = errors[-1]
            self.last_error_ms = int(now * 1000)
        if batch.end_offset is not None:
            self.committed_offset = batch.end_offset
        self.latency_ms_total += (now - batch.received_at) * 1000
        self.latency_batches += 1


ChannelKey = tuple[str, str, str, str]


# --------------------------------------------------------------------------------------------
# The service: state, operations, committer
# --------------------------------------------------------------------------------------------


@dataclass
class Append:
    """A validated append request."""

    token: str | None
    end_offset: str | None
    request_id: str | None
    lines: list[str]


class Streaming:
    """Channels, default pipes, scoped tokens and the committer of the local Snowpipe Streaming."""

    def __init__(self, engine_lock: threading.Lock, keypair: Keypair, user_exists: UserExists) -> None:
        self.engine_lock = engine_lock
        self.keypair = keypair
        self.user_exists = user_exists
        self.settings = StreamingSettings()
        self.tokens = ScopedTokens()
        self.catalog = Catalog(engine_lock)
        self._channels: dict[ChannelKey, Channel] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        threading.Thread(target=self.commit_forever, name="streaming-commit", daemon=True).start()

    # ---- control ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget channels, pipes and settings (scoped tokens stay valid)."""
        with self._wake:
            self._channels.clear()
            self.settings = StreamingSettings()
            self.catalog.clear()
            self._wake.notify()

    def update_settings(self, spec: Any) -> None:
        self.settings.update(spec)
        with self._wake:
            self._wake.notify()

    def describe_channels(self) -> list[dict[str, Any]]:
        with self._lock:
            channels = list(self._channels.values())
        return [c.describe() for c in channels]

    def fence(self, key: ChannelKey) -> dict[str, Any]:
        channel = self.channel(key)
        if channel is None:
            raise ValueError(f"no channel {'.'.join(key)}")
        with channel.lock:
            channel.reopen()
            return channel.status()

    # ---- operations (worker threads) ------------------------------------------------------------

    def channel(self, key: ChannelKey) -> Channel | None:
        with self._lock:
            return self._channels.get(key)

    def existing(self, key: ChannelKey) -> Channel:
        channel = self.channel(key)
        if channel is None:
            raise StreamingError(404, ERR_CHANNEL, f"Channel {key[3]} does not exist or is not authorized.")
        return channel

    def open(self, key: ChannelKey, body: dict[str, Any], fault: Any) -> dict[str, Any]:
        pipe = self.catalog.resolve(*key[:3], create=True)
        handle_fault(self, key, fault)
        reopened = None
        with self._lock:
            channel = self._channels.get(key)
            if channel is None:
                on_pipe = sum(1 for k in self._channels if k[:3] == key[:3])
                if on_pipe >= self.settings.max_channels_per_pipe:
                    raise StreamingError(
                        429,
                        "ERR_TOO_MANY_CHANNELS",
                        f"Pipe {pipe.name} already has {on_pipe} channels (limit "
                        f"{self.settings.max_channels_per_pipe}); drop or reuse channels.",
                    )
                channel = Channel(*key, created_on_ms=int(time.time() * 1000))
                self._channels[key] = channel
            else:
                reopened = channel
        with channel.lock:
            if channel is reopened:
                if body.get("fail_on_uncommitted_rows") and channel.pending:
                    raise StreamingError(
                        409, ERR_UNCOMMITTED, f"Channel {channel.name} has uncommitted rows; wait for their commit."
                    )
                channel.reopen()
            if body.get("offset_token") is not None:
                channel.committed_offset = body["offset_token"]
            return {"next_continuation_token": channel.token, "channel_status": channel.status()}

    def append(self, key: ChannelKey, request: Append, fault: Any) -> dict[str, Any]:
        self.catalog.resolve(*key[:3])
        channel = self.existing(key)
        extra_delay_s = handle_fault(self, key, fault)
        with channel.lock:
            if channel.invalid is not None:
                raise channel.invalid
            if self.settings.dedupe_request_id and request.request_id in channel.answered:
                token, answer = channel.answered[request.request_id]
                if token == request.token:
                    return answer
            channel.check_token(request.token)
            now = time.time()
            channel.admit(self.settings.max_appends_per_second, now)
            channel.accepted_at.append(now)
            channel.pending.append(Batch(request.lines, request.end_offset, now, extra_delay_s))
            channel.row_seq += 1
            answer = {"next_continuation_token": channel.token, "status_code": 0, "message": "Success"}
            channel.remember(request.request_id, request.token or "", answer)
        with self._wake:
            self._wake.notify()
        return answer

    def statuses(self, pipe_key: tuple[str, str, str], names: list[str], fault: Any) -> dict[str, Any]:
        self.catalog.resolve(*pipe_key)
        handle_fault(self, None, fault)
        found = {}
        for name in names:
            channel = self.channel((*pipe_key, name))
            if channel is not None:
                with channel.lock:
                    found[name] = channel.status()
        return {"channel_statuses": found}

    def drop(self, key: ChannelKey, body: dict[str, Any], fault: Any) -> None:
        self.catalog.resolve(*key[:3])
        channel = self.existing(key)
        handle_fault(self, key, fault)
        with channel.lock:
            if body.get("fail_on_uncommitted_rows") and channel.pending:
                raise StreamingError(
                    409, ERR_UNCOMMITTED, f"Channel {channel.name} has uncommitted rows; wait for their commit first."
                )
            channel.pending.clear()
            with self._lock:
                if self._channels.get(key) is channel:
                    del self._channels[key]

    # ---- commits ------------------------------------------------------------------------------

    def due_at(self, batch: Batch) -> float | None:
        delay = self.settings.commit_delay_s
        return None if delay is None else batch.received_at + delay + batch.extra_delay_s

    def commit_forever(self) -> None:
        while True:
            with self._wake:
                self._wake.wait(timeout=self.next_wake_in(time.time()))
                channels = list(self._channels.values())
            for channel in channels:
                try:
                    self.commit(channel, force=False)
                except Exception:
                    log.exception("committing channel %s failed", channel.name)

    def next_wake_in(self, now: float) -> float | None:
        """Seconds until the earliest head batch is due; None when nothing is (wait for a notify)."""
        dues = [self.due_at(c.pending[0]) for c in self._channels.values() if c.pending]
        dues = [d for d in dues if d is not None]
        return max(0.0, min(dues) - now) if dues else None

    def commit_now(self, spec: dict[str, Any]) -> Outcome:
        """POST /__emulator/streaming/commit: every matching pending batch, now."""
        wanted = [spec.get(k) for k in ("database", "schema", "pipe", "channel")]
        with self._lock:
            channels = [
                c for k, c in self._channels.items() if all(w is None or w == v for w, v in zip(wanted, k, strict=True))
            ]
        total = Outcome()
        for channel in channels:
            total.add(self.commit(channel, force=True))
        return total

    def commit(self, channel: Channel, force: bool) -> Outcome:
        """Commit the channel's batches that are due (all with force), oldest first."""
        outcome = Outcome()
        with channel.lock:
            while channel.pending:
                now = time.time()
                due = self.due_at(channel.pending[0])
                if not force and (due is None or due > now):
                    break
                batch = channel.pending.popleft()
                inserted, errors = self.load(channel, batch)
                channel.record(batch, inserted, errors, time.time())
                outcome.add(Outcome(1, inserted, len(errors)))
        return outcome

    def load(self, channel: Channel, batch: Batch) -> tuple[int, list[str]]:
        """Insert a batch's valid rows; (rows inserted, error messages of the rest)."""
        case_sensitive = self.settings.match_by_column_name == "CASE_SENSITIVE"
        try:
            pipe = self.catalog.resolve(channel.database, channel.schema, channel.pipe)
        except StreamingError as e:
            return 0, [f"Row {i + 1}: {e.message}" for i in range(len(batch.lines))]
        rows: list[dict[str, Any]] = []
        errors: list[str] = []
        for number, line in enumerate(batch.lines, 1):
            try:
                rows.append(row_values(pipe, line, case_sensitive))
            except RowError as e:
                errors.append(f"Row {number}: {e}")
        with self.engine_lock:
            inserted = 0
            for group in group_by_columns(rows):
                inserted += insert_group(pipe, group, errors)
        return inserted, errors


def group_by_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())


def insert_group(pipe: Pipe, rows: list[dict[str, Any]], errors: list[str]) -> int:
    """Insert rows together; if DuckDB refuses, one by one, recording each refusal."""
    try:
        insert_rows(pipe, rows)
        return len(rows)
    except (duckdb.Error, pa.ArrowException):
        inserted = 0
        for row in rows:
            try:
                insert_rows(pipe, [row])
                inserted += 1
            except (duckdb.Error, pa.ArrowException) as e:
                errors.append(f"Row rejected by the table: {e}")
        return inserted


def handle_fault(service: Streaming, key: ChannelKey | None, fault: Any) -> float:
    """Apply a streaming fault (see Faults); the extra commit delay in seconds it asks for."""
    if fault is None:
        return 0.0
    channel = service.channel(key) if key is not None else None
    action = fault.action
    if "fence_channel" in action and channel is not None:
        with channel.lock:
            channel.reopen()
    if "channel_error" in action:
        spec = action["channel_error"]
        error = StreamingError(
            spec.get("status", 409), spec["code"], spec.get("message") or f"Injected channel error {spec['code']}."
        )
        if channel is not None:
            with channel.lock:
                channel.invalidate(error)
        raise error
    return action.get("commit_delay_ms", 0) / 1000


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def media_types(header: str | None) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in (header or "").split(",") if part.strip()]


def require_content_type(request: Request, body: bytes, expected: str) -> None:
    if body and expected not in media_types(request.headers.get("content-type")):
        raise bad_request(
            f"Content-Type {request.headers.get('content-type')!r} is not supported here; send {expected}.", 415
        )


def json_body(request: Request, body: bytes, allowed: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """An optional JSON object body whose fields have the given types."""
    require_content_type(request, body, "application/json")
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise bad_request("The request body must be a JSON object.")
    for key, item in value.items():
        if key not in allowed:
            raise bad_request(f"Unknown field {key!r} in the request body (allowed: {', '.join(allowed)}).")
        if not isinstance(item, allowed[key]):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed[key])
            raise bad_request(f"Field {key!r} must be {names}.")
    return value


def read_limited(stream: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def decode_body(request: Request, body: bytes, settings: StreamingSettings) -> bytes:
    """The rows as sent, decompressed; 413 over the size caps, 415 for an unknown encoding."""
    if len(body) > settings.max_append_bytes:
        raise StreamingError(
            413,
            "ERR_PAYLOAD_TOO_LARGE",
            f"The request body is {len(body)} bytes; at most {settings.max_append_bytes} bytes per append "
            "(after compression). Split the rows into smaller appends.",
        )
    encoding = (request.headers.get("content-encoding") or "identity").strip().lower()
    try:
        if encoding == "gzip":
            data = read_limited(gzip.GzipFile(fileobj=io.BytesIO(body)), MAX_DECOMPRESSED_BYTES)
        elif encoding == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
            data = read_limited(reader, MAX_DECOMPRESSED_BYTES)
        elif encoding == "identity":
            data = body
        else:
            raise bad_request(f"Content-Encoding {encoding!r} is not supported; use gzip or zstd.", 415)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as e:
        raise bad_request(f"The body is not valid {encoding} data: {e}") from None
    cap = min(MAX_DECOMPRESSED_BYTES, settings.max_append_uncompressed_bytes or MAX_DECOMPRESSED_BYTES)
    if len(data) > cap:
        raise StreamingError(
            413, "ERR_PAYLOAD_TOO_LARGE", f"The uncompressed rows exceed {cap} bytes; split them into smaller appends."
        )
    return data


def ndjson_lines(data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The rows are not valid UTF-8.") from None
    if not text:
        raise bad_request("The request has no rows.")
    if not text.endswith("\n"):
        raise bad_request("Each NDJSON row must end with a newline (\\n), the last one too.")
    return [line[:-1] if line.endswith("\r") else line for line in text[:-1].split("\n")]


def offset_end(query: Any) -> str | None:
    """The batch's (end) offset token from offsetToken or startOffsetToken/endOffsetToken."""
    single, start, end = (query.get(k) for k in ("offsetToken", "startOffsetToken", "endOffsetToken"))
    if single is not None and (start is not None or end is not None):
        raise bad_request("Send offsetToken or startOffsetToken/endOffsetToken, not both.")
    if (start is None) != (end is None):
        raise bad_request("startOffsetToken and endOffsetToken go together.")
    token = single if single is not None else end
    return token or None


def normalized(name: str) -> str:
    """A name as Snowflake resolves it: "quoted" exactly, else upper-case."""
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.upper()


def identifier(segment: str) -> str:
    """A percent-encoded path segment as a name (case-insensitive unless quoted [REST-*])."""
    name = unquote(segment)
    if not name:
        raise bad_request("A name in the path is empty.")
    return normalized(name)


@dataclass
class Target:
    """What a /v2/streaming path addresses."""

    kind: str
    names: tuple[str, ...]


def parse_path(raw_path: str) -> Target | None:
    parts = raw_path.rstrip("/").split("/")[3:]
    if parts == ["hostname"]:
        return Target("hostname", ())
    data = parts[:1] == ["data"]
    if data:
        parts = parts[1:]
    if len(parts) < 6 or parts[0] != "databases" or parts[2] != "schemas" or parts[4] != "pipes":
        return None
    if not data and len(parts) == 6 and parts[5].endswith(STATUS_SUFFIX):
        pipe = parts[5][: -len(STATUS_SUFFIX)]
        return Target("status", tuple(identifier(p) for p in (parts[1], parts[3], pipe)))
    if len(parts) == 8 + data and parts[6] == "channels" and (not data or parts[8] == "rows"):
        names = tuple(identifier(p) for p in (parts[1], parts[3], parts[5], parts[7]))
        return Target("append" if data else "channel", names)
    return None


class StreamingApi:
    """The HTTP face of Streaming: routes, request checks, answers."""

    def __init__(self, service: Streaming) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        methods = ["GET", "PUT", "POST", "DELETE"]
        return [
            Route(TOKEN_PATH, self.exchange, methods=["POST"]),
            Route(PREFIX + "/{rest:path}", self.dispatch, methods=methods),
        ]

    @property
    def settings(self) -> StreamingSettings:
        return self.service.settings

    def error(self, e: StreamingError) -> Response:
        return JSONResponse({self.settings.error_key: e.code, "message": e.message}, status_code=e.status)

    def check_accept(self, request: Request) -> None:
        accept = request.headers.get("accept")
        if self.settings.require_accept and "application/json" not in media_types(accept):
            raise StreamingError(400, "391902", f"Unsupported Accept header {accept or 'null'} is specified")

    def control_plane_user(self, request: Request) -> Principal:
        token = bearer_token(request)
        if token_type(request) not in (None, "KEYPAIR_JWT"):
            raise AuthError(
                AUTH_MISSING,
                f"Token type {token_type(request)!r} is not accepted here: send a key-pair JWT "
                "(X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT or no token-type header).",
            )
        return self.service.keypair(token)

    def data_plane_user(self, request: Request, keypair_allowed: bool = False) -> Scoped:
        token = bearer_token(request)
        kind = token_type(request)
        if kind == "KEYPAIR_JWT":
            if not keypair_allowed:
                raise AuthError(
                    AUTH_INVALID,
                    "Invalid OAuth access token: a key-pair JWT is not accepted here; exchange it at "
                    "POST /oauth/token for a scoped token.",
                )
            who = self.service.keypair(token)
            return Scoped(who.account, who.user, who.default_role)
        if kind not in (None, "OAUTH"):
            raise AuthError(AUTH_MISSING, f"Token type {kind!r} is not accepted here: send the scoped token (OAUTH).")
        scoped = self.service.tokens.verify(token, request_host(request), time.time())
        if not self.service.user_exists(scoped.account, scoped.user):
            raise AuthError(AUTH_INVALID, f"Invalid OAuth access token: user {scoped.account}.{scoped.user} is gone.")
        return scoped

    async def dispatch(self, request: Request) -> Response:
        try:
            return await self.route(request)
        except StreamingError as e:
            return self.error(e)
        except Exception as e:
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            return self.error(StreamingError(500, "ERR_INTERNAL", f"Emulator internal error: {type(e).__name__}: {e}"))

    async def route(self, request: Request) -> Response:
        target = parse_path(request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"))
        if target is None:
            raise StreamingError(404, "ERR_NOT_FOUND", f"No streaming endpoint at {request.url.path}.")
        handlers = {
            ("hostname", "GET"): self.hostname,
            ("channel", "PUT"): self.open,
            ("channel", "DELETE"): self.drop,
            ("append", "POST"): self.append,
            ("status", "POST"): self.status,
        }
        handler = handlers.get((target.kind, request.method))
        if handler is None:
            raise StreamingError(405, "ERR_METHOD_NOT_ALLOWED", f"{request.method} is not supported on this path.")
        self.check_accept(request)
        return await handler(request, target)

    @staticmethod
    def fault(request: Request) -> Any:
        return (request.scope.get("state") or {}).get(FAULT_STATE)

    async def hostname(self, request: Request, target: Target) -> Response:
        self.control_plane_user(request)
        handle_fault(self.service, None, self.fault(request))
        host = request_host(request)
        if self.settings.hostname_format == "json":
            return JSONResponse({"hostname": host})
        return Response(host, media_type="text/plain")

    async def open(self, request: Request, target: Target) -> Response:
        self.data_plane_user(request)
        body = json_body(
            request,
            await request.body(),
            {"offset_token": (str, type(None)), "fail_on_uncommitted_rows": (bool,)},
        )
        answer = await asyncio.to_thread(self.service.open, target.names, body, self.fault(request))
        return JSONResponse(answer)

    async def drop(self, request: Request, target: Target) -> Response:
        self.data_plane_user(request)
        body = json_body(request, await request.body(), {"fail_on_uncommitted_rows": (bool,)})
        await asyncio.to_thread(self.service.drop, target.names, body, self.fault(request))
        return Response(status_code=200)

    async def append(self, request: Request, target: Target) -> Response:
        self.data_plane_user(request)
        body = await request.body()
        require_content_type(request, body or b" ", "application/x-ndjson")
        data = await asyncio.to_thread(decode_body, request, body, self.settings)
        lines = ndjson_lines(data)
        query = request.query_params
        parsed = Append(query.get("continuationToken"), offset_end(query), query.get("requestId"), lines)
        answer = await asyncio.to_thread(self.service.append, target.names, parsed, self.fault(request))
        return JSONResponse(answer)

    async def status(self, request: Request, target: Target) -> Response:
        self.data_plane_user(request, keypair_allowed=True)
        body = json_body(request, await request.body(), {"channel_names": (list,)})
        names = body.get("channel_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad_request('The body must be {"channel_names": ["<channel>", ...]}.')
        answer = await asyncio.to_thread(self.service.statuses, target.names, names, self.fault(request))
        return JSONResponse(answer)

    # ---- POST /oauth/token --------------------------------------------------------------------

    async def exchange(self, request: Request) -> Response:
        try:
            self.check_accept(request)
            handle_fault(self.service, None, self.fault(request))
            token = self.scoped_token(request, await request.body())
        except StreamingError as e:
            return self.error(e)
        except OAuthError as e:
            return JSONResponse({"error": e.error, "error_description": e.description}, status_code=e.status)
        if self.settings.token_format == "json":
            return JSONResponse({"token": token})
        return Response(token, media_type="text/plain")

    def scoped_token(self, request: Request, body: bytes) -> str:
        if "application/x-www-form-urlencoded" not in media_types(request.headers.get("content-type")):
            raise OAuthError(400, "invalid_request", "Send the form as application/x-www-form-urlencoded.")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != JWT_BEARER:
            raise OAuthError(400, "unsupported_grant_type", f"grant_type must be {JWT_BEARER}.")
        scope = form.get("scope", "").split()
        if not scope:
            raise OAuthError(
                400, "invalid_request", "scope is required: the ingest host, optionally ' session:role:<ROLE>'."
            )
        header = request.headers.get("authorization")
        if header and form.get("assertion"):
            raise OAuthError(400, "invalid_request", "Send the JWT once: as Authorization: Bearer or as assertion.")
        if form.get("assertion"):
            who = self.service.keypair(form["assertion"])
            jwt_text = form["assertion"]
        else:
            who, jwt_text = self.control_plane_user(request), bearer_token(request)
        host = request_host(request)
        if scope[0].lower() != host:
            raise OAuthError(400, "invalid_scope", f"scope must start with this account's ingest host {host}.")
        role = self.scope_role(scope[1:], jwt_text) or who.default_role
        if role not in who.roles:
            raise OAuthError(
                400,
                "invalid_scope",
                f"Role {role} is not granted to user {who.user} (granted: {', '.join(sorted(who.roles))}).",
            )
        return self.service.tokens.issue(who, host, role, self.settings.token_lifetime_s, time.time())

    @staticmethod
    def scope_role(items: list[str], jwt_text: str) -> str | None:
        roles = []
        for item in items:
            prefix, _, role = item.partition("session:role:")
            if prefix or not role:
                raise OAuthError(
                    400, "invalid_scope", f"Unknown scope item {item!r}; only session:role:<ROLE> may follow the host."
                )
            roles.append(role)
        if len(roles) > 1:
            raise OAuthError(400, "invalid_scope", "At most one session:role: in the scope.")
        if roles:
            return normalized(roles[0])
        claim = jwt.decode(jwt_text, options={"verify_signature": False}).get("scp")
        if isinstance(claim, str) and claim.startswith("session:role:") and claim[13:]:
            return normalized(claim[13:])
        return None

    # ---- control endpoints (/__emulator/streaming/...) ----------------------------------------

    def control_routes(self) -> list[tuple[str, str, Callable[[Request], Any]]]:
        return [
            ("/streaming/commit", "POST", self.control_commit),
            ("/streaming/fence", "POST", self.control_fence),
            ("/streaming/channels", "GET", self.control_channels),
        ]

    async def control_commit(self, request: Request) -> dict[str, Any]:
        spec = json.loads(await request.body() or b"{}")
        if not isinstance(spec, dict):
            raise ValueError("the commit filter is a JSON object")
        outcome = await asyncio.to_thread(self.service.commit_now, spec)
        return outcome.describe()

    async def control_fence(self, request: Request) -> dict[str, Any]:
        spec = json.loads(await request.body())
        key = tuple(spec[k] for k in ("database", "schema", "pipe", "channel"))
        return await asyncio.to_thread(self.service.fence, key)

    async def control_channels(self, request: Request) -> list[dict[str, Any]]:
        return self.service.describe_channels()
