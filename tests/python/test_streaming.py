"""Snowpipe Streaming REST API of the local Snowflake (infra/local/emulator/streaming.py), over HTTP.

Commits are made deterministic with the "manual" commit setting and POST /__emulator/streaming/commit,
or awaited by polling bulk channel status with a bound; nothing sleeps for timing.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.client import IncompleteRead
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jwt
import pytest
import zstandard

from conftest import DATABASE
from sflocal import Control, Http, Identity, Reply, SqlApi, sfquery

SCHEMA = "PYTEST"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCEPT = {"Accept": "application/json"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ndjson(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def epoch_text(iso: str) -> str:
    """A naive ISO timestamp (read as UTC) as the SQL API renders TIMESTAMP_NTZ."""
    micros = (datetime.fromisoformat(iso).replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
    return f"{micros // 10**6}.{micros % 10**6:06d}000"


def exchange(
    http: Http, identity: Identity, scope: str, *, headers: dict[str, str] | None = None, **form: str
) -> Reply:
    """POST /oauth/token with the JWT as Authorization: Bearer unless `headers` say otherwise."""
    body = urlencode({"grant_type": JWT_BEARER, "scope": scope, **form}).encode()
    sent = {**ACCEPT, **identity.headers(), "Content-Type": "application/x-www-form-urlencoded"}
    return raw_request(http, "POST", "/oauth/token", body, sent if headers is None else headers)


def raw_request(http: Http, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Reply:
    """A request whose answer may not be JSON (hostname and token answer plain text)."""
    conn = http.connection()
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return Reply(response.status, parsed, reply_headers, raw)


@dataclass
class Stream:
    """A client of the streaming data plane holding one scoped token."""

    http: Http
    host: str
    token: str

    def headers(self, content_type: str = "application/json", **extra: str) -> dict[str, str]:
        return {**ACCEPT, "Authorization": f"Bearer {self.token}", "Content-Type": content_type, **extra}

    @staticmethod
    def pipe(table: str) -> str:
        return f"/v2/streaming/databases/{DATABASE}/schemas/{SCHEMA}/pipes/{table}-STREAMING"

    def open(self, table: str, channel: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        return self.http.request("PUT", f"{self.pipe(table)}/channels/{channel}", body or {}, headers or self.headers())

    def append(
        self,
        table: str,
        channel: str,
        token: str | None,
        rows: list[Any] | bytes,
        *,
        offset: str | None = None,
        query: dict[str, str] | None = None,
        encoding: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        params = {**({"continuationToken": token} if token else {}), **({"offsetToken": offset} if offset else {})}
        params |= query or {}
        body = rows if isinstance(rows, bytes) else ndjson(rows)
        sent = headers or self.headers("application/x-ndjson")
        if encoding == "gzip":
            body, sent = gzip.compress(body), {**sent, "Content-Encoding": "gzip"}
        elif encoding == "zstd":
            body, sent = zstandard.ZstdCompressor().compress(body), {**sent, "Content-Encoding": "zstd"}
        path = self.pipe(table).replace("/v2/streaming/", "/v2/streaming/data/") + f"/channels/{channel}/rows"
        return self.http.request("POST", f"{path}?{urlencode(params)}", body, sent)

    def status(self, table: str, names: list[str], headers: dict[str, str] | None = None) -> Reply:
        return self.http.request(
            "POST", self.pipe(table) + ":bulk-channel-status", {"channel_names": names}, headers or self.headers()
        )

    def channel_status(self, table: str, name: str) -> dict[str, Any]:
        reply = self.status(table, [name])
        assert reply.status == 200, reply.body
        return reply.body["channel_statuses"][name]

    def drop(self, table: str, channel: str, body: Any = None) -> Reply:
        return self.http.request("DELETE", f"{self.pipe(table)}/channels/{channel}", body, self.headers())

    def wait_committed(self, table: str, channel: str, offset: str, timeout_s: float = 15) -> dict[str, Any]:
        """Poll bulk status until the channel's committed offset token is `offset`."""
        deadline = time.monotonic() + timeout_s
        while (status := self.channel_status(table, channel))["last_committed_offset_token"] != offset:
            assert time.monotonic() < deadline, f"offset {offset} not committed after {timeout_s}s: {status}"
            time.sleep(0.05)
        return status


def commit(control: Control, **match: str) -> dict[str, int]:
    return control.call("POST", "/streaming/commit", match)


def streaming_settings(control: Control, **spec: Any) -> dict[str, Any]:
    return control.settings(streaming=spec)["streaming"]


@pytest.fixture
def host(stack_env: dict[str, str]) -> str:
    return urlsplit(stack_env["SNOWFLAKE_EMULATOR_URL"]).netloc


@pytest.fixture
def stream(http: Http, loader: Identity, host: str) -> Stream:
    reply = exchange(http, loader, host)
    assert reply.status == 200, reply.raw
    return Stream(http, host, reply.raw.decode())


@pytest.fixture
def manual(control: Control) -> None:
    """Nothing commits until the test calls commit()."""
    streaming_settings(control, commit_delay_ms="manual")


@pytest.fixture
def events(api: SqlApi) -> str:
    name = f"STREAM_{uuid.uuid4().hex[:8].upper()}"
    api.rows(
        f"CREATE TABLE {name} (EVENT_ID STRING NOT NULL, OCCURRED_AT TIMESTAMP_NTZ, AMOUNT NUMBER(18,4), "
        "PAYLOAD VARIANT, LOADED_AT TIMESTAMP_NTZ DEFAULT CURRENT_TIMESTAMP())"
    )
    return name


def opened(stream: Stream, table: str, channel: str = "CH") -> str:
    reply = stream.open(table, channel)
    assert reply.status == 200, reply.body
    return reply.body["next_continuation_token"]


def appended(stream: Stream, table: str, channel: str, token: str, rows: list[Any], **kwargs: Any) -> str:
    reply = stream.append(table, channel, token, rows, **kwargs)
    assert reply.status == 200, reply.body
    return reply.body["next_continuation_token"]


def committed(stream: Stream, control: Control, table: str, rows: list[Any], offset: str) -> str:
    """Opens channel CH on `table`, appends `rows` at `offset` and commits them; the next token."""
    token = appended(stream, table, "CH", opened(stream, table), rows, offset=offset)
    commit(control)
    return token


def event(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"EVENT_ID": event_id, "OCCURRED_AT": "2024-11-02T08:00:00.123", "AMOUNT": "19.99", **extra}


def event_ids(api: SqlApi, table: str) -> list[str]:
    return [row[0] for row in api.rows(f"SELECT EVENT_ID FROM {table} ORDER BY EVENT_ID")]


# ---- hostname and scoped tokens ---------------------------------------------------------------


def test_hostname_is_the_host_the_request_came_in_on_as_plain_text(http: Http, loader: Identity, host: str) -> None:
    reply = raw_request(http, "GET", "/v2/streaming/hostname", None, {**ACCEPT, **loader.headers()})
    assert (reply.status, reply.raw.decode(), reply.headers["content-type"]) == (
        200,
        host,
        "text/plain; charset=utf-8",
    )


def test_hostname_as_json_when_set(http: Http, loader: Identity, control: Control, host: str) -> None:
    streaming_settings(control, hostname_format="json")
    reply = raw_request(http, "GET", "/v2/streaming/hostname", None, {**ACCEPT, **loader.headers()})
    assert (reply.status, reply.body) == (200, {"hostname": host})


def test_missing_accept_header_is_391902(http: Http, loader: Identity, stream: Stream, events: str) -> None:
    reply = raw_request(http, "GET", "/v2/streaming/hostname", None, loader.headers())
    assert (reply.status, reply.body) == (
        400,
        {"error_code": "391902", "message": "Unsupported Accept header null is specified"},
    )
    headers = {k: v for k, v in stream.headers().items() if k != "Accept"}
    assert stream.open(events, "CH", headers=headers).body["error_code"] == "391902"


def test_hostname_needs_a_valid_keypair_jwt(http: Http, loader: Identity) -> None:
    expired = loader.headers(loader.token(issued_at=int(time.time()) - 7200, lifetime=3600))
    reply = raw_request(http, "GET", "/v2/streaming/hostname", None, {**ACCEPT, **expired})
    assert (reply.status, reply.body["error_code"]) == (401, "390144")
    failure = re.fullmatch(r"JWT token is invalid\. \[([0-9a-f-]{36})\]", reply.body["message"])
    assert failure is not None, reply.body["message"]
    details = SqlApi(http, loader.headers(), "TRACKLAYER", "EVENTS").rows(
        f"SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('{failure.group(1)}'), 'errorCode')"
    )
    assert details == [["JWT_TOKEN_EXPIRED"]]
    pat = {**ACCEPT, **loader.headers(), "X-Snowflake-Authorization-Token-Type": "PROGRAMMATIC_ACCESS_TOKEN"}
    reply = raw_request(http, "GET", "/v2/streaming/hostname", None, pat)
    assert (reply.status, reply.body["error_code"]) == (401, "390101")


def test_token_exchange_answers_a_raw_jwt_valid_for_an_hour(http: Http, loader: Identity, host: str) -> None:
    reply = exchange(http, loader, host)
    assert (reply.status, reply.headers["content-type"]) == (200, "text/plain; charset=utf-8")
    claims = jwt.decode(reply.raw.decode(), options={"verify_signature": False})
    assert (claims["exp"] - claims["iat"], claims["scope"], claims["role"], claims["sub"]) == (
        3600,
        host,
        "PYTEST_ROLE",
        "PYTEST.LOADER",
    )


def test_token_exchange_takes_the_jwt_as_assertion_and_answers_json_when_set(
    http: Http, loader: Identity, control: Control, host: str
) -> None:
    streaming_settings(control, token_format="json")
    form = {**ACCEPT, "Content-Type": "application/x-www-form-urlencoded"}
    reply = exchange(http, loader, host, headers=form, assertion=loader.token())
    assert reply.status == 200, reply.raw
    assert jwt.decode(reply.body["token"], options={"verify_signature": False})["scope"] == host
    both = {**form, **loader.headers(), "Content-Type": "application/x-www-form-urlencoded"}
    twice = exchange(http, loader, host, headers=both, assertion=loader.token())
    assert (twice.status, twice.body["error"]) == (400, "invalid_request")
    missing = exchange(http, loader, host, headers=form)
    assert (missing.status, missing.body["error_code"]) == (401, "390101")


def test_token_role_must_be_granted_to_the_user(http: Http, loader: Identity, host: str) -> None:
    public = exchange(http, loader, f"{host} session:role:public")
    assert jwt.decode(public.raw.decode(), options={"verify_signature": False})["role"] == "PUBLIC"
    refused = exchange(http, loader, f"{host} session:role:ACCOUNTADMIN")
    assert (refused.status, refused.body["error"]) == (400, "invalid_scope")
    assert "Role ACCOUNTADMIN is not granted to user LOADER" in refused.body["error_description"]
    claim = {**ACCEPT, **loader.headers(loader.token(scp="session:role:ACCOUNTADMIN"))}
    claim["Content-Type"] = "application/x-www-form-urlencoded"
    assert exchange(http, loader, host, headers=claim).body["error"] == "invalid_scope"


def test_token_scope_must_name_this_ingest_host(http: Http, loader: Identity, host: str) -> None:
    other = exchange(http, loader, "myorg-acct.ingest.snowflakecomputing.com")
    assert (other.status, other.body["error"]) == (400, "invalid_scope")
    unknown_item = exchange(http, loader, f"{host} refresh_token")
    assert (unknown_item.status, unknown_item.body["error"]) == (400, "invalid_scope")
    grant = exchange(http, loader, host, grant_type="client_credentials")
    assert (grant.status, grant.body["error"]) == (400, "unsupported_grant_type")


def test_data_plane_refuses_anything_but_a_valid_scoped_token(
    http: Http, loader: Identity, control: Control, stream: Stream, events: str, host: str
) -> None:
    assert stream.open(events, "CH").status == 200
    plain = {**ACCEPT, "Content-Type": "application/json"}
    assert stream.open(events, "CH", headers=plain).body["error_code"] == "390101"
    keypair = {**ACCEPT, **loader.headers()}
    reply = stream.open(events, "CH", headers=keypair)
    assert (reply.status, reply.body["error_code"]) == (401, "390303")
    streaming_settings(control, token_lifetime_s=0)
    expired = Stream(http, host, exchange(http, loader, host).raw.decode())
    reply = expired.open(events, "CH")
    assert (reply.status, reply.body["error_code"]) == (401, "390318")
    streaming_settings(control, token_lifetime_s=3600)
    port = host.rsplit(":", 1)[1]
    form = {**ACCEPT, **loader.headers(), "Content-Type": "application/x-www-form-urlencoded"}
    other_host = exchange(http, loader, f"localhost:{port}", headers={**form, "Host": f"localhost:{port}"})
    assert other_host.status == 200, other_host.raw
    reply = Stream(http, host, other_host.raw.decode()).open(events, "CH")
    assert (reply.status, reply.body["error_code"]) == (401, "390303")
    assert "issued for another host" in reply.body["message"]


def test_bulk_status_also_takes_a_keypair_jwt(loader: Identity, stream: Stream, events: str) -> None:
    opened(stream, events, "CH")
    reply = stream.status(events, ["CH"], headers={**ACCEPT, **loader.headers()})
    assert (reply.status, list(reply.body["channel_statuses"])) == (200, ["CH"])


# ---- pipes and channels -----------------------------------------------------------------------


def test_open_creates_a_channel_with_no_committed_offset(stream: Stream, events: str) -> None:
    reply = stream.open(events, "ch-1", {"fail_on_uncommitted_rows": False})
    assert reply.status == 200, reply.body
    status = reply.body["channel_status"]
    assert isinstance(reply.body["next_continuation_token"], str) and reply.body["next_continuation_token"]
    assert {k: status[k] for k in status if k not in ("created_on_ms",)} == {
        "database_name": DATABASE,
        "schema_name": SCHEMA,
        "pipe_name": f"{events}-STREAMING",
        "channel_name": "CH-1",
        "channel_status_code": "SUCCESS",
        "last_committed_offset_token": None,
        "rows_inserted": 0,
        "rows_parsed": 0,
        "rows_errors": 0,
        "rows_error_count": 0,
        "last_error_offset_upper_bound": None,
        "last_error_message": None,
        "last_error_timestamp": None,
        "snowflake_avg_processing_latency_ms": 0,
    }
    assert abs(status["created_on_ms"] - time.time() * 1000) < 60_000


def test_unknown_database_schema_pipe_or_table_is_404(stream: Stream, control: Control, events: str) -> None:
    def open_at(path: str) -> Reply:
        return stream.http.request("PUT", path + "/channels/CH", {}, stream.headers())

    base, pipe = "/v2/streaming/databases", f"{events}-STREAMING"
    cases = {
        f"{base}/NO_SUCH_DB/schemas/{SCHEMA}/pipes/{pipe}": "ERR_DATABASE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED",
        f"{base}/{DATABASE}/schemas/NO_SUCH_SCHEMA/pipes/{pipe}": "ERR_SCHEMA_DOES_NOT_EXIST_OR_NOT_AUTHORIZED",
        f"{base}/{DATABASE}/schemas/{SCHEMA}/pipes/NO_SUCH-STREAMING": "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED",
        f"{base}/{DATABASE}/schemas/{SCHEMA}/pipes/{events}": "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED",
    }
    for path, code in cases.items():
        reply = open_at(path)
        assert (reply.status, reply.body["error_code"]) == (404, code), path
    streaming_settings(control, error_key="code")
    assert set(open_at(list(cases)[2]).body) == {"code", "message"}


def test_a_default_pipe_exists_only_after_its_first_open(stream: Stream, events: str) -> None:
    reply = stream.status(events, ["CH"])
    assert (reply.status, reply.body["error_code"]) == (404, "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED")
    opened(stream, events, "OTHER")
    assert stream.status(events, ["CH"]).body == {"channel_statuses": {}}


def test_rows_commit_and_advance_the_committed_offset(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None, stack_env: dict[str, str]
) -> None:
    token = opened(stream, events)
    appended(
        stream, events, "CH", token, [event("e1"), event("e2", AMOUNT=5, PAYLOAD={"sku": "A", "qty": 2})], offset="2"
    )
    assert stream.channel_status(events, "CH")["last_committed_offset_token"] is None
    assert api.count(events) == 0
    assert commit(control) == {"batches": 1, "rows_inserted": 2, "rows_errors": 0}
    status = stream.channel_status(events, "CH")
    assert (status["last_committed_offset_token"], status["rows_inserted"], status["rows_parsed"]) == ("2", 2, 2)
    assert api.rows(f"SELECT EVENT_ID, OCCURRED_AT, AMOUNT, PAYLOAD FROM {events} ORDER BY EVENT_ID") == [
        ["e1", epoch_text("2024-11-02T08:00:00.123"), "19.9900", None],
        ["e2", epoch_text("2024-11-02T08:00:00.123"), "5.0000", '{"sku":"A","qty":2}'],
    ]
    read = sfquery(stack_env, f"SELECT EVENT_ID, AMOUNT FROM {events} ORDER BY EVENT_ID")
    assert read["rows"] == [["e1", "19.9900"], ["e2", "5.0000"]]


def test_commits_follow_the_commit_delay(stream: Stream, control: Control, api: SqlApi, events: str) -> None:
    assert streaming_settings(control)["commit_delay_ms"] == 3000
    streaming_settings(control, commit_delay_ms=100)
    token = opened(stream, events)
    appended(stream, events, "CH", token, [event("e1")], offset="1")
    status = stream.wait_committed(events, "CH", "1")
    assert (status["rows_inserted"], event_ids(api, events)) == (1, ["e1"])
    assert status["snowflake_avg_processing_latency_ms"] >= 100


def test_gzip_and_zstd_bodies_are_decoded(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    token = opened(stream, events)
    token = appended(stream, events, "CH", token, [event("gz")], offset="1", encoding="gzip")
    appended(stream, events, "CH", token, [event("zs")], offset="2", encoding="zstd")
    commit(control)
    assert stream.channel_status(events, "CH")["last_committed_offset_token"] == "2"
    assert event_ids(api, events) == ["gz", "zs"]
    unknown = stream.append(
        events, "CH", token, [event("x")], headers=stream.headers("application/x-ndjson", **{"Content-Encoding": "br"})
    )
    assert (unknown.status, unknown.body["error_code"]) == (415, "ERR_BAD_REQUEST")


def test_start_and_end_offset_tokens_are_accepted(stream: Stream, control: Control, events: str, manual: None) -> None:
    token = opened(stream, events)
    appended(
        stream, events, "CH", token, [event("a"), event("b")], query={"startOffsetToken": "10", "endOffsetToken": "11"}
    )
    commit(control)
    assert stream.channel_status(events, "CH")["last_committed_offset_token"] == "11"
    both = stream.append(
        events, "CH", token, [event("c")], offset="12", query={"startOffsetToken": "12", "endOffsetToken": "12"}
    )
    assert (both.status, both.body["error_code"]) == (400, "ERR_BAD_REQUEST")
    half = stream.append(events, "CH", token, [event("c")], query={"endOffsetToken": "12"})
    assert (half.status, half.body["error_code"]) == (400, "ERR_BAD_REQUEST")


def test_append_request_shape_is_checked(stream: Stream, control: Control, events: str, manual: None) -> None:
    token = opened(stream, events)
    as_json = stream.append(events, "CH", token, [event("a")], headers=stream.headers("application/json"))
    assert as_json.status == 415
    no_newline = stream.append(events, "CH", token, json.dumps(event("a")).encode())
    assert (no_newline.status, no_newline.body["error_code"]) == (400, "ERR_BAD_REQUEST")
    assert stream.append(events, "CH", token, b"\xff\xfe\n").status == 400
    assert stream.append(events, "CH", token, b"").status == 400
    missing = stream.append(events, "CH", None, [event("a")])
    assert (missing.status, missing.body["error_code"]) == (400, "ERR_BAD_REQUEST")
    assert "continuationToken" in missing.body["message"]
    assert commit(control)["batches"] == 0


def test_the_4mb_cap_counts_bytes_on_the_wire(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    token = opened(stream, events)
    line = json.dumps(event("big", PAYLOAD={"pad": "x" * 1000})).encode() + b"\n"
    big = line * (5_000_000 // len(line))
    assert len(big) > 4_000_000
    over = stream.append(events, "CH", token, big)
    assert (over.status, over.body["error_code"]) == (413, "ERR_PAYLOAD_TOO_LARGE")
    appended(stream, events, "CH", token, big, offset="1", encoding="zstd")
    assert commit(control)["rows_inserted"] == big.count(b"\n")
    streaming_settings(control, max_append_uncompressed_bytes=4 * 1024 * 1024)
    token = opened(stream, events)
    assert stream.append(events, "CH", token, big, encoding="zstd").status == 413


# ---- fencing, reopen, invalidation ------------------------------------------------------------


def test_a_reopen_fences_the_old_writer_and_discards_its_uncommitted_rows(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    first = opened(stream, events)
    first = appended(stream, events, "CH", first, [event("old-1")], offset="1")
    second = stream.open(events, "CH")
    assert second.body["channel_status"]["last_committed_offset_token"] is None
    stale = stream.append(events, "CH", first, [event("old-2")], offset="2")
    assert (stale.status, stale.body) == (
        400,
        {
            "error_code": "STALE_CONTINUATION_TOKEN_SEQUENCER",
            "message": "Channel sequencer in the continuation token is stale. Please reopen the channel",
        },
    )
    appended(stream, events, "CH", second.body["next_continuation_token"], [event("new-1")], offset="1")
    commit(control)
    assert event_ids(api, events) == ["new-1"]


def test_a_reopen_answers_the_last_committed_offset(
    stream: Stream, control: Control, events: str, manual: None
) -> None:
    token = committed(stream, control, events, [event("a")], offset="5")
    appended(stream, events, "CH", token, [event("b")], offset="6")
    reopened = stream.open(events, "CH").body["channel_status"]
    assert (reopened["last_committed_offset_token"], reopened["rows_inserted"]) == ("5", 1)
    assert commit(control)["batches"] == 0
    with_offset = stream.open(events, "CH", {"offset_token": "42"}).body["channel_status"]
    assert with_offset["last_committed_offset_token"] == "42"


def test_fail_on_uncommitted_rows_refuses_the_reopen(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    token = opened(stream, events)
    token = appended(stream, events, "CH", token, [event("kept")], offset="1")
    refused = stream.open(events, "CH", {"fail_on_uncommitted_rows": True})
    assert (refused.status, refused.body["error_code"]) == (409, "ERR_CHANNEL_HAS_UNCOMMITTED_DATA")
    appended(stream, events, "CH", token, [event("kept-2")], offset="2")
    commit(control)
    assert event_ids(api, events) == ["kept", "kept-2"]
    assert stream.open(events, "CH", {"fail_on_uncommitted_rows": True}).status == 200


def test_a_replayed_continuation_token_invalidates_the_channel(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    first = opened(stream, events)
    latest = appended(stream, events, "CH", first, [event("a")], offset="1")
    replay = stream.append(events, "CH", first, [event("a")], offset="1")
    assert (replay.status, replay.body["error_code"]) == (409, "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER")
    after = stream.append(events, "CH", latest, [event("b")], offset="2")
    assert (after.status, after.body["error_code"]) == (409, "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER")
    assert stream.channel_status(events, "CH")["channel_status_code"] == "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER"
    assert commit(control)["batches"] == 0
    token = opened(stream, events)
    appended(stream, events, "CH", token, [event("c")], offset="1")
    commit(control)
    assert (event_ids(api, events), stream.channel_status(events, "CH")["channel_status_code"]) == (["c"], "SUCCESS")


def test_a_retried_request_id_is_answered_again_when_deduplication_is_on(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    streaming_settings(control, dedupe_request_id=True)
    token = opened(stream, events)
    request = {"requestId": str(uuid.uuid4())}
    first = stream.append(events, "CH", token, [event("once")], offset="1", query=request)
    again = stream.append(events, "CH", token, [event("once")], offset="1", query=request)
    assert (first.status, again.status, again.body) == (200, 200, first.body)
    assert commit(control) == {"batches": 1, "rows_inserted": 1, "rows_errors": 0}
    assert event_ids(api, events) == ["once"]


def test_more_appends_per_second_than_allowed_get_429(
    stream: Stream, control: Control, events: str, manual: None
) -> None:
    streaming_settings(control, max_appends_per_second=1)
    token = opened(stream, events)
    answers = []
    for i in range(5):
        reply = stream.append(events, "CH", token, [event(f"r{i}")], offset=str(i))
        answers.append(reply.status)
        if reply.status == 200:
            token = reply.body["next_continuation_token"]
        else:
            assert reply.body["error_code"] == "ERR_TOO_MANY_REQUESTS"
    assert answers[0] == 200 and 429 in answers, answers
    assert commit(control)["batches"] == answers.count(200)


def test_a_pipe_holds_a_bounded_number_of_channels(stream: Stream, control: Control, events: str) -> None:
    streaming_settings(control, max_channels_per_pipe=2)
    opened(stream, events, "A")
    opened(stream, events, "B")
    third = stream.open(events, "C")
    assert (third.status, third.body["error_code"]) == (429, "ERR_TOO_MANY_CHANNELS")
    assert stream.open(events, "A").status == 200
    assert stream.drop(events, "B").status == 200
    assert stream.open(events, "C").status == 200


# ---- status and drop --------------------------------------------------------------------------


def test_bulk_status_names_are_case_sensitive_and_unknown_ones_absent(stream: Stream, events: str) -> None:
    opened(stream, events, "ch-a")
    opened(stream, events, "%22Mixed%2FCase%22")
    statuses = stream.status(events, ["CH-A", "ch-a", "Mixed/Case", "NOPE"]).body["channel_statuses"]
    assert sorted(statuses) == ["CH-A", "Mixed/Case"]
    assert {"rows_errors", "rows_error_count"} <= set(statuses["CH-A"])


def test_drop_forgets_the_channel(stream: Stream, control: Control, events: str, manual: None) -> None:
    token = opened(stream, events)
    token = appended(stream, events, "CH", token, [event("a")], offset="1")
    refused = stream.drop(events, "CH", {"fail_on_uncommitted_rows": True})
    assert (refused.status, refused.body["error_code"]) == (409, "ERR_CHANNEL_HAS_UNCOMMITTED_DATA")
    dropped = stream.drop(events, "CH")
    assert (dropped.status, dropped.raw) == (200, b"")
    assert stream.status(events, ["CH"]).body == {"channel_statuses": {}}
    gone = stream.append(events, "CH", token, [event("b")])
    assert (gone.status, gone.body["error_code"]) == (404, "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED")
    assert stream.drop(events, "CH").status == 404
    assert commit(control)["batches"] == 0
    assert stream.open(events, "CH").body["channel_status"]["last_committed_offset_token"] is None


def test_a_dropped_table_takes_its_pipe_with_it(stream: Stream, api: SqlApi, events: str) -> None:
    token = opened(stream, events)
    api.rows(f"DROP TABLE {events}")
    reply = stream.append(events, "CH", token, [event("a")])
    assert (reply.status, reply.body["error_code"]) == (404, "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED")


# ---- the default pipe's mapping and conversions -------------------------------------------------


def test_values_are_converted_per_column_type_and_bad_rows_counted(
    stream: Stream, control: Control, api: SqlApi, manual: None
) -> None:
    table = f"TYPES_{uuid.uuid4().hex[:8].upper()}"
    api.rows(
        f"CREATE TABLE {table} (ID STRING NOT NULL, N NUMBER(10,2), I INT, F FLOAT, B BOOLEAN, S VARCHAR(5), "
        "TS TIMESTAMP_NTZ, TZ TIMESTAMP_TZ, D DATE, V VARIANT, BIN BINARY)"
    )
    good = [
        {
            "ID": "r1",
            "N": "12.345",
            "I": 7,
            "F": "1.5",
            "B": "yes",
            "S": "abc",
            "TS": "2024-11-02T10:00:00.5+02:00",
            "TZ": "2024-11-02T10:00:00+02:00",
            "D": "2024-11-02",
            "V": '{"a":1}',
            "BIN": "AQI=",
        },
        {"ID": "r2", "N": 19.99, "B": False, "TS": 1730534400, "V": {"a": [1, 2]}, "EXTRA": "ignored"},
        {"ID": "r3", "N": -0.005, "TS": "1730534400123", "V": None},
        {"ID": "r4", "TS": 1730534400123456, "D": 1730534400},
    ]
    bad = [
        b'{"ID": "b1", "N": "12,50"}',
        b'{"ID": "b2", "S": "toolong"}',
        b'{"N": 1}',
        b"[1, 2]",
        b'{"ID": "b5", "ID": "again"}',
        b'{"ID": "b6", "N": 123456789}',
        b'{"ID": "b7", "TS": "02/11/2026"}',
        b'{"ID": "b8", "B": "maybe"}',
        b'{"ID": "b9", "BIN": "not base64!"}',
        b'{"ID": "b10", "F": NaN}',
    ]
    token = opened(stream, table)
    appended(stream, table, "CH", token, ndjson(good) + b"\n".join(bad) + b"\n", offset="14")
    assert commit(control) == {"batches": 1, "rows_inserted": 4, "rows_errors": 10}
    status = stream.channel_status(table, "CH")
    assert {k: status[k] for k in ("rows_inserted", "rows_parsed", "rows_errors", "rows_error_count")} == {
        "rows_inserted": 4,
        "rows_parsed": 14,
        "rows_errors": 10,
        "rows_error_count": 10,
    }
    assert (status["last_committed_offset_token"], status["last_error_offset_upper_bound"]) == ("14", "14")
    assert status["last_error_message"] == "Row 14: NaN is not valid JSON (RFC 8259)"
    assert isinstance(status["last_error_timestamp"], int)
    days = (date(2024, 11, 2) - date(1970, 1, 1)).days
    assert api.rows(f"SELECT ID, N, I, F, B, S, TS, TZ, D, V, BIN FROM {table} ORDER BY ID") == [
        ["r1", "12.35", "7", "1.5", "true", "abc", epoch_text("2024-11-02T10:00:00.5"),
         epoch_text("2024-11-02T08:00:00") + " 1440", str(days), '"{\\"a\\":1}"', "0102"],
        ["r2", "19.99", None, None, "false", None, "1730534400.000000000", None, None, '{"a":[1,2]}', None],
        ["r3", "-0.01", None, None, None, None, "1730534400.123000000", None, None, None, None],
        ["r4", None, None, None, None, None, "1730534400.123456000", None, str(days), None, None],
    ]  # fmt: skip


def test_row_errors_name_the_row_column_and_value(stream: Stream, control: Control, events: str, manual: None) -> None:
    token = committed(stream, control, events, [event("ok"), event("bad", AMOUNT="12,50")], offset="2")
    status = stream.channel_status(events, "CH")
    assert status["last_error_message"] == "Row 2: Numeric value '12,50' is not recognized (column AMOUNT)"
    appended(stream, events, "CH", token, [{"OCCURRED_AT": "2024-11-02"}], offset="3")
    commit(control)
    status = stream.channel_status(events, "CH")
    assert status["last_error_message"] == "Row 1: NULL result in a non-nullable column EVENT_ID"
    assert (status["rows_error_count"], status["rows_inserted"], status["last_committed_offset_token"]) == (2, 1, "3")


def test_keys_match_column_names_case_sensitively_unless_set_otherwise(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    token = committed(stream, control, events, [{"event_id": "lower", "amount": "1"}], offset="1")
    assert (api.count(events), stream.channel_status(events, "CH")["rows_error_count"]) == (0, 1)
    streaming_settings(control, match_by_column_name="CASE_INSENSITIVE")
    appended(stream, events, "CH", token, [{"event_id": "lower", "amount": "1"}], offset="2")
    commit(control)
    assert api.rows(f"SELECT EVENT_ID, AMOUNT FROM {events}") == [["lower", "1.0000"]]


def test_a_default_current_timestamp_is_evaluated_once_per_pipe(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    token = committed(stream, control, events, [event("first")], offset="1")
    other = opened(stream, events, "OTHER")
    appended(stream, events, "OTHER", other, [event("second")], offset="1")
    commit(control)
    appended(stream, events, "CH", token, [event("sent", LOADED_AT="2024-11-02T09:00:00")], offset="2")
    commit(control)
    api.rows(f"INSERT INTO {events} (EVENT_ID) VALUES ('by-sql')")
    loaded = dict(api.rows(f"SELECT EVENT_ID, LOADED_AT FROM {events}"))
    assert loaded["first"] == loaded["second"]
    assert loaded["sent"] == epoch_text("2024-11-02T09:00:00")
    assert float(loaded["by-sql"]) > float(loaded["first"])


# ---- faults -------------------------------------------------------------------------------------


def test_429_and_503_faults_answer_without_appending(
    stream: Stream, control: Control, events: str, manual: None
) -> None:
    token = opened(stream, events)
    control.fault({"status": 429}, method="POST", path_prefix="/v2/streaming/data/")
    control.fault(
        {"status": 503, "body": "ERR_GENERAL_EXCEPTION_RETRY_REQUEST"}, method="POST", path_prefix="/v2/streaming/data/"
    )
    throttled = stream.append(events, "CH", token, [event("a")], offset="1")
    unavailable = stream.append(events, "CH", token, [event("a")], offset="1")
    assert (throttled.status, unavailable.status, unavailable.raw) == (
        429,
        503,
        b'"ERR_GENERAL_EXCEPTION_RETRY_REQUEST"',
    )
    appended(stream, events, "CH", token, [event("a")], offset="1")
    assert commit(control)["batches"] == 1


def test_a_channel_error_fault_invalidates_the_channel_until_reopened(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    token = opened(stream, events)
    token = appended(stream, events, "CH", token, [event("lost")], offset="1")
    rows_path = Stream.pipe(events).replace("/v2/streaming/", "/v2/streaming/data/") + "/channels/CH/rows"
    control.fault({"channel_error": {"code": "ERR_CHANNEL_MUST_BE_REOPENED"}}, method="POST", path_prefix=rows_path)
    first = stream.append(events, "CH", token, [event("x")], offset="2")
    assert (first.status, first.body["error_code"]) == (409, "ERR_CHANNEL_MUST_BE_REOPENED")
    again = stream.append(events, "CH", token, [event("x")], offset="2")
    assert (again.status, again.body["error_code"]) == (409, "ERR_CHANNEL_MUST_BE_REOPENED")
    assert stream.channel_status(events, "CH")["channel_status_code"] == "ERR_CHANNEL_MUST_BE_REOPENED"
    reopened = stream.open(events, "CH").body
    assert reopened["channel_status"]["last_committed_offset_token"] is None
    appended(stream, events, "CH", reopened["next_continuation_token"], [event("replayed")], offset="1")
    commit(control)
    assert event_ids(api, events) == ["replayed"]


def test_a_fence_fault_is_a_reopen_by_another_writer(
    stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    token = committed(stream, control, events, [event("committed")], offset="1")
    token = appended(stream, events, "CH", token, [event("uncommitted")], offset="2")
    control.fault({"fence_channel": True}, method="POST", path_prefix="/v2/streaming/data/")
    fenced = stream.append(events, "CH", token, [event("late")], offset="3")
    assert (fenced.status, fenced.body["error_code"]) == (400, "STALE_CONTINUATION_TOKEN_SEQUENCER")
    assert commit(control)["batches"] == 0
    assert stream.open(events, "CH").body["channel_status"]["last_committed_offset_token"] == "1"
    assert event_ids(api, events) == ["committed"]


def test_the_fence_control_endpoint_reopens_a_channel(
    stream: Stream, control: Control, events: str, manual: None
) -> None:
    token = opened(stream, events)
    status = control.call(
        "POST",
        "/streaming/fence",
        {"database": DATABASE, "schema": SCHEMA, "pipe": f"{events}-STREAMING", "channel": "CH"},
    )
    assert status["channel_name"] == "CH"
    assert stream.append(events, "CH", token, [event("a")]).body["error_code"] == "STALE_CONTINUATION_TOKEN_SEQUENCER"


def test_a_slow_commit_fault_holds_back_only_its_channel(
    stream: Stream, control: Control, api: SqlApi, events: str
) -> None:
    streaming_settings(control, commit_delay_ms=0)
    slow_rows = Stream.pipe(events).replace("/v2/streaming/", "/v2/streaming/data/") + "/channels/SLOW/rows"
    control.fault({"commit_delay_ms": 600_000}, method="POST", path_prefix=slow_rows)
    slow, fast = opened(stream, events, "SLOW"), opened(stream, events, "FAST")
    appended(stream, events, "SLOW", slow, [event("slow")], offset="1")
    appended(stream, events, "FAST", fast, [event("fast")], offset="1")
    stream.wait_committed(events, "FAST", "1")
    channels = {
        c["channel_name"]: c
        for c in control.call("GET", "/streaming/channels")
        if c["pipe_name"] == f"{events}-STREAMING"
    }
    assert (channels["SLOW"]["pending_batches"], channels["SLOW"]["last_committed_offset_token"]) == (1, None)
    assert event_ids(api, events) == ["fast"]
    assert commit(control) == {"batches": 1, "rows_inserted": 1, "rows_errors": 0}
    assert event_ids(api, events) == ["fast", "slow"]


def test_a_dropped_answer_after_the_append_was_received(
    http: Http, stream: Stream, control: Control, api: SqlApi, events: str, manual: None
) -> None:
    token = opened(stream, events)
    control.fault({"drop_connection": True}, phase="after_execute", method="POST", path_prefix="/v2/streaming/data/")
    with pytest.raises(IncompleteRead):
        stream.append(events, "CH", token, [event("received")], offset="1")
    retry = stream.append(events, "CH", token, [event("received")], offset="1")
    assert (retry.status, retry.body["error_code"]) == (409, "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER")
    assert stream.open(events, "CH").body["channel_status"]["last_committed_offset_token"] is None
    assert commit(control)["batches"] == 0
    assert api.count(events) == 0


def test_streaming_faults_need_a_streaming_path(control: Control, http: Http) -> None:
    reply = http.request(
        "POST",
        "/__emulator/faults",
        {"match": {}, "action": {"fence_channel": True}},
        {"Content-Type": "application/json"},
    )
    assert reply.status == 400 and "path_prefix under /v2/streaming/" in reply.body["error"]


# ---- settings and the request report ------------------------------------------------------------


def test_streaming_settings_are_validated_and_reset(control: Control, http: Http) -> None:
    for spec, fragment in (
        ({"commit_delay": 1}, "unknown streaming setting 'commit_delay'"),
        ({"commit_delay_ms": -1}, "streaming.commit_delay_ms"),
    ):
        reply = http.request("POST", "/__emulator/settings", {"streaming": spec}, {"Content-Type": "application/json"})
        assert reply.status == 400 and fragment in reply.body["error"], reply.body
    assert streaming_settings(control, commit_delay_ms="manual")["commit_delay_ms"] == "manual"
    control.reset()
    assert control.settings()["streaming"]["commit_delay_ms"] == 3000


def test_streaming_requests_are_counted_by_kind(
    http: Http, loader: Identity, stream: Stream, control: Control, events: str, manual: None
) -> None:
    http.request("DELETE", "/__emulator/requests")
    raw_request(http, "GET", "/v2/streaming/hostname", None, {**ACCEPT, **loader.headers()})
    exchange(http, loader, stream.host)
    token = opened(stream, events)
    token = appended(stream, events, "CH", token, [event("a")], offset="1")
    stream.append(events, "CH", token, [event("b")], offset="2")
    stream.status(events, ["CH"])
    stream.drop(events, "CH")
    report = control.requests()
    assert report["by_streaming"] == {"hostname": 1, "token": 1, "open": 1, "append": 2, "status": 1, "drop": 1}
    assert report["by_path"] == {
        "/v2/streaming/hostname": 1,
        "/oauth/token": 1,
        "/v2/streaming/databases/{database}/schemas/{schema}/pipes/{pipe}/channels/{channel}": 2,
        "/v2/streaming/data/databases/{database}/schemas/{schema}/pipes/{pipe}/channels/{channel}/rows": 2,
        "/v2/streaming/databases/{database}/schemas/{schema}/pipes/{pipe}:bulk-channel-status": 1,
    }
    assert (report["total"], report["statements"]) == (7, [])


def test_channel_names_are_percent_decoded_per_segment(stream: Stream, events: str) -> None:
    reply = stream.open(events, quote("a/b", safe=""))
    assert reply.body["channel_status"]["channel_name"] == "A/B"
